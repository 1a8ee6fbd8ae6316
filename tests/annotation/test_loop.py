"""The annotation loop against a real Label Studio server: push, demo raters, pull, status.

The two checks of the issue: with error rate 0 every sampled clip ends with
exactly 3 votes from 3 distinct raters and its unanimous label equals the
ground truth; with error rate 0.1 the Fleiss' kappa that status prints equals
an independent computation from the votes table. Also: pushing twice gives
the same tasks, a rater who annotates a task twice counts once, and a pull
cut short by a stopped server loses and duplicates nothing.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from audioscope import cli
from audioscope.annotation.client import ServerUnreachable
from audioscope.annotation.pull import pull
from audioscope.annotation.raters import annotation_body
from audioscope.schemas.tables import LABEL_OFFSCREEN_ONLY, LABEL_ONSCREEN_ONLY

from .conftest import RATERS, new_annotation_dir
from .test_status import pairwise_kappa

# The session's server takes 25-80 s to start on 2 busy cores: slow.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("labelstudio")]


def _annotate(ls, ann: Path, title: str, *extra: str) -> None:
    assert cli.main(["annotate", "push", "--annotations", str(ann), "--media", str(ls.root / "media"),
                     "--project-title", title, *ls.args()]) == 0  # fmt: skip
    if extra:
        assert cli.main(["annotate", "demo-raters", "--annotations", str(ann), *extra, *ls.args()]) == 0
    assert cli.main(["annotate", "pull", "--annotations", str(ann), "--page-size", "7", *ls.args()]) == 0


def _truth_labels(pools: pd.DataFrame, truth_path: Path) -> pd.Series:
    """The label each clip must get from error-free raters, computed here from truth.parquet."""
    truth = pd.read_parquet(truth_path)
    out = {}
    for row in pools.itertuples(index=False):
        seconds = truth[(truth["video_id"] == row.video_id) & (truth["second"] >= row.start) & (truth["second"] < row.end)]
        on, off = bool(seconds["has_onscreen"].any()), bool(seconds["has_offscreen"].any())
        out[row.clip_id] = LABEL_ONSCREEN_ONLY if on and not off else LABEL_OFFSCREEN_ONLY if off and not on else None
    return pd.Series(out)


def _projects(ann: Path) -> dict:
    return json.loads((ann / "projects.json").read_text())["raters"]


def _project_task_count(ls, ann: Path) -> int:
    """Tasks in all the raters' projects (each clip is a task in 3 of them)."""
    return sum(len(ls.client(name).task_ids(p["project_id"])) for name, p in _projects(ann).items())


@pytest.fixture(scope="module")
def exact(labelstudio, media, tmp_path_factory) -> Path:
    ann = new_annotation_dir(media, tmp_path_factory.mktemp("exact") / "ann")
    _annotate(labelstudio, ann, "raters without errors", "--error-rates", "0")
    return ann


@pytest.fixture(scope="module")
def noisy(labelstudio, media, tmp_path_factory) -> Path:
    ann = new_annotation_dir(media, tmp_path_factory.mktemp("noisy") / "ann")
    _annotate(labelstudio, ann, "raters with errors", "--error-rates", "0.1", "--seed", "3")
    return ann


def test_error_rate_zero_three_distinct_raters_and_true_labels(exact, media):
    pools = pd.read_parquet(media["pools"])
    labels = pd.read_parquet(exact / "labels.parquet").set_index("clip_id")
    votes = pd.read_parquet(exact / "votes.parquet")
    assert len(pools) >= 20 and sorted(labels.index) == sorted(pools["clip_id"])
    per_clip = votes.groupby("clip_id")["rater"].agg(list)
    for clip_id in pools["clip_id"]:
        raters = per_clip[clip_id]
        assert len(raters) == 3 and len(set(raters)) == 3, clip_id
    assert set(votes["rater"]) == {f"{r}@audioscope.local" for r in RATERS}
    expected = _truth_labels(pools, media["corpus"] / "truth.parquet")
    got = labels["label"].where(labels["label"].notna(), None)
    assert got.loc[expected.index].tolist() == expected.tolist()
    assert expected.notna().any()  # the corpus has unanimous clips to check
    # the CSVs list exactly the labeled clips of each split, in the AudioScope format
    train_on = (exact / "csv" / "train_onscreen_unanimous_clips.csv").read_text().splitlines()
    want = labels[(labels["label"] == LABEL_ONSCREEN_ONLY) & (labels["split"] == "train")]
    assert sorted(train_on) == sorted(f"{u},{s!r},{e!r}" for u, s, e in zip(want["source_uri"], want["start"], want["end"]))


