"""A real GCS API on 127.0.0.1 for tests: ``gcp-storage-emulator`` in a subprocess.

gcsfs sends every request to ``STORAGE_EMULATOR_HOST`` when it is set (it reads
the variable on each request, see ``gcsfs.core._location``), so code under
test uses plain ``gs://`` URIs; child processes inherit the variable. Without
Google credentials gcsfs falls back to anonymous access, which the emulator
accepts. Tests keep apart by using their own prefix in the one bucket.
Listings are cached per gcsfs instance: :func:`reset_gcsfs` drops the cached
instances.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from types import TracebackType
from typing import Iterator

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reset_gcsfs() -> None:
    """Forget cached gcsfs instances (and their listing caches)."""
    from gcsfs.core import GCSFileSystem

    GCSFileSystem.clear_instance_cache()


class GcsEmulator:
    """Start the emulator with one bucket; ``url`` is the value for ``STORAGE_EMULATOR_HOST``."""

    def __init__(self, bucket: str = "releases", start_timeout: float = 30.0) -> None:
        self.bucket = bucket
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()

    def start(self) -> "GcsEmulator":
        code = "import sys; from gcp_storage_emulator.__main__ import main; sys.exit(main())"
        args = [
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--in-memory",
            "--default-bucket",
            self.bucket,
            "-q",
        ]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL, stderr=self._log,
        )  # fmt: skip
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.seek(0)
                err = self._log.read().decode(errors="replace")
                raise RuntimeError(f"gcp-storage-emulator exited at start: {err[-2000:]}")
            if self._ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gcp-storage-emulator did not answer on {self.url} within {self.start_timeout:.0f} s")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/storage/v1/b/{self.bucket}", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
        self._log.close()

    def __enter__(self) -> "GcsEmulator":
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def emulator_env(url: str) -> dict[str, str]:
    """Environment for a child process that should reach the emulator."""
    return {**os.environ, "STORAGE_EMULATOR_HOST": url}


@contextmanager
def pointed_at(url: str) -> Iterator[pytest.MonkeyPatch]:
    """This process's environment pointed at the emulator ``url``, with no Google credentials, until exit.

    Child processes started meanwhile (Beam workers, a Label Studio server)
    inherit it. gcsfs's instance cache is dropped on entry and exit.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STORAGE_EMULATOR_HOST", url)
        mp.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
        mp.setenv("CLOUDSDK_CONFIG", os.devnull)
        reset_gcsfs()
        try:
            yield mp
        finally:
            reset_gcsfs()
