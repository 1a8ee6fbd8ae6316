"""Real step outputs for the release tests, small: a mixtures folder, a Df folder, an annotation folder.

* the mixtures folder follows the contract of ``audioscope mix``: real
  TFRecord shards written with ``tf.io.TFRecordWriter`` (one contract-shaped
  ``tf.train.Example`` per shard), pair CSVs, examples.parquet (the EXAMPLES
  columns), summary.json, and a work/ folder that is not released;
* the Df folder is written by the real ``filter``, with scores.json
  pointing at a model folder that holds a model card;
* the annotation folder has votes.parquet, labels.parquet (the VOTES and
  LABELS schemas), the unanimous clip CSVs, status.json, and a media/ folder
  that is not released.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tests.curation.helpers import index_rows, make_store, write_scores

CC_BY = ("Attribution License", "https://creativecommons.org/licenses/by/2.0/")
CC_ND = ("Attribution-NoDerivs License", "https://creativecommons.org/licenses/by-nd/2.0/")
#: Video -> (split, licence). vidN (NoDerivs) is in Df but in no example.
VIDEOS: dict[str, tuple[str, tuple[str, str]]] = {
    "vidA": ("train", CC_BY), "vidB": ("train", CC_BY), "vidC": ("train", CC_BY), "vidN": ("train", CC_ND),
    "vidD": ("validation", CC_BY), "vidE": ("validation", CC_BY), "vidF": ("test", CC_BY), "vidG": ("test", CC_BY),
}  # fmt: skip
CLIPS_PER_VIDEO = 4
MODEL_ID = "sha256:" + "ab" * 32


def cid(video: str, k: int) -> str:
    return f"{video}-{k * 1000:07d}"


#: (shard folder, type, is_mom, frames clip, clip 1, clip 2 or None, label1)
PLANNED: list[tuple[str, str, bool, str, str, str | None, str]] = [
    ("train/unsupervised", "NOn", True, cid("vidA", 0), cid("vidA", 0), cid("vidB", 1), ""),
    ("train/unsupervised-soff25", "SOff", True, cid("vidA", 2), cid("vidC", 0), cid("vidB", 0), ""),
    ("train/semi-supervised", "LOn", False, cid("vidC", 1), cid("vidC", 1), None, "onscreen_only"),
    ("eval/validation/onscreen_single", "onscreen_single", False, cid("vidD", 0), cid("vidD", 0), None, "onscreen_only"),
    ("eval/validation/offscreen_single", "offscreen_single", False, cid("vidE", 0), cid("vidE", 0), None, "offscreen_only"),
    ("eval/validation/onscreen_mom", "onscreen_mom", True, cid("vidD", 0), cid("vidD", 0), cid("vidE", 0), "onscreen_only"),
    ("eval/validation/offscreen_mom", "offscreen_mom", True, cid("vidE", 0), cid("vidE", 0), cid("vidD", 1), "offscreen_only"),
    ("eval/test/onscreen_single", "onscreen_single", False, cid("vidF", 0), cid("vidF", 0), None, "onscreen_only"),
    ("eval/test/offscreen_single", "offscreen_single", False, cid("vidG", 0), cid("vidG", 0), None, "offscreen_only"),
    ("eval/test/onscreen_mom", "onscreen_mom", True, cid("vidF", 0), cid("vidF", 0), cid("vidG", 0), "onscreen_only"),
    ("eval/test/offscreen_mom", "offscreen_mom", True, cid("vidG", 0), cid("vidG", 0), cid("vidF", 1), "offscreen_only"),
]  # fmt: skip


def _video(clip: str) -> str:
    return clip.rsplit("-", 1)[0]


def _start(clip: str) -> float:
    return int(clip.rsplit("-", 1)[1]) / 1000.0


def _tf_example(row: tuple[str, str, bool, str, str, str | None, str], rng: np.random.Generator) -> bytes:
    """One contract-shaped tf.train.Example (see the contract's record layout)."""
    import tensorflow as tf

    folder, t, mom, frames_clip, c1, c2, label = row
    lic1 = VIDEOS[_video(c1)][1]
    lic2 = VIDEOS[_video(c2)][1] if c2 else ("", "")

    def b(v: str | bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode() if isinstance(v, str) else v]))

    def i(*v: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=list(v)))

    def f(v: float) -> tf.train.Feature:
        return tf.train.Feature(float_list=tf.train.FloatList(value=[v]))

    audio = lambda: rng.integers(-3000, 3000, 80_000, dtype=np.int16).astype("<i2").tobytes()  # noqa: E731
    features = {
        "frames": b(rng.integers(0, 256, (5, 128, 128, 3), dtype=np.uint8).tobytes()),
        "audio1": b(audio()), "audio2": b(audio() if c2 else np.zeros(80_000, "<i2").tobytes()),
        "type": b(t), "is_mom": i(int(mom)),
        "clip_id1": b(c1), "video_id1": b(_video(c1)), "clip_id2": b(c2 or ""), "video_id2": b(_video(c2) if c2 else ""),
        "start1": f(_start(c1)), "end1": f(_start(c1) + 5), "start2": f(_start(c2) if c2 else float("nan")),
        "end2": f(_start(c2) + 5 if c2 else float("nan")), "frames_clip_id": b(frames_clip), "label1": b(label),
        "votes_onscreen1": i(*([1, 1, 1] if label == "onscreen_only" else [0, 0, 0] if label else [])),
        "votes_offscreen1": i(*([0, 0, 0] if label == "onscreen_only" else [1, 1, 1] if label else [])),
        "score1": f(0.9), "licence_name1": b(lic1[0]), "licence_url1": b(lic1[1]),
        "licence_name2": b(lic2[0]), "licence_url2": b(lic2[1]), "schema_version": i(1),
    }  # fmt: skip
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def _shard_path(folder: str) -> str:
    stem = folder.rsplit("/", 1)[1]
    return f"{folder}/{stem}-00000-of-00001.tfrecord"


