"""Reading a clip store: index and status tables eagerly, media lazily."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np

from audioscope import storage
from audioscope.geometry import CLIP_SECONDS
from audioscope.clipstore.format import (
    MEDIA_VERSIONS,
    Layout,
    StoreError,
    StoreParams,
    decode_media,
    load_member,
    load_store_json,
)
from audioscope.shell import q
from audioscope.folders import another_steps_folder

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


def _rows(seconds: np.ndarray, start: int, end: int, video_id: str) -> tuple[int, int]:
    """The rows of a shard that hold video seconds [start, end); ValueError if not all stored."""
    i = int(np.searchsorted(seconds, start))
    n = end - start
    if start < 0 or i + n > len(seconds) or seconds[i] != start or seconds[i + n - 1] != end - 1:
        raise ValueError(f"the seconds {start}-{end} of {video_id} are not in its media shard")
    return i, i + n


def _status_frame(table: "Any") -> "pd.DataFrame":
    """The status table as a frame; a version-1 table gets the newer columns as nulls."""
    import pyarrow as pa

    from audioscope.schemas.tables import STATUS, STATUS_V2_COLUMNS, validate

    for name in STATUS_V2_COLUMNS:
        if name not in table.column_names:
            table = table.append_column(STATUS.field(name), pa.nulls(table.num_rows, STATUS.field(name).type))
    if table.schema.metadata and table.schema.metadata.get(b"audioscope.schema_version") == b"1":
        table = table.replace_schema_metadata({**table.schema.metadata, b"audioscope.schema_version": b"2"})
    return validate(table, STATUS).to_pandas()


def read_clip_media(
    store_root: str, video_id: str, audio_starts: Iterable[int], frame_starts: Iterable[int]
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """One video's clip audio (int16) and frames (uint8), its media shard read once.

    Only the frames of the asked clips are decoded (a mixture shard needs a
    few clips of many videos). Works on every shard kind (all seconds, or
    the seconds of the listed clips only). Raises ``ValueError`` when a clip
    is not among the stored seconds or the shard is of an unknown version.
    """
    import io
    import zipfile

    from PIL import Image

    layout = Layout(store_root)
    with zipfile.ZipFile(io.BytesIO(storage.read_bytes(layout.media(video_id)))) as z:
        meta = json.loads(z.read("meta.json"))
        version = meta.get("format_version")
        if version not in MEDIA_VERSIONS:
            raise ValueError(f"the media of {video_id} is in store format {version}; this reader reads {MEDIA_VERSIONS}")
        sr = int(meta["sample_rate"])
        audio = load_member(z, "audio.npy")
        offsets = load_member(z, "frame_offsets.npy")
        blob = load_member(z, "frame_data.npy").tobytes()
        if "seconds.npy" in z.namelist():
            seconds = load_member(z, "seconds.npy")
        else:
            seconds = np.arange(len(offsets) - 1, dtype=np.int64)
    n = CLIP_SECONDS
    audio_out, frames_out = {}, {}
    for s in sorted(set(audio_starts)):
        try:
            a, b = _rows(seconds, s, s + n, video_id)
        except ValueError:
            raise ValueError(
                f"the audio of {video_id} at {s}-{s + n} s is outside its {len(audio) / sr:g} stored seconds"
            ) from None
        clip = audio[a * sr : b * sr]
        if len(clip) != n * sr:
            raise ValueError(f"the audio of {video_id} at {s}-{s + n} s is outside its {len(audio) / sr:g} stored seconds")
        audio_out[s] = clip.astype(np.int16)
    for s in sorted(set(frame_starts)):
        try:
            a, b = _rows(seconds, s, s + n, video_id)
        except ValueError:
            raise ValueError(
                f"the frames of {video_id} at {s}-{s + n} s are outside its {len(offsets) - 1} stored seconds"
            ) from None
        frames = []
        for k in range(a, b):
            with Image.open(io.BytesIO(blob[offsets[k] : offsets[k + 1]])) as img:
                frames.append(np.asarray(img.convert("RGB"), dtype=np.uint8))
        frames_out[s] = np.stack(frames)
    return audio_out, frames_out


class ClipStore:
    """A clip store made by ``audioscope ingest`` (local path, ``gs://`` or ``s3://``).

    ``index`` and ``status`` are read once; media is read only when a clip or
    video is asked for, one video shard at a time.
    """

    def __init__(
        self, root: str, params: StoreParams, summary: dict[str, object], store_id: str | None = None
    ) -> None:
        self.root = root
        self.layout = Layout(root)
        self.params = params
        self.summary = summary
        #: The id written into store.json when the store was created (None for a store made
        #: before stores had one): outputs know their store by it wherever it is moved or copied.
        self.store_id = store_id
        self._index: "pd.DataFrame | None" = None
        self._status: "pd.DataFrame | None" = None
        self._cache: tuple[str, np.ndarray, np.ndarray, np.ndarray] | None = None

    @classmethod
    def open(cls, uri: str) -> "ClipStore":
        layout = Layout(str(uri))
        found = load_store_json(layout)
        if found is None:
            raise StoreError(
                another_steps_folder(str(uri), "store", "--store")
                or f"{uri} is not a clip store (no store.json); create one with `audioscope ingest LIST --store {q(uri)}`"
            )
        if not layout.is_finished():
            raise StoreError(
                f"{uri} has no index yet (no summary.json): an ingest has not finished; "
                f"run `audioscope ingest LIST --store {q(uri)}` again to complete it"
            )
        summary = json.loads(storage.read_text(layout.summary_json))
        params, store_id = found
        return cls(str(uri), params, summary, store_id)

    # ------------------------------------------------------------------ tables
    def index_files(self) -> list[str]:
        """The paths of the index shards the finished ingest wrote."""
        return [self.layout.path("index", name) for name in self.summary.get("index_files", [])]  # type: ignore[union-attr]

    def iter_index(self, columns: "list[str] | None" = None, batch_rows: int = 65_536) -> "Iterator[pd.DataFrame]":
        """The clip index as a stream of frames (one index shard, in batches, at a time).

        Memory stays that of one batch whatever the store's size; rows come
        shard by shard, each shard sorted by (video_id, start). Use this
        where the rows are only walked through; :attr:`index` gathers them all.
        """
        for batch in self.iter_index_batches(columns, batch_rows):
            yield batch.to_pandas()

    def iter_index_batches(self, columns: "list[str] | None" = None, batch_rows: int = 65_536) -> "Iterator[Any]":
        """The clip index as a stream of ``pyarrow.RecordBatch`` (as :meth:`iter_index`, without pandas).

        Each shard's schema is checked against the clip index's before its rows are read.
        """
        import pyarrow.parquet as pq

        from audioscope.schemas.tables import CLIP_INDEX, validate

        for path in self.index_files():
            with storage.open_file(path) as fh:
                pf = pq.ParquetFile(fh)
                validate(pf.schema_arrow.empty_table(), CLIP_INDEX)
                yield from pf.iter_batches(batch_size=batch_rows, columns=columns)

    def iter_status(self, batch_rows: int = 65_536) -> "Iterator[pd.DataFrame]":
        """The status table as a stream of frames (see :meth:`iter_index`)."""
        import pyarrow.parquet as pq

        with storage.open_file(self.layout.status_table) as fh:
            pf = pq.ParquetFile(fh)
            for batch in pf.iter_batches(batch_size=batch_rows):
                yield _status_frame(__import__("pyarrow").Table.from_batches([batch]))

    @property
    def index(self) -> "pd.DataFrame":
        """The clip index, sorted by (video_id, start), as one DataFrame (~800 B per clip).

        For small stores and tests. Steps that may meet a full-size store
        (filter, annotate sample, the score launcher, render) stream it with
        :meth:`iter_index`, :meth:`iter_index_batches` or :meth:`iter_index_rows`.
        """
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
                self._status = _status_frame(pq.read_table(fh))
        return self._status

    # ------------------------------------------------------------------- media
    def _load(self, video_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._cache is None or self._cache[0] != video_id:
            path = self.layout.media(video_id)
            if not storage.exists(path):
                raise KeyError(f"video {video_id!r} has no media in {self.root}")
            audio, frames, meta = decode_media(storage.read_bytes(path))
            self._cache = (video_id, audio, frames, np.asarray(meta["seconds"], dtype=np.int64))
        return self._cache[1], self._cache[2], self._cache[3]

    def video(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        """All stored seconds of a video: (float32 audio, uint8 frames).

        A store made from a list naming a few clips keeps only those clips'
        seconds: see :meth:`stored_seconds` for which seconds the rows are.
        """
        audio, frames, _ = self._load(video_id)
        return _to_float(audio), frames.copy()

    def stored_seconds(self, video_id: str) -> np.ndarray:
        """The seconds of the video that :meth:`video` returns, in order."""
        return self._load(video_id)[2].copy()

    def _clip(self, clip_id: str, video_id: str, start: float, end: float) -> Clip:
        audio, frames, seconds = self._load(video_id)
        sr = self.params.sample_rate
        s, e = _rows(seconds, int(round(start)), int(round(end)), video_id)
        return Clip(
            clip_id=clip_id,
            video_id=video_id,
            start=float(start),
            end=float(end),
            audio=_to_float(audio[s * sr : e * sr]),
            frames=frames[s:e].copy(),
        )

    def clip(self, clip_id: str) -> Clip:
        """One clip; only the index shard of its video is read (unless the index is loaded already)."""
        rows = self._rows_of(clip_id)
        if rows.empty:
            raise KeyError(f"no clip {clip_id!r} in {self.root}; `audioscope clips list --store {q(self.root)}` lists them")
        r = rows.iloc[0]
        return self._clip(str(r["clip_id"]), str(r["video_id"]), float(r["start"]), float(r["end"]))

    def _rows_of(self, clip_id: str) -> "pd.DataFrame":
        from audioscope.ids import BadId, split_clip_id

        if self._index is not None:
            return self._index[self._index["clip_id"] == clip_id]
        files = self.index_files()
        try:
            video_id, _ = split_clip_id(clip_id)
        except BadId:
            return self.index.iloc[0:0]
        import pyarrow.parquet as pq

        from audioscope.clipstore.format import index_shard_of
        from audioscope.schemas.tables import CLIP_INDEX, validate

        if not files:
            return self.index.iloc[0:0]
        path = self.layout.index_shard(index_shard_of(video_id, len(files)), len(files))
        if path not in files:  # a store whose shards are named otherwise: read them all
            idx = self.index
            return idx[idx["clip_id"] == clip_id]
        with storage.open_file(path) as fh:
            table = validate(pq.read_table(fh, filters=[("clip_id", "=", clip_id)]), CLIP_INDEX)
        return table.to_pandas()

    def iter_index_rows(self, columns: "list[str]", video_id: str | None = None) -> Iterator[tuple[Any, ...]]:
        """Index rows as tuples of ``columns``, in (video_id, start) order over the whole store.

        A streaming merge of the shards (each sorted by (video_id, start)):
        memory is one batch per shard, whatever the store's size.
        """
        import heapq

        keys = list(dict.fromkeys(["video_id", "start", *columns]))
        pos = [keys.index(c) for c in columns]

        def rows_of(path: str) -> Iterator[tuple[Any, ...]]:
            import pyarrow.parquet as pq

            with storage.open_file(path) as fh:
                for batch in pq.ParquetFile(fh).iter_batches(batch_size=65_536, columns=keys):
                    cols = [batch.column(i).to_pylist() for i in range(len(keys))]
                    for row in zip(*cols):
                        if video_id is None or row[0] == video_id:
                            yield row

        merged = heapq.merge(*(rows_of(f) for f in self.index_files()), key=lambda r: (r[0], r[1]))
        for row in merged:
            yield tuple(row[i] for i in pos)

    def iter_clips(self, video_ids: Iterable[str] | None = None) -> Iterator[Clip]:
        """Clips in (video_id, start) order; each video shard is read once.

        The index is streamed (see :meth:`iter_index_rows`) unless it was loaded already.
        """
        wanted = None if video_ids is None else set(video_ids)
        if self._index is not None:
            idx = self._index if wanted is None else self._index[self._index["video_id"].isin(wanted)]
            rows: Iterator[tuple[Any, ...]] = idx[["clip_id", "video_id", "start", "end"]].itertuples(index=False, name=None)
        else:
            rows = self.iter_index_rows(["clip_id", "video_id", "start", "end"])
        for clip_id, video_id, start, end in rows:
            if wanted is None or video_id in wanted:
                yield self._clip(str(clip_id), str(video_id), float(start), float(end))

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return f"ClipStore({self.root!r}, clips={self.summary.get('clips')})"


def open_store(uri: str, needs: str) -> "ClipStore":
    """The clip store at ``uri``, checked to hold the toolkit's clip geometry
    (5-s clips at 16 kHz with 128-px frames; :mod:`audioscope.geometry`).

    ``needs`` names who needs them in the error ("the coincidence model
    takes", "mixture records hold"); every problem is a
    :class:`~audioscope.errors.UserError` that says what to do.
    """
    from audioscope.errors import UserError
    from audioscope.geometry import FRAME_SIZE, SAMPLE_RATE

    try:
        store = ClipStore.open(uri)
    except StoreError as e:
        raise UserError(str(e)) from None
    p = store.params
    if (p.sample_rate, p.clip_seconds, p.frame_size) != (SAMPLE_RATE, CLIP_SECONDS, FRAME_SIZE):
        raise UserError(
            f"the store {uri} has {p.clip_seconds}-s clips at {p.sample_rate} Hz with {p.frame_size}-px frames; "
            f"{needs} {CLIP_SECONDS}-s clips at {SAMPLE_RATE} Hz with {FRAME_SIZE}-px frames: "
            "ingest into a new store with the default parameters"
        )
    return store
