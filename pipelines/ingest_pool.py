"""The per-video work of ingest on the local runner: one shared pool of processes.

Beam's DirectRunner splits a stage's input between its workers up front
(equal counts, whatever each video costs), and its threads share one GIL
for the Python half of every video (slicing, PNG, zip). On a big machine
both leave cores idle. On the local runner the same per-video code
(:func:`ingest_line`: ``decode_video`` then ``finish_video``, as
``IngestVideo`` runs them) is therefore handed to ONE pool of worker
processes in the launcher, which the runner's threads all feed
(``pipelines.ingest_beam.IngestVideoInPool``): an idle process takes the next
video, whichever thread submitted it (dynamic assignment), and each process
has its own interpreter. The runner itself then gets only :data:`RUNNER_THREADS`
threads (:func:`runner_args`): more would only cost the launcher start-up.
There are two processes per worker, so that a core never waits on a video's
Python half, but only one ffmpeg run per worker at a time (a semaphore the
processes share): more runs than cores cost CPU. Remote runners never take
this path.

The pool's processes are forked from a fork server that imported this
module (and through it the per-video code, but not Beam) once; the launcher
starts them while it reads the list (:func:`start_local_pool`) and hands
them the first videos before the Beam pipeline is even built
(:func:`submit_early`), so the runner's start-up overlaps real work.

No Beam here: this module is what every pool process imports.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from audioscope.clipstore.writer import IngestSettings, StatusRecord

#: A video's counters: (name, increment) pairs.
Counts = tuple[tuple[str, int], ...]


def outcome(record: "StatusRecord", skipped: bool) -> tuple[str, Counts]:
    """A finished video's id and the counters it adds (name, increment): small, picklable."""
    from audioscope.clipstore.writer import STATUS_OK, STATUS_PARTIAL

    if skipped:
        return record.video_id, (("videos_skipped", 1),)
    if record.status in (STATUS_OK, STATUS_PARTIAL):
        return record.video_id, (("videos_ok", 1), ("clips", record.n_clips), ("media_bytes", record.media_bytes))
    return record.video_id, (("videos_failed", 1), (f"failed_{record.kind}", 1))


#: Pool processes per ``--workers``: two videos in flight per worker, as IngestVideo's look-ahead
#: keeps them (one decoding in ffmpeg while another is sliced, encoded and written), so that no
#: core waits while a process starts ffmpeg or reads a file. Measured at 2 workers on a shared
#: 2-core machine: 1 process per worker was ~1.14x slower than 2.
PROCESSES_PER_WORKER = 2

#: Modules the pool's fork server imports once, so its processes start warm: the per-video code
#: (this module imports it only when a video is ingested, so that the launcher can boot the fork
#: server before its own imports: :func:`boot_fork_server`), and PyAV, which the probe imports on
#: first use (~36 ms that every process paid again at its first video). First of all
#: ``pool_process``: the pool's processes never run the launcher's main script again.
POOL_PRELOAD = (
    "audioscope.pipelines.pool_process", "audioscope.pipelines.ingest_pool", "audioscope.clipstore.writer",
    "audioscope.media", "audioscope.sources.fetch", "audioscope.sources.lists", "av",
)

_pool_lock = threading.Lock()
_pool: Any = None  # (size, ProcessPoolExecutor, workdir) of this process


def _pool_ready() -> int:
    return os.getpid()


#: In a pool process: the pool's shared semaphore of ffmpeg runs (one per worker), set at start.
_decode_slots: Any = None


def _start_process(decode_slots: Any, workdir: str) -> None:
    """A pool process's start: it leaves Ctrl-C to the launcher, which stops the pool (no traceback
    per process), ends at once on the launcher's SIGTERM, keeps the pool's semaphore of decode
    slots, and makes its temporary files in the pool's scratch folder (which the launcher removes,
    however the process ended)."""
    import signal

    global _decode_slots
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_now)
    _decode_slots = decode_slots
    tempfile.tempdir = workdir