def _examples_table(store_dir: str) -> pa.Table:
    rows = []
    for folder, t, mom, frames_clip, c1, c2, label in PLANNED:
        parts = folder.split("/")
        rows.append({
            "shard": _shard_path(folder), "index": 0, "subset": parts[-1], "split": "train" if parts[0] == "train" else parts[1],
            "type": t, "is_mom": mom, "frames_clip_id": frames_clip, "clip_id1": c1, "video_id1": _video(c1),
            "start1": _start(c1), "end1": _start(c1) + 5, "path1": f"{store_dir}/{_video(c1)}.mp4",
            "clip_id2": c2, "video_id2": _video(c2) if c2 else None, "start2": _start(c2) if c2 else None,
            "end2": _start(c2) + 5 if c2 else None, "path2": f"{store_dir}/{_video(c2)}.mp4" if c2 else None,
            "label1": label or None, "score1": 0.9,
            "licence_name1": VIDEOS[_video(c1)][1][0], "licence_url1": VIDEOS[_video(c1)][1][1],
            "licence_name2": VIDEOS[_video(c2)][1][0] if c2 else None, "licence_url2": VIDEOS[_video(c2)][1][1] if c2 else None,
        })  # fmt: skip
    from audioscope.schemas.tables import EXAMPLES as SCHEMA, to_table

    return to_table(rows, SCHEMA)


