"""benchmarks/scale.py at a tiny scale: its tables are what our readers read, its steps run, it prints the table."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "scale.py"
TINY = 0.0005  # 100 videos, ~3,600 clips


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("scale_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def simulation(scale, tmp_path_factory):
    """The simulation's pieces, score parts included (with a stand-in model id: no TensorFlow here)."""
    p = scale.Paths(tmp_path_factory.mktemp("scale"))
    v = scale.make_videos(int(scale.FULL_VIDEOS * TINY), seed=3)
    info = scale.write_store(p, v, lambda _: None)
    got = scale.write_scores_and_df(p, v, 3, lambda _: None, scale.MODEL_ID, parts=True)
    info.update(scale.write_annotations(p, got["df"], got["candidates"], 3, lambda _: None))
    info.update(scale.write_release_copy(p))
    info.update(scores_clips=got["scores_clips"], df_clips=got["df_clips"])
    return p, v, info


def test_the_store_is_read_by_clipstore_as_ingest_writes_it(simulation):
    from audioscope.clipstore.format import Layout, index_shard_count
    from audioscope.clipstore.reader import ClipStore
    from audioscope.ids import check_clip_id, check_video_id

    p, v, info = simulation
    store = ClipStore.open(str(p.store))
    index = store.index
    assert len(index) == info["clips"] == int(v.n_clips.sum()) > 0
    assert store.summary["clips"] == info["clips"] and store.summary["videos"] == len(v)
    streamed = sum(len(f) for f in store.iter_index())
    assert streamed == len(index)
    # every video's clips k..k+5, with ids as the writer makes them, in the shard ingest would put them in
    n = index_shard_count(len(v))
    assert store.index_files() == [Layout(str(p.store)).index_shard(i, n) for i in range(n)]
    for vid, rows in index.groupby("video_id"):
        check_video_id(vid)
        k = np.arange(len(rows), dtype=float)
        assert rows["start"].tolist() == k.tolist() and rows["end"].tolist() == (k + 5).tolist()
        assert rows["clip_id"].tolist() == [f"{vid}-{int(s * 1000):07d}" for s in k]
        check_clip_id(rows["clip_id"].iloc[0])
    status = store.status
    assert len(status) == len(v) and set(status["status"]) == {"ok", "failed"}
    assert int(status["clips_produced"].sum()) == info["clips"]
    assert status.loc[status["status"] == "failed", "n_clips"].eq(0).all()


def test_scores_and_parts_are_read_by_scores_layout_and_the_merge(simulation):
    from audioscope.pipelines.score import _read_part_dir
    from audioscope.pipelines.score_layout import ScoresLayout
    from audioscope.clipstore.reader import ClipStore

    p, v, info = simulation
    layout = ScoresLayout(str(p.scores))
    assert layout.is_finished()
    scores = layout.read_scores()
    assert len(scores) == info["scores_clips"] == info["clips"]
    assert list(scores["video_id"]) == sorted(scores["video_id"])
    index = ClipStore.open(str(p.store)).index
    assert set(scores["clip_id"]) == set(index["clip_id"])
    assert 0.02 < (scores["probability"] >= 0.8).mean() < 0.08  # ~4.5%: filter keeps ~325,000 of 7.2 M
    run = ScoresLayout(str(p.score_run))
    assert run.scored_videos() == set(index["video_id"])
    assert run.read_meta()["model_id"] == layout.read_meta()["model_id"]
    merged = _read_part_dir(run.path("parts", str(v.ids[0])[:2]))
    ours = scores[scores["video_id"].str.startswith(str(v.ids[0])[:2])]
    assert merged.column("clip_id").to_pylist() == ours["clip_id"].tolist()


def test_df_and_annotations_are_read_by_their_readers(simulation):
    from audioscope.annotation.pull import read_tables
    from audioscope.schemas.annotations import AnnotationLayout
    from audioscope.schemas.df import DfLayout, read_df, read_report

    p, _, info = simulation
    assert DfLayout(str(p.df)).is_finished()
    df = read_df(str(p.df))
    assert len(df) == info["df_clips"] > 0 and (df["probability"] >= 0.8).all()
    report = read_report(str(p.df))
    assert report.split_ratios == (0.8, 0.1, 0.1) and report.kept["clips"] == len(df)
    pools = AnnotationLayout(str(p.annotations)).read_pools()
    assert len(pools) == info["pooled"] and not pools["clip_id"].duplicated().any()
    assert set(pools.loc[pools["pool"] != "unfiltered_train", "clip_id"]) <= set(df["clip_id"])
    votes, labels = read_tables(str(p.annotations))
    assert len(votes) == 3 * len(labels) == 3 * len(pools)
    assert int(labels["label"].notna().sum()) == info["labels"]
    assert AnnotationLayout(str(p.annotations)).is_pulled()


def test_the_script_runs_the_steps_and_prints_the_table(tmp_path):
    """The whole script, small: the real CLI steps run (score needs TensorFlow: left out here), filter writes
    the same Df the simulation holds, and a step over the memory cap is killed and reported, not failed."""
    keep = tmp_path / "sim"
    cmd = [sys.executable, str(SCRIPT), "--scale", str(TINY), "--keep", str(keep), "--no-score-parts", "--no-estimate"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout
    assert "| step | wall (0.0005) | peak RSS (0.0005) | <= 4 GB and <= 15 min (as measured) |" in out
    for name in ("clips list", "filter", "annotate sample", "score launcher", "mix planning", "release manifest",
                 "release verify"):  # fmt: skip
        row = next(line for line in out.splitlines() if line.startswith(f"| {name} |"))
        assert row.rstrip(" |").split(" | ")[-1] in ("yes", "NO"), row  # measured, judged
        assert " s | " in row and ("MiB" in row or "GB" in row), row
    assert "| mix pipeline | - | - | not run: writes shards from media |" in out
    assert "not run: run without --no-score-parts" in out
    # filter on the simulated scores writes the very Df the simulation holds (as filter writes it)
    assert (keep / "runs" / "filter" / "df.parquet").read_bytes() == (keep / "df" / "df.parquet").read_bytes()
    assert (keep / "release" / "metadata" / "1.0.0" / "manifest.json").exists()

    again = subprocess.run(cmd[:-2] + ["--no-score-parts", "--no-estimate", "--only", "filter", "--cap-gb", "0.03"],
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert "reusing the simulation" in again.stderr
    row = next(line for line in again.stdout.splitlines() if line.startswith("| filter |"))
    assert row.rstrip(" |").endswith("over 0.03 GB, killed"), row
