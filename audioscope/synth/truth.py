"""Ground truth of a synthetic corpus, per clip.

``audioscope synth`` writes ``truth.parquet`` next to its videos: one row per
(video_id, whole second) saying whether an on-screen source sounds in that
second (``has_onscreen``) and whether an off-screen one does
(``has_offscreen``). This module finds that file for a set of source videos
(:func:`detect_truth`), reads it (:func:`load_truth`) and turns it into labels
of 5 s clips (:func:`clip_labels`): the filter measures Df against them, the
demo raters answer from them, and the tests check mixtures with them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Sequence
from urllib.parse import unquote, urlsplit

import numpy as np
import pandas as pd

from audioscope import storage
from audioscope.errors import UserError

#: The columns of truth.parquet that clip labels need.
LABEL_COLUMNS: tuple[str, ...] = ("video_id", "second", "has_onscreen")


@dataclass(frozen=True)
class TruthSource:
    path: str | None
    how: str  # a sentence for the report


def _local_path(uri: str) -> str | None:
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return unquote(parts.path)
    if parts.scheme == "" or len(parts.scheme) == 1:  # a plain path (or a Windows drive letter)
        return uri
    return None


def detect_truth(source_uris: Sequence[str]) -> TruthSource:
    """The synthetic corpus all ``source_uris`` come from, if any.

    Every source must be a local file directly in some ``X/videos/`` (one
    ``X`` for all), and ``X/truth.parquet`` and ``X/corpus.json`` (made by
    ``audioscope synth``) must exist.
    """
    uris = sorted(set(source_uris))
    if not uris:
        return TruthSource(None, "no ground truth: the store has no clips")
    roots = set()
    for uri in uris:
        local = _local_path(uri)
        if local is None:
            return TruthSource(None, f"no ground truth found: {uri} is not a local file (give --truth)")
        parent = os.path.dirname(os.path.abspath(local))
        if os.path.basename(parent) != "videos":
            return TruthSource(None, f"no ground truth found: {uri} is not in a synthetic corpus's videos/ folder")
        roots.add(os.path.dirname(parent))
    if len(roots) > 1:
        return TruthSource(
            None, f"no ground truth found: the videos come from {len(roots)} different folders (give --truth)"
        )
    root = roots.pop()
    truth = os.path.join(root, "truth.parquet")
    manifest = os.path.join(root, "corpus.json")
    if not (os.path.isfile(truth) and os.path.isfile(manifest)):
        return TruthSource(None, f"no ground truth found: {root} has no truth.parquet and corpus.json")
    try:
        with open(manifest, encoding="utf-8") as f:
            generator = json.load(f).get("generator")
    except (OSError, ValueError, AttributeError):
        generator = None
    if not generator:
        return TruthSource(None, f"no ground truth found: {manifest} is not a synthetic corpus manifest")
    return TruthSource(
        truth, f"auto-detected: every video of the store comes from the synthetic corpus {root} ({generator})"
    )


def load_truth(path: str) -> pd.DataFrame:
    """video_id, second, has_onscreen (and has_offscreen when present) of a truth.parquet."""
    import pyarrow.parquet as pq

    if not storage.exists(path):
        raise UserError(f"ground truth {path} not found: give the truth.parquet of a synthetic corpus, or --no-truth")
    with storage.open_file(path) as fh:
        schema = pq.read_schema(fh)
        missing = [c for c in LABEL_COLUMNS if c not in schema.names]
        if missing:
            raise UserError(
                f"{path} lacks the columns {missing}; give the truth.parquet written by `audioscope synth`"
            )
        cols = list(LABEL_COLUMNS) + (["has_offscreen"] if "has_offscreen" in schema.names else [])
        fh.seek(0)
        return pq.read_table(fh, columns=cols).to_pandas()


def _any_in_range(
    key_video: np.ndarray, key_second: np.ndarray, clip_video: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """For each clip: is there a (video, second) key with lo <= second < hi?"""
    if key_video.size == 0:
        return np.zeros(clip_video.shape, bool)
    span = int(max(key_second.max(initial=0), hi.max(initial=0))) + 2
    keys = np.sort(key_video.astype(np.int64) * span + key_second.astype(np.int64))
    base = clip_video.astype(np.int64) * span
    return np.searchsorted(keys, base + hi, "left") > np.searchsorted(keys, base + lo, "left")


def clip_labels(clips: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Per clip (video_id, start, end): ``has_truth``, ``onscreen`` and ``offscreen_only``.

    ``onscreen``: some whole second s with start <= s < end has
    ``has_onscreen``; ``offscreen_only``: no such second, and some second
    has ``has_offscreen``. Clips of videos absent from ``truth`` get
    ``has_truth`` False (and False labels, not to be used).
    """
    videos = pd.Index(sorted(set(truth["video_id"]) | set(clips["video_id"])))
    cv = videos.get_indexer(clips["video_id"])
    lo = np.ceil(clips["start"].to_numpy(np.float64)).astype(np.int64)
    hi = np.ceil(clips["end"].to_numpy(np.float64)).astype(np.int64)
    tv = videos.get_indexer(truth["video_id"])
    sec = truth["second"].to_numpy(np.int64)
    has_truth = np.isin(cv, np.unique(tv))

    def labelled(column: str) -> np.ndarray:
        if column not in truth.columns:
            return np.zeros(cv.shape, bool)
        m = truth[column].fillna(False).to_numpy(bool)
        return _any_in_range(tv[m], sec[m], cv, lo, hi)

    onscreen = labelled("has_onscreen")
    offscreen = labelled("has_offscreen")
    return pd.DataFrame(
        {"has_truth": has_truth, "onscreen": onscreen & has_truth, "offscreen_only": offscreen & ~onscreen & has_truth},
        index=clips.index,
    )


