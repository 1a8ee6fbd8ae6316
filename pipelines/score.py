"""The score Beam pipeline: every clip of a clip store -> coincidence probability.

Stages (labels as they show in the Beam / Dataflow UI)::

    ReadWork        the videos still to score: JSON lines in SCORES_DIR/work/
                    (video id + its index clips), written by the launcher,
                    spread over workers (pipelines/work.py)
    ReadClips       per video: read its media shard ONCE, slice every clip;
                    emits ((video_id, clip_id, start, end), (audio, frames)).
                    A video whose media cannot be read gets a marker in
                    SCORES_DIR/failed/ and a counter; the run goes on.
    RunInference    KeyedModelHandler(CoincidenceModelHandler): Beam batches
                    the clips (--batch-size), one model per worker process
    GroupByVideo    the probabilities of one video together
    WriteParts      SCORES_DIR/parts/<id[:2]>/<video_id>.parquet, atomically
                    (its existence means the video is finished)
    Merge           after every video: ALL parts (earlier runs' too), read in
                    parallel per <id[:2]> folder -> scores.parquet (sorted by
                    video_id, start) and then summary.json

Layout of SCORES_DIR::

    scores.json                          model_id, model, store, batch_size (fixed)
    work/work-NNNNN-of-MMMMM.jsonl       the videos this run scores
    parts/<id[:2]>/<video_id>.parquet    one video's scores (schemas.tables.SCORES)
    failed/<id[:2]>/<video_id>.json      a video this run could not read (retried next run)
    scores.parquet                       every scored clip (schemas.tables.SCORES)
    summary.json                         counts, failures, model_id, timing

Everything shipped to workers is small and picklable (paths, ints); the only
state a worker keeps is the model (loaded once per worker process by
RunInference) and an open :class:`ClipStore` per DoFn instance.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import logging
import os
import tempfile
import time
from typing import Any, Iterable, Iterator, Mapping, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from audioscope import storage
from audioscope.pipelines.work import ReadWork

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
METRICS_NAMESPACE = "audioscope.score"
#: Videos per work shard (one JSON line each).
VIDEOS_PER_WORK_SHARD = 10_000

#: (video_id, clip_id, start, end)
ClipKey = tuple[str, str, float, float]
#: (audio float32 [80000], frames uint8 [5, 128, 128, 3])
Example = tuple[np.ndarray, np.ndarray]


class ScoresLayout:
    """Where each part of a scores directory lives (local path or URI)."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/") if "://" in root else root

    def path(self, *parts: str) -> str:
        return storage.join(self.root, *parts)

    @property
    def scores_json(self) -> str:
        return self.path("scores.json")

    @property
    def scores_parquet(self) -> str:
        return self.path("scores.parquet")

    @property
    def summary_json(self) -> str:
        return self.path("summary.json")

    @property
    def work_dir(self) -> str:
        return self.path("work")

    @property
    def parts_dir(self) -> str:
        return self.path("parts")

    @property
    def failed_dir(self) -> str:
        return self.path("failed")

    def work_shard(self, i: int, n: int) -> str:
        return self.path("work", f"work-{i:05d}-of-{n:05d}.jsonl")

    def part(self, video_id: str) -> str:
        return self.path("parts", video_id[:2], f"{video_id}.parquet")

    def failed(self, video_id: str) -> str:
        return self.path("failed", video_id[:2], f"{video_id}.json")


def video_id_of(path: str, suffix: str) -> str:
    """The video id of a part or failure marker path (``.../<id>.parquet``)."""
    return path.rsplit("/", 1)[-1][: -len(suffix)]


# --------------------------------------------------------------------------- #
# the model


