"""The clip store's on-disk format: parameters, layout, media shards, clip windows.

Kept free of Beam so that readers (and researchers' notebooks) need only
numpy, Pillow and fsspec. See the package docstring for the layout.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import struct
import threading
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any, Mapping
from audioscope.geometry import CLIP_SECONDS, FRAME_SIZE, SAMPLE_RATE

import numpy as np

from audioscope import storage

try:  # Intel's ISA-L deflate (the isal package): standard deflate streams, 4-5x less CPU than zlib's
    from isal import isal_zlib as _isal_zlib
except ImportError:  # a platform without its wheel: zlib writes the same formats, with more CPU
    _isal_zlib = None

FORMAT_VERSION = 1
#: A media shard that stores only some seconds of its video (a ``seconds``
#: member says which) has this version in its ``meta.json``; shards of every
#: second from 0 keep version 1, so older readers refuse the new kind
#: instead of misreading it.
SPARSE_MEDIA_VERSION = 2
MEDIA_VERSIONS: tuple[int, ...] = (FORMAT_VERSION, SPARSE_MEDIA_VERSION)
FRAME_CODECS: tuple[str, ...] = ("png", "jpeg")


class StoreError(Exception):
    """The clip store is missing, incomplete or was made with other parameters."""


@dataclass(frozen=True, kw_only=True)
class StoreParams:
    """Parameters fixed when a store is created (``STORE/store.json``)."""

    sample_rate: int = SAMPLE_RATE
    clip_seconds: int = CLIP_SECONDS
    hop_seconds: int = 1
    frame_size: int = FRAME_SIZE
    aspect: str = "pad"
    frame_codec: str = "png"
    jpeg_quality: int = 95
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.frame_codec not in FRAME_CODECS:
            raise ValueError(f"frame_codec must be one of {FRAME_CODECS}")
        if self.clip_seconds < 1 or self.hop_seconds < 1:
            raise ValueError("clip_seconds and hop_seconds must be whole seconds >= 1")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "StoreParams":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise StoreError(f"store.json has unknown parameters {sorted(unknown)}; upgrade audioscope-data")
        return cls(**dict(d))

    def differences(self, other: "StoreParams") -> dict[str, tuple[Any, Any]]:
        a, b = self.to_json(), other.to_json()
        return {k: (a[k], b[k]) for k in a if a[k] != b.get(k)}


# --------------------------------------------------------------------------- #
# layout


def _prefix(video_id: str) -> str:
    return video_id[:2]


#: Videos per index shard: 200,000 videos give 20 shards of ~360k clips.
VIDEOS_PER_INDEX_SHARD = 10_000


def index_shard_count(n_videos: int) -> int:
    return max(1, math.ceil(n_videos / VIDEOS_PER_INDEX_SHARD))


def index_shard_of(video_id: str, n_shards: int) -> int:
    """A video's index shard: a stable hash of its id (crc32, the same on every machine and run)."""
    return zlib.crc32(video_id.encode("utf-8")) % n_shards


def shard_name(stem: str, i: int, n: int, suffix: str) -> str:
    """The one template of the store's sharded files: ``{stem}-NNNNN-of-MMMMM{suffix}``."""
    return f"{stem}-{i:05d}-of-{n:05d}{suffix}"


