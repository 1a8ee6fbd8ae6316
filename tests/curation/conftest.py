"""Fixtures for the release tests.

``release_inputs``: a private copy (per test) of the three step outputs a
release is made from (``tests/curation/release_inputs.py``), written once per
worker. ``release_root``: a release root, once a local folder and once a
``gs://`` prefix on a GCS emulator (``tests/gcs_emulator.py``) started once
per worker.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from tests.curation.release_inputs import InputDirs, write_df, write_labels, write_mix
from tests.gcs_emulator import GcsEmulator, reset_gcsfs


@pytest.fixture(scope="session")
def release_inputs_template(tmp_path_factory: pytest.TempPathFactory) -> InputDirs:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    base = tmp_path_factory.mktemp("release-inputs")
    video_dir = str(base / "videos")
    df = write_df(base)
    mix = write_mix(base / "mix", video_dir)
    labels = write_labels(base / "labels", video_dir)
    return InputDirs(mix=str(mix), df=str(df), labels=str(labels))


@pytest.fixture()
def release_inputs(release_inputs_template: InputDirs, tmp_path: Path) -> InputDirs:
    """A private copy of the template inputs (tests may change them)."""
    out = {}
    for key in ("mix", "df", "labels"):
        out[key] = str(shutil.copytree(getattr(release_inputs_template, key), tmp_path / "inputs" / key))
    return InputDirs(**out)


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    with GcsEmulator(bucket="releases") as emu:
        yield emu


def _use_emulator(mp: pytest.MonkeyPatch, emu: GcsEmulator, scratch: Path) -> None:
    """Point gcsfs at the emulator, with no Google credentials: gcsfs then skips its gRPC bucket-type
    probe (which an emulator answers only after a minute of retries) and goes anonymous, as in CI."""
    mp.setenv("STORAGE_EMULATOR_HOST", emu.url)
    mp.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    mp.setenv("CLOUDSDK_CONFIG", str(scratch / "no-gcloud-config"))
    reset_gcsfs()


GS_PARAM = pytest.param("gs", marks=[pytest.mark.integration, pytest.mark.xdist_group("gcs_release")])


@pytest.fixture()
def gs_env(gcs_emulator: GcsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GcsEmulator]:
    """The emulator, with gcsfs pointed at it for this test."""
    _use_emulator(monkeypatch, gcs_emulator, tmp_path)
    yield gcs_emulator
    reset_gcsfs()


@pytest.fixture()
def gs_release_root(gs_env: GcsEmulator) -> str:
    """A fresh ``gs://`` prefix in the emulator's bucket."""
    return f"gs://{gs_env.bucket}/{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["local", GS_PARAM])
def release_root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A release root for one test: a local folder, or a fresh prefix of a bucket on the GCS emulator."""
    if request.param == "local":
        return str(tmp_path / "releases")
    return str(request.getfixturevalue("gs_release_root"))


@pytest.fixture(params=["local", GS_PARAM])
def shared_root(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A release root that lasts the whole session (of a worker), for tests that only read what is published."""
    if request.param == "local":
        return str(tmp_path_factory.getbasetemp() / "shared-releases")
    return f"gs://{request.getfixturevalue('gs_env').bucket}/shared-releases"
