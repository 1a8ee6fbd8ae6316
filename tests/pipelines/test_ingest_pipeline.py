"""The ingest pipeline end to end: real ffmpeg, real Beam runners, real files."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import wave
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pytest

from audioscope import cli
from audioscope.clipstore import ClipStore
from audioscope.clipstore.format import Layout, sliding_windows

from ..http_servers import serving
from .videos import av_video, make_corpus

pytestmark = pytest.mark.integration


def ingest(list_path: Path, store: Path, *extra: str) -> int:
    return cli.main(["ingest", str(list_path), "--out", str(store), "--poll", "0.2", *extra])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return make_corpus(root)


@pytest.fixture(scope="module")
def store(corpus, tmp_path_factory):
    """One DirectRunner ingest of the corpus, shared by the read-only tests."""
    lst, _ = corpus
    out = tmp_path_factory.mktemp("store") / "store"
    assert ingest(lst, out) == 0
    return out


def _index_table(store: Path) -> pd.DataFrame:
    return ClipStore.open(str(store)).index


def test_every_video_ends_with_a_status_and_good_ones_give_clips(corpus, store, capsys):
    _, cases = corpus
    cs = ClipStore.open(str(store))
    status = cs.status.set_index("video_id")
    for case in cases:
        vid = Path(case.name).stem
        row = status.loc[vid]
        if case.expected == "ok":
            assert row["status"] == "ok", (vid, row["kind"], row["message"])
            assert row["n_clips"] == case.clips
        else:
            assert row["status"] == "failed"
            assert row["kind"] == case.expected, (vid, row["message"])
            assert row["message"]
    idx = cs.index
    assert len(idx) == sum(c.clips for c in cases)
    assert list(idx["clip_id"]) == sorted(idx["clip_id"])
    good = idx[idx["video_id"] == "good_h264"]
    assert list(zip(good["start"], good["end"])) == sliding_windows(8)
    assert (good["source_uri"].str.endswith("videos/good_h264.mp4")).all()
    summary = cs.summary
    assert summary["videos"] == len(cases) and summary["clips"] == len(idx)
    assert summary["failures_by_kind"] == {"corrupt": 2, "no_audio": 1, "unsupported_format": 1}
    # Each stored second costs at most 1/8 of a naive clip (float32 audio +
    # raw frames): for long videos (one clip per second) the store is at least
    # 8x smaller than the naive one. These 6-8 s videos have fewer clips than
    # stored seconds, so their own ratio is lower but still well above 1/5.
    assert summary["compression_vs_naive_long_videos"] >= 8
    assert summary["compression_vs_naive"] >= 5


def test_reader_returns_clips_in_the_recipe_shapes(store):
    cs = ClipStore.open(str(store))
    clip = cs.clip("good_h264-0002000")
    assert clip.audio.shape == (80000,) and clip.audio.dtype == np.float32
    assert np.abs(clip.audio).max() <= 1.0 and np.abs(clip.audio).max() > 0.05
    assert clip.frames.shape == (5, 128, 128, 3) and clip.frames.dtype == np.uint8
    audio, frames = cs.video("good_h264")
    assert np.array_equal(audio[2 * 16000 : 7 * 16000], clip.audio)
    assert np.array_equal(frames[2:7], clip.frames)
    clips = list(cs.iter_clips())
    assert [c.clip_id for c in clips] == list(cs.index["clip_id"])
    only = list(cs.iter_clips(["good_vp8"]))
    assert [c.start for c in only] == [0.0, 1.0, 2.0]
    with pytest.raises(KeyError, match="clips list"):
        cs.clip("nope-0000000")


def test_iter_clips_reads_each_video_shard_once(store, monkeypatch):
    from audioscope.clipstore import reader

    reads: list[str] = []
    real = reader.storage.read_bytes

    def counting(uri):
        if "/media/" in str(uri):  # store.json and summary.json are read too
            reads.append(str(uri))
        return real(uri)

    cs = ClipStore.open(str(store))
    _ = cs.index
    monkeypatch.setattr(reader.storage, "read_bytes", counting)
    n = sum(1 for _ in cs.iter_clips())
    assert n == 9
    assert len(reads) == 3 and len(set(reads)) == 3
    assert all(r.endswith(".npz") for r in reads)


def test_clips_command(store, tmp_path, capsys):
    assert cli.main(["clips", "list", "--store", str(store), "--format", "csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("clip_id,video_id,start,end")
    assert len(out) == 1 + 9
    assert cli.main(["clips", "list", "--status", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "no_audio" in out and "noaudio" in out
    assert cli.main(["clips", "export", "good_vp8-0001000", "--store", str(store), "--out", str(tmp_path / "x")]) == 0
    with wave.open(str(tmp_path / "x" / "audio.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (16000, 1, 2, 80000)
    assert sorted(os.listdir(tmp_path / "x")) == ["audio.wav"] + [f"frame_{i}.png" for i in range(5)]
    from PIL import Image

    with Image.open(tmp_path / "x" / "frame_4.png") as img:
        assert img.size == (128, 128) and img.mode == "RGB"
    assert cli.main(["clips", "stats", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "bytes per clip-second" in out and "no_audio=1" in out
    assert cli.main(["clips", "export", "missing-0000000", "--store", str(store), "--out", str(tmp_path / "y")]) == 2
    assert "clips list" in capsys.readouterr().err
    assert cli.main(["clips", "stats", "--store", str(tmp_path / "nothing")]) == 2
    assert "audioscope ingest" in capsys.readouterr().err


def test_rerun_resumes_without_redoing_anything(corpus, tmp_path, capsys):
    lst, _ = corpus
    out = tmp_path / "store"
    assert ingest(lst, out) == 0
    layout = Layout(str(out))
    records = {p: p.read_text() for p in Path(layout.status_dir).rglob("*.json")}
    media = {p: p.stat().st_mtime_ns for p in Path(out, "media").rglob("*.npz")}
    first = _index_table(out)
    first_status = ClipStore.open(str(out)).status
    assert ingest(lst, out) == 0
    # nothing re-decoded: status records (with their finished_at) and media untouched
    assert {p: p.read_text() for p in Path(layout.status_dir).rglob("*.json")} == records
    assert {p: p.stat().st_mtime_ns for p in Path(out, "media").rglob("*.npz")} == media
    pd.testing.assert_frame_equal(_index_table(out), first)
    pd.testing.assert_frame_equal(ClipStore.open(str(out)).status, first_status)
    # a different parameter is refused with a message saying what to do
    assert ingest(lst, out, "--aspect", "crop") == 2
    assert "new --out" in capsys.readouterr().err


def test_retry_failed_redoes_permanent_failures_only(corpus, tmp_path):
    lst, _ = corpus
    out = tmp_path / "store"
    assert ingest(lst, out) == 0
    layout = Layout(str(out))
    ok_before = Path(layout.status("good_h264")).read_text()
    failed_before = json.loads(Path(layout.status("noaudio")).read_text())
    time.sleep(1.1)  # finished_at has one-second resolution
    assert ingest(lst, out, "--retry-failed") == 0
    assert Path(layout.status("good_h264")).read_text() == ok_before
    failed_after = json.loads(Path(layout.status("noaudio")).read_text())
    assert failed_after["finished_at"] != failed_before["finished_at"]
    assert failed_after["kind"] == "no_audio"


def _many_videos(root: Path, n: int) -> Path:
    v = root / "videos"
    v.mkdir(parents=True)
    for i in range(n):
        av_video(v / f"v{i:02d}.mp4", duration=7 + i % 3, size="320x240")
    lst = root / "list.txt"
    lst.write_text("".join(f"videos/v{i:02d}.mp4\n" for i in range(n)))
    return lst


def _all_clips(store: Path) -> dict[str, tuple[bytes, bytes]]:
    cs = ClipStore.open(str(store))
    return {c.clip_id: (c.audio.tobytes(), c.frames.tobytes()) for c in cs.iter_clips()}


def _wait_for_a_finished_video(proc: subprocess.Popen, status_dir: Path) -> None:
    """Until the run ``proc`` has written its first video status (or ended, or 2 minutes passed)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if status_dir.exists() and any(status_dir.rglob("*.json")):
            break
        time.sleep(0.02)


