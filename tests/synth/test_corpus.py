"""`audioscope synth`: same seed -> same bytes, resume keeps finished files,
every case of the plan is in a 12-video corpus, the list and truth files
agree, and ffprobe confirms that every file is what corpus.json says."""

from __future__ import annotations

import csv
import hashlib
import math
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from audioscope.synth.corpus import NOT_A_VIDEO_TEXT, generate_corpus
from audioscope.synth.plan import BROKEN_KINDS, KINDS, PlanOptions, video_spec
from tests.synth.conftest import SEED, make_corpus, manifest, truth
from tests.synth.media import FFPROBE_CODEC, audio, frame_times, probe

#: What a corpus of 12 or more videos must hold (issue: codecs, rates,
#: channels, 29.97 fps and variable frame rate).
MUST_COVER = {
    "h264", "vp9", "mpeg4", "aac", "opus", "mp3", 44100, 48000, "mono", "stereo", "29.97", "vfr",
}


def _digests(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (hidden ones included), by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def _cases(records: list[dict]) -> set[object]:
    """The MUST_COVER items a list of corpus.json records claims."""
    out: set[object] = set()
    for r in records:
        if r["kind"] in BROKEN_KINDS:
            continue
        out.add(FFPROBE_CODEC[r["vcodec"]])
        if r["acodec"]:
            out |= {FFPROBE_CODEC[r["acodec"]], r["sample_rate"], {1: "mono", 2: "stereo"}[r["channels"]]}
        out.add("vfr" if r["vfr"] else f"{r['fps']:.2f}")
    return out


# --------------------------------------------------------------------------- #
# the plan alone (no ffmpeg)


@pytest.mark.parametrize("broken", [True, False])
@pytest.mark.parametrize("durations", [(3.0, 90.0), (3.0, 12.0), (20.0, 30.0)])
def test_every_12_video_plan_covers_every_case(broken: bool, durations: tuple[float, float]) -> None:
    lo, hi = durations
    for seed in (0, 1, 108):
        for first in (0, 12, 24):  # the table's own cycle, and two drawn cycles
            options = PlanOptions(seed, broken, lo, hi)
            specs = [video_spec(i, options) for i in range(first, first + 12)]
            kinds = {s.kind for s in specs}
            assert kinds == (set(KINDS) if broken else set(KINDS) - BROKEN_KINDS), (seed, first, kinds)
            for s in specs:
                assert lo - 1e-9 <= s.duration <= hi + 0.05, (s.stem, s.duration)  # + one frame
                assert s.n_frames == round(s.duration * float(s.base_rate))
                assert (s.acodec is None) == (s.kind == "no_audio")
            if first == 0:  # later cycles draw codecs and rates at random
                records = [
                    {"kind": s.kind, "vcodec": s.vcodec, "acodec": s.acodec, "sample_rate": s.sample_rate,
                     "channels": s.channels, "vfr": s.vfr, "fps": s.fps_value}
                    for s in specs
                ]
                assert MUST_COVER <= _cases(records), MUST_COVER - _cases(records)


def test_full_scale_durations_span_3_to_90_seconds() -> None:
    options = PlanOptions(0)
    durations = [video_spec(i, options).duration for i in range(240)]
    assert 3.0 <= min(durations) < 5.0 and 60.0 < max(durations) <= 90.05


# --------------------------------------------------------------------------- #
# determinism and resume


@pytest.mark.integration
def test_same_seed_gives_identical_files(corpus: Path, tmp_path: Path) -> None:
    twin = make_corpus(tmp_path / "twin")
    mine, theirs = _digests(corpus), _digests(twin)
    assert {"truth.parquet", "corpus.json", "list.txt", "list.csv", "README.txt"} <= set(mine)
    assert len([p for p in mine if p.startswith("videos/")]) == 12
    assert mine == theirs


@pytest.mark.integration
def test_other_seed_gives_other_videos_and_no_broken_leaves_them_out(corpus: Path, tmp_path: Path) -> None:
    other = manifest(make_corpus(tmp_path / "other", SEED + 1, "--no-broken"))["videos"]
    assert not {v["kind"] for v in other} & BROKEN_KINDS
    assert len(other) == 12 and all(v["kind"] in KINDS for v in other)
    mine = {v["sha256"] for v in manifest(corpus)["videos"] if v["bytes"]}
    assert not mine & {v["sha256"] for v in other}
    assert MUST_COVER <= _cases(other)


@pytest.mark.integration
def test_rerun_keeps_finished_files_and_remakes_only_what_is_missing(corpus: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(corpus, root)  # keeps mtimes
    before = _digests(root)
    kept = sorted((root / "videos").iterdir()) + sorted((root / "truth").iterdir())
    mtimes = {p: p.stat().st_mtime_ns for p in kept}

    summary = generate_corpus(str(root), 12, SEED, max_duration=12, jobs=2)
    assert (summary.made, summary.skipped) == (0, 12)
    assert {p: p.stat().st_mtime_ns for p in kept} == mtimes
    assert _digests(root) == before

    # A lost video and a damaged one are made again, byte for byte; nothing else is touched.
    lost, damaged = root / "videos" / f"syn{SEED}-0001.webm", root / "videos" / f"syn{SEED}-0005.mp4"
    lost.unlink()
    damaged.write_bytes(damaged.read_bytes()[:1000])
    summary = generate_corpus(str(root), 12, SEED, max_duration=12, jobs=2)
    assert (summary.made, summary.skipped) == (2, 10)
    assert _digests(root) == before
    untouched = [p for p in kept if p not in (lost, damaged) and p.parent.name == "videos"]
    assert {p: p.stat().st_mtime_ns for p in untouched} == {p: mtimes[p] for p in untouched}


# --------------------------------------------------------------------------- #
# the files agree with each other


@pytest.mark.integration
def test_list_truth_and_manifest_files_agree(corpus: Path) -> None:
    m = manifest(corpus)
    records = m["videos"]
    stems = [f"syn{SEED}-{i:04d}" for i in range(12)]
    assert [r["stem"] for r in records] == stems
    assert {r["kind"] for r in records} == set(KINDS)
    assert m["seed"] == SEED and m["args"]["videos"] == 12

    files = [r["file"] for r in records]
    assert (corpus / "list.txt").read_text(encoding="utf-8").splitlines() == files
    with open(corpus / "list.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["uri"], r["video_id"]) for r in rows] == list(zip(files, stems))
    assert all(r["licence_name"] == "CC0 1.0" and r["licence_url"].startswith("https://") for r in rows)
    assert sorted(p.name for p in (corpus / "videos").iterdir()) == sorted(Path(f).name for f in files)
    assert sorted(p.stem for p in (corpus / "truth").iterdir()) == stems

    table = pq.read_table(corpus / "truth.parquet").to_pylist()
    for r in records:
        path = corpus / r["file"]
        assert path.stat().st_size == r["bytes"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == r["sha256"]
        t = truth(corpus, r["stem"])
        assert t["record"] == r and t["expected"] == r["expected"]
        rows_of = [row for row in table if row["video_id"] == r["stem"]]
        if r["kind"] in BROKEN_KINDS:
            assert rows_of == [] and t["sources"] == []
            continue
        assert 3.0 <= r["duration"] <= 12.05
        assert [row["second"] for row in rows_of] == list(range(math.floor(r["duration"] + 1e-9)))
        for row, sec in zip(rows_of, t["seconds"]):
            assert (row["onscreen"], row["offscreen"]) == (sec["onscreen"], sec["offscreen"])
            assert row["has_onscreen"] == bool(sec["onscreen"])
            assert row["has_offscreen"] == bool(sec["offscreen"])
        if r["kind"] != "normal":  # nothing to hear in no_audio and silent_audio videos
            assert not any(row["has_onscreen"] or row["has_offscreen"] for row in rows_of)
        ids = {s["id"]: s for s in t["sources"]}
        for sec in t["seconds"]:  # listed ids exist and are on the side they claim
            assert all(ids[i]["screen"] == "on" for i in sec["onscreen"])
            assert all(ids[i]["screen"] == "off" for i in sec["offscreen"])


# --------------------------------------------------------------------------- #
# ffprobe: every file is what corpus.json says


def _is_regular(times: np.ndarray, step: float) -> bool:
    """Frame times on a regular grid of ``step`` (Matroska/WebM round to 1 ms)."""
    return bool(np.all(np.abs(np.diff(times) - step) < 0.0015))


@pytest.mark.integration
def test_ffprobe_confirms_every_video(corpus: Path) -> None:
    seen: set[object] = set()
    for r in manifest(corpus)["videos"]:
        path = corpus / r["file"]
        info = probe(path)
        what = (r["stem"], r["kind"])
        if r["kind"] == "broken_empty":
            assert path.stat().st_size == 0 and info is None, what
            continue
        if r["kind"] == "broken_not_video":
            assert path.read_text(encoding="utf-8") == NOT_A_VIDEO_TEXT
            assert info is None or not info.get("streams"), what
            continue
        if r["kind"] == "broken_truncated":
            head = path.read_bytes()[:12]
            # It starts as a real container ...
            assert head[4:8] == b"ftyp" or head[:4] in (b"\x1a\x45\xdf\xa3", b"RIFF"), what
            # ... but cannot be decoded to the end.
            dec = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
                                 capture_output=True, text=True, check=False)
            assert dec.returncode != 0 or dec.stderr.strip(), what
            continue

        assert info is not None, what
        streams = info["streams"]
        video = [s for s in streams if s["codec_type"] == "video"]
        sound = [s for s in streams if s["codec_type"] == "audio"]
        assert len(video) == 1, what
        v = video[0]
        claimed = (FFPROBE_CODEC[r["vcodec"]], r["width"], r["height"])
        assert (v["codec_name"], v["width"], v["height"]) == claimed, what
        seen.add(v["codec_name"])
        t = truth(corpus, r["stem"])
        times = frame_times(path)
        assert len(times) == t["n_frames"], (*what, len(times), t["n_frames"])
        steps = np.diff(times)
        if r["vfr"]:
            # Frames dropped from a 30 fps grid: both 1/30 s and 2/30 s gaps.
            assert not _is_regular(times, 1 / 30), what
            assert np.any(np.abs(steps - 1 / 30) < 0.0015) and np.any(np.abs(steps - 2 / 30) < 0.0015), what
            seen.add("vfr")
        else:
            rate = Fraction(v["r_frame_rate"])
            assert abs(float(rate) - r["fps"]) < 1e-4, (*what, rate)
            if abs(r["fps"] - 29.97) < 0.01:
                assert rate == Fraction(30000, 1001), what
            assert _is_regular(times, 1 / float(rate)), (*what, steps[:8])
            seen.add(f"{float(rate):.2f}")
        assert abs(times[-1] - times[0] + float(np.median(steps)) - r["duration"]) < 0.07, what

        if r["kind"] == "no_audio":
            assert sound == [], what
            continue
        assert len(sound) == 1, what
        a = sound[0]
        assert a["codec_name"] == FFPROBE_CODEC[r["acodec"]], what
        assert (int(a["sample_rate"]), a["channels"]) == (r["sample_rate"], r["channels"]), what
        seen |= {a["codec_name"], int(a["sample_rate"]), {1: "mono", 2: "stereo"}[a["channels"]]}
        x = audio(path, channels=r["channels"])
        assert abs(len(x) / r["sample_rate"] - r["duration"]) < 0.1, (*what, len(x))
        peak = float(np.max(np.abs(x)))
        if r["kind"] == "silent_audio":
            assert peak < 1e-4, (*what, peak)  # digital silence stays (near) zero through the codec
        else:
            assert peak > 1e-3, (*what, peak)  # even a "quiet" video has its -50 dBFS noise floor
    assert MUST_COVER <= seen, MUST_COVER - seen
