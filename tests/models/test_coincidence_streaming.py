"""Coincidence training streamed from a clip store: the sampler, flat memory
as the store grows, and a killed training that resumes (real TensorFlow,
real clip stores on disk, real processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from audioscope.models import coincidence as C  # noqa: E402

from .conftest import toy_videos  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _window(arrays: tuple[np.ndarray, np.ndarray], start: int) -> tuple[np.ndarray, np.ndarray]:
    audio, frames = arrays
    return audio[start * 16_000 : (start + 5) * 16_000], frames[start : start + 5]


def _reads(videos: dict) -> tuple[list[str], object]:
    log: list[str] = []

    def read(vid: str):
        log.append(vid)
        return videos[vid]

    return log, read


def test_streamed_examples_come_from_where_they_say_within_the_window() -> None:
    videos = toy_videos(10, 12, seed=4)
    cfg = C.CoincidenceConfig.tiny(window_videos=3, readahead_videos=2, shift_min_s=2, shift_max_s=5)
    log, read = _reads(videos)
    sampler = C.StreamingSampler(read, sorted(videos), cfg, seed=5)
    seen: list = []
    for ex in sampler.examples():
        seen.append(ex)
        if len(seen) == 8 * 10 * 2:  # two passes over every window (8 per 12 s video)
            break
    kinds = {e.kind for e in seen}
    assert kinds == {C.POSITIVE, C.OTHER_VIDEO, C.SHIFTED}
    for e in seen:
        _, ff = _window(videos[e.frames_video], e.frames_start_s)
        aa, _ = _window(videos[e.audio_video], e.audio_start_s)
        np.testing.assert_array_equal(e.frames, ff)
        np.testing.assert_array_equal(e.audio, aa)
        assert e.label == (1.0 if e.kind == C.POSITIVE else 0.0)
        if e.kind == C.OTHER_VIDEO:
            assert e.audio_video != e.frames_video
        elif e.kind == C.SHIFTED:
            assert e.audio_video == e.frames_video and 2 <= abs(e.audio_start_s - e.frames_start_s) <= 5
    # a pass gives each video as many examples as it has windows (8); at the
    # boundary of two passes a video may be in the window twice
    per_video = {v: sum(e.frames_video == v for e in seen) for v in videos}
    assert all(8 <= n <= 24 for n in per_video.values()) and sum(per_video.values()) == 160, per_video
    assert {e.frames_video for e in seen[: 8 * 10]} == set(videos)
    # every video was read once per pass (plus the few read ahead)
    assert sorted(log[:10]) == sorted(videos) and len(log) <= 2 * 10 + 2
    # deterministic given the seed
    again = C.StreamingSampler(_reads(videos)[1], sorted(videos), cfg, seed=5).sample(50)
    np.testing.assert_array_equal(again.audio, np.stack([e.audio for e in seen[:50]]))


def test_streaming_records_unusable_videos_and_refuses_a_store_without_usable_ones() -> None:
    videos = toy_videos(4, 8, seed=2)
    videos["short"] = (np.zeros(3 * 16_000, np.float32), np.zeros((3, 128, 128, 3), np.uint8))
    sampler = C.StreamingSampler(lambda v: videos[v], sorted(videos), C.CoincidenceConfig.tiny(), seed=0)
    batch = sampler.sample(60)
    assert "short" not in set(batch.frames_video) and sampler.skipped["short"].startswith("too_short")
    bad = {k: videos["short"] for k in ("a", "b", "c")}
    with pytest.raises(ValueError, match="none of the 3 videos can be used"):
        C.StreamingSampler(lambda v: bad[v], sorted(bad), C.CoincidenceConfig.tiny(), seed=0).sample(4)


def _make_store(root: Path, n_videos: int, seconds: int) -> Path:
    from tests.pipelines.test_score import make_store

    return make_store(root, {f"vid-{i:03d}": seconds for i in range(n_videos)}, seed=n_videos)


# TensorFlow's thread pools make a training's peak RSS vary with the threads'
# timing (peaks of one 4x store: 970, 1002, 1027 MiB); with one thread each it
# repeats to the MiB (937, 937, 937), so a difference between stores is the
# stores'. The sampler's reader threads are Python's and still read ahead.
PEAK_SCRIPT = """
import json, sys
import tensorflow as tf
tf.config.threading.set_inter_op_parallelism_threads(1)
tf.config.threading.set_intra_op_parallelism_threads(1)
from audioscope.clipstore.reader import ClipStore
from audioscope.models import coincidence as C
store, out, mode, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cfg = C.CoincidenceConfig.tiny(steps=steps, batch_size=16, eval_every=0, validation_examples=32,
                               window_videos=3, readahead_videos=2, shuffle_buffer=16, checkpoint_every=1000)
