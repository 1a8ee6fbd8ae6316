"""Isolation and least privilege on the real server, through the API with a rater's own token.

Each rater's project lives in an organization of its own: rater A cannot
list, open or export rater B's project, tasks or answers, nor see the other
accounts; a task holds no pool, split or source path; the signup form is
closed. What Label Studio Community cannot prevent (a rater changing or
deleting their own project) is detected by pull and status.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import requests

from audioscope import cli
from audioscope.annotation.client import LabelStudioError

from .conftest import RATERS, new_annotation_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("labelstudio")]


@pytest.fixture(scope="module")
def answered(labelstudio, media, tmp_path_factory) -> Path:
    ann = new_annotation_dir(media, tmp_path_factory.mktemp("isolation") / "ann")
    pd.read_parquet(ann / "pools.parquet").head(6).to_parquet(ann / "pools.parquet")
    args = ["--annotations", str(ann), *labelstudio.args()]
    assert cli.main(["annotate", "push", "--media", str(labelstudio.root / "media"), "--project-title", "isolation", *args]) == 0
    assert cli.main(["annotate", "demo-raters", *args]) == 0
    assert cli.main(["annotate", "pull", *args]) == 0
    return ann


def _projects(ann: Path) -> dict:
    return json.loads((ann / "projects.json").read_text())["raters"]


def test_a_rater_sees_only_their_own_project_tasks_and_answers(answered, labelstudio):
    projects = _projects(answered)
    me, others = "rater1", [r for r in RATERS if r != "rater1"]
    client = labelstudio.client(me)
    mine = projects[me]["project_id"]
    # The server is shared by the module's tests, each of which gives every
    # rater a project of their own: rater1 sees this one and only projects
    # that no other rater can see.
    visible = {p["id"] for p in client.projects()}
    assert mine in visible
    for other in others:
        theirs = {p["id"] for p in labelstudio.client(other).projects()}
        assert projects[other]["project_id"] in theirs
        assert not visible & theirs, (me, other, visible & theirs)
    assert [u["email"] for u in client.get("/api/users/")] == ["rater1@audioscope.local"]
    for other in others:
        pid = projects[other]["project_id"]
        with pytest.raises(LabelStudioError) as e:
            client.project(pid)
        assert e.value.status in (403, 404)
        with pytest.raises(LabelStudioError):
            client.export(pid)
        task = labelstudio.client(other).task_ids(pid)[0]
        with pytest.raises(LabelStudioError) as e:
            client.get(f"/api/tasks/{task}/")
        assert e.value.status in (403, 404)
        with pytest.raises(LabelStudioError):
            client.get(f"/api/tasks/{task}/annotations/")
    exported = client.export(mine)
    assert exported and all(a["completed_by"] == labelstudio.secrets.raters[me].user_id for t in exported for a in t["annotations"])
    for t in exported:
        assert set(t["data"]) == {"video", "clip_id", "fps"}  # no pool, split, source path or licence
        assert t["data"]["fps"] > 0


def test_signup_is_closed(labelstudio):
    s = requests.Session()
    s.trust_env = False
    s.get(f"{labelstudio.url}/user/signup/", timeout=60)
    r = s.post(
        f"{labelstudio.url}/user/signup/",
        data={"email": "intruder@example.org", "password": "a-long-password-1", "csrfmiddlewaretoken": s.cookies.get("csrftoken", "")},
        headers={"Referer": f"{labelstudio.url}/user/signup/"}, allow_redirects=False, timeout=60,
    )  # fmt: skip
    assert r.status_code == 403
    login = s.post(
        f"{labelstudio.url}/user/login/",
        data={"email": "intruder@example.org", "password": "a-long-password-1", "csrfmiddlewaretoken": s.cookies.get("csrftoken", "")},
        headers={"Referer": f"{labelstudio.url}/user/login/"}, allow_redirects=False, timeout=60,
    )  # fmt: skip
    assert login.status_code != 302


def test_what_label_studio_cannot_prevent_is_detected_and_pull_keeps_what_it_had(answered, labelstudio, capsys):
    projects = _projects(answered)
    client = labelstudio.client("rater2")
    pid = projects["rater2"]["project_id"]
    # Label Studio refuses a config that drops an answered question (that much it prevents) ...
    from audioscope.annotation.push import LABEL_CONFIG

    with pytest.raises(LabelStudioError, match="incompatible"):
        client.update_project(pid, {"label_config": (
            '<View><Video name="video" value="$video"/><Choices name="onscreen" toName="video">'
            '<Choice value="Yes"/><Choice value="No"/></Choices></View>'
        )})  # fmt: skip
    # ... but takes one that still has them (here: the player back at 24 fps) and any instructions
    client.update_project(pid, {"label_config": LABEL_CONFIG.replace(' frameRate="$fps"', ""), "expert_instruction": "anything"})
    before = {p.name: p.read_bytes() for p in answered.iterdir() if p.is_file()}
    task = client.task_ids(pid)[0]
    client.request("DELETE", f"/api/tasks/{task}/")
    args = ["--annotations", str(answered), *labelstudio.args()]
    assert cli.main(["annotate", "pull", *args]) == 2  # a vote of the last pull is gone: refused
    err = capsys.readouterr().err
    assert "no longer on the server" in err and "--allow-fewer" in err
    assert {p.name: p.read_bytes() for p in answered.iterdir() if p.is_file()} == before  # byte-identical
    assert cli.main(["annotate", "pull", "--allow-fewer", *args]) == 0
    err = capsys.readouterr().err
    assert "settings changed on the server (label_config, expert_instruction" in err
    assert "1 assigned clips have no task" in err
    assert cli.main(["annotate", "status", "--annotations", str(answered)]) == 0
    assert "label_config" in capsys.readouterr().err
    # push repairs both: the settings come back and the task is imported again
    assert cli.main(["annotate", "push", "--media", str(labelstudio.root / "media"), "--project-title", "isolation", *args]) == 0
    assert "frameRate" in client.project(pid)["label_config"]
    assert len(client.task_ids(pid)) == len(pd.read_parquet(answered / "assignment.parquet").query("rater == 'rater2'"))
