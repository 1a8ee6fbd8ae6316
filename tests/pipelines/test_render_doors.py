"""`audioscope annotate render` at its doors: hostile pool ids and sources, broken pools, remote and lossy runners.

Each case asserts the clear error (one line, no traceback) or the recorded
failure, and that nothing outside MEDIA_DIR changed (the whole tmp tree is
compared before and after). Real ffmpeg, Beam's DirectRunner.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audioscope import cli
from audioscope.annotation.pools import pools_table_bytes
from tests.pipelines.doors import dropping_last_work_line, snapshot

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("render")]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Two small sources under a media root, and one outside it."""
    root = tmp_path_factory.mktemp("render-doors")
    (root / "videos").mkdir()
    for path in (root / "videos" / "one.mp4", root / "videos" / "two.mp4", root / "outside.mp4"):
        subprocess.run([
            "ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10:duration=6",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000:duration=6",
            "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(path),
        ], check=True)  # fmt: skip
    return root


def _pools(rows: list[dict]) -> pd.DataFrame:
    base = {"start": 0.0, "end": 5.0, "split": "train", "pool": "filtered_train", "licence_name": None, "licence_url": None}
    return pd.DataFrame([{**base, **r} for r in rows])


def _workspace(videos: Path, tmp_path: Path, rows: list[dict]) -> Path:
    """tmp_path/{videos -> the module's videos, outside.mp4, ann/pools.parquet, config.json (a victim)}."""
    (tmp_path / "videos").symlink_to(videos / "videos", target_is_directory=True)
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "pools.parquet").write_bytes(pools_table_bytes(_pools(rows)))
    (tmp_path / "config.json").write_text('{"mine": true}\n')
    return tmp_path


def render(tmp_path: Path, *extra: str) -> int:
    return cli.main(["annotate", "render", "--annotations", str(tmp_path / "ann"), "--media", str(tmp_path / "media"),
                     "--poll", "0.2", *extra])  # fmt: skip


