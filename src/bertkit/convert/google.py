"""Google's checkpoint directories (``bert_config.json``, ``vocab.txt``, ``*.ckpt.*``), no TensorFlow.

Google's variable names are the Hugging Face tree with ``/`` separators; the differences are the
rules below: ``kernel`` is stored [in, out] (transposed for a torch ``Linear``), LayerNorm's
``gamma``/``beta`` are weight/bias, embedding tables have no ``/weight`` suffix, and the heads have
their own names (``cls/predictions/output_bias``, ``cls/seq_relationship/output_weights``,
run_classifier's top-level ``output_weights``, run_squad's ``cls/squad/*``). ``global_step`` and
the Adam slots (``*/adam_m``, ``*/adam_v``) are training state, not weights.

    >>> google_to_hf("bert/encoder/layer_3/attention/self/query/kernel")
    ('bert.encoder.layer.3.attention.self.query.weight', True)
    >>> google_to_hf("cls/squad/output_weights")
    ('qa_outputs.weight', False)
    >>> google_to_hf("bert/encoder/layer_3/attention/self/query/kernel/adam_m") is None
    True
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from bertkit.config import BertConfig
from bertkit.convert.hf import CheckpointError, check_shapes, is_bert_key
from bertkit.fileio import atomic_path, atomic_write_text
from bertkit.tokenization.wordpiece import guess_do_lower_case

logger = logging.getLogger(__name__)

# Whole-name renames of the heads; everything else follows the generic rules in ``google_to_hf``.
_HEAD_NAMES = {
    "cls/predictions/output_bias": "cls.predictions.bias",
    "cls/seq_relationship/output_weights": "cls.seq_relationship.weight",
    "cls/seq_relationship/output_bias": "cls.seq_relationship.bias",
    "output_weights": "classifier.weight",  # run_classifier.py's fine-tuned head, [labels, H]
    "output_bias": "classifier.bias",
    "cls/squad/output_weights": "qa_outputs.weight",  # run_squad.py's start/end head, [2, H]
    "cls/squad/output_bias": "qa_outputs.bias",
}
_TRAINING_STATE = re.compile(r"(^|/)global_step$|/adam_[mv]$")
_SUFFIX = {"kernel": "weight", "gamma": "weight", "beta": "bias", "bias": "bias", "weight": "weight"}
# Architectures by the heads a checkpoint holds (HF class names; HF loads each of them).
_ARCHITECTURES = (("qa_outputs.weight", "BertForQuestionAnswering"),
                  ("classifier.weight", "BertForSequenceClassification"),
                  ("cls.seq_relationship.weight", "BertForPreTraining"),
                  ("cls.predictions.bias", "BertForMaskedLM"))


class GoogleCheckpointError(CheckpointError):
    """A Google checkpoint directory is incomplete or does not fit its ``bert_config.json``."""


def google_to_hf(name: str) -> tuple[str, bool] | None:
    """The HF key for Google variable ``name`` and whether to transpose it; None for training state.

    Encoder keys keep HF's ``bert.`` prefix; a name with no rule is returned with ``/`` replaced
    (the caller reports it as unused).
    """
    if _TRAINING_STATE.search(name):
        return None
    if name in _HEAD_NAMES:
        return _HEAD_NAMES[name], False
    parts = [re.sub(r"^layer_(\d+)$", r"layer.\1", p) for p in name.split("/")]
    if parts[-1] in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        return ".".join(parts + ["weight"]), False
    transpose = parts[-1] == "kernel"
    if parts[-1] in _SUFFIX:
        parts[-1] = _SUFFIX[parts[-1]]
    return ".".join(parts), transpose


def is_google_dir(directory: str | Path) -> bool:
    """True for a directory as Google's zips unpack: no HF weights, a TF checkpoint index."""
    d = Path(directory)
    if not d.is_dir() or (d / "model.safetensors").is_file() or (d / "pytorch_model.bin").is_file():
        return False
    return (d / "checkpoint").is_file() or any(d.glob("*.index"))


