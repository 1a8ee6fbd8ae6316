"""Rater media on ``gs://`` against a GCS emulator and the real Label Studio server.

`annotate render` writes the MP4s to a ``gs://`` MEDIA_DIR on the emulator
(gcs_emulator.py); `annotate push --gcs-credentials-file` gives the project a
GCS import storage with presigned URLs; Label Studio (started with
``STORAGE_EMULATOR_HOST``, see conftest.py) resolves a task's ``gs://``
video to its own URL, which redirects to a V4-signed URL signed with the
service account's key (gcs_auth.py); fetching that URL gives the bytes of
the MP4 in the bucket. The emulator does not check signatures: what is
checked is that Label Studio signs and points at the right object.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest
import requests

from audioscope import cli, storage
from tests.gcs_emulator import pointed_at

from .conftest import LabelStudio, new_annotation_dir
from .gcs_auth import TokenEndpoint, service_account_json

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("labelstudio")]

TITLE = "clips on gs"
CLIPS = 4
RATER = "rater1"


def _project_of(ann: Path, rater: str = RATER) -> int:
    return int(json.loads((ann / "projects.json").read_text())["raters"][rater]["project_id"])


def _assigned(ann: Path, rater: str = RATER) -> int:
    return int((pd.read_parquet(ann / "assignment.parquet")["rater"] == rater).sum())


@dataclass
class GsProject:
    ann: Path
    media: str
    key_file: Path
    tokens: TokenEndpoint
    project_id: int  # rater1's project (each rater has one; push gives each the same storage)

    def client(self, ls: LabelStudio):
        return ls.client(RATER)


def _push_args(ls: LabelStudio, ann: Path, media: str, title: str, key_file: Path | None) -> list[str]:
    key = ["--gcs-credentials-file", str(key_file)] if key_file else []
    return ["annotate", "push", "--annotations", str(ann), "--media", media, "--project-title", title, *key, *ls.args()]


def _push(ls: LabelStudio, project: GsProject) -> None:
    assert cli.main(_push_args(ls, project.ann, project.media, TITLE, project.key_file)) == 0


def _signed_clip(ls: LabelStudio, task_id: int, media: str, rater: str = RATER) -> tuple[str, bytes]:
    """The gs:// URI of a task's clip and the bytes behind the URL Label Studio redirects its video to."""
    task = ls.client(rater).get(f"/api/tasks/{task_id}/")
    gs_uri = f"{media}/clips/{task['data']['clip_id']}.mp4"
    resolved = task["data"]["video"]
    assert resolved != gs_uri and resolved.startswith("/"), resolved
    headers = {"Authorization": ls.client(rater)._authorization()}
    r = requests.get(ls.url + resolved, headers=headers, allow_redirects=False, timeout=60)
    assert r.status_code in (302, 303), (r.status_code, r.text[:500])
    signed = r.headers["Location"]
    assert signed.startswith(f"{ls.gcs.url}/{gs_uri[len('gs://') :]}?") and "X-Goog-Signature=" in signed
    clip = requests.get(signed, timeout=60)
    assert clip.status_code == 200
    return gs_uri, clip.content


@pytest.fixture(scope="module")
def gs_project(labelstudio: LabelStudio, media: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[GsProject]:
    """CLIPS pooled clips rendered to gs:// and pushed (our environment stays pointed at the emulator meanwhile)."""
    base = tmp_path_factory.mktemp("gs-media")
    ann = new_annotation_dir(media, base / "ann")
    pd.read_parquet(ann / "pools.parquet").head(CLIPS).to_parquet(ann / "pools.parquet")
    media_dir = f"gs://{labelstudio.gcs.bucket}/{uuid.uuid4().hex[:8]}/media"
    with TokenEndpoint() as tokens, pointed_at(labelstudio.gcs.url):
        key_file = base / "service-account.json"
        storage.atomic_write(str(key_file), service_account_json(tokens.url), mode=0o600)
        assert cli.main(["annotate", "render", "--annotations", str(ann), "--media", media_dir]) == 0
        project = GsProject(ann, media_dir, key_file, tokens, 0)
        _push(labelstudio, project)
        project.project_id = _project_of(ann)
        yield project


def test_render_to_gs_puts_every_clip_in_the_bucket(gs_project):
    pools = pd.read_parquet(gs_project.ann / "pools.parquet")
    want = sorted(f"{gs_project.media}/clips/{c}.mp4" for c in pools["clip_id"])
    assert storage.list_files(f"{gs_project.media}/clips", ".mp4") == want
    assert all(storage.read_bytes(p)[4:8] == b"ftyp" for p in want)


def test_push_adds_one_gcs_import_storage_with_presigned_urls(gs_project, labelstudio, capsys):
    client = labelstudio.client(RATER)
    bucket, _, prefix = gs_project.media[len("gs://") :].partition("/")
    (found,) = client.get("/api/storages/gcs", project=gs_project.project_id)  # in every rater's project
    assert (found["bucket"], found["prefix"], found["presign"]) == (bucket, f"{prefix}/clips", True)
    capsys.readouterr()
    _push(labelstudio, gs_project)  # again: no second storage, no new task
    assert re.search(r"imported now\s+0\n", capsys.readouterr().out)
    assert len(client.get("/api/storages/gcs", project=gs_project.project_id)) == 1
    assert len(client.task_ids(gs_project.project_id)) == _assigned(gs_project.ann)


def test_label_studio_signs_a_url_that_serves_the_clip(gs_project, labelstudio):
    task_ids = labelstudio.client(RATER).task_ids(gs_project.project_id)
    assert len(task_ids) == _assigned(gs_project.ann) >= 1
    for task_id in task_ids:
        gs_uri, data = _signed_clip(labelstudio, task_id, gs_project.media)
        assert data == storage.read_bytes(gs_uri)
    assert gs_project.tokens.requests >= 1  # Label Studio authenticated as the service account


def test_push_without_a_key_says_so_and_a_key_repairs_it(gs_project, labelstudio, media, tmp_path, capsys):
    ann = new_annotation_dir(media, tmp_path / "ann")
    pd.read_parquet(ann / "pools.parquet").head(2).to_parquet(ann / "pools.parquet")
    args = _push_args(labelstudio, ann, gs_project.media, "clips on gs, no key", None)
    assert cli.main(args) == 2
    assert "--gcs-credentials-file" in capsys.readouterr().err
    rater = str(pd.read_parquet(ann / "assignment.parquet")["rater"].iloc[0])  # a rater given one of the 2 clips
    pid = _project_of(ann, rater)
    assert len(labelstudio.client(rater).task_ids(pid)) == _assigned(ann, rater) >= 1  # the tasks are kept
    assert cli.main(_push_args(labelstudio, ann, gs_project.media, "clips on gs, no key", gs_project.key_file)) == 0
    assert re.search(r"imported now\s+0\n", capsys.readouterr().out)
    assert len(labelstudio.client(rater).get("/api/storages/gcs", project=pid)) == 1
    gs_uri, data = _signed_clip(labelstudio, min(labelstudio.client(rater).task_ids(pid)), gs_project.media, rater)
    assert data == storage.read_bytes(gs_uri)


def test_the_private_key_stays_out_of_the_server_log(gs_project, labelstudio):
    key = json.loads(gs_project.key_file.read_text())["private_key"]
    body = "".join(key.splitlines()[1:-1])
    log = (Path(labelstudio.data_dir) / "server.log").read_text(errors="replace")
    assert body[:64] not in log.replace("\n", "").replace("\\n", "")
