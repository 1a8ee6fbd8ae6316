"""The coincidence model itself: its configuration and its Keras graph.

``{audio float32 [B, 80000], frames uint8 [B, 5, 128, 128, 3]} -> probability [B]``
(the overview and the exported contract: :mod:`audioscope.models.coincidence`).

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

Training-only augmentations (:class:`Augment`, identity when scoring): a
random shift of the mel axis (pitch) and a random left-right flip and
circular shift of the frames; they keep a small corpus from being learnt
by heart ("this background goes with this pitch").

TensorFlow is imported at module level: import this module lazily.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import keras
import tensorflow as tf

from audioscope.geometry import AUDIO_SAMPLES as CLIP_SAMPLES
from audioscope.geometry import CLIP_SECONDS, FRAME_SIZE
from audioscope.models.features import LogMelConfig, make_log_mel_layer

#: the exported output's name
OUTPUT_KEY = "probability"

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
    # A negative from another video takes audio whose sound is on at the same
    # frame instants as the frames' own audio ("on": this many dB above each
    # video's floor; 0 takes any start). Then "something sounds while
    # something glows" is no evidence either way: only which sound goes with
    # which picture is. When the window has no such start, any start is taken
    # (counted in the card's matched_fallbacks). Where the frames' own audio
    # is silent at all five instants, a shifted negative is silent there too
    # (were every negative to sound, silence would mean "aligned"). Alone,
    # shift_onoff_db made silent clips score high; the two together (10 dB
    # each) lifted the demo store's Df AUC at the same precision but lower
    # recall, and the `tiny` AudioScope model then missed its on-screen target
    # on the Dfs they chose, so both stay off by default
    # (docs/experiments/coincidence-model.md, 2026-12-05).
    other_match_db: float = 0.0
    validation_examples: int = 512
    # Which weights are exported: "average" (the mean of the weights at the
    # evaluations, every eval_every steps, of the last average_fraction of the
    # run, batch-norm statistics included), "selected" (the latest evaluation
    # whose validation AUC is within one standard error of the best) or "last".
    export_weights: str = "average"
    average_fraction: float = 1 / 3
    eval_every: int = 250
    # Checkpoints (model, optimizer, step, seconds, the running weight mean)
    # every this many steps, the last keep_checkpoints kept: a killed run
    # started again resumes from the last one.
    checkpoint_every: int = 250
    keep_checkpoints: int = 3
    # Streaming from a clip store (coincidence_data.StreamingSampler): videos
    # are read window_videos at a time (readahead_videos read ahead on
    # threads); an example pairs frames and audio from videos in the window
    # (so a negative from another video comes from the window), each video
    # gives one example per window of its seconds before it leaves, and the
    # examples pass a shuffle buffer of shuffle_buffer. Memory depends on
    # these, not on the store's size.
    window_videos: int = 16
    readahead_videos: int = 4
    shuffle_buffer: int = 64
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
        if self.shift_onoff_db < 0 or self.other_match_db < 0:
            raise ValueError("shift_onoff_db and other_match_db must be >= 0")
        if self.window_videos < 2:
            raise ValueError("window_videos must be >= 2 (a negative takes audio from another video)")
        if self.checkpoint_every < 1 or self.keep_checkpoints < 1 or self.readahead_videos < 1 or self.shuffle_buffer < 1:
            raise ValueError("checkpoint_every, keep_checkpoints, readahead_videos and shuffle_buffer must be >= 1")

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
            checkpoint_every=100,
        )
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- model


def build_model(config: CoincidenceConfig = CoincidenceConfig()) -> keras.Model:
    """The coincidence model: ``{audio, frames} -> probability [B]``.

    The layer named ``logit`` holds the pre-sigmoid score; training uses it
    (see :func:`logit_model`) for a numerically stable loss. Its initial weights
    depend on ``config.seed`` only.
    """
    from audioscope.models.spine import private_default_seeds

    with private_default_seeds(config.seed):
        return _build_model(config)


def _build_model(config: CoincidenceConfig) -> keras.Model:
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