def _stop_now(signum: int, frame: object) -> None:
    """SIGTERM in a pool process: the launcher is stopping a run that did not finish. The video in hand
    is left for the re-run (nothing of it was marked finished), its ffmpeg killed; the launcher
    removes the scratch folder."""
    from audioscope.media import stop_running_tools

    stop_running_tools()
    os._exit(128 + signum)


def pool_processes(size: int) -> int:
    """The processes of the pool for ``size`` workers (:data:`PROCESSES_PER_WORKER` each)."""
    return PROCESSES_PER_WORKER * size


def _fork_context() -> Any:
    import multiprocessing

    from audioscope.processes import multiprocessing_folder

    multiprocessing_folder()  # the fork server listens on a Unix socket in the temporary directory
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(POOL_PRELOAD))
    return ctx


def boot_fork_server() -> None:
    """Start the pool's fork server now, without waiting for it: it imports the per-video code
    (:data:`POOL_PRELOAD`, ~0.15 s) while the launcher does its own imports and reads the list,
    instead of after (the launcher calls this first thing; :func:`local_pool` then finds it ready)."""
    from multiprocessing import forkserver

    _fork_context()
    forkserver.ensure_running()


def local_pool(size: int) -> tuple[Any, str]:
    """This process's shared pool for ``size`` workers (started once) and its scratch folder."""
    global _pool
    with _pool_lock:
        if _pool is not None and _pool[0] != size:
            _close_pool_locked()
        if _pool is None:
            from concurrent.futures import ProcessPoolExecutor

            ctx = _fork_context()
            workdir = tempfile.mkdtemp(prefix="audioscope-ingest-")
            # Two processes per worker so that a core never waits on Python work, but only one
            # ffmpeg run per worker at a time: more than one per core costs 7-10% more CPU per
            # video on 720p footage (caches), as the benchmark's bare decode shows at 2x the workers.
            executor = ProcessPoolExecutor(
                max_workers=pool_processes(size), mp_context=ctx, initializer=_start_process,
                initargs=(ctx.BoundedSemaphore(size), workdir),
            )
            _pool = (size, executor, workdir)
        return _pool[1], _pool[2]


def start_local_pool(size: int) -> None:
    """Start the pool's processes now (they boot while the launcher does other work)."""
    executor, _ = local_pool(size)
    for _ in range(pool_processes(size)):
        executor.submit(_pool_ready)


def close_local_pool(stop_running: bool = False) -> None:
    """Stop the shared pool (if any) and remove its scratch folder. ``stop_running``: a run that did not
    finish (Ctrl-C, SIGTERM, an error that ends it): the videos in flight are stopped, not waited for
    (a stalled download held a stop for minutes)."""
    global _closer, _expected
    with _pool_lock:
        closer, _closer, _expected = _closer, None, None
    if closer is not None:
        closer.join()  # every video was done: the pool was closing while the runner built the index
    with _pool_lock:
        _close_pool_locked(stop_running)


#: The videos the launcher requested of the pool in this run (None: not said) and the outcomes it
#: has given so far; once every one is in, the pool closes in the background (:data:`_closer`)
#: while the runner builds the index: joining its processes and stopping the fork server take
#: ~0.1 s at 16 workers that the command otherwise spends after the index.
_expected: int | None = None
_given = 0
_closer: threading.Thread | None = None


def expect_outcomes(n: int) -> None:
    """The run asks the pool for ``n`` videos (each gives one outcome: :func:`outcome_given`)."""
    global _expected, _given
    with _pool_lock:
        _expected, _given = n, 0


def outcome_given() -> None:
    """One requested video's outcome is in; the last one starts closing the pool in the background."""
    global _given, _closer
    with _pool_lock:
        _given += 1
        if _expected is None or _given < _expected or _closer is not None or _pool is None:
            return
        _closer = threading.Thread(target=close_local_pool_now, name="close-ingest-pool", daemon=True)
        _closer.start()


def close_local_pool_now() -> None:
    """Close the pool, every requested video being done (the background half of :func:`outcome_given`)."""
    with _pool_lock:
        _close_pool_locked()


