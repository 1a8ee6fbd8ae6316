"""Ingest, the library entry: a video list in, a finished clip store out.

:func:`ingest` (an :class:`IngestConfig` in, an :class:`IngestResult` out)
holds the store's lock, reads the list as a stream into request shards,
runs the Beam pipeline (:mod:`audioscope.pipelines.ingest_beam`) and checks
that every requested video was finished. ``audioscope ingest``
(ingest_cli) only parses options, shows progress and sets the exit code.

This module does not import Beam: on the local runner with ``--workers N``
the pool's processes start, and get their first videos, while the launcher
reads the list and Beam loads (about a second) and builds the pipeline.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from typing import Any

from audioscope import storage
from audioscope.clipstore.format import Layout
from audioscope.clipstore.writer import IngestSettings
from audioscope.pipelines.ingest_pool import (
    close_local_pool,
    expect_outcomes,
    local_pool_size,
    pool_processes,
    start_local_pool,
    submit_early,
)

# --------------------------------------------------------------------------- #
# the library entry: a list in, a finished store out

#: Videos per pool process handed over by the launcher before the pipeline starts (local runner):
#: enough to keep every core busy while Beam loads and starts (~1.5 s), even on videos that decode in
#: a tenth of a second (measured on the benchmark's corpus: 1 per process left a core idle ~1 s).
EARLY_PER_PROCESS = 6
#: Requests per ``STORE/requests`` shard.
REQUESTS_PER_SHARD = 10_000
#: Bad list rows per ``STORE/bad_rows`` file.
BAD_ROWS_PER_FILE = 100_000


@dataclasses.dataclass(frozen=True, kw_only=True)
class IngestConfig:
    """Everything one ingest needs (``audioscope ingest`` builds it from its options)."""

    list_path: str
    store: str
    media_root: str | None = None
    list_format: str | None = None
    allow_outside_root: bool = False
    aspect: str = "pad"
    frame_codec: str = "png"
    retry_failed: bool = False
    max_bytes: int | None = None
    timeout_s: float | None = None
    decode_timeout_s: float = 600.0
    max_duration_s: float | None = None
    #: pictures over this many pixels are refused before decoding (None: the media module's default)
    max_pixels: int | None = None
    #: read gs:// and s3:// media without credentials (public buckets)
    anonymous: bool = False
    ffmpeg_threads: int = 1
    beam_args: tuple[str, ...] = ()
    #: where the list reader keeps its temporary SQLite files (default: the system's)
    workdir: str | None = None


@dataclasses.dataclass(frozen=True)
class IngestResult:
    store: str
    requested: int
    bad_rows: int
    summary: dict[str, Any]
    #: requested videos without a status record after the run (a runner lost them)
    unfinished: int


@dataclasses.dataclass(frozen=True)
class WrittenRequests:
    requested: int
    bad_rows: int
    files: list[str]
    ids: Any  # audioscope.sources.lists.SeenIds of the requested video ids (close() when done)


def list_key(list_path: str) -> str:
    """A list's key: SHA-1 of its name and content, read as a stream (any size)."""
    h = hashlib.sha1(os.fspath(list_path).encode() + b"\0")
    with storage.open_file(list_path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def write_requests(
    layout: Layout, list_path: str, fmt: str | None, media_root: str | None, *,
    allow_outside_root: bool = False, clip_seconds: int = 5, workdir: str | None = None,
    remote_runner: str | None = None,
) -> WrittenRequests:
    """Read the list as a stream; write request shards and bad rows into the store.

    ``remote_runner``: the runner's name when its workers cannot see this
    machine's disk; a video that is a file here then refuses the whole list
    (:class:`~audioscope.errors.UserError`, nothing kept): every such video
    would fail on a worker.

    Within a shard whose videos are all files on this machine, the largest
    file comes first: a file's size is the best free guess of its decode
    time, and a pool that takes the long videos first ends with short ones
    on every core instead of one long video on one (list scheduling).

    Memory stays flat whatever the list's size: requests go to shards of
    :data:`REQUESTS_PER_SHARD` lines as they come, the ids seen are kept in
    a temporary SQLite file. Stale shards of an earlier list are removed
    after the new ones are written; bad rows are kept per list (keyed by the
    list's name and content), so lists ingested one after the other all
    keep theirs and re-running a list replaces its own files.
    """
    from audioscope.errors import UserError
    from audioscope.sources.lists import BadRow, SeenIds, read_video_list

    ids = SeenIds(workdir)
    key = list_key(list_path)
    files: list[str] = []
    bad_files: list[str] = []
    chunk: list[str] = []
    #: each request's local file size, None once a request of the chunk is not a local file
    chunk_sizes: list[int] | None = []
    bad: list[str] = []
    n_req = n_bad = 0

    def flush_requests() -> None:
        nonlocal chunk_sizes
        lines = chunk
        if chunk_sizes is not None:  # all local: largest first (a stable sort: equal sizes keep list order)
            lines = [chunk[i] for i in sorted(range(len(chunk)), key=lambda i: -chunk_sizes[i])]
        # named -i-of-?????: renamed below once the count is known
        path = layout.path("requests", f".writing-{len(files):05d}.jsonl")
        storage.atomic_write(path, "".join(c + "\n" for c in lines))
        files.append(path)
        chunk.clear()
        chunk_sizes = []

    def flush_bad() -> None:
        path = layout.bad_rows_file(key, len(bad_files))
        storage.atomic_write(path, "".join(b + "\n" for b in bad))
        bad_files.append(path)
        bad.clear()

    try:
        items = read_video_list(
            list_path, fmt=fmt, media_root=media_root, allow_outside_root=allow_outside_root,
            clip_seconds=clip_seconds, workdir=workdir,
        )
        for item in items:
            if isinstance(item, BadRow):
                n_bad += 1
                bad.append(item.to_json())
                if len(bad) >= BAD_ROWS_PER_FILE:
                    flush_bad()
                continue
            first = ids.first(item.video_id, item.origin)
            if first is not None:  # the readers dedupe already; kept as a guard
                n_bad += 1
                bad.append(BadRow(
                    origin=item.origin, kind="duplicate_video",
                    message=f"video {item.video_id} is already requested by {first}; this row is ignored",
                    raw=item.uri,
                ).to_json())
                continue
            if remote_runner and storage.is_local(item.uri):
                raise UserError(
                    f"{item.origin}: {item.uri} is a file on this machine, but {remote_runner} runs its workers "
                    "elsewhere and they cannot read it; copy the videos to gs:// or s3:// and list those URIs (or "
                    "relative paths with --media-root gs://...), or run on the local runner"
                )
            n_req += 1
            chunk.append(item.to_json())
            if chunk_sizes is not None and storage.is_local(item.uri):
                chunk_sizes.append(_local_size(item.uri))
            else:
                chunk_sizes = None
            if len(chunk) >= REQUESTS_PER_SHARD:
                flush_requests()
        if chunk or not files:
            flush_requests()
        if bad:
            flush_bad()
    except BaseException:
        ids.close()
        for path in files:
            storage.remove(path)
        raise
    n = len(files)
    final = []
    for i, tmp in enumerate(files):
        target = layout.request_shard(i, n)
        storage.atomic_write(target, storage.read_bytes(tmp))
        storage.remove(tmp)
        final.append(target)
    for path in storage.glob(layout.request_shard_glob()):
        if path not in final and path.rsplit("/", 1)[-1] not in {f.rsplit("/", 1)[-1] for f in final}:
            storage.remove(path)
    for path in storage.glob(layout.bad_rows_glob(key)):
        if path.rsplit("/", 1)[-1] not in {b.rsplit("/", 1)[-1] for b in bad_files}:
            storage.remove(path)  # this list's rows of an earlier run (or the older single-file name)
    return WrittenRequests(requested=n_req, bad_rows=n_bad, files=final, ids=ids)


def _local_size(uri: str) -> int:
    """A local file's size in bytes; 0 when it cannot be read (its worker records why)."""
    try:
        return storage.size(uri)
    except OSError:
        return 0


def unfinished_count(layout: Layout, ids: Any) -> int:
    """How many of the requested ids have no row in the status table (read as a stream)."""

    with ids.lock:
        return _unfinished(layout, ids.table.con)


def _unfinished(layout: Layout, con: Any) -> int:
    import pyarrow.parquet as pq

    con.execute("CREATE TEMP TABLE IF NOT EXISTS finished (id TEXT PRIMARY KEY) WITHOUT ROWID")
    with storage.open_file(layout.status_table) as fh:
        for batch in pq.ParquetFile(fh).iter_batches(columns=["video_id", "status"], batch_size=65_536):
            vids = batch.column(0).to_pylist()
            statuses = batch.column(1).to_pylist()
            con.executemany(
                "INSERT OR IGNORE INTO finished VALUES (?)",
                [(v,) for v, s in zip(vids, statuses) if v is not None and s not in ("conflict", "bad_row")],
            )
    row = con.execute("SELECT COUNT(*) FROM seen WHERE id NOT IN (SELECT id FROM finished)").fetchone()
    return int(row[0])


def _rebuilt_summary(layout: Layout, started: float) -> dict[str, Any]:
    """The store's summary as the index step of the run that started at ``started`` wrote it.

    A runner that lost part of the index leaves no summary (the index step
    says why in ``index/incomplete.json``), and one that lost its last step
    leaves an earlier run's: either way the run ends short instead of
    reporting the store as it was.
    """
    from audioscope.clipstore.summary import run_stamp, this_runs_summary
    from audioscope.errors import UserError

    summary = this_runs_summary(layout.summary_json, started)
    if summary is not None:
        return summary
    why = "its last step never ran"
    if storage.exists(layout.index_incomplete):
        note = json.loads(storage.read_text(layout.index_incomplete))
        why = note["reason"] if note.get("started_at") == run_stamp(started) else why
    raise UserError(
        f"ingest ended short: the runner lost work and the store's index was not rebuilt ({why}). Every "
        "finished video is kept; the store reads as unfinished until you run the same ingest again."
    )


def ingest(config: IngestConfig, watch: "Any | None" = None) -> IngestResult:
    """Ingest one list into a clip store (created, resumed or grown); the library entry.

    Holds the store's lock for the whole run (a second ingest into the same
    store is refused at once), writes the requests, runs the Beam pipeline
    with ``config.beam_args`` and checks that every requested video got a
    status record. ``watch(layout, n_requested, ids)``, if given, returns a
    context manager kept open while the pipeline runs (the CLI's progress).
    Raises :class:`~audioscope.errors.UserError` for what the user can fix;
    :class:`IngestResult.unfinished` > 0 says the run ended short.
    """
    import contextlib

    from audioscope.clipstore.format import StoreError, StoreParams, init_store
    from audioscope.clipstore.lock import StoreLock
    from audioscope.errors import UserError
    from audioscope.pipelines.runner import check_paths_for_runner, remote_runner, require_local_programs
    from audioscope.sources.fetch import FetchLimits

    # Workers see the store and the media root as given: made absolute here,
    # and refused at once when local while the workers run elsewhere.
    beam_args = list(config.beam_args)
    paths = check_paths_for_runner(beam_args, {"--store": config.store, "--media-root": config.media_root})
    require_local_programs(beam_args, "ffmpeg")
    config = dataclasses.replace(config, store=str(paths["--store"]), media_root=paths["--media-root"])
    if not storage.exists(config.list_path):
        raise UserError(f"the list {config.list_path} does not exist; give the path of a video list")
    layout = Layout(config.store)
    params = StoreParams(aspect=config.aspect, frame_codec=config.frame_codec)
    try:
        init_store(layout, params)
    except StoreError as e:
        raise UserError(str(e)) from None
    pool = local_pool_size(config.beam_args)
    with StoreLock(layout, what=os.fspath(config.list_path)):
        if pool:
            start_local_pool(pool)  # its processes boot while the list is read
        try:
            written = write_requests(
                layout, config.list_path, config.list_format, config.media_root,
                allow_outside_root=config.allow_outside_root, clip_seconds=params.clip_seconds,
                workdir=config.workdir,
                remote_runner=remote_runner(beam_args),
            )
        except ValueError as e:
            close_local_pool()
            raise UserError(f"cannot read the list {config.list_path}: {e}; check --format") from None
        except BaseException:
            close_local_pool(stop_running=True)
            raise
        try:
            limit_kw: dict[str, Any] = {}
            if config.max_bytes is not None:
                limit_kw["max_bytes"] = config.max_bytes
            if config.timeout_s is not None:
                limit_kw["timeout_s"] = config.timeout_s
            if config.anonymous:
                limit_kw["anonymous"] = True
            settings = IngestSettings(
                store=config.store, params=params, limits=FetchLimits(**limit_kw),
                decode_timeout_s=config.decode_timeout_s, ffmpeg_threads=config.ffmpeg_threads,
                max_duration_s=config.max_duration_s, retry_failed=config.retry_failed,
                **({} if config.max_pixels is None else {"max_pixels": config.max_pixels}),
            )
            started = time.time()
            ctx = watch(layout, written.requested, written.ids) if watch is not None else contextlib.nullcontext()
            if pool:
                expect_outcomes(written.requested)  # the pool closes as soon as the last one is done
            if pool and written.files:
                # the first videos start now, while Beam builds and starts the pipeline
                early = EARLY_PER_PROCESS * pool_processes(pool)
                submit_early(pool, settings, storage.read_lines(written.files[0])[:early])
            with ctx:
                from audioscope.pipelines.ingest_beam import run_pipeline  # imports Beam

                run_pipeline(settings, written.files, config.beam_args, started_at=started)
            summary = _rebuilt_summary(layout, started)
            unfinished = unfinished_count(layout, written.ids)
        except BaseException:
            close_local_pool(stop_running=True)  # the early videos, when the pipeline did not start
            raise
        finally:
            written.ids.close()
            close_local_pool()
    return IngestResult(
        store=config.store, requested=written.requested, bad_rows=written.bad_rows, summary=summary,
        unfinished=unfinished,
    )
