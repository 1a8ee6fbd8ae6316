"""The mix step: clip store + Df + labels -> mixture shards (``mix(config) -> MixResult``).

One library entry, :func:`mix`, does the whole step end to end:

1. **Inputs** (:func:`load_inputs`): the clip store (its index streamed
   through :class:`audioscope.clipstore.reader.ClipStore`, keeping only the rows
   of the Df, label and pair-list clips), the Df table, the labels
   and any pair lists, each checked where it enters (a bad file is one
   :class:`~audioscope.errors.UserError` naming it).
2. **Plan** (:mod:`audioscope.pipelines.mix_plan`): every example of every
   shard, decided on the launcher, pinned in ``mix.json`` (a folder holds one
   plan).
3. **Write** (the Beam pipeline below): the shards still missing, one work
   line per shard, spread over workers; stages as they show in the Beam /
   Dataflow UI::

       ReadWork      the shards to write: JSON lines in MIX_DIR/work/ (pipelines/work.py)
       WriteShards   per shard: each needed video's clips read once through the
                     clip store's reader, packed (each clip once, the examples by
                     reference: audioscope.schemas.records.encode_shard)
                     and the file written atomically with exactly the planned number
                     of examples; a shard that exists is kept; one that cannot be
                     written gets a marker in MIX_DIR/failed/ naming the video

4. **Finish** (:mod:`audioscope.pipelines.mix_outputs`): when every planned
   shard exists, ``examples.parquet``, the pair CSVs and, last,
   ``summary.json``.

The folder is owned by :class:`audioscope.pipelines.mix_layout.MixLayout`.
Everything shipped to workers is small and picklable (two paths);
TensorFlow is loaded once per worker in ``setup``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from audioscope import storage
from audioscope.errors import UserError, ends_the_run
from audioscope.pipelines.mix_catalog import ClipRef
from audioscope.pipelines.mix_layout import FORMAT_VERSION, MixLayout
from audioscope.pipelines.mix_outputs import first_clip_info
from audioscope.pipelines.mix_plan import DEFAULT_MOM_PARTNERS, Plan, Planned, PlanOptions, Shard
from audioscope.pipelines.mix_recipes import DEFAULT_SHARD_BYTES, RECIPES, Recipe
from audioscope.pipelines.runner import new_pipeline, run_to_end
from audioscope.pipelines.work import ReadWork
from audioscope.schemas import records

logger = logging.getLogger(__name__)

METRICS_NAMESPACE = "audioscope.mix"
#: Shards per work file (one JSON line each, ~1 kB per planned example: ~100 MB
#: per file for shards of ~1,000 examples; a worker reads a whole file).
SHARDS_PER_WORK_FILE = 100


class MediaError(ValueError):
    """A video's media cannot be read for a shard (the message names the video)."""


# --------------------------------------------------------------------------- config and result


@dataclass(frozen=True, kw_only=True)
class MixConfig:
    """Everything a mix run needs. ``store``, ``df``, ``labels``, ``pairs_dir`` and ``out`` are
    local paths or ``gs://``/``s3://`` URIs (``df``/``labels``: the file or its folder)."""

    store: str
    df: str
    out: str
    labels: str | None = None
    pairs_dir: str | None = None
    seed: int = 0
    recipes: tuple[Recipe, ...] = tuple(Recipe(n, p) for n, p in RECIPES.items())
    examples: int | None = None
    shard_bytes: int = DEFAULT_SHARD_BYTES
    mom_partners: int = DEFAULT_MOM_PARTNERS
    exclude_licences: tuple[str, ...] = ()
    #: Beam pipeline flags (runner, workers, ...).
    beam_args: tuple[str, ...] = ()
    #: Show progress lines on stderr, polled every ``poll`` seconds.
    progress: bool = False
    poll: float = 2.0

    def plan_options(self) -> PlanOptions:
        names = [r.name for r in self.recipes]
        if len(set(names)) != len(names):
            raise UserError(f"--recipes names a recipe twice ({', '.join(names)}): give each once")
        return PlanOptions(
            seed=self.seed, recipes=tuple(self.recipes), examples=self.examples, shard_bytes=self.shard_bytes,
            mom_partners=self.mom_partners, exclude_licences=tuple(self.exclude_licences),
        )  # fmt: skip


@dataclass(frozen=True)
class MixResult:
    """How a run ended: ``summary`` (summary.json) when finished, else the shards it could not write."""

    layout: MixLayout
    summary: dict[str, Any] | None
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def finished(self) -> bool:
        return self.summary is not None and not self.failed


