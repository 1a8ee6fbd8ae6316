"""`audioscope score`: score every clip of a clip store with the coincidence model (the launcher).

The launcher does the small, serial part on the user's machine: it opens the
store, checks that the model loads and has the coincidence signature, pins
the model in ``SCORES_DIR/scores.json``, writes the list of videos still to
score and runs the Beam pipeline (:mod:`audioscope.pipelines.score`) with any
Beam flags given after ``--``. Progress is read back from the per-video part
files, so the display is the same on the local runner and on Dataflow.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Mapping

from audioscope.options import add_runner_options, add_store_option
from audioscope.pipelines.runner import beam_flags, normalise  # noqa: F401 (re-exported)

if TYPE_CHECKING:  # pragma: no cover
    from audioscope.pipelines.score import ScoresLayout

DESCRIPTION = """\
Score every clip of a clip store with the audio-visual coincidence model:
the probability that the clip's sound and its pictures belong together in
time (the Df filter keeps clips above a threshold, 0.8 in the paper).

MODEL_DIR is a SavedModel with the coincidence signature (made by training,
or any model exported with signature "serving_default": audio
float32[None,80000], frames uint8[None,5,128,128,3] -> {"probability":
float32[None]}); a model without it is refused with the reason.

Output, in SCORES_DIR:
  scores.parquet  one row per clip of the store's index: clip_id, video_id,
                  start, end, probability (float32), model_id (sha256:...),
                  sorted by video_id, start
  summary.json    clips, videos, model_id, seconds, clips/s, and the videos
                  whose media could not be read ("failed", with reasons)
  scores.json     the model (model_id) and store these scores belong to
  parts/          one Parquet file per scored video (what a re-run keeps)

Re-running the same command resumes: videos already scored are not scored
again and scores.parquet is rebuilt from all of them; videos that failed are
retried. One SCORES_DIR holds the scores of one model for one store: another
model or store needs a new --out.

Example:
  audioscope score --store store --model model --out scores
Beam flags go after `--`, e.g.
  audioscope score --store gs://b/store --model gs://b/model --out gs://b/scores \\
      -- --runner=DataflowRunner --project=P --region=R \\
      --temp_location=gs://b/tmp --sdk_container_image=IMAGE