def _one_line_error(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


def test_hostile_ids_and_sources_are_recorded_and_never_used_as_paths(videos, tmp_path, capsys):
    one = str(tmp_path / "videos" / "one.mp4")
    rows = [
        {"clip_id": "one-0000000", "video_id": "one", "source_uri": one},
        {"clip_id": "../config", "video_id": "one", "source_uri": one},  # would write ../config.mp4 / .json
        {"clip_id": "../../config.json", "video_id": "one", "source_uri": one},
        {"clip_id": "bad-0001000", "video_id": "../bad", "source_uri": one, "start": 1.0, "end": 6.0},
        {"clip_id": "out-0000000", "video_id": "out", "source_uri": str(videos / "outside.mp4")},
        {"clip_id": "dots-0000000", "video_id": "dots", "source_uri": str(tmp_path / "videos" / ".." / "config.json")},
        {"clip_id": "etc-0000000", "video_id": "etc", "source_uri": "file:///etc/passwd"},
        {"clip_id": "ftp-0000000", "video_id": "ftp", "source_uri": "ftp://host/x.mp4"},
    ]
    ws = _workspace(videos, tmp_path, rows)
    before = snapshot(ws, skip=(ws / "media",))
    assert render(ws, "--media-root", str(ws / "videos")) == 0
    assert snapshot(ws, skip=(ws / "media",)) == before
    assert (ws / "config.json").read_text() == '{"mine": true}\n'

    summary = json.loads((ws / "media" / "render.json").read_text())
    assert (summary["clips"], summary["rendered"], summary["missing"]) == (8, 1, 0)
    assert sorted(p.name for p in (ws / "media" / "clips").iterdir()) == ["one-0000000.mp4"]
    f = summary["failures"]
    assert f["../config"].startswith("invalid_id") and f["../../config.json"].startswith("invalid_id")
    assert f["bad-0001000"].startswith("invalid_id")
    for clip in ("out-0000000", "dots-0000000", "etc-0000000", "ftp-0000000"):
        assert f[clip].startswith("unsafe_path"), (clip, f[clip])
    assert "invalid clip ids" in capsys.readouterr().err
    # nothing was written beside the media folder's own sub-folders
    assert {p.name for p in (ws / "media").iterdir()} <= {"clips", "failed", "work", "render.json", "invalid-ids.jsonl"}


def test_a_symlink_out_of_the_media_root_is_refused(videos, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(videos / "outside.mp4", root / "escape.mp4")
    ws = _workspace(videos, tmp_path, [{"clip_id": "esc-0000000", "video_id": "esc", "source_uri": str(root / "escape.mp4")}])
    before = snapshot(ws, skip=(ws / "media",))
    assert render(ws, "--media-root", str(root)) == 1  # nothing could be rendered: exit status 1
    assert snapshot(ws, skip=(ws / "media",)) == before
    summary = json.loads((ws / "media" / "render.json").read_text())
    assert summary["rendered"] == 0 and summary["failures"]["esc-0000000"].startswith("unsafe_path")


@pytest.mark.parametrize("content", ["text", "wrong-schema", "truncated"])
def test_a_broken_pools_table_gives_one_line_naming_it(videos, tmp_path, capsys, content):
    ws = _workspace(videos, tmp_path, [{"clip_id": "one-0000000", "video_id": "one", "source_uri": "/x.mp4"}])
    pools = ws / "ann" / "pools.parquet"
    if content == "text":
        pools.write_text("clip_id,video_id\none-0000000,one\n")
    elif content == "wrong-schema":
        pq.write_table(pa.table({"clip_id": ["one-0000000"], "video_id": ["one"]}), pools)
    else:
        pools.write_bytes(pools.read_bytes()[:-40])
    before = snapshot(ws)
    assert render(ws) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert str(pools) in line and "annotate sample" in line
    assert snapshot(ws) == before and not (ws / "media").exists()


def test_local_media_with_remote_workers_is_refused_at_launch(videos, tmp_path, capsys):
    ws = _workspace(videos, tmp_path, [{"clip_id": "one-0000000", "video_id": "one", "source_uri": "/x.mp4"}])
    before = snapshot(ws)
    assert render(ws, "--", "--runner=DataflowRunner", "--project=p") == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "--media" in line and "gs://" in line
    assert snapshot(ws) == before


def test_sources_on_this_machine_with_remote_workers_are_refused_at_launch(videos, tmp_path, capsys):
    """The workers would open every source video: files here are refused in one line, before any work."""
    from audioscope import storage
    from tests.gcs_emulator import GcsEmulator, pointed_at

    rows = [{"clip_id": f"{v}-0000000", "video_id": v, "source_uri": str(tmp_path / "videos" / f"{v}.mp4")}
            for v in ("one", "two")]  # fmt: skip
    ws = _workspace(videos, tmp_path, rows)
    before = snapshot(ws)
    with GcsEmulator(bucket="media") as emu, pointed_at(emu.url):
        code = cli.main(["annotate", "render", "--annotations", str(ws / "ann"), "--media", "gs://media/m", "--",
                         "--runner=DataflowRunner", "--project=p"])  # fmt: skip
        assert code == 2
        line = _one_line_error(capsys.readouterr().err)
        assert f"video one: its source {ws / 'videos' / 'one.mp4'} is a file on this machine (and 1 more" in line, line
        assert "DataflowRunner" in line and "local runner" in line
        assert storage.glob("gs://media/m/**") == []
    assert snapshot(ws) == before


def test_a_runner_that_loses_work_cannot_end_in_exit_0_and_a_rerun_completes(videos, tmp_path, capsys):
    rows = [
        {"clip_id": f"{v}-000{s}000", "video_id": v, "source_uri": str(tmp_path / "videos" / f"{v}.mp4"),
         "start": float(s), "end": float(s) + 5}
        for v in ("one", "two") for s in (0, 1)
    ]  # fmt: skip
    ws = _workspace(videos, tmp_path, rows)
    with dropping_last_work_line():
        assert render(ws, "--media-root", str(ws / "videos")) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "ended short" in line and "work-00000-of-00001.jsonl (2 of 4)" in line
    from audioscope.pipelines.render import RenderLayout

    layout = RenderLayout(str(ws / "media"))
    assert not layout.is_finished() and len(layout.rendered()) == 2

    assert render(ws, "--media-root", str(ws / "videos")) == 0
    assert layout.is_finished() and len(layout.rendered()) == 4
    assert "2 already rendered, 2 to render" in capsys.readouterr().err


def test_without_a_media_root_the_sources_the_store_records_are_opened(videos, tmp_path, capsys):
    """The pools name the clip store they were drawn from (pools.json): a tampered source is never opened."""
    from tests.pipelines.test_score import make_store

    store = make_store(tmp_path / "store", {"aa-one": 6, "bb-two": 6})  # records /videos/<id>.mp4 as sources
    rows = [
        {"clip_id": "aa-one-0000000", "video_id": "aa-one", "source_uri": "/videos/aa-one.mp4"},
        {"clip_id": "bb-two-0000000", "video_id": "bb-two", "source_uri": str(videos / "outside.mp4")},
        {"clip_id": "cc-new-0000000", "video_id": "cc-new", "source_uri": str(videos / "outside.mp4")},
    ]
    ws = _workspace(videos, tmp_path, rows)
    (ws / "ann" / "pools.json").write_text(json.dumps({"store": str(store)}))
    before = snapshot(ws, skip=(ws / "media",))
    assert render(ws) == 1  # none could be rendered
    assert snapshot(ws, skip=(ws / "media",)) == before
    failures = json.loads((ws / "media" / "render.json").read_text())["failures"]
    assert not failures["aa-one-0000000"].startswith("unsafe_path")  # allowed (and missing on this disk)
    # the row's source is not opened: the store's is (missing on this disk)
    assert "/videos/bb-two.mp4" in failures["bb-two-0000000"] and "outside" not in failures["bb-two-0000000"]
    assert failures["cc-new-0000000"].startswith("unsafe_path") and "not in the clip store" in failures["cc-new-0000000"]
    assert not (ws / "media" / "clips").exists() or not list((ws / "media" / "clips").iterdir())
    err = capsys.readouterr().err
    assert "recorded" in err and "none of the 3 clips could be rendered" in err and "Traceback" not in err

    (ws / "ann" / "pools.json").write_text(json.dumps({"store": str(tmp_path / "gone")}))
    assert render(ws) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "--media-root" in line and "gone" in line


def test_media_moved_after_the_pools_were_drawn_render_from_where_the_store_now_has_them(videos, tmp_path, capsys):
    """ingest under one root, draw pools, move the media, ingest the same list under the new root: render
    opens the new place; a later list naming the same id elsewhere (a conflict row) changes nothing."""
    import shutil

    first = tmp_path / "first"
    shutil.copytree(videos / "videos", first)
    lst = tmp_path / "list.txt"
    lst.write_text("one.mp4\ntwo.mp4\n")
    store = tmp_path / "store"
    assert cli.main(["ingest", str(lst), "--store", str(store), "--media-root", str(first), "--poll", "0.2"]) == 0
    rows = [{"clip_id": f"{v}-0000000", "video_id": v, "source_uri": str(first / f"{v}.mp4")} for v in ("one", "two")]
    ws = tmp_path / "ws"
    (ws / "ann").mkdir(parents=True)
    (ws / "ann" / "pools.parquet").write_bytes(pools_table_bytes(_pools(rows)))
    (ws / "ann" / "pools.json").write_text(json.dumps({"store": str(store)}))
    moved = tmp_path / "moved"
    shutil.move(first, moved)
    assert cli.main(["ingest", str(lst), "--store", str(store), "--media-root", str(moved), "--poll", "0.2"]) == 0
    (tmp_path / "a-conflicting.csv").write_text(f"uri,video_id\n{tmp_path / 'gone.mp4'},one\n")  # another "one"
    assert cli.main(["ingest", str(tmp_path / "a-conflicting.csv"), "--store", str(store), "--poll", "0.2"]) == 0
    from audioscope.clipstore import ClipStore

    status = ClipStore.open(str(store)).status
    assert sorted(status.loc[status["video_id"] == "one", "status"]) == ["conflict", "ok"]
    capsys.readouterr()
    assert render(ws) == 0, capsys.readouterr().err
    summary = json.loads((ws / "media" / "render.json").read_text())
    assert (summary["rendered"], summary["failed"]) == (2, 0), summary["failures"]
