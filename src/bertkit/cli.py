"""The ``bertkit`` command: a table {subcommand: (args dataclass, function)}.

Flags come from each command's args dataclass (see ``bertkit.cliargs``). Modules are imported only
for the command that runs, so ``bertkit --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NoReturn

from bertkit.cliargs import add_dataclass_args, dataclass_from_namespace, exit_worker
from bertkit.errors import BertkitError

logger = logging.getLogger("bertkit")

# name: (module, args dataclass, function, one-line help)
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "quickstart": ("bertkit.quickstart", "QuickstartArgs", "run_quickstart",
                   "fetch a real BERT checkpoint and show what bertkit does, end to end"),
    "tokenize": ("bertkit.cli", "TokenizeArgs", "run_tokenize",
                 "WordPiece-tokenize stdin with Google's exact rules (tokens or ids per line)"),
    "embed": ("bertkit.cli", "EmbedArgs", "run_embed",
              "embed stdin sentences with a BERT-family model (JSON lines or .npy)"),
    "corpus list": ("bertkit.data.corpora", "CorpusListArgs", "run_corpus_list",
                    "list the real corpora bertkit can fetch (sizes, licences)"),
    "corpus fetch": ("bertkit.data.corpora", "CorpusFetchArgs", "run_corpus_fetch",
                     "fetch a real corpus and write Google's pre-training text format"),
    "train-vocab": ("bertkit.tokenization.vocab_training", "TrainVocabArgs", "run_train_vocab",
                    "train a vocabulary from raw text: WordPiece vocab.txt (Google's layout), "
                    "--kind bpe (RoBERTa) or unigram (ALBERT's spiece.model)"),
    "create-pretraining-data": (
        "bertkit.data.pretraining", "CreatePretrainingDataArgs", "run_create_pretraining_data",
        "make MLM + NSP/SOP pre-training shards from text, Google's algorithm, in parallel"),
    "inspect-data": ("bertkit.data.shards", "InspectDataArgs", "run_inspect_data",
                     "show the settings, counts and a few decoded instances of a data directory"),
    "pretrain": ("bertkit.train.pretrain", "PretrainArgs", "run_pretrain",
                 "pre-train a BERT-family model (MLM + NSP/SOP; --config roberta-mini, "
                 "albert-mini, ...) on shards; --resume RUN continues exactly"),
    "distill": ("bertkit.distill.general", "DistillArgs", "run_distill",
                "distil a teacher into a smaller student: DistilBERT's loss on pre-training "
                "shards (--student-layers 0,2,4; --resume RUN continues exactly), or with "
                "--task from a fine-tuned teacher on labelled (+ unlabelled) text"),
    "export": ("bertkit.inference.onnx_cli", "ExportArgs", "run_export",
               "write a training checkpoint as a Hugging Face model directory, or a model as "
               "ONNX (--format onnx [--int8])"),
    "plot": ("bertkit.train.pretrain", "PlotArgs", "run_plot",
             "plot a run's loss and accuracy curves to PNG (needs matplotlib)"),
    "finetune": ("bertkit.finetune.run", "FinetuneArgs", "run_finetune",
                 "fine-tune on classification, regression, GLUE, NER, QA or multiple choice"),
    "predict": ("bertkit.finetune.predict", "PredictArgs", "run_predict",
                "predict with a fine-tuned model: JSON or plain lines in, JSON lines out"),
    "extract-features": ("bertkit.extract_features", "ExtractFeaturesArgs", "run_extract_features",
                         "per-token states of chosen layers, Google's extract_features.py "
                         "(JSON lines, .npy or .safetensors)"),
    "convert": ("bertkit.convert.google", "ConvertArgs", "run_convert",
                "convert a Google TensorFlow checkpoint directory to Hugging Face format "
                "(no TensorFlow needed)"),
    "serve": ("bertkit.serve.cli", "ServeArgs", "run_serve",
              "serve a model over HTTP (TEI/OpenAI-compatible JSON, batching across requests; "
              "needs bertkit[serve])"),
    "dataset list": ("bertkit.data.labelled", "DatasetListArgs", "run_dataset_list",
                     "list the real labelled datasets bertkit can fetch for fine-tuning"),
    "dataset fetch": ("bertkit.data.labelled", "DatasetFetchArgs", "run_dataset_fetch",
                      "fetch a labelled dataset and write seeded train/dev/test splits"),
}


@dataclass
class TokenizeArgs:
    """Tokenize each line of standard input; print one line of tokens (or ids) per input line."""

    vocab: Path = field(metadata={"help": "vocab.txt (Google's layout), or a model directory"})
    cased: bool | None = field(default=None, metadata={
        "help": "keep case and accents (do_lower_case=False); default: the model directory's "
                "tokenizer_config.json, else lower-case"})
    ids: bool = field(default=False, metadata={"help": "print vocabulary ids instead of tokens"})
    special: bool = field(default=False, metadata={"help": "add the model's start and end tokens around each line"})


@dataclass
class EmbedArgs:
    """Embed each line of standard input (one sentence per line) with a BERT-family model."""

    model: Path = field(metadata={"help": "model directory in Hugging Face layout "
                                  "(config.json, model.safetensors, and vocab.txt, vocab.json + merges.txt or "
                                  "spiece.model)"})
    pooling: Literal["mean", "cls", "pooler"] = field(
        default="mean", metadata={"help": "mean of token states, the first (start-token) state, or the pooler"})
    normalize: bool = field(default=False, metadata={"help": "L2-normalise the embeddings"})
    output: Path | None = field(default=None, metadata={
        "help": "write a .npy array here instead of JSON lines on stdout"})
    batch_size: int = field(default=32, metadata={"min": 1, "help": "sentences per forward pass"})
    max_length: int = field(default=512, metadata={"min": 2,
        "help": "truncate to this many tokens"})
    threads: int = field(default=0, metadata={"min": 0,
        "help": "torch CPU threads (0: torch's default)"})


def _load_tokenizer(path: Path, cased: bool | None = None):
    """A tokenizer from a vocab.txt or a model directory; ``cased`` None means the dir's setting.

    A model directory's vocab.txt is checked against its config.json (see
    :meth:`BertTokenizer.from_pretrained`)."""
    from bertkit.tokenization import BertTokenizer

    return BertTokenizer.from_pretrained(path, None if cased is None else not cased)


def run_tokenize(args: TokenizeArgs) -> int:
    from bertkit.fileio import utf8_lines

    tok = _load_tokenizer(args.vocab, args.cased)
    out = sys.stdout
    for line in utf8_lines(sys.stdin, "<stdin>"):
        text = line.rstrip("\n")
        if args.special:
            ids = tok.encode(text)
            items = [str(i) for i in ids] if args.ids else tok.convert_ids_to_tokens(ids)
        else:
            tokens = tok.tokenize(text)
            items = [str(i) for i in tok.convert_tokens_to_ids(tokens)] if args.ids else tokens
        out.write(" ".join(items) + "\n")
    return 0


def run_embed(args: EmbedArgs) -> int:
    import errno

    import numpy as np
    import torch

    from bertkit.config import AutoConfig
    from bertkit.fileio import atomic_path, check_output_file, utf8_lines
    from bertkit.inference.pipelines import pipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model.is_file():
        raise NotADirectoryError(errno.ENOTDIR, "is a file, not a model directory (config.json, "
                                 "model.safetensors, vocab.txt)", str(args.model))
    if args.output is not None:
        check_output_file(args.output)
    from bertkit.tokenization import AutoTokenizer

    AutoTokenizer.from_pretrained(args.model)  # first: the tokenizer files (vocab.txt vs config)
    texts = [line.rstrip("\n") for line in utf8_lines(sys.stdin, "<stdin>")]
    if not texts:
        logger.error("no input: pipe one sentence per line into bertkit embed")
        return 2
    limit = AutoConfig.from_pretrained(args.model).max_position_embeddings
    max_length = min(args.max_length, limit)
    pipe = pipeline("feature-extraction", model=args.model, truncate=True, max_length=max_length,
                    batch_size=args.batch_size, max_batch_tokens=args.batch_size * max_length,
                    progress=sys.stderr.isatty())
    vecs = pipe(texts, pooling=args.pooling, normalize=args.normalize)
    assert isinstance(vecs, torch.Tensor)
    if args.output is not None:
        with atomic_path(args.output) as tmp, open(tmp, "wb") as f:
            np.save(f, vecs.numpy())
        logger.info("wrote %s embeddings of size %d to %s", len(texts), vecs.shape[1], args.output)
        return 0
    for i, v in enumerate(vecs.tolist()):
        sys.stdout.write(json.dumps({"index": i, "embedding": [round(x, 7) for x in v]}) + "\n")
    return 0


def _top_parser() -> argparse.ArgumentParser:
    width = max(len(n) for n in COMMANDS)
    lines = "\n".join(f"  {n.ljust(width)}  {h}" for n, (_, _, _, h) in COMMANDS.items())
    p = argparse.ArgumentParser(
        prog="bertkit", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="bertkit: the complete BERT system in PyTorch.",
        epilog=f"commands:\n{lines}\n\nRun 'bertkit COMMAND --help' for a command's flags. Flags "
               "also take Google's underscore spelling (--max_seq_length).")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    groups = sorted({name.split(" ")[0] for name in COMMANDS})
    p.add_argument("command", nargs="?", choices=groups, metavar="COMMAND")
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return p


def _one_line(e: BaseException) -> str:
    """An error as one line; an OS error names its file (``[Errno 2] ... 'x'`` reads badly)."""
    if isinstance(e, OSError) and e.filename is not None and not isinstance(e, BertkitError):
        return f"{e.filename}: {e.strerror or e}"
    return " ".join(str(e).split()) or type(e).__name__


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bertkit`` console script."""
    top = _top_parser()
    ns = top.parse_args(argv)
    if ns.version:
        from bertkit import __version__

        print(f"bertkit {__version__}")
        return 0
    if ns.command is None:
        top.print_help()
        return 0
    logging.basicConfig(level=logging.DEBUG if ns.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    name = ns.command
    if name not in COMMANDS:  # a group such as "corpus": the next word picks the command
        subs = [n.split(" ", 1)[1] for n in COMMANDS if n.startswith(name + " ")]
        if not ns.rest or ns.rest[0] not in subs:
            top.error(f"'{name}' needs one of: {', '.join(subs)}")
        name = f"{name} {ns.rest.pop(0)}"
    module_name, args_name, fn_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    args_cls = getattr(module, args_name)
    sub = argparse.ArgumentParser(prog=f"bertkit {name}",
                                  description=(args_cls.__doc__ or help_text).strip())
    # "-1,-2" (extract-features --layers) is a value, not an option: no flag looks like a number.
    sub._negative_number_matcher = re.compile(r"^-\d+(\.\d+)?(,-?\d+(\.\d+)?)*$")
    add_dataclass_args(sub, args_cls)
    args = dataclass_from_namespace(args_cls, sub.parse_args(ns.rest), sub)
    try:
        return int(getattr(module, fn_name)(args) or 0)
    except (BertkitError, OSError, ValueError, RuntimeError) as e:
        print(f"bertkit {name}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bertkit {name}: interrupted", file=sys.stderr)
        return 130


def run() -> NoReturn:
    """The ``bertkit`` console script: :func:`main`, then :func:`~bertkit.cliargs.exit_worker`
    (so ``torchrun --no-python bertkit pretrain`` ends as the module entry point does)."""
    exit_worker(main())


if __name__ == "__main__":  # pragma: no cover
    run()
