"""The ingest Beam pipeline: video requests -> clip store.

Stages (labels as they show in the Beam / Dataflow UI)::

    ReadRequests       the lines of STORE/requests/requests-*.jsonl, one video
                       request each, spread over workers (pipelines/work.py)
    IngestVideos       per video: skip if finished, else fetch, probe, decode
                       once, slice clips, write media then status (never
                       raises for a bad item; Metrics counters per outcome);
                       a worker decodes the next video while it writes one
    BuildIndex         after all videos: read ALL status records of the store
                       (parallel over status/<prefix>/ folders), write
                       status.parquet, the index shards (in parallel), then
                       summary.json

Everything shipped to workers is a small frozen dataclass or a module-level
function, so the pipeline runs unchanged on DirectRunner (in-process or
multi-processing), PortableRunner and Dataflow.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import shutil
import tempfile
import time
import zlib
from concurrent.futures import Future
from typing import Any, Iterable, Iterator, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

from audioscope import storage
from audioscope.clipstore.format import FORMAT_VERSION, Layout, naive_bytes_per_clip
from audioscope.clipstore.writer import (
    STATUS_BAD_ROW,
    STATUS_FAILED,
    STATUS_OK,
    STATUS_PARTIAL,
    IngestSettings,
    StatusRecord,
    decode_video,
    finish_video,
)
from audioscope.pipelines.work import ReadWork

logger = logging.getLogger(__name__)

#: Videos per index shard: 200,000 videos give 20 shards of ~360k clips.
VIDEOS_PER_INDEX_SHARD = 10_000
METRICS_NAMESPACE = "audioscope.ingest"


def index_shard_count(n_videos: int) -> int:
    return max(1, math.ceil(n_videos / VIDEOS_PER_INDEX_SHARD))


def index_shard_of(video_id: str, n_shards: int) -> int:
    """A stable shard for a video (crc32, the same on every machine and run)."""
    return zlib.crc32(video_id.encode("utf-8")) % n_shards


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
        record, skipped = finish_video(decoding.result(), self.settings)
        if skipped:
            self._count("videos_skipped")
        elif record.status in (STATUS_OK, STATUS_PARTIAL):
            self._count("videos_ok")
            self._count("clips", record.n_clips)
            self._count("media_bytes", record.media_bytes)
        else:
            self._count("videos_failed")
            self._count(f"failed_{record.kind}")
        return record.video_id


# --------------------------------------------------------------------------- #
# index

#: The one key under which a GroupByKey gathers a whole PCollection.
_ALL = "all"


def _under_one_key(element: Any) -> tuple[str, Any]:
    return _ALL, element


def _list_status_dirs(everything: tuple[str, Iterable[str]], status_dir: str) -> list[str]:
    """The status/<prefix>/ folders, once every video is finished (the group holds them all)."""
    del everything  # its only job was to wait
    return storage.list_dirs(status_dir)


def _read_status_dir(directory: str) -> Iterator[dict[str, Any]]:
    for path in storage.glob(storage.join(directory, "*.json")):
        yield json.loads(storage.read_text(path))


def _bad_rows(layout: Layout) -> list[str]:
    """The JSON lines of every recorded bad list row (BadRow.from_json takes a line)."""
    paths = storage.glob(storage.join(layout.bad_rows_dir, "*.jsonl"))
    return [line for path in paths for line in storage.read_lines(path)]


def build_summary(
    status_rows: Sequence[dict[str, Any]], index_files: Sequence[str], params_json: dict[str, Any],
    wall_seconds: float | None,
) -> dict[str, Any]:
    """The store's ``summary.json`` from its status rows."""
    from audioscope.clipstore.format import StoreParams

    params = StoreParams.from_json(params_json)
    videos = [r for r in status_rows if r["status"] != STATUS_BAD_ROW]
    done = [r for r in videos if r["status"] in (STATUS_OK, STATUS_PARTIAL)]
    failed = [r for r in status_rows if r["status"] in (STATUS_FAILED, STATUS_BAD_ROW)]
    by_kind: dict[str, int] = {}
    for r in failed:
        by_kind[str(r["kind"])] = by_kind.get(str(r["kind"]), 0) + 1
    clips = sum(int(r["n_clips"]) for r in done)
    media_bytes = sum(int(r["media_bytes"]) for r in done)
    media_seconds = sum(int(r["media_seconds"]) for r in done)
    clip_seconds = clips * params.clip_seconds
    naive_per_clip_second = naive_bytes_per_clip(params) / params.clip_seconds
    per_clip_second = media_bytes / clip_seconds if clip_seconds else None
    per_media_second = media_bytes / media_seconds if media_seconds else None
    return {
        "format_version": FORMAT_VERSION,
        "params": params.to_json(),
        "videos": len(videos),
        "videos_ok": sum(r["status"] == STATUS_OK for r in videos),
        "videos_partial": sum(r["status"] == STATUS_PARTIAL for r in videos),
        "videos_failed": sum(r["status"] == STATUS_FAILED for r in videos),
        "bad_rows": sum(r["status"] == STATUS_BAD_ROW for r in status_rows),
        "failures_by_kind": dict(sorted(by_kind.items())),
        "clips": clips,
        "hours": round(sum(float(r["duration"] or 0.0) for r in done) / 3600.0, 4),
        "media_bytes": media_bytes,
        "bytes_per_clip_second": round(per_clip_second, 1) if per_clip_second else None,
        "naive_bytes_per_clip_second": naive_per_clip_second,
        # naive bytes / store bytes for these clips (short videos lower it:
        # their last seconds are shared by fewer clips)
        "compression_vs_naive": (
            round(naive_per_clip_second / per_clip_second, 2) if per_clip_second else None
        ),
        "media_seconds": media_seconds,
        "bytes_per_media_second": round(per_media_second, 1) if per_media_second else None,
        # the same ratio for long videos (one clip per stored second)
        "compression_vs_naive_long_videos": (
            round(naive_bytes_per_clip(params) / per_media_second, 2) if per_media_second else None
        ),
        "index_files": sorted(index_files),
        "wall_seconds": None if wall_seconds is None else round(wall_seconds, 1),
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


class WriteStatusTable(beam.DoFn):
    """All status records -> ``index/status.parquet``; yields one job per index shard.

    Each job is ``(shard, n_shards, records of its videos, summary)``; every
    shard gets one, empty or not, so that a shard of an earlier run is always
    replaced. The summary (small) rides along to :class:`FinalizeStore`.
    """

    def __init__(self, store: str) -> None:
        self.store = store

    def process(self, everything: tuple[str, Iterable[dict[str, Any]]]) -> Iterator[tuple[int, int, list, dict]]:
        import io

        import pyarrow.parquet as pq

        from audioscope.clipstore.format import load_params
        from audioscope.clipstore.writer import bad_row_status
        from audioscope.schemas.tables import STATUS, to_table
        from audioscope.sources.lists import BadRow

        layout = Layout(self.store)
        records = [r for r in everything[1] if r is not None]
        rows = [StatusRecord.from_json(r).status_row() for r in records]
        rows += [bad_row_status(BadRow.from_json(b)) for b in _bad_rows(layout)]
        rows.sort(key=lambda r: (r["video_id"] is None, r["video_id"] or "", r["origin"] or "", r["source"]))
        buf = io.BytesIO()
        pq.write_table(to_table(rows, STATUS), buf, compression="zstd")
        storage.atomic_write(layout.status_table, buf.getvalue())

        params = load_params(layout)
        assert params is not None, "store.json is written by the launcher before the pipeline"
        n = index_shard_count(len(records))
        names = [layout.index_shard(i, n).rsplit("/", 1)[-1] for i in range(n)]
        summary = build_summary(rows, names, params.to_json(), None)
        jobs: list[list[dict[str, Any]]] = [[] for _ in range(n)]
        for r in records:
            jobs[index_shard_of(r["video_id"], n)].append(r)
        for i, shard_records in enumerate(jobs):
            yield i, n, shard_records, summary


def write_index_shard(job: tuple[int, int, list, dict], store: str) -> tuple[str, dict[str, Any]]:
    """Writes ``index/clips-NNNNN-of-MMMMM.parquet`` for one job; returns the summary on."""
    import io

    import pyarrow.parquet as pq

    from audioscope.schemas.tables import CLIP_INDEX, to_table

    shard, n, records, summary = job
    rows = [row for r in records for row in StatusRecord.from_json(r).index_rows()]
    rows.sort(key=lambda r: (r["video_id"], r["start"]))
    buf = io.BytesIO()
    pq.write_table(to_table(rows, CLIP_INDEX), buf, compression="zstd")
    storage.atomic_write(Layout(store).index_shard(shard, n), buf.getvalue())
    return _ALL, summary


class FinalizeStore(beam.DoFn):
    """Once every index shard is written: ``summary.json``, and stale shards removed."""

    def __init__(self, store: str, started_at: float | None) -> None:
        self.store = store
        self.started_at = started_at

    def process(self, written: tuple[str, Iterable[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
        layout = Layout(self.store)
        summary = dict(next(iter(written[1])))
        if self.started_at:
            summary["wall_seconds"] = round(time.time() - self.started_at, 1)
        storage.atomic_write(layout.summary_json, json.dumps(summary, indent=2) + "\n")
        keep = set(summary["index_files"])
        for path in storage.glob(storage.join(layout.index_dir, "clips-*.parquet")):
            if path.rsplit("/", 1)[-1] not in keep:
                storage.remove(path)
        yield summary


class BuildIndex(beam.PTransform):
    """After every video is finished: status table, index shards, then summary.

    Every status record of the store is read again (videos of earlier runs
    and lists included), in parallel over the status/<prefix>/ folders. Each
    "wait for everything" is a GroupByKey under one key, the cheapest barrier
    on every runner.
    """

    def __init__(self, store: str, started_at: float | None = None) -> None:
        super().__init__()
        self.store = store
        self.started_at = started_at

    def expand(self, finished: beam.PCollection[str]) -> beam.PCollection[dict[str, Any]]:
        layout = Layout(self.store)
        # One None joins each barrier, so that it fires on an empty list too.
        none = finished.pipeline | "None" >> beam.Create([None])
        records = (
            (finished, none)
            | "FinishedOrNone" >> beam.Flatten()
            | "KeyFinished" >> beam.Map(_under_one_key)
            | "AllFinished" >> beam.GroupByKey()
            | "ListStatusDirs" >> beam.FlatMap(_list_status_dirs, layout.status_dir)
            | "SpreadStatusDirs" >> beam.Reshuffle()
            | "ReadStatusRecords" >> beam.FlatMap(_read_status_dir)
        )
        return (
            (records, none)
            | "RecordsOrNone" >> beam.Flatten()
            | "KeyRecords" >> beam.Map(_under_one_key)
            | "AllRecords" >> beam.GroupByKey()
            | "WriteStatusTable" >> beam.ParDo(WriteStatusTable(self.store))
            | "SpreadIndexShards" >> beam.Reshuffle()
            | "WriteIndexShards" >> beam.Map(write_index_shard, self.store)
            | "AllShardsWritten" >> beam.GroupByKey()
            | "FinalizeStore" >> beam.ParDo(FinalizeStore(self.store, self.started_at))
        )


class IngestPipeline(beam.PTransform):
    """Requests (in the store) -> media, status records, index, summary."""

    def __init__(
        self, settings: IngestSettings, request_files: Sequence[str], started_at: float | None = None
    ) -> None:
        super().__init__()
        self.settings = settings
        # The launcher wrote the request shards and passes their paths: a
        # handful of them (10,000 videos each) is cheaper to ship than a
        # file-pattern source is to split.
        self.request_files = list(request_files)
        self.started_at = started_at

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection[dict[str, Any]]:
        finished = (
            pbegin
            | "ReadRequests" >> ReadWork(self.request_files)
            | "IngestVideos" >> beam.ParDo(IngestVideo(self.settings))
        )
        return finished | "BuildIndex" >> BuildIndex(self.settings.store, self.started_at)


def run_pipeline(
    settings: IngestSettings, request_files: Sequence[str], beam_args: Sequence[str] = (),
    started_at: float | None = None,
) -> beam.runners.runner.PipelineResult:
    """Build and run the ingest pipeline over ``request_files``; waits until it finishes."""
    options = PipelineOptions(list(beam_args))
    p = beam.Pipeline(options=options)
    _ = p | "Ingest" >> IngestPipeline(settings, request_files, started_at)
    result = p.run()
    result.wait_until_finish()
    return result


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
