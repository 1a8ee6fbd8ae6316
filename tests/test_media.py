"""audioscope.media: one ffmpeg pass per video, frame picking, safety."""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from audioscope import media
from audioscope.media import MediaError, decode, probe, video_filter

pytestmark = pytest.mark.integration


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def counter_video(path: Path, *, rate: str, duration: float = 8, vcodec: str = "ffv1",
                  acodec: str = "pcm_s16le", size: str = "64x48", extra: tuple[str, ...] = ()) -> Path:
    """A video whose frame n has every pixel = n % 256 (lossless), plus a tone."""
    ffmpeg(
        "-f", "lavfi", "-i", f"color=black:s={size}:r={rate}:d={duration},format=rgb24,geq=r='N':g='N':b='N'",
        "-f", "lavfi", "-i", f"sine=f=440:d={duration}:sample_rate=44100",
        *extra, "-c:v", vcodec, "-c:a", acodec, "-shortest", str(path),
    )
    return path


def frame_numbers(frames: np.ndarray) -> list[int]:
    """Frame numbers of counter-video frames (centre pixel, no letterbox)."""
    c = frames.shape[1] // 2
    return [int(f[c, c, 0]) for f in frames]


@pytest.mark.parametrize("rate", ["25", "24", "30000/1001"])
def test_frame_k_is_the_picture_at_the_centre_of_second_k(tmp_path, rate):
    path = counter_video(tmp_path / "n.mkv", rate=rate)
    d = decode(path)
    fps = float(eval(rate))  # noqa: S307 - a literal from the parametrize list
    expected = [int(np.floor((k + 0.5) * fps + 1e-9)) % 256 for k in range(8)]
    assert frame_numbers(d.frames) == expected
    assert d.frames.shape == (8, 128, 128, 3) and d.frames.dtype == np.uint8
    assert d.audio.dtype == np.int16 and abs(len(d.audio) - 8 * 16000) < 160
    assert d.usable_seconds == 8


def test_variable_frame_rate_uses_timestamps(tmp_path):
    """Frames at irregular times: the picture shown at k + 0.5 s is chosen."""
    times = [0.0, 0.3, 0.45, 1.7, 2.2, 2.6, 3.9, 4.55, 5.0, 5.9, 6.6]
    src = tmp_path / "src"
    src.mkdir()
    lines = []
    for i, t in enumerate(times):
        ffmpeg("-f", "lavfi", "-i", f"color=c=0x{i * 20:02x}{i * 20:02x}{i * 20:02x}:s=32x32:d=0.04",
               "-frames:v", "1", str(src / f"f{i}.png"))
    # mkvmerge-style timestamps through the concat demuxer (in the test only).
    for i, t in enumerate(times):
        dur = (times[i + 1] if i + 1 < len(times) else 7.0) - t
        lines += [f"file 'f{i}.png'", f"duration {dur:.3f}"]
    lines.append(f"file 'f{len(times) - 1}.png'")
    (src / "list.txt").write_text("\n".join(lines) + "\n")
    path = tmp_path / "vfr.mkv"
    ffmpeg("-f", "concat", "-safe", "0", "-i", str(src / "list.txt"),
           "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono:d=7",
           "-fps_mode", "vfr", "-c:v", "ffv1", "-c:a", "pcm_s16le", "-t", "7", str(path))
    d = decode(path)
    shown = [max(i for i, t in enumerate(times) if t <= k + 0.5) for k in range(len(d.frames))]
    assert [int(round(f[64, 64, 0] / 20)) for f in d.frames] == shown
    assert len(d.frames) == 7


