"""Limits on hostile media: a pixel bomb and files that lie about their duration.

The inputs are made here: a 5 MB Matroska file of 16000x16000 pictures (a
PNG whose IDAT is 256 MB of zeros deflated to 250 KB, stream-copied 20
times), and files whose container duration is patched to say less (or more)
than their streams hold. Peak memory is read from the kernel (``wait4``
rusage of a child process that does the work, ffmpeg included).
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest

from audioscope import media
from audioscope.media import DEFAULT_MAX_PIXELS, MediaError, decode, probe

pytestmark = pytest.mark.integration

MB = 1024 * 1024


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def huge_png(path: Path, width: int, height: int) -> Path:
    """A grey PNG of ``width`` x ``height`` zeros, written as a stream (little memory)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + one row of grey pixels
    idat = b"".join([*(z.compress(row) for _ in range(height)), z.flush()])
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def pixel_bomb(tmp_path_factory) -> Path:
    """20 s of 16000x16000 pictures (one per second) with sound, ~5 MB."""
    folder = tmp_path_factory.mktemp("bomb")
    png = huge_png(folder / "frame.png", 16000, 16000)
    out = folder / "bomb.mkv"
    ffmpeg("-framerate", "1", "-loop", "1", "-i", str(png), "-f", "lavfi", "-i", "sine=d=20",
           "-t", "20", "-c:v", "copy", "-c:a", "aac", str(out))
    png.unlink()
    return out


def set_mkv_duration(path: Path, seconds: float) -> Path:
    """Make a Matroska file's Segment Duration say ``seconds`` (its streams stay as they are)."""
    data = bytearray(path.read_bytes())
    at = data.find(b"\x44\x89\x88")  # Duration element, 8-byte float, in ms (TimecodeScale 1 ms)
    assert at > 0, "no 8-byte Duration element"
    data[at + 3: at + 11] = struct.pack(">d", seconds * 1000.0)
    path.write_bytes(bytes(data))
    return path


def av_mkv(path: Path, seconds: float) -> Path:
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=s=64x48:r=5:d={seconds}",
           "-f", "lavfi", "-i", f"sine=d={seconds}:sample_rate=16000",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "pcm_s16le", "-shortest", str(path))
    return path


_REPORT_PEAK = """
import resource as _r
with open("/proc/self/status") as _f:
    _hwm = int(next(l for l in _f if l.startswith("VmHWM")).split()[1]) * 1024
print("PEAK", max(_hwm, _r.getrusage(_r.RUSAGE_CHILDREN).ru_maxrss * 1024))
"""


def peak_rss_of(code: str) -> tuple[int, str]:
    """Run ``code`` in a fresh interpreter; (peak RSS in bytes of it and of the processes it ran, its stdout).

    The interpreter's own peak is its VmHWM (the rusage of a process forked
    from this big one would count this one's pages); its children's peak
    (ffmpeg) is their rusage.
    """
    res = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code) + _REPORT_PEAK], capture_output=True, text=True,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.strip().splitlines()
    return int(lines[-1].split()[1]), "\n".join(lines[:-1])


# --------------------------------------------------------------------------- #
# pixel bomb


def test_pixel_bomb_is_refused_by_the_probe_without_decoding_a_picture(pixel_bomb):
    assert pixel_bomb.stat().st_size < 6 * MB
    with pytest.raises(MediaError) as e:
        probe(pixel_bomb)
    assert e.value.kind == "picture_too_large"
    assert "16000x16000" in e.value.message and "33.2 Mpixel" in e.value.message
    with pytest.raises(MediaError) as e:
        decode(pixel_bomb)
    assert e.value.kind == "picture_too_large"

    # One RGB picture of it is 768 MB; the refusal costs the interpreter's own size.
    peak, out = peak_rss_of(f"""
        from audioscope.media import MediaError, decode
        try:
            decode({str(pixel_bomb)!r})
        except MediaError as e:
            print(e.kind)
    """)
    assert out == "picture_too_large"
    assert peak < 200 * MB, f"peak {peak / MB:.0f} MB"