def _local_copy(uri: str) -> str:
    """Copy a model directory on an object store to a local temporary folder."""
    fs, root = storage.url_to_fs(uri)
    root = root.rstrip("/")
    local = tempfile.mkdtemp(prefix="audioscope-model-")
    files = fs.find(root)
    if not files:
        raise FileNotFoundError(f"no files under {uri}")
    for f in files:
        rel = f[len(root) :].lstrip("/")
        dest = os.path.join(local, *rel.split("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        fs.get_file(f, dest)
    return local


def load_predictor(model_path: str, batch_size: int = 64) -> Any:
    """``models.coincidence.load_model`` for a local folder, ``gs://`` or ``s3://``.

    A remote SavedModel is copied to a local temporary folder first (so the
    ``model_id`` is the same hash of the same files). Raises
    ``SignatureError`` when the model does not have the coincidence signature.
    """
    from audioscope.models.coincidence import load_model

    local = model_path if storage.is_local(model_path) else _local_copy(model_path)
    if local.startswith("file://"):
        local = local[len("file://") :]
    return load_model(local, batch_size=batch_size)


class CoincidenceModelHandler(ModelHandler[Example, float, Any]):
    """RunInference handler for any SavedModel with the coincidence signature.

    Examples are ``(audio, frames)``; a prediction is the clip's probability
    (a float: results carry no copy of the example, so nothing large flows
    past inference). The model is loaded by :func:`load_predictor`.

    ``share_model_across_processes`` stays False (Beam's default): the model
    is loaded once per worker *process* and shared by its threads (Beam's
    ``shared.Shared``), which is what DirectRunner's multi-threading mode and
    Dataflow's Python workers want for a model of a few MB. Sharing across
    processes would proxy every batch (tens of MB of frames) through a
    separate model server process.
    """

    def __init__(self, model_path: str, batch_size: int = 64) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model_path = model_path
        self.batch_size = int(batch_size)

    def load_model(self) -> Any:
        return load_predictor(self.model_path, self.batch_size)

    def run_inference(
        self, batch: Sequence[Example], model: Any, inference_args: Mapping[str, Any] | None = None
    ) -> Iterable[float]:
        if not batch:
            return []
        audio = np.stack([a for a, _ in batch])
        frames = np.stack([f for _, f in batch])
        n = len(batch)
        pad = -n % self.batch_size
        if pad:
            # Every model call gets exactly batch_size rows (zeros fill a
            # bundle's last, short batch): TensorFlow's CPU kernels take other
            # code paths for other batch shapes (e.g. fewer rows than a SIMD
            # width), which can move a probability by a float32 ulp. With one
            # shape a clip's score does not depend on how clips were batched,
            # so a video rescored alone gets the same bytes as before.
            audio = np.concatenate([audio, np.zeros((pad, *audio.shape[1:]), audio.dtype)])
            frames = np.concatenate([frames, np.zeros((pad, *frames.shape[1:]), frames.dtype)])
            Metrics.counter(METRICS_NAMESPACE, "padded_rows").inc(pad)
        return [float(p) for p in model(audio, frames)[:n]]

    def get_num_bytes(self, batch: Sequence[Example]) -> int:
        # Beam's default pickles the whole batch just to measure it.
        return int(sum(a.nbytes + f.nbytes for a, f in batch))

    def get_metrics_namespace(self) -> str:
        return f"{METRICS_NAMESPACE}.inference"

    def batch_elements_kwargs(self) -> Mapping[str, Any]:
        # Fixed-size batches (the last one of a bundle may be smaller): the
        # model sees the batch size it was asked for from the first batch on.
        return {"min_batch_size": self.batch_size, "max_batch_size": self.batch_size}

    def __repr__(self) -> str:
        return f"CoincidenceModelHandler({self.model_path!r}, batch_size={self.batch_size})"


# --------------------------------------------------------------------------- #
# per-video work


class _Counted(beam.DoFn):
    def _count(self, name: str, n: int = 1) -> None:
        counters = self.__dict__.setdefault("_counters", {})
        if name not in counters:
            counters[name] = Metrics.counter(METRICS_NAMESPACE, name)
        counters[name].inc(n)


def work_line(video_id: str, clips: Iterable[tuple[str, float, float]]) -> str:
    """One line of a work shard: a video and its index clips (clip_id, start, end)."""
    return json.dumps({"video_id": video_id, "clips": [[c, float(s), float(e)] for c, s, e in clips]})


class ReadClips(_Counted):
    """A work line -> the video's clips as keyed examples (its media read once)."""

    def __init__(self, store: str, scores_dir: str) -> None:
        self.store_uri = store
        self.scores_dir = scores_dir

    def setup(self) -> None:
        from audioscope.clipstore.reader import ClipStore

        self.store = ClipStore.open(self.store_uri)
        self.layout = ScoresLayout(self.scores_dir)

    def _slice(self, video_id: str, clips: list[list[Any]]) -> list[tuple[ClipKey, Example]]:
        audio, frames = self.store.video(video_id)
        sr = self.store.params.sample_rate
        out = []
        for clip_id, start, end in clips:
            s, e = int(round(start)), int(round(end))
            a, f = audio[s * sr : e * sr], frames[s:e]
            if s < 0 or len(a) != (e - s) * sr or len(f) != e - s:
                raise ValueError(
                    f"clip {clip_id} ({start}-{end} s) is outside the {len(frames)} seconds stored for the video"
                )
            out.append(((video_id, str(clip_id), float(start), float(end)), (a, f)))
        return out

    def process(self, line: str) -> Iterator[tuple[ClipKey, Example]]:
        if not line.strip():
            return
        work = json.loads(line)
        video_id = work["video_id"]
        try:
            examples = self._slice(video_id, work["clips"])
        except Exception as e:  # noqa: BLE001 - recorded, the run goes on, retried next run
            logger.warning("cannot read the clips of %s: %s", video_id, e)
            message = f"{type(e).__name__}: {e}"
            storage.atomic_write(
                self.layout.failed(video_id),
                json.dumps({"video_id": video_id, "message": message}, sort_keys=True) + "\n",
            )
            self._count("videos_failed")
            return
        self._count("videos_read")
        self._count("clips_read", len(examples))
        yield from examples


def _by_video(result: tuple[ClipKey, float]) -> tuple[str, tuple[str, float, float, float]]:
    (video_id, clip_id, start, end), probability = result
    return video_id, (clip_id, start, end, float(probability))


def parquet_bytes(table: Any) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


class WritePart(_Counted):
    """(video_id, [(clip_id, start, end, p)]) -> ``parts/<id[:2]>/<id>.parquet``; yields the clip count."""

    def __init__(self, scores_dir: str, model_id: str) -> None:
        self.scores_dir = scores_dir
        self.model_id = model_id

    def process(self, element: tuple[str, Iterable[tuple[str, float, float, float]]]) -> Iterator[int]:
        from audioscope.schemas.tables import SCORES, to_table

        video_id, results = element
        rows = [
            {"clip_id": c, "video_id": video_id, "start": s, "end": e, "probability": p, "model_id": self.model_id}
            for c, s, e, p in sorted(results, key=lambda r: (r[1], r[0]))
        ]
        storage.atomic_write(ScoresLayout(self.scores_dir).part(video_id), parquet_bytes(to_table(rows, SCORES)))
        self._count("videos_scored")
        self._count("clips_scored", len(rows))
        yield len(rows)


# --------------------------------------------------------------------------- #
# merge


def _list_part_dirs(parts_dir: str, _n_written: int) -> list[str]:
    """The parts/<prefix>/ folders (waits, through its side input, for every part)."""
    return storage.list_dirs(parts_dir)


def _read_part_dir(directory: str) -> Iterator[bytes]:
    """All parts of one prefix folder as one Arrow IPC stream (bytes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from audioscope.schemas.tables import SCORES, validate

    tables = []
    for path in storage.glob(storage.join(directory, "*.parquet")):
        with storage.open_file(path) as fh:
            tables.append(validate(pq.read_table(fh), SCORES))
    if not tables:
        return
    table = pa.concat_tables(tables)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    yield sink.getvalue()


def merge_tables(streams: Sequence[bytes]) -> Any:
    """One SCORES table sorted by (video_id, start) from IPC streams (any order)."""
    import pyarrow as pa

    from audioscope.schemas.tables import SCORES, validate

    tables = [pa.ipc.open_stream(s).read_all() for s in streams]
    table = pa.concat_tables(tables) if tables else SCORES.empty_table()
    table = table.sort_by([("video_id", "ascending"), ("start", "ascending"), ("clip_id", "ascending")])
    return validate(table.combine_chunks(), SCORES)


def read_failures(layout: ScoresLayout) -> dict[str, str]:
    out = {}
    for path in storage.list_files(layout.failed_dir, ".json"):
        record = json.loads(storage.read_text(path))
        out[str(record["video_id"])] = str(record["message"])
    return dict(sorted(out.items()))


class FinalizeScores(beam.DoFn):
    """Writes ``scores.parquet`` and then ``summary.json``."""

    def __init__(self, scores_dir: str, info: Mapping[str, Any], started_at: float | None) -> None:
        self.scores_dir = scores_dir
        self.info = dict(info)
        self.started_at = started_at

    def process(self, _: Any, streams: list[bytes], clips_scored: int, videos_scored: int) -> Iterator[dict[str, Any]]:
        layout = ScoresLayout(self.scores_dir)
        table = merge_tables(streams)
        storage.atomic_write(layout.scores_parquet, parquet_bytes(table))
        seconds = time.time() - self.started_at if self.started_at else None
        failed = read_failures(layout)
        summary = {
            "format_version": FORMAT_VERSION,
            "model_id": self.info.get("model_id"),
            "model": self.info.get("model"),
            "store": self.info.get("store"),
            "scores": layout.scores_parquet,
            "clips": table.num_rows,
            "videos": len(set(table.column("video_id").to_pylist())),
            "index_clips": self.info.get("index_clips"),
            "index_videos": self.info.get("index_videos"),
            "clips_scored": int(clips_scored),
            "videos_scored": int(videos_scored),
            "videos_failed": len(failed),
            "failed": failed,
            "seconds": None if seconds is None else round(seconds, 2),
            "clips_per_second": round(clips_scored / seconds, 2) if seconds else None,
            "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        storage.atomic_write(layout.summary_json, json.dumps(summary, indent=2) + "\n")
        yield summary


class MergeScores(beam.PTransform):
    """After every part is written: scores.parquet and summary.json from ALL parts."""

    def __init__(self, scores_dir: str, info: Mapping[str, Any], started_at: float | None = None) -> None:
        super().__init__()
        self.scores_dir = scores_dir
        self.info = dict(info)
        self.started_at = started_at

    def expand(self, written: beam.PCollection[int]) -> beam.PCollection[dict[str, Any]]:
        layout = ScoresLayout(self.scores_dir)
        clips_scored = written | "SumClips" >> beam.CombineGlobally(sum)
        videos_scored = written | "CountVideos" >> beam.combiners.Count.Globally()
        streams = (
            written.pipeline
            | "PartsRoot" >> beam.Create([layout.parts_dir])
            | "ListPartDirs" >> beam.FlatMap(_list_part_dirs, beam.pvalue.AsSingleton(videos_scored))
            | "SpreadPartDirs" >> beam.Reshuffle()
            | "ReadPartDirs" >> beam.FlatMap(_read_part_dir)
        )
        return (
            written.pipeline
            | "One" >> beam.Create([None])
            | "Finalize" >> beam.ParDo(
                FinalizeScores(self.scores_dir, self.info, self.started_at),
                beam.pvalue.AsList(streams),
                beam.pvalue.AsSingleton(clips_scored),
                beam.pvalue.AsSingleton(videos_scored),
            )
        )


class ScorePipeline(beam.PTransform):
    """Work shards -> parts -> scores.parquet and summary.json."""

    def __init__(
        self, *, store: str, scores_dir: str, model_path: str, model_id: str, batch_size: int,
        work_files: Sequence[str], info: Mapping[str, Any] | None = None, started_at: float | None = None,
    ) -> None:
        super().__init__()
        self.store = store
        self.scores_dir = scores_dir
        self.model_path = model_path
        self.model_id = model_id
        self.batch_size = batch_size
        self.work_files = list(work_files)
        self.info = dict(info or {})
        self.started_at = started_at

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection[dict[str, Any]]:
        handler = KeyedModelHandler(CoincidenceModelHandler(self.model_path, self.batch_size))
        written = (
            pbegin
            | "ReadWork" >> ReadWork(self.work_files)
            | "ReadClips" >> beam.ParDo(ReadClips(self.store, self.scores_dir))
            | "RunInference" >> RunInference(handler)
            | "KeyByVideo" >> beam.Map(_by_video)
            | "GroupByVideo" >> beam.GroupByKey()
            | "WriteParts" >> beam.ParDo(WritePart(self.scores_dir, self.model_id))
        )
        info = {"model_id": self.model_id, "model": self.model_path, "store": self.store, **self.info}
        return written | "Merge" >> MergeScores(self.scores_dir, info, self.started_at)


def run_pipeline(
    *, store: str, scores_dir: str, model_path: str, model_id: str, batch_size: int = 64,
    work_files: Sequence[str], info: Mapping[str, Any] | None = None,
    beam_args: Sequence[str] = (), started_at: float | None = None,
) -> beam.runners.runner.PipelineResult:
    """Build and run the score pipeline; waits until it finishes."""
    p = beam.Pipeline(options=PipelineOptions(list(beam_args)))
    _ = p | "Score" >> ScorePipeline(
        store=store, scores_dir=scores_dir, model_path=model_path, model_id=model_id,
        batch_size=batch_size, work_files=work_files, info=info, started_at=started_at,
    )
    result = p.run()
    result.wait_until_finish()
    return result
