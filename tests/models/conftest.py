"""Toy audio-visual data for the coincidence model tests.

A video is a dark picture with one square that is bright exactly during
the seconds its tone plays (a tiny stand-in for the synthetic corpus, where
on-screen sources look different while they sound). As in the synthetic
corpus, the visual class fixes the sound class (three colours, three
pitches), so what the model learns carries over to unseen videos; audio
from another video and audio shifted in time both break the per-second
correspondence.
"""

from __future__ import annotations

import random
import threading
from typing import Iterator

import numpy as np
import pytest

SR = 16_000
#: visual class -> (colour, tone Hz)
CLASSES = (((230, 60, 60), 400.0), ((60, 230, 60), 1200.0), ((60, 60, 230), 3000.0))


def toy_video(rng: np.random.Generator, seconds: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(audio float32 [seconds*SR], frames uint8 [seconds,128,128,3], on bool [seconds])``."""
    on = rng.random(seconds) < 0.5
    cls = int(rng.integers(len(CLASSES)))
    color, freq = CLASSES[cls]
    t = np.arange(SR) / SR
    audio = (0.01 * rng.standard_normal(seconds * SR)).astype(np.float32)
    frames = rng.integers(0, 40, size=(seconds, 128, 128, 3), dtype=np.uint8)
    y, x = rng.integers(8, 88, size=2)
    for s in range(seconds):
        if on[s]:
            audio[s * SR : (s + 1) * SR] += (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
        frames[s, y : y + 32, x : x + 32] = color if on[s] else tuple(c // 4 for c in color)
    return np.clip(audio, -1, 1), frames, on


def toy_videos(n: int, seconds: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        audio, frames, _ = toy_video(rng, seconds)
        out[f"toy-{i:03d}"] = (audio, frames)
    return out


@pytest.fixture(scope="module")
def small_videos() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return toy_videos(6, 12, seed=1)


@pytest.fixture
def busy_global_random() -> Iterator[None]:
    """Another thread drawing from Python's global ``random`` all through the test, as a library's
    retry jitter or a server thread left by an earlier test in the same process can."""
    stop = threading.Event()

    def draw() -> None:
        while not stop.wait(0.001):
            random.random()

    thread = threading.Thread(target=draw, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()
