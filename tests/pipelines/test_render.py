"""The render pipeline with real ffmpeg and Beam's DirectRunner: MP4s raters can play."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from audioscope import cli
from audioscope.annotation.pools import pools_table_bytes

pytestmark = pytest.mark.integration


def _make_video(path: Path, size: str, rate: str, seconds: int = 9) -> Path:
    subprocess.run([
        "ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}",
        "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(path),
    ], check=True)  # fmt: skip
    return path


def _probe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
                         check=True, capture_output=True).stdout  # fmt: skip
    return json.loads(out)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("render")
    videos = {
        "wide": _make_video(root / "wide.mp4", "1280x720", "30"),
        "tall": _make_video(root / "tall.mp4", "720x1280", "30000/1001"),
        "small": _make_video(root / "small.mp4", "320x240", "25"),
    }
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)
    rows = [(v, 2.0) for v in videos] + [("wide", 0.0), ("broken", 0.0)]
    pools = pd.DataFrame({
        "clip_id": [f"{v}-{int(s * 1000):07d}" for v, s in rows], "video_id": [v for v, _ in rows],
        "start": [s for _, s in rows], "end": [s + 5 for _, s in rows], "split": "train", "pool": "filtered_train",
        "source_uri": [str(root / f"{v}.mp4") for v, _ in rows], "licence_name": None, "licence_url": None,
    })  # fmt: skip
    (root / "ann").mkdir()
    (root / "ann" / "pools.parquet").write_bytes(pools_table_bytes(pools))
    assert cli.main(["annotate", "render", "--annotations", str(root / "ann"), "--media", str(root / "media")]) == 0
    return root


@pytest.mark.parametrize("clip,width,height,rate", [
    ("wide-0002000", 854, 480, "30/1"), ("tall-0002000", 480, 854, "30000/1001"), ("small-0002000", 320, 240, "25/1"),
])  # fmt: skip
def test_clips_are_h264_aac_cfr_capped_at_480p(rendered, clip, width, height, rate):
    path = rendered / "media" / "clips" / f"{clip}.mp4"
    info = _probe(path)
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
    assert (video["codec_name"], video["pix_fmt"], audio["codec_name"]) == ("h264", "yuv420p", "aac")
    assert (video["width"], video["height"]) == (width, height)
    assert video["r_frame_rate"] == video["avg_frame_rate"] == rate  # constant frame rate
    assert float(info["format"]["duration"]) == pytest.approx(5.0, abs=0.1)
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # +faststart: playable while downloading


def test_a_broken_source_is_recorded_and_the_rest_rendered(rendered):
    summary = json.loads((rendered / "media" / "render.json").read_text())
    assert (summary["clips"], summary["rendered"], summary["failed"], summary["missing"]) == (5, 4, 1, 0)
    failure = json.loads((rendered / "media" / "failed" / "broken-0000000.json").read_text())
    assert failure["kind"] == "corrupt" and failure["message"]


def test_rerunning_renders_nothing_new_and_retries_failures(rendered, capsys):
    clip = rendered / "media" / "clips" / "wide-0002000.mp4"
    before = clip.stat().st_mtime_ns
    assert cli.main(["annotate", "render", "--annotations", str(rendered / "ann"), "--media", str(rendered / "media")]) == 0
    assert "4 already rendered, 1 to render" in capsys.readouterr().err
    assert clip.stat().st_mtime_ns == before
