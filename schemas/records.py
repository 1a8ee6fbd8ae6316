"""The mixture example: its TFRecord feature spec, encoding, parsing and writing (versioned).

One example of a mixture shard is a ``tf.train.Example`` with these features
(the contract between ``audioscope mix``, the releases and the training job)::

    frames            bytes   the 5 frames of the frames clip, uint8 5x128x128x3 in C
                              order seen as 640 rows of 128 RGB pixels, each row
                              Sub-filtered as in PNG (a byte minus the same channel of
                              the pixel to its left, modulo 256), as one zstd frame:
                              lossless, the decoded array has exactly the store's pixels
    audio1, audio2    bytes   little-endian int16 PCM, 80,000 samples (5 s at 16 kHz
                              mono), as one zstd frame; audio2 is all zeros for a
                              single mixture
    type              bytes   NOn, SOff, LOn, LOff, or an evaluation set name
    is_mom            int64   1 for a mixture of mixtures, 0 for a single mixture
    clip_id1, video_id1, clip_id2, video_id2
                      bytes   clip 2 empty for a single mixture
    start1, end1, start2, end2
                      float   seconds in the source video (clip 2: NaN when absent)
    frames_clip_id    bytes   the clip the frames come from (clip 1 but for SOff)
    label1            bytes   onscreen_only / offscreen_only / empty (unanimous rater label)
    votes_onscreen1, votes_offscreen1
                      int64[] one 0/1 vote per rater (may be empty)
    score1            float   coincidence probability of clip 1 (NaN when unknown)
    licence_name1, licence_url1, licence_name2, licence_url2
                      bytes   the Creative Commons licence of each source video
    frames_licence_name, frames_licence_url
                      bytes   the licence of the frames' video (clip 1's but for SOff,
                              whose frames come from a third video)
    schema_version    int64   :data:`SCHEMA_VERSION`

Audio is stored as int16 so that a consumer gets the mixture of mixtures
exactly as ``audio1 + audio2`` after ``x / 32768.0``. Both codecs are
lossless; zstd was measured against PNG + zlib on the synthetic corpus's
mixtures: 10% fewer bytes and a third of the decoding time
(:func:`decode_media` undoes them with numpy and ``zstandard``).

Schema versions: 1 stored raw frames and raw PCM (566 kB per example); 2 (this
one) stores the codecs above (about 2.1x smaller on the synthetic corpus,
``benchmarks/loader.py``). Readers read both (:func:`frames_from`,
:func:`audio_from`). Only :func:`to_example`, :func:`encode`,
:func:`feature_spec` and :func:`write_tfrecord` import TensorFlow, inside
the function; decoding and reading need only numpy and Pillow.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from audioscope import storage
from audioscope.schemas.tables import LABEL_VALUES

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

#: Version of the record layout; bump it when a feature changes meaning or type.
SCHEMA_VERSION = 2
#: The oldest record version this version reads (1: raw frames and PCM).
OLDEST_READABLE = 1
#: zstd level of the writer (frames and audio): measured on the synthetic corpus, level 3
#: gives 33 kB of frames and 230 kB of audio per example; higher levels gain ~3%.
ZSTD_LEVEL = 3

from audioscope.geometry import AUDIO_SAMPLES, CLIP_SECONDS, FRAMES_SHAPE, SAMPLE_RATE  # noqa: E402,F401
#: int16 full scale: float audio is ``int16 / AUDIO_SCALE``.
AUDIO_SCALE = 32768.0

#: Training example types (docs/recipe.md).
NON, SOFF, LON, LOFF = "NOn", "SOff", "LOn", "LOff"
TRAIN_TYPES: tuple[str, ...] = (NON, SOFF, LON, LOFF)
#: Evaluation sets (docs/recipe.md), also their example ``type``.
EVAL_SETS: tuple[str, ...] = ("onscreen_single", "offscreen_single", "onscreen_mom", "offscreen_mom")

#: Feature name -> (value kind, "scalar" or "list"); the kinds are tf.train's
#: bytes_list / int64_list / float_list.
FEATURES: dict[str, tuple[str, str]] = {
    "frames": ("bytes", "scalar"),
    "audio1": ("bytes", "scalar"),
    "audio2": ("bytes", "scalar"),
    "type": ("bytes", "scalar"),
    "is_mom": ("int64", "scalar"),
    "clip_id1": ("bytes", "scalar"),
    "video_id1": ("bytes", "scalar"),
    "clip_id2": ("bytes", "scalar"),
    "video_id2": ("bytes", "scalar"),
    "start1": ("float", "scalar"),
    "end1": ("float", "scalar"),
    "start2": ("float", "scalar"),
    "end2": ("float", "scalar"),
    "frames_clip_id": ("bytes", "scalar"),
    "label1": ("bytes", "scalar"),
    "votes_onscreen1": ("int64", "list"),
    "votes_offscreen1": ("int64", "list"),
    "score1": ("float", "scalar"),
    "licence_name1": ("bytes", "scalar"),
    "licence_url1": ("bytes", "scalar"),
    "licence_name2": ("bytes", "scalar"),
    "licence_url2": ("bytes", "scalar"),
    "frames_licence_name": ("bytes", "scalar"),
    "frames_licence_url": ("bytes", "scalar"),
    "schema_version": ("int64", "scalar"),
}

_ARRAYS = ("frames", "audio1", "audio2")
#: Features a reader may find missing, and the value it takes then (the frames'
#: licence was added after the first agreed layout; without it, clip 1's applies).
OPTIONAL: dict[str, bytes] = {"frames_licence_name": b"", "frames_licence_url": b""}


class RecordError(ValueError):
    """A mixture example does not match the record layout."""


@dataclass(frozen=True, kw_only=True)
class MixtureRecord:
    """One mixture example with its media (see the module docstring for each field).

    ``audio2`` is None (stored as zeros) for a single mixture.
    """

    frames: np.ndarray
    audio1: np.ndarray
    audio2: np.ndarray | None
    type: str
    is_mom: bool
    clip_id1: str
    video_id1: str
    start1: float
    end1: float
    frames_clip_id: str
    clip_id2: str = ""
    video_id2: str = ""
    start2: float = math.nan
    end2: float = math.nan
    label1: str = ""
    votes_onscreen1: tuple[int, ...] = field(default=())
    votes_offscreen1: tuple[int, ...] = field(default=())
    score1: float = math.nan
    licence_name1: str = ""
    licence_url1: str = ""
    licence_name2: str = ""
    licence_url2: str = ""
    frames_licence_name: str = ""
    frames_licence_url: str = ""
    schema_version: int = SCHEMA_VERSION

    def mixture(self) -> np.ndarray:
        """The mixture of mixtures as float32 (``audio1 + audio2`` after ``x / 32768``)."""
        first = self.audio1.astype(np.float32) / AUDIO_SCALE
        if self.audio2 is None:
            return first
        return first + self.audio2.astype(np.float32) / AUDIO_SCALE


def check(record: MixtureRecord) -> MixtureRecord:
    """Raise :class:`RecordError` unless ``record`` fits the layout; return it."""
    if record.frames.dtype != np.uint8 or record.frames.shape != FRAMES_SHAPE:
        raise RecordError(f"frames must be uint8 {FRAMES_SHAPE}, got {record.frames.dtype} {record.frames.shape}")
    for name in ("audio1", "audio2"):
        audio = getattr(record, name)
        if audio is not None and (audio.dtype != np.int16 or audio.shape != (AUDIO_SAMPLES,)):
            raise RecordError(f"{name} must be int16 [{AUDIO_SAMPLES}], got {audio.dtype} {audio.shape}")
    if record.type not in TRAIN_TYPES + EVAL_SETS:
        raise RecordError(f"type {record.type!r} is not one of {TRAIN_TYPES + EVAL_SETS}")
    if record.is_mom != bool(record.clip_id2) or record.is_mom != (record.audio2 is not None):
        raise RecordError("a mixture of mixtures needs clip 2 and audio2; a single mixture has neither")
    if record.label1 and record.label1 not in LABEL_VALUES:
        raise RecordError(f"label1 {record.label1!r} is not one of {LABEL_VALUES}")
    if record.is_mom and record.video_id2 in (record.video_id1, video_of_clip(record.frames_clip_id)):
        raise RecordError(f"the second mixture's video {record.video_id2} is also in the first mixture")
    if record.schema_version > SCHEMA_VERSION:
        raise RecordError(
            f"record schema version {record.schema_version}; this version of audioscope-data reads "
            f"{SCHEMA_VERSION}: upgrade audioscope-data"
        )
    return record


def video_of_clip(clip_id: str) -> str:
    """The video id inside a clip id (``{video_id}-{start_ms:07d}``, docs/ARCHITECTURE.md "Ids")."""
    return clip_id.rsplit("-", 1)[0]


def frames_bytes(frames: np.ndarray) -> bytes:
    """The 5 frames, stacked top to bottom (640x128 RGB), each row Sub-filtered (every byte minus
    the same channel of the pixel to its left, modulo 256, as PNG's Sub filter), as a zstd frame."""
    import zstandard

    n, h, w, c = frames.shape
    x = np.ascontiguousarray(frames, dtype=np.uint8).reshape(n * h, w, c)
    filtered = x.copy()
    np.subtract(x[:, 1:], x[:, :-1], out=filtered[:, 1:])  # uint8 wraps modulo 256
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(filtered.tobytes())


def audio_bytes(audio: np.ndarray | None) -> bytes:
    """int16 PCM, little endian (zeros for None), as a zstd frame."""
    import zstandard

    pcm = np.zeros(AUDIO_SAMPLES, "<i2") if audio is None else audio.astype("<i2")
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(pcm.tobytes())


def _unzstd(data: bytes, size: int, what: str) -> bytes:
    """A zstd frame's bytes, refusing anything but exactly ``size`` bytes (no decompression bomb)."""
    import zstandard

    try:
        raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
    except zstandard.ZstdError as e:
        raise RecordError(f"the {what} cannot be decompressed ({e})") from None
    if len(raw) != size:
        raise RecordError(f"the {what} hold {len(raw)} bytes, not {size}")
    return raw


def frames_from(data: bytes, version: int) -> np.ndarray:
    """Decoded frames uint8 [5, 128, 128, 3] of a record of ``version``."""
    size = int(np.prod(FRAMES_SHAPE))
    if version >= 2:
        n, h, w, c = FRAMES_SHAPE
        filtered = np.frombuffer(_unzstd(data, size, "frames"), np.uint8).reshape(n * h, w, c)
        return np.cumsum(filtered, axis=1, dtype=np.uint8).reshape(FRAMES_SHAPE)  # undo Sub, modulo 256
    if len(data) != size:
        raise RecordError(f"the raw frames hold {len(data)} bytes, not {FRAMES_SHAPE}")
    return np.frombuffer(data, np.uint8).reshape(FRAMES_SHAPE)


def audio_from(data: bytes, version: int) -> np.ndarray:
    """Decoded int16 samples [80000] of a record of ``version``."""
    raw = _unzstd(data, 2 * AUDIO_SAMPLES, "audio") if version >= 2 else data
    if len(raw) != 2 * AUDIO_SAMPLES:
        raise RecordError(f"the audio holds {len(raw)} bytes, not {AUDIO_SAMPLES} int16 samples")
    return np.frombuffer(raw, "<i2").astype(np.int16)


def decode_media(frames: bytes, audio1: bytes, audio2: bytes, version: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames uint8 [5,128,128,3], audio1 int16 [80000], audio2 int16 [80000]) of a record's media
    (what the TF loader runs in ``tf.numpy_function``)."""
    return frames_from(frames, version), audio_from(audio1, version), audio_from(audio2, version)


def _values(record: MixtureRecord) -> dict[str, Any]:
    """Each feature's value list, in :data:`FEATURES` order."""
    arrays = {
        "frames": frames_bytes(record.frames),
        "audio1": audio_bytes(record.audio1),
        "audio2": audio_bytes(record.audio2),
    }
    out: dict[str, Any] = {}
    for name, (kind, shape) in FEATURES.items():
        value = arrays[name] if name in arrays else getattr(record, name)
        if name == "schema_version":
            value = SCHEMA_VERSION  # the bytes are always written in this version's layout
        if kind == "bytes":
            value = value if isinstance(value, bytes) else str(value).encode("utf-8")
        elif kind == "int64":
            value = [int(v) for v in value] if shape == "list" else int(value)
        else:
            value = float(value)
        out[name] = value if shape == "list" else [value]
    return out


def to_example(record: MixtureRecord) -> "tf.train.Example":
    """The checked record as a ``tf.train.Example``."""
    import tensorflow as tf

    features = {}
    for name, values in _values(check(record)).items():
        kind = FEATURES[name][0]
        if kind == "bytes":
            features[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        elif kind == "int64":
            features[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        else:
            features[name] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
    return tf.train.Example(features=tf.train.Features(feature=features))


def encode(record: MixtureRecord) -> bytes:
    """The serialized example; map keys in a fixed order, so the same record gives the same bytes."""
    return to_example(record).SerializeToString(deterministic=True)


def decode(data: bytes) -> MixtureRecord:
    """A serialized example back as a :class:`MixtureRecord` (checked; any schema version since
    :data:`OLDEST_READABLE`). Needs no TensorFlow (:func:`audioscope.schemas.tfrecord.parse_example`)."""
    from audioscope.schemas.tfrecord import parse_example

    try:
        feature = parse_example(data)
    except ValueError as e:
        raise RecordError(f"not a tf.train.Example ({e}); it was not written by `audioscope mix`") from None
    missing = [n for n in FEATURES if n not in feature and n not in OPTIONAL]
    if missing:
        raise RecordError(f"the example lacks the features {missing}; it was not written by `audioscope mix`")
    values: dict[str, Any] = {}
    for name, (kind, shape) in FEATURES.items():
        if name not in feature:
            values[name] = OPTIONAL[name]
            continue
        got_kind, got = feature[name]
        if (got and got_kind != kind) or (shape == "scalar" and len(got) != 1):
            raise RecordError(f"the feature {name} is not one {kind} value; it was not written by `audioscope mix`")
        values[name] = tuple(got) if shape == "list" else got[0]
    version = int(values["schema_version"])
    check_version(version)
    values["frames"] = frames_from(values["frames"], version)
    values["audio1"] = audio_from(values["audio1"], version)
    values["is_mom"] = bool(values["is_mom"])
    values["audio2"] = audio_from(values["audio2"], version) if values["is_mom"] else None
    for name, (kind, _shape) in FEATURES.items():
        if kind == "bytes" and name not in _ARRAYS:
            values[name] = bytes(values[name]).decode("utf-8")
        elif kind == "float":
            values[name] = float(np.float32(values[name]))
    return check(MixtureRecord(**values))


def check_version(version: int, where: str = "") -> None:
    """Raise :class:`RecordError` for a record version this version cannot read."""
    at = f"{where}: " if where else ""
    if version > SCHEMA_VERSION:
        raise RecordError(
            f"{at}record schema version {version}; this version of audioscope-data reads {OLDEST_READABLE} to "
            f"{SCHEMA_VERSION}: upgrade audioscope-data"
        )
    if version < OLDEST_READABLE:
        raise RecordError(f"{at}record schema version {version} is older than any this version reads: write the shards again")


def feature_spec(names: Iterable[str] | None = None) -> dict[str, Any]:
    """``tf.io.parse_example`` features for ``names`` (default: all of :data:`FEATURES`)."""
    import tensorflow as tf

    dtypes = {"bytes": tf.string, "int64": tf.int64, "float": tf.float32}
    spec: dict[str, Any] = {}
    for name in names if names is not None else FEATURES:
        kind, shape = FEATURES[name]
        if shape == "list":
            spec[name] = tf.io.VarLenFeature(dtypes[kind])
        else:
            spec[name] = tf.io.FixedLenFeature([], dtypes[kind])
    return spec


def record_fields() -> tuple[str, ...]:
    """The metadata fields of :class:`MixtureRecord` (everything but the media arrays)."""
    return tuple(f.name for f in dataclasses.fields(MixtureRecord) if f.name not in _ARRAYS)


#: Bytes of the compressed media of one example, as measured on the synthetic corpus
#: (33 kB of frames and 230 kB of audio per example; ``benchmarks/loader.py --source``).
ESTIMATED_MEDIA_BYTES = 265_000


def estimated_bytes(metadata_bytes: int = 1024) -> int:
    """Bytes one example takes in a TFRecord file (compressed media plus a bound on the metadata),
    what shard sizes are planned with. Real corpora vary: audio compresses less than frames."""
    return ESTIMATED_MEDIA_BYTES + metadata_bytes


def write_tfrecord(uri: str, serialized: Iterable[bytes], expected: int | None = None) -> int:
    """Write examples to a TFRecord file atomically; returns the file's size in bytes.

    The records go to a temporary name (in the same folder when local, in a
    local temporary folder for ``gs://``/``s3://``) and are moved into place
    whole, so a reader never sees a partial shard. With ``expected``, a file
    that would hold another number of records is not moved into place
    (:class:`RecordError`): a shard is never finished short.
    """
    import tensorflow as tf

    local = storage.is_local(uri)
    path = uri[len("file://") :] if uri.startswith("file://") else uri
    if local:
        parent = os.path.dirname(path) or "."
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    else:
        tmp = os.path.join(tempfile.mkdtemp(prefix="audioscope-shard-"), os.path.basename(path))
    try:
        count = 0
        with tf.io.TFRecordWriter(tmp) as writer:
            for data in serialized:
                writer.write(data)
                count += 1
        if expected is not None and count != expected:
            raise RecordError(f"{uri}: {count} examples were given for a shard planned to hold {expected}; not written")
        size = os.path.getsize(tmp)
        if local:
            os.replace(tmp, path)
        else:
            fs, remote = storage.url_to_fs(uri)
            fs.put_file(tmp, remote)
        return size
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_tfrecord(uri: str) -> list[bytes]:
    """Every serialized example of a TFRecord file, in order, checksums checked (no TensorFlow)."""
    from audioscope.schemas.tfrecord import read_records

    return list(read_records(uri))
