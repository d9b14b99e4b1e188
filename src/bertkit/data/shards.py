"""On-disk format of pre-training instances and the Dataset that reads it.

A data directory holds:

* ``shard-BBBBB-PPP-DDD.npy``: one per task (pool block B, part P, dupe copy D), a 1-D numpy
  structured array of fixed-length rows, memory-mappable (``np.load(..., mmap_mode="r")``). Row
  fields (L = max_seq_length, P = max_predictions_per_seq; ids are uint16 when the vocabulary has
  at most 65,536 entries, else int32):

  ``input_ids`` [L] (masked for static masking, 0-padded), ``length`` (tokens incl. specials),
  ``a_length`` (start token, A, separator: segment 0), ``next_sentence_label``, ``num_masked``,
  ``masked_lm_positions`` [P], ``masked_lm_ids`` [P] and, for dynamic whole-word masking,
  ``continuation`` [ceil(L/8)] (packed bits: the piece continues the previous word).
* ``shard-*.json``: the shard's row count, sha256 and statistics (written after the shard; a shard
  counts as done only when both exist, so a rerun redoes an interrupted one).
* ``vocab.txt``: a copy of the vocabulary, and ``index.json``: format, settings, vocab sha256 and
  special ids, counts, and every shard with its rows and sha256. ``run.json`` exists while a run
  is incomplete and lets a rerun resume.

Every file is written to a temp file and renamed, so an interruption never leaves half a shard.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bertkit.data import masking as M
from bertkit.data.vocab_files import data_tokenizer, vocab_sha256
from bertkit.errors import BertkitError
from bertkit.fileio import atomic_write_bytes, atomic_write_text, sha256_file
from bertkit.tokenization.tokenizer import load_vocab

logger = logging.getLogger(__name__)

FORMAT = "bertkit-pretraining-shards-v1"
FEATURES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids",
            "masked_lm_weights", "next_sentence_labels")

__all__ = ["FORMAT", "FEATURES", "InspectDataArgs", "PretrainingDataset", "ShardError",
           "inspect_data", "load_index", "row_dtype", "run_inspect_data"]


class ShardError(BertkitError, ValueError):
    """A data directory is missing, damaged, or does not match the vocabulary."""


def row_dtype(settings: Any, vocab_size: int) -> np.dtype:
    """The structured dtype of one row for ``settings`` (an InstanceSettings or its dict)."""
    get = settings.get if isinstance(settings, dict) else lambda k: getattr(settings, k)
    L, P = int(get("max_seq_length")), int(get("max_predictions_per_seq"))
    ids = np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<i4")
    fields: list[tuple[Any, ...]] = [
        ("input_ids", ids, (L,)), ("length", "<u2"), ("a_length", "<u2"),
        ("next_sentence_label", "u1"), ("num_masked", "<u2"),
        ("masked_lm_positions", "<u2", (P,)), ("masked_lm_ids", ids, (P,))]
    if get("masking") == "dynamic" and get("do_whole_word_mask"):
        fields.append(("continuation", "u1", ((L + 7) // 8,)))
    return np.dtype(fields)


def shard_name(block: int, part: int, dupe: int) -> str:
    return f"shard-{block:05d}-{part:03d}-{dupe:03d}"


def write_shard(out: Path, name: str, rows: np.ndarray, stats: dict[str, int]) -> dict[str, Any]:
    """Write ``rows`` as ``name.npy`` then its ``name.json`` meta, both atomically."""
    buf = io.BytesIO()
    np.save(buf, rows, allow_pickle=False)
    data = buf.getvalue()
    atomic_write_bytes(out / f"{name}.npy", data)
    meta = {"file": f"{name}.npy", "rows": int(len(rows)),
            "sha256": hashlib.sha256(data).hexdigest(), "stats": stats}
    atomic_write_text(out / f"{name}.json", json.dumps(meta) + "\n")
    return meta


def read_shard_meta(out: Path, name: str) -> dict[str, Any] | None:
    """The meta of a finished shard, or None when it is absent or incomplete."""
    meta_path, npy = out / f"{name}.json", out / f"{name}.npy"
    if not (meta_path.is_file() and npy.is_file()):
        return None
    try:
        return json.loads(meta_path.read_text(encoding="utf-8"))
    except ValueError:
        return None


def begin_run(out: Path, settings_dict: dict[str, Any], vocab_file: Path,
              inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """Claim ``out`` for a run: fresh, resumable (same ``run.json``), or already complete."""
    from bertkit.data.vocab_files import copy_vocab

    run = {"format": FORMAT, "settings": settings_dict, "vocab_sha256": vocab_sha256(vocab_file),
           "inputs": inputs}
    out.mkdir(parents=True, exist_ok=True)
    index_path, run_path = out / "index.json", out / "run.json"
    if index_path.is_file():
        index = read_json(index_path)
        if {k: index.get(k) for k in run} == run:
            return {"complete": True, "index": index}
        raise ValueError(f"{out} holds data made from other inputs or settings; "
                         "choose another --out or delete it")
    if run_path.is_file():
        if read_json(run_path) != run:
            raise ValueError(f"{out} holds an unfinished run with other inputs or settings; "
                             "choose another --out or delete it")
        logger.info("resuming the unfinished run in %s", out)
    elif any(p.name not in (".work", ".lock") for p in out.iterdir()):
        raise ValueError(f"{out} is not empty; choose an empty or new directory")
    copy_vocab(vocab_file, out)
    atomic_write_text(run_path, json.dumps(run, indent=1) + "\n")
    return run


def finish_run(out: Path, metas: list[dict[str, Any]], vocab: dict[str, Any],
               n_input_bytes: int) -> dict[str, Any]:
    """Write ``index.json`` from the shards' metas and drop ``run.json`` and the metas."""
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    metas = sorted(metas, key=lambda m: m["file"])
    stats: dict[str, int] = {}
    for m in metas:
        for k, v in m["stats"].items():
            stats[k] = stats.get(k, 0) + v
    dupes = run["settings"]["dupe_factor"]
    counts = {"input_bytes": n_input_bytes, "documents": stats.get("document_copies", 0) // dupes,
              "instances": sum(m["rows"] for m in metas), **stats}
    dtype = row_dtype(run["settings"], vocab["size"])
    index = {**run, "vocab": {"file": "vocab.txt", "sha256": run["vocab_sha256"], **vocab},
             "row_dtype": dtype.descr, "counts": counts,
             "shards": [{k: m[k] for k in ("file", "rows", "sha256")} for m in metas]}
    atomic_write_text(out / "index.json", json.dumps(index, indent=1) + "\n")
    for m in metas:
        (out / m["file"]).with_suffix(".json").unlink(missing_ok=True)
    (out / "run.json").unlink(missing_ok=True)
    return index


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file of a data directory; ShardError names the file (and line) when it is
    not UTF-8, not JSON or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ShardError(f"{path}: damaged, not UTF-8 ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise ShardError(f"{path}:{e.lineno}: damaged, invalid JSON ({e.msg}); remake the data "
                         "directory") from None
    if not isinstance(data, dict):
        raise ShardError(f"{path}: damaged, expected a JSON object")
    return data