class Layout:
    """Where each part of a store lives (local path or URI): the one owner of the store's folder.

    Other steps use these paths and the typed readers of
    :mod:`audioscope.clipstore.reader`, never file names of their own.
    """

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/") if "://" in root else root

    def path(self, *parts: str) -> str:
        return storage.join(self.root, *parts)

    @property
    def store_json(self) -> str:
        return self.path("store.json")

    @property
    def summary_json(self) -> str:
        return self.path("summary.json")

    @property
    def requests_dir(self) -> str:
        return self.path("requests")

    @property
    def bad_rows_dir(self) -> str:
        return self.path("bad_rows")

    @property
    def status_dir(self) -> str:
        return self.path("status")

    @property
    def index_dir(self) -> str:
        return self.path("index")

    @property
    def status_table(self) -> str:
        return self.path("index", "status.parquet")

    @property
    def index_incomplete(self) -> str:
        """Why the last run's index step did not finish (the runner lost work); removed once one does."""
        return self.path("index", "incomplete.json")

    def media_rel(self, video_id: str) -> str:
        return f"media/{_prefix(video_id)}/{video_id}.npz"

    def media(self, video_id: str) -> str:
        return self.path(*self.media_rel(video_id).split("/"))

    def status(self, video_id: str) -> str:
        return self.path("status", _prefix(video_id), f"{video_id}.json")

    def status_glob(self) -> str:
        return self.path("status", "*", "*.json")

    def index_shard(self, i: int, n: int) -> str:
        return self.path("index", shard_name("clips", i, n, ".parquet"))

    def status_part(self, prefix: str) -> str:
        """The status rows of the videos under ``status/<prefix>/`` (merged into ``status_table``)."""
        return self.path("index", "parts", f"status-{prefix}.parquet")

    def index_shard_glob(self) -> str:
        return self.path("index", "clips-*.parquet")

    def request_shard(self, i: int, n: int) -> str:
        return self.path("requests", shard_name("requests", i, n, ".jsonl"))

    def request_shard_glob(self) -> str:
        return self.path("requests", "requests-*.jsonl")

    def bad_rows_file(self, key: str, i: int) -> str:
        """Part ``i`` of the bad rows of the list whose key is ``key``."""
        return self.path("bad_rows", f"{key}-{i:05d}.jsonl")

    def bad_rows_glob(self, key: str | None = None) -> str:
        """Every bad-rows file, or those of one list (``<key>-NNNNN.jsonl``; older stores: ``<key>.jsonl``)."""
        return self.path("bad_rows", "*.jsonl" if key is None else f"{key}*.jsonl")

    @property
    def conflicts_dir(self) -> str:
        return self.path("conflicts")

    def conflict(self, video_id: str, source: str) -> str:
        """Where a request that names ``video_id`` with another source than the store's is recorded."""
        import hashlib

        digest = hashlib.sha1(source.encode("utf-8")).hexdigest()[:16]
        return self.path("conflicts", _prefix(video_id), f"{video_id}--{digest}.json")

    @property
    def lock(self) -> str:
        """Held by the one ingest that writes the store (see :mod:`audioscope.clipstore.lock`)."""
        return self.path("ingest.lock")

    def is_finished(self) -> bool:
        """Whether an ingest finished: ``summary.json`` (written last) exists."""
        return storage.exists(self.summary_json)


#: The key of ``store.json`` that names the store (a random id written when it is created):
#: what scores and other outputs recognise a store by wherever it is moved or copied.
STORE_ID_KEY = "store_id"


def _read_store_json(layout: Layout) -> dict[str, Any] | None:
    if not storage.exists(layout.store_json):
        return None
    try:
        data = json.loads(storage.read_text(layout.store_json))
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise StoreError(f"{layout.store_json} is not a JSON object: it was not written by `audioscope ingest`")
    return data


def _params_of(layout: Layout, data: Mapping[str, Any]) -> StoreParams:
    if data.get("format_version") != FORMAT_VERSION:
        raise StoreError(
            f"{layout.root} uses store format {data.get('format_version')}, this version of "
            f"audioscope-data reads format {FORMAT_VERSION}; use a matching version or a new --out"
        )
    return StoreParams.from_json({k: v for k, v in data.items() if k != STORE_ID_KEY})


def _store_id_of(data: Mapping[str, Any]) -> str | None:
    found = data.get(STORE_ID_KEY)
    return found if isinstance(found, str) and found else None


def load_store_json(layout: Layout) -> tuple[StoreParams, str | None] | None:
    """The store's parameters and id (None for a store made before stores had one), from one
    read of ``store.json``; None where there is no ``store.json``."""
    data = _read_store_json(layout)
    return None if data is None else (_params_of(layout, data), _store_id_of(data))


def load_params(layout: Layout) -> StoreParams | None:
    found = load_store_json(layout)
    return None if found is None else found[0]


def _write_store_json(layout: Layout, params: StoreParams, store_id: str) -> None:
    data = {**params.to_json(), STORE_ID_KEY: store_id}
    storage.atomic_write(layout.store_json, json.dumps(data, indent=2, sort_keys=True) + "\n")


