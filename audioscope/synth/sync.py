"""A flash-and-click video for checking audio/video alignment end to end.

:func:`make_sync_video` writes a video that is black everywhere, except that
for each event time ``t``:

* **picture**: the one frame whose display interval ``[n / fps, (n + 1) / fps)``
  covers ``t`` -- frame ``n = floor(t * fps)`` -- is entirely white
  (RGB 255, 255, 255 before encoding; decoders give ~255). Exactly one frame
  per event. Use event times that are multiples of ``1 / fps`` (e.g.
  ``k / 25`` at 25 fps): then the flash frame *starts* at ``t``.
* **sound**: a click starts at sample ``round(t * sample_rate)``: 1 ms of a
  2 kHz sine (two periods, phase 0 at the first sample) at amplitude 0.9
  (-1 dBFS), the same on every channel. Everything else is digital silence.
  The click's energy lies below 8 kHz, so it survives resampling to 16 kHz.

Lossy audio codecs smear the click by a few samples but keep its position
(AAC and Opus priming is compensated by the container); the picture is exact.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from typing import Sequence

import numpy as np

from audioscope.synth.encode import EncodeSettings, encode
from audioscope.synth.plan import CONTAINER_FORMAT

CLICK_S = 0.001
CLICK_HZ = 2000.0
CLICK_AMPLITUDE = 0.9


def _rate(fps: float | str | Fraction) -> Fraction:
    """fps as an exact fraction: 29.97 and 30000/1001 both mean 30000/1001."""
    if isinstance(fps, str):
        return Fraction(fps)
    if isinstance(fps, Fraction):
        return fps
    return Fraction(fps).limit_denominator(1001)


def flash_frame(t: float, fps: float | str | Fraction) -> int:
    """The frame whose display interval covers time ``t``."""
    return int(math.floor(t * _rate(fps) + Fraction(1, 10**6)))


def click_sample(t: float, sample_rate: int) -> int:
    """The first sample of the click for an event at time ``t``."""
    return int(round(t * sample_rate))


def click_signal(sample_rate: int) -> np.ndarray:
    """The click: 1 ms of a 2 kHz sine at amplitude 0.9."""
    n = max(1, int(round(CLICK_S * sample_rate)))
    return CLICK_AMPLITUDE * np.sin(2 * np.pi * CLICK_HZ * np.arange(n) / sample_rate)


def make_sync_video(
    path: str,
    *,
    duration: float,
    events: Sequence[float],
    fps: float | str | Fraction = 25,
    size: tuple[int, int] = (320, 240),
    vcodec: str = "libx264",
    acodec: str | None = "aac",
    sample_rate: int = 48000,
    channels: int = 1,
) -> None:
    """Write a flash-and-click video to ``path`` (see the module docstring).

    The container comes from the extension (.mp4, .mkv, .webm, .avi);
    ``acodec=None`` writes no audio track. The file is written under a
    temporary name and renamed.
    """
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    if ext not in CONTAINER_FORMAT:
        raise ValueError(f"unknown container {ext!r}: use one of {', '.join(CONTAINER_FORMAT)}")
    rate = _rate(fps)
    n_frames = max(1, int(round(duration * rate)))
    width, height = size
    flashes = set()
    for t in events:
        if not 0 <= t < duration:
            raise ValueError(f"event time {t} is outside [0, {duration})")
        flashes.add(flash_frame(t, rate))
    audio = None
    if acodec is not None:
        n = int(round(duration * sample_rate))
        mono = np.zeros(n, dtype=np.float64)
        click = click_signal(sample_rate)
        for t in events:
            s = click_sample(t, sample_rate)
            seg = click[: max(0, n - s)]
            mono[s : s + len(seg)] = seg
        audio = np.repeat(mono[:, None], channels, axis=1).astype(np.float32)

    black = np.zeros((height, width, 3), dtype=np.uint8)
    white = np.full((height, width, 3), 255, dtype=np.uint8)
    frames = (white if k in flashes else black for k in range(n_frames))
    settings = EncodeSettings(
        container=ext, vcodec=vcodec, acodec=acodec, width=width, height=height,
        rate=str(rate), sample_rate=sample_rate if acodec else None,
        channels=channels if acodec else None,
    )
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.partial-{os.getpid()}")
    try:
        encode(tmp, settings, frames, audio)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