# --------------------------------------------------------------------------- inputs


def _table_path(path: str, name: str) -> str:
    """``path`` itself when it is a .parquet file, else ``path/name``."""
    return path if path.endswith(".parquet") else storage.join(path, name)


def read_table(path: str, schema: Any, what: str, fix: str) -> Any:
    """A Parquet table checked against ``schema``; any bad file is one :class:`UserError` naming it."""
    from audioscope.pipelines.mix_catalog import read_parquet
    from audioscope.schemas.tables import SchemaError

    if not storage.exists(path):
        raise UserError(f"{what} {path} not found: {fix}")
    try:
        return read_parquet(path, schema)
    except SchemaError as e:
        raise UserError(f"{path} is not a valid {what}: {e}; {fix}") from None
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path} is not a Parquet file ({reason}): {fix}") from None


def open_store(uri: str) -> Any:
    """The clip store, checked to hold the clip geometry mixture records need."""
    from audioscope.clipstore.reader import open_store as _open_store

    return _open_store(uri, "mixture records hold")


def load_inputs(config: MixConfig) -> dict[str, Any]:
    """Store index, media, Df, labels and pair lists, each checked; the paths as given."""
    from audioscope.pipelines.mix_catalog import media_videos
    from audioscope.pipelines.mix_pairs import read_pairs_dir
    from audioscope.schemas.tables import DF, LABELS

    from audioscope.schemas.df import DfLayout

    store = open_store(config.store)
    df_path = DfLayout.of(config.df).df_parquet
    df = read_table(df_path, DF, "Df table", "give the folder `audioscope filter` wrote (df.parquet) with --df")
    from audioscope.schemas.annotations import labels_table_path

    labels_path = labels_table_path(config.labels) if config.labels else None
    labels = None
    if labels_path:
        labels = read_table(labels_path, LABELS, "labels table", "give the annotation step's labels.parquet with --labels")
    pair_lists, problems = None, []
    if config.pairs_dir:
        pair_lists, problems = read_pairs_dir(config.pairs_dir)
        if not pair_lists:
            raise UserError(
                f"no validation or test pair lists in {config.pairs_dir}: give a folder of pair CSVs named like "
                "validation_onscreen_mom_pairs.csv or filtered_test_onscreen_unanimous_clips.csv"
            )
    model_ids = sorted({str(m) for m in df["model_id"].dropna()})
    return {
        "store": store, "media": media_videos(config.store), "df": df, "labels": labels,
        "pair_lists": pair_lists, "pair_problems": problems,
        "inputs": {
            "store": config.store, "df": df_path, "labels": labels_path, "pairs_dir": config.pairs_dir,
            "model_id": model_ids[0] if len(model_ids) == 1 else (model_ids or None),
        },
    }  # fmt: skip


# --------------------------------------------------------------------------- media and records


Media = tuple[dict[tuple[str, int], np.ndarray], dict[tuple[str, int], np.ndarray]]


def _key(clip: ClipRef) -> tuple[str, int]:
    return clip.video_id, int(round(clip.start))


def read_video_clips(store: Any, video_id: str, audio_starts: Iterable[int], frame_starts: Iterable[int]) -> tuple[
    dict[int, np.ndarray], dict[int, np.ndarray]
]:
    """One video's clip audio (int16) and frames (uint8), read once through the clip store's reader
    (only the asked clips' frames are decoded; stores that keep only the listed clips' seconds work too).

    Raises :class:`MediaError` naming the video when its media cannot be read
    (missing, truncated, another format) or a clip is not inside its stored seconds.
    """
    from audioscope.clipstore.reader import read_clip_media

    try:
        return read_clip_media(store.root, video_id, audio_starts, frame_starts)
    except ValueError as e:  # a clip outside the stored seconds, or a shard of an unknown version
        raise MediaError(f"video {video_id} in {store.root}: {e}") from e
    except Exception as e:  # noqa: BLE001 - any damage of one video's media is reported with its id
        if ends_the_run(e):
            raise
        raise MediaError(f"the media of video {video_id} in {store.root} cannot be read ({type(e).__name__}: {e})") from e


def read_shard_media(store: Any, examples: Sequence[Planned]) -> Media:
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
        a, f = read_video_clips(store, video, audio_need.get(video, ()), frame_need.get(video, ()))
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


