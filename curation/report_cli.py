"""`audioscope report`: one offline HTML report of a run folder."""

from __future__ import annotations

import argparse

from audioscope.options import add_command

DESCRIPTION = """\
Write one HTML report of a run folder (the folder `make demo` or your own
run wrote its step folders into). Each step folder is recognised by its
content, whatever its name, and becomes a section:

  Df           counts, the score histogram (coloured by ground truth when
               known), a precision/recall curve, and example clips per score
               band as playable video (cut from the clip store with ffmpeg)
  annotation   progress per pool, agreement (Fleiss' kappa in the Landis &
               Koch bands, pairwise agreement, unanimity), time per rater,
               the votes of a few sample clips
  mixtures     examples per recipe and type, evaluation examples per set
  release      per published version: files and bytes per group, licences
  evaluation   the table with every column defined, the targets, and the
               example WAVs as audio players with spectrograms

DIR is a local folder. A missing section says which command makes it. The
report needs no network: OUT/report.html and OUT/media/ (relative links) can
be copied as one folder."""

EPILOG = """\
example:
  audioscope report demo-output              # writes demo-output/report/report.html
  audioscope report demo-output --out /tmp/run-report --no-videos"""


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    p = add_command(
        subparsers,
        "report",
        help="one offline HTML report of a run folder (Df, annotation, mixtures, release, evaluation)",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    p.add_argument("run_dir", metavar="DIR", help="the run folder holding the step folders (e.g. demo-output)")
    p.add_argument("--out", default=None, metavar="OUT", help="folder to write report.html and media/ to (default: DIR/report)")
    p.add_argument("--no-videos", action="store_true", help="do not cut example clips as video (faster; no ffmpeg needed)")
    p.set_defaults(func=run, writes=("out", None))
    return p


def run(args: argparse.Namespace) -> int:
    from audioscope.curation.report import ReportConfig, report
    from audioscope.progress import print_summary

    result = report(ReportConfig(run_dir=args.run_dir, out=args.out, videos=not args.no_videos))
    rows: dict[str, object] = {name: ("yes" if ok else "missing") for name, ok in result.sections.items()}
    rows["media files"] = result.media
    rows["report"] = result.html
    print_summary("Report written", rows)
    return 0
