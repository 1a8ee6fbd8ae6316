"""The audio-visual coincidence model: do this audio and these frames belong
together in time?

Self-supervised: a positive is a clip's own audio with its own frames; a
negative pairs the frames with audio from a different video, or with audio
of the same video shifted by several seconds. Nothing is labelled by hand.
The probability is what the Df filter thresholds (0.8 in the paper): clips
whose picture visibly "moves with" the sound score high, clips whose sound
comes from off screen score low.

Model (small enough for several hundred clips/s on 2 CPU cores):

- audio tower: log-mel inside the graph (``features.log_mel``, 100 frames/s);
  for each second, the ``audio_context_s`` (0.32 s) of sound centred on the
  frame's instant (i + 0.5 s) -> small conv net -> one embedding per second.
  A frame is an instant, so it is compared with the sound at that instant:
  with the whole second, a source that is on for most of it looks the same
  whether or not it is on when the frame was taken;
- image tower: each of the 5 frames, average-pooled 128 -> 64 px -> small
  conv net -> one embedding per frame (frame i is the picture at i + 0.5 s);
- fusion PER SECOND (audio second i vs frame i): ``fusion="temporal"``
  (default) feeds ``a * v`` and ``(a - mean a) * (v - mean v)`` (means over
  the clip's 5 seconds), i.e. what sounds while something shows, and what
  changes in the sound while the picture changes; the five per-second
  logits are pooled (mean / max / min) into one logit -> sigmoid.

Training (``train``) fights memorisation, the failure of a small corpus:
with ~50 videos a model can learn "this background goes with this pitch"
and score every clip of a training video high, on-screen sound or not.
Training-only augmentations (identity when scoring) remove those shortcuts:
a random shift of the mel axis (pitch) and a random left-right flip of the
frames. The exported weights (``export_weights``) are by default the mean
of the weights at the evaluations of the last third of the run: one
training's final weights, or its best evaluation on the 512 held-out
examples, vary a lot from run to run (the best is often an early noise
spike); their average is steadier and better (docs/ARCHITECTURE.md).

Exported signature (any SavedModel with this signature can be plugged in,
e.g. one trained on AudioSet elsewhere)::

    signature "serving_default"
      inputs:
        audio:  float32 [None, 80000]          16 kHz mono, in [-1, 1], 5 s
        frames: uint8   [None, 5, 128, 128, 3] RGB, frame i at clip start + i + 0.5 s
      outputs:
        probability: float32 [None]            P(audio and frames are aligned)

The model directory also holds ``model_card.json`` / ``MODEL_CARD.md`` and
its ``model_id``: SHA-256 over the variables files and a canonical
description of the signature, which the score table records.

TensorFlow is imported at module level: import this module lazily (inside a
command's ``run``), never from a module the CLI imports at startup.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import keras
import numpy as np
import tensorflow as tf

from audioscope.curation.splits import split_unit
from audioscope.metrics import auc_standard_error, roc_auc
from audioscope.models.features import SAMPLE_RATE, LogMelConfig, make_log_mel_layer
from audioscope.models.model_card import ModelCard

log = logging.getLogger(__name__)

from audioscope.geometry import AUDIO_SAMPLES as CLIP_SAMPLES  # noqa: E402
from audioscope.geometry import CLIP_SECONDS, FRAME_SIZE  # noqa: E402
SIGNATURE_NAME = "serving_default"
OUTPUT_KEY = "probability"

#: The contract a plugged-in model must meet: name -> (dtype, shape).
SIGNATURE_INPUTS: dict[str, tuple[tf.DType, tuple[int | None, ...]]] = {
    "audio": (tf.float32, (None, CLIP_SAMPLES)),
    "frames": (tf.uint8, (None, CLIP_SECONDS, FRAME_SIZE, FRAME_SIZE, 3)),
}
SIGNATURE_OUTPUTS: dict[str, tuple[tf.DType, tuple[int | None, ...]]] = {
    OUTPUT_KEY: (tf.float32, (None,)),
}

# Example kinds made by the sampler.
POSITIVE = 0
OTHER_VIDEO = 1
SHIFTED = 2
KIND_NAMES = {POSITIVE: "positive", OTHER_VIDEO: "other_video", SHIFTED: "shifted"}


FUSIONS = ("temporal", "covariation", "concat")
EXPORT_WEIGHTS = ("average", "selected", "last")


@dataclass(frozen=True, kw_only=True)
class CoincidenceConfig:
    """Sizes and training settings. The defaults fit 2 CPU cores and 10 min.

    ``negative_mix`` is the share of negatives that are audio from another
    video; the rest are same-video audio shifted by ``shift_min_s`` ..
    ``shift_max_s`` seconds (whole seconds, either direction).
    """

    embedding_dim: int = 64
    # Seconds of sound around each frame's instant that the audio tower sees
    # (1.0 = the whole second).
    audio_context_s: float = 0.32
    audio_channels: tuple[int, ...] = (16, 32, 64)
    image_channels: tuple[int, ...] = (16, 32, 64)
    image_size: int = 64  # frames are average-pooled to this size inside the model
    fusion_units: int = 64
    # Per-second fusion: "temporal" [a*v, (a - mean a)*(v - mean v)] (means over
    # the clip's 5 seconds; co-occurrence and co-variation), "covariation" only
    # the second term, "concat" [a, v, a*v]. Measured on held-out videos,
    # "temporal" generalised best (docs/ARCHITECTURE.md).
    fusion: str = "temporal"
    # What the exported probability is: "sigmoid" of the alignment logit, or
    # "contrast": softmax of the clip's own alignment against the 4 circular
    # rotations of its audio seconds (only temporal fit counts).
    score: str = "sigmoid"
    dropout: float = 0.3
    learning_rate: float = 2e-3
    batch_size: int = 32
    steps: int = 6000
    positive_fraction: float = 0.5
    negative_mix: float = 0.5
    shift_min_s: int = 2
    shift_max_s: int = 10
    # A shifted negative must switch sound on or off at one of the five frame
    # instants, "on" meaning this many dB above the video's floor (0 accepts
    # any shift). A source that is on all along sounds the same a few seconds
    # later, and such a "negative" teaches the model that a sounding object and
    # its sound do not belong together; when no shift qualifies, the example
    # takes audio from another video.
    shift_onoff_db: float = 0.0
    validation_examples: int = 512
    # Which weights are exported: "average" (the mean of the weights at the
    # evaluations, every eval_every steps, of the last average_fraction of the
    # run, batch-norm statistics included), "selected" (the latest evaluation
    # whose validation AUC is within one standard error of the best) or "last".
    export_weights: str = "average"
    average_fraction: float = 1 / 3
    eval_every: int = 250
    seed: int = 0
    deterministic_ops: bool = True
    # Training-only augmentation (identity when scoring): it keeps the model
    # from memorising which background goes with which pitch in the few
    # videos of a corpus, and makes it learn what moves with the sound.
    augment_gain_db: float = 0.0  # random gain per example, +-dB (off: it slowed learning)
    augment_mel_shift: int = 3  # random shift of the mel axis per example, +-bins
    augment_flip: bool = True  # random left-right flip of the frames per example
    augment_translate: int = 8  # random circular shift of the frames per example, +-pixels
    log_mel: LogMelConfig = field(default_factory=LogMelConfig)

    def __post_init__(self) -> None:
        if FRAME_SIZE % self.image_size:
            raise ValueError(f"image_size must divide {FRAME_SIZE}")
        if not 0.0 < self.positive_fraction < 1.0:
            raise ValueError("positive_fraction must be in (0, 1)")
        if not 0.0 <= self.negative_mix <= 1.0:
            raise ValueError("negative_mix must be in [0, 1]")
        if not 1 <= self.shift_min_s <= self.shift_max_s:
            raise ValueError("need 1 <= shift_min_s <= shift_max_s")
        if self.score not in ("sigmoid", "contrast"):
            raise ValueError(f"score must be 'sigmoid' or 'contrast', got {self.score!r}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if not 0.0 < self.audio_context_s <= 1.0:
            raise ValueError("audio_context_s must be in (0, 1]")
        if self.export_weights not in EXPORT_WEIGHTS:
            raise ValueError(f"export_weights must be one of {EXPORT_WEIGHTS}, got {self.export_weights!r}")
        if not 0.0 < self.average_fraction <= 1.0:
            raise ValueError("average_fraction must be in (0, 1]")
        if self.shift_onoff_db < 0:
            raise ValueError("shift_onoff_db must be >= 0")

    @classmethod
    def tiny(cls, **overrides: Any) -> "CoincidenceConfig":
        """A very small model for tests and smoke runs (seconds, not minutes)."""
        base = dict(
            embedding_dim=16,
            audio_channels=(8, 16),
            image_channels=(8, 16),
            image_size=32,
            fusion_units=16,
            dropout=0.0,
            batch_size=16,
            steps=200,
            validation_examples=128,
            eval_every=100,
        )
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- model


def build_model(config: CoincidenceConfig = CoincidenceConfig()) -> keras.Model:
    """The coincidence model: ``{audio, frames} -> probability [B]``.

    The layer named ``logit`` holds the pre-sigmoid score; training uses it
    (see :func:`logit_model`) for a numerically stable loss.
    """
    layers = keras.layers
    lm = config.log_mel
    fps = lm.frames_per_second
    audio_in = keras.Input(shape=(CLIP_SAMPLES,), dtype="float32", name="audio")
    frames_in = keras.Input(shape=(CLIP_SECONDS, FRAME_SIZE, FRAME_SIZE, 3), dtype="uint8", name="frames")

    # Audio tower: one embedding per second of log-mel.
    audio = audio_in
    if config.augment_gain_db:
        audio = Augment("gain", config.augment_gain_db, config.seed, name="augment_gain")(audio)
    mel = make_log_mel_layer(lm)(audio)  # [B, 500, n_mels]
    if config.augment_mel_shift:
        mel = Augment("mel_shift", config.augment_mel_shift, config.seed + 1, name="augment_mel_shift")(mel)
    mel = layers.Lambda(lambda x: x[:, : CLIP_SECONDS * fps], name="whole_seconds")(mel)
    x = layers.Reshape((CLIP_SECONDS, fps, lm.n_mels, 1), name="per_second_mel")(mel)
    start, width = audio_window(config)
    if width < fps:
        # A frame is an instant (second i + 0.5 s): compare it with the sound
        # around that instant, not with the whole second.
        x = layers.Lambda(lambda t: t[:, :, start : start + width], name="around_frame")(x)
    x = layers.Rescaling(0.25, offset=0.5, name="mel_scale")(x)
    audio_net = _conv_tower(
        "audio", (width, lm.n_mels, 1), config.audio_channels, config.embedding_dim
    )
    a = layers.TimeDistributed(audio_net, name="audio_per_second")(x)  # [B, 5, D]

    # Image tower: one embedding per frame, on a downsampled picture.
    f = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="frame_scale")(
        layers.Lambda(lambda t: tf.cast(t, tf.float32), name="frames_float")(frames_in)
    )
    if config.augment_flip:
        f = Augment("flip", 1, config.seed + 2, name="augment_flip")(f)
    if config.augment_translate:
        f = Augment("translate", config.augment_translate, config.seed + 3, name="augment_translate")(f)
    pool = FRAME_SIZE // config.image_size
    image_net = _conv_tower("image", (FRAME_SIZE, FRAME_SIZE, 3), config.image_channels,
                            config.embedding_dim, pre_pool=pool)
    v = layers.TimeDistributed(image_net, name="image_per_frame")(f)  # [B, 5, D]

    head = _fusion_head(config)
    logit = head([a, v])  # [B, 1]: audio aligned with these frames?
    logit = layers.Identity(name="logit")(logit)
    if config.score == "contrast":
        # The clip's own alignment against the 4 circular rotations of its
        # audio seconds (the same sounds, other times): a per-video bias (a
        # memorised background/pitch pair, sound that fits any moment)
        # cancels, what is left is whether the sound fits these moments.
        rotated = [
            head([layers.Lambda(lambda t, k=k: tf.roll(t, k, axis=1), name=f"audio_rotated_{k}")(a), v])
            for k in range(1, CLIP_SECONDS)
        ]
        logits = layers.Concatenate(name="alignment_logits")([logit, *rotated])  # [B, 5]
        prob = layers.Lambda(lambda t: tf.nn.softmax(t, axis=-1)[:, :1], name="softmax_own")(logits)
    else:
        prob = layers.Activation("sigmoid", name="sigmoid")(logit)
    prob = layers.Reshape((), name=OUTPUT_KEY)(prob)
    return keras.Model({"audio": audio_in, "frames": frames_in}, prob, name="coincidence")


def _fusion_head(config: CoincidenceConfig) -> keras.Model:
    """``[a, v]`` (each ``[B, 5, D]``) -> alignment logit ``[B, 1]``: per-second fusion, pooled."""
    layers = keras.layers
    d = config.embedding_dim
    a = keras.Input(shape=(CLIP_SECONDS, d), name="head_audio")
    v = keras.Input(shape=(CLIP_SECONDS, d), name="head_frames")
    # Fusion per second: compare audio second i with frame i.
    if config.fusion == "covariation":
        centre = layers.Lambda(lambda t: t - tf.reduce_mean(t, axis=1, keepdims=True), name="centre")
        h = layers.Multiply(name="ac_times_vc")([centre(a), centre(v)])
    elif config.fusion == "temporal":
        centre = layers.Lambda(lambda t: t - tf.reduce_mean(t, axis=1, keepdims=True), name="centre")
        h = layers.Concatenate(name="pair")([
            layers.Multiply(name="a_times_v")([a, v]),
            layers.Multiply(name="ac_times_vc")([centre(a), centre(v)]),
        ])
    else:
        h = layers.Concatenate(name="pair")([a, v, layers.Multiply(name="a_times_v")([a, v])])
    h = layers.Dense(config.fusion_units, activation="relu", name="fusion_hidden")(h)
    if config.dropout:
        h = layers.Dropout(config.dropout, name="fusion_dropout")(h)
    per_second = layers.Dense(1, name="per_second_logit")(h)  # [B, 5, 1]
    per_second = layers.Reshape((CLIP_SECONDS,), name="per_second")(per_second)
    pooled = layers.Lambda(
        lambda t: tf.stack(
            [tf.reduce_mean(t, -1), tf.reduce_max(t, -1), tf.reduce_min(t, -1)], axis=-1
        ),
        name="pool_seconds",
    )(per_second)
    return keras.Model([a, v], layers.Dense(1, name="pooled_logit")(pooled), name="fusion_head")


class Augment(keras.layers.Layer):
    """Training-only augmentation; the identity at inference (and in the export).

    ``gain``: audio ``[B, n]`` times a random gain of +-``amount`` dB;
    ``mel_shift``: log-mel ``[B, T, M]`` shifted along M by a random whole
    number of bins in +-``amount`` (edges repeated);
    ``flip``: frames ``[B, T, H, W, C]`` mirrored left-right, all frames of
    an example alike; ``translate``: frames shifted circularly by a random
    whole number of pixels in +-``amount`` along each axis, all frames alike.
    """

    KINDS = ("gain", "mel_shift", "flip", "translate")

    def __init__(self, kind: str, amount: float, seed: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if kind not in self.KINDS:
            raise ValueError(f"unknown augmentation {kind!r}")
        self.kind = kind
        self.amount = amount
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        if not training:
            return x
        batch = tf.shape(x)[0]
        if self.kind == "gain":
            db = keras.random.uniform((batch, 1), -self.amount, self.amount, seed=self.seed_generator)
            return x * tf.pow(10.0, db / 20.0)
        if self.kind == "mel_shift":
            n = x.shape[-1]
            k = tf.cast(tf.round(keras.random.uniform(
                (batch, 1), -self.amount - 0.49, self.amount + 0.49, seed=self.seed_generator)), tf.int32)
            idx = tf.clip_by_value(tf.range(n)[None, :] - k, 0, n - 1)  # [B, M]
            return tf.gather(x, idx, axis=2, batch_dims=1)
        if self.kind == "translate":
            for axis in (2, 3):
                n = x.shape[axis]
                k = tf.cast(tf.round(keras.random.uniform(
                    (batch, 1), -self.amount - 0.49, self.amount + 0.49, seed=self.seed_generator)), tf.int32)
                idx = tf.math.floormod(tf.range(n)[None, :] - k, n)
                x = tf.gather(x, idx, axis=axis, batch_dims=1)
            return x
        flip = keras.random.uniform((batch, 1, 1, 1, 1), seed=self.seed_generator) < 0.5
        return tf.where(flip, tf.reverse(x, axis=[3]), x)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "kind": self.kind, "amount": self.amount, "seed": self.seed}


def audio_window(config: CoincidenceConfig) -> tuple[int, int]:
    """``(first, count)`` of the log-mel frames of each second that the audio
    tower sees: ``config.audio_context_s`` seconds centred on the frame's
    instant (0.5 s into the second). Log-mel frame j covers samples
    ``[j * hop, j * hop + window)``, so its centre is at ``j * hop + window / 2``.
    """
    lm = config.log_mel
    fps = lm.frames_per_second
    width = min(fps, max(1, int(round(config.audio_context_s * fps))))
    centre = (0.5 * lm.sample_rate - lm.window_samples / 2) / lm.hop_samples  # frame centred on 0.5 s
    first = int(round(centre - (width - 1) / 2))
    return max(0, min(first, fps - width)), width


def logit_model(model: keras.Model) -> keras.Model:
    """A view of ``model`` (shared weights) that outputs the logit ``[B]``."""
    logit = keras.layers.Reshape((), name="logit_flat")(model.get_layer("logit").output)
    return keras.Model(model.inputs, logit, name="coincidence_logit")


def _conv_tower(
    name: str,
    input_shape: tuple[int, int, int],
    channels: Sequence[int],
    embedding_dim: int,
    pre_pool: int = 1,
) -> keras.Model:
    """Strided 3x3 convs with batch norm, then mean+max pooling -> Dense."""
    layers = keras.layers
    inp = keras.Input(shape=input_shape, name=f"{name}_in")
    x = inp
    if pre_pool > 1:
        x = layers.AveragePooling2D(pre_pool, name=f"{name}_downsample")(x)
    for i, c in enumerate(channels):
        x = layers.Conv2D(c, 3, strides=2, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{i}")(x)
        x = layers.ReLU(name=f"{name}_relu{i}")(x)
    x = layers.Concatenate(name=f"{name}_pool")(
        [layers.GlobalAveragePooling2D()(x), layers.GlobalMaxPooling2D()(x)]
    )
    x = layers.Dense(embedding_dim, activation="relu", name=f"{name}_embedding")(x)
    return keras.Model(inp, x, name=f"{name}_tower")


# --------------------------------------------------------------------------- data


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


def load_videos(
    source: Mapping[str, VideoArrays] | VideoStore,
    *,
    progress: bool = False,
) -> tuple[dict[str, VideoArrays], dict[str, str]]:
    """Per-video arrays from a dict or a clip store, and the videos left out.

    Returns ``(videos, skipped)`` where ``skipped`` maps video_id -> reason
    (too short for one clip, bad array shapes). Nothing is dropped silently.
    """
    if isinstance(source, Mapping):
        ids = sorted(source)
        get: Callable[[str], VideoArrays] = lambda vid: source[vid]  # noqa: E731
    else:
        ids = sorted({str(v) for v in source.index["video_id"]})
        get = source.video
    bar = None
    if progress:
        from audioscope.progress import Progress

        bar = Progress("loading videos", total=len(ids), unit="videos")
    videos: dict[str, VideoArrays] = {}
    skipped: dict[str, str] = {}
    for vid in ids:
        audio, frames = get(vid)
        audio = np.asarray(audio, dtype=np.float32)
        frames = np.asarray(frames)
        if audio.ndim != 1 or frames.ndim != 4 or frames.shape[1:] != (FRAME_SIZE, FRAME_SIZE, 3):
            skipped[vid] = f"bad_shape: audio {audio.shape}, frames {frames.shape}"
        elif frames.dtype != np.uint8:
            skipped[vid] = f"bad_dtype: frames are {frames.dtype}, expected uint8"
        elif video_seconds((audio, frames)) < CLIP_SECONDS:
            skipped[vid] = f"too_short: {video_seconds((audio, frames))} s < {CLIP_SECONDS} s"
        else:
            videos[vid] = (audio, frames)
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


class ExampleSampler:
    """Training pairs sliced from per-video arrays (no clip is materialised).

    Windows start on whole seconds. Deterministic given ``seed``. A shifted
    negative needs a start ``shift_min_s`` .. ``shift_max_s`` away in the same
    video where sound is on at a different set of frame instants than in the
    aligned audio (:func:`sound_on` with ``shift_onoff_db``; any shift when it
    is 0); when there is none (a short video, a sound that never stops), the
    example takes audio from another video instead (counted in ``fallbacks``).
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
        self.sound_on: list[np.ndarray] | None = None
        if config.shift_onoff_db > 0:
            self.sound_on = [
                sound_on(
                    frame_levels(np.asarray(self.videos[v][0]), video_seconds(self.videos[v]), config.audio_context_s),
                    config.shift_onoff_db,
                )
                for v in self.ids
            ]

    def _differs(self, vi: int, start: int, shifted: int) -> bool:
        if self.sound_on is None:
            return True
        on = self.sound_on[vi]
        return bool((on[shifted : shifted + CLIP_SECONDS] != on[start : start + CLIP_SECONDS]).any())

    def _shifted_start(self, vi: int, start: int) -> int | None:
        c = self.config
        cands = [
            s for s in range(int(self.n_starts[vi]))
            if c.shift_min_s <= abs(s - start) <= c.shift_max_s and self._differs(vi, start, s)
        ]
        return int(self.rng.choice(cands)) if cands else None

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
                    avi = int(self.rng.integers(len(self.ids) - 1))
                    avi += avi >= vi
                    astart = int(self.rng.integers(self.n_starts[avi]))
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


