"""The ingest Beam pipeline: video requests -> clip store.

Stages (labels as they show in the Beam / Dataflow UI)::

    ReadRequests       ReadFromText(STORE/requests/requests-*.jsonl)
    Reshuffle          spread videos over workers
    IngestVideos       per video: skip if finished, else fetch, probe, decode
                       once, slice clips, write media then status (never
                       raises for a bad item; Metrics counters per outcome)
    BuildIndex         after all videos: read ALL status records of the store
                       (parallel over status/<prefix>/ folders), write the
                       index shards, then status.parquet, then summary.json

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
from typing import Any, Iterable, Iterator, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from audioscope import storage
from audioscope.clipstore.format import FORMAT_VERSION, Layout, naive_bytes_per_clip
from audioscope.clipstore.writer import (
    STATUS_BAD_ROW,
    STATUS_FAILED,
    STATUS_OK,
    STATUS_PARTIAL,
    IngestSettings,
    StatusRecord,
    ingest_video,
)

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
    """One video request (a JSON line) -> its finished status record (a dict)."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self._counters: dict[str, Any] = {}

    def setup(self) -> None:
        self.workdir = tempfile.mkdtemp(prefix="audioscope-ingest-")

    def teardown(self) -> None:
        shutil.rmtree(getattr(self, "workdir", ""), ignore_errors=True)

    def _count(self, name: str, n: int = 1) -> None:
        if name not in self._counters:
            self._counters[name] = Metrics.counter(METRICS_NAMESPACE, name)
        self._counters[name].inc(n)

    def process(self, line: str) -> Iterator[str]:
        from audioscope.sources.lists import VideoRequest

        if not line.strip():
            return
        request = VideoRequest.from_json(line)
        record, skipped = ingest_video(request, self.settings, self.workdir)
        if skipped:
            self._count("videos_skipped")
        elif record.status in (STATUS_OK, STATUS_PARTIAL):
            self._count("videos_ok")
            self._count("clips", record.n_clips)
            self._count("media_bytes", record.media_bytes)
        else:
            self._count("videos_failed")
            self._count(f"failed_{record.kind}")
        yield record.video_id


# --------------------------------------------------------------------------- #
# index


def _list_status_dirs(status_dir: str, _n_processed: int) -> list[str]:
    """The status/<prefix>/ folders (waits, through its side input, for all videos)."""
    return storage.list_dirs(status_dir)


def _read_status_dir(directory: str) -> Iterator[dict[str, Any]]:
    for path in storage.glob(storage.join(directory, "*.json")):
        yield json.loads(storage.read_text(path))


def _keyed_index_rows(record: dict[str, Any], n_videos: int) -> Iterator[tuple[int, dict[str, Any]]]:
    rec = StatusRecord.from_json(record)
    shard = index_shard_of(rec.video_id, index_shard_count(n_videos))
    for row in rec.index_rows():
        yield shard, row


def _all_shards(n_videos: int) -> list[tuple[int, None]]:
    return [(i, None) for i in range(index_shard_count(n_videos))]


class WriteIndexShard(beam.DoFn):
    """(shard, rows) -> writes ``index/clips-NNNNN-of-MMMMM.parquet``, yields its name."""

    def __init__(self, store: str) -> None:
        self.store = store

    def process(self, element: tuple[int, Iterable[dict[str, Any] | None]], n_videos: int) -> Iterator[str]:
        import io

        import pyarrow.parquet as pq

        from audioscope.schemas.tables import CLIP_INDEX, to_table

        shard, rows = element
        real = sorted((r for r in rows if r is not None), key=lambda r: (r["video_id"], r["start"]))
        table = to_table(real, CLIP_INDEX)
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        n = index_shard_count(n_videos)
        path = Layout(self.store).index_shard(shard, n)
        storage.atomic_write(path, buf.getvalue())
        yield path.rsplit("/", 1)[-1]


def _bad_rows(layout: Layout) -> list[str]:
    """The JSON lines of every recorded bad list row (BadRow.from_json takes a line)."""
    rows: list[str] = []
    for path in storage.glob(storage.join(layout.bad_rows_dir, "*.jsonl")):
        for line in storage.read_text(path).splitlines():
            if line.strip():
                rows.append(line)
    return rows


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


