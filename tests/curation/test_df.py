"""The Df folder's owner (audioscope.schemas.df) and what the filter adds to its report: the histogram
by ground truth, the largest bin explained, the precision/recall curve (real files, real filter)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audioscope.schemas.df import DfLayout, read_df, read_report, split_settings
from audioscope.curation.filter import CURVE_THRESHOLDS, FilterConfig, Selection, SplitSettings, filter
from audioscope.errors import UserError

from .helpers import index_rows, make_corpus, make_store, write_scores


@pytest.fixture
def silent_corpus(tmp_path):
    """12 videos: 4 with nothing audible (every clip scored 0.47-0.49), 8 with on- or off-screen sound."""
    rng = np.random.default_rng(5)
    seconds = {f"syn{i:02d}": 14 for i in range(12)}
    onscreen = {v: ([s for s in range(14) if s % 3 == 0] if i % 3 == 1 else []) for i, v in enumerate(seconds)}
    offscreen = {v: ([s for s in range(14) if s % 2 == 0] if i % 3 == 2 else []) for i, v in enumerate(seconds)}
    corpus = make_corpus(tmp_path / "corpus", onscreen, seconds, offscreen)
    index = index_rows({v: 10 for v in seconds}, video_dir=corpus / "videos")
    silent = index["video_id"].map(lambda v: not onscreen[v] and not offscreen[v]).to_numpy()
    p = np.where(silent, rng.uniform(0.47, 0.49, len(index)), rng.uniform(0.0, 1.0, len(index))).round(3)
    store = make_store(tmp_path / "store", index)
    scores = write_scores(tmp_path / "scores", index, p)
    return tmp_path, index, store, scores, silent, p


def test_histogram_by_ground_truth_and_the_largest_bin_explained(silent_corpus):
    tmp, index, store, scores, silent, p = silent_corpus
    res = filter(FilterConfig(scores=scores, store=store, out=str(tmp / "df"), selection=Selection(threshold=0.5)))
    h = res.report["histogram"]
    by_class = h["by_class"]
    assert [sum(x) for x in zip(*by_class.values())] == h["all"]
    assert sum(by_class["silent"]) == int(silent.sum()) == 40
    big = h["largest_bin"]
    assert big["range"] == [0.45, 0.5] and big["classes"]["silent"] == 40
    assert big["clips"] == int(((p >= 0.45) & (p < 0.5)).sum()) and math.isclose(big["share"], round(big["clips"] / len(p), 4))
    assert big["silent_clips_in_bin_share_of_all_silent"] == 1.0
    assert big["silent_score_range"] == [round(float(p[silent].min()), 3), round(float(p[silent].max()), 3)]
    md = (tmp / "df" / "report.md").read_text()
    assert "The bin 0.45-0.50 holds" in md and "40 have no audible source" in md and "nearly one score" in md
    # the picture differs from the one without truth (the classes are drawn)
    plain = filter(FilterConfig(scores=scores, store=store, out=str(tmp / "plain"), selection=Selection(threshold=0.5),
                                use_truth=False))  # fmt: skip
    assert plain.report["histogram"]["by_class"] is None and "classes" not in plain.report["histogram"]["largest_bin"]
    assert (tmp / "df" / "score_histogram.png").read_bytes() != (tmp / "plain" / "score_histogram.png").read_bytes()


def test_precision_recall_curve_matches_an_independent_count(silent_corpus):
    tmp, index, store, scores, silent, p = silent_corpus
    res = filter(FilterConfig(scores=scores, store=store, out=str(tmp / "df")))
    truth = pd.read_parquet(tmp / "corpus" / "truth.parquet")
    on = {(v, s) for v, s, h in zip(truth["video_id"], truth["second"], truth["has_onscreen"]) if h}
    label = np.array([any((v, s) in on for s in range(int(a), int(b)))
                      for v, a, b in zip(index["video_id"], index["start"], index["end"])])  # fmt: skip
    curve = res.report["truth_metrics"]["pr_curve"]
    assert [r["threshold"] for r in curve] == list(CURVE_THRESHOLDS)
    p32 = p.astype(np.float32).astype(np.float64)  # scores are stored as float32
    for row in curve:
        sel = p32 >= row["threshold"]
        assert row["clips"] == int(sel.sum())
        assert row["recall"] == round((label & sel).sum() / label.sum(), 4)
        if sel.any():
            assert row["precision"] == round((label & sel).sum() / sel.sum(), 4)
        else:
            assert row["precision"] is None


def test_the_layout_owns_the_folder(silent_corpus):
    tmp, index, store, scores, *_ = silent_corpus
    out = tmp / "df"
    layout = DfLayout.of(str(out))
    assert not layout.is_finished()
    with pytest.raises(UserError, match="audioscope filter"):
        layout.require_finished()
    with pytest.raises(UserError, match="no Df in"):
        read_df(layout)
    res = filter(FilterConfig(scores=scores, store=store, out=str(out), splits=SplitSettings((0.6, 0.2, 0.2), seed=9)))
    assert layout.is_finished()
    assert set(res.files) == {"df.parquet", "csv/train.csv", "csv/validate.csv", "csv/test.csv", "score_histogram.png",
                              "report.md", "report.json"}  # fmt: skip
    assert list(res.files)[-1] == "report.json"  # written last: its presence means finished
    assert DfLayout.of(str(out / "df.parquet")) == layout
    df = read_df(str(out / "df.parquet"), columns=["clip_id", "split"])
    assert list(df.columns) == ["clip_id", "split"] and len(df) == res.report["kept"]["clips"]
    report = read_report(layout)
    assert report.split_ratios == (0.6, 0.2, 0.2) and report.split_seed == 9
    assert split_settings(str(out)) == ((0.6, 0.2, 0.2), 9)
    assert split_settings(str(tmp / "nowhere")) == ((0.8, 0.1, 0.1), 0)
    # a table that is not a Df, and a report that is not JSON: one clear line each
    pq.write_table(pa.table({"x": [1]}), out / "df.parquet")
    with pytest.raises(UserError, match="not a valid Df table.*re-run `audioscope filter`"):
        read_df(layout)
    (out / "report.json").write_text("{")
    with pytest.raises(UserError, match="not valid JSON"):
        read_report(layout)


def test_filter_config_is_frozen_and_keyword_only(tmp_path):
    config = FilterConfig(scores="s", store="c", out="o")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.out = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        FilterConfig("s", "c", "o")  # type: ignore[misc]
    assert json.dumps(dataclasses.asdict(config)["selection"])  # plain data, loggable
