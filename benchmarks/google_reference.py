"""Load Google's original ``create_pretraining_data.py`` (never committed here) with a stub TF.

Set ``BERTKIT_GOOGLE_BERT`` to a checkout of github.com/google-research/bert, or to a directory
holding its ``create_pretraining_data.py`` and ``tokenization.py``. The stub provides only what
instance creation touches: ``tf.gfile.GFile`` (= ``open``), ``tf.logging``, ``tf.flags``.
"""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

FILES = ("create_pretraining_data.py", "tokenization.py")


def google_dir() -> Path | None:
    """A directory with Google's two files, or None when ``BERTKIT_GOOGLE_BERT`` is unset/bad."""
    root = os.environ.get("BERTKIT_GOOGLE_BERT")
    if not root:
        return None
    root_p = Path(root)
    if all((root_p / f).is_file() for f in FILES):
        return root_p
    git_dir = root_p / "repo" if (root_p / "repo").exists() else root_p
    out = Path(tempfile.mkdtemp(prefix="google-bert-"))
    try:
        for f in FILES:
            text = subprocess.run(["git", "-C", str(git_dir), "show", f"HEAD:{f}"], check=True,
                                  capture_output=True, text=True).stdout
            (out / f).write_text(text, encoding="utf-8")
    except (OSError, subprocess.CalledProcessError):
        return None
    return out


def _stub_tensorflow() -> types.ModuleType:
    tf = types.ModuleType("tensorflow")
    flag_values = types.SimpleNamespace()

    def define(name, default, *_a, **_k):
        setattr(flag_values, name, default)

    tf.flags = types.SimpleNamespace(FLAGS=flag_values, DEFINE_string=define,
                                     DEFINE_bool=define, DEFINE_integer=define,
                                     DEFINE_float=define, mark_flag_as_required=lambda *_: None)
    tf.gfile = types.SimpleNamespace(GFile=open, Glob=lambda p: sorted(__import__("glob").glob(p)))
    log = logging.getLogger("google-bert")
    tf.logging = types.SimpleNamespace(info=log.info, set_verbosity=lambda *_: None, INFO=20)
    return tf


def load_google() -> types.ModuleType | None:
    """Google's ``create_pretraining_data`` module (with its ``tokenization``), or None."""
    d = google_dir()
    if d is None:
        return None
    sys.modules.setdefault("tensorflow", _stub_tensorflow())
    if "six" not in sys.modules:
        try:
            import six  # noqa: F401
        except ImportError:
            six_stub = types.ModuleType("six")
            six_stub.PY2, six_stub.PY3 = False, True
            six_stub.text_type, six_stub.binary_type = str, bytes
            sys.modules["six"] = six_stub
    sys.path.insert(0, str(d))
    try:
        return importlib.import_module("create_pretraining_data")
    finally:
        sys.path.remove(str(d))
