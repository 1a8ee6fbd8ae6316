"""One real Label Studio server per test session, and the media it serves.

The server is started by the toolkit's own code (``annotation.server.start``)
on a free 127.0.0.1 port with a temporary data directory and three rater
accounts, and stopped at the end. Tests that use it carry
``pytest.mark.xdist_group("labelstudio")`` so that one worker runs them all.

Without ``.venv-labelstudio`` (``make labelstudio``) the server tests skip,
unless ``AUDIOSCOPE_REQUIRE_LABELSTUDIO`` is set (``make test`` sets it): then
they fail, so CI cannot pass by skipping.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from audioscope import cli
from audioscope.annotation.client import Client
from audioscope.annotation.credentials import Secrets
from audioscope.annotation.server import ServerSettings

from .helpers import make_inputs

RATERS = ("rater1", "rater2", "rater3")


def require_labelstudio() -> None:
    from audioscope.annotation.server import ServerError, find_executable

    try:
        find_executable()
    except ServerError as e:
        if os.environ.get("AUDIOSCOPE_REQUIRE_LABELSTUDIO"):
            pytest.fail(f"AUDIOSCOPE_REQUIRE_LABELSTUDIO is set but {e}")
        pytest.skip(f"Label Studio server not installed (run `make labelstudio`): {e}")


@dataclass
class LabelStudio:
    """The session's server; ``restart`` stops and starts it on the same port and data."""

    settings: ServerSettings
    url: str
    secrets: Secrets

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

        server = start(self.settings)
        self.url, self.secrets = server.url, server.secrets

    def client(self) -> Client:
        return Client(self.url, self.secrets.admin.token)

    def args(self) -> list[str]:
        return ["--server-dir", self.data_dir]


@pytest.fixture(scope="session")
def labelstudio(tmp_path_factory: pytest.TempPathFactory):
    require_labelstudio()
    from audioscope.annotation.server import free_port, start, stop

    base = tmp_path_factory.mktemp("labelstudio")
    (base / "root").mkdir()
    settings = ServerSettings(
        data_dir=str(base / "server"), port=free_port(), document_root=str(base / "root"), raters=RATERS,
        timeout_s=420.0,
    )  # fmt: skip
    server = start(settings)
    ls = LabelStudio(settings, server.url, server.secrets)
    yield ls
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