r = C.train(ClipStore.open(store), out, cfg, validation_fraction=0.25, progress=False, data=mode)
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child of a
# large pytest worker would report the worker's peak; VmHWM is this process's.
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"peak_kib": hwm, "step": r.step}))
"""


def _peak(store: Path, out: Path, mode: str, steps: int = 70) -> int:
    done = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(store), str(out), mode, str(steps)], cwd=REPO,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["step"] == steps
    return int(got["peak_kib"]) * 1024


@pytest.mark.integration
def test_peak_memory_stays_flat_when_the_store_grows_four_times(tmp_path: Path) -> None:
    """6 and 24 videos of 60 s (70 steps of 16 pass over every training
    window of the larger store): the streaming trainer's peak RSS does not
    follow the store, while loading it into memory does (the media added is
    ~120 MB)."""
    small = _make_store(tmp_path / "small", 6, 60)
    large = _make_store(tmp_path / "large", 24, 60)
    decoded_per_video = 60 * 16_000 * 4 + 60 * 128 * 128 * 3  # float32 audio + uint8 frames
    extra = 18 * decoded_per_video  # ~117 MiB more media in the larger store
    stream_small = _peak(small, tmp_path / "m1", "stream")
    stream_large = _peak(large, tmp_path / "m2", "stream")
    memory_large = _peak(large, tmp_path / "m3", "memory", steps=1)  # it loads every video before step 1
    print(f"peak RSS MiB: stream 1x {stream_small / 2**20:.0f}, stream 4x {stream_large / 2**20:.0f}, "
          f"memory 4x {memory_large / 2**20:.0f}; media added {extra / 2**20:.0f}")
    # streaming: the growth is a small part of the added media (a window of 3
    # videos + 2 read ahead is the same for both stores)
    assert stream_large - stream_small < 0.25 * extra, (stream_small, stream_large, extra)
    # the measurement sees media held in memory: loading the store does show
    assert memory_large - stream_large > 0.5 * extra, (memory_large, stream_large, extra)


def _train_cmd(store: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "audioscope", "coincidence", "train", "--store", str(store), "--out", str(out),
            "--tiny", "--steps", "200", "--batch-size", "8", "--time-budget", "none",
            "--other-match-db", "10", "--shift-onoff-db", "6"]  # fmt: skip


def _saved_at_100(state: Path) -> bool:
    """Whether the checkpoint state file names ckpt-100. TensorFlow names a checkpoint there only once all
    its files are written: ckpt-100.index alone can appear before the checkpoint is whole."""
    return state.exists() and '"ckpt-100"' in state.read_text()


@pytest.mark.integration
def test_a_killed_training_resumes_from_its_checkpoint_with_its_options(tmp_path: Path) -> None:
    store = _make_store(tmp_path / "store", 8, 12)
    out = tmp_path / "model"
    state = tmp_path / "model.run" / "checkpoints" / "checkpoint"
    system_tmp = tmp_path / "system-tmp"  # the machine's temporary folder, as the training sees it
    system_tmp.mkdir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(system_tmp)}
    first = subprocess.Popen(_train_cmd(store, out), cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 900
        while not _saved_at_100(state) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _saved_at_100(state), "no checkpoint at step 100"
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.wait()
    assert not out.exists()  # killed before the end: no model folder, not even a partial one
    # TensorFlow's traced code, which only an exit handler removes, went to the run folder, not the system's
    assert not list(system_tmp.glob("__autograph_generated_file*"))
    assert list((tmp_path / "model.run" / ".tmp").glob("__autograph_generated_file*"))

    again = subprocess.run(_train_cmd(store, out), cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming" in again.stderr
    # TensorFlow was loaded and a model trained: none of its start-up lines in the output
    for noise in ("oneDNN custom operations", "absl::InitializeLog", "cpu_feature_guard"):
        assert noise not in again.stderr + again.stdout
    card = json.loads((out / "model_card.json").read_text())
    assert card["training"]["steps"] == 200
    # the negatives' options of the command reach the model (and its card)
    assert card["config"]["other_match_db"] == 10 and card["config"]["shift_onoff_db"] == 6
    assert card["training"]["resumed_from_step"] >= 100
    history = [m["step"] for m in card["training"]["validation_history"]]
    assert history == sorted(set(history)) and history[-1] == 200 and 100 in history
    # the run's state is kept for TensorBoard; starting once more is refused (a model is never overwritten)
    assert (tmp_path / "model.run" / "tensorboard").is_dir()
    assert not (tmp_path / "model.run" / ".tmp").exists() and not list(system_tmp.glob("__autograph*"))
    third = subprocess.run(_train_cmd(store, out), cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert third.returncode == 2 and "already exists" in third.stderr


@pytest.mark.integration
def test_sigterm_stops_training_as_ctrl_c_does_with_a_checkpoint_first(tmp_path: Path) -> None:
    """A scheduler's SIGTERM (preemption, `timeout`, `kill`) checkpoints the step reached and says so; before,
    the process died at once and the steps since the last periodic checkpoint were lost."""
    import re

    store = _make_store(tmp_path / "store", 8, 12)
    state = tmp_path / "model.run" / "checkpoints" / "checkpoint"
    proc = subprocess.Popen(_train_cmd(store, tmp_path / "model"), cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 900
        while not _saved_at_100(state) and proc.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint at step 100"
            time.sleep(0.2)
        time.sleep(1.0)  # some steps past the periodic checkpoint
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=120)[1]
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 143, err[-3000:]
    assert err.strip().splitlines()[-1] == (
        "audioscope coincidence: stopped by SIGTERM. Finished work is kept; run the same command again to resume."
    )
    latest = re.search(r'^model_checkpoint_path: "ckpt-(\d+)"', state.read_text(), re.M)
    assert latest and int(latest.group(1)) > 100  # the step reached was saved on the way out


@pytest.mark.integration
def test_streaming_reads_a_gs_store_through_the_clip_store_reader(tmp_path: Path) -> None:
    """The same store on the GCS emulator (a real GCS API on 127.0.0.1) gives the same examples."""
    import uuid

    from audioscope import storage
    from audioscope.clipstore.reader import ClipStore
    from tests.gcs_emulator import GcsEmulator, pointed_at

    local = _make_store(tmp_path / "store", 4, 9)
    cfg = C.CoincidenceConfig.tiny(window_videos=2, readahead_videos=2)
    ids = sorted({str(v) for v in ClipStore.open(str(local)).index["video_id"]})
    expected = C.StreamingSampler(C.video_reader(ClipStore.open(str(local))), ids, cfg, seed=3).sample(24)
    with GcsEmulator(bucket="clips") as emu, pointed_at(emu.url):
        root = f"gs://clips/{uuid.uuid4().hex[:8]}"
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            storage.atomic_write(storage.join(root, path.relative_to(local).as_posix()), path.read_bytes())
        remote = ClipStore.open(root)
        got = C.StreamingSampler(C.video_reader(remote), C.video_ids(remote), cfg, seed=3).sample(24)
    assert got.frames_video == expected.frames_video and got.audio_video == expected.audio_video
    np.testing.assert_array_equal(got.audio, expected.audio)
    np.testing.assert_array_equal(got.frames, expected.frames)
