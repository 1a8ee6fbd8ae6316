"""On the local runner `--workers N` hands the per-video work to one shared
pool of N processes (dynamic assignment) instead of the runner's static split
between threads. Same outputs, byte for byte, as the in-process workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from apache_beam.utils.windowed_value import WindowedValue

from audioscope import cli
from audioscope.clipstore import ClipStore
from audioscope.clipstore.format import Layout, StoreParams, init_store
from audioscope.clipstore.writer import STATUS_FAILED, IngestSettings, read_status
from audioscope.pipelines import ingest, ingest_beam, ingest_pool
from audioscope.sources.lists import VideoRequest

from .videos import make_corpus


def test_the_pool_takes_the_work_only_for_in_process_local_workers():
    threads = ["--direct_num_workers=4", "--direct_running_mode=multi_threading"]
    assert ingest.local_pool_size(threads) == 4
    assert ingest.local_pool_size(["--runner=DirectRunner", *threads]) == 4
    # one worker: IngestVideo in the launcher, as before
    assert ingest.local_pool_size(["--direct_num_workers=1", "--direct_running_mode=multi_threading"]) is None
    assert ingest.local_pool_size([]) is None
    # the runner's own worker processes, and every other runner, run IngestVideo themselves
    assert ingest.local_pool_size(["--direct_num_workers=2", "--direct_running_mode=multi_processing"]) is None
    assert ingest.local_pool_size(["--runner=PortableRunner", *threads]) is None
    assert ingest.local_pool_size(["--runner=DataflowRunner", *threads]) is None


def test_the_runner_keeps_few_threads_when_the_pool_takes_the_work():
    """The pool's processes do the per-video work; the DirectRunner's threads only feed it and run
    the index's light stages, and each costs start-up: capped, the pool keeps --workers."""
    mode = "--direct_running_mode=multi_threading"
    assert ingest_pool.runner_args(["--direct_num_workers=16", mode]) == [mode, "--direct_num_workers=2"]
    spaced = ["--direct_num_workers", "16", mode, "--x=1"]
    assert ingest_pool.runner_args(spaced) == [mode, "--x=1", "--direct_num_workers=2"]
    capped = ingest_pool.runner_args(["--direct_num_workers=16", mode])
    assert ingest.local_pool_size(capped) == ingest_pool.RUNNER_THREADS
    processes = ["--direct_num_workers=8", "--direct_running_mode=multi_processing"]
    dataflow = ["--runner=DataflowRunner", "--direct_num_workers=8", mode]
    for unchanged in (["--direct_num_workers=2", mode], processes, dataflow, []):
        assert ingest_pool.runner_args(unchanged) == unchanged