def init_store(layout: Layout, params: StoreParams) -> StoreParams:
    """Create ``store.json`` (the parameters and a new store id), or check that an existing store
    has the same params; a store made before stores had ids gets one."""
    data = _read_store_json(layout)
    if data is None:
        _write_store_json(layout, params, uuid.uuid4().hex)
        return params
    existing = _params_of(layout, data)
    diff = existing.differences(params)
    if diff:
        text = ", ".join(f"{k}: store has {a!r}, asked for {b!r}" for k, (a, b) in diff.items())
        raise StoreError(
            f"the store {layout.root} was created with other parameters ({text}); "
            "use the store's parameters or write to a new --out directory"
        )
    if _store_id_of(data) is None:
        _write_store_json(layout, existing, uuid.uuid4().hex)
    return existing


# --------------------------------------------------------------------------- #
# clip windows and ids


def clip_id(video_id: str, start: float) -> str:
    """``{video_id}-{start_ms:07d}``: deterministic, sorts with start time."""
    return f"{video_id}-{int(round(start * 1000)):07d}"


def sliding_windows(usable_seconds: int, clip_seconds: int = 5, hop_seconds: int = 1) -> list[tuple[int, int]]:
    """Clip k covers [k*hop, k*hop + clip) while it fits in ``usable_seconds``.

    A whole-second duration D gives ``floor((D - clip) / hop) + 1`` clips.
    """
    if usable_seconds < clip_seconds:
        return []
    n = (usable_seconds - clip_seconds) // hop_seconds + 1
    return [(k * hop_seconds, k * hop_seconds + clip_seconds) for k in range(n)]


@dataclass(frozen=True)
class SpanProblem:
    start: float
    end: float
    kind: str
    message: str


def fit_spans(
    spans: tuple[tuple[float, float], ...], usable_seconds: int, clip_seconds: int = 5
) -> tuple[list[tuple[int, int]], list[SpanProblem]]:
    """Split requested spans into clips that fit the media and problems.

    A span must start on a whole second (frames are one per second), last
    ``clip_seconds`` and end within the usable length of the video.
    """
    ok: list[tuple[int, int]] = []
    bad: list[SpanProblem] = []
    for start, end in sorted(set(spans)):
        if not (math.isfinite(start) and math.isfinite(end)) or abs(start - round(start)) > 1e-3:
            bad.append(SpanProblem(start, end, "bad_span", f"span {start}-{end} does not start on a whole second"))
        elif abs((end - start) - clip_seconds) > 1e-3:
            bad.append(SpanProblem(start, end, "bad_span", f"span {start}-{end} does not last {clip_seconds} s"))
        elif start < 0 or round(end) > usable_seconds:
            bad.append(
                SpanProblem(
                    start, end, "span_out_of_range",
                    f"span {start}-{end} s is outside the media's {usable_seconds} usable seconds",
                )
            )
        else:
            ok.append((int(round(start)), int(round(start)) + clip_seconds))
    return ok, bad


# --------------------------------------------------------------------------- #
# media shards


@dataclass(frozen=True)
class Deflate:
    """How bytes are deflated: by ISA-L at ``isal_level`` where the isal
    package is installed, else by zlib at ``level`` with ``strategy``. Either
    way the stream is standard deflate that zlib, ``zipfile``, numpy and every
    PNG reader inflate, and the same input gives the same bytes on one machine
    (ISA-L's bytes and zlib's differ).
    """

    level: int
    strategy: int = zlib.Z_DEFAULT_STRATEGY
    isal_level: int | None = None

    def _deflate(self, data: bytes, wbits: int) -> bytes:
        if _isal_zlib is not None and self.isal_level is not None:
            return _isal_zlib.compress(data, self.isal_level, wbits)
        packer = zlib.compressobj(self.level, zlib.DEFLATED, wbits, 8, self.strategy)
        return packer.compress(data) + packer.flush()

    def raw_stream(self, data: bytes) -> bytes:
        """A raw deflate stream (no header), as a zip member holds it."""
        return self._deflate(data, -15)

    def zlib_stream(self, data: bytes) -> bytes:
        """A zlib stream (header and Adler-32), as a PNG's IDAT holds it."""
        return self._deflate(data, 15)


