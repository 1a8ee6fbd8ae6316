"""Small real videos made with ffmpeg's lavfi sources, for ingest tests.

Tiny (160x120, a few seconds) so that a whole corpus is made in about a
second; each case is one ffmpeg call.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def av_video(
    path: Path, *, duration: float, vcodec: str = "libx264", acodec: str = "aac",
    rate: str = "25", size: str = "160x120", sample_rate: int = 48000, channels: int = 1,
    pattern: str = "testsrc2",
) -> Path:
    """A moving test pattern with a tone (different per file: the seed is the size of the name)."""
    extra = ["-pix_fmt", "yuv420p"] if vcodec in ("libx264", "libvpx") else []
    ffmpeg(
        "-f", "lavfi", "-i", f"{pattern}=s={size}:r={rate}:d={duration}",
        "-f", "lavfi", "-i", f"sine=f={300 + 37 * len(path.stem)}:d={duration}:sample_rate={sample_rate}",
        "-ac", str(channels), "-c:v", vcodec, *extra, "-c:a", acodec, "-shortest", str(path),
    )
    return path


def video_only(path: Path, duration: float = 6) -> Path:
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=s=160x120:r=25:d={duration}", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", "-an", str(path))
    return path


@dataclass(frozen=True)
class Case:
    name: str  # file name (and video id)
    expected: str  # "ok" or the failure kind
    clips: int = 0


def make_corpus(root: Path) -> tuple[Path, list[Case]]:
    """Good and broken videos plus ``list.txt`` (relative paths); returns (list, cases)."""
    v = root / "videos"
    v.mkdir(parents=True, exist_ok=True)
    av_video(v / "good_h264.mp4", duration=8)
    av_video(v / "good_vp8.webm", duration=7, vcodec="libvpx", acodec="libopus", channels=2, rate="30000/1001")
    av_video(v / "good_mjpeg.avi", duration=6.5, vcodec="mjpeg", acodec="pcm_s16le", sample_rate=44100)
    av_video(v / "short.mkv", duration=3, vcodec="ffv1", acodec="pcm_s16le")
    video_only(v / "noaudio.mp4")
    good = (v / "good_h264.mp4").read_bytes()
    (v / "truncated.mp4").write_bytes(good[: len(good) // 3])
    (v / "notvideo.mp4").write_text("this is a text file, not a video\n" * 20)
    (v / "empty.mp4").write_bytes(b"")
    cases = [
        Case("good_h264.mp4", "ok", 4),
        Case("good_vp8.webm", "ok", 3),
        Case("good_mjpeg.avi", "ok", 2),
        Case("short.mkv", "ok", 0),
        Case("noaudio.mp4", "no_audio"),
        Case("truncated.mp4", "corrupt"),
        Case("notvideo.mp4", "unsupported_format"),
        Case("empty.mp4", "corrupt"),
    ]
    lst = root / "list.txt"
    lst.write_text("".join(f"videos/{c.name}\n" for c in cases))
    return lst, cases
