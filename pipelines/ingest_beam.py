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
                       (N ffmpeg runs at a time) that every runner thread
                       feeds (IngestVideoInPool,
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

The launcher (:mod:`audioscope.pipelines.ingest`) imports this module only
when the pipeline is built, so that the local pool's first videos are
decoded while Beam loads.

Everything shipped to workers is a small frozen dataclass or a module-level
function, so the pipeline runs unchanged on DirectRunner (in-process or
multi-processing), PortableRunner and Dataflow.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from concurrent.futures import Future
from typing import Any, Iterable, Iterator, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

from audioscope import storage
from audioscope.clipstore.format import Layout, index_shard_count, index_shard_of
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
    local_pool_size,
    outcome,
    outcome_given,
    pool_closed,
    pool_processes,
    runner_args,
    take_early,
)
from audioscope.pipelines.runner import new_pipeline, run_to_end
from audioscope.pipelines.work import ReadWork

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
            outcome_given()
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
    """One status/<prefix>/ folder -> its status part, (shard, index rows) and running totals.

    The totals also say how many index rows the folder sent to each shard,
    so that a shard that comes up short (the runner lost some rows) is caught.
    """

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
        by_shard: dict[int, list[dict[str, Any]]] = {}
        for r in records:
            if r.clips:
                by_shard.setdefault(index_shard_of(r.video_id, n), []).extend(r.index_rows())
        sent = {i: len(shard_rows) for i, shard_rows in by_shard.items()}
        yield beam.pvalue.TaggedOutput(self.TOTALS, ("totals", prefix, totals, sent))
        for i, shard_rows in by_shard.items():
            yield i, (n, shard_rows)


def write_index_shard(job: tuple[int, Iterable[tuple[int, list]]], store: str) -> tuple[str, str, Any, Any]:
    """Writes ``index/clips-NNNNN-of-MMMMM.parquet`` from its rows; returns its name, n and rows written."""
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
    return "shard", path.rsplit("/", 1)[-1], n, (shard, len(rows))


class _Gather(beam.CombineFn):
    """Totals of every status folder, the names of the written shards, and index rows per shard:
    sent (by the status folders) and written (by the shards). All small."""

    def create_accumulator(self) -> dict[str, Any]:
        return {"totals": None, "prefixes": [], "shards": [], "n": None, "sent": {}, "written": {}}

    @staticmethod
    def _add_rows(into: dict[int, int], rows: dict[int, int]) -> None:
        for shard, n in rows.items():
            into[shard] = into.get(shard, 0) + n

    def add_input(self, acc: dict[str, Any], item: tuple[str, Any, Any, Any]) -> dict[str, Any]:
        if item[0] == "totals":
            acc["prefixes"].append(item[1])
            acc["totals"] = item[2] if acc["totals"] is None else acc["totals"].merge(item[2])
            self._add_rows(acc["sent"], item[3])
        elif item[0] == "shard":
            acc["shards"].append(item[1])
            acc["n"] = item[2]
            self._add_rows(acc["written"], dict([item[3]]))
        return acc

    def merge_accumulators(self, accs: Iterable[dict[str, Any]]) -> dict[str, Any]:
        out = self.create_accumulator()
        for acc in accs:
            out["prefixes"] += acc["prefixes"]
            out["shards"] += acc["shards"]
            out["n"] = acc["n"] if acc["n"] is not None else out["n"]
            self._add_rows(out["sent"], acc["sent"])
            self._add_rows(out["written"], acc["written"])
            if acc["totals"] is not None:
                out["totals"] = acc["totals"] if out["totals"] is None else out["totals"].merge(acc["totals"])
        return out

    def extract_output(self, acc: dict[str, Any]) -> dict[str, Any]:
        return acc