class FinalizeStore(beam.DoFn):
    """Writes ``index/status.parquet`` and then ``summary.json``; removes stale shards."""

    def __init__(self, store: str, started_at: float | None) -> None:
        self.store = store
        self.started_at = started_at

    def process(self, records: list[dict[str, Any]], index_files: list[str]) -> Iterator[dict[str, Any]]:
        import io

        import pyarrow.parquet as pq

        from audioscope.clipstore.format import load_params
        from audioscope.clipstore.writer import bad_row_status
        from audioscope.schemas.tables import STATUS, to_table
        from audioscope.sources.lists import BadRow

        layout = Layout(self.store)
        rows = [StatusRecord.from_json(r).status_row() for r in records]
        rows += [bad_row_status(BadRow.from_json(b)) for b in _bad_rows(layout)]
        rows.sort(key=lambda r: (r["video_id"] is None, r["video_id"] or "", r["origin"] or "", r["source"]))
        buf = io.BytesIO()
        pq.write_table(to_table(rows, STATUS), buf, compression="zstd")
        storage.atomic_write(layout.status_table, buf.getvalue())
        params = load_params(layout)
        assert params is not None, "store.json is written by the launcher before the pipeline"
        wall = time.time() - self.started_at if self.started_at else None
        summary = build_summary(rows, index_files, params.to_json(), wall)
        storage.atomic_write(layout.summary_json, json.dumps(summary, indent=2) + "\n")
        keep = set(index_files)
        for path in storage.glob(storage.join(layout.index_dir, "clips-*.parquet")):
            if path.rsplit("/", 1)[-1] not in keep:
                storage.remove(path)
        yield summary


class BuildIndex(beam.PTransform):
    """After every video is finished: index shards, status table, summary (in that order)."""

    def __init__(self, store: str, started_at: float | None = None) -> None:
        super().__init__()
        self.store = store
        self.started_at = started_at

    def expand(self, finished: beam.PCollection[str]) -> beam.PCollection[dict[str, Any]]:
        layout = Layout(self.store)
        n_processed = finished | "CountFinished" >> beam.combiners.Count.Globally()
        records = (
            finished.pipeline
            | "StatusRoot" >> beam.Create([layout.status_dir])
            | "ListStatusDirs" >> beam.FlatMap(_list_status_dirs, beam.pvalue.AsSingleton(n_processed))
            | "SpreadStatusDirs" >> beam.Reshuffle()
            | "ReadStatusRecords" >> beam.FlatMap(_read_status_dir)
        )
        n_videos = beam.pvalue.AsSingleton(records | "CountVideos" >> beam.combiners.Count.Globally())
        rows = records | "IndexRows" >> beam.FlatMap(_keyed_index_rows, n_videos)
        shard_keys = (
            finished.pipeline
            | "One" >> beam.Create([None])
            | "AllShardKeys" >> beam.FlatMap(lambda _, n: _all_shards(n), n_videos)
        )
        index_files = (
            (rows, shard_keys)
            | "MergeShardKeys" >> beam.Flatten()
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteIndexShards" >> beam.ParDo(WriteIndexShard(self.store), n_videos)
        )
        return (
            records
            | "CollectStatus" >> beam.combiners.ToList()
            | "FinalizeStore" >> beam.ParDo(
                FinalizeStore(self.store, self.started_at), beam.pvalue.AsList(index_files)
            )
        )


class IngestPipeline(beam.PTransform):
    """Requests (in the store) -> media, status records, index, summary."""

    def __init__(self, settings: IngestSettings, started_at: float | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.started_at = started_at

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection[dict[str, Any]]:
        layout = Layout(self.settings.store)
        pattern = storage.join(layout.requests_dir, "requests-*.jsonl")
        finished = (
            pbegin
            | "ReadRequests" >> beam.io.ReadFromText(pattern)
            | "Reshuffle" >> beam.Reshuffle()
            | "IngestVideos" >> beam.ParDo(IngestVideo(self.settings))
        )
        return finished | "BuildIndex" >> BuildIndex(self.settings.store, self.started_at)


def run_pipeline(
    settings: IngestSettings, beam_args: Sequence[str] = (), started_at: float | None = None
) -> beam.runners.runner.PipelineResult:
    """Build and run the ingest pipeline; waits until it finishes."""
    options = PipelineOptions(list(beam_args))
    p = beam.Pipeline(options=options)
    _ = p | "Ingest" >> IngestPipeline(settings, started_at)
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
