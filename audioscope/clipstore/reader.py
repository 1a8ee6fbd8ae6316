"""Reading a clip store: index and status tables eagerly, media lazily."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np

from audioscope import storage
from audioscope.clipstore.format import Layout, StoreError, StoreParams, decode_media, load_params

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


@dataclass(frozen=True)
class Clip:
    """One 5-second clip: float32 mono audio in [-1, 1] and uint8 RGB frames."""

    clip_id: str
    video_id: str
    start: float
    end: float
    audio: np.ndarray  # float32 [clip_seconds * sample_rate]
    frames: np.ndarray  # uint8 [clip_seconds, size, size, 3]


def _to_float(audio: np.ndarray) -> np.ndarray:
    return (audio.astype(np.float32) / 32768.0).astype(np.float32)


class ClipStore:
    """A clip store made by ``audioscope ingest`` (local path, ``gs://`` or ``s3://``).

    ``index`` and ``status`` are read once; media is read only when a clip or
    video is asked for, one video shard at a time.
    """

    def __init__(self, root: str, params: StoreParams, summary: dict[str, object]) -> None:
        self.root = root
        self.layout = Layout(root)
        self.params = params
        self.summary = summary
        self._index: "pd.DataFrame | None" = None
        self._status: "pd.DataFrame | None" = None
        self._cache: tuple[str, np.ndarray, np.ndarray] | None = None

    @classmethod
    def open(cls, uri: str) -> "ClipStore":
        layout = Layout(str(uri))
        params = load_params(layout)
        if params is None:
            raise StoreError(f"{uri} is not a clip store (no store.json); create one with `audioscope ingest LIST --out {uri}`")
        if not storage.exists(layout.summary_json):
            raise StoreError(
                f"{uri} has no index yet (no summary.json): an ingest has not finished; "
                f"run `audioscope ingest LIST --out {uri}` again to complete it"
            )
        summary = json.loads(storage.read_text(layout.summary_json))
        return cls(str(uri), params, summary)

    # ------------------------------------------------------------------ tables
    @property
    def index(self) -> "pd.DataFrame":
        """The clip index, sorted by (video_id, start)."""
        if self._index is None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            from audioscope.schemas.tables import CLIP_INDEX, validate

            files = [self.layout.path("index", name) for name in self.summary.get("index_files", [])]  # type: ignore[union-attr]
            tables = []
            for f in files:
                with storage.open_file(f) as fh:
                    tables.append(validate(pq.read_table(fh), CLIP_INDEX))
            if tables:
                df = pa.concat_tables(tables).to_pandas()
            else:
                df = CLIP_INDEX.empty_table().to_pandas()
            self._index = df.sort_values(["video_id", "start"], kind="stable").reset_index(drop=True)
        return self._index

    @property
    def status(self) -> "pd.DataFrame":
        """One row per requested video (and per unreadable list row)."""
        if self._status is None:
            import pyarrow.parquet as pq

            from audioscope.schemas.tables import STATUS, validate

            with storage.open_file(self.layout.status_table) as fh:
                self._status = validate(pq.read_table(fh), STATUS).to_pandas()
        return self._status

    # ------------------------------------------------------------------- media
    def _load(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is None or self._cache[0] != video_id:
            path = self.layout.media(video_id)
            if not storage.exists(path):
                raise KeyError(f"video {video_id!r} has no media in {self.root}")
            audio, frames, _ = decode_media(storage.read_bytes(path))
            self._cache = (video_id, audio, frames)
        return self._cache[1], self._cache[2]

    def video(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        """All stored seconds of a video: (float32 audio, uint8 frames)."""
        audio, frames = self._load(video_id)
        return _to_float(audio), frames.copy()

    def _clip(self, clip_id: str, video_id: str, start: float, end: float) -> Clip:
        audio, frames = self._load(video_id)
        sr = self.params.sample_rate
        s, e = int(round(start)), int(round(end))
        return Clip(
            clip_id=clip_id,
            video_id=video_id,
            start=float(start),
            end=float(end),
            audio=_to_float(audio[s * sr : e * sr]),
            frames=frames[s:e].copy(),
        )

    def clip(self, clip_id: str) -> Clip:
        idx = self.index
        rows = idx[idx["clip_id"] == clip_id]
        if rows.empty:
            raise KeyError(f"no clip {clip_id!r} in {self.root}; `audioscope clips list --store {self.root}` lists them")
        r = rows.iloc[0]
        return self._clip(str(r["clip_id"]), str(r["video_id"]), float(r["start"]), float(r["end"]))

    def iter_clips(self, video_ids: Iterable[str] | None = None) -> Iterator[Clip]:
        """Clips in (video_id, start) order; each video shard is read once."""
        idx = self.index
        if video_ids is not None:
            idx = idx[idx["video_id"].isin(set(video_ids))]
        for row in idx.itertuples(index=False):
            yield self._clip(str(row.clip_id), str(row.video_id), float(row.start), float(row.end))

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return f"ClipStore({self.root!r}, clips={self.summary.get('clips')})"