def write_shard(store: Any, layout: MixLayout, shard: Shard, version: int = records.SCHEMA_VERSION) -> int:
    """Read the shard's media, encode its examples and write the file atomically; its size.

    The shard is packed (record schema ``version``, 4 unless the folder was
    started in 3: each clip once, then the examples by reference,
    ``records.encode_shard``); the file is moved into place only when it
    holds exactly the records made (``records.write_tfrecord(expected=...)``).
    """
    media = read_shard_media(store, shard.examples)
    packed = records.encode_shard([to_record(e, media) for e in shard.examples], version)
    return records.write_tfrecord(layout.path(shard.path), packed, expected=len(packed))


# --------------------------------------------------------------------------- Beam


class WriteShards(beam.DoFn):
    """A work line (one planned shard) -> the shard file; yields {path, examples, bytes}.

    A shard that exists already is kept (it was written whole). One that
    cannot be written gets a marker in ``failed/`` and a counter; the run goes on.
    """

    def __init__(self, store: str, mix_dir: str, version: int = records.SCHEMA_VERSION) -> None:
        self.store = store
        self.mix_dir = mix_dir
        self.version = version

    def setup(self) -> None:
        import tensorflow  # noqa: F401 - loaded once per worker, not per shard

        from audioscope.clipstore.reader import ClipStore

        self.layout = MixLayout(self.mix_dir)
        self.clips = ClipStore.open(self.store)
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
            size = write_shard(self.clips, self.layout, shard, self.version)
        except Exception as e:  # noqa: BLE001 - recorded, the run goes on, retried next run
            if ends_the_run(e):  # a full disk fails every shard after it: the run stops
                raise
            logger.warning("cannot write %s: %s", shard.path, e)
            self.layout.record_failure(shard.path, f"{type(e).__name__}: {e}")
            self._count("shards_failed")
            return
        self._count("shards_written")
        self._count("examples_written", len(shard.examples))
        yield {"path": shard.path, "examples": len(shard.examples), "bytes": size}


class MixPipeline(beam.PTransform):
    """Writes every shard named in the work files."""

    def __init__(self, *, store: str, mix_dir: str, work_files: Sequence[str],
                 version: int = records.SCHEMA_VERSION) -> None:  # fmt: skip
        super().__init__()
        self.store = store
        self.mix_dir = mix_dir
        self.work_files = list(work_files)
        self.version = version

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection[dict[str, Any]]:
        return (
            pbegin
            | "ReadWork" >> ReadWork(self.work_files)
            | "WriteShards" >> beam.ParDo(WriteShards(self.store, self.mix_dir, self.version))
        )


def run_pipeline(*, store: str, mix_dir: str, work_files: Sequence[str], beam_args: Sequence[str] = (),
                 version: int = records.SCHEMA_VERSION) -> Any:  # fmt: skip
    """Build and run the mix pipeline (shards in record schema ``version``); waits until it finishes."""
    p = new_pipeline(beam_args)
    _ = p | "Mix" >> MixPipeline(store=store, mix_dir=mix_dir, work_files=work_files, version=version)
    return run_to_end(p)


# --------------------------------------------------------------------------- the run


class WorkWriter:
    """Work lines of the shards still to write, streamed into local files of
    :data:`SHARDS_PER_WORK_FILE` lines while the plan is scanned; :meth:`publish`
    moves them to ``MIX_DIR/work/`` (stale work files of earlier runs removed)."""

    def __init__(self, layout: MixLayout, todo: Sequence[str]) -> None:
        import tempfile

        self.layout = layout
        self.todo = set(todo)
        self.n = math.ceil(len(self.todo) / SHARDS_PER_WORK_FILE)
        self._tmp = tempfile.TemporaryDirectory(prefix="audioscope-mix-work-")
        self._files: list[str] = []
        self._lines = 0
        self._fh: Any = None

    def add(self, shard: Shard, line: str) -> None:
        if shard.path not in self.todo:
            return
        if self._lines % SHARDS_PER_WORK_FILE == 0:
            if self._fh is not None:
                self._fh.close()
            self._files.append(f"{self._tmp.name}/work-{len(self._files):05d}.jsonl")
            self._fh = open(self._files[-1], "w", encoding="utf-8")
        self._fh.write(line + "\n")
        self._lines += 1

    def publish(self) -> list[str]:
        """The work files in MIX_DIR/work/, one per local file."""
        from audioscope.pipelines.mix_outputs import put_file

        if self._fh is not None:
            self._fh.close()
        paths = []
        for i, local in enumerate(self._files):
            paths.append(self.layout.work_file(i, len(self._files)))
            put_file(local, paths[-1])
        for path in self.layout.work_files():
            if path not in paths:
                storage.remove(path)
        self.close()
        return paths

    def close(self) -> None:
        if self._fh is not None and not self._fh.closed:
            self._fh.close()
        self._tmp.cleanup()


