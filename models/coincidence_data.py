"""Examples for the coincidence model: positives and the two kinds of negatives.

A positive is a clip's own audio with its own frames; a negative pairs the
frames with audio from a different video (``OTHER_VIDEO``) or with audio of
the same video shifted by several seconds (``SHIFTED``). Windows start on
whole seconds; no clip is materialised.

Two samplers make them:

- :class:`ExampleSampler` over videos held in memory (a dict of arrays, or
  :func:`load_videos` of a small store): tests, small corpora;
- :class:`StreamingSampler` over a clip store of any size: videos are read
  one after another (the next few on reader threads while the current ones
  are sampled), ``window_videos`` at a time; each gives one example per
  window of its seconds and then leaves the window, so a negative from
  another video comes from the rolling window of videos. Its
  :meth:`StreamingSampler.dataset` feeds training through a bounded
  ``tf.data`` shuffle buffer. Memory depends on the window, not on the
  store's size; local, ``gs://`` and ``s3://`` stores are read through the
  clip store's reader.

TensorFlow is imported at module level: import this module lazily.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import numpy as np
import tensorflow as tf

from audioscope.curation.splits import split_unit
from audioscope.geometry import AUDIO_SAMPLES as CLIP_SAMPLES
from audioscope.geometry import CLIP_SECONDS, FRAME_SIZE, SAMPLE_RATE
from audioscope.models.coincidence_model import CoincidenceConfig

# Example kinds made by the sampler.
POSITIVE = 0
OTHER_VIDEO = 1
SHIFTED = 2
KIND_NAMES = {POSITIVE: "positive", OTHER_VIDEO: "other_video", SHIFTED: "shifted"}


VideoArrays = tuple[np.ndarray, np.ndarray]
"""``(audio float32 [n_samples], frames uint8 [n_seconds, 128, 128, 3])``, one frame per second."""


class VideoStore(Protocol):
    """The part of ``audioscope.clipstore.ClipStore`` that training needs."""

    @property
    def index(self) -> Any: ...

    def video(self, video_id: str) -> VideoArrays: ...


def video_seconds(arrays: VideoArrays) -> int:
    """Whole seconds with both audio and a frame."""
    audio, frames = arrays
    return int(min(len(audio) // SAMPLE_RATE, len(frames)))


def checked_video(audio: Any, frames: Any) -> tuple[VideoArrays, str | None]:
    """``((audio float32, frames), None)`` for a usable video, else ``(..., reason)``
    (bad shapes or dtype, shorter than one clip)."""
    audio = np.asarray(audio, dtype=np.float32)
    frames = np.asarray(frames)
    if audio.ndim != 1 or frames.ndim != 4 or frames.shape[1:] != (FRAME_SIZE, FRAME_SIZE, 3):
        return (audio, frames), f"bad_shape: audio {audio.shape}, frames {frames.shape}"
    if frames.dtype != np.uint8:
        return (audio, frames), f"bad_dtype: frames are {frames.dtype}, expected uint8"
    if video_seconds((audio, frames)) < CLIP_SECONDS:
        return (audio, frames), f"too_short: {video_seconds((audio, frames))} s < {CLIP_SECONDS} s"
    return (audio, frames), None


def video_ids(source: Mapping[str, VideoArrays] | VideoStore) -> list[str]:
    """The ids of the videos of a dict or a clip store (those with clips in its index)."""
    if isinstance(source, Mapping):
        return sorted(source)
    return sorted({str(v) for v in source.index["video_id"]})


def load_videos(
    source: Mapping[str, VideoArrays] | VideoStore,
    *,
    progress: bool = False,
) -> tuple[dict[str, VideoArrays], dict[str, str]]:
    """Per-video arrays from a dict or a clip store, and the videos left out.

    Returns ``(videos, skipped)`` where ``skipped`` maps video_id -> reason
    (too short for one clip, bad array shapes). Nothing is dropped silently.
    """
    ids = video_ids(source)
    get = video_reader(source)
    bar = None
    if progress:
        from audioscope.progress import Progress

        bar = Progress("loading videos", total=len(ids), unit="videos")
    videos: dict[str, VideoArrays] = {}
    skipped: dict[str, str] = {}
    for vid in ids:
        arrays, why = checked_video(*get(vid))
        if why is not None:
            skipped[vid] = why
        else:
            videos[vid] = arrays
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    return videos, skipped


def split_videos(
    video_ids: Sequence[str], validation_fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """Whole videos to train / validation: the ``validation_fraction`` of
    videos with the lowest seeded hash of their id (``curation.splits.split_unit``).

    Ranking by a hash (not a shuffle) keeps the choice stable: adding videos
    moves at most the few at the boundary. With four or more videos at least
    two land on each side (the sampler needs two videos for a negative from
    another video); with two or three, at least one.
    """
    ids = sorted(video_ids, key=lambda vid: split_unit(vid, seed))
    n_val = int(round(len(ids) * validation_fraction))
    if len(ids) >= 2 and validation_fraction > 0:
        least = 2 if len(ids) >= 4 else 1
        n_val = min(max(n_val, least), len(ids) - least)
    return sorted(ids[n_val:]), sorted(ids[:n_val])


@dataclass
class ExampleBatch:
    """Sampled examples plus where each one's audio came from (for checks)."""

    audio: np.ndarray  # float32 [n, 80000]
    frames: np.ndarray  # uint8 [n, 5, 128, 128, 3]
    label: np.ndarray  # float32 [n], 1 = aligned
    kind: np.ndarray  # int8 [n], POSITIVE / OTHER_VIDEO / SHIFTED
    frames_video: list[str]
    frames_start_s: np.ndarray  # int [n]
    audio_video: list[str]
    audio_start_s: np.ndarray  # int [n]


