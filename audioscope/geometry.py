"""Clip geometry: the one place that says what a clip is.

Every step (ingest, score, mix, the models) works on the same clip: 5 s of
16 kHz mono audio and one RGB frame per second, taken at the middle of each
second (s + k + 0.5) and scaled to 128 x 128 pixels. Other modules import
these names instead of writing the numbers again.
"""

from __future__ import annotations

#: Audio samples per second (mono).
SAMPLE_RATE = 16_000
#: Seconds per clip; a clip starts on a whole second.
CLIP_SECONDS = 5
#: Frames are FRAME_SIZE x FRAME_SIZE RGB.
FRAME_SIZE = 128
#: Frames per second of clip (one, at the middle of each second).
FRAMES_PER_SECOND = 1

AUDIO_SAMPLES = SAMPLE_RATE * CLIP_SECONDS
FRAMES_SHAPE: tuple[int, int, int, int] = (CLIP_SECONDS * FRAMES_PER_SECOND, FRAME_SIZE, FRAME_SIZE, 3)
