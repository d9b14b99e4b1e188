"""Hugging Face checkpoint directories: loading and saving through the family's weight map.

The name maps live in :mod:`bertkit.convert.weight_maps`, one per family, chosen by the config's
``model_type``. Loading accepts keys with or without the base prefix (``bert.``), legacy names
(``gamma``/``beta``), and ignores legacy buffers such as ``embeddings.position_ids``. Missing
encoder weights or a shape mismatch raise ``CheckpointError`` naming the file and the key, before
anything is copied into the model; missing task heads (pooler, MLM, NSP) are initialised and
reported in one log line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from bertkit.config import AutoConfig, BertConfig, ConfigError
from bertkit.convert.weight_maps import BERT, WEIGHT_MAPS, WeightMap, weight_map
from bertkit.errors import BertkitError
from bertkit.fileio import atomic_path

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=nn.Module)


class CheckpointError(BertkitError, RuntimeError):
    """A checkpoint is unreadable or does not fit the model; the message names file and key."""


def map_of(model: nn.Module) -> WeightMap:
    """The weight map of ``model``'s family (its config's ``model_type``; BERT by default)."""
    return weight_map(getattr(getattr(model, "config", None), "model_type", "bert"))


def hf_names(our_key: str) -> tuple[str, ...]:
    """BERT's HF key(s), without the ``bert.`` prefix, that hold our parameter ``our_key``.

    >>> hf_names("layers.3.attn.qkv.bias")[1]
    'encoder.layer.3.attention.self.key.bias'
    >>> hf_names("bert.embeddings.norm.weight")
    ('embeddings.LayerNorm.weight',)
    """
    return BERT.hf_names(our_key)


def is_bert_key(key: str) -> bool:
    """True when ``key`` (an HF name, any prefix or legacy form) is a weight some BERT model has."""
    return BERT.knows(key)


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """Read ``model.safetensors`` or ``pytorch_model.bin`` (``weights_only=True``)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # safetensors and torch raise many types for a damaged file
        raise CheckpointError(f"{path}: cannot read weights ({type(e).__name__}: {e})") from e
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
    return dict(state)


def find_weights(directory: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory}: no model.safetensors or pytorch_model.bin")


