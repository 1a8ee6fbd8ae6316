"""`audioscope score`: argument parsing, the summary and the exit code around
:func:`audioscope.pipelines.score.score` (the library entry, which opens the
store, checks the model, pins it in ``SCORES_DIR/scores.json``, writes the
work and runs the Beam pipeline with the Beam flags given after ``--``).
"""

from __future__ import annotations

import argparse
from typing import Any, Mapping

from audioscope.options import add_command, add_runner_options, add_store_option
from audioscope.pipelines.runner import beam_flags, normalise  # noqa: F401 (re-exported)

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
(with workers on other machines, Dataflow or --environment_type=EXTERNAL,
STORE, MODEL_DIR and SCORES_DIR must be gs:// or s3://: local paths are
refused at launch). The default is Beam's local DirectRunner.

Exit status: 0 when every clip of the index has a score or its video a
failure record (reasons in summary.json); 2 with one line saying what to do
otherwise, including a run that ended short because the runner lost clips
(no video is marked scored with fewer clips than it has; run the command
again to complete it)."""


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    p = add_command(
        subparsers,
        "score",
        help="score every clip of a clip store with the coincidence model (Beam pipeline)",
        description=DESCRIPTION,
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
    p.set_defaults(func=run, writes=("out", "scores"))
    return p


def open_store(uri: str, needs: str) -> Any:
    """Kept for the commands that still import it from here: see :func:`audioscope.pipelines.score.open_store`."""
    from audioscope.pipelines.score import open_store as _open_store

    return _open_store(uri, needs)


def summary_rows(summary: Mapping[str, Any]) -> dict[str, object]:
    failed: Mapping[str, str] = summary.get("failed") or {}
    rows: dict[str, object] = {
        "clips in scores": f"{summary['clips']} of {summary.get('index_clips')} in the store's index",
        "videos": f"{summary['videos']} of {summary.get('index_videos')}",
        "scored this run": (
            f"{summary['clips_scored']} clips, {summary['videos_scored']} videos"
            if summary.get("clips_scored") is not None and summary.get("videos_scored") is not None
            else "not counted (the runner lost the counts; the scores are complete)"
        ),
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
    from audioscope.errors import UserError
    from audioscope.pipelines.runner import local_parallelism
    from audioscope.pipelines.score import ScoreConfig, score
    from audioscope.progress import print_summary

    beam_args = local_parallelism(beam_flags(args.rest), args.workers)
    for name, what in (
        ("store", "--store STORE is required: the clip store to score (made by `audioscope ingest`)"),
        ("model", "--model MODEL_DIR is required: a SavedModel with the coincidence signature"),
        ("out", "--out SCORES_DIR is required: where the scores go (created or resumed)"),
    ):
        if not getattr(args, name):
            raise UserError(what)
    result = score(
        ScoreConfig(
            store=args.store, model=args.model, out=args.out, batch_size=args.batch_size,
            beam_args=beam_args, poll=args.poll,
        )
    )  # fmt: skip
    print_summary("Scoring finished", summary_rows(result.summary))
    if result.failed:
        print(
            f"\n{len(result.failed)} videos could not be read (reasons in {result.layout.summary_json}); "
            "run the same command again to retry them."
        )
    print(f"\nScores: {result.layout.scores_parquet}")
    return 0
