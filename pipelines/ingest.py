"""The ingest Beam pipeline: video requests -> clip store.

Stages (labels as they show in the Beam / Dataflow UI)::

    ReadRequests       the lines of STORE/requests/requests-*.jsonl, one video
                       request each, spread over workers (pipelines/work.py)
    IngestVideos       per video: skip if finished, else fetch, probe, decode
                       once, slice clips, write media then status (never
                       raises for a bad item; Metrics counters per outcome);
                       a worker decodes the next video while it writes one;
                       on the local runner with --workers N > 1 the same
                       per-video code runs in ONE shared pool of 2N processes
                       that every runner thread feeds (IngestVideoInPool,
                       pipelines/ingest_pool.py): a free process takes the
                       next video (no static split), and the launcher hands
                       the first videos over before the pipeline is built
    BuildIndex         after all videos (a global count, no element held
                       under one key): read ALL status records of the store
                       in parallel, one status/<prefix>/ folder per work
                       item, writing its status part and sending its index
                       rows to their shard; shards are written in parallel
                       (GroupByKey by shard); a last combine of small totals
                       lets FinalizeStore stream the parts into
                       status.parquet and write summary.json

The library entry is :func:`ingest` (an :class:`IngestConfig` in, an
:class:`IngestResult` out): it holds the store's lock, reads the list as a
stream into request shards, runs the pipeline and checks that every
requested video was finished. ``audioscope ingest`` (ingest_cli) only parses
options, shows progress and sets the exit code.

Everything shipped to workers is a small frozen dataclass or a module-level
function, so the pipeline runs unchanged on DirectRunner (in-process or
multi-processing), PortableRunner and Dataflow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from concurrent.futures import Future
from typing import Any, Iterable, Iterator, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

from audioscope import storage
from audioscope.clipstore.format import (  # noqa: F401 (index_shard_*: re-exported)
    Layout,
    index_shard_count,
    index_shard_of,
)
from audioscope.clipstore.summary import build_summary  # noqa: F401 (re-exported: the summary's builder)
from audioscope.clipstore.writer import (
    IngestSettings,
    StatusRecord,
    decode_video,
    finish_video,
)
from audioscope.pipelines.ingest_pool import (
    close_local_pool,
    ingest_line,
    local_pool,
    outcome,
    pool_closed,
    pool_processes,
    start_local_pool,
    submit_early,
    take_early,
)
from audioscope.pipelines.work import ReadWork

logger = logging.getLogger(__name__)

METRICS_NAMESPACE = "audioscope.ingest"

# --------------------------------------------------------------------------- #
# per-video work


class IngestVideo(beam.DoFn):
    """One video request (a JSON line) -> its finished status record's video id.

    Two videos are in flight per worker: while the previous one is sliced,
    encoded and written (Python work), this one is fetched and decoded in a
    helper thread (which waits on the network and on ffmpeg). A worker so
    keeps its core busy with ffmpeg instead of leaving it idle between
    videos, and on the cloud a download overlaps the work on the one before.
    The last video of a bundle is finished in ``finish_bundle``.
    """

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self._counters: dict[str, Any] = {}

    def setup(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.workdir = tempfile.mkdtemp(prefix="audioscope-ingest-")
        self._ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audioscope-decode")
        self._pending: Future | None = None

    def teardown(self) -> None:
        ahead = getattr(self, "_ahead", None)
        if ahead is not None:
            ahead.shutdown(wait=True, cancel_futures=True)  # no fetch still writing into workdir
        shutil.rmtree(getattr(self, "workdir", ""), ignore_errors=True)

    def _count(self, name: str, n: int = 1) -> None:
        if name not in self._counters:
            self._counters[name] = Metrics.counter(METRICS_NAMESPACE, name)
        self._counters[name].inc(n)

    def start_bundle(self) -> None:
        # A bundle that failed (and is retried) may have left its last video
        # here; the retry decodes it again, skipping it if it got finished.
        self._pending = None

    def process(self, line: str) -> Iterator[str]:
        from audioscope.sources.lists import VideoRequest

        if not line.strip():
            return
        request = VideoRequest.from_json(line)
        ahead = self._ahead.submit(decode_video, request, self.settings, self.workdir)
        previous, self._pending = self._pending, ahead
        if previous is not None:
            yield self._finish(previous)

    def finish_bundle(self) -> Iterator[WindowedValue]:
        if self._pending is not None:
            previous, self._pending = self._pending, None
            yield GlobalWindows.windowed_value(self._finish(previous))

    def _finish(self, decoding: Future) -> str:
        video_id, counts = outcome(*finish_video(decoding.result(), self.settings))
        for name, n in counts:
            self._count(name, n)
        return video_id


class IngestVideoInPool(beam.DoFn):
    """IngestVideo on the local runner: each request goes to the launcher's shared process pool.

    ``process`` submits and returns the videos finished so far; it waits
    only while this instance has more videos in flight than the pool has
    processes, plus two, so that any one thread alone keeps the whole pool
    busy. The rest are collected in ``finish_bundle``.
    """

    def __init__(self, settings: IngestSettings, size: int) -> None:
        self.settings = settings
        self.size = size
        self._counters: dict[str, Any] = {}

    def setup(self) -> None:
        self._executor, self._workdir = local_pool(self.size)

    def start_bundle(self) -> None:
        self._in_flight: set[Future] = set()

    def _emit(self, done: Iterable[Future]) -> Iterator[str]:
        for f in done:
            if pool_closed(self._executor) and (f.cancelled() or f.exception() is not None):
                continue  # the launcher stopped the pool (Ctrl-C): the video is left for the re-run
            video_id, counts = f.result()
            for name, n in counts:
                if name not in self._counters:
                    self._counters[name] = Metrics.counter(METRICS_NAMESPACE, name)
                self._counters[name].inc(n)
            yield video_id

    def process(self, line: str) -> Iterator[str]:
        return self._submit(line) if line.strip() else iter(())

    def _submit(self, line: str) -> Iterator[str]:
        from concurrent.futures import FIRST_COMPLETED, wait

        early = take_early(line)  # handed to the pool by the launcher before the pipeline started
        try:
            self._in_flight.add(early or self._executor.submit(ingest_line, line, self.settings, self._workdir))
        except RuntimeError:
            if not pool_closed(self._executor):
                raise
            return  # the launcher stopped the pool (Ctrl-C): no new work, nothing marked finished
        done = {f for f in self._in_flight if f.done()}
        if len(self._in_flight) - len(done) > pool_processes(self.size) + 2:
            done |= wait(self._in_flight - done, return_when=FIRST_COMPLETED).done
        self._in_flight -= done
        yield from self._emit(done)

    def finish_bundle(self) -> Iterator[WindowedValue]:
        from concurrent.futures import as_completed

        pending, self._in_flight = self._in_flight, set()
        for video_id in self._emit(as_completed(pending)):
            yield GlobalWindows.windowed_value(video_id)


# --------------------------------------------------------------------------- #
# index
#
# After every video is finished (a global count, combined per worker: no
# element waits under one key), the status folders are listed once and read
# in parallel, one status/<prefix>/ folder per work item. Each folder gives
# its part of the status table (a Parquet part), running totals for the
# summary, and its clips' index rows keyed by index shard; a GroupByKey by
# shard (many keys) writes the shards in parallel. A last combine gathers
# the totals and shard names (small), and FinalizeStore streams the parts
# into status.parquet and writes summary.json. No worker holds all records.


def _list_jobs(_count: int, store: str) -> Iterator[tuple[str, Any, int]]:
    """("dir", status folder, n shards) per folder and ("shard", i, n) per index shard."""
    layout = Layout(store)
    dirs = storage.list_dirs(layout.status_dir)
    n_videos = sum(len(storage.list_files(d, ".json")) for d in dirs)
    n = index_shard_count(n_videos)
    for d in dirs:
        yield "dir", d, n
    for i in range(n):
        yield "shard", i, n


def _route(job: tuple[str, Any, int], n_outputs: int) -> int:
    return 0 if job[0] == "dir" else 1


class ReadStatusDir(beam.DoFn):
    """One status/<prefix>/ folder -> its status part, (shard, index rows) and running totals."""

    TOTALS = "totals"

    def __init__(self, store: str) -> None:
        self.store = store

    def process(self, job: tuple[str, str, int]) -> Iterator[Any]:
        import io

        import pyarrow.parquet as pq

        from audioscope.clipstore.summary import SummaryCounts
        from audioscope.schemas.tables import STATUS, to_table

        _, directory, n = job
        layout = Layout(self.store)
        records = [StatusRecord.from_json(json.loads(storage.read_text(p))) for p in storage.glob(storage.join(directory, "*.json"))]
        rows = sorted((r.status_row() for r in records), key=lambda r: (r["video_id"] or "", r["origin"] or "", r["source"]))
        buf = io.BytesIO()
        pq.write_table(to_table(rows, STATUS), buf, compression="zstd")
        prefix = directory.rstrip("/").rsplit("/", 1)[-1]
        storage.atomic_write(layout.status_part(prefix), buf.getvalue())
        totals = SummaryCounts()
        for r in rows:
            totals.add(r)
        yield beam.pvalue.TaggedOutput(self.TOTALS, ("totals", prefix, totals))
        by_shard: dict[int, list[dict[str, Any]]] = {}
        for r in records:
            if r.clips:
                by_shard.setdefault(index_shard_of(r.video_id, n), []).extend(r.index_rows())
        for i, shard_rows in by_shard.items():
            yield i, (n, shard_rows)


def write_index_shard(job: tuple[int, Iterable[tuple[int, list]]], store: str) -> tuple[str, str, Any]:
    """Writes ``index/clips-NNNNN-of-MMMMM.parquet`` from its rows; returns its name."""
    import io

    import pyarrow.parquet as pq

    from audioscope.schemas.tables import CLIP_INDEX, to_table

    shard, parts = job
    n = 0
    rows: list[dict[str, Any]] = []
    for part_n, part_rows in parts:
        n = part_n
        rows.extend(part_rows)
    rows.sort(key=lambda r: (r["video_id"], r["start"]))
    buf = io.BytesIO()
    pq.write_table(to_table(rows, CLIP_INDEX), buf, compression="zstd")
    path = Layout(store).index_shard(shard, n)
    storage.atomic_write(path, buf.getvalue())
    return "shard", path.rsplit("/", 1)[-1], n


class _Gather(beam.CombineFn):
    """Totals of every status folder and the names of the written shards (all small)."""

    def create_accumulator(self) -> dict[str, Any]:
        return {"totals": None, "prefixes": [], "shards": [], "n": None}

    def add_input(self, acc: dict[str, Any], item: tuple[str, Any, Any]) -> dict[str, Any]:
        if item[0] == "totals":
            acc["prefixes"].append(item[1])
            acc["totals"] = item[2] if acc["totals"] is None else acc["totals"].merge(item[2])
        elif item[0] == "shard":
            acc["shards"].append(item[1])
            acc["n"] = item[2]
        return acc

    def merge_accumulators(self, accs: Iterable[dict[str, Any]]) -> dict[str, Any]:
        out = self.create_accumulator()
        for acc in accs:
            out["prefixes"] += acc["prefixes"]
            out["shards"] += acc["shards"]
            out["n"] = acc["n"] if acc["n"] is not None else out["n"]
            if acc["totals"] is not None:
                out["totals"] = acc["totals"] if out["totals"] is None else out["totals"].merge(acc["totals"])
        return out

    def extract_output(self, acc: dict[str, Any]) -> dict[str, Any]:
        return acc


class FinalizeStore(beam.DoFn):
    """Once every shard and status part is written: status.parquet, summary.json, stale shards removed.

    Refuses (the run fails, nothing says finished) when a shard is missing:
    a runner that dropped work must not leave a store that looks complete.
    """

    def __init__(self, store: str, started_at: float | None) -> None:
        self.store = store
        self.started_at = started_at

    def process(self, gathered: dict[str, Any]) -> Iterator[dict[str, Any]]:
        import pyarrow.parquet as pq

        from audioscope.clipstore.format import load_params
        from audioscope.clipstore.summary import SummaryCounts, build_summary
        from audioscope.clipstore.writer import bad_row_status
        from audioscope.schemas.tables import STATUS, to_table, validate
        from audioscope.sources.lists import BadRow

        layout = Layout(self.store)
        n = gathered["n"] or 1
        names = sorted(gathered["shards"])
        expected = [layout.index_shard(i, n).rsplit("/", 1)[-1] for i in range(n)]
        if names != expected:
            raise RuntimeError(
                f"only {len(names)} of {n} index shards were written (the runner lost work); "
                "run the same ingest again to complete the store"
            )
        totals: SummaryCounts = gathered["totals"] or SummaryCounts()
        tmp = layout.status_table + ".partial" if storage.is_local(layout.status_table) else None
        with storage.open_file(tmp or layout.status_table, "wb") as fh:
            writer = pq.ParquetWriter(fh, STATUS, compression="zstd")
            try:
                for prefix in sorted(gathered["prefixes"]):
                    with storage.open_file(layout.status_part(prefix)) as part:
                        writer.write_table(validate(pq.read_table(part), STATUS))
                for path in sorted(storage.glob(storage.join(layout.conflicts_dir, "*", "*.json"))):
                    row = json.loads(storage.read_text(path))
                    totals.add(row)
                    writer.write_table(to_table([row], STATUS))
                for path in sorted(storage.glob(layout.bad_rows_glob())):
                    rows = [bad_row_status(BadRow.from_json(line)) for line in storage.read_lines(path)]
                    for row in rows:
                        totals.add(row)
                    if rows:
                        writer.write_table(to_table(rows, STATUS))
            finally:
                writer.close()
        if tmp is not None:
            os.replace(tmp, layout.status_table)
        params = load_params(layout)
        assert params is not None, "store.json is written by the launcher before the pipeline"
        wall = round(time.time() - self.started_at, 1) if self.started_at else None
        summary = build_summary(totals, names, params.to_json(), wall)
        storage.atomic_write(layout.summary_json, json.dumps(summary, indent=2) + "\n")
        keep = set(names)
        for path in storage.glob(layout.index_shard_glob()):
            if path.rsplit("/", 1)[-1] not in keep:
                storage.remove(path)
        yield summary


class BuildIndex(beam.PTransform):
    """After every video is finished: status table, index shards, then summary.

    Every status record of the store is read again (videos of earlier runs
    and lists included), in parallel over the status/<prefix>/ folders.
    """

    def __init__(self, store: str, started_at: float | None = None) -> None:
        super().__init__()
        self.store = store
        self.started_at = started_at

    def expand(self, finished: beam.PCollection[str]) -> beam.PCollection[dict[str, Any]]:
        jobs = (
            finished
            | "AllFinished" >> beam.combiners.Count.Globally()
            | "ListStatusDirs" >> beam.FlatMap(_list_jobs, self.store)
            | "SpreadJobs" >> beam.Reshuffle()
        )
        dirs, seeds = jobs | "DirsOrShards" >> beam.Partition(_route, 2)
        read = dirs | "ReadStatusDirs" >> beam.ParDo(ReadStatusDir(self.store)).with_outputs(
            ReadStatusDir.TOTALS, main="rows"
        )
        empty = seeds | "EveryShard" >> beam.Map(lambda job: (job[1], (job[2], [])))
        shards = (
            (read.rows, empty)
            | "RowsAndSeeds" >> beam.Flatten()
            | "ByShard" >> beam.GroupByKey()
            | "WriteIndexShards" >> beam.Map(write_index_shard, self.store)
        )
        return (
            (shards, read[ReadStatusDir.TOTALS])
            | "ShardsAndTotals" >> beam.Flatten()
            | "Gather" >> beam.CombineGlobally(_Gather())
            | "FinalizeStore" >> beam.ParDo(FinalizeStore(self.store, self.started_at))
        )


class IngestPipeline(beam.PTransform):
    """Requests (in the store) -> media, status records, index, summary."""

    def __init__(
        self, settings: IngestSettings, request_files: Sequence[str], started_at: float | None = None,
        local_pool: int | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        # On the local runner: the size of the launcher's shared process pool
        # that takes the per-video work (None: each worker does its own).
        self.local_pool = local_pool
        # The launcher wrote the request shards and passes their paths: a
        # handful of them (10,000 videos each) is cheaper to ship than a
        # file-pattern source is to split.
        self.request_files = list(request_files)
        self.started_at = started_at

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection[dict[str, Any]]:
        finished = (
            pbegin
            | "ReadRequests" >> ReadWork(self.request_files)
            | "IngestVideos" >> beam.ParDo(
                IngestVideoInPool(self.settings, self.local_pool) if self.local_pool else IngestVideo(self.settings)
            )
        )
        return finished | "BuildIndex" >> BuildIndex(self.settings.store, self.started_at)


def run_pipeline(
    settings: IngestSettings, request_files: Sequence[str], beam_args: Sequence[str] = (),
    started_at: float | None = None,
) -> beam.runners.runner.PipelineResult:
    """Build and run the ingest pipeline over ``request_files``; waits until it finishes.

    On the local runner with in-process workers (:func:`local_pool_size`)
    the per-video work goes to the shared process pool, stopped at the end.
    """
    options = PipelineOptions(list(beam_args))
    p = beam.Pipeline(options=options)
    pool = local_pool_size(beam_args)
    _ = p | "Ingest" >> IngestPipeline(settings, request_files, started_at, local_pool=pool)
    try:
        result = p.run()
        result.wait_until_finish()
    finally:
        if pool:
            close_local_pool()
    return result


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


def metric_counts(result: beam.runners.runner.PipelineResult) -> dict[str, int]:
    """The ingest counters of a finished run (committed values; empty if the runner has none)."""
    from apache_beam.metrics.metric import MetricsFilter

    try:
        query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    except (NotImplementedError, AttributeError):
        return {}
    out: dict[str, int] = {}
    for c in query.get("counters", []):
        value = c.committed if c.committed is not None else c.attempted
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(value or 0)
    return out


# --------------------------------------------------------------------------- #
# the library entry: a list in, a finished store out

#: Videos per pool process handed over by the launcher before the pipeline starts (local runner).
EARLY_PER_PROCESS = 1
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
) -> WrittenRequests:
    """Read the list as a stream; write request shards and bad rows into the store.

    Memory stays flat whatever the list's size: requests go to shards of
    :data:`REQUESTS_PER_SHARD` lines as they come, the ids seen are kept in
    a temporary SQLite file. Stale shards of an earlier list are removed
    after the new ones are written; bad rows are kept per list (keyed by the
    list's name and content), so lists ingested one after the other all
    keep theirs and re-running a list replaces its own files.
    """
    from audioscope.sources.lists import BadRow, SeenIds, read_video_list

    ids = SeenIds(workdir)
    key = list_key(list_path)
    files: list[str] = []
    bad_files: list[str] = []
    chunk: list[str] = []
    bad: list[str] = []
    n_req = n_bad = 0

    def flush_requests() -> None:
        # named -i-of-?????: renamed below once the count is known
        path = layout.path("requests", f".writing-{len(files):05d}.jsonl")
        storage.atomic_write(path, "".join(c + "\n" for c in chunk))
        files.append(path)
        chunk.clear()

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
            n_req += 1
            chunk.append(item.to_json())
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
    from audioscope.pipelines.runner import check_paths_for_runner
    from audioscope.sources.fetch import FetchLimits

    # Workers see the store and the media root as given: made absolute here,
    # and refused at once when local while the workers run elsewhere.
    paths = check_paths_for_runner(list(config.beam_args), {"--store": config.store, "--media-root": config.media_root})
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
            )
        except ValueError as e:
            close_local_pool()
            raise UserError(f"cannot read the list {config.list_path}: {e}; check --format") from None
        except BaseException:
            close_local_pool()
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
            if pool and written.files:
                # the first videos start now, while Beam builds and starts the pipeline
                early = EARLY_PER_PROCESS * pool_processes(pool)
                submit_early(pool, settings, storage.read_lines(written.files[0])[:early])
            with ctx:
                run_pipeline(settings, written.files, config.beam_args, started_at=started)
            summary = json.loads(storage.read_text(layout.summary_json))
            unfinished = unfinished_count(layout, written.ids)
        finally:
            written.ids.close()
            close_local_pool()
    return IngestResult(
        store=config.store, requested=written.requested, bad_rows=written.bad_rows, summary=summary,
        unfinished=unfinished,
    )
