"""Inputs for the mix tests: a Df and a labels table made from a synthetic corpus's ground truth.

The annotation step writes ``labels.parquet`` (schemas.tables.LABELS); here
the same table comes from ``truth.parquet``: three raters who all answer
what the truth says, so a clip is unanimously "on-screen only" when some
second has an audible on-screen source and none an off-screen one, and
"off-screen only" the other way round. Splits are chosen per video so that
every split gets on-screen-only and off-screen-only clips (a real corpus is
big enough for hashed splits to do that; a test corpus of a dozen videos is
not).
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from audioscope.synth.truth import clip_labels, detect_truth, load_truth
from audioscope.schemas.tables import DF, LABEL_OFFSCREEN_ONLY, LABEL_ONSCREEN_ONLY, LABELS, to_table

RATERS = ["rater-a", "rater-b", "rater-c"]
MODEL_ID = "sha256:test-coincidence-model"


def truth_of(index: pd.DataFrame) -> pd.DataFrame:
    """Per clip of the store's index: ``onscreen``, ``offscreen`` (any second) from the corpus truth."""
    source = detect_truth(index["source_uri"].tolist())
    assert source.path, source.how
    truth = load_truth(source.path)
    on = clip_labels(index, truth)["onscreen"]
    off = clip_labels(index, truth.assign(has_onscreen=truth["has_offscreen"]))["onscreen"]
    return index.assign(onscreen=on.to_numpy(), offscreen=off.to_numpy())


def label_of(onscreen: bool, offscreen: bool) -> str | None:
    if onscreen and not offscreen:
        return LABEL_ONSCREEN_ONLY
    if offscreen and not onscreen:
        return LABEL_OFFSCREEN_ONLY
    return None


def choose_splits(clips: pd.DataFrame) -> dict[str, str]:
    """Per video: off-screen-only videos go train, validation, validation, test, test, ...;
    on-screen-only ones train, validation, test, ...; the rest train."""
    labels = clips.assign(label=[label_of(a, b) for a, b in zip(clips["onscreen"], clips["offscreen"])])
    by_video = labels.groupby("video_id")["label"].agg(lambda s: set(s.dropna()))
    off_cycle = ["train", "validation", "validation", "test", "test"]
    on_cycle = ["train", "validation", "test"]
    split, n_off, n_on = {}, 0, 0
    for vid, found in sorted(by_video.items()):
        if LABEL_OFFSCREEN_ONLY in found:
            split[vid] = off_cycle[n_off % len(off_cycle)]
            n_off += 1
        elif LABEL_ONSCREEN_ONLY in found:
            split[vid] = on_cycle[n_on % len(on_cycle)]
            n_on += 1
        else:
            split[vid] = "train"
    return split


def write_df(path: Path, clips: pd.DataFrame, split: dict[str, str]) -> Path:
    """Df: every clip of the store (probability 0.9, or 0.85 without on-screen sound)."""
    rows = [
        {
            "clip_id": r.clip_id, "video_id": r.video_id, "start": r.start, "end": r.end,
            "probability": 0.9 if r.onscreen else 0.85, "split": split[r.video_id], "model_id": MODEL_ID,
            "source_uri": r.source_uri, "licence_name": r.licence_name, "licence_url": r.licence_url,
        }
        for r in clips.itertuples(index=False)
    ]  # fmt: skip
    path.mkdir(parents=True, exist_ok=True)
    _write(path / "df.parquet", to_table(rows, DF))
    return path


def write_labels(path: Path, clips: pd.DataFrame, split: dict[str, str]) -> Path:
    """labels.parquet for every clip: three raters agreeing with the truth."""
    rows = []
    for r in clips.itertuples(index=False):
        s = split[r.video_id]
        rows.append({
            "clip_id": r.clip_id, "video_id": r.video_id, "start": r.start, "end": r.end, "split": s,
            "pool": "filtered_train" if s == "train" else "filtered_eval", "n_votes": 3, "raters": RATERS,
            "onscreen_votes": [bool(r.onscreen)] * 3, "offscreen_votes": [bool(r.offscreen)] * 3,
            "label": label_of(r.onscreen, r.offscreen), "source_uri": r.source_uri,
            "licence_name": r.licence_name, "licence_url": r.licence_url,
        })  # fmt: skip
    _write(path, to_table(rows, LABELS))
    return path


def _write(path: Path, table) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    path.write_bytes(buf.getvalue())
