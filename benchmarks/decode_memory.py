#!/usr/bin/env python
"""Peak memory per video: decode and the whole per-video ingest, against the decoded output.

Measured in one run, each step in a fresh interpreter (its VmHWM, and the
rusage of the ffmpeg it runs):

  baseline     the interpreter with audioscope's media and clip-store code
               imported (what any worker pays before its first video)
  decode       audioscope.media.decode of one long video (16 kHz mono int16
               audio + one 128x128 RGB frame per second, ~80 KB per second)
  ingest       audioscope.clipstore.writer.ingest_video of the same video
               (fetch, probe, decode, encode the media shard, write it)
  bomb         decode of a 5 MB file of 16000x16000 pictures: refused with
               the default picture limit, and decoded with the limit lifted

It prints each peak in MB and as a ratio to the decoded output's size (the
least any design that holds one decoded video needs), and the per-hour
slope that bounds a video at the default duration limit
(``audioscope.media.DEFAULT_MAX_DURATION_S``).

    .venv/bin/python benchmarks/decode_memory.py --minutes 120 --workdir /tmp/bench-memory
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

MB = 1024 * 1024

_REPORT_PEAK = """
import resource as _r
with open("/proc/self/status") as _f:
    _hwm = int(next(l for l in _f if l.startswith("VmHWM")).split()[1]) * 1024
print("PEAK", max(_hwm, _r.getrusage(_r.RUSAGE_CHILDREN).ru_maxrss * 1024))
"""

_IMPORTS = """
import numpy
import audioscope.media
import audioscope.clipstore.writer
import audioscope.sources.fetch
"""


def peak_of(code: str) -> tuple[int, str, float]:
    """(peak bytes, stdout, seconds) of ``code`` in a fresh interpreter."""
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code) + _REPORT_PEAK], capture_output=True, text=True,
    )
    if res.returncode != 0:
        sys.exit(f"step failed:\n{res.stderr[-3000:]}")
    lines = res.stdout.strip().splitlines()
    return int(lines[-1].split()[1]), "\n".join(lines[:-1]), time.monotonic() - t0


def long_video(path: Path, minutes: float) -> Path:
    """A moving pattern (160x120, 10 fps, H.264) with a tone (AAC), ``minutes`` long."""
    if not path.exists():
        seconds = int(minutes * 60)
        print(f"making a {minutes:g}-minute video (once) ...", file=sys.stderr)
        subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-y",
             "-f", "lavfi", "-i", f"testsrc2=s=160x120:r=10:d={seconds}",
             "-f", "lavfi", "-i", f"sine=f=440:d={seconds}:sample_rate=44100",
             "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k",
             "-shortest", str(path)],
            check=True,
        )
    return path


def pixel_bomb(path: Path) -> Path:
    """20 s of 16000x16000 grey pictures (a deflated PNG of zeros, stream-copied), ~5 MB."""
    if not path.exists():
        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

        z = zlib.compressobj(9)
        row = b"\x00" * 16001
        idat = b"".join([*(z.compress(row) for _ in range(16000)), z.flush()])
        png = path.with_suffix(".png")
        png.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 16000, 16000, 8, 0, 0, 0, 0))
                        + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
        subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-y", "-framerate", "1", "-loop", "1", "-i", str(png),
             "-f", "lavfi", "-i", "sine=d=20", "-t", "20", "-c:v", "copy", "-c:a", "aac", str(path)],
            check=True,
        )
        png.unlink()
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=120.0, help="length of the long video (default: 120)")
    ap.add_argument("--workdir", default="/tmp/bench-decode-memory", help="where the inputs and the store go")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    video = long_video(work / f"long-{args.minutes:g}min.mp4", args.minutes)
    bomb = pixel_bomb(work / "bomb.mkv")
    store = work / "store"
    subprocess.run(["rm", "-rf", str(store)], check=True)

    from audioscope.media import DEFAULT_MAX_DURATION_S, output_bytes_per_second

    base, _, _ = peak_of(_IMPORTS)
    dec, out, dec_s = peak_of(_IMPORTS + textwrap.dedent(f"""
        from audioscope.media import decode
        d = decode({str(video)!r}, timeout_s=7200, max_duration_s=float("inf"))
        print(d.audio.nbytes + d.frames.nbytes, len(d.frames))
    """))
    output_bytes, seconds = (int(x) for x in out.split())
    ing, out, ing_s = peak_of(_IMPORTS + textwrap.dedent(f"""
        from audioscope.clipstore.format import Layout, StoreParams, init_store
        from audioscope.clipstore.writer import IngestSettings, ingest_video
        from audioscope.sources.lists import VideoRequest
        init_store(Layout({str(store)!r}), StoreParams())
        settings = IngestSettings(store={str(store)!r}, params=StoreParams(), decode_timeout_s=7200,
                                  max_duration_s=float("inf"))
        request = VideoRequest(video_id="long", uri={str(video)!r}, spans=None, split=None,
                               licence_name=None, licence_url=None, origin="bench")
        record, _ = ingest_video(request, settings, {str(work / "tmp")!r})
        print(record.status, record.n_clips)
    """))
    bomb_refused, out_refused, _ = peak_of(f"""
        from audioscope.media import MediaError, decode
        try:
            decode({str(bomb)!r})
        except MediaError as e:
            print(e.kind)
    """)
    bomb_open, out_open, _ = peak_of(f"""
        from audioscope.media import MediaError, decode
        try:
            decode({str(bomb)!r}, max_pixels=10**9)
            print("decoded")
        except MediaError as e:
            print(e.kind)
    """)

    per_hour = output_bytes_per_second() * 3600
    print(f"long video: {seconds} s ({seconds / 3600:.2f} h); decoded output {output_bytes / MB:.0f} MB "
          f"({per_hour / MB:.0f} MB per hour of video)")
    print(f"{'step':<34}{'peak MB':>9}{'x output':>10}{'seconds':>9}")
    print(f"{'baseline (imports)':<34}{base / MB:>9.0f}{'':>10}{'':>9}")
    print(f"{'decode':<34}{dec / MB:>9.0f}{dec / output_bytes:>10.2f}{dec_s:>9.1f}")
    print(f"{'ingest_video (' + out + ')':<34}{ing / MB:>9.0f}{ing / output_bytes:>10.2f}{ing_s:>9.1f}")
    print(f"{'decode, above baseline':<34}{(dec - base) / MB:>9.0f}{(dec - base) / output_bytes:>10.2f}")
    print(f"{'ingest_video, above baseline':<34}{(ing - base) / MB:>9.0f}{(ing - base) / output_bytes:>10.2f}")
    print(f"{'pixel bomb, default limit':<34}{bomb_refused / MB:>9.0f}   ({out_refused})")
    print(f"{'pixel bomb, limit lifted':<34}{bomb_open / MB:>9.0f}   ({out_open})")
    slope = (ing - base) / output_bytes * per_hour
    hours = DEFAULT_MAX_DURATION_S / 3600
    print(f"ingest_video needs ~{slope / MB:.0f} MB per hour of video above the baseline: "
          f"~{(base + hours * slope) / MB:.0f} MB for a video at the default limit of {hours:g} h")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