#: A shard's small members (meta.json, offsets).
DEFAULT_DEFLATE = Deflate(6)
#: PNG frames. ISA-L's level 2 takes a quarter of the CPU of zlib's level 2
#: for 1.5% fewer bytes; zlib's level 2 takes a third of level 6's CPU for
#: ~17% more bytes (still lossless; the store stays ~15x smaller than the
#: naive one). Measured on 667 frames of the synthetic corpus.
PNG_DEFLATE = Deflate(2, isal_level=2)
#: The audio. PCM has almost no long repeats for LZ77 to find: ISA-L's
#: level 1 deflates it 5x faster than zlib's run-length matching for 1% more
#: bytes; without ISA-L, run-length matching alone is 2.3x faster than zlib's
#: level 1 for 2% more bytes (level 6: the size of level 1, 60% more CPU).
#: Measured on the synthetic corpus.
AUDIO_DEFLATE = Deflate(1, zlib.Z_RLE, isal_level=1)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_rgb(frame: np.ndarray, deflate: Deflate = PNG_DEFLATE) -> bytes:
    """A standard PNG (8-bit RGB, no interlace) of ``frame`` (uint8 [h, w, 3]).

    Every row uses PNG's Sub filter (each byte minus the same channel of the
    pixel to its left, modulo 256) and the rows are deflated as ``deflate``
    says. Pillow's encoder tries all five filters on every row; on our frames
    (smooth backgrounds, flat shapes) Sub alone is as good, so this is twice
    as fast as Pillow at the same level and ~3% smaller (measured on the
    synthetic corpus). Any PNG reader decodes it.
    """
    h, w, c = frame.shape
    if c != 3 or frame.dtype != np.uint8:
        raise ValueError(f"png_rgb wants uint8 [h, w, 3], got {frame.dtype} {frame.shape}")
    px = np.ascontiguousarray(frame).reshape(h, w * c)
    rows = np.empty((h, 1 + w * c), np.uint8)
    rows[:, 0] = 1  # filter type 1: Sub
    rows[:, 1 : 1 + c] = px[:, :c]
    np.subtract(px[:, c:], px[:, :-c], out=rows[:, 1 + c :])  # uint8 wraps modulo 256, as Sub wants
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8 bits, truecolour, deflate, filter 0, no interlace
    idat = deflate.zlib_stream(rows.tobytes())
    return _PNG_SIGNATURE + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _encode_frame(frame: np.ndarray, params: StoreParams) -> bytes:
    if params.frame_codec == "png":
        return png_rgb(frame, PNG_DEFLATE)
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame, mode="RGB").save(buf, format="JPEG", quality=params.jpeg_quality, subsampling=0)
    return buf.getvalue()


def _decode_frame(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def encode_media(
    audio: np.ndarray, frames: np.ndarray, params: StoreParams, *, video_id: str,
    seconds: "np.ndarray | None" = None,
) -> bytes:
    """One video's shard: each second once (int16 audio + one encoded frame).

    A zip of ``.npy`` members (so ``numpy.load(..., allow_pickle=False)`` reads
    it) plus ``meta.json``: ``audio`` (int16, deflated for speed, see
    :data:`AUDIO_DEFLATE`), ``frame_data`` (the encoded
    frames concatenated, stored: they are compressed already) and
    ``frame_offsets`` (int64, n+1 byte offsets into ``frame_data``).

    ``seconds`` (sorted int64, one per stored second) says which seconds of
    the video ``audio`` and ``frames`` hold when they are not all seconds
    from 0: a list that names a few clips of a long video stores those
    clips' seconds only. Such a shard has a ``seconds`` member and media
    version :data:`SPARSE_MEDIA_VERSION`.
    """
    sparse = seconds is not None and not np.array_equal(seconds, np.arange(len(frames)))
    encoded = [_encode_frame(f, params) for f in frames]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(e) for e in encoded])
    meta = {
        "video_id": video_id,
        "sample_rate": params.sample_rate,
        "frame_size": params.frame_size,
        "frame_codec": params.frame_codec,
        "n_seconds": int(len(frames)),
        "format_version": SPARSE_MEDIA_VERSION if sparse else FORMAT_VERSION,
    }
    members = [
        ("meta.json", json.dumps(meta, sort_keys=True).encode("utf-8"), DEFAULT_DEFLATE),
        ("audio.npy", _npy_bytes(audio.astype("<i2")), AUDIO_DEFLATE),
        ("frame_offsets.npy", _npy_bytes(offsets), DEFAULT_DEFLATE),
        ("frame_data.npy", _npy_bytes(np.frombuffer(b"".join(encoded), dtype=np.uint8)), None),
    ]
    if sparse:
        assert seconds is not None and len(seconds) == len(frames)
        members.append(("seconds.npy", _npy_bytes(np.asarray(seconds, dtype=np.int64)), DEFAULT_DEFLATE))
    return zip_bytes(members)


