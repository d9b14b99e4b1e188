"""Real artifacts in tests: skip only when the package registry truly cannot be reached.

``ArtifactError`` (a pinned version, file or checksum that is not there) is never caught, so such
a test fails. In CI (``CI=true``) an "unreachable" registry that answers a probe fails too.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest

from bertkit import artifacts

T = TypeVar("T")


def fetch_or_skip(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """``fn(*args, **kw)``, skipping the test when the registry is unreachable."""
    try:
        return fn(*args, **kw)
    except artifacts.RegistryUnavailable as e:
        if os.environ.get("CI") == "true" and artifacts.registry_answers():
            pytest.fail(f"the package registry was reported unreachable while the index answers: "
                        f"{e}")
        pytest.skip(f"package registry unreachable, real artifact not available: {e}")


def load_tool(name: str) -> ModuleType:
    """Import ``tests/tools/NAME.py`` (the fixture writers; their real-text builders are shared)."""
    path = Path(__file__).parent / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
