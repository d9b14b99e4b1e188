"""Write Google's ids on the parity corpus to ``tests/fixtures/google_<mode>.json.gz``.

Usage::

    git -C /path/to/google-research/bert show HEAD:tokenization.py > /tmp/bert/tokenization.py
    python tests/tools/make_google_fixtures.py /tmp/bert/tokenization.py
    # or: BERTKIT_GOOGLE_BERT=/tmp/bert/tokenization.py python tests/tools/make_google_fixtures.py

Each fixture holds, for one mode (vocab + do_lower_case), a 16-hex sha256 prefix of Google's id
list for every corpus line, Google's full ids for the first lines, and the digests of the corpus,
the vocab and Google's file. Only data produced by Google's code is stored, never its code.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import time
from pathlib import Path

from bertkit import artifacts

logger = logging.getLogger("make_google_fixtures")


def _load_corpus_module():
    path = Path(__file__).resolve().parents[1] / "tokenizer_corpus.py"
    spec = importlib.util.spec_from_file_location("tokenizer_corpus", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("google", nargs="?", default=os.environ.get("BERTKIT_GOOGLE_BERT"),
                        help="path of Google's tokenization.py (or env BERTKIT_GOOGLE_BERT)")
    args = parser.parse_args(argv)
    if not args.google:
        parser.error("give the path of Google's tokenization.py or set BERTKIT_GOOGLE_BERT")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    corpus = _load_corpus_module()
    google = corpus.load_google_tokenization(args.google)
    lines = corpus.corpus()
    google_sha = artifacts.sha256_file(Path(args.google) if Path(args.google).is_file()
                                       else Path(args.google) / "tokenization.py")
    for mode, (_, lower) in corpus.MODES.items():
        vocab = corpus.vocab_path(mode)
        t0 = time.perf_counter()
        full = google.FullTokenizer(str(vocab), do_lower_case=lower)
        ids = [full.convert_tokens_to_ids(full.tokenize(line)) for line in lines]
        payload = {
            "mode": mode,
            "do_lower_case": lower,
            "vocab_sha256": artifacts.sha256_file(vocab),
            "google_tokenization_sha256": google_sha,
            "corpus_sha256": corpus.corpus_sha256(lines),
            "n_lines": len(lines),
            "digests": [corpus.ids_digest(x) for x in ids],
            "ids_head": ids[: corpus.N_IDS_STORED],
        }
        path = corpus.write_fixture(mode, payload)
        logger.info("%s: %d lines in %.1fs -> %s (%d bytes)", mode, len(lines),
                    time.perf_counter() - t0, path, path.stat().st_size)


if __name__ == "__main__":
    main()