def write_mix(root: Path, video_dir: str, seed: int = 7) -> Path:
    """A finished mixtures folder following the contract (module docstring)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    shards = []
    for row in PLANNED:
        path = root / _shard_path(row[0])
        path.parent.mkdir(parents=True, exist_ok=True)
        with tf.io.TFRecordWriter(str(path)) as w:
            w.write(_tf_example(row, rng))
        shards.append({"path": _shard_path(row[0]), "examples": 1, "bytes": path.stat().st_size})
        if row[0].startswith("eval/"):
            split, name = row[0].split("/")[1:]
            second = f"{video_dir}/{_video(row[5])}.mp4,{_start(row[5])},{_start(row[5]) + 5}" if row[5] else ",,"
            (path.parent / f"{split}_{name}_pairs.csv").write_text(
                f"{video_dir}/{_video(row[4])}.mp4,{_start(row[4])},{_start(row[4]) + 5},{second}\n"
            )
    pq.write_table(_examples_table(video_dir), root / "examples.parquet")
    counts_train = {
        r[0].split("/")[1]: {"total": 1, **{t: int(r[1] == t) for t in ("NOn", "SOff", "LOn", "LOff")}}
        for r in PLANNED if r[0].startswith("train/")
    }  # fmt: skip
    counts_eval: dict[str, dict[str, int]] = {}
    for r in PLANNED:
        if r[0].startswith("eval/"):
            counts_eval.setdefault(r[0].split("/")[1], {})[r[0].split("/")[2]] = 1
    summary = {
        "schema_versions": {"mixture_record": 1, "examples": 1},
        "toolkit_version": "0.1.0",
        "config": {"seed": seed, "recipes": {"unsupervised": {"NOn": 1.0}}, "examples_per_shard": 1},
        "inputs": {"store": "clipstore", "df": "df", "labels": "labels", "model_id": MODEL_ID},
        "counts": {"train": counts_train, "eval": counts_eval},
        "shards": shards,
    }
    (root / "work").mkdir()
    (root / "work" / "work-00000-of-00001.jsonl").write_text("{}\n")  # not released
    (root / "summary.json").write_text(json.dumps(summary, indent=2))
    return root


def write_df(root: Path) -> Path:
    """A Df folder made by the real filter step, scores pointing at a model folder with a card."""
    from audioscope.curation.filter import FilterConfig, Selection, filter

    frames = [
        index_rows({v: CLIPS_PER_VIDEO}, root / "videos", split={v: split}, licence=lic)
        for v, (split, lic) in VIDEOS.items()
    ]
    index = pd.concat(frames, ignore_index=True)
    store = make_store(root / "store", index)
    model = root / "model"
    model.mkdir()
    card = {"model_id": MODEL_ID, "training": {"seed": 31337, "steps": 10}, "validation": {"roc_auc": 0.9}}
    (model / "model_card.json").write_text(json.dumps(card))
    scores = write_scores(root / "scores", index, np.full(len(index), 0.9), model_id=MODEL_ID)
    (root / "scores" / "scores.json").write_text(
        json.dumps({"model_id": MODEL_ID, "model": str(model), "store": store})
    )
    config = FilterConfig(
        scores=scores, store=store, out=str(root / "df"), selection=Selection(threshold=0.5), use_truth=False
    )
    filter(config, index=index)
    return root / "df"


def write_labels(root: Path, video_dir: str) -> Path:
    """An annotation folder: labels of the eval clips and one train clip, three raters each."""
    from audioscope.schemas.tables import LABELS, VOTES, to_table

    root.mkdir(parents=True)
    labelled = {cid("vidC", 1): ("train", "filtered_train", "onscreen_only")}
    for v in ("vidD", "vidE", "vidF", "vidG"):
        split = VIDEOS[v][0]
        labelled[cid(v, 0)] = (split, "filtered_eval", "onscreen_only" if v in ("vidD", "vidF") else "offscreen_only")
        labelled[cid(v, 1)] = (split, "filtered_eval", None)
    raters = ["ann", "bob", "cy"]
    labels, votes = [], []
    for n, (clip, (split, pool, label)) in enumerate(sorted(labelled.items())):
        on = [label == "onscreen_only"] * 3 if label else [True, False, True]
        off = [label == "offscreen_only"] * 3 if label else [False, False, True]
        v = _video(clip)
        labels.append({
            "clip_id": clip, "video_id": v, "start": _start(clip), "end": _start(clip) + 5, "split": split,
            "pool": pool, "n_votes": 3, "raters": raters, "onscreen_votes": on, "offscreen_votes": off,
            "label": label, "source_uri": f"{video_dir}/{v}.mp4", "licence_name": VIDEOS[v][1][0],
            "licence_url": VIDEOS[v][1][1],
        })  # fmt: skip
        for r, (o, f) in enumerate(zip(on, off)):
            votes.append({
                "clip_id": clip, "video_id": v, "start": _start(clip), "end": _start(clip) + 5, "split": split,
                "pool": pool, "task_id": n, "annotation_id": 10 * n + r, "rater": raters[r], "rater_id": r,
                "onscreen": o, "offscreen": f, "lead_time": 3.5, "updated_at": "2026-11-01T00:00:00Z",
            })  # fmt: skip
    pq.write_table(to_table(labels, LABELS), root / "labels.parquet")
    pq.write_table(to_table(votes, VOTES), root / "votes.parquet")
    for split in ("validation", "test"):
        for kind, label in (("onscreen", "onscreen_only"), ("offscreen", "offscreen_only")):
            rows = [r for r in labels if r["split"] == split and r["label"] == label]
            text = "".join(f"{r['source_uri']},{r['start']},{r['end']}\n" for r in rows)
            (root / f"{split}_{kind}_unanimous_clips.csv").write_text(text)
    (root / "status.json").write_text(json.dumps({"config": {"raters": 3, "seed": 11, "pool_sizes": [10, 10, 10]}}))
    (root / "media").mkdir()
    (root / "media" / "preview.mp4").write_bytes(b"not released")
    return root


@dataclass(frozen=True)
class InputDirs:
    mix: str
    df: str
    labels: str


def read_tree(root: str | Path) -> dict[str, bytes]:
    """Relative path -> bytes of every visible file under a local folder."""
    root = Path(root)
    return {
        str(p.relative_to(root)).replace(os.sep, "/"): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


def flip_byte(path: str | Path, offset: int = 100) -> None:
    data = bytearray(Path(path).read_bytes())
    data[offset] ^= 0xFF
    Path(path).write_bytes(bytes(data))


def publish_inputs(inputs: "InputDirs", root: str, name: str = "audioscope", version: str = "1.0.0") -> str:
    """Publish the test inputs (mix, Df, labels) as NAME VERSION under ``root``; returns ``root``."""
    from audioscope.curation import release

    release.publish(
        release.PublishRequest(mix=inputs.mix, df=inputs.df, labels=inputs.labels, name=name, version=version, root=root),
        show_progress=False,
    )
    return root
