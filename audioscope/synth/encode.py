"""Encode rendered frames and audio with ffmpeg, reproducibly.

Frames go to ffmpeg's stdin as raw rgb24; the audio goes through a temporary
raw float32 file next to the output. Same input -> same bytes: the encoders
run single-threaded with fixed settings, and ``+bitexact`` plus
``-map_metadata -1`` keep version strings, dates and random ids out of the
containers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from audioscope.synth.plan import CONTAINER_FORMAT

VIDEO_ARGS: dict[str, tuple[str, ...]] = {
    "libx264": ("-c:v", "libx264", "-preset", "superfast", "-crf", "26", "-threads", "1"),
    "libvpx-vp9": (
        "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-crf", "40",
        "-b:v", "0", "-row-mt", "0", "-threads", "1",
    ),
    "mpeg4": ("-c:v", "mpeg4", "-q:v", "5", "-threads", "1"),
}
AUDIO_ARGS: dict[str, tuple[str, ...]] = {
    "aac": ("-c:a", "aac", "-b:a", "{kbps}k"),
    "libopus": ("-c:a", "libopus", "-b:a", "{kbps}k"),
    "libmp3lame": ("-c:a", "libmp3lame", "-b:a", "{kbps}k"),
}
AUDIO_KBPS: dict[str, tuple[int, int]] = {"aac": (96, 128), "libopus": (48, 64), "libmp3lame": (96, 128)}
#: Sample rates each audio encoder accepts here.
ENCODER_RATES: dict[str, tuple[int, ...]] = {
    "aac": (44100, 48000),
    "libmp3lame": (44100, 48000),
    "libopus": (48000,),
}
REPRO_ARGS: tuple[str, ...] = (
    "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
    "-map_metadata", "-1", "-map_chapters", "-1",
)


class EncodeError(RuntimeError):
    """ffmpeg failed on input we made ourselves: a bug or a broken ffmpeg."""


@dataclass(frozen=True)
class EncodeSettings:
    """How one file is encoded."""

    container: str  # mp4 | webm | mkv | avi
    vcodec: str
    acodec: str | None
    width: int
    height: int
    rate: str  # frame rate of the frames given, as a fraction string
    sample_rate: int | None = None
    channels: int | None = None
    select: str | None = None  # a `select=...` filter: drop frames, write VFR
    faststart: bool = True  # mp4: index at the front (plays while loading)


def missing_encoders(names: Iterable[str]) -> list[str]:
    """The encoders in ``names`` that this ffmpeg lacks (all of them if there
    is no ffmpeg)."""
    if shutil.which("ffmpeg") is None:
        return sorted(set(names))
    out = subprocess.run(
        ["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, check=False
    ).stdout
    have = {line.split()[1] for line in out.splitlines() if len(line.split()) > 1}
    return sorted(set(names) - have)


def ffmpeg_command(s: EncodeSettings, audio_path: str | None, out_path: str) -> list[str]:
    gop = max(1, int(round(2 * float(_fraction(s.rate)))))
    cmd = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-video_size", f"{s.width}x{s.height}",
        "-framerate", s.rate, "-i", "pipe:0",
    ]
    if audio_path is not None:
        cmd += ["-f", "f32le", "-ar", str(s.sample_rate), "-ac", str(s.channels), "-i", audio_path]
    cmd += ["-map", "0:v:0"]
    if audio_path is not None:
        cmd += ["-map", "1:a:0"]
    if s.select:
        cmd += ["-vf", s.select, "-fps_mode", "vfr"]
    cmd += [*VIDEO_ARGS[s.vcodec], "-pix_fmt", "yuv420p", "-g", str(gop)]
    if audio_path is not None:
        assert s.acodec is not None and s.channels is not None
        kbps = AUDIO_KBPS[s.acodec][min(s.channels, 2) - 1]
        cmd += [a.format(kbps=kbps) for a in AUDIO_ARGS[s.acodec]]
    if s.container == "mp4" and s.faststart:
        cmd += ["-movflags", "+faststart"]
    if s.container == "avi":
        # AVI cannot store the negative start of a primed audio encoder (MP3):
        # by default ffmpeg then shifts the video by the priming delay, which
        # on AVI's frame-count clock moves every frame but the first one frame
        # late (pts 0, 2, 3, ...), one frame off the ground truth. Keep the
        # video on its own grid; the audio keeps its priming samples.
        cmd += ["-avoid_negative_ts", "disabled"]
    cmd += [*REPRO_ARGS, "-f", CONTAINER_FORMAT[s.container], out_path]
    return cmd


def encode(
    out_path: str,
    settings: EncodeSettings,
    frames: Iterable[np.ndarray],
    audio: np.ndarray | None,
) -> None:
    """Write ``out_path`` (any name: the container is given explicitly) from
    uint8 [H, W, 3] frames and float32 [n, channels] audio (None: no track)."""
    if settings.acodec is not None and audio is None:
        raise ValueError("an audio codec was given but no audio")
    if audio is not None and settings.sample_rate not in ENCODER_RATES[settings.acodec or "aac"]:
        raise ValueError(f"{settings.acodec} cannot encode at {settings.sample_rate} Hz")
    out_dir = os.path.dirname(os.path.abspath(out_path))
    audio_path = None
    err_file = tempfile.TemporaryFile(dir=out_dir)
    try:
        if audio is not None:
            fd, audio_path = tempfile.mkstemp(dir=out_dir, prefix=".audio-", suffix=".f32")
            with os.fdopen(fd, "wb") as f:
                f.write(np.ascontiguousarray(audio, dtype="<f4").tobytes())
        cmd = ffmpeg_command(settings, audio_path, out_path)
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err_file)
        assert proc.stdin is not None
        try:
            for frame in frames:
                if frame.shape != (settings.height, settings.width, 3) or frame.dtype != np.uint8:
                    raise ValueError(f"bad frame {frame.shape} {frame.dtype}")
                proc.stdin.write(np.ascontiguousarray(frame).data)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        rc = proc.wait()
        if rc != 0:
            err_file.seek(0)
            msg = err_file.read().decode("utf-8", "replace").strip()[-800:]
            raise EncodeError(f"ffmpeg failed ({rc}) writing {out_path}: {msg}\ncommand: {' '.join(cmd)}")
    finally:
        err_file.close()
        if audio_path is not None and os.path.exists(audio_path):
            os.unlink(audio_path)


def _fraction(rate: str) -> float:
    num, _, den = rate.partition("/")
    return float(num) / float(den or 1)
