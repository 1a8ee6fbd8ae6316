"""Small inputs for the AudioScope model tests: a micro configuration and toy examples.

A toy example is a dict in the loader's format (``audioscope.models.data``):
frames show one coloured square, bright while its tone sounds (the
on-screen source, as in the synthetic corpus), and the second mixture is a
band of noise from "another video". Audio is short (``samples``, default
0.25 s) so that a step takes milliseconds; the model is convolutional and
takes any length.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from audioscope.models.configs import AudioScopeConfig, tiny

SR = 16_000
TYPES = ("NOn", "SOff", "LOn", "LOff")


def micro_config(**overrides: Any) -> AudioScopeConfig:
    """The `tiny` model made smaller still: a training step in tens of milliseconds."""
    base = dict(
        basis_filters=16, bottleneck=16, hidden=16, repeats=1, blocks_per_repeat=3,
        mel_bins=16, audio_stem=8, audio_channels=((8, 2),), frame_size=32, video_stem=8,
        video_channels=((8, 2),), embedding_dim=8, attention_dim=8, classifier_hidden=8,
        batch_size=4, learning_rate=3e-3, final_learning_rate_fraction=1.0, train_crop_s=0.0, augment_pitch=0.0,
        augment_gain_db=0.0,
        summary_every=5, checkpoint_every=10, steps=40,
    )  # fmt: skip
    base.update(overrides)
    return tiny().replace(**base)


def toy_example(rng: np.random.Generator, samples: int = 4000, kind: str | None = None) -> dict[str, Any]:
    """One loader-format example (numpy values, strings as bytes)."""
    kind = kind or TYPES[int(rng.integers(len(TYPES)))]
    t = np.arange(samples) / SR
    freq = float(rng.choice([300.0, 700.0, 1500.0]))
    tone = (0.2 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    noise = rng.normal(size=samples)
    spectrum = np.fft.rfft(noise)
    f = np.fft.rfftfreq(samples, 1 / SR)
    spectrum[(f < 3000) | (f > 5000)] = 0
    band = (0.1 * np.fft.irfft(spectrum, n=samples) / max(np.std(np.fft.irfft(spectrum, n=samples)), 1e-9)).astype(np.float32)
    frames = np.full((5, 128, 128, 3), 20, np.uint8)
    y, x = (int(v) for v in rng.integers(10, 90, size=2))
    onscreen = kind in ("NOn", "LOn")
    frames[:, y : y + 24, x : x + 24] = (230, 60, 60) if onscreen else (60, 40, 40)
    single = kind in ("LOn", "LOff") and rng.random() < 0.5
    audio1 = tone if kind != "LOff" else band
    audio2 = np.zeros(samples, np.float32) if single else (band if kind != "LOff" else tone * 0.5)
    return {
        "frames": frames, "audio1": audio1, "audio2": audio2, "mixture": audio1 + audio2,
        "type": kind.encode(), "is_mom": not single, "label1": b"", "clip_id1": b"toy", "clip_id2": b"",
        "video_id1": b"toy", "video_id2": b"", "score1": np.float32(np.nan),
    }  # fmt: skip


def toy_examples(n: int, seed: int = 0, samples: int = 4000) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [toy_example(rng, samples) for _ in range(n)]


def dataset_fn(examples: list[dict[str, Any]]) -> Any:
    """``dataset_fn(seed)`` for :func:`audioscope.models.train.train`: the examples, shuffled, repeated."""
    import tensorflow as tf

    columns = {k: np.stack([e[k] for e in examples]) for k in examples[0]}

    def make(seed: int) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices(columns).shuffle(len(examples), seed=seed).repeat()

    return make


def batches(examples: list[dict[str, Any]], size: int) -> Iterator[dict[str, np.ndarray]]:
    for i in range(0, len(examples), size):
        yield {k: np.stack([e[k] for e in examples[i : i + size]]) for k in examples[0]}
