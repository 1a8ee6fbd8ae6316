"""`audioscope synth`: make the deterministic synthetic corpus."""

from __future__ import annotations

import argparse
import os

from audioscope.options import add_command

DESCRIPTION = """\
Make a deterministic synthetic video corpus with ground truth: the embedded
default of the demo and the test data of the whole toolkit.

Each video shows moving objects. Some are on-screen sound sources: while one
sounds it looks different (glows, fills, opens its mouth), switching on the
same video frame as its sound; other sounds come from nothing visible
(off-screen). The corpus also carries real-world trouble: durations of 3-90 s,
several resolutions and frame rates (29.97 fps, variable frame rate),
H.264/VP9/MPEG-4 video, AAC/Opus/MP3 audio at 44.1/48 kHz mono and stereo,
videos without an audio track, silent audio, and broken files (truncated,
zero bytes, not a video). Any corpus of 12 or more videos holds every case.

Same arguments and seed give byte-identical files. Running again resumes:
finished videos are kept, missing ones are made.

Output under --out:
  videos/<stem>.<ext>   the videos (stem = syn<seed>-<index>)
  list.txt, list.csv    inputs for `audioscope ingest` (list.csv carries
                        video ids and the CC0 licence)
  truth/<stem>.json     per video: sources, on/off schedules, events, and
                        which sources are audible in every second
  truth.parquet         one row per (video, second): has_onscreen, ...
  corpus.json           what each file is and what ingest should make of it"""

EPILOG = """\
example:
  audioscope synth --out corpus --videos 24 --seed 7
  audioscope ingest corpus/list.csv --media-root corpus --store clipstore"""


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    p = add_command(
        subparsers,
        "synth",
        help="make the deterministic synthetic video corpus with ground truth",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write the corpus to (created or resumed)")
    p.add_argument("--videos", type=int, default=24, metavar="N", help="number of videos, broken ones included (default: 24)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed; the same seed gives the same bytes (default: 0)")
    p.add_argument(
        "--no-broken", dest="broken", action="store_false",
        help="leave out the broken files (truncated, zero bytes, not a video), which are in by default",
    )
    p.add_argument("--min-duration", type=float, default=3.0, metavar="S", help="shortest video in seconds (default: 3)")
    p.add_argument("--max-duration", type=float, default=90.0, metavar="S", help="longest video in seconds (default: 90)")
    p.add_argument(
        "--onscreen-rate", type=float, default=0.45, metavar="R",
        help="share of seconds with an audible on-screen source to aim for, 0-1 (default: 0.45)",
    )
    p.add_argument(
        "--jobs", type=int, default=None, metavar="J",
        help=f"videos made in parallel (default: CPU count, {os.cpu_count()} here)",
    )
    p.set_defaults(func=run, writes=("out", "corpus"))
    return p


def run(args: argparse.Namespace) -> int:
    from audioscope.progress import Progress, print_summary
    from audioscope.synth.corpus import generate_corpus, summary_rows

    progress = Progress("synth", total=args.videos, unit="videos")

    def on_video(record: dict[str, object], skipped: bool) -> None:
        progress.update(1, **({"kept": 1} if skipped else {"made": 1}))

    summary = generate_corpus(
        args.out,
        args.videos,
        args.seed,
        broken=args.broken,
        min_duration=args.min_duration,
        max_duration=args.max_duration,
        onscreen_rate=args.onscreen_rate,
        jobs=args.jobs,
        on_video=on_video,
    )
    progress.close()
    print_summary(f"Synthetic corpus in {args.out}", summary_rows(summary))
    return 0
