"""The render pipeline with real ffmpeg and Beam's DirectRunner: MP4s raters can play."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pandas as pd
import pytest

from audioscope import cli, storage
from audioscope.annotation.pools import pools_table_bytes
from tests.gcs_emulator import GcsEmulator, pointed_at

# One worker renders the module's videos once (the gs:// tests reuse the local run's inputs).
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("render")]


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


#: (clip, width, height, frame rate) of the rendered clips of the ``rendered`` fixture.
CLIPS = [
    ("wide-0002000", 854, 480, "30/1"), ("tall-0002000", 480, 854, "30000/1001"), ("small-0002000", 320, 240, "25/1"),
]  # fmt: skip


@pytest.mark.parametrize("clip,width,height,rate", CLIPS)
def test_clips_are_h264_aac_cfr_capped_at_480p(rendered, clip, width, height, rate):
    _check_clip(rendered / "media" / "clips" / f"{clip}.mp4", width, height, rate)


def _check_clip(path: Path, width: int, height: int, rate: str) -> None:
    """H.264 (yuv420p) + AAC, the expected size and constant frame rate, 5 s, +faststart."""
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


# --------------------------------------------------------------------------- MEDIA_DIR on gs://


@pytest.fixture(scope="module")
def gs_rendered(rendered, tmp_path_factory):
    """The same pools rendered to a ``gs://`` MEDIA_DIR on a GCS emulator (our environment pointed at it)."""
    scratch = tmp_path_factory.mktemp("gs-render")
    with GcsEmulator(bucket="render") as emu, pointed_at(emu.url):
        media = f"gs://{emu.bucket}/{uuid.uuid4().hex[:8]}/media"
        assert cli.main(["annotate", "render", "--annotations", str(rendered / "ann"), "--media", media]) == 0
        yield {"media": media, "ann": rendered / "ann", "scratch": scratch}


def _generations(prefix: str) -> dict[str, str]:
    fs, path = storage.url_to_fs(prefix)
    return {p: str(info["generation"]) for p, info in fs.find(path, detail=True).items()}


def test_clips_rendered_to_gs_land_in_the_bucket_and_play(gs_rendered):
    media = gs_rendered["media"]
    clips = storage.list_files(f"{media}/clips", ".mp4")
    assert clips == sorted(f"{media}/clips/{c}.mp4" for c in ("small-0002000", "tall-0002000", "wide-0000000", "wide-0002000"))
    for clip, width, height, rate in CLIPS:
        local = gs_rendered["scratch"] / f"{clip}.mp4"
        local.write_bytes(storage.read_bytes(f"{media}/clips/{clip}.mp4"))
        _check_clip(local, width, height, rate)
        # what the annotator's browser is told when Label Studio redirects it to the clip
        fs, path = storage.url_to_fs(f"{media}/clips/{clip}.mp4")
        assert fs.info(path)["contentType"] == "video/mp4"
    summary = json.loads(storage.read_text(f"{media}/render.json"))
    assert (summary["clips"], summary["rendered"], summary["failed"], summary["missing"]) == (5, 4, 1, 0)
    assert json.loads(storage.read_text(f"{media}/failed/broken-0000000.json"))["kind"] == "corrupt"


def test_rerunning_on_gs_renders_nothing_twice(gs_rendered, capsys):
    media = gs_rendered["media"]
    before = _generations(f"{media}/clips")
    assert cli.main(["annotate", "render", "--annotations", str(gs_rendered["ann"]), "--media", media]) == 0
    assert "4 already rendered, 1 to render" in capsys.readouterr().err
    assert _generations(f"{media}/clips") == before  # no clip written again
