"""The deterministic tokenizer parity corpus, and a loader for Google's ``tokenization.py``.

Real text, 14,000 lines: 9,000 paragraphs of the Universal Declaration of Human Rights in its 523
translations (``udhr`` corpus: every paragraph whose main script is not Latin, 6,690 of them in 39
scripts, then Latin ones at even strides) and 5,000 lines of Wikipedia lead sections in English,
French and Spanish (``wikipedia-*`` corpora, at even strides), all from sha256-pinned packages. Adversarial text: 6,000 lines from ``random.Random(SEED)``
mixing many scripts, emoji, controls, zero-width and odd whitespace, combining marks, punctuation
runs and over-long words. Changing anything here invalidates ``tests/fixtures/google_*.json.gz``:
regenerate them with ``tests/tools/make_google_fixtures.py``.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import random
import sys
import types
import unicodedata
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import TypeVar

from bertkit import artifacts
from bertkit.data.corpora import udhr_declarations, wikipedia_articles

FIXTURES = Path(__file__).parent / "fixtures"
N_REAL = 14_000
N_ADVERSARIAL = 6_000
SEED = 20240521
N_IDS_STORED = 400  # full Google ids kept for the first lines of each mode (readable diffs)

T = TypeVar("T")
N_UDHR = 9_000  # the rest of N_REAL comes from Wikipedia

# mode -> (vocab getter name in bertkit.artifacts, do_lower_case)
MODES: dict[str, tuple[str, bool]] = {
    "uncased": ("uncased_vocab", True),
    "chinese": ("chinese_vocab", True),
    "cased": ("uncased_vocab", False),  # no cased vocab is available: the uncased one, cased mode
}


def vocab_path(mode: str) -> Path:
    """The vocab file of a mode (fetched; raises RegistryUnavailable offline)."""
    return getattr(artifacts, MODES[mode][0])()


def main_script(text: str) -> str:
    """The Unicode script name (first word of the character names) of most letters in ``text``.

    >>> main_script("Москва 2024"), main_script("東京"), main_script("123")
    ('CYRILLIC', 'CJK', 'NONE')
    """
    counts = Counter(unicodedata.name(ch, "UNKNOWN").split()[0] for ch in text if ch.isalpha())
    return counts.most_common(1)[0][0] if counts else "NONE"


def _strided(items: list[T], n: int) -> list[T]:
    return [items[i * len(items) // n] for i in range(n)] if n < len(items) else list(items)


def udhr_lines(n: int = N_UDHR) -> list[str]:
    """Every non-Latin UDHR paragraph, then Latin ones at even strides, to ``n`` in file order."""
    paragraphs = [p for _, ps in udhr_declarations() for p in ps]
    latin = [i for i, p in enumerate(paragraphs) if main_script(p) == "LATIN"]
    keep = set(range(len(paragraphs))) - set(latin)
    keep |= set(_strided(latin, n - len(keep)))
    return [paragraphs[i] for i in sorted(keep)]


def wikipedia_lines(n: int) -> list[str]:
    """``n`` non-empty lines of the en, fr and es lead sections at even strides (raw text)."""
    lines = [ln for lang in ("en", "fr", "es") for _, text in wikipedia_articles(lang)
             for ln in text.split("\n") if ln.strip()]
    return _strided(lines, n)


def real_lines(n: int = N_REAL) -> list[str]:
    """UDHR paragraphs then Wikipedia lines: ``n`` real lines in 40 scripts."""
    udhr = udhr_lines()
    return udhr + wikipedia_lines(n - len(udhr))


_BLOCKS = {  # name -> (lo, hi) code point ranges to draw letters from
    "latin_accented": (0x00C0, 0x024F), "greek": (0x0370, 0x03FF), "cyrillic": (0x0400, 0x04FF),
    "arabic": (0x0600, 0x06FF), "devanagari": (0x0900, 0x097F), "thai": (0x0E00, 0x0E7F),
    "hangul": (0xAC00, 0xD7A3), "jamo": (0x1100, 0x11FF), "kana": (0x3040, 0x30FF),
    "cjk": (0x4E00, 0x9FFF), "cjk_ext_a": (0x3400, 0x4DBF), "cjk_ext_b": (0x20000, 0x2A6DF),
    "cjk_ext_ef": (0x2B740, 0x2CEAF), "cjk_compat": (0xF900, 0xFAFF),
    "cjk_compat_sup": (0x2F800, 0x2FA1F), "emoji": (0x1F300, 0x1FAFF),
    "symbols": (0x2000, 0x2BFF), "fullwidth": (0xFF00, 0xFFEF), "hebrew": (0x0590, 0x05FF),
    "combining": (0x0300, 0x036F), "combining_ext": (0x1AB0, 0x1AFF), "musical": (0x1D100, 0x1D1FF),
    "brahmic_misc": (0x11000, 0x11FFF), "private_use": (0xE000, 0xF8FF),
}
_CONTROLS = ["\x00", "\x7f", "\u200b", "\u200d", "\u200c", "\ufeff", "\ufffd", "\x1c", "\x85",
             "\u00ad", "\u180e", "\x0b", "\x0c", "\x01", "\u2060", "\U000e0041"]
_SPACES = [" ", "\t", "\u00a0", "\u3000", "\u2009", "\n", "\r", "\u2028", "\u2029", "\u202f",
           "\u1680", "  "]
_PUNCT = "!?.,;:'\"()[]{}<>$^`|~+=-_@#%&*/\\¿¡«»“”‘’…—–·•§¶†‡※‼⁇、。《》「」【】！？，：；"
_SPECIAL_WORDS = ["ΣΟΦΟΣ", "ΟΔΥΣΣΕΥΣ", "σοφός", "İstanbul", "DİYARBAKIR", "Straße", "ﬁnance",
                  "Ångström", "Kelvin\u212a", "\u212b", "Ⅻ", "x²³", "e\u0301te\u0301", "Việt Nam",
                  "ǅemal", "ﬀ", "ΐ", "\u1e9e", "MAC\u0130", "[UNK]", "[CLS]", "##ing", "un##aff"]
_WORDS = ["the", "unaffable", "running", "tokenization", "BERT", "Hello", "world", "don't",
          "U.S.A.", "e-mail", "3.14159", "1,000,000", "naïve", "café", "résumé", "über",
          "Москва", "東京", "北京大学", "서울", "กรุงเทพ", "القاهرة", "दिल्ली", "Αθήνα"]


def _rand_char(rng: random.Random, block: str) -> str:
    lo, hi = _BLOCKS[block]
    return chr(rng.randint(lo, hi))


def _segment(rng: random.Random) -> str:
    kind = rng.choices(
        ["word", "script", "mixed", "control", "punct", "long", "special", "anychar", "space"],
        weights=[30, 25, 10, 8, 8, 3, 8, 4, 4])[0]
    if kind == "word":
        return rng.choice(_WORDS)
    if kind == "script":
        block = rng.choice(list(_BLOCKS))
        return "".join(_rand_char(rng, block) for _ in range(rng.randint(1, 8)))
    if kind == "mixed":
        parts = [rng.choice(_WORDS), rng.choice(_CONTROLS), _rand_char(rng, "combining"),
                 _rand_char(rng, rng.choice(list(_BLOCKS))), rng.choice(_PUNCT)]
        rng.shuffle(parts)
        return "".join(parts)
    if kind == "control":
        return "".join(rng.choice(_CONTROLS) for _ in range(rng.randint(1, 3)))
    if kind == "punct":
        return "".join(rng.choice(_PUNCT) for _ in range(rng.randint(1, 12)))
    if kind == "long":
        n = rng.choice([99, 100, 101, 150, 199, 200, 201, 250, 300])
        unit = rng.choice(["a", "ab", "é", "x", "ing", "中", "ß"])
        return (unit * n)[:n]
    if kind == "special":
        return rng.choice(_SPECIAL_WORDS)
    if kind == "anychar":
        cp = rng.randint(0, 0x10FFFF)
        if 0xD800 <= cp <= 0xDFFF and rng.random() < 0.9:  # keep lone surrogates rare
            cp = 0xFFFD
        return chr(cp)
    return rng.choice(_SPACES)


def adversarial_lines(n: int = N_ADVERSARIAL, seed: int = SEED) -> list[str]:
    """``n`` seeded adversarial lines (pure function of ``seed``)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        segs = [_segment(rng) for _ in range(rng.randint(1, 20))]
        seps = [rng.choice([" ", " ", " ", "", rng.choice(_SPACES)]) for _ in segs]
        out.append("".join(s + sep for s, sep in zip(segs, seps, strict=True)))
    return out


