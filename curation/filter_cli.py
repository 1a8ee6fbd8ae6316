"""`audioscope filter`: the filtered subset Df from coincidence scores."""

from __future__ import annotations

import argparse
import sys

from audioscope.argtypes import positive_int, probability
from audioscope.options import add_command, add_store_option

DESCRIPTION = """\
Build the filtered subset Df (the AudioScope recipe) from the scores that
`audioscope score` wrote for a clip store, split it into train / validation /
test per video, and export it with a report.

Selection (one rule):
  --threshold T (default 0.8, the published value)
      keep every clip with probability >= T.
  --top-k-videos K
      rank videos by the mean probability of their best min(N, n) clips
      (N = --max-clips-per-video, or all clips without it; n = the video's
      scored clips), keep the K best videos (ties: smaller video_id first)
      and their best clips up to the cap; no threshold.
  --max-clips-per-video N (with either rule)
      keep at most a video's N highest-probability selected clips (ties:
      earlier start first).

Splits are per video, so all clips of a video are in one split:
u = first 8 bytes of sha256("SEED:VIDEO_ID") / 2**64; train if u < r_train,
validation if u < r_train + r_validation, else test. Adding videos never moves
an existing one. A video imported from a published AudioScope list keeps its
published split.

Outputs in --out (each written atomically; the same inputs give
byte-identical files):
  df.parquet             one row per kept clip: clip_id, video_id, start, end,
                         probability, split, model_id, source_uri, licence_name,
                         licence_url; sorted by video_id, start
  csv/train.csv, csv/validate.csv, csv/test.csv
                         AudioScope clip lists (video path,start,end), readable
                         by `audioscope ingest`
  report.json, report.md the inputs, counts per split, and, with ground truth,
                         the base rate, precision and recall of Df for "has
                         on-screen sound", the ROC AUC of the probability and a
                         precision/recall table for thresholds 0.50-0.95
  score_histogram.png    scores of all clips and of kept clips (20 bins); with
                         ground truth, coloured by it (on-screen sound,
                         off-screen only, no audible source)

Ground truth: --truth FILE, or found automatically when every video of the
store comes from a synthetic corpus (`audioscope synth`: DIR/videos/ with
DIR/truth.parquet and DIR/corpus.json); --no-truth turns it off."""

EPILOG = """\
example:
  audioscope filter --scores scores --store clipstore --out df
  audioscope filter --scores scores --store clipstore --out df-top \\
      --top-k-videos 36000 --max-clips-per-video 10"""


def _ratios(text: str) -> tuple[float, float, float]:
    from audioscope.curation.splits import parse_ratios

    try:
        return parse_ratios(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    p = add_command(
        subparsers,
        "filter",
        help="select the filtered subset Df from scores; splits, AudioScope CSVs and a report",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    p.add_argument(
        "--scores", required=True, metavar="SCORES_DIR",
        help="folder written by `audioscope score`",
    )
    add_store_option(p, help="the clip store that was scored (path, gs://, s3://)")
    p.add_argument("--out", required=True, metavar="DF_DIR", help="folder to write Df, the CSVs and the report to")
    rule = p.add_mutually_exclusive_group()
    rule.add_argument(
        "--threshold", type=probability, default=None, metavar="T",
        help="keep clips with probability >= T (default: 0.8, the published threshold)",
    )
    rule.add_argument(
        "--top-k-videos", type=positive_int, default=None, metavar="K",
        help="instead of a threshold, keep the K videos with the highest mean probability of their "
        "best min(N, n) clips (N = --max-clips-per-video, or all) and their best clips up to the cap",
    )
    p.add_argument(
        "--max-clips-per-video", type=positive_int, default=None, metavar="N",
        help="keep at most a video's N highest-probability selected clips, ties by start (default: no cap)",
    )
    p.add_argument(
        "--split-ratios", type=_ratios, default=(0.8, 0.1, 0.1), metavar="TR,VA,TE",
        help="train,validation,test shares of videos: three numbers >= 0 summing to 1 (default: 0.8,0.1,0.1)",
    )
    p.add_argument(
        "--split-seed", type=int, default=0, metavar="S",
        help="seed of the per-video split hash; the same seed keeps every video in its split (default: 0)",
    )
    truth = p.add_mutually_exclusive_group()
    truth.add_argument(
        "--truth", default=None, metavar="TRUTH_PARQUET",
        help="ground truth (truth.parquet of `audioscope synth`) for precision, recall and ROC AUC "
        "(default: found next to the videos when they come from a synthetic corpus)",
    )
    truth.add_argument(
        "--no-truth", action="store_true",
        help="do not look for ground truth; the report then has no precision/recall",
    )
    p.set_defaults(func=run, writes=("out", "df"))
    return p


def _fmt(x: float | None, pct: bool = True) -> str:
    if x is None:
        return "n/a"
    return f"{100 * x:.1f}%" if pct else f"{x:.3f}"


def run(args: argparse.Namespace) -> int:
    from audioscope.schemas.df import DfLayout
    from audioscope.curation.filter import DEFAULT_THRESHOLD, FilterConfig, Selection, SplitSettings, filter
    from audioscope.curation.splits import CSV_NAMES, SPLITS
    from audioscope.errors import UserError
    from audioscope.progress import print_summary

    try:
        selection = Selection(
            threshold=None if args.top_k_videos is not None else (
                DEFAULT_THRESHOLD if args.threshold is None else args.threshold
            ),
            top_k_videos=args.top_k_videos,
            max_clips_per_video=args.max_clips_per_video,
        )
    except ValueError as e:
        raise UserError(f"{e}; see `audioscope filter --help`") from None
    result = filter(FilterConfig(
        scores=args.scores,
        store=args.store,
        out=args.out,
        selection=selection,
        splits=SplitSettings(ratios=tuple(args.split_ratios), seed=args.split_seed),  # type: ignore[arg-type]
        truth=args.truth,
        use_truth=not args.no_truth,
    ))  # fmt: skip
    report = result.report
    for w in report["warnings"]:
        print(f"audioscope filter: warning: {w}", file=sys.stderr)
    rows: dict[str, object] = {
        "model": report["inputs"]["model_id"],
        "selection": selection.describe(),
        "scored": f"{report['scored']['clips']} clips, {report['scored']['videos']} videos",
        "kept": f"{report['kept']['clips']} clips, {report['kept']['videos']} videos",
    }
    for s in SPLITS:
        c = report["splits"][s]
        rows[s] = f"{c['clips']} clips, {c['videos']} videos (csv/{CSV_NAMES[s]}.csv)"
    t = report["truth_metrics"]
    if t is not None:
        rows["base rate"] = _fmt(t["base_rate"])
        rows["precision"] = _fmt(t["precision"])
        rows["recall"] = _fmt(t["recall"])
        rows["ROC AUC"] = _fmt(t["roc_auc"], pct=False)
    else:
        rows["ground truth"] = report["inputs"]["truth"]["how"]
    rows["report"] = DfLayout.of(args.out).report_md
    print_summary("Filter finished", rows)
    return 0