def test_stereo_44k_is_mono_16k_and_codecs_decode(tmp_path):
    path = tmp_path / "s.webm"
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=176x144:r=30:d=6",
           "-f", "lavfi", "-i", "sine=f=1000:d=6:sample_rate=44100",
           "-ac", "2", "-c:v", "libvpx", "-c:a", "libopus", "-shortest", str(path))
    info = probe(path)
    assert info.has_audio and info.has_video and info.channels == 2 and "webm" in info.format_name
    d = decode(path)
    assert d.audio.ndim == 1 and abs(len(d.audio) - 6 * 16000) < 400
    # a 1 kHz tone survives resampling: the spectrum peaks at 1 kHz
    spec = np.abs(np.fft.rfft(d.audio[16000:32000].astype(np.float64)))
    assert abs(int(np.argmax(spec)) - 1000) <= 2
    assert d.frames.shape == (6, 128, 128, 3)


def test_aspect_modes(tmp_path):
    """A 4:1 white picture: pad letterboxes it, crop fills the square, stretch fills it."""
    path = tmp_path / "wide.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=white:s=400x100:r=25:d=2",
           "-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", "2",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path))
    pad = decode(path, aspect="pad").frames[0]
    crop = decode(path, aspect="crop").frames[0]
    stretch = decode(path, aspect="stretch").frames[0]
    assert pad[0, 64].max() < 20 and pad[64, 64].min() > 230  # black bars above, white middle
    assert pad[48:80, :].mean() > 230
    assert crop.min() > 230 and stretch.min() > 230
    with pytest.raises(ValueError):
        video_filter(128, "zoom")


def test_rotation_metadata_is_applied(tmp_path):
    path = tmp_path / "rot.mp4"
    src = tmp_path / "src.mp4"
    # left half white, right half black, 160x80
    ffmpeg("-f", "lavfi", "-i", "color=black:s=160x80:r=25:d=2,drawbox=x=0:y=0:w=80:h=80:color=white:t=fill",
           "-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", "2",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(src))
    ffmpeg("-i", str(src), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(path))
    info = probe(path)
    assert info.rotation in (90, 270)
    f = decode(path, aspect="stretch").frames[0].astype(int)
    # after rotating by 90 degrees the white half is the top or bottom half
    top, bottom = f[:64].mean(), f[64:].mean()
    left, right = f[:, :64].mean(), f[:, 64:].mean()
    assert abs(top - bottom) > 150 and abs(left - right) < 40


def test_odd_size_and_anamorphic(tmp_path):
    path = tmp_path / "odd.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=175x97:r=25:d=6,setsar=2/1",
           "-f", "lavfi", "-i", "sine=d=6:sample_rate=22050",
           "-c:v", "ffv1", "-c:a", "pcm_s16le", "-shortest", str(path))
    d = decode(path)
    assert d.frames.shape == (6, 128, 128, 3)
    # 175x97 with 2:1 pixels is 350x97 on screen: letterboxed to ~35 rows
    rows = np.where(d.frames[3].max(axis=(1, 2)) > 30)[0]
    assert 30 <= len(rows) <= 40


def test_no_audio(tmp_path):
    path = tmp_path / "silent.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x64:r=25:d=6", "-c:v", "libx264", "-an", str(path))
    with pytest.raises(MediaError) as e:
        decode(path)
    assert e.value.kind == "no_audio"


def test_audio_only_has_no_video(tmp_path):
    path = tmp_path / "a.mkv"
    ffmpeg("-f", "lavfi", "-i", "sine=d=6", "-c:a", "pcm_s16le", str(path))
    with pytest.raises(MediaError) as e:
        decode(path)
    assert e.value.kind == "no_video"


@pytest.mark.parametrize(
    "content,kind",
    [
        (b"", "corrupt"),
        (bytes(range(256)) * 40, "corrupt"),
        (b"hello, this is not a video at all\n" * 10, "unsupported_format"),
    ],
)
def test_unreadable_files(tmp_path, content, kind):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(MediaError) as e:
        decode(path)
    assert e.value.kind == kind
    assert e.value.message


def test_truncated_mp4_is_corrupt(tmp_path):
    good = counter_video(tmp_path / "g.mp4", rate="25", vcodec="libx264", acodec="aac")
    bad = tmp_path / "t.mp4"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(MediaError) as e:
        decode(bad)
    assert e.value.kind == "corrupt"


