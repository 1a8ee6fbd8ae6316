"""Small real-ffmpeg readers the synth tests share (decoded frames with their
timestamps, decoded audio, ffprobe), so each test reads the media the same way."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: ffprobe's codec_name for each encoder the generator uses.
FFPROBE_CODEC: dict[str, str] = {
    "libx264": "h264", "libvpx-vp9": "vp9", "mpeg4": "mpeg4",
    "aac": "aac", "libopus": "opus", "libmp3lame": "mp3",
}


def probe(path: Path) -> dict | None:
    """ffprobe's streams and format of ``path``; None when ffprobe cannot read it."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        return None
    return json.loads(out.stdout)


def frame_times(path: Path) -> np.ndarray:
    """Presentation time of every decoded video frame, in decode-output order."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts_time",
         "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout
    # csv may add a trailing comma (side data) to a line
    return np.array([float(x.strip(",")) for x in out.split() if x.strip(",") not in ("", "N/A")])


@dataclass
class Frames:
    """What the tests need of a video's frames: their times, and the mean
    colour of some rectangles ("cells") in every frame."""

    times: np.ndarray  # seconds, relative to the first frame
    means: dict[str, np.ndarray]  # cell name -> mean RGB [n, 3]


def frames(path: Path, width: int, height: int, cells: dict[str, list[int]]) -> Frames:
    """Decode every frame (no frame-rate conversion: ``-fps_mode passthrough``)
    and reduce each to the mean colour of the ``cells`` (x0, y0, x1, y1), one
    frame at a time so that long or large videos need little memory."""
    proc = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v:0", "-fps_mode", "passthrough",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    size = width * height * 3
    rows: dict[str, list[np.ndarray]] = {name: [] for name in cells}
    while True:
        buf = proc.stdout.read(size)
        if len(buf) < size:
            break
        img = np.frombuffer(buf, np.uint8).reshape(height, width, 3)
        for name, (x0, y0, x1, y1) in cells.items():
            rows[name].append(img[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0))
    assert proc.wait() == 0, f"ffmpeg could not decode {path}"
    times = frame_times(path)
    n = len(next(iter(rows.values()))) if rows else len(times)
    assert len(times) == n, (path, len(times), n)
    return Frames(times - times[0], {name: np.array(r) for name, r in rows.items()})


def audio(path: Path, sample_rate: int | None = None, channels: int = 1) -> np.ndarray:
    """The first audio track as float32 [n, channels] (downmixed or upmixed by
    ffmpeg to ``channels``), resampled to ``sample_rate`` when given."""
    cmd = ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", str(channels)]
    if sample_rate:
        cmd += ["-ar", str(sample_rate)]
    raw = subprocess.run([*cmd, "-f", "f32le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.float32).reshape(-1, channels)