def test_the_launcher_hands_out_the_first_videos_before_beam_loads():
    """Importing Beam takes about a second: the launcher and its pool do not import it, so the pool's
    processes decode the first videos meanwhile; only the pipeline's module does."""
    import subprocess
    import sys

    code = ("import sys; import audioscope.pipelines.ingest, audioscope.pipelines.ingest_cli, "
            "audioscope.pipelines.ingest_pool; print('apache_beam' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
    assert ingest.EARLY_PER_PROCESS >= 1


def _line(video_id: str, uri: str) -> str:
    return VideoRequest(
        video_id=video_id, uri=uri, origin=f"list.txt:{video_id}",
        spans=None, split=None, licence_name=None, licence_url=None,
    ).to_json()


def test_two_runner_threads_share_one_pool_and_every_video_comes_out_once(tmp_path):
    """As the runner's threads do with their static halves: one instance gets one
    video, the other seven; both feed the same pool, nothing is lost or doubled."""
    store = tmp_path / "store"
    layout = Layout(str(store))
    init_store(layout, StoreParams())
    settings = IngestSettings(store=str(store), params=StoreParams())
    ids = [f"v{i}" for i in range(8)]
    lines = [_line(v, str(tmp_path / f"{v}.mp4")) for v in ids]  # no such files: failed quickly
    a, b = ingest_beam.IngestVideoInPool(settings, 2), ingest_beam.IngestVideoInPool(settings, 2)
    try:
        # the launcher hands the first videos over before the pipeline runs
        ingest_pool.submit_early(2, settings, [lines[0], lines[5]])
        assert sorted(ingest_pool._early) == sorted([lines[0], lines[5]])
        a.setup(), b.setup()
        assert a._executor is b._executor, "one pool per launcher, whatever the runner's threads"
        assert a._executor._max_workers == ingest_pool.pool_processes(2) == 2 * ingest_pool.PROCESSES_PER_WORKER
        out: list[str] = []
        for fn, part in ((a, lines[:1]), (b, lines[1:])):
            fn.start_bundle()
            for line in [*part, "  "]:  # a blank line is no request
                out.extend(fn.process(line))
        for fn in (a, b):
            tail = list(fn.finish_bundle())
            assert all(isinstance(w, WindowedValue) for w in tail)
            out.extend(w.value for w in tail)
        workdir = a._workdir
        assert ingest_pool._early == {}, "the DoFn took the early videos' results instead of submitting them again"
    finally:
        ingest.close_local_pool()
    assert sorted(out) == ids
    for v in ids:
        record = read_status(layout, v)
        assert record is not None and record.status == STATUS_FAILED and record.kind == "not_found", record
    assert not Path(workdir).exists(), "the pool's scratch folder is removed with it"
    assert ingest_pool._pool is None


def _files(store: Path, *, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    return {
        str(p.relative_to(store)): p.read_bytes()
        for p in sorted(store.rglob("*"))
        if p.is_file() and not str(p.relative_to(store)).startswith(skip)
    }


@pytest.mark.integration
def test_pool_and_in_process_workers_write_the_same_store(tmp_path):
    lst, _ = make_corpus(tmp_path / "corpus")
    one, pool = tmp_path / "one", tmp_path / "pool"
    common = ["--poll", "0", "--ffmpeg-threads", "1"]
    assert cli.main(["ingest", str(lst), "--out", str(one), "--workers", "1", *common]) == 0
    assert cli.main(["ingest", str(lst), "--out", str(pool), "--workers", "3", *common]) == 0
    # media shards, index shards, status table, request shards: byte for byte
    # (status/*.json and summary.json carry wall-clock times)
    skip = ("status/", "summary.json")
    a, b = _files(one, skip=skip), _files(pool, skip=skip)
    assert any(k.startswith("media/") for k in a) and "index/status.parquet" in a
    assert any(k.startswith("index/clips-") for k in a) and any(k.startswith("index/parts/") for k in a)
    assert sorted(a) == sorted(b)
    assert [k for k in a if a[k] != b[k]] == ["store.json"]  # each store has its own id
    meta_one, meta_pool = json.loads(a["store.json"]), json.loads(b["store.json"])
    assert meta_one.pop("store_id") != meta_pool.pop("store_id")
    assert meta_one == meta_pool
    assert sorted(p.name for p in (one / "status").rglob("*.json")) == sorted(p.name for p in (pool / "status").rglob("*.json"))
    s1, s2 = (json.loads((s / "summary.json").read_text()) for s in (one, pool))
    for s in (s1, s2):
        assert s.pop("wall_seconds") > 0 and s.pop("finished_at") and s.pop("started_at")
    assert s1 == s2 and s1["clips"] > 0
    assert ingest_pool._pool is None, "the pool is stopped when the run ends"


@pytest.mark.integration
def test_a_runner_that_drops_the_pools_last_outputs_loses_no_video(tmp_path, monkeypatch, capsys):
    """What a runner drops from finish_bundle (DaskRunner does) were videos the pool
    already finished: their status records exist, so the index still has them.
    Videos the pool never got are reported, never exit 0."""
    from concurrent.futures import wait

    from .videos import av_video

    media = tmp_path / "media"
    media.mkdir()
    for name in ("a", "b", "c"):
        av_video(media / f"{name}.mp4", duration=6)
    lst = tmp_path / "l.txt"
    lst.write_text("a.mp4\nb.mp4\nc.mp4\n")
    args = ["ingest", str(lst), "--media-root", str(media), "--poll", "0", "--workers", "2"]

    def drop_after_waiting(self):
        wait(self._in_flight)  # the videos are finished, their ids never reach the runner
        return iter(())

    monkeypatch.setattr(ingest_beam.IngestVideoInPool, "finish_bundle", drop_after_waiting)
    assert cli.main([*args, "--out", str(tmp_path / "s1")]) == 0
    assert sorted(ClipStore.open(str(tmp_path / "s1")).index["video_id"].unique()) == ["a", "b", "c"]

    # a runner that loses the requests before the pool gets them: exit non-zero, a re-run completes
    monkeypatch.setattr(ingest_beam.IngestVideoInPool, "process", lambda self, line: iter(()))
    monkeypatch.setattr(ingest, "EARLY_PER_PROCESS", 0)
    assert cli.main([*args, "--out", str(tmp_path / "s2")]) == 1
    assert "not finished" in capsys.readouterr().err
    monkeypatch.undo()
    assert cli.main([*args, "--out", str(tmp_path / "s2")]) == 0
    assert sorted(ClipStore.open(str(tmp_path / "s2")).index["video_id"].unique()) == ["a", "b", "c"]


@pytest.mark.integration
def test_the_pool_runs_one_ffmpeg_per_worker_at_a_time(tmp_path, monkeypatch):
    """Two processes per worker (so that no core waits on Python work), but no more ffmpeg runs at
    once than workers (more cost 7-10% more CPU per video on real footage), and as many as workers
    whatever threads the runner has. An ffmpeg stand-in on
    PATH logs when each run starts and ends (and lingers, so that runs would overlap)."""
    import os
    import shutil

    from .videos import av_video

    media = tmp_path / "media"
    media.mkdir()
    for i in range(8):
        av_video(media / f"v{i}.mp4", duration=6)
    (tmp_path / "l.txt").write_text("".join(f"v{i}.mp4\n" for i in range(8)))
    log, bin_dir = tmp_path / "ffmpeg.log", tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ffmpeg").write_text(
        f"#!/bin/sh\necho \"+ $(date +%s%N)\" >> {log}\nsleep 0.3\n{shutil.which('ffmpeg')} \"$@\"\nrc=$?\n"
        f"echo \"- $(date +%s%N)\" >> {log}\nexit $rc\n"
    )
    (bin_dir / "ffmpeg").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    assert ingest_pool._pool is None  # the pool's processes start with this PATH
    args = ["ingest", str(tmp_path / "l.txt"), "--media-root", str(media), "--out", str(tmp_path / "s"),
            "--poll", "0", "--workers", "3"]  # fmt: skip
    runner_flags: list[list[str]] = []
    pipeline = ingest_beam.new_pipeline
    monkeypatch.setattr(ingest_beam, "new_pipeline", lambda a: runner_flags.append(list(a)) or pipeline(a))
    assert cli.main(args) == 0
    # the runner has 2 threads, the pool 3 workers: the pool alone decides how many videos decode at once
    assert [flag for flag in runner_flags[0] if "num_workers" in flag] == ["--direct_num_workers=2"]
    assert ClipStore.open(str(tmp_path / "s")).index["video_id"].nunique() == 8
    events = sorted((int(t), 1 if sign == "+" else -1) for sign, t in (line.split() for line in log.read_text().splitlines()))
    running, most = 0, 0
    for _, step in events:
        running += step
        most = max(most, running)
    assert len(events) == 16 and most == 3, f"{most} ffmpeg runs at once with 3 workers (6 processes)"


def test_the_pools_processes_start_with_the_per_video_code_imported(tmp_path):
    """The fork server imports what a video needs once (PyAV included): a process's first video
    does not import the media stack again (PyAV took ~36 ms per process)."""
    import ast
    import subprocess
    import sys

    from .videos import av_video

    video = av_video(tmp_path / "v.mp4", duration=2)
    code = (
        "import importlib, sys\n"
        "from audioscope.pipelines.ingest_pool import POOL_PRELOAD\n"
        "for m in POOL_PRELOAD: importlib.import_module(m)\n"
        "before = set(sys.modules)\n"
        "from audioscope.media import probe\n"
        f"probe({str(video)!r})\n"
        "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in ('av', 'numpy')))\n"
    )
    imported = ast.literal_eval(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    # (a probe may still load one of PyAV's small submodules, such as av.subtitles, on first use)
    assert not {"av", "av._core", "av.container", "numpy"} & set(imported), imported


def test_the_fork_server_boots_before_the_launcher_imports_the_per_video_code():
    """`audioscope ingest --workers N` starts the pool's fork server first thing, so that it imports the
    per-video code while the launcher imports its own; the pool then forks from that same server."""
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        "from multiprocessing import forkserver\n"
        "from audioscope.pipelines import ingest_pool\n"
        "print('audioscope.clipstore.writer' in sys.modules)\n"  # the pool module alone is light
        "ingest_pool.boot_fork_server()\n"
        "booted = forkserver._forkserver._forkserver_pid\n"
        "executor, _ = ingest_pool.local_pool(1)\n"
        "pid = executor.submit(os.getppid).result()\n"  # a pool process's parent: the fork server
        "print(booted is not None and pid == booted == forkserver._forkserver._forkserver_pid)\n"
        "ingest_pool.close_local_pool()\n"
        "print(forkserver._forkserver._forkserver_pid)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["False", "True", "None"]
    assert "audioscope.clipstore.writer" in ingest_pool.POOL_PRELOAD


@pytest.mark.integration
def test_the_pool_starts_under_a_temporary_directory_too_long_for_a_unix_socket(tmp_path):
    """The fork server listens on a Unix socket in the temporary directory; a batch job's
    long TMPDIR made the socket's path longer than the 107 bytes Unix allows, and ingest
    ended in a traceback ("AF_UNIX path too long")."""
    import os
    import subprocess
    import sys

    from .videos import av_video

    av_video(tmp_path / "v.mp4", duration=6)
    (tmp_path / "list.txt").write_text("v.mp4\n")
    long_tmp = tmp_path / ("scratch-of-a-batch-job-" + "x" * 80)
    long_tmp.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "audioscope", "ingest", str(tmp_path / "list.txt"), "--out", str(tmp_path / "store"),
         "--workers", "2"],
        capture_output=True, text=True, env={**os.environ, "TMPDIR": str(long_tmp)},
    )  # fmt: skip
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert len(ClipStore.open(str(tmp_path / "store")).index) == 2
    assert list(long_tmp.iterdir()) == []


