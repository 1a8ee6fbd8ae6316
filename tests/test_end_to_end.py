"""The main job through the real command line: synth -> ingest -> coincidence
train -> score -> filter, with real ffmpeg, Beam's DirectRunner, TensorFlow
and files. The model is the tiny smoke-test one (its quality is measured by
benchmarks/coincidence.py, not here); what is checked is that every step
hands the next one what it needs, and that re-runs change nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from audioscope import cli
from audioscope.clipstore.reader import ClipStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("job")
    corpus, store, model, scores, df = (root / n for n in ("corpus", "store", "model", "scores", "df"))
    assert cli.main(["synth", "--out", str(corpus), "--videos", "12", "--seed", "11", "--max-duration", "30"]) == 0
    assert cli.main(["ingest", str(corpus / "list.csv"), "--out", str(store)]) == 0
    assert cli.main([
        "coincidence", "train", "--clips", str(store), "--out", str(model), "--tiny", "--steps", "30",
    ]) == 0  # fmt: skip
    assert cli.main(["score", "--store", str(store), "--model", str(model), "--out", str(scores)]) == 0
    assert cli.main(["filter", "--scores", str(scores), "--store", str(store), "--out", str(df), "--threshold", "0.5"]) == 0
    return root


def test_every_step_feeds_the_next(job):
    store = ClipStore.open(str(job / "store"))
    card = json.loads((job / "model" / "model_card.json").read_text())
    assert card["training"]["steps"] == 30
    assert card["model_id"].startswith("sha256:")
    scores = pd.read_parquet(job / "scores" / "scores.parquet")
    # every clip of the store scored once, by the trained model
    assert sorted(scores["clip_id"]) == sorted(store.index["clip_id"])
    assert set(scores["model_id"]) == {card["model_id"]}
    assert scores["probability"].between(0, 1).all()
    report = json.loads((job / "df" / "report.json").read_text())
    assert report["inputs"]["model_id"] == card["model_id"]
    assert report["scored"]["clips"] == len(scores)
    kept = pd.read_parquet(job / "df" / "df.parquet")
    assert len(kept) == report["kept"]["clips"] == int((scores["probability"] >= 0.5).sum())
    # the synthetic corpus carries ground truth, so the report measures Df against it
    truth = report["truth_metrics"]
    assert truth is not None and 0 < truth["base_rate"] < 1
    assert (job / "df" / "score_histogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerunning_score_and_filter_changes_nothing(job, capsys):
    before = {name: _files(job / name) for name in ("scores", "df")}
    assert cli.main(["score", "--store", str(job / "store"), "--model", str(job / "model"), "--out", str(job / "scores")]) == 0
    assert cli.main([
        "filter", "--scores", str(job / "scores"), "--store", str(job / "store"), "--out", str(job / "df"),
        "--threshold", "0.5",
    ]) == 0  # fmt: skip
    after = {name: _files(job / name) for name in ("scores", "df")}
    for name in ("scores", "df"):
        changed = [
            f for f in before[name]
            if before[name][f] != after[name].get(f) and f not in ("summary.json",) and not f.startswith("work/")
        ]  # fmt: skip
        assert not changed, f"{name}: {changed} changed on a re-run"
    assert after["scores"]["scores.parquet"] == before["scores"]["scores.parquet"]


def test_train_refuses_an_existing_model_dir(job, capsys):
    assert cli.main(["coincidence", "train", "--clips", str(job / "store"), "--out", str(job / "model"), "--tiny"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_report_of_the_run_folder(job, tmp_path):
    """`audioscope report` on the run: the Df section with real clips cut from the store, the rest say what makes them."""
    out = tmp_path / "report"
    assert cli.main(["report", str(job), "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "Example clips per score band" in page and "<video" in page
    assert (out / "media" / "score_histogram.png").is_file() and (out / "media" / "pr_curve.png").is_file()
    clips = sorted((out / "media").glob("clip_*.mp4"))
    assert clips and all(c.read_bytes()[4:8] == b"ftyp" for c in clips)
    for command in ("audioscope annotate", "audioscope mix", "audioscope release publish", "audioscope evaluate"):
        assert command in page