class FinalizeStore(beam.DoFn):
    """Once every shard and status part is written: status.parquet, summary.json, stale shards removed.

    Finishes nothing when any part of the index is missing: a shard, a
    status folder's part (every folder under status/ must have come
    through), or index rows (each shard must hold every row the status
    folders sent it). A runner that dropped work must not leave a store that
    looks complete: the summary is removed (the store reads as unfinished)
    and ``index/incomplete.json`` says why, for the launcher's message.
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
        lost = self._lost(layout, gathered, names, n)
        if lost:
            # Nothing says finished: no summary (the store reads as unfinished), and the reason for the launcher.
            from audioscope.clipstore.summary import run_stamp

            stamp = run_stamp(self.started_at) if self.started_at else None
            storage.atomic_write(layout.index_incomplete, json.dumps({"started_at": stamp, "reason": lost}) + "\n")
            if storage.exists(layout.summary_json):
                storage.remove(layout.summary_json)
            return
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
        summary = build_summary(totals, names, params.to_json(), wall, started_at=self.started_at)
        storage.atomic_write(layout.summary_json, json.dumps(summary, indent=2) + "\n")
        keep = set(names)
        for path in storage.glob(layout.index_shard_glob()):
            if path.rsplit("/", 1)[-1] not in keep:
                storage.remove(path)
        if storage.exists(layout.index_incomplete):
            storage.remove(layout.index_incomplete)
        yield summary

    @staticmethod
    def _lost(layout: Layout, gathered: dict[str, Any], names: list[str], n: int) -> str | None:
        """What of the index the runner lost (None: nothing): a shard, a status folder, or index rows."""
        expected = [layout.index_shard(i, n).rsplit("/", 1)[-1] for i in range(n)]
        if names != expected:
            return f"only {len(names)} of {n} index shards were written"
        folders = {d.rstrip("/").rsplit("/", 1)[-1] for d in storage.list_dirs(layout.status_dir)}
        missing = sorted(folders - set(gathered["prefixes"]))
        if missing:
            shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
            return f"{len(missing)} of {len(folders)} status folders did not reach the index: {shown}"
        short = sorted(i for i, sent in gathered["sent"].items() if gathered["written"].get(i, 0) != sent)
        if short:
            i = short[0]
            return (
                f"{len(short)} index shards do not hold the rows their status records give: shard {i} "
                f"holds {gathered['written'].get(i, 0)} of {gathered['sent'][i]}"
            )
        return None


class BuildIndex(beam.PTransform):
    """After every video is finished: status table, index shards, then summary.

    Every status record of the store is read again (videos of earlier runs
    and lists included), in parallel over the status/<prefix>/ folders.
    """

    def __init__(self, store: str, started_at: float | None = None, spread: bool = True) -> None:
        super().__init__()
        self.store = store
        self.started_at = started_at
        self.spread = spread

    def expand(self, finished: beam.PCollection[str]) -> beam.PCollection[dict[str, Any]]:
        jobs = (
            finished
            | "AllFinished" >> beam.combiners.Count.Globally()
            | "ListStatusDirs" >> beam.FlatMap(_list_jobs, self.store)
        )
        if self.spread:  # over the workers (a remote runner would fuse the reads with the one-element list)
            jobs = jobs | "SpreadJobs" >> beam.Reshuffle()
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
        # In the launcher's process (the local pool) a Reshuffle spreads nothing and costs a stage (~50 ms).
        return finished | "BuildIndex" >> BuildIndex(self.settings.store, self.started_at, spread=not self.local_pool)


def run_pipeline(
    settings: IngestSettings, request_files: Sequence[str], beam_args: Sequence[str] = (),
    started_at: float | None = None,
) -> beam.runners.runner.PipelineResult:
    """Build and run the ingest pipeline over ``request_files``; waits until it finishes.

    On the local runner with in-process workers (:func:`local_pool_size`)
    the per-video work goes to the shared process pool, stopped at the end.
    """
    pool = local_pool_size(beam_args)
    p = new_pipeline(runner_args(beam_args))  # the pool's processes do the work; the runner needs few threads
    _ = p | "Ingest" >> IngestPipeline(settings, request_files, started_at, local_pool=pool)
    try:
        result = run_to_end(p)
    except BaseException:
        if pool:
            close_local_pool(stop_running=True)
        raise
    if pool:
        close_local_pool()
    return result