#: Quantile of a video's levels taken as its floor by :func:`sound_on`.
FLOOR_QUANTILE = 0.1


def frame_levels(audio: np.ndarray, n_seconds: int, context_s: float) -> np.ndarray:
    """Per second, the level (dB) of the ``context_s`` seconds of sound centred
    on the frame's instant (0.5 s into the second): what the audio tower hears
    at each frame. float32 ``[n_seconds]``."""
    width = max(16, int(round(context_s * SAMPLE_RATE)))
    starts = np.clip(np.arange(n_seconds) * SAMPLE_RATE + SAMPLE_RATE // 2 - width // 2, 0, None)
    power = np.array([np.mean(np.square(audio[a : a + width], dtype=np.float64)) for a in starts])
    return (10.0 * np.log10(power + 1e-12)).astype(np.float32)


def sound_on(levels: np.ndarray, margin_db: float) -> np.ndarray:
    """Per second, whether something sounds: the level is ``margin_db`` above
    the video's floor (its :data:`FLOOR_QUANTILE` quantile of levels)."""
    floor = np.quantile(levels, FLOOR_QUANTILE) if levels.size else 0.0
    return levels > floor + margin_db


def shifted_start(
    rng: np.random.Generator,
    n_starts: int,
    start: int,
    config: CoincidenceConfig,
    on: np.ndarray | None,
    codes: np.ndarray | None = None,
) -> int | None:
    """A start ``shift_min_s`` .. ``shift_max_s`` away from ``start`` in the same
    video, or None when there is none. Where ``codes`` (:func:`on_codes` with
    ``other_match_db``) says the clip is silent at all five frame instants,
    the start is silent there too; otherwise its sound is on at a different
    set of frame instants (``on``, per second; any shift when None)."""
    c = config
    if codes is not None and not codes[start]:
        keep: Callable[[int], bool] = lambda s: not codes[s]  # noqa: E731
    elif on is not None:
        keep = lambda s: bool((on[s : s + CLIP_SECONDS] != on[start : start + CLIP_SECONDS]).any())  # noqa: E731
    else:
        keep = lambda s: True  # noqa: E731
    cands = [s for s in range(n_starts) if c.shift_min_s <= abs(s - start) <= c.shift_max_s and keep(s)]
    return int(rng.choice(cands)) if cands else None


def on_codes(on: np.ndarray) -> np.ndarray:
    """Per clip start, which of its five frame instants have sound on
    (:func:`sound_on` per second), as a 5-bit code. int64 ``[n_starts]``."""
    n_starts = len(on) - CLIP_SECONDS + 1
    if n_starts < 1:
        return np.zeros(0, np.int64)
    bits = np.stack([np.asarray(on[i : i + n_starts], np.int64) for i in range(CLIP_SECONDS)], axis=1)
    return (bits << np.arange(CLIP_SECONDS)).sum(axis=1)


def matched_start(rng: np.random.Generator, codes: Sequence[np.ndarray], target: int) -> tuple[int, int] | None:
    """``(j, start)``: a start of ``codes[j]`` whose code is ``target``, every
    such start of every video equally likely; None when there is none."""
    hits = [np.flatnonzero(c == target) for c in codes]
    counts = np.array([len(h) for h in hits], np.float64)
    if not counts.sum():
        return None
    j = int(rng.choice(len(hits), p=counts / counts.sum()))
    return j, int(rng.choice(hits[j]))


def video_on(audio: np.ndarray, margin_db: float, context_s: float) -> np.ndarray:
    """:func:`sound_on` at each whole second's frame instant of one video."""
    return sound_on(frame_levels(audio, int(len(audio) // SAMPLE_RATE), context_s), margin_db)


class ExampleSampler:
    """Training pairs sliced from per-video arrays (no clip is materialised).

    Windows start on whole seconds. Deterministic given ``seed``. A shifted
    negative needs a start ``shift_min_s`` .. ``shift_max_s`` away in the same
    video where sound is on at a different set of frame instants than in the
    aligned audio (:func:`sound_on` with ``shift_onoff_db``; any shift when it
    is 0); when there is none (a short video, a sound that never stops), the
    example takes audio from another video instead (counted in ``fallbacks``).
    With ``other_match_db``, audio from another video is drawn among the starts
    whose sound is on at the same frame instants as the frames' own audio
    (any start when there is none, counted in ``match_fallbacks``); and when
    the frames' own audio is silent at all five, a shifted negative is silent
    at all five too: silence is then no evidence either way (were every
    negative to sound, silence would mean "aligned").
    """

    def __init__(self, videos: Mapping[str, VideoArrays], config: CoincidenceConfig, seed: int) -> None:
        if len(videos) < 2:
            raise ValueError("the sampler needs at least 2 videos (negatives take audio from another video)")
        self.videos = dict(videos)
        self.ids = sorted(self.videos)
        self.n_starts = np.array([video_seconds(self.videos[v]) - CLIP_SECONDS + 1 for v in self.ids])
        # Sample videos in proportion to their number of windows: every
        # window is equally likely, as when sampling clips.
        self.weights = self.n_starts / self.n_starts.sum()
        self.config = config
        self.rng = np.random.default_rng(seed)
        self.fallbacks = 0
        self.match_fallbacks = 0
        self.sound_on: list[np.ndarray] | None = None
        if config.shift_onoff_db > 0:
            self.sound_on = [self._on(v, config.shift_onoff_db) for v in self.ids]
        self.codes: list[np.ndarray] | None = None
        if config.other_match_db > 0:
            self.codes = [on_codes(self._on(v, config.other_match_db)) for v in self.ids]

    def _on(self, vid: str, margin_db: float) -> np.ndarray:
        audio = np.asarray(self.videos[vid][0])
        return video_on(audio[: video_seconds(self.videos[vid]) * SAMPLE_RATE], margin_db, self.config.audio_context_s)

    def _shifted_start(self, vi: int, start: int) -> int | None:
        on = self.sound_on[vi] if self.sound_on is not None else None
        codes = self.codes[vi] if self.codes is not None else None
        return shifted_start(self.rng, int(self.n_starts[vi]), start, self.config, on, codes)

    def sample(self, n: int) -> ExampleBatch:
        c = self.config
        audio = np.empty((n, CLIP_SAMPLES), np.float32)
        frames = np.empty((n, CLIP_SECONDS, FRAME_SIZE, FRAME_SIZE, 3), np.uint8)
        label = np.zeros(n, np.float32)
        kind = np.zeros(n, np.int8)
        f_vid: list[str] = []
        a_vid: list[str] = []
        f_start = np.zeros(n, np.int64)
        a_start = np.zeros(n, np.int64)
        for i in range(n):
            vi = int(self.rng.choice(len(self.ids), p=self.weights))
            start = int(self.rng.integers(self.n_starts[vi]))
            r = self.rng.random()
            if r < c.positive_fraction:
                k, avi, astart = POSITIVE, vi, start
            else:
                k = OTHER_VIDEO if self.rng.random() < c.negative_mix else SHIFTED
                avi, astart = vi, None
                if k == SHIFTED:
                    astart = self._shifted_start(vi, start)
                    if astart is None:
                        k = OTHER_VIDEO
                        self.fallbacks += 1
                if k == OTHER_VIDEO:
                    hit = None
                    if self.codes is not None:
                        others = [j for j in range(len(self.ids)) if j != vi]
                        hit = matched_start(self.rng, [self.codes[j] for j in others], int(self.codes[vi][start]))
                        self.match_fallbacks += hit is None
                    if hit is None:
                        avi = int(self.rng.integers(len(self.ids) - 1))
                        avi += avi >= vi
                        astart = int(self.rng.integers(self.n_starts[avi]))
                    else:
                        avi, astart = others[hit[0]], hit[1]
            assert astart is not None
            va, vf = self.videos[self.ids[vi]]
            aa, _ = self.videos[self.ids[avi]]
            frames[i] = vf[start : start + CLIP_SECONDS]
            audio[i] = aa[astart * SAMPLE_RATE : astart * SAMPLE_RATE + CLIP_SAMPLES]
            label[i] = 1.0 if k == POSITIVE else 0.0
            kind[i] = k
            f_vid.append(self.ids[vi])
            a_vid.append(self.ids[avi])
            f_start[i] = start
            a_start[i] = astart
        return ExampleBatch(audio, frames, label, kind, f_vid, f_start, a_vid, a_start)

    def batches(self, batch_size: int) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
        """Endless ``({"audio", "frames"}, label)`` batches."""
        while True:
            b = self.sample(batch_size)
            yield {"audio": b.audio, "frames": b.frames}, b.label

    def dataset(self, batch_size: int) -> tf.data.Dataset:
        """The endless batches as a prefetching ``tf.data.Dataset``."""
        sig = (
            {
                "audio": tf.TensorSpec((batch_size, CLIP_SAMPLES), tf.float32),
                "frames": tf.TensorSpec((batch_size, CLIP_SECONDS, FRAME_SIZE, FRAME_SIZE, 3), tf.uint8),
            },
            tf.TensorSpec((batch_size,), tf.float32),
        )
        return tf.data.Dataset.from_generator(
            lambda: self.batches(batch_size), output_signature=sig
        ).prefetch(2)



# --------------------------------------------------------------------------- streaming


def video_reader(source: Mapping[str, VideoArrays] | VideoStore) -> Callable[[str], VideoArrays]:
    """``read(video_id) -> (audio, frames)`` that reader threads may call at once.

    A clip store is read through one :class:`~audioscope.clipstore.reader.ClipStore`
    per thread (it keeps the last video it decoded); another store-like
    object is read under a lock.
    """
    if isinstance(source, Mapping):
        return lambda vid: source[vid]
    from audioscope.clipstore.reader import ClipStore

    if isinstance(source, ClipStore):
        local = threading.local()

        def read(vid: str) -> VideoArrays:
            store = getattr(local, "store", None)
            if store is None:
                store = local.store = ClipStore(source.root, source.params, source.summary, source.store_id)
            return store.video(vid)

        return read
    lock = threading.Lock()

    def read_locked(vid: str) -> VideoArrays:
        with lock:
            return source.video(vid)

    return read_locked


@dataclass
class _Slot:
    """A video in the rolling window."""

    video_id: str
    audio: np.ndarray
    frames: np.ndarray
    n_starts: int
    on: np.ndarray | None
    codes: np.ndarray | None
    quota: int


@dataclass(frozen=True)
class Example:
    """One example and where its frames and audio came from."""

    audio: np.ndarray  # float32 [80000]
    frames: np.ndarray  # uint8 [5, 128, 128, 3]
    label: float
    kind: int
    frames_video: str
    frames_start_s: int
    audio_video: str
    audio_start_s: int


class StreamingSampler:
    """Examples streamed from per-video media, ``config.window_videos`` videos at a time.

    Videos come in a seeded order, reshuffled every pass over them
    (endlessly); the next ``config.readahead_videos`` are read on threads
    while the window is sampled. The frames of an example come from a
    video of the window chosen in proportion to the examples it has left
    (``passes`` per window of its seconds, at least one); a negative takes
    audio from another video of the window or from the same video shifted
    (as :class:`ExampleSampler`, ``other_match_db`` included). A video whose
    examples are used up leaves the window and the next one enters. Deterministic given ``seed``.
    Unusable videos are left out with a reason in ``skipped``.
    """

    def __init__(
        self,
        read: Callable[[str], VideoArrays],
        video_ids: Sequence[str],
        config: CoincidenceConfig,
        seed: int,
        *,
        passes: float = 1.0,
    ) -> None:
        if len(set(video_ids)) < 2:
            raise ValueError("the sampler needs at least 2 videos (negatives take audio from another video)")
        self.read = read
        self.ids = sorted(set(video_ids))
        self.config = config
        self.seed = seed
        self.passes = passes
        self.skipped: dict[str, str] = {}
        self.fallbacks = 0
        self.match_fallbacks = 0
        self.videos_read = 0
        self.windows_seen = 0  # windows (1 s hop) of the videos that entered

    def _slot(self, vid: str, arrays: VideoArrays) -> _Slot | None:
        (audio, frames), why = checked_video(*arrays)
        if why is not None:
            self.skipped[vid] = why
            return None
        seconds = video_seconds((audio, frames))
        n_starts = seconds - CLIP_SECONDS + 1
        c = self.config
        whole = audio[: seconds * SAMPLE_RATE]
        on = video_on(whole, c.shift_onoff_db, c.audio_context_s) if c.shift_onoff_db > 0 else None
        codes = on_codes(video_on(whole, c.other_match_db, c.audio_context_s)) if c.other_match_db > 0 else None
        self.windows_seen += n_starts
        return _Slot(vid, audio, frames, n_starts, on, codes, max(1, int(round(n_starts * self.passes))))

    def _videos(self, pool: ThreadPoolExecutor) -> Iterator[tuple[str, Any]]:
        """``(video_id, future of its arrays)`` in the seeded order, pass after pass."""
        order_rng = np.random.default_rng([self.seed, 1])
        pending: deque[tuple[str, Any]] = deque()
        ahead = max(1, self.config.readahead_videos)

        def order() -> Iterator[str]:
            while True:
                yield from (self.ids[i] for i in order_rng.permutation(len(self.ids)))

        ids = order()
        while True:
            while len(pending) < ahead:
                vid = next(ids)
                pending.append((vid, pool.submit(self.read, vid)))
            yield pending.popleft()

    def examples(self) -> Iterator[Example]:
        """Endless examples."""
        c = self.config
        rng = np.random.default_rng(self.seed)
        width = min(c.window_videos, len(self.ids))
        with ThreadPoolExecutor(max_workers=max(1, c.readahead_videos), thread_name_prefix="coincidence-read") as pool:
            videos = self._videos(pool)
            window: list[_Slot] = []
            misses = 0  # videos in a row that could not enter

            def admit() -> None:
                nonlocal misses
                while True:
                    vid, future = next(videos)
                    self.videos_read += 1
                    try:
                        slot = self._slot(vid, future.result())
                    except KeyError as e:
                        self.skipped[vid] = f"unreadable: {e}"
                        slot = None
                    if slot is not None:
                        window.append(slot)
                        misses = 0
                        return
                    misses += 1
                    if misses > len(self.ids):
                        raise ValueError(
                            f"none of the {len(self.ids)} videos can be used: "
                            + "; ".join(f"{k}: {v}" for k, v in sorted(self.skipped.items())[:3])
                        )

            while len(window) < width:
                admit()
            while True:
                quota = np.array([s.quota for s in window], np.float64)
                i = int(rng.choice(len(window), p=quota / quota.sum()))
                yield self._example(rng, window, i)
                window[i].quota -= 1
                if window[i].quota <= 0:
                    del window[i]
                    admit()

    def _example(self, rng: np.random.Generator, window: list[_Slot], i: int) -> Example:
        c = self.config
        slot = window[i]
        start = int(rng.integers(slot.n_starts))
        kind, source, astart = POSITIVE, slot, start
        if rng.random() >= c.positive_fraction:
            kind = OTHER_VIDEO if rng.random() < c.negative_mix else SHIFTED
            if kind == SHIFTED:
                shifted = shifted_start(rng, slot.n_starts, start, c, slot.on, slot.codes)
                if shifted is None:
                    kind = OTHER_VIDEO
                    self.fallbacks += 1
                else:
                    astart = shifted
            if kind == OTHER_VIDEO:
                others = [s for s in window if s.video_id != slot.video_id]
                hit = None
                if others and slot.codes is not None:
                    hit = matched_start(rng, [s.codes for s in others], int(slot.codes[start]))  # type: ignore[misc]
                    self.match_fallbacks += hit is None
                if hit is not None:
                    source, astart = others[hit[0]], hit[1]
                elif others:
                    source = others[int(rng.integers(len(others)))]
                    astart = int(rng.integers(source.n_starts))
                else:  # the window holds this video only (a tiny store at a pass boundary)
                    kind, astart = POSITIVE, start
        a0 = astart * SAMPLE_RATE
        return Example(
            audio=source.audio[a0 : a0 + CLIP_SAMPLES],
            frames=slot.frames[start : start + CLIP_SECONDS],
            label=1.0 if kind == POSITIVE else 0.0,
            kind=kind,
            frames_video=slot.video_id,
            frames_start_s=start,
            audio_video=source.video_id,
            audio_start_s=astart,
        )

    def sample(self, n: int) -> ExampleBatch:
        """The first ``n`` examples, as one :class:`ExampleBatch`."""
        got = []
        for ex in self.examples():
            got.append(ex)
            if len(got) == n:
                break
        return ExampleBatch(
            audio=np.stack([e.audio for e in got]).astype(np.float32),
            frames=np.stack([e.frames for e in got]),
            label=np.array([e.label for e in got], np.float32),
            kind=np.array([e.kind for e in got], np.int8),
            frames_video=[e.frames_video for e in got],
            frames_start_s=np.array([e.frames_start_s for e in got], np.int64),
            audio_video=[e.audio_video for e in got],
            audio_start_s=np.array([e.audio_start_s for e in got], np.int64),
        )

    def dataset(self, batch_size: int) -> tf.data.Dataset:
        """Endless ``({"audio", "frames"}, label)`` batches through a bounded shuffle buffer."""
        sig = (
            {
                "audio": tf.TensorSpec((CLIP_SAMPLES,), tf.float32),
                "frames": tf.TensorSpec((CLIP_SECONDS, FRAME_SIZE, FRAME_SIZE, 3), tf.uint8),
            },
            tf.TensorSpec((), tf.float32),
        )

        def generate() -> Iterator[tuple[dict[str, np.ndarray], np.float32]]:
            for ex in self.examples():
                yield {"audio": ex.audio, "frames": ex.frames}, np.float32(ex.label)

        return (
            tf.data.Dataset.from_generator(generate, output_signature=sig)
            .shuffle(self.config.shuffle_buffer, seed=self.seed)
            .batch(batch_size, drop_remainder=True)
            .prefetch(2)
        )
