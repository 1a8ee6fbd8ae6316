"""The score Beam pipeline: every clip of a clip store -> coincidence probability.

Stages (labels as they show in the Beam / Dataflow UI)::

    ReadWork        the videos still to score: JSON lines in SCORES_DIR/work/
                    (video id + its index clips), written by the launcher,
                    spread over workers (pipelines/work.py)
    ReadClips       per video: read its media shard ONCE, slice every clip;
                    emits ((video_id, n_clips, clip_id, start, end), (audio, frames)).
                    A video whose media cannot be read gets a marker in
                    SCORES_DIR/failed/ and a counter; the run goes on.
    RunInference    KeyedModelHandler(CoincidenceModelHandler): Beam batches
                    the clips (--batch-size), one model per worker process
    GroupByVideo    the probabilities of one video together
    WriteParts      SCORES_DIR/parts/<id[:2]>/<video_id>.parquet, atomically
                    and only with all n_clips of the video (its existence
                    means the video is finished; a video a runner lost
                    clips of gets no part and is scored by the next run)
    Merge           after every video: ALL parts (earlier runs' too), read,
                    sorted and written per <id[:2]> folder by its own worker
                    (merge/chunk-*.parquet), then streamed in order, one
                    chunk at a time, into scores.parquet (sorted by
                    video_id, start) and summary.json

Layout of SCORES_DIR::

    scores.json                          model_id, model, store, batch_size (fixed)
    work/work-NNNNN-of-MMMMM.jsonl       the videos this run scores
    parts/<id[:2]>/<video_id>.parquet    one video's scores (schemas.tables.SCORES)
    failed/<id[:2]>/<video_id>.json      a video this run could not read (retried next run)
    invalid-ids.jsonl                    index videos whose video or clip ids are not valid ids
                                         (audioscope.ids; recorded, never used as file names)
    merge/chunk-NNNNN-of-MMMMM.parquet   the merge's sorted chunks (removed once merged)
    scores.parquet                       every scored clip (schemas.tables.SCORES)
    summary.json                         counts, failures, model_id, timing, complete

:class:`ScoresLayout` owns these paths and reads them back; :func:`score` is
the library entry (``audioscope score`` is a thin wrapper around it).

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
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, RunInference

from audioscope import storage, uris
from audioscope.errors import UserError, ends_the_run
from audioscope.ids import check_clip_id, check_video_id
from audioscope.pipelines.runner import RunnerConfig, new_pipeline, run_to_end, to_stderr
from audioscope.pipelines.score_layout import FORMAT_VERSION, ScoresLayout  # ScoresLayout re-exported
from audioscope.pipelines.work import IncompleteRun, ReadWork, shortfalls
from audioscope.shell import q

logger = logging.getLogger(__name__)

METRICS_NAMESPACE = "audioscope.score"
#: Videos per work shard (one JSON line each).
VIDEOS_PER_WORK_SHARD = 10_000


#: (video_id, clips the video has, clip_id, start, end)
ClipKey = tuple[str, int, str, float, float]
#: (audio float32 [80000], frames uint8 [5, 128, 128, 3])
Example = tuple[np.ndarray, np.ndarray]


# --------------------------------------------------------------------------- #
# the model


def _local_copy(uri: str) -> str:
    """Copy a model directory on an object store to a local temporary folder."""
    fs, root = storage.url_to_fs(uri)
    root = root.rstrip("/")
    files = fs.find(root)
    if not files:
        raise FileNotFoundError(f"no files under {uri}")
    local = tempfile.mkdtemp(prefix="audioscope-model-")
    try:
        for f in files:
            rel = f[len(root) :].lstrip("/")
            dest = os.path.join(local, *rel.split("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            fs.get_file(f, dest)
    except BaseException:
        shutil.rmtree(local, ignore_errors=True)
        raise
    return local


def load_predictor(model_path: str, batch_size: int = 64) -> Any:
    """``schemas.coincidence_signature.load_model`` for a local folder, ``gs://`` or ``s3://``.

    A remote SavedModel is copied to a local temporary folder first (so the
    ``model_id`` is the same hash of the same files). Raises
    ``SignatureError`` when the model does not have the coincidence signature.
    """
    from audioscope import tfmemory

    tfmemory.configure()  # a remote worker's first TensorFlow use: its pooling allocator
    from audioscope.schemas.coincidence_signature import load_model

    if storage.is_local(model_path):
        return load_model(uris.local_path(model_path), batch_size=batch_size)
    local = _local_copy(model_path)
    try:  # the model is in memory once loaded (and its id hashed): the copy is not left behind
        return load_model(local, batch_size=batch_size)
    finally:
        shutil.rmtree(local, ignore_errors=True)


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


def work_line(video_id: str, clips: Sequence[tuple[str, float, float]]) -> str:
    """One line of a work shard: a video and its index clips (clip_id, start, end)."""
    return json.dumps({"video_id": video_id, "clips": [[c, float(s), float(e)] for c, s, e in clips]})


class ReadClips(_Counted):
    """A work line -> the video's clips as keyed examples (its media read once).

    Each key carries how many clips the video has (``n``), so the step that
    writes the video's part knows whether all of them came through.
    """

    def __init__(self, store: str, scores_dir: str) -> None:
        self.store_uri = store
        self.scores_dir = scores_dir

    def setup(self) -> None:
        from audioscope.clipstore.reader import ClipStore

        self.store = ClipStore.open(self.store_uri)
        self.layout = ScoresLayout(self.scores_dir)

    def _slice(self, video_id: str, clips: list[list[Any]]) -> list[tuple[ClipKey, Example]]:
        try:
            audio, frames = self.store.video(video_id)
        except Exception as e:  # noqa: BLE001 - the caller records it; the message names the shard
            if ends_the_run(e):
                raise
            raise ValueError(
                f"its media shard {self.store.layout.media_rel(video_id)} in {self.store_uri} cannot be read "
                f"({type(e).__name__}: {e}): the store's copy of the video is damaged; ingest it again into "
                "a new store, or restore the file, and run score again"
            ) from None
        sr = self.store.params.sample_rate
        out = []
        n = len(clips)
        for clip_id, start, end in clips:
            s, e = int(round(start)), int(round(end))
            a, f = audio[s * sr : e * sr], frames[s:e]
            if s < 0 or len(a) != (e - s) * sr or len(f) != e - s:
                raise ValueError(
                    f"clip {clip_id} ({start}-{end} s) is outside the {len(frames)} seconds stored for the video"
                )
            out.append(((video_id, n, str(clip_id), float(start), float(end)), (a, f)))
        return out

    def process(self, line: str) -> Iterator[tuple[ClipKey, Example]]:
        if not line.strip():
            return
        work = json.loads(line)
        video_id = check_video_id(work["video_id"], "a score work shard")
        try:
            examples = self._slice(video_id, work["clips"])
        except Exception as e:  # noqa: BLE001 - recorded, the run goes on, retried next run
            if ends_the_run(e):  # e.g. too many open files: every video after it would fail too
                raise
            logger.warning("cannot read the clips of %s: %s", video_id, e)
            message = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
            record = {"video_id": video_id, "message": message, "clips": len(work["clips"])}
            storage.atomic_write(self.layout.failed(video_id), json.dumps(record, sort_keys=True) + "\n")
            self._count("videos_failed")
            return
        self._count("videos_read")
        self._count("clips_read", len(examples))
        yield from examples


def _by_video(result: tuple[ClipKey, float]) -> tuple[tuple[str, int], tuple[str, float, float, float]]:
    (video_id, n, clip_id, start, end), probability = result
    return (video_id, n), (clip_id, start, end, float(probability))


def parquet_bytes(table: Any) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


class WritePart(_Counted):
    """((video_id, n), [(clip_id, start, end, p)]) -> ``parts/<id[:2]>/<id>.parquet``; yields the clip count.

    A part is written only with all ``n`` clips of its video: a video that
    came through short (a runner lost some of its clips) gets no part, so
    the launcher reports it and the next run scores it again.
    """

    def __init__(self, scores_dir: str, model_id: str) -> None:
        self.scores_dir = scores_dir
        self.model_id = model_id

    def process(self, element: tuple[tuple[str, int], Iterable[tuple[str, float, float, float]]]) -> Iterator[int]:
        from audioscope.schemas.tables import SCORES, to_table

        (video_id, n), results = element
        results = list(results)
        if shortfalls({video_id: n}, {video_id: len({r[0] for r in results})}):
            logger.warning("%s: %d of its %d clips came through; not marked scored", video_id, len(results), n)
            self._count("videos_short")
            return
        rows = [
            {"clip_id": c, "video_id": video_id, "start": s, "end": e, "probability": p, "model_id": self.model_id}
            for c, s, e, p in sorted(results, key=lambda r: (r[1], r[0]))
        ]
        storage.atomic_write(ScoresLayout(self.scores_dir).part(video_id), parquet_bytes(to_table(rows, SCORES)))
        self._count("videos_scored")
        self._count("clips_scored", len(rows))
        yield len(rows)


# --------------------------------------------------------------------------- #
# merge, in chunks: no worker holds more than one parts/<prefix>/ folder


def _list_part_dirs(parts_dir: str, _n_written: int) -> list[tuple[int, int, str]]:
    """(i, n, folder) of the parts/<prefix>/ folders (waits, through its side input, for every part)."""
    dirs = storage.list_dirs(parts_dir)
    return [(i, len(dirs), d) for i, d in enumerate(dirs)]


def _read_part_dir(directory: str) -> Any:
    """All parts of one prefix folder as one validated SCORES table, sorted (None when empty)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from audioscope.schemas.tables import SCORES, validate

    tables = []
    for path in storage.glob(storage.join(directory, "*.parquet")):
        with storage.open_file(path) as fh:
            tables.append(validate(pq.read_table(fh), SCORES))
    if not tables:
        return None
    return sort_scores(pa.concat_tables(tables))