@pytest.mark.integration
def test_a_script_without_a_main_guard_runs_once_not_again_in_every_pool_process(tmp_path):
    """A researcher's plain script that calls ingest from Python, with no ``if __name__ == "__main__":``:
    the pool's processes ran the whole script again (multiprocessing's fork server re-imports the
    parent's main script in each child), each tried a nested ingest, and the run ended in a
    BrokenProcessPool traceback."""
    import subprocess
    import sys

    from .videos import av_video

    for name in ("a", "bb"):
        av_video(tmp_path / f"{name}.mp4", duration=6)
    (tmp_path / "list.txt").write_text("a.mp4\nbb.mp4\n")
    script = tmp_path / "my_ingest.py"
    script.write_text(
        "from audioscope import cli\n"
        f"with open({str(tmp_path / 'ran.txt')!r}, 'a') as fh:\n"
        "    fh.write('ran\\n')\n"
        f"code = cli.main(['ingest', {str(tmp_path / 'list.txt')!r}, '--store', {str(tmp_path / 'store')!r}, "
        "'--workers', '2'])\n"
        "print('exit', code)\n"
    )
    for how in ([str(script)], ["-m", "my_ingest"]):  # as a script, and as a module (python -m)
        proc = subprocess.run([sys.executable, *how], capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stdout.splitlines()[-1] == "exit 0"
    assert (tmp_path / "ran.txt").read_text() == "ran\n" * 2  # once per run, never in a pool process
    assert len(ClipStore.open(str(tmp_path / "store")).index) == 4


def test_an_ingest_that_fails_before_its_pool_starts_leaves_no_fork_server(tmp_path, capsys):
    from multiprocessing import forkserver

    rc = cli.main(["ingest", str(tmp_path / "missing.csv"), "--store", str(tmp_path / "store"), "--workers", "2"])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
    assert forkserver._forkserver._forkserver_pid is None


def test_the_index_stage_reshuffles_only_for_workers_outside_the_launcher(tmp_path):
    import apache_beam as beam

    from audioscope.processes import temporary_files_in

    settings = IngestSettings(store=str(tmp_path / "store"), params=StoreParams())

    def labels(local_pool):
        p = beam.Pipeline()  # never run: Beam's folder for it goes to tmp_path
        _ = p | ingest_beam.IngestPipeline(settings, [str(tmp_path / "requests.jsonl")], local_pool=local_pool)
        found = []

        class Visit(beam.pipeline.PipelineVisitor):
            def enter_composite_transform(self, node):
                found.append(node.full_label)

            def visit_transform(self, node):
                found.append(node.full_label)

        p.visit(Visit())
        return found

    with temporary_files_in(str(tmp_path / "tmp")):
        assert any(label.endswith("BuildIndex/SpreadJobs") for label in labels(None))  # remote or in-process workers
        assert not any("BuildIndex/SpreadJobs" in label for label in labels(2))  # the launcher's pool: one process
        assert any(label.endswith("BuildIndex/ByShard") for label in labels(2))


def test_local_videos_are_requested_largest_first(tmp_path, monkeypatch):
    """A pool that takes the long videos first ends on short ones on every core (list scheduling);
    a file's size is the free guess of its decode time. A list with any video that is not a file
    here keeps its order (nothing is known of its sizes); equal sizes keep the list's order."""
    sizes = {"a": 10, "b": 3000, "c": 200, "d": 3000, "e": 0}
    for name, n in sizes.items():
        (tmp_path / f"{name}.mp4").write_bytes(b"x" * n)
    local = tmp_path / "local.csv"
    local.write_text("uri,video_id\n" + "".join(f"{name}.mp4,{name}\n" for name in sizes))
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(local.read_text() + "http://127.0.0.1:9/f.mp4,f\n")
    monkeypatch.setattr(ingest, "REQUESTS_PER_SHARD", 3)  # each shard is ordered on its own

    def requested(list_path: Path) -> list[list[str]]:
        layout = Layout(str(tmp_path / f"store-{list_path.stem}"))
        init_store(layout, StoreParams())
        written = ingest.write_requests(layout, str(list_path), None, None, workdir=str(tmp_path))
        written.ids.close()
        return [[VideoRequest.from_json(line).video_id for line in Path(f).read_text().splitlines()]
                for f in written.files]

    assert requested(local) == [["b", "c", "a"], ["d", "e"]]
    assert requested(mixed) == [["b", "c", "a"], ["d", "e", "f"]]


def test_the_pool_closes_in_the_background_once_every_requested_video_is_done():
    """The index is built after the last video: the pool's processes are joined and its fork server
    stopped meanwhile, not after it. Until the last outcome the pool stays open."""
    executor, workdir = ingest_pool.local_pool(1)
    try:
        ingest_pool.expect_outcomes(2)
        assert executor.submit(ingest_pool._pool_ready).result() > 0
        ingest_pool.outcome_given()
        assert not ingest_pool.pool_closed(executor) and ingest_pool._closer is None
        ingest_pool.outcome_given()
        closer = ingest_pool._closer
        assert closer is not None
        closer.join(timeout=60)
        assert ingest_pool.pool_closed(executor) and not Path(workdir).exists()
    finally:
        ingest_pool.close_local_pool()  # joins the closer; nothing left to close
    assert ingest_pool._closer is None and ingest_pool._expected is None
