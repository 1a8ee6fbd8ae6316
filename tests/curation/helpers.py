"""Small real files for the curation tests: a clip store with only an index,
a scores folder, a synthetic-corpus-like folder with truth.parquet."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from audioscope import storage
from audioscope.clipstore.format import Layout, StoreParams, clip_id, init_store
from audioscope.schemas.tables import CLIP_INDEX, validate


def index_rows(
    videos: Mapping[str, int],
    video_dir: str | Path = "/data/videos",
    split: Mapping[str, str] | None = None,
    licence: tuple[str | None, str | None] = ("CC BY 2.0", "https://creativecommons.org/licenses/by/2.0/"),
) -> pd.DataFrame:
    """A clip index: ``videos`` maps video id -> clips (clip k covers [k, k+5))."""
    rows = []
    for vid, n in videos.items():
        for k in range(n):
            rows.append(
                {
                    "clip_id": clip_id(vid, k), "video_id": vid, "start": float(k), "end": float(k + 5),
                    "split": (split or {}).get(vid), "licence_name": licence[0], "licence_url": licence[1],
                    "source_uri": os.path.join(str(video_dir), f"{vid}.mp4"), "video_duration": float(n + 4),
                }
            )  # fmt: skip
    return pd.DataFrame(rows)


def make_store(root: Path, index: pd.DataFrame) -> str:
    """A clip store that ``ClipStore.open`` accepts: store.json, one index shard, summary.json."""
    layout = Layout(str(root))
    init_store(layout, StoreParams())
    name = "clips-00000-of-00001.parquet"
    buf = io.BytesIO()
    pq.write_table(validate(pa.Table.from_pandas(index, schema=CLIP_INDEX, preserve_index=False), CLIP_INDEX), buf)
    storage.atomic_write(layout.path("index", name), buf.getvalue())
    summary = {"index_files": [name], "clips": len(index), "videos": int(index["video_id"].nunique())}
    storage.atomic_write(layout.summary_json, json.dumps(summary))
    return str(root)


def write_scores(root: Path, index: pd.DataFrame, probability: Iterable[float], model_id: str = "coinc-test") -> str:
    """A scores folder as `audioscope score` writes it."""
    root.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "clip_id": pa.array(index["clip_id"].tolist(), pa.string()),
            "video_id": pa.array(index["video_id"].tolist(), pa.string()),
            "start": pa.array(index["start"].tolist(), pa.float64()),
            "end": pa.array(index["end"].tolist(), pa.float64()),
            "probability": pa.array(list(probability), pa.float32()),
            "model_id": pa.array([model_id] * len(index), pa.string()),
        }
    )
    pq.write_table(table, root / "scores.parquet")
    (root / "scores.json").write_text(json.dumps({"model_id": model_id, "model": "models/x", "store": "store"}))
    return str(root)


def make_corpus(root: Path, onscreen: Mapping[str, Iterable[int]], seconds: Mapping[str, int],
                offscreen: Mapping[str, Iterable[int]] | None = None) -> Path:
    """A folder shaped like `audioscope synth` output: videos/, truth.parquet, corpus.json."""
    (root / "videos").mkdir(parents=True, exist_ok=True)
    rows = []
    for vid, n in seconds.items():
        on = set(onscreen.get(vid, ()))
        off = set((offscreen or {}).get(vid, ()))
        for s in range(n):
            rows.append({
                "video_id": vid, "second": s, "onscreen": ["a"] if s in on else [],
                "offscreen": ["b"] if s in off else [], "has_onscreen": s in on, "has_offscreen": s in off,
            })  # fmt: skip
    table = pa.Table.from_pylist(
        rows,
        schema=pa.schema([
            ("video_id", pa.string()), ("second", pa.int32()), ("onscreen", pa.list_(pa.string())),
            ("offscreen", pa.list_(pa.string())), ("has_onscreen", pa.bool_()), ("has_offscreen", pa.bool_()),
        ]),  # fmt: skip
    )
    pq.write_table(table, root / "truth.parquet")
    (root / "corpus.json").write_text(json.dumps({"generator": "audioscope synth", "videos": []}))
    return root


def file_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def rng_probabilities(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, n).astype(np.float32)