def sort_scores(table: Any) -> Any:
    """A SCORES table sorted by (video_id, start, clip_id), validated, in one chunk."""
    from audioscope.schemas.tables import SCORES, validate

    table = table.sort_by([("video_id", "ascending"), ("start", "ascending"), ("clip_id", "ascending")])
    return validate(table.combine_chunks(), SCORES)


class WriteMergeChunk(beam.DoFn):
    """(i, n, parts/<prefix>/) -> ``merge/chunk-i-of-n.parquet`` (sorted); yields (i, path, clips, videos)."""

    def __init__(self, scores_dir: str) -> None:
        self.scores_dir = scores_dir

    def process(self, element: tuple[int, int, str]) -> Iterator[tuple[int, str, int, int]]:
        i, n, directory = element
        table = _read_part_dir(directory)
        if table is None:
            return
        path = ScoresLayout(self.scores_dir).merge_chunk(i, n)
        storage.atomic_write(path, parquet_bytes(table))
        yield i, path, table.num_rows, len(set(table.column("video_id").to_pylist()))


def write_merged(dest: str, chunk_paths: Sequence[str]) -> None:
    """Concatenate sorted chunks (already in global order) into ``dest``, one chunk in memory at a time.

    Written to a local temporary file first and then moved (local) or
    uploaded as one object (gs://, s3://): readers see all of it or nothing.
    """
    import pyarrow.parquet as pq

    from audioscope.schemas.tables import SCORES

    fd, tmp = tempfile.mkstemp(prefix=".scores-", suffix=".parquet.tmp",
                               dir=os.path.dirname(dest) if storage.is_local(dest) else None)  # fmt: skip
    os.close(fd)
    try:
        with pq.ParquetWriter(tmp, SCORES, compression="zstd") as writer:
            for path in chunk_paths:
                with storage.open_file(path) as fh:
                    writer.write_table(pq.read_table(fh).replace_schema_metadata(SCORES.metadata))
        if storage.is_local(dest):
            os.replace(tmp, dest)
        else:
            fs, remote = storage.url_to_fs(dest)
            fs.put_file(tmp, remote)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_failures(layout: ScoresLayout) -> dict[str, dict[str, Any]]:
    """Videos this run could not score: id -> {"message", "clips"} (invalid index ids included)."""
    out: dict[str, dict[str, Any]] = {}
    for path in storage.list_files(layout.failed_dir, ".json"):
        record = json.loads(storage.read_text(path))
        out[str(record["video_id"])] = {"message": str(record["message"]), "clips": int(record.get("clips", 0))}
    if storage.exists(layout.invalid_ids):
        for line in storage.read_lines(layout.invalid_ids):
            record = json.loads(line)
            out[str(record["video_id"])] = {"message": str(record["message"]), "clips": int(record["clips"])}
    return dict(sorted(out.items()))