def pool_closed(executor: Any) -> bool:
    """True when ``executor`` is no longer this process's pool (the run ended or was interrupted)."""
    with _pool_lock:
        return _pool is None or _pool[1] is not executor


def _close_pool_locked(stop_running: bool = False) -> None:
    global _pool
    for f in _early.values():
        f.cancel()
    _early.clear()
    if _pool is not None:
        _, executor, workdir = _pool
        _pool = None
        if stop_running:
            from audioscope.processes import stop_executor

            stop_executor(executor)
        else:
            executor.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(workdir, ignore_errors=True)
        # The fork server has reaped the pool's processes; stop and reap it too
        # (no process left behind, and their CPU time is accounted to us).
        stop_fork_server()


def stop_fork_server() -> None:
    """Stop this process's fork server, if one runs (booted, or left by a pool); it restarts on demand."""
    import sys

    forkserver = sys.modules.get("multiprocessing.forkserver")  # never imported: never started
    stop = getattr(getattr(forkserver, "_forkserver", None), "_stop", None)
    if stop is not None:
        stop()


def ingest_line(line: str, settings: "IngestSettings", workdir: str) -> tuple[str, Counts]:
    """One request line -> :func:`outcome` of its video, in a pool process (the same steps as IngestVideo)."""
    from audioscope.clipstore.writer import decode_video, finish_video
    from audioscope.sources.lists import VideoRequest

    request = VideoRequest.from_json(line)
    return outcome(*finish_video(decode_video(request, settings, workdir, decode_slot=_decode_slots), settings))


#: Futures of the videos handed to the pool before the pipeline ran, by request line.
_early: dict[str, Future] = {}


def submit_early(size: int, settings: "IngestSettings", lines: Sequence[str]) -> None:
    """Hand ``lines`` (the first requests) to the pool now; the pipeline's DoFn picks up their results."""
    executor, workdir = local_pool(size)
    with _pool_lock:
        for line in lines:
            if line.strip() and line not in _early:
                _early[line] = executor.submit(ingest_line, line, settings, workdir)


def take_early(line: str) -> Future | None:
    """The future of ``line`` if :func:`submit_early` handed it to the pool (once: it is forgotten here)."""
    with _pool_lock:
        return _early.pop(line, None)


#: The runner's threads when the pool takes the per-video work. They only hand videos to the pool
#: (any one of them keeps it busy) and run the index's light stages under one GIL, and each costs
#: the launcher ~0.14 CPU-s of start-up (its SDK harness and gRPC channels): at --workers 16, 16
#: threads took an empty run from 2.3 to 4.3 s and a run of 20 videos from 20.8 to 22.3 s on 2 cores.
RUNNER_THREADS = 2


def runner_args(beam_args: Sequence[str]) -> list[str]:
    """``beam_args`` for the runner when the local pool takes the per-video work (:func:`local_pool_size`):
    the DirectRunner's threads capped at :data:`RUNNER_THREADS` (the pool keeps its
    ``--direct_num_workers`` processes); other flags, and every other runner, unchanged."""
    from audioscope.pipelines.runner import without_flag

    args = list(beam_args)
    pool = local_pool_size(args)
    if not pool or pool <= RUNNER_THREADS:
        return args
    return [*without_flag(args, "direct_num_workers"), f"--direct_num_workers={RUNNER_THREADS}"]


def local_pool_size(beam_args: Sequence[str]) -> int | None:
    """How many processes take the per-video work on the local runner (None: the runner's own workers).

    Only when the DirectRunner runs its workers as threads of this process
    (``--direct_running_mode`` multi_threading, as ``--workers`` sets it)
    and more than one: then ``--direct_num_workers`` processes. Every other
    runner and mode (multi_processing, portable, Dataflow) runs IngestVideo
    on its own workers.
    """
    from audioscope.pipelines.runner import flag_value, local_runner

    args = list(beam_args)
    if not local_runner(args) or flag_value(args, "direct_running_mode") != "multi_threading":
        return None
    try:
        n = int(flag_value(args, "direct_num_workers") or 1)
    except ValueError:
        return None
    return n if n > 1 else None
