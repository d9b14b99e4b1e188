"""The rule-based sentence splitter: abbreviations, numbers, quotes, brackets, CJK."""

from __future__ import annotations

import pytest

from bertkit.data.sentences import is_cjk_char, iter_sentences, split_paragraphs, split_sentences

CASES = [
    # plain
    ("One. Two! Three? Four", ["One.", "Two!", "Three?", "Four"]),
    ("", []),
    ("   \n  ", []),
    ("No terminator here", ["No terminator here"]),
    # titles never end a sentence
    ("Mr. Smith met Mrs. Jones and Dr. Who. They talked.",
     ["Mr. Smith met Mrs. Jones and Dr. Who.", "They talked."]),
    ("Prof. Xavier and Gen. Lee came. Sen. Smith too.",
     ["Prof. Xavier and Gen. Lee came.", "Sen. Smith too."]),
    # e.g. / i.e. / etc.
    ("Use fruit, e.g. Apples or i.e. Pears. Fine.", ["Use fruit, e.g. Apples or i.e. Pears.", "Fine."]),
    ("We bought pens, paper, etc. The shop was closed.",
     ["We bought pens, paper, etc.", "The shop was closed."]),
    ("Apples, pears, etc. were sold.", ["Apples, pears, etc. were sold."]),
    # dotted acronyms: end a sentence only before a typical opener
    ("He lives in the U.S. He likes it.", ["He lives in the U.S.", "He likes it."]),
    ("The U.S. Congress met. It voted.", ["The U.S. Congress met.", "It voted."]),
    ("At 5 p.m. Smith left. At 6 a.m. the sun rose.",
     ["At 5 p.m. Smith left.", "At 6 a.m. the sun rose."]),
    # months, numbers, St.
    ("It happened on Jan. 5, 1990. Nobody saw it.", ["It happened on Jan. 5, 1990.", "Nobody saw it."]),
    ("See No. 5 and Vol. 3 for details. Thanks.", ["See No. 5 and Vol. 3 for details.", "Thanks."]),
    ("He went to St. Louis. Then home.", ["He went to St. Louis.", "Then home."]),
    # initials
    ("John F. Kennedy and J. R. R. Tolkien met. Really.",
     ["John F. Kennedy and J. R. R. Tolkien met.", "Really."]),
    # decimals and amounts
    ("The deficit is $1.5 million. Pi is 3.14. Growth was 2.5%. Good.",
     ["The deficit is $1.5 million.", "Pi is 3.14.", "Growth was 2.5%.", "Good."]),
    ("Visit www.example.com today. Bye.", ["Visit www.example.com today.", "Bye."]),
    ("In 1990. 2000 was better.", ["In 1990.", "2000 was better."]),
    # ellipses
    ("I wonder... maybe not. Wait... Then go.", ["I wonder... maybe not.", "Wait...", "Then go."]),
    ("He stopped\u2026 Then he left.", ["He stopped\u2026", "Then he left."]),
    # quotes and brackets after the terminator
    ('"It is over." He left.', ['"It is over."', "He left."]),
    ("\u201cIt is over.\u201d He left.", ["\u201cIt is over.\u201d", "He left."]),
    ('"Stop!" he said. "Why?" she asked.', ['"Stop!" he said.', '"Why?" she asked.']),
    ("He agreed (mostly.) Then he left.", ["He agreed (mostly.)", "Then he left."]),
    ("Thank you. (Applause.) Thank you.", ["Thank you.", "(Applause.)", "Thank you."]),
    ("He said: 'No.' Then silence.", ["He said: 'No.'", "Then silence."]),
    # question / exclamation
    ("Really?! Yes. Why? because.", ["Really?!", "Yes.", "Why? because."]),
    # enumerators opening a sentence
    ("1. Introduction to it. 2. Methods used.", ["1. Introduction to it.", "2. Methods used."]),
    # dashes and abbreviations glued to them
    ('Sam Rayburn-"Mr. Speaker" to us. The end.', ['Sam Rayburn-"Mr. Speaker" to us.', "The end."]),
    # whitespace collapsing
    ("Line one\nstill one.  Line\ttwo.", ["Line one still one.", "Line two."]),
    # CJK
    ("今天天气很好。我们去公园吧！你来吗？", ["今天天气很好。", "我们去公园吧！", "你来吗？"]),
    ("他说：“我们走吧。”然后走了。", ["他说：“我们走吧。”", "然后走了。"]),
    ("真的吗？！是的。", ["真的吗？！", "是的。"]),
    ("价格是１１０．８亿元。增长了。", ["价格是１１０．８亿元。", "增长了。"]),
    ("好吗?你说。", ["好吗?", "你说。"]),
    ("東京に行きました。楽しかった！", ["東京に行きました。", "楽しかった！"]),
]


@pytest.mark.parametrize("text,expected", CASES, ids=[c[0][:30] for c in CASES])
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_iter_matches_split_and_preserves_words() -> None:
    text = ("Mr. Smith paid $1.5 million. Dr. Jones arrived at 3 p.m. on Jan. 5. "
            '"Good," he said. Then it rained!')
    sents = list(iter_sentences(text))
    assert sents == split_sentences(text)
    assert " ".join(sents).split() == text.split()


def test_paragraphs() -> None:
    assert split_paragraphs("a\nb\n\n \n c \n\n") == ["a\nb", "c"]
    assert split_paragraphs("") == []


def test_is_cjk_char() -> None:
    assert is_cjk_char("中") and is_cjk_char("の") and is_cjk_char("한")
    assert not any(is_cjk_char(c) for c in "a1。！，")