def _secret(tmp_path: Path) -> Path:
    good = counter_video(tmp_path / "secret.mkv", rate="25", duration=6)
    return good


@pytest.mark.parametrize(
    "playlist",
    [
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:6.0,\n{p}\n#EXT-X-ENDLIST\n",
        "ffconcat version 1.0\nfile '{p}'\n",
        "file '{p}'\n",
    ],
    ids=["hls", "ffconcat", "concat"],
)
@pytest.mark.parametrize("suffix", [".m3u8", ".mp4", ".txt"])
def test_playlists_pointing_at_local_files_are_refused(tmp_path, playlist, suffix):
    secret = _secret(tmp_path)
    path = tmp_path / f"evil{suffix}"
    path.write_text(playlist.format(p=secret))
    with pytest.raises(MediaError) as e:
        decode(path)
    assert e.value.kind == "unsupported_format"


def test_image_files_are_refused(tmp_path):
    path = tmp_path / "img.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x64", "-frames:v", "1", "-f", "image2", "-c:v", "png", str(path))
    with pytest.raises(MediaError) as e:
        decode(path)
    assert e.value.kind in ("unsupported_format", "corrupt")


def test_timeout_kills_ffmpeg(tmp_path):
    path = counter_video(tmp_path / "n.mkv", rate="25", duration=20, size="640x480")
    with pytest.raises(MediaError) as e:
        decode(path, timeout_s=0.01)
    assert e.value.kind == "timeout"


def test_too_long(tmp_path):
    path = counter_video(tmp_path / "n.mkv", rate="25", duration=8)
    with pytest.raises(MediaError) as e:
        decode(path, max_duration_s=5)
    assert e.value.kind == "too_long"


def test_short_audio_limits_usable_seconds(tmp_path):
    """Audio that ends before the picture: only seconds with both count."""
    path = tmp_path / "short_audio.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x64:r=25:d=9",
           "-f", "lavfi", "-i", "sine=d=6.5:sample_rate=16000",
           "-c:v", "ffv1", "-c:a", "pcm_s16le", str(path))
    d = decode(path)
    assert len(d.frames) == 9
    assert d.usable_seconds == 6


def test_click_and_flash_alignment(tmp_path):
    """A click at t lands on sample round(t * 16000) (within 1 ms) and a
    flash around t + 0.5 is in frame t, after an AAC/H.264 round trip."""
    sr, dur = 48000, 9
    clicks = [1.25, 3.0, 6.5]
    pcm = np.zeros(sr * dur, dtype=np.int16)
    for t in clicks:
        s = round(t * sr)
        pcm[s : s + 48] = 20000
    wav = tmp_path / "c.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    flashes = [2, 5]  # white around 2.5 s and 5.5 s, and in the first half of second 7
    boxes = ",".join(
        f"drawbox=enable='between(t,{k + 0.3},{k + 0.7})':color=white:t=fill" for k in flashes
    ) + ",drawbox=enable='between(t,7.0,7.4)':color=white:t=fill"
    path = tmp_path / "sync.mp4"
    ffmpeg("-f", "lavfi", "-i", f"color=black:s=160x120:r=25:d={dur},{boxes}", "-i", str(wav),
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "192k", str(path))
    d = decode(path)
    a = np.abs(d.audio.astype(np.int32))
    onsets = [i for i in range(1, len(a)) if a[i] > 4000 and a[i - 1] <= 4000 and a[max(0, i - 400):i].max() <= 4000]
    assert len(onsets) == len(clicks)
    for t, i in zip(clicks, onsets):
        assert abs(i - round(t * 16000)) <= 16
    white = [k for k, f in enumerate(d.frames) if f.mean() > 128]
    assert white == flashes
    assert d.usable_seconds == dur


def test_probe_info_round_trips(tmp_path):
    path = counter_video(tmp_path / "n.mkv", rate="25", duration=3)
    info = probe(path)
    assert media.ProbeInfo.from_json(info.to_json()) == info
    assert info.fps == 25 and info.width == 64 and info.height == 48
