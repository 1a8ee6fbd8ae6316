"""`audioscope filter` through the command line: on small stores, and end to end
on a real synthetic corpus ingested with ffmpeg."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audioscope import cli
from audioscope.clipstore.reader import ClipStore
from audioscope.metrics import roc_auc
from audioscope.sources.lists import VideoRequest, read_video_list

from .helpers import file_bytes, index_rows, make_store, write_scores


@pytest.fixture
def small(tmp_path):
    index = index_rows({f"v{i:02d}": 4 + i % 3 for i in range(20)})
    store = make_store(tmp_path / "store", index)
    p = np.linspace(0, 1, len(index))
    scores = write_scores(tmp_path / "scores", index, p)
    return tmp_path, index, store, scores


def test_threshold_and_top_k_from_the_command_line(small, capsys):
    tmp, index, store, scores = small
    rc = cli.main(["filter", "--scores", scores, "--store", store, "--out", str(tmp / "a"), "--threshold", "0.5", "--no-truth"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "Filter finished" in out and "probability >= 0.5" in out and "report.md" in out
    df = pd.read_parquet(tmp / "a" / "df.parquet")
    assert (df["probability"] >= 0.5).all() and len(df) == int((np.linspace(0, 1, len(index)).astype(np.float32) >= 0.5).sum())

    rc = cli.main([
        "filter", "--scores", scores, "--store", store, "--out", str(tmp / "b"),
        "--top-k-videos", "3", "--max-clips-per-video", "2", "--split-ratios", "0,0,1", "--split-seed", "9",
    ])  # fmt: skip
    assert rc == 0
    df = pd.read_parquet(tmp / "b" / "df.parquet")
    assert df["video_id"].nunique() == 3 and len(df) == 6 and set(df["split"]) == {"test"}
    assert df["video_id"].tolist() == ["v17", "v17", "v18", "v18", "v19", "v19"]
    rep = json.loads((tmp / "b" / "report.json").read_text())
    assert rep["inputs"]["selection"]["rule"] == "top_k_videos"
    assert rep["inputs"]["splits"] == {**rep["inputs"]["splits"], "ratios": [0.0, 0.0, 1.0], "seed": 9}


def test_default_threshold_is_the_published_one(small):
    tmp, index, store, scores = small
    assert cli.main(["filter", "--scores", scores, "--store", store, "--out", str(tmp / "d")]) == 0
    rep = json.loads((tmp / "d" / "report.json").read_text())
    assert rep["inputs"]["selection"]["threshold"] == 0.8


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--split-ratios", "0.5,0.5,0.5"], "sum to 1"),
        (["--split-ratios", "0.5,0.5"], "expected 3"),
        (["--threshold", "1.5"], "between 0 and 1"),
        (["--threshold", "0.5", "--top-k-videos", "3"], "not allowed with"),
        (["--max-clips-per-video", "0"], ">= 1"),
        (["--truth", "t.parquet", "--no-truth"], "not allowed with"),
    ],
)
def test_bad_options_are_refused(small, capsys, extra, message):
    tmp, index, store, scores = small
    with pytest.raises(SystemExit) as e:
        cli.main(["filter", "--scores", scores, "--store", store, "--out", str(tmp / "x"), *extra])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_user_errors_say_what_to_do(small, capsys):
    tmp, index, store, scores = small
    rc = cli.main(["filter", "--scores", str(tmp / "none"), "--store", store, "--out", str(tmp / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "audioscope filter: error:" in err and "audioscope score" in err


def test_empty_selection_warns(small, capsys):
    tmp, index, store, scores = small
    write_scores(tmp / "low", index, np.zeros(len(index)))
    assert cli.main(["filter", "--scores", str(tmp / "low"), "--store", store, "--out", str(tmp / "e")]) == 0
    assert "warning: no clip passes the selection" in capsys.readouterr().err
    assert (tmp / "e" / "report.json").exists()


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    corpus, store = root / "corpus", root / "store"
    assert cli.main(["synth", "--out", str(corpus), "--videos", "12", "--seed", "5", "--max-duration", "40"]) == 0
    assert cli.main(["ingest", str(corpus / "list.csv"), "--out", str(store)]) == 0
    index = ClipStore.open(str(store)).index
    truth = pd.read_parquet(corpus / "truth.parquet")
    on = truth[truth["has_onscreen"]]
    on_seconds = set(zip(on["video_id"], on["second"]))
    label = np.array([
        any((v, s) in on_seconds for s in range(int(a), int(b)))
        for v, a, b in zip(index["video_id"], index["start"], index["end"])
    ])  # fmt: skip
    p = np.clip(0.5 * label + np.random.default_rng(3).uniform(0, 0.6, len(index)), 0, 1)
    scores = write_scores(root / "scores", index, p)
    return root, corpus, str(store), scores, index, label, p


@pytest.mark.integration
@pytest.mark.slow
def test_end_to_end_on_a_synthetic_store(synthetic, capsys):
    root, corpus, store, scores, index, label, p = synthetic
    out = root / "df"
    assert cli.main(["filter", "--scores", scores, "--store", store, "--out", str(out)]) == 0
    summary = capsys.readouterr().out
    for word in ("precision", "recall", "ROC AUC", "train", "validation", "test"):
        assert word in summary
    rep = json.loads((out / "report.json").read_text())
    assert rep["inputs"]["truth"]["path"] == os.path.join(str(corpus), "truth.parquet")
    t = rep["truth_metrics"]
    kept = p.astype(np.float32) >= 0.8
    assert rep["kept"]["clips"] == int(kept.sum()) > 0
    assert math.isclose(t["base_rate"], label.mean())
    assert math.isclose(t["precision"], (label & kept).sum() / kept.sum())
    assert math.isclose(t["recall"], (label & kept).sum() / label.sum())
    assert math.isclose(t["roc_auc"], roc_auc(label, p.astype(np.float32)))
    assert t["roc_auc"] > 0.8  # the fake scores follow the truth
    df = pd.read_parquet(out / "df.parquet")
    assert set(df["licence_name"]) == {"CC0 1.0"}
    # the CSVs name the corpus's videos and read back with our list reader
    n = 0
    for name in ("train", "validate", "test"):
        for item in read_video_list(str(out / "csv" / f"{name}.csv")):
            assert isinstance(item, VideoRequest)
            assert Path(item.uri).parent == corpus / "videos" and Path(item.uri).exists()
            n += len(item.spans)
    assert n == len(df)
    first = file_bytes(out)
    assert cli.main(["filter", "--scores", scores, "--store", store, "--out", str(out)]) == 0
    assert file_bytes(out) == first
