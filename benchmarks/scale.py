#!/usr/bin/env python
"""The users' scale without media: every metadata-only step, timed and its peak memory measured.

Builds the metadata of a YFCC100M-size run (``--scale 1.0``: 200,000
videos, ~7.2 M clips, ~36 per video, varying per video), written as the
steps write it, with no media:

  store       the clip store's ``store.json``, index shards
              (``index/clips-NNNNN-of-MMMMM.parquet``, one per 10,000 videos,
              a video's shard the crc32 of its id, rows sorted by
              (video_id, start)), the status parts (``index/parts/``), the
              status table and ``summary.json`` (``clipstore/format.Layout``);
              no ``media/`` and no per-video ``status/*.json``
  scores      ``scores.parquet`` (one merge chunk per id prefix, in order),
              ``scores.json`` and a complete ``summary.json`` (ScoresLayout);
              ~4.5% of the clips score >= 0.8, so ``filter``'s default
              threshold keeps ~325,000 clips, the published train list's size
  score-run   every video's score part (``parts/<id[:2]>/<id>.parquet``, as
              score's WritePart writes it) and scores.json, with a tiny
              SavedModel of the coincidence signature (``--no-score-parts``:
              neither, and ``score`` is not run)
  df          Df as ``filter`` writes it (df.parquet, csv/, report.json,
              report.md) from the clips >= 0.8, per-video hashed splits
  annotations pools.parquet / pools.json (10,000 clips per pool), votes.parquet,
              labels.parquet and pull.json (AnnotationLayout)
  release     a release copy of the metadata files (curated/ and index/) for
              the manifest and ``release verify``

Then every metadata-only step runs as its own child process, one at a time:
the real CLI where the step runs without media (``clips list``, ``filter``,
``annotate sample``, ``score`` over a folder where every video has its part,
so that it plans and merges but reads no media, ``release verify``), else the
launcher's own library calls, named in the table (score's planning alone, mix
planning, the release manifest). Steps that need media are listed as not
run. Each child's peak memory is its VmHWM (read at exit by a hook, and
polled with its sub-processes' RSS every 0.1 s: ru_maxrss is wrong across
exec); a child over ``--cap-gb`` (default 8) is killed and reported "over N
GB, killed", one over ``--timeout`` likewise.

Targets (issue 23): every single-process step <= 4 GB and <= 15 min on 2
cores at full size. Below full size every step also runs at a quarter of
``--scale``, and the table gives the straight line through the two runs at
full size (an estimate; judge the targets at ``--scale 1.0``).

``--rates VIDEO`` measures instead the per-core rates of the cost model of
docs/scale.md (ingest of 6 copies of a real video, render and mix of a
synthetic corpus, each at one worker) and prints its core-hours and cost table.

    .venv/bin/python benchmarks/scale.py --scale 0.01
    .venv/bin/python benchmarks/scale.py --scale 1.0 --keep /data/scale-full   # the users' size

``--keep DIR`` writes the data into DIR and keeps it; run again with the same
DIR and scale and the data is reused (only the steps run).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FULL_VIDEOS = 200_000
MEAN_CLIPS = 37.1  # over decoded videos; ~3% fail, so ~36 per requested video, ~7.2 M clips
FAILED_SHARE = 0.03
THRESHOLD = 0.8
THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))
#: Share of clips at or above THRESHOLD: 325,000 / 7.2 M.
KEEP_SHARE = 0.0452
POOL_SIZE = 10_000
MODEL_ID = "sha256:" + hashlib.sha256(b"scale-benchmark-model").hexdigest()
TARGET_GB = 4.0
TARGET_MIN = 15.0
GB = 1e9
LICENCES = [
    ("Attribution License", "https://creativecommons.org/licenses/by/2.0/"),
    ("Attribution-ShareAlike License", "https://creativecommons.org/licenses/by-sa/2.0/"),
    ("Attribution-NoDerivs License", "https://creativecommons.org/licenses/by-nd/2.0/"),
    ("Attribution-NonCommercial License", "https://creativecommons.org/licenses/by-nc/2.0/"),
    ("Attribution-NonCommercial-ShareAlike License", "https://creativecommons.org/licenses/by-nc-sa/2.0/"),
    ("Attribution-NonCommercial-NoDerivs License", "https://creativecommons.org/licenses/by-nc-nd/2.0/"),
]
MARKER = "scale.json"


# --------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class Paths:
    root: Path

    store = property(lambda self: self.root / "store")
    scores = property(lambda self: self.root / "scores")
    df = property(lambda self: self.root / "df")
    annotations = property(lambda self: self.root / "annotations")
    release = property(lambda self: self.root / "release" / "metadata" / "1.0.0")
    runs = property(lambda self: self.root / "runs")
    #: a scores folder with every video's part and no merge yet: `audioscope score` only merges
    score_run = property(lambda self: self.root / "score-run")
    model = property(lambda self: self.root / "model")


@dataclass
class Videos:
    """The requested videos, sorted by id (numpy columns, one entry per video)."""

    ids: Any  # object array of str
    n_clips: Any  # int64 (0 for a failed video)
    failed: Any  # bool
    licence: Any  # int index into LICENCES
    onscreen: Any  # bool: a video most of whose clips score high
    source: Any  # object array of str

    def __len__(self) -> int:
        return len(self.ids)


def make_videos(n: int, seed: int) -> Videos:
    import numpy as np

    rng = np.random.default_rng(seed)
    raw = rng.bytes(16 * n)
    ids = np.array(sorted(raw[16 * i : 16 * i + 16].hex() for i in range(n)), dtype=object)
    sigma = 0.9
    mu = np.log(MEAN_CLIPS) - sigma**2 / 2
    n_clips = np.clip(np.rint(rng.lognormal(mu, sigma, n)), 1, 3000).astype(np.int64)
    failed = rng.random(n) < FAILED_SHARE
    n_clips[failed] = 0
    # videos with on-screen sound: their clips score >= THRESHOLD a third of the time
    onscreen = rng.random(n) < 0.12
    source = np.array([f"gs://yfcc100m/data/videos/mp4/{v[:3]}/{v[3:6]}/{v}.mp4" for v in ids], dtype=object)
    return Videos(ids, n_clips, failed, rng.integers(0, len(LICENCES), n), onscreen, source)


def clip_columns(v: Videos, sel: Any) -> dict[str, Any]:
    """The key columns of every clip of the videos ``sel`` (positions, in id order): pyarrow arrays."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    counts = v.n_clips[sel]
    total = int(counts.sum())
    which = np.repeat(np.arange(len(sel)), counts)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(sel) else np.zeros(0, np.int64)
    start = (np.arange(total) - np.repeat(offsets, counts)).astype(np.int64)
    vid = pc.take(pa.array(v.ids[sel].tolist(), pa.string()), pa.array(which))
    ms = pc.utf8_lpad(pc.cast(pa.array(start * 1000), pa.string()), 7, "0")
    return {
        "clip_id": pc.binary_join_element_wise(vid, ms, "-"),
        "video_id": vid,
        "start": pa.array(start.astype(np.float64)),
        "end": pa.array((start + 5).astype(np.float64)),
        "which": which,  # position in sel of each clip's video
    }


