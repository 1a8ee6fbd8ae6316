"""`audioscope synth`: determinism, coverage of every case, and ground truth
that matches what is seen and heard (checked on the decoded media)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from audioscope.cli import main

pytestmark = pytest.mark.integration

ARGS = ["--videos", "12", "--max-duration", "12", "--jobs", "2"]


def _make(out: Path, seed: int, *extra: str) -> Path:
    assert main(["synth", "--out", str(out), "--seed", str(seed), *ARGS, *extra]) == 0
    return out


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return _make(tmp_path_factory.mktemp("synth") / "a", 11)


def _manifest(root: Path) -> list[dict]:
    return json.loads((root / "corpus.json").read_text())["videos"]


def test_same_seed_same_bytes_and_resume_keeps_files(corpus, tmp_path):
    again = _make(tmp_path / "b", 11)
    assert _digests(corpus) == _digests(again)
    mtimes = {p: p.stat().st_mtime_ns for p in (again / "videos").iterdir()}
    _make(again, 11)  # resume: nothing is made again
    assert {p: p.stat().st_mtime_ns for p in (again / "videos").iterdir()} == mtimes


def test_another_seed_gives_other_videos(corpus, tmp_path):
    other = _make(tmp_path / "c", 12, "--no-broken")
    mine = {v["sha256"] for v in _manifest(corpus)}
    theirs = {v["sha256"] for v in _manifest(other)}
    assert not mine & theirs
    assert not {v["kind"] for v in _manifest(other)} & {"broken_truncated", "broken_empty", "broken_not_video"}


def _probe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True, text=True,
    )
    return json.loads(out.stdout or "{}") if out.returncode == 0 else {}


FFPROBE_CODEC = {"libx264": "h264", "libvpx-vp9": "vp9", "mpeg4": "mpeg4",
                 "aac": "aac", "libopus": "opus", "libmp3lame": "mp3"}


def test_every_case_is_present_and_files_are_what_the_manifest_says(corpus):
    videos = _manifest(corpus)
    kinds = {v["kind"] for v in videos}
    assert kinds == {"normal", "no_audio", "silent_audio", "broken_truncated", "broken_empty", "broken_not_video"}
    listed = (corpus / "list.txt").read_text().split()
    assert listed == [v["file"] for v in videos]
    seen = set()
    for v in videos:
        path = corpus / v["file"]
        info = _probe(path)
        if v["kind"] == "broken_empty":
            assert path.stat().st_size == 0
            continue
        if v["kind"] == "broken_not_video":
            assert not info.get("streams")
            continue
        if v["kind"] == "broken_truncated":
            dec = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
                                 capture_output=True, text=True)
            assert dec.returncode != 0 or dec.stderr.strip(), "a truncated file decodes cleanly"
            continue
        streams = {s["codec_type"]: s for s in info["streams"]}
        vs = streams["video"]
        assert (vs["codec_name"], vs["width"], vs["height"]) == (FFPROBE_CODEC[v["vcodec"]], v["width"], v["height"])
        seen |= {vs["codec_name"]}
        if v["vfr"]:
            seen.add("vfr")
        elif v["fps"]:
            rate = float(Fraction(vs["r_frame_rate"]))
            assert abs(rate - float(v["fps"])) < 0.01, (v["stem"], rate, v["fps"])
            seen.add(round(rate, 2))
        if v["kind"] == "no_audio":
            assert "audio" not in streams
            continue
        a = streams["audio"]
        assert a["codec_name"] == FFPROBE_CODEC[v["acodec"]]
        assert (int(a["sample_rate"]), a["channels"]) == (v["sample_rate"], v["channels"])
        seen |= {a["codec_name"], int(a["sample_rate"]), f"ch{a['channels']}"}
    assert {"h264", "vp9", "mpeg4", "aac", "opus", "mp3", 44100, 48000, "ch1", "ch2", 29.97, "vfr"} <= seen


def _frames(path: Path, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """All frames at native timing with their timestamps."""
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v:0", "-fps_mode", "passthrough",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True,
    ).stdout
    frames = np.frombuffer(out, np.uint8).reshape(-1, h, w, 3).astype(np.float32)
    ts = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts_time",
         "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True,
    ).stdout.split()
    times = np.array([float(t.strip(",")) for t in ts if t.strip(",") not in ("", "N/A")])[: len(frames)]
    return frames[: len(times)], times


def _audio(path: Path, sr: int = 16000) -> np.ndarray:
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", str(sr),
         "-f", "f32le", "-"], capture_output=True, check=True,
    ).stdout
    return np.frombuffer(out, np.float32)


def _onsets(truth: dict) -> list[tuple[str, float]]:
    """(screen, onset) of source segments whose onset has no other source
    switching within 0.3 s (so the change seen or heard is this one)."""
    edges = [(s["screen"], t) for s in truth["sources"] for seg in s["segments"] for t in seg]
    out = []
    for s in truth["sources"]:
        for on, _ in s["segments"]:
            if on < 0.5 or on > truth["duration"] - 0.5:
                continue
            near = [t for _, t in edges if abs(t - on) < 0.3 and t != on]
            if not near:
                out.append((s["screen"], on))
    return out


def test_ground_truth_matches_picture_and_sound(corpus):
    """For on-screen sources, the picture changes on the first frame at or
    after the onset and the sound starts within one frame of it. For
    off-screen onsets, the picture does not change more than it does between
    ordinary frames."""
    checked_on = checked_off = 0
    for v in _manifest(corpus):
        if v["kind"] != "normal" or v["acodec"] == "libmp3lame":
            continue  # MP3 carries its encoder delay in AVI/MKV (see audioscope.media)
        truth = json.loads((corpus / "truth" / f"{v['stem']}.json").read_text())
        onsets = _onsets(truth)
        if not onsets:
            continue
        frames, times = _frames(corpus / v["file"], v["width"], v["height"])
        # Share of pixels that change strongly into frame i+1: motion moves an
        # object's edges, a source switching on or off changes its whole area.
        diffs = (np.abs(np.diff(frames, axis=0)).sum(axis=3) > 60).mean(axis=(1, 2))
        typical = float(np.median(diffs))  # for messages
        audio = _audio(corpus / v["file"])
        win = 80  # 5 ms windows at 16 kHz
        env = np.sqrt(np.convolve(audio**2, np.ones(win) / win, mode="same"))
        frame_s = float(np.median(np.diff(times)))
        for screen, on in onsets:
            first = int(np.searchsorted(times, on - 1e-6))  # first frame shown at or after the onset
            if first < 2 or first >= len(frames) - 2:
                continue
            local = diffs[first - 2 : first + 2]  # changes into frames first-1 .. first+2
            # How much the change into `first` stands out from its neighbours
            # (measured here: on-screen onsets 2-4x, off-screen ones <= 1.6x).
            spike = float(local[1] / (np.median(np.delete(local, 1)) + 1e-4))
            if screen == "on":
                # The biggest change around the onset is the one into `first`.
                assert int(np.argmax(local)) == 1, (v["stem"], on, local, typical)
                assert spike >= 1.8, (v["stem"], on, local)
                # The sound: the envelope crosses halfway between before and after
                # within one frame of the onset.
                i = int(on * 16000)
                before = float(np.median(env[max(0, i - 1600) : i - 160]))
                after = float(np.median(env[i + 160 : i + 1600]))
                if after < 1.5 * before + 1e-4:
                    continue  # masked by a louder source: nothing to see in the mix
                mid = (before + after) / 2
                rise = i - 800 + int(np.argmax(env[i - 800 : i + 800] > mid))
                assert abs(rise / 16000 - on) <= frame_s, (v["stem"], on, rise / 16000)
                checked_on += 1
            else:
                # No visible change beyond ordinary motion.
                assert spike < 1.8, (v["stem"], on, local)
                checked_off += 1
    assert checked_on >= 3, "too few clean on-screen onsets to check"
    assert checked_off >= 1, "no clean off-screen onset to check"