def test_sigkill_midway_then_rerun_gives_the_same_clips(tmp_path):
    lst = _many_videos(tmp_path / "c", 8)
    reference = tmp_path / "reference"
    assert ingest(lst, reference) == 0

    killed = tmp_path / "killed"
    system_tmp = tmp_path / "system-tmp"  # the machine's temporary folder, as the commands see it
    system_tmp.mkdir()
    command = [sys.executable, "-m", "audioscope", "ingest", str(lst), "--out", str(killed), "--poll", "0.2"]
    env = {**os.environ, "TMPDIR": str(system_tmp)}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    status_dir = killed / "status"
    _wait_for_a_finished_video(proc, status_dir)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_at_kill = len(list(status_dir.rglob("*.json")))
    assert 1 <= done_at_kill < 8, "the run was not killed midway"
    assert not (killed / "summary.json").exists()
    # a reader refuses the unfinished store and says how to finish it
    with pytest.raises(Exception, match="run `audioscope ingest"):
        ClipStore.open(str(killed))
    # everything the killed run left in the temporary folder (its list's table, its pool's scratch, Beam's
    # pipeline folder) is in its one scratch folder, which the next command removes
    (left,) = system_tmp.iterdir()
    assert left.name.startswith("audioscope-run-") and any(left.iterdir())

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert list(system_tmp.iterdir()) == []
    assert _all_clips(killed) == _all_clips(reference)
    pd.testing.assert_frame_equal(_index_table(killed), _index_table(reference))
    leftovers = [p for p in killed.rglob("*") if p.name.startswith(".")]
    assert leftovers == [] or all(p.suffix == ".tmp" for p in leftovers)