def test_demo_raters_resume_without_new_votes(exact, labelstudio, capsys):
    assert cli.main(["annotate", "demo-raters", "--annotations", str(exact), *labelstudio.args()]) == 0
    out = capsys.readouterr().out
    assert re.findall(r"(\d+) annotated", out) == ["0"] * len(RATERS)


def test_push_twice_gives_the_same_tasks(exact, labelstudio, media, capsys):
    before = _project_task_count(labelstudio, exact)
    assert cli.main(["annotate", "push", "--annotations", str(exact), "--media", str(media["media"]),
                     "--project-title", "raters without errors", *labelstudio.args()]) == 0  # fmt: skip
    assert re.search(r"imported now\s+0\n", capsys.readouterr().out)
    # each clip is a task in exactly 3 raters' projects (issue 20: one project per rater)
    assert _project_task_count(labelstudio, exact) == before == 3 * len(pd.read_parquet(media["pools"]))


def _independent_kappa(votes: pd.DataFrame, question: str) -> float:
    """Fleiss' kappa of the clips with three votes, by the pairwise formulation of test_status."""
    return pairwise_kappa([g[question].tolist() for _, g in votes.groupby("clip_id") if len(g) == 3])


def test_error_rate_point_one_kappa_matches_an_independent_computation(noisy, capsys):
    assert cli.main(["annotate", "status", "--annotations", str(noisy)]) == 0
    printed = capsys.readouterr().out
    status = json.loads((noisy / "status.json").read_text())
    votes = pd.read_parquet(noisy / "votes.parquet")
    assert len(votes) == 3 * len(pd.read_parquet(noisy / "labels.parquet"))
    for q in ("onscreen", "offscreen"):
        want = _independent_kappa(votes, q)
        assert status["agreement"]["kappa"][q]["fleiss_kappa"] == pytest.approx(want, abs=1e-9)
        shown = re.search(rf"Fleiss' kappa {q}\s+(-?[0-9.]+)", printed).group(1)
        assert float(shown) == pytest.approx(want, abs=5e-4)
    assert min(status["agreement"]["kappa"][q]["fleiss_kappa"] for q in ("onscreen", "offscreen")) < 1.0
    assert (noisy / "status.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(c["3"] == c["tasks"] for c in status["pools"].values())


def test_a_rater_annotating_twice_or_a_duplicated_task_still_gives_distinct_votes(labelstudio, media, tmp_path, capsys):
    ann = new_annotation_dir(media, tmp_path / "ann")
    pools = pd.read_parquet(ann / "pools.parquet").head(2)
    pools.to_parquet(ann / "pools.parquet")
    _annotate(labelstudio, ann, "one rater twice")
    assignment = pd.read_parquet(ann / "assignment.parquet")
    clip = sorted(pools["clip_id"])[0]
    first, second = sorted(assignment.loc[assignment["clip_id"] == clip, "rater"])[:2]
    projects = _projects(ann)
    r1 = labelstudio.client(first)
    pid1 = projects[first]["project_id"]
    tid = next(t["id"] for page in r1.task_pages(pid1, "id,data") for t in page if t["data"]["clip_id"] == clip)
    r1.post(f"/api/tasks/{tid}/annotations/", annotation_body(True, True, 5.0))
    r1.post(f"/api/tasks/{tid}/annotations/", annotation_body(False, True, 6.0))  # the latest counts
    # the same rater imports the clip's task a second time and answers it again: still one vote
    data = r1.get(f"/api/tasks/{tid}/")["data"]
    (dup,) = r1.import_tasks(pid1, [{"data": data}])
    r1.post(f"/api/tasks/{dup}/annotations/", annotation_body(False, True, 7.0))
    r2 = labelstudio.client(second)
    pid2 = projects[second]["project_id"]
    tid2 = next(t["id"] for page in r2.task_pages(pid2, "id,data") for t in page if t["data"]["clip_id"] == clip)
    r2.post(f"/api/tasks/{tid2}/annotations/", {"result": [], "was_cancelled": True, "lead_time": 1.0})
    summary = pull(labelstudio.url, labelstudio.secrets, str(ann))
    assert (summary["annotations"], summary["counted"], summary["superseded"], summary["cancelled"]) == (4, 1, 2, 1)
    assert summary["duplicate_tasks"] == 1 and summary["repairs"]["duplicate_tasks"] == 1
    votes = pd.read_parquet(ann / "votes.parquet")
    assert len(votes) == 1
    vote = votes.iloc[0]
    assert (vote["rater"], bool(vote["onscreen"]), bool(vote["offscreen"])) == (f"{first}@audioscope.local", False, True)
    assert vote["lead_time"] == 7.0
    assert cli.main(["annotate", "status", "--annotations", str(ann)]) == 0
    assert "repaired: 1 duplicate tasks of a clip merged" in capsys.readouterr().err


def test_pull_cut_short_by_a_stopped_server_loses_and_duplicates_nothing(noisy, labelstudio, tmp_path):
    ann = tmp_path / "ann"
    shutil.copytree(noisy, ann)
    before = {p.name: p.read_bytes() for p in ann.iterdir() if p.is_file()}

    def stop_after_first_page(tasks: int, annotations: int) -> None:
        labelstudio.stop()

    try:
        with pytest.raises(ServerUnreachable):
            pull(labelstudio.url, labelstudio.secrets, str(ann), page_size=5, on_page=stop_after_first_page)
        after = {p.name: p.read_bytes() for p in ann.iterdir() if p.is_file()}
        assert after == before  # nothing half-written
    finally:
        labelstudio.start()
    pull(labelstudio.url, labelstudio.secrets, str(ann), page_size=5)
    for name in ("votes.parquet", "labels.parquet"):
        again = pd.read_parquet(ann / name)
        first = pd.read_parquet(noisy / name)
        pd.testing.assert_frame_equal(again, first)
    votes = pd.read_parquet(ann / "votes.parquet")
    assert not votes.duplicated(["clip_id", "rater"]).any()
    assert votes["annotation_id"].is_unique


def test_server_keeps_secrets_out_of_its_log_and_files(labelstudio):
    data = Path(labelstudio.data_dir)
    assert (data / "secrets.json").stat().st_mode & 0o777 == 0o600
    values = [labelstudio.secrets.admin.password, labelstudio.secrets.admin.token]  # tokens: personal access tokens
    values += [a.password for a in labelstudio.secrets.raters.values()] + [a.token for a in labelstudio.secrets.raters.values()]
    assert all(len(v) >= 20 for v in values)
    for name in ("server.log", "server.json"):
        text = (data / name).read_text(errors="replace")
        assert not [v for v in values if v in text], name
    with open(f"/proc/{json.loads((data / 'server.json').read_text())['pid']}/cmdline", "rb") as f:
        cmdline = f.read().decode(errors="replace")
    assert not [v for v in values if v in cmdline]
    assert "--internal-host\x00127.0.0.1" in cmdline


def test_secrets_are_not_printed_by_the_server_command(labelstudio, capsys):
    """Starting the running server again (as `annotate server --detach`) reports it and prints no secret."""
    args = ["annotate", "server", "--data-dir", labelstudio.data_dir, "--document-root", str(labelstudio.root),
            "--raters", ",".join(RATERS), "--detach"]  # fmt: skip
    assert cli.main(args) == 0
    captured = capsys.readouterr()
    assert labelstudio.url in captured.out and "was running already" in captured.out
    secrets = labelstudio.secrets
    for v in [secrets.admin.password, secrets.admin.token] + [a.password for a in secrets.raters.values()]:
        assert v not in captured.out + captured.err
    assert secrets.admin.has_access_token and all(a.has_access_token for a in secrets.raters.values())


def test_a_second_push_into_the_same_folder_is_refused_while_the_first_runs(labelstudio, media, tmp_path, capsys):
    """Two pushes at once both found no project for a rater, both created one and imported its tasks
    (an orphan project whose votes no pull reads). The second is refused in one line, before it
    assigns or creates anything."""
    from audioscope.annotation.push import PUSH_LOCK
    from audioscope.locks import FolderLock

    ann = new_annotation_dir(media, tmp_path / "ann")
    with FolderLock(str(ann / PUSH_LOCK), activity="push", subject="the folder", what="a test"):
        assert cli.main(["annotate", "push", "--annotations", str(ann), "--media", str(media["media"]),
                         "--project-title", "pushed twice at once", *labelstudio.args()]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "is being written by another push of a test (process " in err and "Traceback" not in err
    assert sorted(p.name for p in ann.iterdir()) == ["pools.parquet"]
