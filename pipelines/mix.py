"""The mix Beam pipeline: planned shards -> TFRecord files of mixture examples.

The plan (:mod:`audioscope.pipelines.mix_plan`) decides every example on the
launcher; this pipeline only reads media and writes, one shard per element,
so a shard's bytes depend only on its planned examples and the clip store.

Stages (labels as they show in the Beam / Dataflow UI)::

    ReadWork               the shards still to write: JSON lines in MIX_DIR/work/
                           (one line = one shard's path and planned examples),
                           spread over workers (pipelines/work.py)
    WriteShards            per shard: each needed video's media read once (only
                           the needed frames decoded), examples encoded
                           (audioscope.schemas.records) and the file written
                           atomically; a shard that exists is kept; one that
                           cannot be written gets a marker in MIX_DIR/failed/

The launcher (:mod:`audioscope.pipelines.mix_cli`) then writes
``examples.parquet``, the pair CSVs and, last, ``summary.json``.

Layout of MIX_DIR::

    mix.json                                the plan's identity (config, inputs, sha256)
    work/work-NNNNN-of-MMMMM.jsonl          this run's shards to write
    failed/<shard path, / as __>.json       a shard this run could not write (retried next run)
    train/<recipe>/<recipe>-00000-of-00004.tfrecord
    eval/<split>/<set>/<set>-00000-of-00001.tfrecord
    eval/<split>/<set>/<split>_<set>_pairs.csv
    examples.parquet                        schemas.tables.EXAMPLES
    summary.json                            written last: its presence means complete

Everything shipped to workers is small and picklable (two paths); TensorFlow
is loaded once per worker in ``setup``.
"""

from __future__ import annotations

import io
import json
import logging
import math
import zipfile
from typing import Any, Iterable, Iterator, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from audioscope import storage
from audioscope.pipelines.mix_plan import ClipRef, MixLayout, Planned, Shard, first_clip_info
from audioscope.pipelines.work import ReadWork
from audioscope.schemas import records

logger = logging.getLogger(__name__)

METRICS_NAMESPACE = "audioscope.mix"
#: Shards per work file (one JSON line each).
SHARDS_PER_WORK_FILE = 1000


# --------------------------------------------------------------------------- media and records


def read_media(store_root: str, video_id: str, audio_starts: Iterable[int], frame_starts: Iterable[int]) -> tuple[
    dict[int, np.ndarray], dict[int, np.ndarray]
]:
    """One video's clip audio (int16) and frames (uint8), read from its media shard once.

    The clip store's own reader (:func:`audioscope.clipstore.reader.read_clip_media`)
    does it: only the frames of the asked clips are decoded. Raises
    ``ValueError`` when a clip is not inside the stored seconds.
    """
    from audioscope.clipstore.reader import read_clip_media

    return read_clip_media(store_root, video_id, audio_starts, frame_starts)


Media = tuple[dict[tuple[str, int], np.ndarray], dict[tuple[str, int], np.ndarray]]


def _key(clip: ClipRef) -> tuple[str, int]:
    return clip.video_id, int(round(clip.start))


def read_shard_media(store_root: str, examples: Sequence[Planned]) -> Media:
    """Audio and frames of every clip a shard needs, each video's media read once."""
    audio_need: dict[str, set[int]] = {}
    frame_need: dict[str, set[int]] = {}
    for e in examples:
        for clip in (e.first, e.second):
            if clip is not None:
                audio_need.setdefault(clip.video_id, set()).add(_key(clip)[1])
        frame_need.setdefault(e.frames.video_id, set()).add(_key(e.frames)[1])
    audio: dict[tuple[str, int], np.ndarray] = {}
    frames: dict[tuple[str, int], np.ndarray] = {}
    for video in sorted(set(audio_need) | set(frame_need)):
        a, f = read_media(store_root, video, audio_need.get(video, ()), frame_need.get(video, ()))
        audio.update({(video, s): v for s, v in a.items()})
        frames.update({(video, s): v for s, v in f.items()})
    return audio, frames


def to_record(e: Planned, media: Media) -> records.MixtureRecord:
    """The record of a planned example, with the media read for its shard."""
    audio, frames = media
    first, second = e.first, e.second
    label, votes_on, votes_off, score = first_clip_info(e)
    return records.MixtureRecord(
        frames=frames[_key(e.frames)], audio1=audio[_key(first)],
        audio2=None if second is None else audio[_key(second)], type=e.type, is_mom=e.is_mom,
        clip_id1=first.clip_id, video_id1=first.video_id, start1=first.start, end1=first.end,
        frames_clip_id=e.frames.clip_id,
        clip_id2="" if second is None else second.clip_id, video_id2="" if second is None else second.video_id,
        start2=math.nan if second is None else second.start, end2=math.nan if second is None else second.end,
        label1=label, votes_onscreen1=votes_on, votes_offscreen1=votes_off, score1=score,
        licence_name1=first.licence_name or "", licence_url1=first.licence_url or "",
        licence_name2="" if second is None else second.licence_name or "",
        licence_url2="" if second is None else second.licence_url or "",
        frames_licence_name=e.frames.licence_name or "", frames_licence_url=e.frames.licence_url or "",
    )  # fmt: skip


