"""audioscope.curation.filter: selection, splits, exports and the report (real files)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from audioscope.errors import UserError
from audioscope.curation.filter import (
    TABLE_THRESHOLDS,
    FilterConfig,
    Selection,
    SplitSettings,
    filter,
    select_clips,
)
from audioscope.curation.splits import hashed_split
from audioscope.schemas.tables import DF
from audioscope.sources.lists import VideoRequest, read_video_list

from .helpers import file_bytes, index_rows, make_corpus, make_store, rng_probabilities, write_scores
from ..test_metrics import brute_auc


def _scores(rows: list[tuple[str, float, float]]) -> pd.DataFrame:
    """(video_id, start, probability) -> a scores-like frame."""
    return pd.DataFrame(
        {
            "clip_id": [f"{v}-{int(s * 1000):07d}" for v, s, _ in rows],
            "video_id": [v for v, _, _ in rows],
            "start": [float(s) for _, s, _ in rows],
            "end": [float(s) + 5 for _, s, _ in rows],
            "probability": np.array([p for _, _, p in rows], np.float32),
        }
    )


def run_filter(scores, store, out, selection=Selection(), splits=SplitSettings(), truth=None, use_truth=True):
    """The library entry with positional arguments, as these tests call it."""
    return filter(FilterConfig(
        scores=scores, store=store, out=out, selection=selection, splits=splits, truth=truth, use_truth=use_truth,
    ))  # fmt: skip


def _kept(df: pd.DataFrame) -> list[tuple[str, float]]:
    return list(zip(df["video_id"], df["start"]))


# --------------------------------------------------------------------------- selection


def test_threshold_keeps_clips_at_or_above_it():
    s = _scores([("a", 0, 0.8), ("a", 1, 0.79), ("a", 2, 0.95), ("b", 0, 0.2), ("b", 3, 1.0), ("c", 1, 0.5)])
    assert _kept(select_clips(s, Selection(threshold=0.8))) == [("a", 0.0), ("a", 2.0), ("b", 3.0)]
    assert _kept(select_clips(s, Selection(threshold=0.0))) == sorted(_kept(s))
    assert select_clips(s, Selection(threshold=1.0))["video_id"].tolist() == ["b"]


def test_cap_keeps_the_best_clips_ties_by_start():
    s = _scores([("a", 0, 0.9), ("a", 1, 0.95), ("a", 2, 0.9), ("a", 3, 0.9), ("a", 4, 0.5), ("b", 0, 0.85)])
    got = select_clips(s, Selection(threshold=0.8, max_clips_per_video=3))
    assert _kept(got) == [("a", 0.0), ("a", 1.0), ("a", 2.0), ("b", 0.0)]  # 0.95, then the two earliest 0.9s
    got = select_clips(s, Selection(threshold=0.8, max_clips_per_video=1))
    assert _kept(got) == [("a", 1.0), ("b", 0.0)]


def test_top_k_ranks_videos_by_mean_of_their_best_clips():
    s = _scores([
        ("a", 0, 1.0), ("a", 1, 0.0), ("a", 2, 0.0),  # mean 0.33, best-1 1.0
        ("b", 0, 0.6), ("b", 1, 0.6),                  # mean 0.6, best-1 0.6
        ("c", 0, 0.5),                                 # mean 0.5
        ("d", 0, 0.9), ("d", 1, 0.3),                  # mean 0.6 (tie with b), best-1 0.9
    ])  # fmt: skip
    # no cap: every clip of the 2 best videos; b and d tie at 0.6, both beat c
    got = select_clips(s, Selection(threshold=None, top_k_videos=2))
    assert _kept(got) == [("b", 0.0), ("b", 1.0), ("d", 0.0), ("d", 1.0)]
    # tie at the cut: b wins over d by video_id
    got = select_clips(s, Selection(threshold=None, top_k_videos=1))
    assert _kept(got) == [("b", 0.0), ("b", 1.0)]
    # cap 1: rank by the best clip (a 1.0, d 0.9, b 0.6), keep that clip; no threshold
    got = select_clips(s, Selection(threshold=None, top_k_videos=3, max_clips_per_video=1))
    assert _kept(got) == [("a", 0.0), ("b", 0.0), ("d", 0.0)]
    # cap 2 with a one-clip video: c's mean is over min(2, 1) = 1 clip
    got = select_clips(s, Selection(threshold=None, top_k_videos=2, max_clips_per_video=2))
    assert sorted(set(got["video_id"])) == ["b", "d"]  # means: a 0.5, b 0.6, c 0.5, d 0.6
    # K beyond the number of videos keeps them all
    assert len(select_clips(s, Selection(threshold=None, top_k_videos=100))) == len(s)


def test_selection_is_validated():
    for kw in (
        {"threshold": 1.5}, {"threshold": None}, {"threshold": 0.5, "top_k_videos": 3},
        {"threshold": None, "top_k_videos": 0}, {"max_clips_per_video": 0},
    ):  # fmt: skip
        with pytest.raises(ValueError):
            Selection(**kw)


# --------------------------------------------------------------------------- the whole step


@pytest.fixture
def setup(tmp_path):
    videos = {f"vid{i:02d}": 3 + i % 7 for i in range(30)}
    index = index_rows(videos, video_dir=tmp_path / "media")
    store = make_store(tmp_path / "store", index)
    scores = write_scores(tmp_path / "scores", index, rng_probabilities(len(index), seed=1))
    return tmp_path, index, store, scores


def test_outputs(setup):
    tmp, index, store, scores = setup
    out = tmp / "df"
    res = run_filter(scores, store, str(out), Selection(threshold=0.6), SplitSettings((0.5, 0.25, 0.25), seed=4))
    table = pq.read_table(out / "df.parquet")
    assert table.schema.names == DF.names and table.schema.equals(DF, check_metadata=False)
    df = table.to_pandas()
    assert len(df) > 0 and (df["probability"] >= 0.6).all()
    assert _kept(df) == sorted(_kept(df))
    s = pd.read_parquet(tmp / "scores" / "scores.parquet")
    assert len(df) == int((s["probability"] >= 0.6).sum())
    assert set(df["model_id"]) == {"coinc-test"}
    assert set(df["licence_name"]) == {"CC BY 2.0"}
    # one split per video, as the documented hash says
    per_video = df.groupby("video_id")["split"].agg(set)
    assert all(len(v) == 1 for v in per_video)
    for vid, splits in per_video.items():
        assert splits == {hashed_split(vid, (0.5, 0.25, 0.25), 4)}
    rep = json.loads((out / "report.json").read_text())
    assert rep["kept"] == {"clips": len(df), "videos": df["video_id"].nunique()}
    assert rep["scored"] == {"clips": len(index), "videos": 30}
    for split in ("train", "validation", "test"):
        part = df[df["split"] == split]
        assert rep["splits"][split] == {"clips": len(part), "videos": part["video_id"].nunique()}
    assert rep["inputs"]["model_id"] == "coinc-test"
    assert rep["inputs"]["selection"]["threshold"] == 0.6
    assert rep["truth_metrics"] is None  # /media is not a synthetic corpus
    assert sum(rep["histogram"]["all"]) == len(index) and sum(rep["histogram"]["kept"]) == len(df)
    assert (out / "score_histogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert "probability >= 0.6" in md and "score_histogram.png" in md
    assert res.df["clip_id"].tolist() == df["clip_id"].tolist()


def test_csvs_read_back_with_the_list_reader(setup):
    tmp, index, store, scores = setup
    out = tmp / "df"
    run_filter(scores, store, str(out), Selection(threshold=0.5))
    df = pd.read_parquet(out / "df.parquet")
    for split, name in (("train", "train"), ("validation", "validate"), ("test", "test")):
        items = list(read_video_list(str(out / "csv" / f"{name}.csv")))
        assert all(isinstance(i, VideoRequest) for i in items), items
        part = df[df["split"] == split]
        got = {i.video_id: (i.uri, i.spans, i.split) for i in items}
        want = {
            vid: (g["source_uri"].iloc[0], tuple(zip(g["start"], g["end"])), split)
            for vid, g in part.groupby("video_id")
        }
        assert got == want


def test_rerun_gives_identical_bytes(setup):
    tmp, index, store, scores = setup
    out = tmp / "df"
    corpus = make_corpus(tmp / "corpus", {"vid01": [2, 3]}, {v: 20 for v in index["video_id"].unique()})
    idx2 = index.assign(source_uri=[str(corpus / "videos" / f"{v}.mp4") for v in index["video_id"]])
    store2 = make_store(tmp / "store2", idx2)
    for args in ((scores, store, str(out)), (scores, store2, str(tmp / "df2"))):
        run_filter(*args)
        first = file_bytes(tmp / args[2].rsplit("/", 1)[-1])
        run_filter(*args)
        assert file_bytes(tmp / args[2].rsplit("/", 1)[-1]) == first
    assert set(first) == {
        "df.parquet", "report.json", "report.md", "score_histogram.png",
        "csv/train.csv", "csv/validate.csv", "csv/test.csv",
    }  # fmt: skip
    assert json.loads(first["report.json"])["truth_metrics"] is not None


def test_adding_videos_keeps_existing_splits(tmp_path):
    small = index_rows({f"v{i}": 4 for i in range(20)})
    big = index_rows({f"v{i}": 4 for i in range(60)})
    splits = {}
    for name, index in (("small", small), ("big", big)):
        store = make_store(tmp_path / f"store-{name}", index)
        scores = write_scores(tmp_path / f"scores-{name}", index, np.ones(len(index)))
        res = run_filter(scores, store, str(tmp_path / f"df-{name}"), Selection(threshold=0.5))
        splits[name] = dict(zip(res.df["video_id"], res.df["split"]))
    assert {v: splits["big"][v] for v in splits["small"]} == splits["small"]
    assert set(splits["big"].values()) == {"train", "validation", "test"}


def test_published_split_is_kept(tmp_path):
    videos = {f"v{i}": 3 for i in range(12)}
    index = index_rows(videos, split={"v0": "test", "v1": "validation", "v2": "train"})
    store = make_store(tmp_path / "store", index)
    scores = write_scores(tmp_path / "scores", index, np.full(len(index), 0.9))
    res = run_filter(scores, store, str(tmp_path / "df"), splits=SplitSettings((1.0, 0.0, 0.0)))
    got = res.df.groupby("video_id")["split"].first().to_dict()
    assert got.pop("v0") == "test" and got.pop("v1") == "validation" and got.pop("v2") == "train"
    assert set(got.values()) == {"train"}
    assert res.report["inputs"]["splits"]["videos_with_published_split"] == 3


def test_empty_selection_still_writes_outputs(setup):
    tmp, index, store, scores = setup
    write_scores(tmp / "low", index, np.full(len(index), 0.1))
    res = run_filter(str(tmp / "low"), store, str(tmp / "df"))
    assert res.df.empty and any("Df is empty" in w for w in res.report["warnings"])
    assert pq.read_table(tmp / "df" / "df.parquet").num_rows == 0
    for name in ("train", "validate", "test"):
        assert (tmp / "df" / "csv" / f"{name}.csv").read_text() == ""
    assert (tmp / "df" / "report.md").exists() and (tmp / "df" / "score_histogram.png").exists()


def test_missing_scores_and_foreign_scores_are_user_errors(setup):
    tmp, index, store, scores = setup
    with pytest.raises(UserError, match="audioscope score"):
        run_filter(str(tmp / "nowhere"), store, str(tmp / "df"))
    other = index_rows({"zzz": 4, "vid00": 3})
    write_scores(tmp / "foreign", other, np.full(len(other), 0.9))
    with pytest.raises(UserError, match=r"4 of 7 scored clips .* different store"):
        run_filter(str(tmp / "foreign"), store, str(tmp / "df"))
    with pytest.raises(UserError, match="not a clip store"):
        run_filter(scores, str(tmp / "nostore"), str(tmp / "df"))
    assert not (tmp / "df").exists()


def test_unscored_clips_are_warned_about(setup):
    tmp, index, store, scores = setup
    part = index.iloc[: len(index) - 5]
    write_scores(tmp / "part", part, np.full(len(part), 0.9))
    res = run_filter(str(tmp / "part"), store, str(tmp / "df"))
    assert res.report["store"]["clips_not_scored"] == 5
    assert any("5 clips of the store are not scored" in w for w in res.report["warnings"])


# --------------------------------------------------------------------------- ground truth


def _truth_setup(tmp_path, n_videos=25, seed=0):
    rng = np.random.default_rng(seed)
    seconds = {f"syn{i:03d}": int(rng.integers(5, 20)) for i in range(n_videos)}
    onscreen = {v: [s for s in range(n) if rng.uniform() < 0.3] for v, n in seconds.items()}
    offscreen = {v: [s for s in range(n) if rng.uniform() < 0.4] for v, n in seconds.items()}
    corpus = make_corpus(tmp_path / "corpus", onscreen, seconds, offscreen)
    index = index_rows({v: n - 4 for v, n in seconds.items()}, video_dir=corpus / "videos")
    # probability: truth plus noise, rounded so there are ties
    label = np.array(
        [any(s in onscreen[v] for s in range(int(a), int(b))) for v, a, b in zip(index["video_id"], index["start"], index["end"])]
    )
    p = np.clip(0.6 * label + rng.uniform(0, 0.6, len(index)), 0, 1).round(2)
    store = make_store(tmp_path / "store", index)
    scores = write_scores(tmp_path / "scores", index, p)
    return corpus, index, store, scores, label, onscreen, offscreen


def test_truth_metrics_match_an_independent_count(tmp_path):
    corpus, index, store, scores, label, onscreen, offscreen = _truth_setup(tmp_path)
    res = run_filter(scores, store, str(tmp_path / "df"), Selection(threshold=0.7))
    t = res.report["truth_metrics"]
    assert res.report["inputs"]["truth"]["path"] == str(corpus / "truth.parquet")
    assert "auto-detected" in res.report["inputs"]["truth"]["how"]
    p = pd.read_parquet(tmp_path / "scores" / "scores.parquet")["probability"].to_numpy(np.float64)
    kept = p >= 0.7
    assert res.report["kept"]["clips"] == int(kept.sum())
    assert t["clips_with_truth"] == len(index) and t["clips_without_truth"] == 0
    assert math.isclose(t["base_rate"], label.mean())
    assert math.isclose(t["precision"], (label & kept).sum() / kept.sum())
    assert math.isclose(t["recall"], (label & kept).sum() / label.sum())
    assert math.isclose(t["roc_auc"], brute_auc(label.tolist(), p.tolist()), rel_tol=1e-12)
    assert [r["threshold"] for r in t["threshold_table"]] == list(TABLE_THRESHOLDS)
    for row in t["threshold_table"]:
        sel = p >= row["threshold"]
        assert row["clips"] == int(sel.sum())
        assert math.isclose(row["recall"], (label & sel).sum() / label.sum())
    off_only = np.array([
        not lab and any(s in offscreen[v] for s in range(int(a), int(b)))
        for lab, v, a, b in zip(label, index["video_id"], index["start"], index["end"])
    ])  # fmt: skip
    assert math.isclose(t["offscreen_only_rate_df"], off_only[kept].mean())
    md = (tmp_path / "df" / "report.md").read_text()
    assert "| 0.95 |" in md and "ROC AUC" in md


def test_no_truth_and_explicit_truth(tmp_path):
    corpus, index, store, scores, *_ = _truth_setup(tmp_path, n_videos=8)
    res = run_filter(scores, store, str(tmp_path / "a"), use_truth=False)
    assert res.report["truth_metrics"] is None and "disabled" in res.report["inputs"]["truth"]["how"]
    # explicit truth for a store whose videos are elsewhere; one video lacks truth
    moved = index.assign(source_uri="/elsewhere/x.mp4")
    store2 = make_store(tmp_path / "store2", moved)
    truth = pd.read_parquet(corpus / "truth.parquet")
    gone = truth["video_id"].iloc[0]
    truth[truth["video_id"] != gone].to_parquet(tmp_path / "t.parquet")
    res = run_filter(scores, store2, str(tmp_path / "b"))
    assert res.report["truth_metrics"] is None
    res = run_filter(scores, store2, str(tmp_path / "c"), truth=str(tmp_path / "t.parquet"))
    t = res.report["truth_metrics"]
    assert t["clips_without_truth"] == int((index["video_id"] == gone).sum()) > 0
    assert any("absent from" in w for w in res.report["warnings"])
    with pytest.raises(UserError, match="not found"):
        run_filter(scores, store2, str(tmp_path / "d"), truth=str(tmp_path / "missing.parquet"))