def _piece_shape(shape: torch.Size, pieces: int) -> tuple[int, ...]:
    """The shape each of ``pieces`` HF tensors must have to fill our (fused) parameter."""
    return (shape[0] // pieces, *shape[1:])


def check_shapes(hf: Mapping[str, Tensor], model_state: Mapping[str, Tensor], source: str,
                 origin: Mapping[str, str] | None = None, wmap: WeightMap = BERT
                 ) -> dict[str, list[str]]:
    """Check every HF tensor (normalised keys) that feeds ``model_state`` against its shape.

    Each of the fused q/k/v pieces is checked on its own, so the error names the one wrong key.
    ``origin`` maps an HF key to the name it had in the file (Google's variable names). Returns
    {missing our-key: the HF keys absent for it}. Raises CheckpointError naming ``source``.
    """
    origin = origin or {}
    missing: dict[str, list[str]] = {}
    for key, param in model_state.items():
        names = wmap.hf_names(key)
        absent = [n for n in names if n not in hf]
        if absent:
            missing[key] = absent
            continue
        want = _piece_shape(param.shape, len(names))
        for n in names:
            if tuple(hf[n].shape) != want:
                fused = f" (one of {len(names)} pieces of {key})" if len(names) > 1 else ""
                raise CheckpointError(
                    f"{source}: {origin.get(n, n)} has shape {tuple(hf[n].shape)}, but the "
                    f"model needs {want}{fused}" + ("" if fused else f" for {key}"))
    return missing


def hf_to_ours(hf_state: Mapping[str, Tensor], model: nn.Module, source: str = "checkpoint",
               origin: Mapping[str, str] | None = None
               ) -> tuple[dict[str, Tensor], dict[str, list[str]], list[str]]:
    """Map an HF state dict onto ``model``'s keys, checking shapes.

    Returns (our_state, {missing our-key: the HF keys absent for it}, unused HF keys). Raises
    CheckpointError on a shape mismatch, naming ``source`` and the key (as ``origin`` names it).
    """
    wmap = map_of(model)
    hf = {wmap.normalise(k): v for k, v in hf_state.items()}
    named = {wmap.normalise(k): v for k, v in (origin or {}).items()}
    missing = check_shapes(hf, model.state_dict(), source, named, wmap)
    used: set[str] = set()
    ours: dict[str, Tensor] = {}
    for key, param in model.state_dict().items():
        if key in missing:
            continue
        names = wmap.hf_names(key)
        used.update(names)
        tensor = hf[names[0]] if len(names) == 1 else torch.cat([hf[n] for n in names], dim=0)
        ours[key] = tensor.to(param.dtype)
    unused = sorted(named.get(k, k) for k in hf if k not in used and not wmap.ignorable.search(k))
    return ours, missing, unused


def ours_to_hf(model: nn.Module) -> dict[str, Tensor]:
    """Our state dict in HF names; tied copies omitted.

    Our head models keep the base model under the family's prefix (``bert.``, ``roberta.``, ...)
    as HF does, so a key keeps its prefix; heads beside the base model have none.
    """
    wmap = map_of(model)
    out: dict[str, Tensor] = {}
    for key, tensor in model.state_dict().items():
        names = wmap.hf_names(key)
        prefix = wmap.prefix if key.startswith(wmap.prefix) else ""
        pieces = tensor.chunk(len(names), dim=0) if len(names) > 1 else (tensor,)
        for name, piece in zip(names, pieces, strict=True):
            out[prefix + name] = piece.detach().contiguous().clone()
    return out


def check_family(state: Mapping[str, Tensor], wmap: WeightMap, source: str) -> None:
    """Raise CheckpointError when ``state`` holds weights of another family than ``wmap``'s.

    The error names ``source``, the first key ``wmap``'s family has no place for, and the
    families whose maps know every key (a config.json that lies about ``model_type``).
    """
    unknown = [k for k in state if not wmap.knows(k)]
    if not unknown:
        return
    others = [m.model_type for m in WEIGHT_MAPS.values()
              if m is not wmap and all(m.knows(k) for k in state)]
    if others:
        raise CheckpointError(
            f"{source}: these are the weights of a {' or '.join(others)} model, but config.json "
            f"says model_type {wmap.model_type!r}: key {unknown[0]!r} is no "
            f"{wmap.model_type} weight (config.json's model_type must name the checkpoint's "
            f"family)")


def _read_directory(directory: Path) -> tuple[BertConfig, dict[str, Tensor], str,
                                               dict[str, str] | None]:
    """(config, HF-named state, source file for errors, {HF key: name in the file} or None)."""
    from bertkit.convert.google import is_google_dir, load_google_state

    if is_google_dir(directory):
        config, state, google = load_google_state(directory)
        return config, state, str(google.index), google.origin
    config = AutoConfig.from_json_file(directory / "config.json")
    weights = find_weights(directory)
    return config, read_state_dict(weights), str(weights), None


def load_pretrained_into(cls: Callable[..., M], path: str | Path, **overrides: Any) -> M:
    """Build ``cls`` from ``path``: an HF directory (config.json + weights) or Google's layout
    (bert_config.json + a TensorFlow checkpoint, read without TensorFlow)."""
    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(f"model directory not found: {directory}")
    config, state, source, origin = _read_directory(directory)
    expected = getattr(cls, "config_class", BertConfig)
    if type(config) is not expected:
        raise ConfigError(
            f"{directory / 'config.json'}: model_type is {config.model_type!r}, not "
            f"{expected.model_type!r}: a {config.model_type} checkpoint cannot load as "
            f"{getattr(cls, '__name__', cls)} (bertkit.AutoModel picks the family)")
    known = {f for f in vars(config) if f != "extra"}
    for k, v in overrides.items():  # unknown keys (id2label, problem_type, ...) go to ``extra``
        if k in known:
            setattr(config, k, v)
        else:
            config.extra[k] = v
    config.validate(str(directory / ("config.json" if origin is None else "bert_config.json")))
    model = cls(config)
    check_family(state, map_of(model), source)
    ours, missing, unused = hf_to_ours(state, model, source, origin)
    del state
    heads = [k for k in missing if map_of(model).is_head(k)]
    body = [k for k in missing if k not in heads]
    if body:
        shown = ", ".join(f"{', '.join(missing[k])} (for {k})" for k in body[:5])
        raise CheckpointError(f"{source}: missing {len(body)} weight(s) the model needs: {shown}"
                              + (" ..." if len(body) > 5 else ""))
    model.load_state_dict(ours, strict=False)
    if heads:
        groups = sorted({k.removeprefix("bert.").split(".")[0] for k in heads})
        logger.info("%s: initialised fresh (not in the checkpoint): %s", source, ", ".join(groups))
    if unused:
        logger.info("%s: %d checkpoint tensor(s) not used by %s: %s", source, len(unused),
                    type(model).__name__, ", ".join(unused[:5]) + (" ..." if len(unused) > 5 else ""))
    return model


def save_pretrained(model: nn.Module, path: str | Path) -> None:
    """Write ``config.json`` and ``model.safetensors`` (HF names) into ``path``, atomically."""
    from safetensors.torch import save_file

    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    state = ours_to_hf(model)
    with atomic_path(directory / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    config: BertConfig = model.config  # type: ignore[assignment]
    config.to_json_file(directory / "config.json",
                        architectures=[getattr(model, "hf_architecture", "BertModel")])