def read_google_config(directory: Path) -> BertConfig:
    """``bert_config.json`` (Google's keys), or an HF ``config.json`` beside the checkpoint."""
    for name in ("bert_config.json", "config.json"):
        if (directory / name).is_file():
            return BertConfig.from_json_file(directory / name)
    raise GoogleCheckpointError(f"{directory}: no bert_config.json beside the TensorFlow "
                                f"checkpoint (Google's zips ship one; it gives the model's shape)")


@dataclass
class GoogleWeights:
    """A Google checkpoint's weights in HF names, with where each came from."""

    prefix: Path                                  # the checkpoint prefix (``.index`` beside it)
    tensors: dict[str, Tensor] = field(default_factory=dict)   # HF key -> tensor (torch layout;
    #                                                            on the meta device when lazy)
    origin: dict[str, str] = field(default_factory=dict)       # HF key -> Google variable name
    transposed: dict[str, bool] = field(default_factory=dict)  # HF key -> stored [in, out]
    unused: list[str] = field(default_factory=list)            # Google names with no HF key
    skipped: int = 0                                           # global_step and Adam slots

    @property
    def index(self) -> Path:
        return Path(f"{self.prefix}.index")

    @property
    def architecture(self) -> str:
        """The HF class that holds exactly these heads (``BertModel`` when there are none)."""
        return next((arch for key, arch in _ARCHITECTURES if key in self.tensors), "BertModel")


def read_google_weights(directory: str | Path, progress: bool = False,
                        lazy: bool = False) -> GoogleWeights:
    """Read every weight of the checkpoint in ``directory`` into HF names, one tensor at a time.

    Kernels are transposed (and made contiguous) as they are read. With ``lazy``, nothing is read:
    the tensors are shape-and-dtype stand-ins on the meta device (see :func:`write_safetensors`).
    Training state is skipped; names with no HF key are listed in ``unused``.
    """
    from tqdm.auto import tqdm

    from bertkit.convert.tf_checkpoint import TFCheckpoint, find_checkpoint

    prefix = find_checkpoint(directory)
    with TFCheckpoint(prefix) as ckpt:
        out = GoogleWeights(prefix=prefix)
        names = ckpt.names()
        mapped = {n: google_to_hf(n) for n in names}
        wanted = {n: m for n, m in mapped.items() if m is not None and is_bert_key(m[0])}
        out.skipped = sum(m is None for m in mapped.values())
        out.unused = [n for n, m in mapped.items() if m is not None and n not in wanted]
        total = sum(ckpt.nbytes(n) for n in wanted)
        with tqdm(total=0 if lazy else total, unit="B", unit_scale=True, desc="read checkpoint",
                  disable=lazy or not progress) as bar:
            for name, (key, transpose) in wanted.items():
                out.origin[key], out.transposed[key] = name, transpose
                if lazy:
                    shape = ckpt.shape(name)
                    out.tensors[key] = torch.empty(shape[::-1] if transpose else shape,
                                                   dtype=ckpt.dtype(name), device="meta")
                    continue
                tensor = ckpt.read(name)
                out.tensors[key] = tensor.t().contiguous() if transpose else tensor
                bar.update(ckpt.nbytes(name))
    return out


_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                       torch.float64: "F64", torch.int64: "I64", torch.int32: "I32",
                       torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}