#: How ``mix.json``'s ``plan_sha256`` is made: 2 = over the work lines without the clips' source
#: paths (a folder stays the same plan when the media move); a pin without it hashed them with.
PLAN_DIGEST = 2


def pin_plan(layout: MixLayout, plan_sha256: str, config_json: Mapping[str, Any], inputs: Mapping[str, Any],
             written: Sequence[str] = (), sha256_with_paths: Callable[[], str] | None = None) -> int:  # fmt: skip
    """Write ``mix.json``, or refuse a MIX_DIR that holds another plan; the record schema its
    shards are written in (:func:`record_version`; ``written``: the shards that exist).

    A pin written before :data:`PLAN_DIGEST` is compared with ``sha256_with_paths()`` (one
    more pass over the plan), so that folders begun then resume.
    """
    have = layout.read_pin()
    same = have is None or have.get("plan_sha256") == plan_sha256
    if not same and have is not None and "plan_digest" not in have and sha256_with_paths is not None:
        same = have.get("plan_sha256") == sha256_with_paths()
    if not same and have is not None:
        wanted = {"config": dict(config_json), "inputs": dict(inputs)}
        changed = [_what_changed(k, have.get(k), v) for k, v in wanted.items() if have.get(k) != v]
        changed = changed or ["the contents of the inputs (the same files, other rows: a store that grew, "
                              "a new Df or labels)"]
        raise UserError(
            f"{layout.root} holds mixtures of another plan (changed: {'; '.join(changed)}); "
            "a mixture folder holds one plan: pick a new --out, or delete the old one"
        )
    version = record_version(layout, have, written)
    pin = {"format_version": FORMAT_VERSION, "plan_sha256": plan_sha256, "plan_digest": PLAN_DIGEST,
           "config": dict(config_json), "inputs": dict(inputs), "record_schema": version}  # fmt: skip
    storage.atomic_write(layout.mix_json, json.dumps(pin, indent=2, sort_keys=True) + "\n")
    return version


def _what_changed(name: str, had: Any, wanted: Mapping[str, Any]) -> str:
    """``name`` of a pin's part that changed, with the keys that changed in it (old -> new)."""
    if not isinstance(had, Mapping):
        return name
    keys = sorted(k for k in set(had) | set(wanted) if had.get(k) != wanted.get(k))
    return f"{name}: " + ", ".join(f"{k} {had.get(k)!r} -> {wanted.get(k)!r}" for k in keys)


def record_version(layout: MixLayout, pin: Mapping[str, Any] | None, written: Sequence[str]) -> int:
    """The record schema of a folder's shards: the one its pin names, else (a folder begun before
    the pin named it) that of a shard already written, else this version's. Every shard of a
    folder has one schema, so a run resumed by a newer audioscope-data finishes it in the schema
    it was begun in; one begun in a schema no longer written is refused."""
    version = records.SCHEMA_VERSION
    if pin is not None and "record_schema" in pin:
        version = pin["record_schema"]
        if type(version) is not int:
            raise UserError(
                f"{layout.mix_json} names record schema {version!r}, not a number: it was not written by "
                "`audioscope mix`; pick a new --out"
            )
    elif written:
        first = layout.path(sorted(written)[0])
        try:
            found = records.first_version(first)
        except ValueError as e:  # a damaged file (RecordFileError) or record (RecordError)
            raise UserError(f"{first} cannot be read ({e}): delete it so that it is written again") from None
        if found is None:
            raise UserError(f"{first} holds no records: delete it so that it is written again")
        version = found
    if version not in records.CLIP_CODECS:
        raise UserError(
            f"{layout.root} holds shards of record schema {version}, which this version of audioscope-data "
            f"reads but no longer writes (it writes {sorted(records.CLIP_CODECS)}): finish the folder with the "
            "version that began it, or pick a new --out"
        )
    return version


class ShardPoller:
    """Progress read back from the shard files (and failure markers) of this run."""

    def __init__(self, layout: MixLayout, todo: Mapping[str, int]) -> None:
        self.layout = layout
        self.todo = dict(todo)

    def __call__(self) -> tuple[int, dict[str, int]]:
        done = set(self.layout.existing_shards()) & set(self.todo)
        failed = set(self.layout.read_failures()) & set(self.todo)
        return len(done) + len(failed), {"examples": sum(self.todo[p] for p in done), "failed": len(failed)}


