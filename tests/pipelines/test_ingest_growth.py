"""A store that grows, runs at the same time, sparse lists, accounting: real ffmpeg, real Beam."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from audioscope import cli
from audioscope.clipstore import ClipStore
from audioscope.clipstore.format import Layout, decode_media

from .videos import av_video

pytestmark = pytest.mark.integration


def ingest(list_path: Path, store: Path, *extra: str) -> int:
    return cli.main(["ingest", str(list_path), "--store", str(store), "--poll", "0.2", *extra])


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("media")
    av_video(root / "long.mp4", duration=30)
    av_video(root / "short.mp4", duration=8)
    (root / "other").mkdir()
    av_video(root / "other" / "long.mp4", duration=9)
    return root


def _clips(store: Path) -> dict[str, tuple[bytes, bytes]]:
    cs = ClipStore.open(str(store))
    return {c.clip_id: (c.audio.tobytes(), c.frames.tobytes()) for c in cs.iter_clips()}


def _status(store: Path, video_id: str) -> dict:
    rows = ClipStore.open(str(store)).status
    return rows[rows["video_id"] == video_id].to_dict("records")


def test_a_sparse_list_stores_only_the_seconds_its_clips_need(media, tmp_path):
    full = tmp_path / "full"
    every = tmp_path / "every.txt"
    every.write_text("long.mp4\n")
    assert ingest(every, full, "--media-root", str(media)) == 0

    lst = tmp_path / "filtered_train_clips.csv"
    lst.write_text("long.mp4,0,5\nlong.mp4,20,25\nlong.mp4,22,27\n")
    sparse = tmp_path / "sparse"
    assert ingest(lst, sparse, "--media-root", str(media)) == 0
    audio, frames, meta = decode_media(Path(Layout(str(sparse)).media("long")).read_bytes())
    assert meta["seconds"] == [0, 1, 2, 3, 4, *range(20, 27)]  # 12 seconds, not 27
    assert len(frames) == 12 and len(audio) == 12 * 16_000
    # the clips read back are the same samples and frames as from a store of every second
    reference = _clips(full)
    got = _clips(sparse)
    assert sorted(got) == ["long-0000000", "long-0020000", "long-0022000"]
    assert all(got[k] == reference[k] for k in got)
    row = _status(sparse, "long")[0]
    assert (row["split"], row["clips_requested"], row["clips_produced"], row["media_seconds"]) == ("train", 3, 3, 12)


def test_a_later_list_adds_new_spans_and_says_what_it_could_not(media, tmp_path, capsys):
    store = tmp_path / "store"
    first = tmp_path / "first.csv"
    first.write_text("long.mp4,0,5\n")
    assert ingest(first, store, "--media-root", str(media)) == 0
    second = tmp_path / "second.csv"
    second.write_text("long.mp4,10,15\nlong.mp4,40,45\nshort.mp4,1,6\nshort.mp4,2,7\n")
    capsys.readouterr()
    assert ingest(second, store, "--media-root", str(media)) == 0
    out = capsys.readouterr().out
    cs = ClipStore.open(str(store))
    assert sorted(cs.index["clip_id"]) == ["long-0000000", "long-0010000", "short-0001000", "short-0002000"]
    row = _status(store, "long")[0]
    assert row["status"] == "partial" and row["kind"] == "span_out_of_range"
    assert (row["clips_requested"], row["clips_produced"]) == (3, 2)
    assert cs.summary["clips_requested"] == 5 and cs.summary["clips_not_produced"] == 1
    assert cs.summary["clips_not_produced_by_reason"] == {"span_out_of_range": 1}
    assert "clips not produced" in out and "span_out_of_range=1" in out
    # a third list asking only for a span past the known length: recorded, nothing fetched again
    media_before = os.stat(Layout(str(store)).media("long")).st_mtime_ns
    third = tmp_path / "third.csv"
    third.write_text("long.mp4,50,55\n")
    assert ingest(third, store, "--media-root", str(media)) == 0
    assert os.stat(Layout(str(store)).media("long")).st_mtime_ns == media_before
    row = _status(store, "long")[0]
    assert (row["clips_requested"], row["clips_produced"]) == (4, 2)


def test_the_same_id_from_another_source_is_a_recorded_conflict(media, tmp_path):
    store = tmp_path / "store"
    first = tmp_path / "first.txt"
    first.write_text("long.mp4\n")
    assert ingest(first, store, "--media-root", str(media)) == 0
    before = _clips(store)
    second = tmp_path / "second.txt"
    second.write_text("other/long.mp4\nshort.mp4\n")
    assert ingest(second, store, "--media-root", str(media)) == 0
    rows = _status(store, "long")
    assert sorted(r["status"] for r in rows) == ["conflict", "ok"]
    conflict = next(r for r in rows if r["status"] == "conflict")
    assert conflict["kind"] == "id_conflict" and conflict["source"].endswith("other/long.mp4")
    assert "another id" in conflict["message"]
    after = _clips(store)
    assert {k: v for k, v in after.items() if k.startswith("long-")} == before  # the store's video is kept
    assert any(k.startswith("short-") for k in after)
    assert ClipStore.open(str(store)).summary["failures_by_kind"]["id_conflict"] == 1


def test_media_moved_to_another_root_are_the_store_s_videos_not_conflicts(media, tmp_path, capsys):
    import shutil

    store = tmp_path / "store"
    lst = tmp_path / "l.txt"
    lst.write_text("short.mp4\nother/long.mp4\n")
    assert ingest(lst, store, "--media-root", str(media)) == 0
    layout = Layout(str(store))
    stamps = {v: os.stat(layout.media(v)).st_mtime_ns for v in ("short", "long")}
    before = _clips(store)
    moved = tmp_path / "moved"
    shutil.copytree(media, moved)
    capsys.readouterr()
    assert ingest(lst, store, "--media-root", str(moved)) == 0  # the same list, the media mounted elsewhere
    out, err = capsys.readouterr()
    assert "id conflicts" not in out and "conflict" not in err, (out, err)
    assert {v: os.stat(layout.media(v)).st_mtime_ns for v in stamps} == stamps  # nothing decoded again
    assert _clips(store) == before
    for vid in ("short", "long"):
        assert [r["status"] for r in _status(store, vid)] == ["ok"]
    # the same id at another path below the new root is still another video
    (tmp_path / "l2.txt").write_text("long.mp4\n")
    assert ingest(tmp_path / "l2.txt", store, "--media-root", str(moved)) == 0
    assert sorted(r["status"] for r in _status(store, "long")) == ["conflict", "ok"]


def test_two_runs_at_once_lose_no_list(media, tmp_path):
    store = tmp_path / "store"
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("long.mp4\n")
    b.write_text("short.mp4\n")
    cmd = [sys.executable, "-m", "audioscope", "ingest", "--store", str(store), "--media-root", str(media)]
    procs = [subprocess.Popen([*cmd[:4], str(lst), *cmd[4:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for lst in (a, b)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for (rc, err), lst in zip(results, (a, b)):
        assert rc in (0, 2), err
        if rc == 2:  # refused at once, with a message saying what to do
            assert "being written by another ingest" in err and "run this command again" in err
            assert ingest(lst, store, "--media-root", str(media)) == 0
    ids = set(ClipStore.open(str(store)).index["video_id"])
    assert ids == {"long", "short"}
    assert not Path(Layout(str(store)).lock).exists()


def test_a_lock_left_by_a_killed_run_here_is_taken_over_and_a_live_one_refuses(media, tmp_path, capsys):
    import socket

    store = tmp_path / "store"
    lst = tmp_path / "l.txt"
    lst.write_text("short.mp4\n")
    layout = Layout(str(store))
    Path(store).mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    Path(layout.lock).write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout), "list": "x"}))
    assert ingest(lst, store, "--media-root", str(media)) == 0
    Path(layout.lock).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid(), "list": "y.csv"}))
    capsys.readouterr()
    assert ingest(lst, store, "--media-root", str(media)) == 2
    err = capsys.readouterr().err
    assert "y.csv" in err and "ingest.lock" in err


def test_a_runner_that_loses_videos_cannot_end_with_exit_0(media, tmp_path, monkeypatch, capsys):
    from audioscope.pipelines import ingest_beam

    lst = tmp_path / "l.txt"
    lst.write_text("long.mp4\nshort.mp4\n")
    store = tmp_path / "store"
    # a runner stand-in that drops what finish_bundle emits (as DaskRunner does);
    # one worker: IngestVideo in the launcher (with more, the local runner hands
    # the videos to a process pool: tests/pipelines/test_ingest_pool.py)
    monkeypatch.setattr(ingest_beam.IngestVideo, "finish_bundle", lambda self: iter(()))
    assert ingest(lst, store, "--media-root", str(media), "--workers", "1") == 1
    assert "not finished" in capsys.readouterr().err
    monkeypatch.undo()
    assert ingest(lst, store, "--media-root", str(media)) == 0
    assert set(ClipStore.open(str(store)).index["video_id"]) == {"long", "short"}


def test_the_index_can_be_walked_shard_by_shard(media, tmp_path):
    lst = tmp_path / "l.txt"
    lst.write_text("long.mp4\nshort.mp4\n")
    store = tmp_path / "store"
    assert ingest(lst, store, "--media-root", str(media)) == 0
    cs = ClipStore.open(str(store))
    parts = list(cs.iter_index(batch_rows=7))
    assert all(len(p) <= 7 for p in parts)
    walked = np.concatenate([p["clip_id"].to_numpy() for p in parts])
    assert sorted(walked) == sorted(cs.index["clip_id"])


def _lose_a_folder(monkeypatch, ingest_beam) -> None:
    real = ingest_beam._list_jobs

    def listed(count, store):  # the first status folder's job never arrives
        jobs = list(real(count, store))
        first = next(i for i, job in enumerate(jobs) if job[0] == "dir")
        return jobs[:first] + jobs[first + 1:]

    monkeypatch.setattr(ingest_beam, "_list_jobs", listed)


def _lose_from_a_folder(what: str):
    def lose(monkeypatch, ingest_beam) -> None:
        real = ingest_beam.ReadStatusDir.process

        def process(self, job) -> Iterator[Any]:  # the outputs of one folder (lo/: the first list's video) are lost
            for out in real(self, job):
                tagged = isinstance(out, ingest_beam.beam.pvalue.TaggedOutput)
                if job[1].rstrip("/").endswith("/lo") and tagged == (what == "totals"):
                    continue
                yield out

        monkeypatch.setattr(ingest_beam.ReadStatusDir, "process", process)

    return lose


def _lose_the_last_step(monkeypatch, ingest_beam) -> None:
    monkeypatch.setattr(ingest_beam.FinalizeStore, "process", lambda self, gathered: iter(()))


@pytest.mark.parametrize(
    "lose, said",
    [
        (_lose_a_folder, "1 of 2 status folders did not reach the index: lo"),
        (_lose_from_a_folder("totals"), "1 of 2 status folders did not reach the index: lo"),
        (_lose_from_a_folder("rows"), "1 index shards do not hold the rows their status records give: shard 0 holds 4 of 30"),
        (_lose_the_last_step, "its last step never ran"),
    ],
    ids=["a status folder", "a folder's totals", "a folder's index rows", "the summary step"],
)
def test_a_runner_that_loses_part_of_the_index_cannot_end_with_exit_0(media, tmp_path, monkeypatch, capsys, lose, said):
    """The index is rebuilt from every status folder of the store, the earlier lists' too: a runner that
    lost one folder's job, totals or rows (or the last step) left a store without the first list's
    videos, or a stale summary, and the run ended with exit 0."""
    from audioscope.pipelines import ingest_beam

    store = tmp_path / "store"
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text("long.mp4\n")
    second.write_text("short.mp4\n")
    assert ingest(first, store, "--media-root", str(media)) == 0
    lose(monkeypatch, ingest_beam)
    assert ingest(second, store, "--media-root", str(media)) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"ingest ended short: the runner lost work and the store's index was not rebuilt ({said})" in err, err
    assert not (store / "summary.json").exists()  # the store reads as unfinished until the re-run
    monkeypatch.undo()
    assert ingest(second, store, "--media-root", str(media)) == 0
    cs = ClipStore.open(str(store))
    assert set(cs.index["video_id"]) == {"long", "short"} and set(cs.status["video_id"]) == {"long", "short"}
    assert json.loads((store / "summary.json").read_text())["clips"] == len(cs.index)