class FinalizeScores(beam.DoFn):
    """Writes ``scores.parquet`` from the merge chunks, in order, and then ``summary.json``.

    The summary records when its run started (``started_at``), by which the
    launcher knows the run's own finalize step wrote it. This run's counts
    (``clips_scored``, ``videos_scored``) are None when the runner lost them.
    """

    def __init__(self, scores_dir: str, info: Mapping[str, Any], started_at: float | None) -> None:
        self.scores_dir = scores_dir
        self.info = dict(info)
        self.started_at = started_at

    def process(
        self, _: Any, chunks: list[tuple[int, str, int, int]], clips_scored: int | None, videos_scored: int | None
    ) -> Iterator[dict[str, Any]]:
        from audioscope.clipstore.summary import run_stamp

        layout = ScoresLayout(self.scores_dir)
        chunks = sorted(chunks)
        write_merged(layout.scores_parquet, [path for _, path, _, _ in chunks])
        clips = sum(c for _, _, c, _ in chunks)
        videos = sum(v for _, _, _, v in chunks)
        for path in storage.list_files(layout.merge_dir, ".parquet"):
            storage.remove(path)
        seconds = time.time() - self.started_at if self.started_at else None
        failed = read_failures(layout)
        index_clips = self.info.get("index_clips")
        missing = None
        if index_clips is not None:
            missing = int(index_clips) - clips - sum(f["clips"] for f in failed.values())
        summary = {
            "format_version": FORMAT_VERSION,
            "model_id": self.info.get("model_id"),
            "model": self.info.get("model"),
            "store": self.info.get("store"),
            "scores": layout.scores_parquet,
            "clips": clips,
            "videos": videos,
            "index_clips": index_clips,
            "index_videos": self.info.get("index_videos"),
            "clips_scored": None if clips_scored is None else int(clips_scored),
            "videos_scored": None if videos_scored is None else int(videos_scored),
            "videos_failed": len(failed),
            "failed": {k: v["message"] for k, v in failed.items()},
            "missing_clips": missing,
            "complete": missing == 0,
            "seconds": None if seconds is None else round(seconds, 2),
            "clips_per_second": round(clips_scored / seconds, 2) if seconds and clips_scored is not None else None,
            "started_at": None if self.started_at is None else run_stamp(self.started_at),
            "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        storage.atomic_write(layout.summary_json, json.dumps(summary, indent=2) + "\n")
        yield summary


class MergeScores(beam.PTransform):
    """After every part is written: scores.parquet and summary.json from ALL parts.

    Each parts/<prefix>/ folder is read, sorted and written as one merge
    chunk by its own worker; the finalize step then streams the chunks (in
    prefix order, which is video_id order) into scores.parquet, holding one
    chunk at a time. Its side input is a few numbers per chunk, not scores.
    """

    def __init__(self, scores_dir: str, info: Mapping[str, Any], started_at: float | None = None) -> None:
        super().__init__()
        self.scores_dir = scores_dir
        self.info = dict(info)
        self.started_at = started_at

    def expand(self, written: beam.PCollection[int]) -> beam.PCollection[dict[str, Any]]:
        layout = ScoresLayout(self.scores_dir)
        clips_scored = written | "SumClips" >> beam.CombineGlobally(sum)
        videos_scored = written | "CountVideos" >> beam.combiners.Count.Globally()
        chunks = (
            written.pipeline
            | "PartsRoot" >> beam.Create([layout.parts_dir])
            | "ListPartDirs" >> beam.FlatMap(_list_part_dirs, beam.pvalue.AsSingleton(videos_scored, default_value=None))
            | "SpreadPartDirs" >> beam.Reshuffle()
            | "WriteMergeChunks" >> beam.ParDo(WriteMergeChunk(self.scores_dir))
        )
        return (
            written.pipeline
            | "One" >> beam.Create([None])
            | "Finalize" >> beam.ParDo(
                FinalizeScores(self.scores_dir, self.info, self.started_at),
                beam.pvalue.AsList(chunks),
                # (counts of this run only: a runner that lost them leaves them unknown, not the step failed)
                beam.pvalue.AsSingleton(clips_scored, default_value=None),
                beam.pvalue.AsSingleton(videos_scored, default_value=None),
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
    p = new_pipeline(beam_args)
    _ = p | "Score" >> ScorePipeline(
        store=store, scores_dir=scores_dir, model_path=model_path, model_id=model_id,
        batch_size=batch_size, work_files=work_files, info=info, started_at=started_at,
    )
    return run_to_end(p)


# --------------------------------------------------------------------------- #
# the library entry


@dataclass(frozen=True, kw_only=True)
class ScoreConfig(RunnerConfig):
    """What :func:`score` does: score every clip of ``store`` with ``model`` into ``out``.

    ``store``, ``model`` and ``out`` are local paths (made absolute) or
    ``gs://``/``s3://`` URIs; ``beam_args`` and ``poll`` as in :class:`RunnerConfig`.
    """

    store: str
    model: str
    out: str
    batch_size: int = 64


def _summary_of_this_run(layout: ScoresLayout, started: float) -> dict[str, Any]:
    """``summary.json`` as this run's finalize step wrote it (the run that started at ``started``).

    A runner that lost the finalize step leaves no summary, or an earlier
    run's (which may say complete for a smaller index): the run ends short
    instead, and an earlier run's summary goes (``scores.parquet`` is no
    longer what it describes).
    """
    from audioscope.clipstore.summary import this_runs_summary

    summary = this_runs_summary(layout.summary_json, started)
    if summary is not None:
        return summary
    raise UserError(
        "score ended short: the runner lost work and scores.parquet and summary.json were not rebuilt (the "
        f"finalize step never ran); every video's part is kept in {layout.root}. Run the same command again "
        "to complete it."
    )


@dataclass(frozen=True, kw_only=True)
class ScoreResult:
    """What a :func:`score` run left: the layout, the counts of ``summary.json`` and the summary itself."""

    layout: ScoresLayout
    model_id: str
    clips: int
    videos: int
    clips_scored: int | None
    videos_scored: int | None
    failed: Mapping[str, str]
    summary: Mapping[str, Any] = field(repr=False)


def open_store(uri: str, needs: str) -> Any:
    """:func:`audioscope.clipstore.reader.open_store` (kept here for older callers)."""
    from audioscope.clipstore.reader import open_store as _open_store

    return _open_store(uri, needs)


def same_store(have: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether two records name the same store: by its id where both have one (a store moved or
    copied elsewhere is the same store), else by its path (stores made before stores had ids)."""
    if have.get("store_id") and wanted.get("store_id"):
        return bool(have["store_id"] == wanted["store_id"])
    return bool(have.get("store") == wanted.get("store"))


def check_scores_json(layout: ScoresLayout, wanted: Mapping[str, Any]) -> None:
    """Create ``scores.json``, or refuse a SCORES_DIR that holds another model's or store's scores."""
    have = layout.read_meta()
    if have:
        if have.get("format_version") != wanted["format_version"]:
            raise UserError(
                f"{layout.root} holds scores in format {have.get('format_version')}, this version writes "
                f"format {wanted['format_version']}; pick a new --out"
            )
        if have.get("model_id") != wanted["model_id"]:
            raise UserError(
                f"{layout.root} holds the scores of another model ({have.get('model_id')}, from "
                f"{have.get('model')}); the model {wanted['model']} is {wanted['model_id']}. "
                "One scores directory holds one model's scores: pick a new --out for this model"
            )
        if not same_store(have, wanted):
            why = "" if have.get("store_id") else (
                " (they were written before stores had ids, so a store moved since is not recognised)")
            raise UserError(
                f"{layout.root} holds the scores of the store {have.get('store')}, not of {wanted['store']}{why}; "
                "pick a new --out for this store"
            )
        if have == dict(wanted):
            return
    storage.atomic_write(layout.scores_json, json.dumps(dict(wanted), indent=2, sort_keys=True) + "\n")


def iter_video_clips(store: Any) -> Iterator[tuple[str, list[tuple[str, float, float]]]]:
    """The store's index streamed as (video_id, its clips (clip_id, start, end)), in video_id order.

    One video's rows are in memory at a time (:meth:`ClipStore.iter_index_rows`
    merges the sorted shards); an unreadable index is a :class:`UserError`.
    """
    import itertools

    import pyarrow as pa

    from audioscope.schemas.tables import SchemaError

    try:
        rows = store.iter_index_rows(["video_id", "clip_id", "start", "end"])
        for vid, group in itertools.groupby(rows, key=lambda r: r[0]):
            yield str(vid), [(str(c), float(s), float(e)) for _, c, s, e in group]
    except (pa.ArrowException, SchemaError, OSError, ValueError) as e:
        raise UserError(
            f"the index of the clip store {store.root} (in {store.layout.index_dir}) cannot be read ({e}); "
            f"run `audioscope ingest LIST --store {q(store.root)}` again to rebuild it"
        ) from None


def invalid_video(store: Any, video_id: str, clips: Sequence[tuple[str, float, float]]) -> dict[str, Any] | None:
    """The record of a video whose id, or one of whose clip ids, breaks :mod:`audioscope.ids` (else None)."""
    try:
        check_video_id(video_id, f"the index of {store.root}")
        for cid, _, _ in clips:
            check_clip_id(cid, f"the index of {store.root}")
    except UserError as e:
        return {"video_id": video_id, "message": f"not scored: {e}", "clips": len(clips)}
    return None


def read_index_clips(store: Any) -> tuple[dict[str, int], dict[str, dict[str, Any]], int]:
    """Per valid video of the store's index, its number of clips; the invalid videos (id -> record); index rows.

    A video whose id, or any of whose clip ids, does not follow
    :mod:`audioscope.ids` is not scored: it is recorded with the reason
    (its id is never used as a file name) and the run goes on. The index
    is streamed: memory is one video's rows plus one count per video.
    """
    counts: dict[str, int] = {}
    invalid: dict[str, dict[str, Any]] = {}
    n_index = 0
    for vid, clips in iter_video_clips(store):
        n_index += len(clips)
        bad = invalid_video(store, vid, clips)
        if bad is not None:
            invalid[vid] = bad
        else:
            counts[vid] = len(clips)
    return counts, invalid, n_index


def todo_work_lines(store: Any, todo: set[str]) -> Iterator[str]:
    """The work lines (:func:`work_line`) of the ``todo`` videos, streamed from the index in video_id order."""
    for vid, clips in iter_video_clips(store):
        if vid in todo:
            yield work_line(vid, clips)


class ScorePoller:
    """Progress read back from the part files (and failure markers) of this run's videos."""

    def __init__(self, layout: ScoresLayout, clips_per_video: Mapping[str, int]) -> None:
        self.layout = layout
        self.clips_per_video = clips_per_video

    def __call__(self) -> tuple[int, dict[str, int]]:
        done = self.layout.scored_videos() & self.clips_per_video.keys()
        failed = self.layout.failed_videos() & self.clips_per_video.keys()
        return len(done) + len(failed), {
            "clips": sum(self.clips_per_video[v] for v in done),
            "failed": len(failed),
        }


def score(config: ScoreConfig, *, echo: Callable[[str], None] = to_stderr) -> ScoreResult:
    """Score every clip of ``config.store`` not scored yet into ``config.out``; rebuild scores.parquet.

    Resumes: videos with a part are not scored again; videos that failed
    before are retried. Raises :class:`UserError` for what the user can fix
    (missing or incompatible store/model, another model's folder, local
    paths with remote workers) and :class:`~audioscope.pipelines.work.IncompleteRun`
    when the runner lost clips (nothing short is marked scored; a re-run
    completes it). ``echo`` gets one-line notes for the user.
    """
    from audioscope.pipelines.runner import check_paths_for_runner
    from audioscope.pipelines.work import require_complete, write_work_shards

    if config.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    beam_args = list(config.beam_args)
    paths = check_paths_for_runner(beam_args, {"--store": config.store, "--model": config.model, "--out": config.out})
    store_uri, model_uri, out = str(paths["--store"]), str(paths["--model"]), str(paths["--out"])

    store = open_store(store_uri, "the coincidence model takes")
    if not storage.exists(model_uri):
        raise UserError(f"the model {model_uri} does not exist; give a SavedModel directory")

    echo(f"score: loading the model {model_uri}")
    from audioscope.schemas.coincidence_signature import SignatureError

    try:
        predictor = load_predictor(model_uri, config.batch_size)
    except SignatureError as e:
        raise UserError(str(e)) from None
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load the model {model_uri}: {e}") from None
    model_id = predictor.model_id
    del predictor

    layout = ScoresLayout(out)
    check_scores_json(
        layout,
        {"format_version": FORMAT_VERSION, "model_id": model_id, "model": model_uri, "store": store_uri,
         "store_id": store.store_id, "batch_size": config.batch_size},
    )

    clips, invalid, n_index = read_index_clips(store)  # clips: video -> its number of clips
    n_index_videos = len(clips) + len(invalid)
    if invalid:
        storage.atomic_write(layout.invalid_ids, "".join(json.dumps(r, sort_keys=True) + "\n" for r in invalid.values()))
        echo(f"score: {len(invalid)} videos of the index have invalid ids and are not scored (see {layout.invalid_ids})")
    else:
        storage.remove(layout.invalid_ids)
    todo = sorted(set(clips) - layout.scored_videos())
    # Failed videos of an earlier run are retried: their markers go.
    for path in storage.list_files(layout.failed_dir, ".json"):
        storage.remove(path)
    work_files = write_work_shards(
        layout.work_dir, todo_work_lines(store, set(todo)), per_shard=VIDEOS_PER_WORK_SHARD, total=len(todo)
    )
    expected = {v: clips[v] for v in todo}
    echo(
        f"score: {n_index_videos} videos / {n_index} clips in {store_uri}; {len(clips) - len(todo)} videos already "
        f"scored, {len(todo)} videos / {sum(expected.values())} clips to score with {model_id}"
    )

    from audioscope.progress import Poller, Progress

    started = time.time()
    run = lambda: run_pipeline(  # noqa: E731
        store=store_uri, scores_dir=out, model_path=model_uri, model_id=model_id,
        batch_size=config.batch_size, work_files=work_files,
        info={"index_clips": n_index, "index_videos": n_index_videos},
        beam_args=beam_args, started_at=started,
    )  # fmt: skip
    if config.poll is None:
        run()
    else:
        with Poller(Progress("score", total=len(todo), unit="videos"), ScorePoller(layout, expected), every=config.poll):
            run()

    # Every video of this run has its part (all its clips) or a failure record.
    accounted = layout.scored_videos() | layout.failed_videos()
    require_complete(
        "score", "videos", expected, {v: n for v, n in expected.items() if v in accounted},
        "Run the same command again to score them.",
    )
    summary = _summary_of_this_run(layout, started)
    if not summary.get("complete"):
        # Parts short of their video's clips (left by an earlier version that wrote whatever came
        # through) are not finished: they go, so that the next run scores those videos again.
        failed = layout.failed_videos()
        want = {v: n for v, n in clips.items() if v not in failed}
        short = shortfalls(want, layout.clips_per_video())
        for s in short:
            storage.remove(layout.part(s.unit))
        if short:
            raise IncompleteRun("score", "videos", short, "Their parts were removed; run the same command again to score them.")
        raise UserError(
            f"score ended short: {summary.get('missing_clips')} clips of the index have neither a score nor a "
            f"failure record in {layout.root}; run the same command again to complete it"
        )
    return ScoreResult(
        layout=layout, model_id=model_id, clips=int(summary["clips"]), videos=int(summary["videos"]),
        clips_scored=summary["clips_scored"], videos_scored=summary["videos_scored"],
        failed=dict(summary.get("failed") or {}), summary=summary,
    )