# --------------------------------------------------------------------------- metrics


def threshold_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.8) -> dict[str, float]:
    """ROC AUC plus precision/recall of ``score >= threshold`` for a binary question."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    kept = scores >= threshold
    n_kept = int(kept.sum())
    return {
        "n": int(len(labels)),
        "base_rate": float(labels.mean()) if len(labels) else float("nan"),
        "roc_auc": roc_auc(labels, scores),
        "threshold": float(threshold),
        "n_kept": n_kept,
        "precision": float(labels[kept].mean()) if n_kept else float("nan"),
        "recall": float(kept[labels].mean()) if labels.any() else float("nan"),
    }


def self_supervised_metrics(batch: ExampleBatch, probs: np.ndarray) -> dict[str, float]:
    """AUC of positives vs all negatives, and vs each negative kind."""
    out = {"auc": roc_auc(batch.label, probs)}
    for k in (OTHER_VIDEO, SHIFTED):
        m = (batch.kind == POSITIVE) | (batch.kind == k)
        out[f"auc_vs_{KIND_NAMES[k]}"] = roc_auc(batch.label[m], probs[m])
    out["mean_p_positive"] = float(probs[batch.kind == POSITIVE].mean())
    return out


# --------------------------------------------------------------------------- export / load


def signature_description() -> dict[str, Any]:
    """A canonical, JSON-able description of the exported signature."""
    def d(spec: Mapping[str, tuple[tf.DType, tuple[int | None, ...]]]) -> dict[str, Any]:
        return {k: {"dtype": t.name, "shape": list(s)} for k, (t, s) in sorted(spec.items())}

    return {"name": SIGNATURE_NAME, "inputs": d(SIGNATURE_INPUTS), "outputs": d(SIGNATURE_OUTPUTS)}


def model_hash(path: str | Path) -> str:
    """Stable model id: SHA-256 over the variables files and the signature.

    ``saved_model.pb`` is left out on purpose: it embeds graph details that
    change with the TensorFlow version while the model (weights + contract)
    stays the same.
    """
    path = Path(path)
    h = hashlib.sha256()
    h.update(json.dumps(signature_description(), sort_keys=True).encode())
    var_dir = path / "variables"
    files = sorted(p for p in var_dir.rglob("*") if p.is_file()) if var_dir.exists() else []
    if not files:
        raise ValueError(f"{path} has no variables/ files; is it a SavedModel directory?")
    for p in files:
        h.update(p.relative_to(path).as_posix().encode() + b"\0")
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return "sha256:" + h.hexdigest()


class _Exportable(tf.Module):
    def __init__(self, model: keras.Model) -> None:
        super().__init__()
        self.model = model

    @tf.function(
        autograph=False,
        input_signature=[
            tf.TensorSpec(SIGNATURE_INPUTS["audio"][1], tf.float32, name="audio"),
            tf.TensorSpec(SIGNATURE_INPUTS["frames"][1], tf.uint8, name="frames"),
        ]
    )
    def serve(self, audio: tf.Tensor, frames: tf.Tensor) -> dict[str, tf.Tensor]:
        prob = self.model({"audio": audio, "frames": frames}, training=False)
        return {OUTPUT_KEY: tf.reshape(tf.cast(prob, tf.float32), [-1])}


def export_model(model: keras.Model, out_dir: str | Path, card: ModelCard | None = None) -> str:
    """Export ``model`` as a SavedModel at ``out_dir`` atomically; return its model id.

    The model is written to a temporary sibling directory, the card (with
    the model id filled in) added, and the directory renamed into place. An
    existing ``out_dir`` is never overwritten.
    """
    out = Path(out_dir)
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose a new output directory or delete it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.incomplete-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    module = _Exportable(model)
    tf.saved_model.save(module, str(tmp), signatures={SIGNATURE_NAME: module.serve})
    model_id = model_hash(tmp)
    if card is not None:
        card.model_id = model_id
        card.write(tmp)
    os.replace(tmp, out)
    return model_id


class SignatureError(ValueError):
    """A SavedModel does not have the coincidence signature."""


def check_signature(fn: Any) -> list[str]:
    """Problems with a concrete signature function (empty list = fine)."""
    problems = []
    _, kwargs = fn.structured_input_signature
    for name, (dtype, shape) in SIGNATURE_INPUTS.items():
        spec = kwargs.get(name)
        if spec is None:
            problems.append(f"missing input {name!r} ({dtype.name} {list(shape)})")
            continue
        if spec.dtype != dtype:
            problems.append(f"input {name!r} is {spec.dtype.name}, expected {dtype.name}")
        if not tf.TensorShape(shape).is_compatible_with(spec.shape):
            problems.append(f"input {name!r} has shape {spec.shape}, expected {list(shape)}")
    extra = sorted(set(kwargs) - set(SIGNATURE_INPUTS))
    if extra:
        problems.append(f"unexpected inputs {extra} (the scorer only feeds audio and frames)")
    outputs = fn.structured_outputs
    if not isinstance(outputs, Mapping) or OUTPUT_KEY not in outputs:
        got = sorted(outputs) if isinstance(outputs, Mapping) else type(outputs).__name__
        problems.append(f"missing output {OUTPUT_KEY!r} (outputs: {got})")
    else:
        spec = outputs[OUTPUT_KEY]
        if spec.dtype != tf.float32:
            problems.append(f"output {OUTPUT_KEY!r} is {spec.dtype.name}, expected float32")
        if spec.shape.rank is not None and spec.shape.rank != 1:
            problems.append(f"output {OUTPUT_KEY!r} has shape {spec.shape}, expected [None]")
    return problems


class CoincidencePredictor:
    """``predictor(audio, frames) -> float32 probabilities [n]``, batched.

    Wraps any SavedModel with the coincidence signature. ``model_id`` is
    what the score table records.
    """

    def __init__(self, path: str | Path, fn: Any, batch_size: int) -> None:
        self.path = str(path)
        self._fn = fn
        self.batch_size = batch_size
        self.model_id = model_hash(path)

    def __call__(self, audio: np.ndarray, frames: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio, dtype=np.float32)
        frames = np.asarray(frames)
        if audio.ndim == 1:
            audio, frames = audio[None], frames[None]
        if frames.dtype != np.uint8:
            raise TypeError(f"frames must be uint8, got {frames.dtype}")
        if audio.shape[1:] != (CLIP_SAMPLES,) or frames.shape[1:] != (CLIP_SECONDS, FRAME_SIZE, FRAME_SIZE, 3):
            raise ValueError(
                f"expected audio [n, {CLIP_SAMPLES}] and frames [n, {CLIP_SECONDS}, {FRAME_SIZE}, "
                f"{FRAME_SIZE}, 3]; got {audio.shape} and {frames.shape}"
            )
        if len(audio) != len(frames):
            raise ValueError(f"{len(audio)} audio rows but {len(frames)} frame rows")
        out = np.empty(len(audio), np.float32)
        for i in range(0, len(audio), self.batch_size):
            res = self._fn(
                audio=tf.constant(audio[i : i + self.batch_size]),
                frames=tf.constant(frames[i : i + self.batch_size]),
            )
            out[i : i + self.batch_size] = np.asarray(res[OUTPUT_KEY]).reshape(-1)
        return out


def load_model(path: str | Path, *, batch_size: int = 64) -> CoincidencePredictor:
    """Load ANY SavedModel with the coincidence signature for batched scoring.

    Raises :class:`SignatureError` with every mismatch listed when the
    model does not meet the contract in this module's docstring.
    """
    path = Path(path)
    if not (path / "saved_model.pb").exists():
        raise SignatureError(
            f"{path} is not a SavedModel directory (no saved_model.pb); "
            "pass the directory written by `train` or by tf.saved_model.save"
        )
    loaded = tf.saved_model.load(str(path))
    sigs = getattr(loaded, "signatures", {})
    if SIGNATURE_NAME not in sigs:
        raise SignatureError(
            f"{path} has no {SIGNATURE_NAME!r} signature (it has {sorted(sigs)}); "
            "export it with signatures={'serving_default': fn} where fn takes "
            "audio float32[None,80000] and frames uint8[None,5,128,128,3] and returns "
            "{'probability': float32[None]}"
        )
    fn = sigs[SIGNATURE_NAME]
    problems = check_signature(fn)
    if problems:
        raise SignatureError(
            f"{path}: the {SIGNATURE_NAME!r} signature does not match the coincidence contract: "
            + "; ".join(problems)
            + ". Expected inputs audio float32[None,80000], frames uint8[None,5,128,128,3] "
            "and output {'probability': float32[None]}."
        )
    predictor = CoincidencePredictor(path, fn, batch_size)
    predictor._loaded = loaded  # keep the trackable objects alive  # type: ignore[attr-defined]
    return predictor


# --------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    model_dir: str
    model_id: str
    steps: int
    seconds: float
    stopped_by: str  # "steps" or "time_budget"
    validation: dict[str, float]
    history: list[dict[str, float]]
    train_videos: int
    validation_videos: int
    skipped: dict[str, str]


def learning_rate_at(
    config: CoincidenceConfig, step: int, elapsed_s: float, time_budget_s: float | None, floor: float = 0.05
) -> float:
    """Cosine decay from ``config.learning_rate`` to ``floor`` times it, over the
    run's progress: the larger of the share of steps and the share of the
    time budget used."""
    progress = step / config.steps
    if time_budget_s:
        progress = max(progress, elapsed_s / time_budget_s)
    progress = min(max(progress, 0.0), 1.0)
    return config.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def _predictor(model: keras.Model, batch: int = 64) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Batched inference with one traced graph (eager Keras calls are slow)."""
    fn = tf.function(lambda a, f: model({"audio": a, "frames": f}, training=False), reduce_retracing=True)

    def predict(audio: np.ndarray, frames: np.ndarray) -> np.ndarray:
        out = [
            np.asarray(fn(tf.constant(audio[i : i + batch]), tf.constant(frames[i : i + batch]))).reshape(-1)
            for i in range(0, len(audio), batch)
        ]
        return np.concatenate(out).astype(np.float32)

    return predict