def needed_seconds(windows: "list[tuple[int, int]]") -> np.ndarray:
    """The sorted seconds that the clip ``windows`` cover (each second once)."""
    if not windows:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate([np.arange(s, e, dtype=np.int64) for s, e in windows]))


_ZIP_DATE_1980_01_01 = (0 << 9) | (1 << 5) | 1  # MS-DOS date; the time is 00:00:00


def zip_bytes(members: list[tuple[str, bytes, Deflate | None]]) -> bytes:
    """A zip archive of ``(name, data, deflate)``: ``deflate`` says how the
    member is deflated, None to store it as is.

    Python's zipfile can choose neither a deflate strategy nor another
    deflater, hence this writer. It writes plain zip (no zip64: a member
    must stay under 4 GiB, about 37 hours of audio), every member dated
    1980-01-01 so that the same input gives the same bytes; zipfile and
    ``numpy.load`` read it.
    """
    out = bytearray()
    central = bytearray()
    for name, data, deflate in members:
        raw_name = name.encode("utf-8")
        if deflate is None:
            method, body = 0, data
        else:
            method, body = 8, deflate.raw_stream(data)
        if max(len(data), len(body), len(out)) >= 0xFFFFFFFF:
            raise ValueError(f"zip member {name} is over 4 GiB; split the video into shorter files")
        offset = len(out)
        # version needed, flags (bit 11: UTF-8 name), method, time, date, crc, sizes, name length
        fields = (20, 0x800, method, 0, _ZIP_DATE_1980_01_01, zlib.crc32(data), len(body), len(data), len(raw_name))
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields, 0) + raw_name + body
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, *fields, 0, 0, 0, 0, 0, offset) + raw_name
    n = len(members)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(central), len(out), 0)
    return bytes(out + central + end)


#: ``numpy.load`` parses a ``.npy`` header with ``ast.literal_eval``, and CPython 3.11 keeps the AST
#: builder's recursion depth per interpreter: two threads building AST objects at once can raise
#: "SystemError: AST constructor recursion depth mismatch" (seen in the coincidence trainer's
#: reading threads under load). So the parse takes this lock (the member is inflated outside it).
_NPY_LOCK = threading.Lock()


def load_member(z: zipfile.ZipFile, name: str) -> np.ndarray:
    """The ``.npy`` member ``name`` of a media shard's zip (never with pickle; thread-safe)."""
    raw = z.read(name)
    with _NPY_LOCK:
        return np.load(io.BytesIO(raw), allow_pickle=False)


def decode_media(data: bytes) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(audio int16, frames uint8 [n, size, size, 3], meta) of a media shard.

    ``meta["seconds"]`` is the list of the video seconds the rows hold (all
    seconds from 0 unless the shard is sparse).
    """
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        meta = json.loads(z.read("meta.json"))
        if meta.get("format_version") not in MEDIA_VERSIONS:
            raise StoreError(f"media shard of format {meta.get('format_version')}; this version reads {MEDIA_VERSIONS}")
        if "seconds.npy" in z.namelist():
            meta["seconds"] = load_member(z, "seconds.npy").tolist()
        else:
            meta["seconds"] = list(range(int(meta["n_seconds"])))
        audio = load_member(z, "audio.npy")
        offsets = load_member(z, "frame_offsets.npy")
        blob = load_member(z, "frame_data.npy").tobytes()
    size = int(meta["frame_size"])
    frames = np.zeros((len(offsets) - 1, size, size, 3), dtype=np.uint8)
    for i in range(len(offsets) - 1):
        frames[i] = _decode_frame(blob[offsets[i] : offsets[i + 1]])
    return audio, frames, meta


def naive_bytes_per_clip(params: StoreParams) -> int:
    """Bytes of one clip stored naively: float32 audio + raw uint8 frames."""
    return (
        params.clip_seconds * params.sample_rate * 4
        + params.clip_seconds * params.frame_size * params.frame_size * 3
    )