def write_safetensors(path: Path, weights: GoogleWeights, keys: dict[str, str],
                      progress: bool = False) -> None:
    """Stream a lazy checkpoint into a ``.safetensors`` file, one tensor in memory at a time.

    ``keys`` maps the file's key to the HF key in ``weights``. The layout is safetensors':
    an 8-byte little-endian header length, a JSON header (dtype, shape and byte range of each
    tensor, padded to 8 bytes) and the tensors' bytes back to back.
    """
    from tqdm.auto import tqdm

    from bertkit.convert.tf_checkpoint import TFCheckpoint

    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for out_key in sorted(keys):
        t = weights.tensors[keys[out_key]]
        size = t.numel() * t.element_size()
        header[out_key] = {"dtype": _SAFETENSORS_DTYPES[t.dtype], "shape": list(t.shape),
                           "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)
    with atomic_path(path) as tmp, open(tmp, "wb") as f, TFCheckpoint(weights.prefix) as ckpt, \
            tqdm(total=offset, unit="B", unit_scale=True, desc="convert",
                 disable=not progress) as bar:
        f.write(len(blob).to_bytes(8, "little") + blob)
        for out_key in sorted(keys):
            key = keys[out_key]
            tensor = ckpt.read(weights.origin[key])
            if weights.transposed[key]:
                tensor = tensor.t().contiguous()
            f.write(tensor.reshape(-1).view(torch.uint8).numpy())  # the buffer itself, no copy
            bar.update(tensor.numel() * tensor.element_size())
            del tensor


def infer_head_config(weights: GoogleWeights, config: BertConfig) -> None:
    """Put what only the tensors say into ``config``: a fine-tuned classifier's label count."""
    w = weights.tensors.get("classifier.weight")
    if w is not None and "num_labels" not in config.extra and "id2label" not in config.extra:
        n = int(w.shape[0])
        config.extra["id2label"] = {str(i): f"LABEL_{i}" for i in range(n)}
        config.extra["label2id"] = {f"LABEL_{i}": i for i in range(n)}


def check_against_config(weights: GoogleWeights, config: BertConfig) -> None:
    """Every tensor's shape against ``bert_config.json``; the encoder complete. Names the tensor."""
    from bertkit.convert.weight_maps import BERT
    from bertkit.models.bert import BertForPreTraining
    from bertkit.models.heads import BertForQuestionAnswering, BertForSequenceClassification

    classes = {"BertForQuestionAnswering": BertForQuestionAnswering,
               "BertForSequenceClassification": BertForSequenceClassification}
    with torch.device("meta"):  # shapes only: no memory, no init
        model = classes.get(weights.architecture, BertForPreTraining)(config)
    hf = {BERT.normalise(k): v for k, v in weights.tensors.items()}
    origin = {BERT.normalise(k): v for k, v in weights.origin.items()}
    missing = check_shapes(hf, model.state_dict(), str(weights.index), origin)
    body = [k for k in missing if not BERT.is_head(k)]
    if body:
        raise GoogleCheckpointError(f"{weights.index}: the checkpoint lacks {len(body)} encoder "
                                    f"weight(s), e.g. {missing[body[0]][0]} (for {body[0]})")


# HF classes built without a pooler (``add_pooling_layer=False``); Google's code always has one.
_NO_POOLER = ("BertForQuestionAnswering", "BertForMaskedLM", "BertForTokenClassification")


def _hf_keys(weights: GoogleWeights, architecture: str) -> dict[str, str]:
    """{key in the HF file: key in ``weights``} as ``architecture`` expects them: no ``bert.``
    prefix for a bare BertModel, no pooler for the classes that have none."""
    if architecture == "BertModel":
        return {k.removeprefix("bert."): k for k in weights.tensors}
    keys = {k: k for k in weights.tensors}
    if architecture in _NO_POOLER and "bert.pooler.dense.weight" in keys:
        logger.info("%s: %s has no pooler; bert/pooler/* is left out", weights.index, architecture)
        keys = {k: v for k, v in keys.items() if not k.startswith("bert.pooler.")}
    return keys


def convert_google_dir(src: str | Path, out: str | Path, do_lower_case: bool | None = None,
                       progress: bool = False) -> Path:
    """Write ``src`` (a Google checkpoint directory) to ``out`` as a Hugging Face directory.

    Writes config.json (with ``architectures`` for the heads found), model.safetensors, vocab.txt
    and tokenizer_config.json (``do_lower_case`` as given, else guessed from the vocabulary and
    said so in the log). Returns ``out``.
    """
    src, out = Path(src), Path(out)
    if not is_google_dir(src):
        raise GoogleCheckpointError(f"{src}: not a Google checkpoint directory (expected "
                                    f"bert_config.json and a *.ckpt.index, or a 'checkpoint' file)")
    config = read_google_config(src)
    vocab = src / "vocab.txt"
    if not vocab.is_file():
        raise GoogleCheckpointError(f"{src}: no vocab.txt beside the checkpoint")
    weights = read_google_weights(src, lazy=True)
    infer_head_config(weights, config)
    check_against_config(weights, config)
    architecture = weights.architecture
    if do_lower_case is None:
        do_lower_case = guess_do_lower_case(vocab)
        logger.info("%s: do_lower_case=%s, guessed from the vocabulary (%s); pass --cased or "
                    "--uncased to set it", vocab, do_lower_case,
                    "no upper-case pieces" if do_lower_case else "it has upper-case pieces")
    if weights.unused:
        logger.info("%s: %d tensor(s) with no Hugging Face name, not converted: %s", weights.index,
                    len(weights.unused), ", ".join(weights.unused[:5])
                    + (" ..." if len(weights.unused) > 5 else ""))
    out.mkdir(parents=True, exist_ok=True)
    write_safetensors(out / "model.safetensors", weights, _hf_keys(weights, architecture),
                      progress=progress)
    config.to_json_file(out / "config.json", architectures=[architecture])
    with atomic_path(out / "vocab.txt") as tmp:
        shutil.copyfile(vocab, tmp)
    atomic_write_text(out / "tokenizer_config.json", json.dumps(
        {"do_lower_case": do_lower_case, "tokenizer_class": "BertTokenizer",
         "model_max_length": config.max_position_embeddings}, indent=2) + "\n")
    logger.info("wrote %s (%s) to %s", architecture, src, out)
    return out


def load_google_state(directory: Path) -> tuple[BertConfig, dict[str, Tensor], GoogleWeights]:
    """Config and HF-named state of a Google directory, for ``from_pretrained``."""
    config = read_google_config(directory)
    weights = read_google_weights(directory)
    infer_head_config(weights, config)
    if weights.unused:
        logger.info("%s: %d tensor(s) not used: %s", weights.index, len(weights.unused),
                    ", ".join(weights.unused[:5]) + (" ..." if len(weights.unused) > 5 else ""))
    return config, weights.tensors, weights


# -- the command --------------------------------------------------------------------------------

@dataclass
class ConvertArgs:
    """Convert a Google checkpoint directory (bert_config.json, vocab.txt, bert_model.ckpt.*) into
    a Hugging Face directory that bertkit and transformers load. TensorFlow is not needed."""

    src: Path = field(metadata={"positional": True, "help":
        "the directory Google's zip unpacks to (a *.ckpt.index or a 'checkpoint' file in it)"})
    out: Path = field(metadata={"help": "the Hugging Face directory to write (config.json, "
                                        "model.safetensors, vocab.txt, tokenizer_config.json)"})
    cased: bool | None = field(default=None, metadata={
        "help": "--cased keeps case (do_lower_case=false), --no-cased lower-cases; default: "
                "guessed from the vocabulary (upper-case pieces mean a cased model) and logged"})
    overwrite: bool = field(default=False, metadata={
        "help": "replace the model files in a non-empty --out"})


def run_convert(args: ConvertArgs) -> int:
    if args.out.exists() and not args.out.is_dir():
        raise GoogleCheckpointError(f"{args.out}: exists and is not a directory")
    if args.out.is_dir() and any(args.out.iterdir()) and not args.overwrite:
        raise GoogleCheckpointError(f"{args.out}: not empty; pass --overwrite to replace the "
                                    f"model files in it, or choose another --out")
    lower = None if args.cased is None else not args.cased
    convert_google_dir(args.src, args.out, do_lower_case=lower, progress=sys.stderr.isatty())
    return 0


__all__ = ["ConvertArgs", "run_convert", "GoogleCheckpointError", "GoogleWeights", "convert_google_dir", "google_to_hf",
           "check_against_config", "guess_do_lower_case", "is_google_dir", "load_google_state", "read_google_weights"]