def load_index(data_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``index.json`` of a finished data directory.

    Raises:
        ShardError: no such directory or index, or a malformed one (naming the file and line).
    """
    d = Path(data_dir)
    if d.exists() and not d.is_dir():
        raise ShardError(f"{d} is a file, not a pre-training data directory")
    path = d / "index.json"
    if not path.is_file():
        hint = " (an unfinished run: rerun the same command)" if (path.parent /
                                                                     "run.json").is_file() else ""
        raise ShardError(f"{path} not found: not a finished pre-training data directory{hint}")
    index = read_json(path)
    if index.get("format") != FORMAT:
        raise ShardError(f"{path}: unknown format {index.get('format')!r}, expected {FORMAT}")
    missing = [k for k in ("settings", "vocab", "row_dtype", "shards") if k not in index]
    if missing:
        raise ShardError(f"{path}: damaged, no {', '.join(missing)}; remake the data directory")
    return index


@dataclass
class PretrainingDataset:
    """Map-style dataset over a data directory; ``ds[i]`` is a dict of tensors (Google's names).

    Shapes per item: ``input_ids``, ``input_mask``, ``segment_ids`` [L] int64;
    ``masked_lm_positions``, ``masked_lm_ids`` [P] int64; ``masked_lm_weights`` [P] float32;
    ``next_sentence_labels`` [] int64 (absent for objective ``none``).

    The order is a permutation of all rows seeded by ``(seed, epoch)`` (call :meth:`set_epoch`);
    rank r takes every ``world_size``-th row of it from r, cut to ``total // world_size`` so that all
    ranks see the same number (the rest is skipped that epoch, and changes with the epoch), so ranks
    are disjoint. Use it with ``DataLoader(ds, batch_size=B, shuffle=False)``; DataLoader uses
    :meth:`__getitems__`, which masks a whole batch at once. Dynamic masking draws each row's mask
    from ``(seed, epoch, row)``, so it is the same whichever worker or batch fetches it.

    ``vocab_file``, when given, must be the vocabulary the data was made with (sha256 checked);
    ``verify`` checks every shard's size and sha256 once, at construction.
    """

    data_dir: str | os.PathLike[str]
    rank: int = 0
    world_size: int = 1
    seed: int = 0
    epoch: int = 0
    vocab_file: str | os.PathLike[str] | None = None
    verify: bool = True
    index: dict[str, Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        d = Path(self.data_dir)
        self.index = load_index(d)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} not in [0, world_size={self.world_size})")
        want = self.index["vocab"]["sha256"]
        if self.vocab_file is not None and vocab_sha256(self.vocab_file) != want:
            raise ShardError(f"vocab {self.vocab_file} does not match the vocabulary {d} was "
                             f"made with (sha256 {want[:12]}...); use that vocab or remake the data")
        settings = self.index["settings"]
        self.dtype = row_dtype(settings, self.index["vocab"]["size"])
        if np.dtype([tuple(f) for f in self.index["row_dtype"]]) != self.dtype:
            raise ShardError(f"{d}: row format in index.json does not match its settings")
        rows = []
        for s in self.index["shards"]:
            path = d / s["file"]
            if not path.is_file():
                raise ShardError(f"{path} is missing")
            if self.verify:
                if sha256_file(path) != s["sha256"]:
                    raise ShardError(f"{path} is damaged (sha256 differs from index.json)")
            rows.append(s["rows"])
        self._starts = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
        self._maps: dict[int, np.ndarray] = {}
        self.objective = settings["objective"]
        self.dynamic = settings["masking"] == "dynamic"
        self.set_epoch(self.epoch)

    @property
    def total_rows(self) -> int:
        return int(self._starts[-1])

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle (and, for dynamic masking, re-mask) for ``epoch``."""
        self.epoch = epoch
        perm = np.random.default_rng([self.seed, epoch]).permutation(self.total_rows)
        n = self.total_rows // self.world_size
        self._rows = perm[self.rank::self.world_size][:n]

    def __len__(self) -> int:
        return len(self._rows)

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers reopen the memory maps
        state = dict(self.__dict__)
        state["_maps"] = {}
        return state

    def _shard(self, k: int) -> np.ndarray:
        if k not in self._maps:
            path = Path(self.data_dir) / self.index["shards"][k]["file"]
            arr = np.load(path, mmap_mode="r")
            if arr.dtype != self.dtype or len(arr) != self.index["shards"][k]["rows"]:
                raise ShardError(f"{path}: rows do not match index.json")
            self._maps[k] = arr
        return self._maps[k]

    def rows(self, global_rows: np.ndarray) -> np.ndarray:
        """The raw structured rows [n] for global row numbers (in the given order)."""
        global_rows = np.asarray(global_rows, dtype=np.int64)
        shard = np.searchsorted(self._starts, global_rows, side="right") - 1
        out = np.empty(len(global_rows), dtype=self.dtype)
        for k in np.unique(shard):
            sel = shard == k
            out[sel] = self._shard(int(k))[global_rows[sel] - self._starts[k]]
        return out

    def features(self, global_rows: np.ndarray) -> dict[str, np.ndarray]:
        """Google's features as numpy arrays [n, ...] for global row numbers."""
        r = self.rows(global_rows)
        L = self.dtype["input_ids"].shape[0]
        pos = np.arange(L)[None, :]
        length, a_len = r["length"].astype(np.int64), r["a_length"].astype(np.int64)
        ids = r["input_ids"].astype(np.int64)
        if self.dynamic:
            v = self.index["vocab"]
            s = self.index["settings"]
            key = (self.seed * 1_000_003 + self.epoch) & 0xFFFFFFFFFFFFFFFF
            cont = None
            if "continuation" in r.dtype.names:
                cont = np.unpackbits(r["continuation"], axis=1, count=L).astype(bool)
            ngram = int(s.get("ngram", 1))
            m = M.mask_batch(ids, length,
                             M.counter_noise(key, global_rows, L, v["size"], ngram=ngram > 1),
                             cls_id=v["cls_id"], sep_id=v["sep_id"], mask_id=v["mask_id"],
                             masked_lm_prob=s["masked_lm_prob"],
                             max_predictions_per_seq=s["max_predictions_per_seq"],
                             continuation=cont, ngram=ngram)
            ids, positions, labels, weights = m.input_ids, m.positions, m.labels, m.weights
        else:
            positions = r["masked_lm_positions"].astype(np.int64)
            labels = r["masked_lm_ids"].astype(np.int64)
            P = positions.shape[1]
            weights = (np.arange(P)[None, :] < r["num_masked"][:, None]).astype(np.float32)
        pad_id = self.index["vocab"].get("pad_id", 0)
        if pad_id:  # shards pad with 0; a family whose padding id is not 0 (RoBERTa: 1)
            ids = np.where(pos < length[:, None], ids, pad_id)
        feats = {"input_ids": ids, "input_mask": (pos < length[:, None]).astype(np.int64),
                 "segment_ids": ((pos >= a_len[:, None]) & (pos < length[:, None])
                                 ).astype(np.int64),
                 "masked_lm_positions": positions.astype(np.int64),
                 "masked_lm_ids": labels.astype(np.int64), "masked_lm_weights": weights}
        if self.objective != "none":
            feats["next_sentence_labels"] = r["next_sentence_label"].astype(np.int64)
        return feats

    def batch(self, indices: list[int]) -> dict[str, Any]:
        """Stacked tensors [n, ...] for dataset positions ``indices``."""
        import torch

        feats = self.features(self._rows[np.asarray(indices, dtype=np.int64)])
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feats.items()}

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        b = self.batch(indices)
        return [{k: v[i] for k, v in b.items()} for i in range(len(indices))]

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return self.__getitems__([i % len(self)])[0]


def _decode_row(tokens: list[str], f: dict[str, np.ndarray], i: int, original: np.ndarray | None
                ) -> str:
    n = int(f["input_mask"][i].sum())
    ids = f["input_ids"][i][:n].tolist()
    labels = {int(p): int(t) for p, t, w in zip(f["masked_lm_positions"][i], f["masked_lm_ids"][i],
                                                f["masked_lm_weights"][i], strict=True) if w > 0}
    words = []
    for p, t in enumerate(ids):
        w = tokens[t] if 0 <= t < len(tokens) else f"<{t}>"
        if p in labels:
            w = f"{w}({tokens[labels[p]]})"
        words.append(w)
    seg_b = int(f["segment_ids"][i].argmax()) if f["segment_ids"][i].any() else n
    text = " ".join(words[:seg_b]) + (" | " + " ".join(words[seg_b:]) if seg_b < n else "")
    nsp = f.get("next_sentence_labels")
    tail = f"  [next_sentence_label={int(nsp[i])}]" if nsp is not None else ""
    return f"{text}{tail}"


def inspect_data(data_dir: str | os.PathLike[str], num_examples: int = 3) -> str:
    """A readable report of a data directory: settings, counts, shards, decoded instances.

    Masked positions show as ``shown(label)``: ``<mask token>(cat)``, ``cat(cat)`` (kept) or
    ``dog(cat)`` (random); `` | `` separates segment A from B.
    """
    d = Path(data_dir)
    ds = PretrainingDataset(d, verify=True)
    idx = ds.index
    if (d / "vocab.txt").is_file():  # not str.splitlines: a vocab line may hold U+2028
        vocab = load_vocab(d / "vocab.txt")
    else:
        vocab = data_tokenizer(d).vocab
    tokens = sorted(vocab, key=vocab.__getitem__)
    lines = [f"data directory: {d}", f"format: {idx['format']}",
             "settings: " + ", ".join(f"{k}={v}" for k, v in idx["settings"].items()),
             f"vocab: {idx['vocab']['size']} entries, sha256 {idx['vocab']['sha256']}",
             "counts: " + ", ".join(f"{k}={v:,}" for k, v in idx["counts"].items()),
             f"shards: {len(idx['shards'])} ({sum(s['rows'] for s in idx['shards']):,} rows), "
             "all checksums verified"]
    n = min(num_examples, len(ds))
    if n:
        f = ds.features(ds._rows[:n])
        lines.append(f"first {n} instances of epoch 0 (masked: shown(label), ' | ' = A | B):")
        lines += [f"  {i}: {_decode_row(tokens, f, i, None)}" for i in range(n)]
    return "\n".join(lines)


@dataclass
class InspectDataArgs:
    """``bertkit inspect-data DIR``."""

    data_dir: str = field(metadata={"help": "directory made by create-pretraining-data",
                                    "positional": True})
    num_examples: int = field(default=3, metadata={"min": 0, "help": "instances to decode"})


def run_inspect_data(args: InspectDataArgs) -> int:
    """CLI entry point: print :func:`inspect_data`; returns the exit code."""
    import sys

    try:
        print(inspect_data(args.data_dir, args.num_examples))
    except ShardError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
