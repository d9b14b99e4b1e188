"""Registry downloads: the PyPI simple-index path (PEP 691), its checks, and the pip fallback.

A small HTTP server on 127.0.0.1 plays the index, so these tests need no network.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bertkit import artifacts
from bertkit.artifacts import ArtifactError, Package

PKG = Package("pypi", "Some_Pkg", "1.0.0")


def _entry(name: str, body: bytes = b"", sha: str | None = None, **kw) -> dict:
    return {"filename": name, "url": f"/files/{name}",
            "hashes": {"sha256": sha or hashlib.sha256(body).hexdigest()}, **kw}


def test_pick_release_file_prefers_pure_wheel_of_the_pinned_version() -> None:
    files = [_entry("some_pkg-1.0.0.tar.gz"), _entry("some_pkg-1.0.0-cp311-cp311-linux.whl"),
             _entry("some_pkg-1.0.0-py3-none-any.whl"), _entry("some_pkg-1.0.1-py3-none-any.whl"),
             _entry("some_pkg-1.0.0-py2-none-any.whl", yanked=True)]
    assert artifacts._pick_release_file(files, PKG)["filename"] == "some_pkg-1.0.0-py3-none-any.whl"
    sdist_only = [_entry("some-pkg-1.0.0.tar.gz"), _entry("some-pkg-0.9.tar.gz")]
    assert artifacts._pick_release_file(sdist_only, PKG)["filename"] == "some-pkg-1.0.0.tar.gz"
    with pytest.raises(ArtifactError, match="no wheel or sdist of Some_Pkg==1.0.0"):
        artifacts._pick_release_file([_entry("some_pkg-2.0.tar.gz")], PKG)


class _Index(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[str, bytes]] = {}
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.seen.append(self.path)
        if self.path not in self.routes:
            self.send_error(404)
            return
        kind, body = self.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def index(monkeypatch, tmp_path: Path) -> Iterator[tuple[str, dict]]:
    """A loopback index; yields (base URL, routes) and points bertkit's cache at tmp_path."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Index)
    _Index.routes, _Index.seen = {}, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("BERTKIT_PYPI_INDEX", base + "/simple/")
    monkeypatch.setenv("BERTKIT_CACHE", str(tmp_path / "cache"))
    try:
        yield base, _Index.routes
    finally:
        server.shutdown()
        server.server_close()


def _listing(*entries: dict, base: str) -> tuple[str, bytes]:
    files = [{**e, "url": base + e["url"]} for e in entries]
    return "application/vnd.pypi.simple.v1+json", json.dumps({"files": files}).encode()


def test_fetch_package_from_the_index_checks_its_sha256(index, monkeypatch) -> None:
    base, routes = index
    body = b"archive bytes " * 1000
    routes["/simple/some-pkg/"] = _listing(_entry("some_pkg-1.0.0.tar.gz", body), base=base)
    routes["/files/some_pkg-1.0.0.tar.gz"] = ("application/octet-stream", body)
    monkeypatch.setattr(artifacts, "_run_client", lambda *a: pytest.fail("pip was not needed"))
    path = artifacts.fetch_package(PKG)
    assert path.name == "some_pkg-1.0.0.tar.gz" and path.read_bytes() == body
    assert artifacts.fetch_package(PKG) == path  # cached: no second request
    assert _Index.seen.count("/files/some_pkg-1.0.0.tar.gz") == 1

    other = Package("pypi", "bad-pkg", "2.0")
    routes["/simple/bad-pkg/"] = _listing(_entry("bad_pkg-2.0.tar.gz", sha="0" * 64), base=base)
    routes["/files/bad_pkg-2.0.tar.gz"] = ("application/octet-stream", body)
    with pytest.raises(ArtifactError, match="bad_pkg-2.0.tar.gz from .* has sha256 .*index says"):
        artifacts._download_from_index(other, Path(artifacts.cache_dir()))


def test_index_without_pep691_falls_back_to_pip(index, monkeypatch) -> None:
    base, routes = index
    routes["/simple/some-pkg/"] = ("text/html", b"<html><a href='x'>some_pkg-1.0.0.tar.gz</a>")
    calls: list[Package] = []

    def fake_pip(pkg: Package, dest: Path) -> None:
        calls.append(pkg)
        (dest / "some_pkg-1.0.0.tar.gz").write_bytes(b"from pip")

    monkeypatch.setattr(artifacts, "_run_client", fake_pip)
    path = artifacts.fetch_package(PKG)
    assert calls == [PKG] and path.read_bytes() == b"from pip"
    assert not [p for p in path.parent.parent.iterdir() if p.name.startswith(".tmp-")]