def averaged_from(steps: Sequence[int], fraction: float) -> int:
    """Index of the first evaluation (at ``steps``, ascending) inside the last
    ``fraction`` of the run (which ends at ``steps[-1]``); the last one at least."""
    start = steps[-1] * (1.0 - fraction)
    inside = [i for i, s in enumerate(steps) if s >= start]
    return inside[0] if inside else len(steps) - 1


def average_weights(snapshots: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    """Element-wise mean of several ``model.get_weights()`` lists."""
    if not snapshots:
        raise ValueError("no weights to average")
    return [np.mean([w[i] for w in snapshots], axis=0).astype(snapshots[0][i].dtype) for i in range(len(snapshots[0]))]


def choose_evaluation(history: Sequence[Mapping[str, float]], n_pos: int, n_neg: int) -> int:
    """Index of the evaluation whose weights to export: the latest one whose
    validation ``auc`` is within one standard error (Hanley & McNeil) of the
    best. The held-out examples are few (512 by default, SE ~0.02), so the
    best alone is often a spike early in the run; the later weights are as
    good on that evidence and better annealed. Evaluations with a NaN AUC
    are never chosen unless all are NaN (then the last)."""
    aucs = np.array([m["auc"] for m in history], dtype=np.float64)
    if not np.isfinite(aucs).any():
        return len(history) - 1
    best = float(np.nanmax(aucs))
    bar = best - auc_standard_error(best, n_pos, n_neg)
    ok = np.flatnonzero(np.isfinite(aucs) & (aucs >= bar))
    return int(ok[-1]) if ok.size else int(np.nanargmax(aucs))


def train(
    videos_or_store: Mapping[str, VideoArrays] | VideoStore,
    out_dir: str | Path,
    config: CoincidenceConfig = CoincidenceConfig(),
    *,
    validation_fraction: float = 0.2,
    time_budget_s: float | None = None,
    progress: bool = True,
    data_description: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train the coincidence model self-supervised and export it to ``out_dir``.

    Whole videos are held out for validation; validation AUC (positives vs
    negatives of both kinds) is measured every ``config.eval_every`` steps
    and at the end. Training stops after ``config.steps`` steps or when
    ``time_budget_s`` (training loop only, excluding loading and export)
    runs out. ``data_description`` (e.g. the store URI) goes into the card.
    """
    from audioscope.progress import Progress, print_summary

    if Path(out_dir).exists():
        raise FileExistsError(f"{out_dir} already exists; choose a new output directory or delete it")
    keras.utils.set_random_seed(config.seed)
    if config.deterministic_ops:
        tf.config.experimental.enable_op_determinism()

    videos, skipped = load_videos(videos_or_store, progress=progress)
    for vid, why in skipped.items():
        log.warning("video %s left out of training: %s", vid, why)
    train_ids, val_ids = split_videos(list(videos), validation_fraction, config.seed)
    if len(train_ids) < 2 or len(val_ids) < 2:
        raise ValueError(
            f"need at least 2 training and 2 validation videos with >= {CLIP_SECONDS} s; "
            f"got {len(train_ids)} and {len(val_ids)} (of {len(videos)} usable, {len(skipped)} skipped)"
        )
    train_sampler = ExampleSampler({v: videos[v] for v in train_ids}, config, config.seed)
    val_batch = ExampleSampler({v: videos[v] for v in val_ids}, config, config.seed + 1).sample(
        config.validation_examples
    )

    model = build_model(config)
    train_view = logit_model(model)
    # Cosine decay over the run, where the run ends at config.steps or at the
    # time budget, whichever comes first: a budgeted run anneals fully too
    # (a schedule over config.steps alone would stop a budgeted run midway,
    # with the learning rate still high and the weights still noisy).
    optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate)
    loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)

    @tf.function(autograph=False)
    def step(inputs: dict[str, tf.Tensor], labels: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            logits = train_view(inputs, training=True)
            loss = loss_fn(labels, logits)
        grads = tape.gradient(loss, train_view.trainable_variables)
        optimizer.apply_gradients(zip(grads, train_view.trainable_variables))
        return loss

    history: list[dict[str, float]] = []
    # Validation measures the pairwise alignment logit (what training optimises).
    predict = _predictor(keras.Model(model.inputs, keras.layers.Activation("sigmoid")(train_view.output)))

    def evaluate(at_step: int, loss: float) -> dict[str, float]:
        probs = predict(val_batch.audio, val_batch.frames)
        m = {"step": float(at_step), "train_loss": loss, **self_supervised_metrics(val_batch, probs)}
        history.append(m)
        if config.export_weights != "last":
            snapshots.append((m, model.get_weights()))
        if progress:
            print(
                f"step {at_step}: loss {loss:.4f}, validation AUC {m['auc']:.4f} "
                f"(vs other video {m['auc_vs_other_video']:.4f}, vs shifted {m['auc_vs_shifted']:.4f})",
                file=sys.stderr,
            )
        return m

    # Weights at each evaluation, for the export (config.export_weights): by
    # default their mean over the last third of the run, not the last weights.
    snapshots: list[tuple[dict[str, float], list[np.ndarray]]] = []

    if progress:
        limit = f" or {time_budget_s:.0f} s, whichever comes first" if time_budget_s is not None else ""
        print(
            f"training on {len(train_ids)} videos ({len(val_ids)} held out): at most {config.steps} steps{limit}; "
            f"validation every {config.eval_every} steps",
            file=sys.stderr,
        )
    bar = Progress("training", total=config.steps, unit="steps") if progress else None
    t0 = time.monotonic()
    stopped_by = "steps"
    done = 0
    losses: list[float] = []
    for inputs, labels in train_sampler.dataset(config.batch_size):
        if done >= config.steps:
            break
        elapsed = time.monotonic() - t0
        if time_budget_s is not None and elapsed >= time_budget_s:
            stopped_by = "time_budget"
            break
        optimizer.learning_rate.assign(learning_rate_at(config, done, elapsed, time_budget_s))
        losses.append(float(step(inputs, labels)))
        done += 1
        if bar:
            bar.update(1)
        if config.eval_every and done % config.eval_every == 0 and done < config.steps:
            evaluate(done, float(np.mean(losses[-config.eval_every :])))
    if bar:
        bar.close()
    seconds = time.monotonic() - t0
    last = evaluate(done, float(np.mean(losses[-max(config.eval_every, 1) :])) if losses else float("nan"))
    final = last
    if config.export_weights == "selected" and snapshots:
        n_pos = int((val_batch.label > 0.5).sum())
        chosen = choose_evaluation([m for m, _ in snapshots], n_pos, len(val_batch.label) - n_pos)
        final = snapshots[chosen][0]
        if final is not last:
            model.set_weights(snapshots[chosen][1])
    elif config.export_weights == "average" and len(snapshots) > 1:
        steps_seen = [int(m["step"]) for m, _ in snapshots]
        first = averaged_from(steps_seen, config.average_fraction)
        model.set_weights(average_weights([w for _, w in snapshots[first:]]))
        probs = predict(val_batch.audio, val_batch.frames)
        final = {
            "step": float(done), "train_loss": last["train_loss"], **self_supervised_metrics(val_batch, probs),
            "averaged_from_step": float(steps_seen[first]), "averaged_evaluations": float(len(snapshots) - first),
        }
        if progress:
            print(
                f"exported: the mean of the weights of steps {steps_seen[first]}-{done} "
                f"({len(snapshots) - first} evaluations), validation AUC {final['auc']:.4f}",
                file=sys.stderr,
            )
    snapshots.clear()

    n_clips = int(sum(int(n) for n in train_sampler.n_starts))
    card = ModelCard(
        model_id="",
        signature=signature_description(),
        training_data={
            **dict(data_description or {}),
            "source": type(videos_or_store).__name__,
            "videos_usable": len(videos),
            "videos_skipped": len(skipped),
            "train_videos": len(train_ids),
            "validation_videos": len(val_ids),
            "train_windows (1 s hop)": n_clips,
            "validation_fraction": validation_fraction,
        },
        training={
            "steps": done,
            "batch_size": config.batch_size,
            "examples_seen": done * config.batch_size,
            "seconds": round(seconds, 1),
            "stopped_by": stopped_by,
            "exported_step": int(final["step"]),
            "exported_weights": {
                "average": f"mean of the weights at the evaluations from step {int(final.get('averaged_from_step', done))}",
                "selected": "latest evaluation within one standard error of the best validation AUC",
                "last": "last step",
            }[config.export_weights],
            "last_validation_auc": last["auc"],
            "seed": config.seed,
            "shifted_fallbacks": train_sampler.fallbacks,
            "validation_history": [
                {"step": int(m["step"]), "train_loss": round(m["train_loss"], 4), "auc": round(m["auc"], 4)}
                for m in history
            ],
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
        config=config.to_dict(),
        validation={k: v for k, v in final.items() if k != "step"},
        notes=[
            "Positives: a clip's own audio and frames. Negatives: audio from a different video "
            f"({config.negative_mix:.0%}) or from the same video shifted by "
            f"{config.shift_min_s}-{config.shift_max_s} s"
            + (
                f" where sound switches on or off ({config.shift_onoff_db:g} dB over the floor) "
                "at some frame instant."
                if config.shift_onoff_db else "."
            ),
            "Validation AUC is for the self-supervised task on held-out videos, "
            "not for on-screen-sound labels.",
        ],
    )
    model_id = export_model(model, out_dir, card)
    result = TrainResult(
        model_dir=str(out_dir),
        model_id=model_id,
        steps=done,
        seconds=seconds,
        stopped_by=stopped_by,
        validation=final,
        history=history,
        train_videos=len(train_ids),
        validation_videos=len(val_ids),
        skipped=skipped,
    )
    if progress:
        print_summary(
            "coincidence model trained",
            {
                "model": str(out_dir),
                "model id": model_id,
                "steps": f"{done} ({stopped_by}), {seconds:.0f} s; " + (
                    f"mean of the weights of steps {int(final['averaged_from_step'])}-{done}"
                    if "averaged_from_step" in final else f"weights of step {int(final['step'])}"
                ),
                "videos": f"{len(train_ids)} train, {len(val_ids)} validation, {len(skipped)} skipped",
                "validation AUC": f"{final['auc']:.4f}",
                "  vs other video": f"{final['auc_vs_other_video']:.4f}",
                "  vs shifted": f"{final['auc_vs_shifted']:.4f}",
            },
            stream=sys.stderr,
        )
    return result