def test_a_stream_bigger_than_its_probe_said_is_stopped_by_the_decoder(pixel_bomb, tmp_path):
    """The probe said small pictures (as a stream that grows midway would): ffmpeg's decoder refuses them."""
    small = probe(av_mkv(tmp_path / "small.mkv", 6))
    peak, out = peak_rss_of(f"""
        from audioscope.media import MediaError, ProbeInfo, decode
        info = ProbeInfo.from_json({small.to_json()!r})
        try:
            decode({str(pixel_bomb)!r}, info=info)
            print("decoded")
        except MediaError as e:
            print(e.kind)
    """)
    assert out == "picture_too_large"
    assert peak < 200 * MB, f"peak {peak / MB:.0f} MB (ffmpeg included)"


def test_the_picture_limit_is_a_setting(pixel_bomb, tmp_path):
    video = av_mkv(tmp_path / "v.mkv", 6)  # 64x48 = 3072 pixels
    with pytest.raises(MediaError) as e:
        decode(video, max_pixels=3000)
    assert e.value.kind == "picture_too_large" and "64x48" in e.value.message
    assert len(decode(video, max_pixels=3072).frames) == 6
    assert DEFAULT_MAX_PIXELS == 7680 * 4320


# --------------------------------------------------------------------------- #
# duration


def _decoded_bytes(monkeypatch) -> list[int]:
    """Spy on ffmpeg runs: the bytes each wrote to its audio output (what it decoded)."""
    sizes: list[int] = []
    real = media.run_tool

    def run_tool(cmd, timeout_s):
        res = real(cmd, timeout_s)
        audio_out = next(a for a in cmd if a.endswith("audio.s16le")).removeprefix("file:")
        sizes.append(os.path.getsize(audio_out))
        return res

    monkeypatch.setattr(media, "run_tool", run_tool)
    return sizes


def test_a_file_that_says_it_is_short_cannot_force_a_full_decode(tmp_path, monkeypatch):
    lying = set_mkv_duration(av_mkv(tmp_path / "lying.mkv", 120), 2.0)
    assert probe(lying).duration == pytest.approx(2.0)
    decoded = _decoded_bytes(monkeypatch)
    with pytest.raises(MediaError) as e:
        decode(lying, max_duration_s=10)
    assert e.value.kind == "too_long"
    assert "limit of 10 s" in e.value.message and "container says 2 s" in e.value.message
    # ffmpeg stopped at the limit (+1 s read ahead): not the 120 s the stream holds
    assert decoded == [11 * 16000 * 2]


def test_the_default_duration_limit_applies_and_inf_lifts_it(tmp_path, monkeypatch):
    lying = set_mkv_duration(av_mkv(tmp_path / "lying.mkv", 12), 2.0)
    monkeypatch.setattr(media, "DEFAULT_MAX_DURATION_S", 5.0)
    with pytest.raises(MediaError) as e:
        decode(lying)  # None: the default limit
    assert e.value.kind == "too_long"
    assert decode(lying, max_duration_s=float("inf")).audio.size == 12 * 16000
    assert media.decode.__kwdefaults__["max_duration_s"] is None


def test_a_video_at_the_limit_is_decoded_whole(tmp_path):
    video = av_mkv(tmp_path / "v.mkv", 10)
    d = decode(video, max_duration_s=10)
    assert d.audio.size == 10 * 16000 and len(d.frames) == 10 and d.usable_seconds == 10


def test_a_file_that_says_it_is_long_is_refused_before_decoding(tmp_path, monkeypatch):
    claims = set_mkv_duration(av_mkv(tmp_path / "claims.mkv", 6), 5 * 3600.0)
    decoded = _decoded_bytes(monkeypatch)
    with pytest.raises(MediaError) as e:
        decode(claims)
    assert e.value.kind == "too_long" and "18000 s" in e.value.message
    assert decoded == []  # ffmpeg never ran