def write_store(p: Paths, v: Videos, say: Callable[[str], None]) -> dict[str, Any]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from audioscope.clipstore.format import Layout, StoreParams, index_shard_count, index_shard_of, init_store
    from audioscope.clipstore.summary import SummaryCounts, build_summary
    from audioscope.schemas.tables import CLIP_INDEX, STATUS, validate

    layout = Layout(str(p.store))
    params = init_store(layout, StoreParams())
    n = index_shard_count(len(v))
    shard_of = np.array([index_shard_of(vid, n) for vid in v.ids])
    lic_name = np.array([LICENCES[i][0] for i in v.licence], dtype=object)
    lic_url = np.array([LICENCES[i][1] for i in v.licence], dtype=object)
    duration = v.n_clips + 4 + 0.5
    os.makedirs(layout.index_dir, exist_ok=True)
    names = []
    for i in range(n):
        sel = np.flatnonzero((shard_of == i) & (v.n_clips > 0))
        cols = clip_columns(v, sel)
        at = sel[cols.pop("which")]
        table = pa.table({
            **cols, "split": pa.nulls(len(at), pa.string()),
            "licence_name": pa.array(lic_name[at].tolist(), pa.string()),
            "licence_url": pa.array(lic_url[at].tolist(), pa.string()),
            "source_uri": pa.array(v.source[at].tolist(), pa.string()),
            "video_duration": pa.array(duration[at].astype(np.float64)),
        })  # fmt: skip
        path = layout.index_shard(i, n)
        pq.write_table(validate(table, CLIP_INDEX), path, compression="zstd")
        names.append(os.path.basename(path))
    say(f"store: {n} index shards")
    # status rows: one per requested video, parts per id prefix, merged in prefix order
    ok = ~v.failed
    status = pa.table({
        "video_id": pa.array(v.ids.tolist(), pa.string()),
        "source": pa.array(v.source.tolist(), pa.string()),
        "origin": pa.array([f"yfcc100m.csv:{i + 2}" for i in range(len(v))], pa.string()),
        "status": pa.array(np.where(ok, "ok", "failed").tolist(), pa.string()),
        "kind": pa.array(np.where(ok, None, "decode_error").tolist(), pa.string()),
        "message": pa.array(np.where(ok, None, "ffmpeg could not decode the video stream").tolist(), pa.string()),
        "transient": pa.array(np.zeros(len(v), bool)),
        "n_clips": pa.array(v.n_clips),
        "duration": pa.array(np.where(ok, duration, np.nan), from_pandas=True),
        "media_bytes": pa.array(np.where(ok, (v.n_clips + 4) * 48_000, 0).astype(np.int64)),
        "media_seconds": pa.array(np.where(ok, v.n_clips + 4, 0).astype(np.int64)),
        "format_name": pa.array(np.where(ok, "mov,mp4,m4a,3gp,3g2,mj2", None).tolist(), pa.string()),
        "video_codec": pa.array(np.where(ok, "h264", None).tolist(), pa.string()),
        "audio_codec": pa.array(np.where(ok, "aac", None).tolist(), pa.string()),
        "split": pa.nulls(len(v), pa.string()),
        "clips_requested": pa.array(np.where(ok, v.n_clips, None).tolist(), pa.int64()),
        "clips_produced": pa.array(v.n_clips),
    })  # fmt: skip
    status = validate(status, STATUS)
    prefixes = np.array([s[:2] for s in v.ids])
    uniq, first = np.unique(prefixes, return_index=True)
    bounds = list(first) + [len(v)]
    os.makedirs(os.path.dirname(layout.status_part("00")), exist_ok=True)
    with pq.ParquetWriter(layout.status_table, STATUS, compression="zstd") as writer:
        for k, prefix in enumerate(uniq):
            part = status.slice(bounds[k], bounds[k + 1] - bounds[k])
            pq.write_table(part, layout.status_part(str(prefix)), compression="zstd")
            writer.write_table(part)
    c = SummaryCounts()
    c.videos, c.ok, c.failed = len(v), int(ok.sum()), int((~ok).sum())
    c.clips = c.clips_requested = int(v.n_clips.sum())
    c.media_bytes = int(((v.n_clips + 4) * 48_000)[ok].sum())
    c.media_seconds = int((v.n_clips + 4)[ok].sum())
    c.seconds_of_video = float(duration[ok].sum())
    c.by_kind = {"decode_error": c.failed} if c.failed else {}
    summary = build_summary(c, names, params.to_json(), None)
    with open(layout.summary_json, "w") as f:
        f.write(json.dumps(summary, indent=2) + "\n")
    say(f"store: {c.videos} videos, {c.clips} clips, {len(uniq)} status parts")
    return {"videos": c.videos, "videos_ok": c.ok, "clips": c.clips, "index_shards": n, "hours": summary["hours"]}


def _probabilities(rng: Any, onscreen_of_clip: Any) -> Any:
    import numpy as np

    n = len(onscreen_of_clip)
    # overall share >= THRESHOLD: 0.88 * 0.005 + 0.12 * rate = KEEP_SHARE
    rate = np.where(onscreen_of_clip, (KEEP_SHARE - 0.88 * 0.005) / 0.12, 0.005)
    high = rng.random(n) < rate
    low = rng.beta(1.5, 4.0, n) * THRESHOLD * 0.999
    return np.where(high, THRESHOLD + rng.random(n) * (1 - THRESHOLD), low).astype(np.float32)