def write_shard(store_root: str, mix_dir: str, shard: Shard) -> int:
    """Read the shard's media, encode its examples and write the file atomically; its size."""
    media = read_shard_media(store_root, shard.examples)
    return records.write_tfrecord(
        MixLayout(mix_dir).path(shard.path), (records.encode(to_record(e, media)) for e in shard.examples)
    )


# --------------------------------------------------------------------------- Beam


class WriteShards(beam.DoFn):
    """A work line (one planned shard) -> the shard file; yields {path, examples, bytes}.

    A shard that exists already is kept (it was written whole). One that
    cannot be written gets a marker in ``failed/`` and a counter; the run goes on.
    """

    def __init__(self, store: str, mix_dir: str) -> None:
        self.store = store
        self.mix_dir = mix_dir

    def setup(self) -> None:
        import tensorflow  # noqa: F401 - loaded once per worker, not per shard

        self.layout = MixLayout(self.mix_dir)
        self._counters: dict[str, Any] = {}

    def _count(self, name: str, n: int = 1) -> None:
        if name not in self._counters:
            self._counters[name] = Metrics.counter(METRICS_NAMESPACE, name)
        self._counters[name].inc(n)

    def process(self, line: str) -> Iterator[dict[str, Any]]:
        if not line.strip():
            return
        work = json.loads(line)
        shard = Shard(work["path"], [Planned.from_json(e) for e in work["examples"]])
        target = self.layout.path(shard.path)
        if storage.exists(target):
            self._count("shards_kept")
            yield {"path": shard.path, "examples": len(shard.examples), "bytes": storage.size(target)}
            return
        try:
            size = write_shard(self.store, self.mix_dir, shard)
        except Exception as e:  # noqa: BLE001 - recorded, the run goes on, retried next run
            logger.warning("cannot write %s: %s", shard.path, e)
            message = f"{type(e).__name__}: {e}"
            storage.atomic_write(
                self.layout.failed(shard.path), json.dumps({"path": shard.path, "message": message}, sort_keys=True) + "\n"
            )
            self._count("shards_failed")
            return
        self._count("shards_written")
        self._count("examples_written", len(shard.examples))
        yield {"path": shard.path, "examples": len(shard.examples), "bytes": size}


class MixPipeline(beam.PTransform):
    """Writes every shard named in the work files."""

    def __init__(self, *, store: str, mix_dir: str, work_files: Sequence[str]) -> None:
        super().__init__()
        self.store = store
        self.mix_dir = mix_dir
        self.work_files = list(work_files)

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection[dict[str, Any]]:
        return (
            pbegin
            | "ReadWork" >> ReadWork(self.work_files)
            | "WriteShards" >> beam.ParDo(WriteShards(self.store, self.mix_dir))
        )


def run_pipeline(*, store: str, mix_dir: str, work_files: Sequence[str], beam_args: Sequence[str] = ()) -> Any:
    """Build and run the mix pipeline; waits until it finishes."""
    p = beam.Pipeline(options=PipelineOptions(list(beam_args)))
    _ = p | "Mix" >> MixPipeline(store=store, mix_dir=mix_dir, work_files=work_files)
    result = p.run()
    result.wait_until_finish()
    return result


# --------------------------------------------------------------------------- outputs


def write_work(layout: MixLayout, shards: Sequence[Shard]) -> list[str]:
    """Work files for ``shards`` (one line each); stale work files of earlier runs are removed."""
    n = math.ceil(len(shards) / SHARDS_PER_WORK_FILE)
    paths = []
    for i in range(n):
        chunk = shards[i * SHARDS_PER_WORK_FILE : (i + 1) * SHARDS_PER_WORK_FILE]
        paths.append(layout.work_file(i, n))
        storage.atomic_write(paths[-1], "".join(s.work_line() + "\n" for s in chunk))
    for path in storage.glob(storage.join(layout.work_dir, "work-*.jsonl")):
        if path not in paths:
            storage.remove(path)
    return paths


def read_failures(layout: MixLayout) -> dict[str, str]:
    """Shards this run could not write: path -> reason."""
    out = {}
    for path in storage.list_files(layout.failed_dir, ".json"):
        record = json.loads(storage.read_text(path))
        out[str(record["path"])] = str(record["message"])
    return dict(sorted(out.items()))