(on Dataflow, MODEL_DIR and SCORES_DIR must be readable by the workers:
gs://). The default is Beam's local DirectRunner."""


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "score",
        help="score every clip of a clip store with the coincidence model (Beam pipeline)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_store_option(p, required=False)
    p.add_argument(
        "--model", metavar="MODEL_DIR",
        help="SavedModel directory with the coincidence signature (path, gs://, s3://); required",
    )
    p.add_argument("--out", metavar="SCORES_DIR", help="scores directory to create or resume (path, gs://, s3://); required")
    p.add_argument(
        "--batch-size", type=int, default=64, metavar="N",
        help="clips per model call (default: 64); every call gets exactly N rows, so the "
        "same N gives bit-identical scores however clips are batched (another N may move a "
        "score by a float32 rounding step)",
    )
    add_runner_options(p, what="bundles processed")
    p.set_defaults(func=run)
    return p


def open_store(uri: str, needs: str) -> Any:
    """The clip store at ``uri``, checked to hold 5-s clips at 16 kHz with 128-px frames
    (``needs`` names who needs them in the error, e.g. "the coincidence model takes")."""
    from audioscope.errors import UserError
    from audioscope.clipstore.format import StoreError
    from audioscope.clipstore.reader import ClipStore

    try:
        store = ClipStore.open(uri)
    except StoreError as e:
        raise UserError(str(e)) from None
    p = store.params
    from audioscope.geometry import CLIP_SECONDS, FRAME_SIZE, SAMPLE_RATE

    if (p.sample_rate, p.clip_seconds, p.frame_size) != (SAMPLE_RATE, CLIP_SECONDS, FRAME_SIZE):
        raise UserError(
            f"the store {uri} has {p.clip_seconds}-s clips at {p.sample_rate} Hz with {p.frame_size}-px frames; "
            f"{needs} {CLIP_SECONDS}-s clips at {SAMPLE_RATE} Hz with {FRAME_SIZE}-px frames"
        )
    return store


def check_scores_json(layout: "ScoresLayout", wanted: Mapping[str, Any]) -> None:
    """Create ``scores.json``, or refuse a SCORES_DIR that holds another model's or store's scores."""
    from audioscope import storage
    from audioscope.errors import UserError

    if storage.exists(layout.scores_json):
        have = json.loads(storage.read_text(layout.scores_json))
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
        if have.get("store") != wanted["store"]:
            raise UserError(
                f"{layout.root} holds the scores of the store {have.get('store')}, not of {wanted['store']}; "
                "pick a new --out for this store"
            )
        if have == dict(wanted):
            return
    storage.atomic_write(layout.scores_json, json.dumps(dict(wanted), indent=2, sort_keys=True) + "\n")


def write_work(layout: "ScoresLayout", todo: list[str], clips: Mapping[str, list[tuple[str, float, float]]]) -> list[str]:
    """Write the work shards (one JSON line per video to score); remove stale ones."""
    from audioscope import storage
    from audioscope.pipelines.score import VIDEOS_PER_WORK_SHARD, work_line

    n = math.ceil(len(todo) / VIDEOS_PER_WORK_SHARD)
    paths = []
    for i in range(n):
        chunk = todo[i * VIDEOS_PER_WORK_SHARD : (i + 1) * VIDEOS_PER_WORK_SHARD]
        path = layout.work_shard(i, n)
        storage.atomic_write(path, "".join(work_line(v, clips[v]) + "\n" for v in chunk))
        paths.append(path)
    for path in storage.glob(storage.join(layout.work_dir, "work-*.jsonl")):
        if path not in paths:
            storage.remove(path)
    return paths


class ScorePoller:
    """Progress read back from the part files (and failure markers) of this run's videos."""

    def __init__(self, layout: "ScoresLayout", clips_per_video: Mapping[str, int]) -> None:
        self.layout = layout
        self.clips_per_video = clips_per_video

    def __call__(self) -> tuple[int, dict[str, int]]:
        from audioscope import storage
        from audioscope.pipelines.score import video_id_of

        done = {video_id_of(p, ".parquet") for p in storage.list_files(self.layout.parts_dir, ".parquet")}
        failed = {video_id_of(p, ".json") for p in storage.list_files(self.layout.failed_dir, ".json")}
        done &= self.clips_per_video.keys()
        failed &= self.clips_per_video.keys()
        return len(done) + len(failed), {
            "clips": sum(self.clips_per_video[v] for v in done),
            "failed": len(failed),
        }


def summary_rows(summary: Mapping[str, Any]) -> dict[str, object]:
    failed: Mapping[str, str] = summary.get("failed") or {}
    rows: dict[str, object] = {
        "clips in scores": f"{summary['clips']} of {summary.get('index_clips')} in the store's index",
        "videos": f"{summary['videos']} of {summary.get('index_videos')}",
        "scored this run": f"{summary['clips_scored']} clips, {summary['videos_scored']} videos",
        "videos failed": len(failed),
    }
    for vid, message in list(failed.items())[:5]:
        rows[f"  {vid}"] = message
    if len(failed) > 5:
        rows["  ..."] = f"{len(failed) - 5} more in summary.json"
    rows["model id"] = summary["model_id"]
    if summary.get("seconds") is not None:
        rate = summary.get("clips_per_second")
        rows["wall time"] = f"{summary['seconds']:.1f} s" + (f" ({rate:.1f} clips/s)" if rate else "")
    rows["scores"] = summary["scores"]
    return rows


def run(args: argparse.Namespace) -> int:
    from audioscope import storage
    from audioscope.errors import UserError
    from audioscope.pipelines.runner import local_parallelism

    beam_args = local_parallelism(beam_flags(args.rest), args.workers)
    for name, what in (
        ("store", "--store STORE is required: the clip store to score (made by `audioscope ingest`)"),
        ("model", "--model MODEL_DIR is required: a SavedModel with the coincidence signature"),
        ("out", "--out SCORES_DIR is required: where the scores go (created or resumed)"),
    ):
        if not getattr(args, name):
            raise UserError(what)
    if args.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    store_uri, model_uri, out = normalise(args.store), normalise(args.model), normalise(args.out)

    store = open_store(store_uri, "the coincidence model takes")
    if not storage.exists(model_uri):
        raise UserError(f"the model {model_uri} does not exist; give a SavedModel directory")

    print(f"score: loading the model {model_uri}", file=sys.stderr)
    from audioscope.models.coincidence import SignatureError
    from audioscope.pipelines.score import FORMAT_VERSION, ScoresLayout, load_predictor, run_pipeline, video_id_of

    try:
        predictor = load_predictor(model_uri, args.batch_size)
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
         "batch_size": args.batch_size},
    )

    index = store.index
    clips: dict[str, list[tuple[str, float, float]]] = {}
    for vid, cid, start, end in zip(index["video_id"], index["clip_id"], index["start"], index["end"]):
        clips.setdefault(str(vid), []).append((str(cid), float(start), float(end)))
    done = {video_id_of(p, ".parquet") for p in storage.list_files(layout.parts_dir, ".parquet")}
    todo = sorted(set(clips) - done)
    # Failed videos of an earlier run are retried: their markers go.
    for path in storage.list_files(layout.failed_dir, ".json"):
        storage.remove(path)
    work_files = write_work(layout, todo, clips)
    n_todo_clips = sum(len(clips[v]) for v in todo)
    print(
        f"score: {len(clips)} videos / {len(index)} clips in {store_uri}; {len(clips) - len(todo)} videos already "
        f"scored, {len(todo)} videos / {n_todo_clips} clips to score with {model_id}",
        file=sys.stderr,
    )

    from audioscope.progress import Poller, Progress, print_summary

    started = time.time()
    progress = Progress("score", total=len(todo), unit="videos")
    with Poller(progress, ScorePoller(layout, {v: len(clips[v]) for v in todo}), every=args.poll):
        run_pipeline(
            store=store_uri, scores_dir=out, model_path=model_uri, model_id=model_id,
            batch_size=args.batch_size, work_files=work_files,
            info={"index_clips": len(index), "index_videos": len(clips)},
            beam_args=beam_args, started_at=started,
        )
    summary = json.loads(storage.read_text(layout.summary_json))
    print_summary("Scoring finished", summary_rows(summary))
    if summary.get("failed"):
        print(
            f"\n{len(summary['failed'])} videos could not be read (reasons in {layout.summary_json}); "
            "run the same command again to retry them."
        )
    print(f"\nScores: {layout.scores_parquet}")
    return 0