def _say(config: MixConfig, text: str) -> None:
    if config.progress:
        print(text, file=sys.stderr)


def write_shards(
    layout: MixLayout, plan: Plan, config: MixConfig, options: PlanOptions, inputs: Mapping[str, Any]
) -> tuple[dict[str, str], int]:
    """Pin the plan and run the pipeline for the shards that do not exist yet; the shards missing
    at the end (path -> reason) and the record schema the folder's shards are written in.

    The plan is scanned once, shard by shard: its SHA-256, the counts and the
    work lines of the missing shards (streamed to files) in one pass.
    """
    from audioscope.progress import Poller, Progress

    planned = plan.shard_sizes()
    written = layout.existing_shards()
    todo = {p: n for p, n in planned.items() if p not in written}
    writer = WorkWriter(layout, list(todo))
    try:
        sha = plan.scan(writer.add)
        version = pin_plan(layout, sha, options.to_json(), inputs, list(written), plan.sha256_with_paths)
    except BaseException:
        writer.close()
        raise
    layout.clear_failures()  # failed shards of an earlier run are retried
    _say(
        config,
        f"mix: {len(planned)} shards planned, {len(planned) - len(todo)} already written, "
        f"{len(todo)} to write ({sum(todo.values())} examples)",
    )
    work_files = writer.publish()
    if todo:
        kwargs = dict(store=config.store, mix_dir=layout.root, work_files=work_files, beam_args=config.beam_args,
                      version=version)  # fmt: skip
        if config.progress:
            with Poller(Progress("mix", total=len(todo), unit="shards"), ShardPoller(layout, todo), every=config.poll):
                run_pipeline(**kwargs)
        else:
            run_pipeline(**kwargs)
    for path in work_files:
        storage.remove(path)
    failed = layout.read_failures()
    existing = layout.existing_shards()
    failed.update({p: LOST for p in planned if p not in existing and p not in failed})
    return failed, version


#: Why a planned shard is neither written nor recorded as failed when the pipeline ended: the runner lost its work.
LOST = "not written: the runner lost its work"


def mix(config: MixConfig) -> MixResult:
    """The mix step: plan, write the missing shards, finish the folder (see the module docstring).

    Resumes a folder that holds the same plan; refuses one of another plan
    (:class:`UserError`), and a local ``--store`` or ``--out`` when the
    workers run elsewhere (they read the one and write the other; the Df,
    labels and pair lists are read here only). When shards could not be
    written the result lists them (``finished`` False) and ``summary.json``
    is not written.
    """
    from audioscope.pipelines.mix_catalog import store_catalog
    from audioscope.pipelines.mix_outputs import write_outputs
    from audioscope.pipelines.mix_plan import make_plan
    from audioscope.pipelines.runner import check_paths_for_runner

    paths = check_paths_for_runner(list(config.beam_args), {"--store": config.store, "--out": config.out})
    config = dataclasses.replace(config, store=str(paths["--store"]), out=str(paths["--out"]))
    started = time.time()
    options = config.plan_options()
    loaded = load_inputs(config)
    df, labels = loaded["df"], loaded["labels"]
    keep = set(df["clip_id"].astype(str)) | (set() if labels is None else set(labels["clip_id"].astype(str)))
    catalog = store_catalog(
        loaded["store"], loaded["media"], keep, loaded["pair_lists"], exclude_licences=options.exclude_licences,
        labels=labels, scores=dict(zip(df["clip_id"].astype(str), df["probability"].astype(float))),
    )  # fmt: skip
    n_labels = 0 if labels is None else int(labels["label"].notna().sum())
    n_lists = len(loaded["pair_lists"] or ())
    _say(config, f"mix: planning from {len(df)} Df clips, {n_labels} unanimous labels, {n_lists} pair lists")
    plan = make_plan(catalog, df, labels, loaded["pair_lists"], options)
    plan.notes["pair_problems"] = loaded["pair_problems"] + plan.notes["pair_problems"]
    layout = MixLayout(config.out)
    failed, version = write_shards(layout, plan, config, options, loaded["inputs"])
    if failed:
        return MixResult(layout, None, failed, time.time() - started)
    summary = write_outputs(layout, plan, options, loaded["inputs"], version)
    return MixResult(layout, summary, {}, time.time() - started)