def _session_processes(sid: int, naming: str = "") -> list[str]:
    """Command lines of the live processes of session ``sid`` (zombies not counted), or of any session
    with ``naming`` in their command line."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if (int(fields[3]) == sid or (naming and naming in cmdline)) and fields[0] != "Z":
            found.append(cmdline)
    return found


@contextlib.contextmanager
def _served(folder: Path, held: str, gate: threading.Event) -> Iterator[str]:
    """``folder`` over HTTP on 127.0.0.1 (yields its URL); the answer for ``held`` waits until ``gate``
    is set (a stalled download)."""

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            if self.path.endswith(held):
                gate.wait(120)
            super().do_GET()

    with serving(Handler) as url:
        try:
            yield url
        finally:
            gate.set()  # a held answer ends before the server does


@pytest.mark.parametrize(
    "sig,workers,code,said",
    [(signal.SIGTERM, "2", 143, "stopped by SIGTERM"), (signal.SIGINT, "1", 130, "interrupted")],
    ids=["sigterm-pool", "ctrl-c-one-worker"],
)
def test_a_stopped_run_cleans_up_says_so_and_resumes(sig, workers, code, said, tmp_path):
    """SIGTERM (a scheduler, `timeout`, `kill`) stops a run as Ctrl-C does: before, it died where it stood,
    leaving the pool's processes running and its scratch in the temporary directory; and Ctrl-C with one
    worker (the DoFn in the main thread, where Beam wraps the interrupt in a RuntimeError) ended in a
    traceback. The last video is a download that stalls until the signal is sent, so the run cannot end
    first (it had, on a busy machine: exit 0 where a stop was expected)."""
    _many_videos(tmp_path / "c", 8)
    gate = threading.Event()
    with _served(tmp_path / "c" / "videos", "v07.mp4", gate) as url:
        lst = tmp_path / "list.txt"
        lst.write_text("".join(f"{url}/v{i:02d}.mp4\n" for i in range(8)))
        _stop_then_resume(lst, sig, workers, code, said, gate, tmp_path)


def _stop_then_resume(lst: Path, sig: signal.Signals, workers: str, code: int, said: str, gate: threading.Event,
                      tmp_path: Path) -> None:  # fmt: skip
    reference = tmp_path / "reference"
    gate.set()
    assert ingest(lst, reference) == 0
    gate.clear()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    stopped = tmp_path / "stopped"
    proc = subprocess.Popen(
        [sys.executable, "-m", "audioscope", "ingest", str(lst), "--out", str(stopped), "--workers", workers],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "TMPDIR": str(scratch)},
    )  # fmt: skip
    status_dir = stopped / "status"
    _wait_for_a_finished_video(proc, status_dir)
    proc.send_signal(sig)  # the launcher alone, not its process group
    err = proc.communicate(timeout=60)[1]
    try:
        assert proc.returncode == code, err
        assert "Traceback" not in err and err.strip().splitlines()[-1] == (
            f"audioscope ingest: {said}. Finished work is kept; run the same command again to resume."
        )
        assert not (stopped / "summary.json").exists()  # stopped before the end
        deadline = time.monotonic() + 10
        while _session_processes(proc.pid, str(scratch)) and time.monotonic() < deadline:
            time.sleep(0.1)
        # the pool, its fork server and ffmpeg (in a session of its own, its files in the scratch) are gone too
        assert _session_processes(proc.pid, str(scratch)) == []
        assert sorted(p.name for p in scratch.iterdir()) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    gate.set()
    assert ingest(lst, stopped) == 0
    pd.testing.assert_frame_equal(_index_table(stopped), _index_table(reference))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_portable_runner_and_multiprocessing_give_the_same_index(corpus, store, tmp_path):
    lst, _ = corpus
    reference = _index_table(store)

    multi = tmp_path / "multi"
    assert ingest(lst, multi, "--", "--direct_running_mode=multi_processing", "--direct_num_workers=2") == 0
    pd.testing.assert_frame_equal(_index_table(multi), reference)

    port = _free_port()
    job_server = subprocess.Popen(
        [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        portable = tmp_path / "portable"
        rc = ingest(
            lst, portable, "--", "--runner=PortableRunner", f"--job_endpoint=localhost:{port}",
            "--environment_type=LOOPBACK",
        )
        assert rc == 0
        pd.testing.assert_frame_equal(_index_table(portable), reference)
        assert ClipStore.open(str(portable)).summary["failures_by_kind"] == ClipStore.open(str(store)).summary["failures_by_kind"]
    finally:
        job_server.terminate()
        job_server.wait(timeout=30)


def test_an_empty_list_still_gives_a_complete_empty_store(tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text("")
    out = tmp_path / "store"
    assert ingest(lst, out) == 0
    cs = ClipStore.open(str(out))
    assert len(cs.index) == 0 and len(cs.status) == 0
    assert cs.summary["videos"] == 0 and cs.summary["index_files"] == ["clips-00000-of-00001.parquet"]


def test_a_second_list_into_the_same_store_keeps_the_first(corpus, store, tmp_path):
    lst, _ = corpus
    out = tmp_path / "store"
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    lines = lst.read_text().splitlines()
    first.write_text(lines[0] + "\n")
    second.write_text("\n".join(lines[1:]) + "\n")
    root = str(lst.parent)
    assert ingest(first, out, "--media-root", root) == 0
    assert ingest(second, out, "--media-root", root) == 0
    both = _index_table(out)
    assert set(both.video_id) == set(_index_table(store).video_id)
    assert len(ClipStore.open(str(out)).status) == len(ClipStore.open(str(store)).status)


@pytest.mark.parametrize(
    "flags", [["--runner=DataflowRunner", "--project=p"], ["--runner=PortableRunner", "--environment_type=EXTERNAL"]]
)
def test_a_list_of_files_here_with_remote_workers_is_refused_at_launch(tmp_path, capsys, flags):
    """Workers elsewhere cannot read this machine's files: one line naming the first such row, before any
    video is handed out, and no request shard left in the store (on the GCS emulator, as on Dataflow)."""
    from audioscope import storage
    from tests.gcs_emulator import GcsEmulator, pointed_at

    lst = tmp_path / "list.txt"
    lst.write_text("gs://media/a.mp4\nhttps://example.invalid/b.mp4\nvideos/c.mp4\n")
    with GcsEmulator(bucket="stores") as emu, pointed_at(emu.url):
        assert ingest(lst, "gs://stores/s", "--", *flags) == 2  # type: ignore[arg-type]
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in err, err
        assert f"{tmp_path}/videos/c.mp4 is a file on this machine" in lines[0] and "gs://" in lines[0], lines[0]
        assert flags[0].split("=")[1] in lines[0], lines[0]
        assert storage.glob("gs://stores/s/requests/*") == []