def export_model(path: Path) -> str:
    """A tiny SavedModel with the coincidence signature (bright frames, quiet audio score high); its model_id."""
    from audioscope import quiet

    quiet.configure()  # TensorFlow's start-up notes off stderr, as the CLI does
    import tensorflow as tf

    from audioscope.schemas.coincidence_signature import content_id, signature_description

    class Tiny(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(1.0, dtype=tf.float32)

        @tf.function(input_signature=[tf.TensorSpec([None, 80000], tf.float32, name="audio"),
                                      tf.TensorSpec([None, 5, 128, 128, 3], tf.uint8, name="frames")])  # fmt: skip
        def serve(self, audio, frames):  # type: ignore[no-untyped-def]
            bright = tf.reduce_mean(tf.cast(frames, tf.float32), axis=[1, 2, 3, 4]) / 255.0
            rms = tf.sqrt(tf.reduce_mean(tf.square(audio), axis=1))
            return {"probability": tf.sigmoid(self.w * (4.0 * bright - 2.0) - 5.0 * rms)}

    module = Tiny()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return content_id(path, signature_description())


def write_scores_and_df(p: Paths, v: Videos, seed: int, say: Callable[[str], None], model_id: str = MODEL_ID,
                        parts: bool = False) -> dict[str, Any]:
    """scores.parquet (merge chunks per id prefix, in order), scores.json, summary.json; Df; a pool of
    unfiltered candidate clips for the annotation pools. With ``parts``, also the score-run folder: every
    video's part as score's WritePart writes it, and its scores.json (no merge)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from audioscope.curation.filter import audioscope_csv, df_table_bytes
    from audioscope.curation.splits import assign_splits
    from audioscope.pipelines.score_layout import FORMAT_VERSION, ScoresLayout
    from audioscope.schemas.df import DfLayout
    from audioscope.schemas.tables import DF, SCORES, SPLITS, validate

    rng = np.random.default_rng(seed + 1)
    layout = ScoresLayout(str(p.scores))
    os.makedirs(layout.root, exist_ok=True)
    prefixes = np.array([s[:2] for s in v.ids])
    uniq, first = np.unique(prefixes, return_index=True)
    bounds = list(first) + [len(v)]
    kept_parts, cand_parts = [], []
    total = 0
    hist_all, hist_kept = np.zeros(20, np.int64), np.zeros(20, np.int64)
    at_least = np.zeros(len(THRESHOLDS), np.int64)
    # every unfiltered clip has the same chance of being an annotation candidate (4x what the pools need)
    cand_rate = min(1.0, 4 * POOL_SIZE / max(int(v.n_clips.sum()), 1))
    with pq.ParquetWriter(layout.scores_parquet, SCORES, compression="zstd") as writer:
        for k in range(len(uniq)):
            sel = np.arange(bounds[k], bounds[k + 1])
            sel = sel[v.n_clips[sel] > 0]
            cols = clip_columns(v, sel)
            at = sel[cols.pop("which")]
            prob = _probabilities(rng, v.onscreen[at])
            table = pa.table({**cols, "probability": pa.array(prob),
                              "model_id": pa.array([model_id] * len(at), pa.string())})  # fmt: skip
            table = validate(table, SCORES)
            writer.write_table(table)
            if parts:
                run = ScoresLayout(str(p.score_run))
                os.makedirs(run.path("parts", str(uniq[k])), exist_ok=True)
                offset = 0
                for vid, n in zip(v.ids[sel], v.n_clips[sel]):
                    pq.write_table(table.slice(offset, int(n)), run.part(vid), compression="zstd")
                    offset += int(n)
            total += len(at)
            hist_all += np.histogram(prob.astype(np.float64), bins=20, range=(0, 1))[0]
            hist_kept += np.histogram(prob[prob >= THRESHOLD].astype(np.float64), bins=20, range=(0, 1))[0]
            for k, t in enumerate(THRESHOLDS):
                at_least[k] += int((prob >= t).sum())
            keep = prob >= THRESHOLD
            kept_parts.append((table.filter(pa.array(keep)), at[keep]))
            cand = rng.random(len(at)) < cand_rate
            cand_parts.append((table.filter(pa.array(cand)), at[cand]))
    meta = {"format_version": FORMAT_VERSION, "model_id": model_id, "model": str(p.model),
            "store": str(p.store), "batch_size": 64}  # fmt: skip
    Path(layout.scores_json).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    if parts:
        Path(ScoresLayout(str(p.score_run)).scores_json).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    n_videos = int((v.n_clips > 0).sum())
    summary = {
        "format_version": FORMAT_VERSION, "model_id": model_id, "model": meta["model"], "store": meta["store"],
        "scores": layout.scores_parquet, "clips": total, "videos": n_videos, "index_clips": total,
        "index_videos": n_videos, "clips_scored": total, "videos_scored": n_videos, "videos_failed": 0,
        "failed": {}, "missing_clips": 0, "complete": True, "seconds": None, "clips_per_second": None,
        "finished_at": "2026-01-01T00:00:00+00:00",
    }  # fmt: skip
    Path(layout.summary_json).write_text(json.dumps(summary, indent=2) + "\n")
    say(f"scores: {total} clips")

    def frame(parts: list[tuple[Any, Any]]) -> Any:
        table = pa.concat_tables([t for t, _ in parts])
        at = np.concatenate([a for _, a in parts]) if parts else np.zeros(0, np.int64)
        f = table.to_pandas()
        f["source_uri"] = v.source[at]
        f["licence_name"] = [LICENCES[i][0] for i in v.licence[at]]
        f["licence_url"] = [LICENCES[i][1] for i in v.licence[at]]
        return f

    df = frame(kept_parts)
    split_of = assign_splits(sorted(df["video_id"].unique().tolist()), (0.8, 0.1, 0.1), 0)
    df["split"] = df["video_id"].map(split_of)
    df = df[list(DF.names)].reset_index(drop=True)
    dl = DfLayout(str(p.df))
    os.makedirs(p.df / "csv", exist_ok=True)
    Path(dl.df_parquet).write_bytes(df_table_bytes(df))
    for s in SPLITS:
        Path(dl.csv(s)).write_text(audioscope_csv(df[df["split"] == s]))
    per_split = {s: {"clips": int((df["split"] == s).sum()), "videos": int(df.loc[df["split"] == s, "video_id"].nunique())}
                 for s in SPLITS}  # fmt: skip
    # the keys of filter's report.json (the ones a step reads: inputs, kept, splits, histogram)
    report = {
        "inputs": {"store": str(p.store), "scores": str(p.scores), "scores_json": meta, "model_id": model_id,
                   "selection": {"rule": "threshold", "threshold": THRESHOLD, "max_clips_per_video": None,
                                 "top_k_videos": None, "description": f"probability >= {THRESHOLD}"},
                   "splits": {"ratios": [0.8, 0.1, 0.1], "seed": 0, "videos_with_published_split": 0},
                   "truth": {"how": "none (benchmarks/scale.py simulation)", "path": None}},
        "scored": {"clips": total, "videos": n_videos},
        "store": {"clips": total, "clips_not_scored": 0, "videos": n_videos},
        "kept": {"clips": int(len(df)), "videos": int(df["video_id"].nunique())},
        "splits": per_split,
        "threshold_counts": [{"clips": int(c), "threshold": t} for t, c in zip(THRESHOLDS, at_least)],
        "histogram": {"bins": [round(float(b), 2) for b in np.linspace(0, 1, 21)], "all": hist_all.tolist(),
                      "kept": hist_kept.tolist(), "by_class": None, "largest_bin": None},
        "files": {"csv": {s: dl.csv_name(s) for s in SPLITS}, "df": "df.parquet", "report_md": "report.md"},
        "truth_metrics": None, "warnings": [],
    }  # fmt: skip
    Path(dl.report_md).write_text(f"# Df (benchmarks/scale.py simulation)\n\n{len(df)} clips kept of {total}.\n")
    Path(dl.report_json).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    say(f"df: {len(df)} clips of {df['video_id'].nunique()} videos")
    cand = frame(cand_parts)
    cand["split"] = [split_of.get(x) or "" for x in cand["video_id"]]
    return {"scores_clips": total, "df_clips": int(len(df)), "df": df, "candidates": cand}


def write_annotations(p: Paths, df: Any, cand: Any, seed: int, say: Callable[[str], None]) -> dict[str, Any]:
    """pools.parquet/pools.json as `annotate sample` writes them; votes, labels and pull.json as `annotate pull`."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from audioscope.annotation.pools import pools_table_bytes
    from audioscope.curation.splits import hashed_split
    from audioscope.schemas.annotations import AnnotationLayout
    from audioscope.schemas.tables import LABELS, POOLS, VOTES, validate

    rng = np.random.default_rng(seed + 2)
    layout = AnnotationLayout(str(p.annotations))
    os.makedirs(layout.root, exist_ok=True)
    cand = cand[~cand["clip_id"].isin(set(df["clip_id"]))].copy()
    missing = cand["split"] == ""
    cand.loc[missing, "split"] = [hashed_split(x) for x in cand.loc[missing, "video_id"]]

    def draw(frame: Any, n: int) -> Any:
        return frame.iloc[np.sort(rng.permutation(len(frame))[: min(n, len(frame))])]

    pools = pd.concat([
        draw(cand[cand["split"] == "train"], POOL_SIZE).assign(pool="unfiltered_train"),
        draw(df[df["split"] == "train"], POOL_SIZE).assign(pool="filtered_train"),
        draw(df[df["split"] != "train"], POOL_SIZE).assign(pool="filtered_eval"),
    ], ignore_index=True)  # fmt: skip
    order = {name: i for i, name in enumerate(POOLS)}
    pools = pools.assign(_p=pools["pool"].map(order)).sort_values(["_p", "video_id", "start"], kind="mergesort")
    pools = pools.drop(columns="_p").reset_index(drop=True)
    Path(layout.pools_parquet).write_bytes(pools_table_bytes(pools))
    counts = pools["pool"].value_counts()
    layout.write_json(layout.pools_json, {
        "seed": 0, "store": str(p.store), "df": str(p.df), "split_ratios": [0.8, 0.1, 0.1], "split_seed": 0,
        "pools": {name: {"asked": POOL_SIZE if name != "unfiltered_eval" else 0, "drawn": int(counts.get(name, 0)),
                         "candidates": int(counts.get(name, 0))} for name in POOLS},
        "clips": int(len(pools)), "rule": "benchmarks/scale.py simulation",
    })  # fmt: skip
    # labels: three raters per clip; unanimous on-screen-only, off-screen-only, or no label
    n = len(pools)
    filtered = pools["pool"].str.startswith("filtered").to_numpy()
    u = rng.random(n)
    on_share = np.where(filtered, 0.6, 0.25)
    off_share = np.where(filtered, 0.05, 0.2)
    label = np.where(u < on_share, "onscreen_only", np.where(u < on_share + off_share, "offscreen_only", None))
    on_votes = [[True] * 3 if x == "onscreen_only" else [False] * 3 if x == "offscreen_only" else [True, False, True] for x in label]
    off_votes = [[False] * 3 if x == "onscreen_only" else [True] * 3 if x == "offscreen_only" else [False, False, True] for x in label]
    labels = pools.assign(n_votes=3, raters=[["rater1", "rater2", "rater3"]] * n, onscreen_votes=on_votes,
                          offscreen_votes=off_votes, label=label).sort_values(["video_id", "start"], kind="mergesort")
    table = validate(pa.Table.from_pandas(labels[list(LABELS.names)], preserve_index=False), LABELS)
    pq.write_table(table, layout.labels_parquet, compression="zstd")
    rep = np.repeat(np.arange(n), 3)
    votes = pools.iloc[rep].reset_index(drop=True)
    votes = votes.assign(
        task_id=rep + 1, annotation_id=np.arange(3 * n) + 1, rater=np.tile(["rater1", "rater2", "rater3"], n),
        rater_id=np.tile([1, 2, 3], n), onscreen=np.concatenate(on_votes) if n else [],
        offscreen=np.concatenate(off_votes) if n else [], lead_time=rng.random(3 * n) * 20 + 5,
        updated_at="2026-01-01T00:00:00+00:00",
    )  # fmt: skip
    table = validate(pa.Table.from_pandas(votes[list(VOTES.names)], preserve_index=False), VOTES)
    pq.write_table(table, layout.votes_parquet, compression="zstd")
    layout.write_json(layout.pull_json, {"clips": int(n), "votes": int(3 * n), "labels": int(pd.notna(label).sum()),
                                         "note": "benchmarks/scale.py simulation"})  # fmt: skip
    say(f"annotations: {n} pooled clips, {int(pd.notna(label).sum())} unanimous labels")
    return {"pooled": int(n), "labels": int(pd.notna(label).sum())}


def write_release_copy(p: Paths) -> dict[str, Any]:
    """A release folder of the metadata files (curated/ and index/ groups), without its manifest."""
    from audioscope import storage
    from audioscope.clipstore.format import Layout
    from audioscope.pipelines.score_layout import ScoresLayout
    from audioscope.schemas.annotations import AnnotationLayout
    from audioscope.schemas.df import DfLayout

    df, ann, store = DfLayout(str(p.df)), AnnotationLayout(str(p.annotations)), Layout(str(p.store))
    files = {
        "curated/df/df.parquet": df.df_parquet, "curated/df/report.json": df.report_json,
        "curated/df/report.md": df.report_md, "curated/labels/labels.parquet": ann.labels_parquet,
        "curated/labels/votes.parquet": ann.votes_parquet, "curated/labels/pools.parquet": ann.pools_parquet,
        "curated/scores/scores.parquet": ScoresLayout(str(p.scores)).scores_parquet,
    }  # fmt: skip
    for path in sorted(storage.glob(store.index_shard_glob())):
        files[f"curated/index/{os.path.basename(path)}"] = path
    files["curated/index/status.parquet"] = store.status_table
    size = 0
    for rel, src in files.items():
        dest = p.release / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        size += dest.stat().st_size
    return {"release_files": len(files), "release_bytes": size}


def generate(p: Paths, scale: float, seed: int, say: Callable[[str], None], parts: bool = True) -> dict[str, Any]:
    t0 = time.perf_counter()
    n = max(20, int(round(FULL_VIDEOS * scale)))
    v = make_videos(n, seed)
    info: dict[str, Any] = {"scale": scale, "seed": seed, "score_parts": parts}
    model_id = MODEL_ID
    if parts:
        model_id = export_model(p.model)
        say(f"model: a tiny SavedModel with the coincidence signature ({model_id[:19]}...)")
    info.update(write_store(p, v, say))
    got = write_scores_and_df(p, v, seed, say, model_id, parts)
    info.update({k: got[k] for k in ("scores_clips", "df_clips")})
    info.update(write_annotations(p, got["df"], got["candidates"], seed, say))
    info.update(write_release_copy(p))
    info["generate_s"] = round(time.perf_counter() - t0, 1)
    with open("/proc/self/status") as f:
        info["generate_peak_bytes"] = int(next(line for line in f if line.startswith("VmHWM")).split()[1]) * 1024
    (p.root / MARKER).write_text(json.dumps(info, indent=2) + "\n")
    return info


# --------------------------------------------------------------------------- children (library-call steps)


def _write_peak() -> None:
    path = os.environ.get("SCALE_PEAK_FILE")
    if not path:
        return
    with open("/proc/self/status") as f:
        kb = int(next(line for line in f if line.startswith("VmHWM")).split()[1])
    with open(path, "w") as f:
        f.write(str(kb * 1024))


#: Prepended to every CLI child: its VmHWM is written at exit (``audioscope.cli.run`` runs atexit handlers).
HOOK = (
    "import atexit, os, sys\n"
    "def _scale_peak():\n"
    "    p = os.environ.get('SCALE_PEAK_FILE')\n"
    "    if p:\n"
    "        kb = int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])\n"
    "        open(p, 'w').write(str(kb * 1024))\n"
    "atexit.register(_scale_peak)\n"
    "sys.argv[0] = 'audioscope'\n"
    "from audioscope.cli import run\n"
    "run()\n"
)


def child_baseline(p: Paths) -> str:
    """The interpreter with what the steps import (pandas, pyarrow, audioscope): the extrapolation's base."""
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import audioscope.clipstore.reader  # noqa: F401
    import audioscope.curation.filter  # noqa: F401

    return "imports only"


def child_score_plan(p: Paths) -> str:
    """What `audioscope score` does between loading the model and starting the pipeline: the index's
    clips per video (read_index_clips), the videos already scored, the work shards."""
    from audioscope.clipstore.reader import open_store
    from audioscope.pipelines.score import VIDEOS_PER_WORK_SHARD, ScoresLayout, read_index_clips, todo_work_lines
    from audioscope.pipelines.work import write_work_shards

    out = p.runs / "score-plan"
    shutil.rmtree(out, ignore_errors=True)
    layout = ScoresLayout(str(out))
    store = open_store(str(p.store), "the coincidence model takes")
    clips, invalid, n_index = read_index_clips(store)
    todo = sorted(set(clips) - layout.scored_videos())
    files = write_work_shards(layout.work_dir, todo_work_lines(store, set(todo)), per_shard=VIDEOS_PER_WORK_SHARD,
                              total=len(todo))  # fmt: skip
    return f"{len(todo)} videos / {n_index} clips in {len(files)} work shards"


def child_mix_plan(p: Paths) -> str:
    """What `audioscope mix` does before its pipeline: inputs, catalog, plan, one scan (work lines, SHA-256)
    and every row of examples.parquet. The store has no media, so every index video counts as having it."""
    from audioscope.pipelines.mix import MixConfig, load_inputs
    from audioscope.pipelines.mix_catalog import store_catalog
    from audioscope.pipelines.mix_outputs import example_rows
    from audioscope.pipelines.mix_plan import make_plan

    config = MixConfig(store=str(p.store), df=str(p.df), labels=str(p.annotations), out=str(p.runs / "mix"))
    options = config.plan_options()
    loaded = load_inputs(config)
    df, labels = loaded["df"], loaded["labels"]
    keep = set(df["clip_id"].astype(str)) | set(labels["clip_id"].astype(str))
    store = loaded["store"]
    # no media/ folder: as if every video of the index had its media shard (one id per video, streamed)
    media = {str(v) for f in store.iter_index(columns=["video_id"]) for v in f["video_id"].unique()}
    catalog = store_catalog(store, media, keep, loaded["pair_lists"], exclude_licences=options.exclude_licences,
                            labels=labels, scores=dict(zip(df["clip_id"].astype(str), df["probability"].astype(float))))  # fmt: skip
    plan = make_plan(catalog, df, labels, loaded["pair_lists"], options)
    size = [0]
    plan.scan(lambda shard, line: size.__setitem__(0, size[0] + len(line) + 1))
    rows = sum(1 for _ in example_rows(plan))
    return f"{rows} examples planned, {size[0] / 2**20:.0f} MiB of work lines"


def child_release_manifest(p: Paths) -> str:
    """The release manifest of the metadata copy: every file's size and SHA-256 (curation.manifest.sha256_file,
    as `release publish` hashes), written streamed (Manifest.iter_json)."""
    from audioscope.curation.manifest import FileEntry, Manifest, sha256_file

    entries = []
    for path in sorted(p.release.rglob("*")):
        if path.is_file() and path.name != "manifest.json":
            size, digest = sha256_file(str(path))
            entries.append(FileEntry(path.relative_to(p.release).as_posix(), size, digest))
    m = Manifest(name="metadata", version="1.0.0", created="2026-01-01T00:00:00Z", files=entries)
    tmp = p.release / "manifest.json.tmp"
    with open(tmp, "w") as f:
        for piece in m.iter_json():
            f.write(piece)
    os.replace(tmp, p.release / "manifest.json")
    return f"{len(entries)} files, {m.total_bytes / 2**20:.0f} MiB hashed"


CHILDREN: dict[str, Callable[[Paths], str]] = {
    "baseline": child_baseline, "score-plan": child_score_plan, "mix-plan": child_mix_plan,
    "release-manifest": child_release_manifest,
}  # fmt: skip


# --------------------------------------------------------------------------- running steps


@dataclass(frozen=True)
class Step:
    name: str
    how: str  # what runs, for the table
    argv: Sequence[str] = ()  # a CLI step: the audioscope arguments
    child: str | None = None  # a library-call step: a CHILDREN name
    not_run: str | None = None  # a step that cannot run without media: why
    prepare: Callable[[Paths], None] | None = None


@dataclass
class Outcome:
    step: Step
    rc: int | None = None
    wall: float = 0.0
    peak: int = 0
    killed: str | None = None
    note: str = ""
    stderr_tail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _fresh(path: Path) -> Callable[[Paths], None]:
    return lambda p: shutil.rmtree(path, ignore_errors=True)


def steps(p: Paths, parts: bool) -> list[Step]:
    s, r = str(p.store), p.runs
    return [
        Step("clips list", "audioscope clips list --store S (default table, to /dev/null)", ["clips", "list", "--store", s]),
        Step("clips list csv", "audioscope clips list --store S --format csv", ["clips", "list", "--store", s, "--format", "csv"]),
        Step("clips list --status", "audioscope clips list --store S --status", ["clips", "list", "--store", s, "--status"]),
        Step("clips stats", "audioscope clips stats --store S", ["clips", "stats", "--store", s]),
        Step("filter", "audioscope filter --scores SC --store S --out OUT --no-truth",
             ["filter", "--scores", str(p.scores), "--store", s, "--out", str(r / "filter"), "--no-truth"],
             prepare=_fresh(r / "filter")),
        Step("annotate sample", "audioscope annotate sample --store S --df DF --annotations OUT",
             ["annotate", "sample", "--store", s, "--df", str(p.df), "--annotations", str(r / "annotate")],
             prepare=_fresh(r / "annotate")),
        Step("score launcher", "score's planning: read_index_clips + work shards (library calls)", child="score-plan"),
        Step("score (all parts written)", "audioscope score --store S --model M --out RUN: launcher + merge of every part",
             ["score", "--store", s, "--model", str(p.model), "--out", str(p.score_run)],
             not_run=None if parts else "run without --no-score-parts: it needs every video's part"),
        Step("score pipeline", "audioscope score (ReadClips, RunInference)", not_run="reads media"),
        Step("mix planning", "mix launcher: load_inputs, store_catalog, make_plan, scan, example rows (library calls)",
             child="mix-plan"),
        Step("mix pipeline", "audioscope mix", not_run="writes shards from media"),
        Step("render launcher", "audioscope annotate render", not_run="renders clip videos from media"),
        Step("release manifest", "SHA-256 of every file + manifest.json (library calls, as publish)",
             child="release-manifest"),
        Step("release verify", "audioscope release verify DIR --jobs 2", ["release", "verify", str(p.release), "--jobs", "2"]),
    ]


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        q = todo.pop()
        out.append(q)
        try:
            for tid in os.listdir(f"/proc/{q}/task"):
                with open(f"/proc/{q}/task/{tid}/children") as f:
                    todo.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return out


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def run_step(step: Step, p: Paths, cap: float, timeout: float) -> Outcome:
    """One step as a child process: wall time, peak memory (VmHWM at exit, polled RSS of the tree)."""
    out = Outcome(step)
    if step.not_run:
        out.note = step.not_run
        return out
    if step.prepare:
        step.prepare(p)
    p.runs.mkdir(parents=True, exist_ok=True)
    peak_file = p.runs / ".peak"
    peak_file.unlink(missing_ok=True)
    env = dict(os.environ, SCALE_PEAK_FILE=str(peak_file), PYTHONPATH=str(ROOT))
    if step.child:
        argv = [sys.executable, __file__, "--child", step.child, "--keep", str(p.root)]
    else:
        argv = [sys.executable, "-c", HOOK, *step.argv]
    err_path = p.runs / ".stderr"
    child_out = p.runs / ".stdout"
    t0 = time.perf_counter()
    with open(err_path, "wb") as err, open(child_out if step.child else os.devnull, "wb") as so:
        proc = subprocess.Popen(argv, stdout=so, stderr=err, env=env, start_new_session=True, cwd=str(ROOT))
        while proc.poll() is None:
            tree = _tree(proc.pid)
            rss = sum(_status_kb(q, "VmRSS") for q in tree)
            out.peak = max(out.peak, rss, _status_kb(proc.pid, "VmHWM"))
            reason = None
            if rss > cap:
                reason = f"over {cap / GB:g} GB, killed"
            elif time.perf_counter() - t0 > timeout:
                reason = f"over {timeout / 60:g} min, killed"
            if reason:
                out.killed = reason
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                proc.wait()
                break
            time.sleep(0.1)
    out.wall = time.perf_counter() - t0
    out.rc = proc.returncode
    if peak_file.exists():
        try:
            out.peak = max(out.peak, int(peak_file.read_text()))
        except ValueError:
            pass
    out.stderr_tail = err_path.read_text(errors="replace")[-2000:]
    if step.child and child_out.exists():
        text = child_out.read_text().strip().splitlines()
        out.note = text[-1] if text else ""
    return out


# --------------------------------------------------------------------------- per-core rates (the cost model)

#: The users' run (docs/scale.md): minutes of video, clips, clips rendered for annotation, mixture examples.
RUN = {"video_minutes": 150_000, "clips": 7_200_000, "rendered": 30_000, "examples": 780_000}
#: Dataflow batch list prices (us-central1; check them): per vCPU-hour, per GB-hour of memory, per GB-hour of
#: persistent disk; n1-standard-4 has 3.75 GB per vCPU; Dataflow Shuffle batch workers get 25 GB disk each.
PRICES = {"vcpu_hour": 0.056, "gb_hour": 0.003557, "pd_gb_hour": 0.000054, "gb_per_vcpu": 3.75, "pd_gb_per_vcpu": 25 / 4}
#: Score: README's `benchmarks/score.py` (read + score, the demo's coincidence model, batch 64): clips/s per core.
SCORE_CLIPS_PER_CORE_S = 209.0


def _cpu_of(argv: Sequence[str], log: Path) -> tuple[float, float]:
    """(wall s, CPU s of the command and every process it waited for) of one command."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log, "ab") as err:
        res = subprocess.run(list(argv), stdout=subprocess.DEVNULL, stderr=err, cwd=str(ROOT))
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        sys.exit(f"{' '.join(map(str, argv))} exited {res.returncode}; see {log}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure_rates(video: Path, work: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """Per-core rates of ingest (a real video), render and mix (a synthetic corpus), each at one worker:
    the CPU seconds of a bigger run minus those of a smaller one (start-up taken out)."""
    import json as _json

    a = [sys.executable, "-c", HOOK]
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log = work / "stderr.txt"
    one = ["--workers", "1", "--poll", "60"]
    for i in range(6):
        shutil.copyfile(video, work / f"real{i}.mp4")
    (work / "one.txt").write_text(f"{work / 'real0.mp4'}\n")
    (work / "six.txt").write_text("".join(f"{work / f'real{i}.mp4'}\n" for i in range(6)))
    say("ingest of 1 and of 6 copies of the real video, 1 worker, 1 ffmpeg thread")
    _, c1 = _cpu_of([*a, "ingest", str(work / "one.txt"), "--store", str(work / "s1"), *one, "--ffmpeg-threads", "1"], log)
    _, c6 = _cpu_of([*a, "ingest", str(work / "six.txt"), "--store", str(work / "s6"), *one, "--ffmpeg-threads", "1"], log)
    summary = _json.loads((work / "s6" / "summary.json").read_text())
    minutes = 5 * (summary["hours"] * 60 / 6)
    say("a synthetic corpus of 24 videos: synth, ingest, score (tiny model), filter (every clip), annotate sample")
    _cpu_of([*a, "synth", "--out", str(work / "syn"), "--videos", "24", "--seed", "5"], log)
    _cpu_of([*a, "ingest", str(work / "syn" / "list.txt"), "--store", str(work / "store"), *one], log)
    export_model(work / "model")
    _cpu_of([*a, "score", "--store", str(work / "store"), "--model", str(work / "model"), "--out", str(work / "scores"),
             *one], log)  # fmt: skip
    _cpu_of([*a, "filter", "--scores", str(work / "scores"), "--store", str(work / "store"), "--out", str(work / "df"),
             "--threshold", "0", "--no-truth"], log)  # fmt: skip
    render, mix = {}, {}
    for n in (20, 80):
        ann = work / f"ann{n}"
        _cpu_of([*a, "annotate", "sample", "--store", str(work / "store"), "--df", str(work / "df"), "--annotations",
                 str(ann), "--unfiltered-train", str(n), "--filtered-train", "0", "--filtered-eval", "0"], log)  # fmt: skip
        say(f"render {n} clips, 1 worker")
        render[n] = _cpu_of([*a, "annotate", "render", "--annotations", str(ann), "--media", str(work / f"media{n}"),
                             "--media-root", str(work / "syn" / "videos"), *one], log)[1]  # fmt: skip
    for n in (200, 800):
        say(f"mix {n} examples (unsupervised), 1 worker")
        mix[n] = _cpu_of([*a, "mix", "--store", str(work / "store"), "--df", str(work / "df"), "--out", str(work / f"mix{n}"),
                          "--recipes", "unsupervised", "--examples", str(n), *one], log)[1]  # fmt: skip
    shard_bytes = sum(s["bytes"] for s in _json.loads((work / "mix800" / "summary.json").read_text())["shards"])
    return {
        "ingest_cpu_s_per_video_minute": (c6 - c1) / minutes,
        "store_bytes_per_second": summary["bytes_per_media_second"],
        "render_clips_per_cpu_s": 60 / max(render[80] - render[20], 1e-9),
        "mix_examples_per_cpu_s": 600 / max(mix[800] - mix[200], 1e-9),
        "mix_bytes_per_example": shard_bytes / 800,
        "score_clips_per_cpu_s": SCORE_CLIPS_PER_CORE_S,
    }


def cost_model(rates: dict[str, Any], run: dict[str, int] = RUN, prices: dict[str, float] = PRICES,
               busy: float = 0.8) -> str:  # fmt: skip
    """The core-hours and Dataflow cost of the users' run from the rates (docs/scale.md has the formula)."""
    core_h = {
        "ingest": run["video_minutes"] * rates["ingest_cpu_s_per_video_minute"] / 3600,
        "score": run["clips"] / rates["score_clips_per_cpu_s"] / 3600,
        "render": run["rendered"] / rates["render_clips_per_cpu_s"] / 3600,
        "mix": run["examples"] / rates["mix_examples_per_cpu_s"] / 3600,
    }
    per_vcpu_h = (prices["vcpu_hour"] + prices["gb_per_vcpu"] * prices["gb_hour"]
                  + prices["pd_gb_per_vcpu"] * prices["pd_gb_hour"])  # fmt: skip
    lines = [f"| step | work | rate per core | core-hours | vCPU-hours at {busy:.0%} busy | cost |", "|---|---|---|---|---|---|"]
    what = {
        "ingest": (f"{run['video_minutes']:,} min of video", f"{rates['ingest_cpu_s_per_video_minute']:.2f} CPU-s per min"),
        "score": (f"{run['clips']:,} clips", f"{rates['score_clips_per_cpu_s']:.0f} clips/s"),
        "render": (f"{run['rendered']:,} clips", f"{rates['render_clips_per_cpu_s']:.2f} clips/s"),
        "mix": (f"{run['examples']:,} examples", f"{rates['mix_examples_per_cpu_s']:.0f} examples/s"),
    }  # fmt: skip
    for step, h in core_h.items():
        lines.append(f"| {step} | {what[step][0]} | {what[step][1]} | {h:,.1f} | {h / busy:,.1f} | ${h / busy * per_vcpu_h:,.2f} |")
    total = sum(core_h.values())
    lines.append(f"| total | | | {total:,.1f} | {total / busy:,.1f} | ${total / busy * per_vcpu_h:,.2f} |")
    lines.append(f"\nPer vCPU-hour on n1-standard-4 (vCPU + {prices['gb_per_vcpu']} GB memory + "
                 f"{prices['pd_gb_per_vcpu']:g} GB disk): ${per_vcpu_h:.4f}. Store: "
                 f"{run['video_minutes'] * 60 * rates['store_bytes_per_second'] / 1e9:,.0f} GB; mixtures: "
                 f"{run['examples'] * rates['mix_bytes_per_example'] / 1e9:,.0f} GB.")  # fmt: skip
    return "\n".join(lines)


# --------------------------------------------------------------------------- the table


def _fmt_gb(n: float) -> str:
    return f"{n / GB:.2f} GB" if n >= 0.1 * GB else f"{n / 2**20:.0f} MiB"


def _fmt_s(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def _line(y: float, y_ref: float, s: float, s_ref: float) -> float:
    """The straight line through (s_ref, y_ref) and (s, y), at full size (1.0); never below y."""
    return max(y, y_ref + (y - y_ref) * (1.0 - s_ref) / (s - s_ref))


def verdict(o: Outcome, scale: float, ref: "Outcome | None", ref_scale: float) -> tuple[str, str, str]:
    """(full-size memory, full-size time, meets the targets?): measured at 1.0, else the line through
    the step's measurement at ``ref_scale`` and at ``scale``."""
    if o.killed:
        return ">" + o.killed.split(",")[0].replace("over ", ""), "-", o.killed
    if o.rc != 0:
        return "-", "-", f"FAILED (exit {o.rc})"
    if scale >= 1 or ref is None:  # full size, or no estimate asked for: the measurement itself
        mem, wall = float(o.peak), o.wall
    elif ref.rc != 0 or ref.killed:
        return "-", "-", "no estimate (the reference run failed)"
    else:
        mem, wall = _line(o.peak, ref.peak, scale, ref_scale), _line(o.wall, ref.wall, scale, ref_scale)
    ok = mem <= TARGET_GB * GB and wall <= TARGET_MIN * 60
    return _fmt_gb(mem), _fmt_s(wall), "yes" if ok else "NO"


def table(outcomes: Sequence[Outcome], scale: float, refs: dict[str, Outcome] | None, ref_scale: float) -> str:
    """The per-step table (Markdown, for README)."""
    estimate = scale < 1 and refs is not None
    head = ["step", f"wall ({scale:g})", f"peak RSS ({scale:g})"]
    head += [f"wall ({ref_scale:g})", f"peak RSS ({ref_scale:g})", "full size: peak (est.)", "full size: wall (est.)"] if estimate else []
    head += [f"<= {TARGET_GB:g} GB and <= {TARGET_MIN:g} min" + (" (est.)" if estimate else " (as measured)" if scale < 1 else "")]
    rows = [head, ["---"] * len(head)]
    for o in outcomes:
        if o.step.not_run:
            rows.append([o.step.name] + ["-"] * (len(head) - 2) + [f"not run: {o.step.not_run}"])
            continue
        ref = refs.get(o.step.name) if refs is not None else None
        if refs is not None and ref is None:  # the reference run did not have this step
            ref = Outcome(o.step, rc=1)
        mem, wall, ok = verdict(o, scale, ref, ref_scale)
        killed = ">" if o.killed else ""
        row = [o.step.name, killed + _fmt_s(o.wall), killed + _fmt_gb(o.peak)]
        if estimate:
            row += ["-", "-"] if ref is None else [_fmt_s(ref.wall), _fmt_gb(ref.peak)]
            row += [mem, wall]
        row.append(ok)
        rows.append(row)
    text = "\n".join("| " + " | ".join(r) + " |" for r in rows)
    legend = "\n".join(f"- {o.step.name}: {o.step.how}" for o in outcomes if not o.step.not_run)
    return f"{text}\n\nWhat each step runs:\n{legend}"


# --------------------------------------------------------------------------- main


def prepare(root: Path, scale: float, seed: int, parts: bool, say: Callable[[str], None]) -> dict[str, Any]:
    """The simulation in ``root``: reused when it is of this scale, seed and kind, else (re)written."""
    marker = root / MARKER
    info = json.loads(marker.read_text()) if marker.exists() else None
    if info and (info.get("scale"), info.get("seed"), info.get("score_parts")) == (scale, seed, parts):
        say(f"reusing the simulation in {root} (made in {info['generate_s']} s)")
        return info
    if root.exists():
        for sub in ("store", "scores", "df", "annotations", "release", "runs", "score-run", "model", MARKER):
            target = root / sub
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    say(f"writing the simulation at scale {scale:g} into {root}")
    # in its own process, so that this one stays small while the steps run
    argv = [sys.executable, __file__, "--child", "generate", "--keep", str(root), "--scale", repr(scale),
            "--seed", str(seed)] + ([] if parts else ["--no-score-parts"])  # fmt: skip
    res = subprocess.run(argv, stdout=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if res.returncode != 0 or not marker.exists():
        sys.exit(f"writing the simulation failed (exit {res.returncode})")
    return json.loads(marker.read_text())


def describe(info: dict[str, Any]) -> str:
    return (
        f"simulation (scale {info['scale']:g}): {info['videos']} videos ({info['videos_ok']} decoded), "
        f"{info['clips']} clips, {info['index_shards']} index shards, {info['hours']:.0f} h of video; "
        f"Df {info['df_clips']} clips; {info['pooled']} pooled clips, {info['labels']} labels; "
        f"release copy {info['release_files']} files, {info['release_bytes'] / 2**20:.0f} MiB; "
        f"written in {info['generate_s']} s" + (f", peak {_fmt_gb(info['generate_peak_bytes'])}" if "generate_peak_bytes" in info else "")
    )


def run_steps(p: Paths, info: dict[str, Any], only: Sequence[str] | None, cap: float, timeout: float,
              say: Callable[[str], None]) -> list[Outcome]:  # fmt: skip
    outcomes = []
    for step in steps(p, bool(info.get("score_parts"))):
        if only and step.name not in only:
            continue
        if step.not_run:
            say(f"{step.name}: not run ({step.not_run})")
        else:
            say(f"{step.name} ...")
        o = run_step(step, p, cap, timeout)
        outcomes.append(o)
        if o.rc not in (0, None) and not o.killed:
            say(f"{step.name} exited {o.rc}:\n{o.stderr_tail}")
        elif not step.not_run:
            say(f"{step.name}: {_fmt_s(o.wall)}, peak {_fmt_gb(o.peak)}" + (f" ({o.killed})" if o.killed else "")
                + (f"; {o.note}" if o.note else ""))
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0,
                    help="fraction of the users' scale (1.0: 200,000 videos, ~7.2 M clips; 0.01 for a quick run)")
    ap.add_argument("--keep", metavar="DIR", default=None,
                    help="write the simulation into DIR and keep it (reused when DIR holds one of the same scale)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the simulation (default 0)")
    ap.add_argument("--cap-gb", type=float, default=8.0, help="kill a step whose processes hold more (default 8)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="kill a step that runs longer, seconds (default 1800)")
    ap.add_argument("--only", action="append", default=None, metavar="STEP",
                    help="run only this step (repeatable; names as in the table)")
    ap.add_argument("--generate-only", action="store_true", help="write the simulation and stop")
    ap.add_argument("--no-score-parts", action="store_true",
                    help="do not write every video's score part (and the model): faster, but `score` is not run")
    ap.add_argument("--no-estimate", action="store_true",
                    help="below full size, do not run the steps again at a quarter of --scale for the full-size estimate")
    ap.add_argument("--rates", metavar="VIDEO", default=None,
                    help="instead: measure the per-core rates of the cost model (docs/scale.md) at one worker, "
                         "ingest on 6 copies of VIDEO (a real video file), and print the cost table")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child == "generate":
        generate(Paths(Path(args.keep)), args.scale, args.seed, lambda text: print(f"scale: {text}", file=sys.stderr, flush=True),
                 not args.no_score_parts)  # fmt: skip
        return 0
    if args.child:
        note = CHILDREN[args.child](Paths(Path(args.keep)))
        _write_peak()
        print(note, flush=True)
        os._exit(0)
    if not 0 < args.scale <= 1.0:
        ap.error("--scale must be in (0, 1]")

    def say(text: str) -> None:
        print(f"scale: {text}", file=sys.stderr, flush=True)

    root = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="audioscope-scale-"))
    if args.rates:
        try:
            rates = measure_rates(Path(args.rates).resolve(), root / "rates", say)
            print(json.dumps({k: round(v, 3) for k, v in rates.items()}, indent=2))
            print(cost_model(rates))
        finally:
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
        return 0
    parts = not args.no_score_parts
    cap, timeout = args.cap_gb * GB, args.timeout
    ref_scale = args.scale / 4
    try:
        info = prepare(root, args.scale, args.seed, parts, say)
        print(describe(info), flush=True)
        refs = None
        if args.scale < 1 and not args.no_estimate:
            ref_root = root / "reference"
            ref_info = prepare(ref_root, ref_scale, args.seed, parts, say)
            print("reference " + describe(ref_info), flush=True)
        if args.generate_only:
            return 0
        base = run_step(Step("baseline", "python + pandas/pyarrow/audioscope imports", child="baseline"),
                        Paths(root), cap, 300)  # fmt: skip
        if args.scale < 1 and not args.no_estimate:
            say(f"the steps at {ref_scale:g} (the reference of the full-size estimate)")
            refs = {o.step.name: o for o in run_steps(Paths(root / "reference"), ref_info, args.only, cap, timeout, say)}
            say(f"the steps at {args.scale:g}")
        outcomes = run_steps(Paths(root), info, args.only, cap, timeout, say)
        print(f"\ninterpreter with the steps' imports: {_fmt_gb(base.peak)}, {base.wall:.1f} s. Targets (issue 23): "
              f"<= {TARGET_GB:g} GB and <= {TARGET_MIN:g} min per single-process step on 2 cores at full size "
              f"({FULL_VIDEOS} videos, ~7.2 M clips).")  # fmt: skip
        if refs is not None:
            print(f"Full-size estimates: the straight line through each step's runs at {ref_scale:g} and "
                  f"{args.scale:g}, at 1.0 (measure at --scale 1.0 to be sure; below --scale 0.1 the line overestimates "
                  "the steps that stream, whose memory stops growing once their 65,536-row batches are full). "
                  f"Steps over {args.cap_gb:g} GB are killed.")  # fmt: skip
        print()
        print(table(outcomes, args.scale, refs, ref_scale), flush=True)
        failed = [o for o in outcomes if o.rc not in (0, None) and not o.killed]
        return 1 if failed else 0
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
