"""One real Label Studio server per test session, and the media it serves.

The server is started by the toolkit's own code (``annotation.server.start``)
on a free 127.0.0.1 port with a temporary data directory and three rater
accounts, and stopped at the end. A GCS emulator (``tests/gcs_emulator.py``)
runs beside it and the server starts with ``STORAGE_EMULATOR_HOST`` in its
environment (the server inherits ours), so its GCS import storages reach the
emulator (tests/annotation/test_gcs_media.py); the tests' own process keeps
its environment. Tests that use it carry
``pytest.mark.xdist_group("labelstudio")`` so that one worker runs them all.

Without ``.venv-labelstudio`` (``make labelstudio``) the server tests skip,
unless ``AUDIOSCOPE_REQUIRE_LABELSTUDIO`` is set (``make test`` sets it): then
they fail, so CI cannot pass by skipping.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from audioscope import cli
from audioscope.annotation.client import Client
from audioscope.annotation.credentials import Secrets
from audioscope.annotation.server import ServerSettings

from tests.gcs_emulator import GcsEmulator, pointed_at

from .helpers import make_inputs

#: Five raters: each clip goes to three of them (the issue's check is N = 5).
RATERS = ("rater1", "rater2", "rater3", "rater4", "rater5")


def require_labelstudio() -> None:
    from audioscope.annotation.server import ServerError, find_executable

    try:
        find_executable()
    except ServerError as e:
        if os.environ.get("AUDIOSCOPE_REQUIRE_LABELSTUDIO"):
            pytest.fail(f"AUDIOSCOPE_REQUIRE_LABELSTUDIO is set but {e}")
        pytest.skip(f"Label Studio server not installed (run `make labelstudio`): {e}")


@contextmanager
def server_env(gcs_url: str) -> Iterator[None]:
    """The environment the server starts with: the GCS emulator, and no way out of 127.0.0.1.

    After each access token, google-auth inside Label Studio looks up the
    service account's allowed locations at iamcredentials.googleapis.com (in
    a background thread, whatever the storage endpoint). Through a proxy on a
    closed local port that lookup fails at once and nothing leaves the machine.
    """
    from audioscope.annotation.server import free_port

    dead_end = f"http://127.0.0.1:{free_port()}"
    with pointed_at(gcs_url) as mp:
        for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
            mp.setenv(name, dead_end)
        for name in ("NO_PROXY", "no_proxy"):
            mp.setenv(name, "127.0.0.1,localhost")
        yield


@dataclass
class LabelStudio:
    """The session's server; ``restart`` stops and starts it on the same port and data."""

    settings: ServerSettings
    url: str
    secrets: Secrets
    gcs: GcsEmulator

    @property
    def data_dir(self) -> str:
        return self.settings.data_dir

    @property
    def root(self) -> Path:
        return Path(self.settings.root)

    def stop(self) -> None:
        from audioscope.annotation.server import stop

        stop(self.data_dir)

    def start(self) -> None:
        from audioscope.annotation.server import start

        with server_env(self.gcs.url):
            server = start(self.settings)
        self.url, self.secrets = server.url, server.secrets

    def client(self, rater: str | None = None) -> Client:
        """The admin's client, or a rater's (each rater's project lives in that rater's own organization)."""
        return Client(self.url, self.secrets.raters[rater].token if rater else self.secrets.admin.token)

    def args(self) -> list[str]:
        return ["--server-dir", self.data_dir]


@pytest.fixture(scope="session")
def labelstudio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudio]:
    require_labelstudio()
    from audioscope.annotation.server import free_port, start, stop

    base = tmp_path_factory.mktemp("labelstudio")
    (base / "root").mkdir()
    settings = ServerSettings(
        data_dir=str(base / "server"), port=free_port(), document_root=str(base / "root"), raters=RATERS,
        timeout_s=420.0,
    )  # fmt: skip
    with GcsEmulator(bucket="raters-media") as gcs:
        with server_env(gcs.url):
            server = start(settings)
        ls = LabelStudio(settings, server.url, server.secrets, gcs)
        try:
            yield ls
        finally:
            stop(settings.data_dir)


@pytest.fixture(scope="session")
def media(labelstudio: LabelStudio, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Inputs, 22 sampled clips (pools of 8, 8, 8 asked) and their MP4s under the server's document root."""
    inputs = make_inputs(tmp_path_factory.mktemp("inputs"), videos=8)
    pools = labelstudio.root / "pools"
    assert cli.main([
        "annotate", "sample", "--store", str(inputs["store"]), "--df", str(inputs["df"]), "--annotations", str(pools),
        "--unfiltered-train", "8", "--filtered-train", "8", "--filtered-eval", "8",
    ]) == 0  # fmt: skip
    media_dir = labelstudio.root / "media"
    assert cli.main(["annotate", "render", "--annotations", str(pools), "--media", str(media_dir)]) == 0
    return {**inputs, "pools": pools / "pools.parquet", "media": media_dir}


def new_annotation_dir(media: dict[str, Path], path: Path) -> Path:
    """An annotation folder with the session's pools (its own project once pushed)."""
    path.mkdir(parents=True)
    (path / "pools.parquet").write_bytes(media["pools"].read_bytes())
    return path