def corpus() -> list[str]:
    """Real lines then adversarial lines (raises RegistryUnavailable when offline)."""
    return real_lines() + adversarial_lines()


def corpus_sha256(lines: list[str]) -> str:
    """Digest of the corpus text (lone surrogates included)."""
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode("utf-8", "surrogatepass") + b"\x00")
    return h.hexdigest()


def ids_digest(ids: list[int]) -> str:
    """Short digest of one line's id list, as stored in the fixtures."""
    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:16]


def fixture_path(mode: str) -> Path:
    return FIXTURES / f"google_{mode}.json.gz"


def read_fixture(mode: str) -> dict:
    with gzip.open(fixture_path(mode), "rt", encoding="utf-8") as f:
        return json.load(f)


def write_fixture(mode: str, payload: dict) -> Path:
    path = fixture_path(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(path, "wb", mtime=0) as f:  # mtime=0: identical bytes on regeneration
        f.write(json.dumps(payload, separators=(",", ":")).encode())
    return path


def load_google_tokenization(path: str | Path) -> ModuleType:
    """Import Google's ``tokenization.py`` from ``path`` with stub ``tensorflow`` and ``six``.

    Google's file only needs ``tf.gfile.GFile`` (a plain ``open`` does) and ``six.PY2/PY3``.
    The stubs are installed only while importing and only if the real modules are absent.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "tokenization.py"
    stubs = {"tensorflow": types.ModuleType("tensorflow"), "six": types.ModuleType("six")}
    stubs["tensorflow"].gfile = types.SimpleNamespace(GFile=open)  # type: ignore[attr-defined]
    stubs["six"].PY2, stubs["six"].PY3 = False, True  # type: ignore[attr-defined]
    added = [name for name in stubs if name not in sys.modules]
    for name in added:
        sys.modules[name] = stubs[name]
    try:
        spec = importlib.util.spec_from_file_location("google_bert_tokenization", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for name in added:
            del sys.modules[name]
    return module


def pairs_in_chunks(tokenizer, a: list[str], b: list[str], keys: tuple[str, ...], size: int = 50,
                    **kwargs) -> dict[str, list]:
    """A ``tokenizers``-backed peer called on pairs ``size`` at a time, keeping only ``keys``.

    With ``truncation=True`` the Rust ``tokenizers`` builds the overflow of every pair (the cross
    product of A's and B's overflowing windows) even when nobody asks for it; two 2,000-token
    lines at ``max_length=16`` make tens of thousands of encodings. On the whole batch at once
    that took 19 GB, so the peer sees small chunks and its overflow is dropped between them.
    """
    out: dict[str, list] = {k: [] for k in keys}
    for start in range(0, len(a), size):
        enc = tokenizer(a[start:start + size], b[start:start + size], **kwargs)
        for k in keys:
            out[k] += enc[k]
    return out
