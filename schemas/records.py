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

Schema 5 (this one), like schemas 3 and 4, is a *packed shard*: every clip a shard
uses is stored once, in a **clip record** at the head of the shard file, and
the examples that follow hold only references (their ``frames``, ``audio1``
and ``audio2`` are empty; the media are those of ``frames_clip_id``,
``clip_id1`` and ``clip_id2``)::

    record_kind       bytes   "clip" (an example record says "example")
    clip_id           bytes   the clip
    frames            bytes   its frames, uint8 5x128x128x3 in C order seen as 640 rows of
                              128 RGB pixels: red and blue minus green (modulo 256), then
                              each row Sub-filtered (a byte minus the same channel of the
                              pixel to its left, modulo 256), as one zstd frame; or empty
                              when no example of the shard shows them
    audio             bytes   its int16 PCM as 32 blocks of 2,500 samples, each predicted
                              from its own previous 8 samples (zeros before the block
                              starts) by coefficients of its own: one zstd frame of
                              32 shifts (uint8, <= 15), the 8 x 32 coefficients (int16
                              little endian, coefficient k of every block, then k+1; a
                              block's absolute sum < 65,536), then the residuals
                              r = x[t] - (sum_k c[k] x[t-1-k] >> shift) modulo 2**16, time
                              step by time step, one per block, each split as
                              r = 256 h + l with l the signed low byte: every h (int8)
                              then every l (int8); or empty
    schema_version    int64   5

Both clip codecs were chosen on real media (``benchmarks/record_bytes.py``,
docs/experiments/mixture-bytes-and-loader.md): against schema 3 (the raw
frames, the PCM's high then low bytes, zstd level 3) they store a clip of
real footage in ~25-30% fewer bytes. Schema 4 stored the audio as first
differences (the same split); schema 5's prediction per block takes 8% fewer
bytes on music and 11% fewer on speech (pocketsphinx's test recordings:
3.86x -> 4.14x per example; dense 16 kHz readings 3.66-3.77x). Decoding is compiled
(:mod:`audioscope.schemas.kernels`): one pass for the frames, and the 32
blocks' predictions side by side in vector lanes for the audio. Schema 3's
and 4's clip records (:data:`CLIP_CODECS`) still read, and mix still writes
them to finish a folder begun in them.

A reader keeps the compressed clips of the shard it reads (bounded by one
shard's size) and decodes each example's media from them
(:class:`ShardReader`, :func:`decode_shard`); the mix step pairs the second
mixture of a training example with a clip of the same shard, so each clip is
stored once however many examples use it. :func:`encode_shard` writes a
shard. :func:`encode` still writes one self-contained example (its media
inside it, in the codecs above, ``record_kind`` "example"); a reference
example cannot be decoded alone (:func:`decode` says so).

Schema versions: 1 stored raw frames and raw PCM (566 kB per example); 2
stores the codecs above in every example (about 2.2x smaller on the synthetic
corpus, ``benchmarks/loader.py``); 3 packs a shard's clips; 4 packs them in
the clip codecs above with first differences for the audio (4.06x smaller
than schema 1 on the registry's real videos, whose sound is music; 3.86x
with real speech); 5 predicts the audio per block (4.25x; 4.14x with speech).
Readers read all five (:func:`frames_from`, :func:`audio_from`, :class:`ShardReader`). Only :func:`to_example`, :func:`encode`,
:func:`feature_spec` and :func:`write_tfrecord` import TensorFlow, inside
the function; decoding and reading need only numpy and Pillow (records are
parsed by the ``protobuf`` package's C parser where it is installed, else by
:func:`audioscope.schemas.tfrecord.parse_example`, the same values).
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Collection, Iterable, Iterator, Mapping, Sequence

import numpy as np

from audioscope import storage
from audioscope.schemas.tables import LABEL_VALUES

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

#: Version of the record layout; bump it when a feature changes meaning or type.
SCHEMA_VERSION = 5
#: The oldest record version this version reads (1: raw frames and PCM).
OLDEST_READABLE = 1
#: zstd level of the writer (frames and audio): measured on the synthetic corpus, level 3
#: gives 33 kB of frames and 230 kB of audio per example; higher levels gain ~3%.
ZSTD_LEVEL = 3
#: zstd level of schema 4's clip audio (first differences), as schema 4 was written (its frames
#: were written at level 6 too: 6% fewer bytes than level 3 at ~1.3 ms a clip).
CLIP_ZSTD_LEVEL = 6
#: zstd's settings for a packed shard's clip frames (schemas 4 and 5; any level decodes alike):
#: level 16 (optimal parsing) with matches of at least 6 bytes. On the registry's real videos
#: against level 6 (also with 6), 1.6-3.2% fewer bytes, and fewer, longer sequences that
#: decompress faster: 88 against 123 us a clip (bikes), 132 against 139 (trailer and Big Buck
#: Bunny), for 6-8 ms of encoding a clip instead of 2. A minimum match of 6 rather than level 16's
#: own 5: 0.3-0.4% fewer bytes, ~10 us less decoding (at level 6 it stored 2.3-3.1% fewer bytes).
CLIP_FRAMES_LEVEL, CLIP_FRAMES_MIN_MATCH = 16, 6
#: zstd's settings for schema 5's clip audio: level 12, matches of at least 7 bytes. Against level
#: 6 with its own 5: 0.7% fewer bytes on pocketsphinx's speech recordings (84.2 -> 83.6 kB a clip)
#: and 0.4% on the films' sound, decompressed in 120 against 137 us (speech) and 84 against 93
#: (films), for 1.0-2.4 ms of encoding a clip instead of 0.6-1.4. Level 16 stores 1.8% less
#: speech but takes 5-11 ms a clip (the mix step 5x slower with both at 16) for about the same decoding.
#: With these frames and audio settings the loader read the speech examples 7% faster
#: (1,139-1,176 -> 1,235-1,255 examples per CPU-second), the films' 2-3% faster.
CLIP_AUDIO_LEVEL, CLIP_AUDIO_MIN_MATCH = 12, 7

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
    rows = np.ascontiguousarray(frames, dtype=np.uint8).reshape(n * h, w, c)
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(_sub_filtered(rows).tobytes())


def _sub_filtered(rows: np.ndarray) -> np.ndarray:
    """``rows`` (uint8 [rows, width, channels]) Sub-filtered as in PNG: every byte minus the same
    channel of the pixel to its left, modulo 256 (undone by a running sum along each row)."""
    filtered = rows.copy()
    np.subtract(rows[:, 1:], rows[:, :-1], out=filtered[:, 1:])  # uint8 wraps modulo 256
    return filtered


def audio_bytes(audio: np.ndarray | None) -> bytes:
    """int16 PCM, little endian (zeros for None), as a zstd frame."""
    import zstandard

    pcm = np.zeros(AUDIO_SAMPLES, "<i2") if audio is None else audio.astype("<i2")
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(pcm.tobytes())


_DECOMPRESSORS = threading.local()  # one zstd decompressor per thread (an object is not thread-safe)


def _decompressor() -> Any:
    """This thread's zstd decompressor."""
    import zstandard

    decompressor = getattr(_DECOMPRESSORS, "zstd", None)
    if decompressor is None:
        decompressor = _DECOMPRESSORS.zstd = zstandard.ZstdDecompressor()
    return decompressor


def _unzstd(data: bytes, size: int, what: str) -> bytes:
    """A zstd frame's bytes, refusing anything but exactly ``size`` bytes (no decompression bomb)."""
    import zstandard

    try:
        raw = _decompressor().decompress(data, max_output_size=size)
    except zstandard.ZstdError as e:
        raise RecordError(f"the {what} cannot be decompressed ({e})") from None
    if len(raw) != size:
        raise RecordError(f"the {what} hold {len(raw)} bytes, not {size}")
    return raw


def _unzstd_into(data: bytes, out: np.ndarray, what: str) -> None:
    """Decompress a zstd frame into the contiguous uint8 array ``out``, refusing any other size
    (no new buffer: a fresh ~250 kB allocation per call costs more than decompressing, page faults)."""
    import zstandard

    target = memoryview(out).cast("B")
    size, got = len(target), 0
    try:
        with _decompressor().stream_reader(data) as reader:
            while got < size:
                n = reader.readinto(target[got:])
                if not n:
                    break
                got += n
            extra = reader.read(1) if got == size else b""
    except zstandard.ZstdError as e:
        raise RecordError(f"the {what} cannot be decompressed ({e})") from None
    if got != size or extra:
        raise RecordError(f"the {what} hold {'more than ' if extra else ''}{got} bytes, not {size}")


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


def packed_frames_bytes(frames: np.ndarray) -> bytes:
    """Schema 3's clip frames: the raw bytes (uint8, C order) as one zstd frame (read by
    :func:`clip_frames_into`; written now only to compare and to test reading old shards)."""
    import zstandard

    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(np.ascontiguousarray(frames, np.uint8).tobytes())


def packed_audio_bytes(audio: np.ndarray) -> bytes:
    """Schema 3's clip audio: int16 PCM as its high bytes then its low bytes, one zstd frame."""
    import zstandard

    pairs = np.ascontiguousarray(audio, "<i2").view(np.uint8).reshape(-1, 2)
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(pairs[:, 1].tobytes() + pairs[:, 0].tobytes())


def _join_bytes(raw: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out`` (int16 [80000]) filled from the high bytes then the low bytes in ``raw`` (uint8)."""
    out[...] = raw[:AUDIO_SAMPLES].view(np.int8)  # the signed high byte
    out <<= 8
    out |= raw[AUDIO_SAMPLES:]  # the low byte (three passes: 3x faster than interleaving the bytes)
    return out


def _zstd(data: bytes, level: int, min_match: int) -> bytes:
    """``data`` as one zstd frame at ``level`` with matches of at least ``min_match`` bytes."""
    import zstandard

    params = zstandard.ZstdCompressionParameters.from_level(level, min_match=min_match)
    return zstandard.ZstdCompressor(compression_params=params).compress(data)


def clip_frames_bytes(frames: np.ndarray) -> bytes:
    """Schemas 4 and 5's clip frames: red and blue minus green, then every row of the 5 stacked
    frames Sub-filtered (all modulo 256), as one zstd frame (:data:`CLIP_FRAMES_LEVEL`,
    :data:`CLIP_FRAMES_MIN_MATCH`)."""
    n, h, w, c = FRAMES_SHAPE
    x = np.ascontiguousarray(frames, dtype=np.uint8).reshape(n * h, w, c)
    colour = x.copy()
    colour[..., 0] -= x[..., 1]  # uint8 wraps modulo 256
    colour[..., 2] -= x[..., 1]
    return _zstd(_sub_filtered(colour).tobytes(), CLIP_FRAMES_LEVEL, CLIP_FRAMES_MIN_MATCH)


def delta_audio_bytes(audio: np.ndarray) -> bytes:
    """Schema 4's clip audio: first differences (modulo 2**16), each as ``256 h + l`` with ``l`` its
    signed low byte; every ``h`` then every ``l``, one zstd frame (level :data:`CLIP_ZSTD_LEVEL`). Written
    now only to finish a schema-4 mix folder and to test reading old shards."""
    import zstandard

    x = np.ascontiguousarray(audio, np.int16)
    d = x.copy()
    np.subtract(x[1:], x[:-1], out=d[1:])  # int16 wraps modulo 2**16
    return zstandard.ZstdCompressor(level=CLIP_ZSTD_LEVEL).compress(_signed_planes(d))


def _signed_planes(d: np.ndarray) -> bytes:
    """int16 ``d`` (read in C order) as ``256 h + l`` with ``l`` its signed low byte: every ``h`` then
    every ``l``."""
    d = np.ascontiguousarray(d).reshape(-1)
    low = d.astype("<i2").view(np.uint8)[0::2]
    high = (d.astype(np.int32) - low.view(np.int8)) >> 8  # -128..128; 128 is -128 modulo 256
    return high.astype(np.uint8).tobytes() + low.tobytes()


def lpc_predict(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Schema 5's prediction of each block of int16 samples ``blocks`` [blocks, samples]: (shifts
    uint8 [blocks], coefficients int16 [order, blocks], residuals int32 [blocks, samples]) where a
    residual is the sample minus ``sum_k c[k] x[t-1-k] >> shift`` (zeros before the block starts).

    The autocorrelation of each block under a Welch window, in exact integers, then
    Levinson-Durbin in float64 with elementwise operations only, and each block's coefficients
    scaled by the largest power of two (at most 2**15) that keeps them int16 and their absolute sum
    below :data:`~audioscope.schemas.kernels.LPC_COEFFICIENT_SUM`: the same bytes on every machine
    (no reductions in floating point, whose order could differ). A block that first differences
    predict better (by the sum of absolute residuals, FLAC's criterion) takes them instead. The integer
    loops are compiled (:func:`~audioscope.schemas.kernels.autocorrelation`,
    :func:`~audioscope.schemas.kernels.residuals`): 0.6 ms a clip for the prediction, numpy took 1.7."""
    from audioscope.schemas import kernels

    n_blocks, order, max_shift = blocks.shape[0], kernels.LPC_ORDER, kernels.LPC_MAX_SHIFT
    x = np.ascontiguousarray(blocks, np.int32)
    r = kernels.autocorrelation(x, order).astype(np.float64)
    a = np.zeros((n_blocks, order))
    error = r[:, 0].copy()
    live = error > 0
    for i in range(order):
        acc = r[:, i + 1].copy()
        for j in range(i):
            acc -= a[:, j] * r[:, i - j]
        k = np.where(live, acc / np.where(live, error, 1.0), 0.0)
        before = a[:, :i].copy()
        a[:, :i] = before - k[:, None] * before[:, ::-1]
        a[:, i] = k
        error = error * (1.0 - k * k)
        live &= error > 0
    scales = 2.0 ** np.arange(max_shift, -1, -1)  # the largest shift first
    q = np.round(a[:, None, :] * scales[None, :, None]).astype(np.int64)  # [blocks, shifts, order]
    fits = (np.abs(q).max(axis=2) < 1 << 15) & (np.abs(q).sum(axis=2) < kernels.LPC_COEFFICIENT_SUM)
    first, found = fits.argmax(axis=1), fits.any(axis=1)  # else no prediction at all
    coefs = np.where(found[:, None], q[np.arange(n_blocks), first], 0).astype(np.int32)
    shifts = np.where(found, max_shift - first, 0).astype(np.int32)
    residuals = kernels.residuals(x, coefs, shifts)
    delta = x.copy()
    delta[:, 1:] -= x[:, :-1]  # the first differences, also within the block
    better = np.abs(delta).sum(axis=1) < np.abs(residuals).sum(axis=1)
    coefs[better] = 0
    coefs[better, 0] = 1
    shifts[better] = 0
    residuals[better] = delta[better]
    return shifts.astype(np.uint8), np.ascontiguousarray(coefs.T.astype(np.int16)), residuals


def clip_audio_bytes(audio: np.ndarray) -> bytes:
    """Schema 5's clip audio: 32 blocks of 2,500 samples, each predicted by 8 coefficients of its
    own (:func:`lpc_predict`); the predictor (a shift per block, then the int16 coefficients),
    then the residuals (modulo 2**16) interleaved time step by time step, one per block, each as
    ``256 h + l`` with ``l`` its signed low byte: every ``h`` then every ``l``; one zstd frame
    (:data:`CLIP_AUDIO_LEVEL`, :data:`CLIP_AUDIO_MIN_MATCH`). Undone by
    :func:`audioscope.schemas.kernels.unpredict_audio`."""
    from audioscope.schemas.kernels import LPC_BLOCKS

    shifts, coefs, residuals = lpc_predict(np.ascontiguousarray(audio, np.int16).reshape(LPC_BLOCKS, -1))
    payload = shifts.tobytes() + coefs.astype("<i2").tobytes() + _signed_planes(residuals.astype(np.int16).T)  # wraps
    return _zstd(payload, CLIP_AUDIO_LEVEL, CLIP_AUDIO_MIN_MATCH)


def _thread_array(name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """This thread's reusable array ``name`` (a fresh ~250 kB allocation per clip costs page faults)."""
    found = getattr(_DECOMPRESSORS, name, None)
    if found is None:
        found = np.empty(shape, dtype)
        setattr(_DECOMPRESSORS, name, found)
    return found


def _audio_scratch() -> np.ndarray:
    """This thread's uint8 [160000] buffer for one clip's decompressed audio."""
    return _thread_array("audio", (2 * AUDIO_SAMPLES,), np.uint8)


def clip_frames_into(version: int, data: bytes, out: np.ndarray) -> None:
    """A clip record's frames (``version`` 3 or 4) decoded into ``out`` (uint8 [5,128,128,3], C order).

    Schema 4's filters (the Sub filter along each row, the green differences) are undone in
    place by :func:`audioscope.schemas.kernels.unfilter_frames` (compiled, one pass: 80 us a clip
    on an AMD EPYC without AVX-512, where numpy's shifted additions over the whole buffer took
    155-160)."""
    flat = out.reshape(-1)
    _unzstd_into(data, flat, "frames")
    if version >= 4:
        from audioscope.schemas import kernels

        kernels.unfilter_frames(flat, FRAMES_SHAPE[2] * FRAMES_SHAPE[3])


def _samples_into(pcm: np.ndarray, out: np.ndarray) -> None:
    """int16 ``pcm`` into ``out``: as they are (int16), or / 32768 (float32)."""
    if out.dtype == np.float32:
        np.multiply(pcm, np.float32(1 / AUDIO_SCALE), out=out)
    else:
        out[...] = pcm


def clip_audio_into(version: int, data: bytes, out: np.ndarray) -> None:
    """A clip record's audio (``version`` 3 to 5) decoded into ``out``: int16 [80000], or float32
    [80000] for the samples / 32768 (written straight from the stored bytes, no int16 copy)."""
    from audioscope.schemas import kernels

    if version >= 5:
        payload = _thread_array("predicted", (kernels.LPC_HEADER + 2 * AUDIO_SAMPLES,), np.uint8)
        _unzstd_into(data, payload, "audio")
        try:
            kernels.unpredict_audio(payload, out, 1 / AUDIO_SCALE)
        except ValueError as e:
            raise RecordError(str(e)) from None
        return
    scratch = _audio_scratch()
    _unzstd_into(data, scratch, "audio")
    if version < 4:
        if out.dtype == np.int16:
            _join_bytes(scratch, out)
        else:
            _samples_into(_join_bytes(scratch, _thread_array("pcm", (AUDIO_SAMPLES,), np.int16)), out)
        return
    kernels.unfilter_audio(scratch, out, 1 / AUDIO_SCALE)  # the differences' running sum, modulo 2**16


#: The clip record codecs of each packed-shard version: (frames writer, audio writer).
CLIP_CODECS: dict[int, tuple[Any, Any]] = {
    3: (packed_frames_bytes, packed_audio_bytes),
    4: (clip_frames_bytes, delta_audio_bytes),
    5: (clip_frames_bytes, clip_audio_bytes),
}


def decode_media(frames: bytes, audio1: bytes, audio2: bytes, version: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames uint8 [5,128,128,3], audio1 int16 [80000], audio2 int16 [80000]) of a self-contained
    record's media (schemas 1 and 2)."""
    return frames_from(frames, version), audio_from(audio1, version), audio_from(audio2, version)


#: ``record_kind`` of the two records of a packed (schema 3) shard.
CLIP_KIND, EXAMPLE_KIND = "clip", "example"
#: The features of a clip record of a packed shard.
CLIP_FEATURES: dict[str, tuple[str, str]] = {
    "record_kind": ("bytes", "scalar"),
    "clip_id": ("bytes", "scalar"),
    "frames": ("bytes", "scalar"),
    "audio": ("bytes", "scalar"),
    "schema_version": ("int64", "scalar"),
}


def _values(record: MixtureRecord, packed: bool = False, version: int = SCHEMA_VERSION) -> dict[str, Any]:
    """Each feature's value list, in :data:`FEATURES` order, then ``record_kind`` (``packed``: the
    media left empty, the example refers to its shard's clip records)."""
    if packed:
        arrays = {"frames": b"", "audio1": b"", "audio2": b""}
    else:
        arrays = {
            "frames": frames_bytes(record.frames),
            "audio1": audio_bytes(record.audio1),
            "audio2": audio_bytes(record.audio2),
        }
    out: dict[str, Any] = {}
    for name, (kind, shape) in FEATURES.items():
        value = arrays[name] if name in arrays else getattr(record, name)
        if name == "schema_version":
            value = version  # the bytes are always written in this version's layout
        if kind == "bytes":
            value = value if isinstance(value, bytes) else str(value).encode("utf-8")
        elif kind == "int64":
            value = [int(v) for v in value] if shape == "list" else int(value)
        else:
            value = float(value)
        out[name] = value if shape == "list" else [value]
    out["record_kind"] = [EXAMPLE_KIND.encode()]
    return out


def _serialize(values: Mapping[str, list], kinds: Mapping[str, tuple[str, str]]) -> bytes:
    """The serialized ``tf.train.Example`` of ``values``, map keys in a fixed order."""
    return _example(values, kinds).SerializeToString(deterministic=True)


def encode_shard(recs: Sequence[MixtureRecord], version: int = SCHEMA_VERSION) -> list[bytes]:
    """The serialized records of a packed shard holding ``recs``: a clip record per clip the
    examples use (sorted by clip id; frames only of clips shown, audio only of clips heard), then
    one reference record per example, in order. Raises :class:`RecordError` when two examples
    give one clip different media. ``version`` 3 writes schema 3's clip codecs (to compare and to
    test readers of old shards); the mix step writes :data:`SCHEMA_VERSION`."""
    if version not in CLIP_CODECS:
        raise RecordError(f"packed shards are written in record schema {sorted(CLIP_CODECS)}, not {version}")
    frames_codec, audio_codec = CLIP_CODECS[version]
    audio: dict[str, np.ndarray] = {}
    frames: dict[str, np.ndarray] = {}

    def keep(table: dict[str, np.ndarray], clip_id: str, media: np.ndarray, what: str) -> None:
        have = table.setdefault(clip_id, media)
        if have is not media and not np.array_equal(have, media):
            raise RecordError(f"clip {clip_id} comes with two different {what} in one shard")

    for rec in recs:
        check(rec)
        keep(frames, rec.frames_clip_id, rec.frames, "frames")
        keep(audio, rec.clip_id1, rec.audio1, "audio")
        if rec.audio2 is not None:
            keep(audio, rec.clip_id2, rec.audio2, "audio")
    out = []
    for clip_id in sorted(set(audio) | set(frames)):
        values = {
            "record_kind": [CLIP_KIND.encode()], "clip_id": [clip_id.encode("utf-8")],
            "frames": [frames_codec(frames[clip_id]) if clip_id in frames else b""],
            "audio": [audio_codec(audio[clip_id]) if clip_id in audio else b""],
            "schema_version": [version],
        }  # fmt: skip
        out.append(_serialize(values, CLIP_FEATURES))
    out += [_serialize(_values(rec, packed=True, version=version), FEATURES) for rec in recs]
    return out


def _example(values: Mapping[str, list], kinds: Mapping[str, tuple[str, str]]) -> "tf.train.Example":
    """A ``tf.train.Example`` of ``values`` (feature -> value list; kinds from ``kinds``, else bytes)."""
    import tensorflow as tf

    features = {}
    for name, vals in values.items():
        kind = kinds[name][0] if name in kinds else "bytes"
        if kind == "bytes":
            features[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=vals))
        elif kind == "int64":
            features[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=vals))
        else:
            features[name] = tf.train.Feature(float_list=tf.train.FloatList(value=vals))
    return tf.train.Example(features=tf.train.Features(feature=features))


def to_example(record: MixtureRecord) -> "tf.train.Example":
    """The checked record as a self-contained ``tf.train.Example`` (its media inside it)."""
    return _example(_values(check(record)), FEATURES)


def encode(record: MixtureRecord) -> bytes:
    """The serialized example; map keys in a fixed order, so the same record gives the same bytes."""
    return to_example(record).SerializeToString(deterministic=True)


def _example_class() -> Any:
    """A ``tf.train.Example`` message class built from its wire layout in a private descriptor pool
    (the protobuf package's C parser, without importing TensorFlow), or None without protobuf."""
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    except ImportError:  # pragma: no cover - protobuf comes with TensorFlow and Beam
        return None
    F = descriptor_pb2.FieldDescriptorProto
    pkg = "audioscope_records"
    fdp = descriptor_pb2.FileDescriptorProto(name=f"{pkg}/example.proto", package=pkg, syntax="proto3")

    def message(name: str, fields: Sequence[tuple[str, int, Any, Any]], into: Any = None) -> Any:
        """A message of (name, number, label, type or message name) fields."""
        m = (fdp.message_type if into is None else into).add(name=name)
        for fname, number, label, ftype in fields:
            f = m.field.add(name=fname, number=number, label=label)
            if isinstance(ftype, str):
                f.type, f.type_name = F.TYPE_MESSAGE, f".{pkg}.{ftype}"
            else:
                f.type = ftype
        return m

    many, one = F.LABEL_REPEATED, F.LABEL_OPTIONAL
    for kind, ftype in (("Bytes", F.TYPE_BYTES), ("Float", F.TYPE_FLOAT), ("Int64", F.TYPE_INT64)):
        message(f"{kind}List", [("value", 1, many, ftype)])
    lists = [(f"{k.lower()}_list", i, one, f"{k}List") for i, k in enumerate(("Bytes", "Float", "Int64"), 1)]
    feature = message("Feature", lists)
    feature.oneof_decl.add(name="kind")
    for f in feature.field:
        f.oneof_index = 0
    features = message("Features", [("feature", 1, many, "Features.FeatureEntry")])
    entry_fields = [("key", 1, one, F.TYPE_STRING), ("value", 2, one, "Feature")]
    entry = message("FeatureEntry", entry_fields, into=features.nested_type)
    entry.options.map_entry = True
    message("Example", [("features", 1, one, "Features")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{pkg}.Example"))


_EXAMPLE: list[Any] = []  # [message class or None], built on first use
_KINDS = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}


def _parse(data: bytes, names: Collection[str] | None = None) -> dict[str, tuple[str, list]]:
    """:func:`audioscope.schemas.tfrecord.parse_example` of ``data`` (the same dict), by the protobuf
    package's parser where it is installed (upb: a few times faster than the pure Python reader).
    ``names``: only these features (those present), for a reader that needs a few: each feature
    converted costs ~1.2 us, half of an example record's 35 us with all 25."""
    from audioscope.schemas.tfrecord import parse_example

    if not _EXAMPLE:
        _EXAMPLE.append(_example_class())
    cls = _EXAMPLE[0]
    try:
        if cls is None:
            parsed = parse_example(data)
            return parsed if names is None else {n: parsed[n] for n in names if n in parsed}
        try:
            message = cls.FromString(data)
        except Exception:  # protobuf's DecodeError: the pure Python reader says what is wrong
            return parse_example(data)
        out: dict[str, tuple[str, list]] = {}
        found = message.features.feature
        # ``name in found`` first: looking a missing key up in a message map would add it
        for name, feature in found.items() if names is None else ((n, found[n]) for n in names if n in found):
            kind = feature.WhichOneof("kind")
            # a slice of the repeated field is a list (a third faster than list() of it)
            out[name] = (_KINDS[kind], getattr(feature, kind).value[:]) if kind else ("bytes", [])
        return out
    except ValueError as e:
        raise RecordError(f"not a tf.train.Example ({e}); it was not written by `audioscope mix`") from None


def _version(feature: Mapping[str, tuple[str, list]]) -> int:
    values = feature.get("schema_version", ("int64", []))[1]
    if len(values) != 1:
        raise RecordError("the record lacks the features ['schema_version']; it was not written by `audioscope mix`")
    return int(values[0])


def _one(feature: Mapping[str, tuple[str, list]], name: str) -> Any:
    try:
        return feature[name][1][0]
    except (KeyError, IndexError):
        raise RecordError(f"the record lacks the feature {name}; it was not written by `audioscope mix`") from None


#: The key under which :meth:`ShardReader.take` puts a packed example's clips (frames of its first
#: clip, the audio of both; None for a single mixture's second) into its parsed features.
_CLIPS = " clips"
#: The features a :class:`ShardReader` reads to assemble an example's media (clip records' and examples').
READER_FEATURES = frozenset({"schema_version", "record_kind", "clip_id", "frames", "audio", "audio1", "audio2",
                             "frames_clip_id", "clip_id1", "clip_id2", "is_mom"})  # fmt: skip


class ShardReader:
    """Reads the records of one shard in order (any version since :data:`OLDEST_READABLE`).

    :meth:`read` returns ``(feature, version, frames, pcm1, pcm2)`` for an
    example record (``feature``: :func:`audioscope.schemas.tfrecord.parse_example`'s
    dict; media decoded: uint8 [5,128,128,3], int16 [80000] twice, zeros for
    a single mixture) and None for a clip record of a packed shard, whose
    compressed media it keeps for the examples after it (memory: one shard's
    compressed clips, until :meth:`release`). An example :meth:`take` returns
    carries its own clips' compressed media (shared, not copied), so examples
    waiting to be decoded hold only their clips, not their shard's. One reader
    per shard.
    """

    def __init__(self, where: str = "", fields: Collection[str] | None = None) -> None:
        self.where = where
        #: the features :meth:`take` parses: all, or ``fields`` and those the reader itself needs
        self.names = None if fields is None else frozenset(fields) | READER_FEATURES
        #: clip id -> (the clip record's version, its compressed frames / audio)
        self.frames: dict[bytes, tuple[int, bytes]] = {}
        self.audio: dict[bytes, tuple[int, bytes]] = {}

    def _at(self) -> str:
        return f"{self.where}: " if self.where else ""

    def _clip(self, table: dict[bytes, tuple[int, bytes]], clip_id: Any, what: str) -> tuple[int, bytes]:
        got = table.get(bytes(clip_id))
        if got is None:
            raise RecordError(
                f"{self._at()}an example refers to the {what} of clip {bytes(clip_id).decode('utf-8', 'replace')}, "
                "which no clip record before it holds: the shard is damaged or was cut; write or fetch it again"
            )
        return got

    def take(self, data: bytes) -> dict[str, tuple[str, list]] | None:
        """Parse a record: an example's features (its media decoded by :meth:`media`), or None for a
        clip record, whose compressed media are kept for the examples after it."""
        return self.take_parsed(_parse(data, self.names))

    def take_parsed(self, feature: dict[str, tuple[str, list]]) -> dict[str, tuple[str, list]] | None:
        """:meth:`take` of a record already parsed (:func:`_parse`'s dict, which it may extend)."""
        version = _version(feature)
        check_version(version, self.where)
        if version < 3:
            return feature
        kind = bytes(_one(feature, "record_kind")).decode("utf-8", "replace")
        if kind == CLIP_KIND:
            clip_id = bytes(_one(feature, "clip_id"))
            for table, name in ((self.frames, "frames"), (self.audio, "audio")):
                value = bytes(_one(feature, name))
                if value:
                    table[clip_id] = (version, value)
            return None
        if kind != EXAMPLE_KIND:
            raise RecordError(f"{self._at()}a record of kind {kind!r}; a packed shard holds clip and example records")
        if not _one(feature, "frames"):  # media by reference: the example takes its clips along
            second = self._clip(self.audio, _one(feature, "clip_id2"), "audio") if _one(feature, "is_mom") else None
            feature[_CLIPS] = (self._clip(self.frames, _one(feature, "frames_clip_id"), "frames"),
                               self._clip(self.audio, _one(feature, "clip_id1"), "audio"), second)  # fmt: skip
        return feature

    def release(self) -> None:
        """Forget the shard's clips (every record read: the examples taken hold those they use)."""
        self.frames, self.audio = {}, {}

    def media(
        self, feature: Mapping[str, tuple[str, list]], writable: bool = True
    ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """(version, frames, pcm1, pcm2) of an example :meth:`take` returned (thread-safe: reads only;
        ``writable=False``: the frames of a self-contained record may be a read-only view, for a caller that copies them)."""
        version = _version(feature)
        if version < 3 or _one(feature, "frames"):  # media inside the record (schema 3 on: in the codecs of 2)
            got = decode_media(_one(feature, "frames"), _one(feature, "audio1"), _one(feature, "audio2"), min(version, 2))
            return (version, *got)
        frames = np.empty(FRAMES_SHAPE, np.uint8)
        pcm1, pcm2 = np.empty(AUDIO_SAMPLES, np.int16), np.empty(AUDIO_SAMPLES, np.int16)
        return self.media_into(feature, frames, pcm1, pcm2), frames, pcm1, pcm2

    def media_into(self, feature: Mapping[str, tuple[str, list]], frames: np.ndarray, pcm1: np.ndarray,
                   pcm2: np.ndarray) -> int:  # fmt: skip
        """:meth:`media` written into ``frames`` (uint8 [5,128,128,3], C-contiguous), ``pcm1`` and
        ``pcm2`` (int16 [80000], or float32 [80000] for the samples / 32768); the version.
        Thread-safe; no new arrays for a packed shard."""
        version = _version(feature)
        if version < 3 or _one(feature, "frames"):
            version, frames[...], got1, got2 = self.media(feature, writable=False)
            _samples_into(got1, pcm1)
            _samples_into(got2, pcm2)
            return version
        clips, audio1, audio2 = feature[_CLIPS]
        clip_frames_into(*clips, frames)
        clip_audio_into(*audio1, pcm1)
        if audio2 is not None:
            clip_audio_into(*audio2, pcm2)
        else:
            pcm2[...] = 0
        return version

    def read(self, data: bytes) -> tuple[dict[str, tuple[str, list]], int, np.ndarray, np.ndarray, np.ndarray] | None:
        """:meth:`take` then :meth:`media`: ``(feature, version, frames, pcm1, pcm2)``, or None for a clip record."""
        feature = self.take(data)
        return None if feature is None else (feature, *self.media(feature))


def _record(feature: Mapping[str, tuple[str, list]], version: int, frames: np.ndarray, pcm1: np.ndarray,
            pcm2: np.ndarray) -> MixtureRecord:
    """The checked :class:`MixtureRecord` of a parsed example and its decoded media."""
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
    values["schema_version"] = version
    values["frames"], values["audio1"] = frames, pcm1
    values["is_mom"] = bool(values["is_mom"])
    values["audio2"] = pcm2 if values["is_mom"] else None
    for name, (kind, _shape) in FEATURES.items():
        if kind == "bytes" and name not in _ARRAYS:
            values[name] = bytes(values[name]).decode("utf-8")
        elif kind == "float":
            values[name] = float(np.float32(values[name]))
    return check(MixtureRecord(**values))


def decode(data: bytes) -> MixtureRecord:
    """A serialized self-contained example back as a :class:`MixtureRecord` (checked; any version).
    Needs no TensorFlow (:func:`audioscope.schemas.tfrecord.parse_example`). An example of a packed
    (schema 3) shard refers to clips of its shard: read the shard with :func:`decode_shard`."""
    parsed = _parse(data)
    version = _version(parsed)
    check_version(version)
    kind = bytes(_one(parsed, "record_kind")).decode("utf-8", "replace") if version >= 3 else EXAMPLE_KIND
    if kind != EXAMPLE_KIND or not _one(parsed, "frames"):
        raise RecordError(
            "the record refers to the clips of a packed shard (record schema 3): read the whole shard with "
            "records.decode_shard (or the loaders of audioscope.models)"
        )
    reader = ShardReader()
    feature = reader.take_parsed(parsed)  # parsed once
    assert feature is not None  # an example record with its media
    return _record(feature, *reader.media(feature))


def decode_shard(serialized: Iterable[bytes], where: str = "") -> Iterator[MixtureRecord]:
    """The examples of one shard's records, in order (any version; packed shards assembled)."""
    reader = ShardReader(where)
    for data in serialized:
        got = reader.read(data)
        if got is not None:
            yield _record(*got)


def first_version(uri: str) -> int | None:
    """The record schema of a shard file's first record (0 when it names none; None for an empty
    file): what a folder's shards were written in. Raises what reading the file raises."""
    from audioscope.schemas.tfrecord import parse_example, read_records

    first = next(iter(read_records(uri)), None)
    if first is None:
        return None
    _kind, values = parse_example(first).get("schema_version", ("int64", [0]))
    return int(values[0]) if values else 0


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
#: (33 kB of frames and 230 kB of audio per example; ``benchmarks/loader.py --source``). Kept as
#: schema 2 measured it so that plans (examples per shard) stay the same: packed shards
#: (schema 3) come out smaller than the shard-size target.
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
