"""`audioscope ingest`: decode a video list into a clip store (the launcher).

The launcher does the small, serial part on the user's machine: it reads the
list, records unreadable rows, writes the normalised requests into the store
and runs the Beam pipeline (:mod:`audioscope.pipelines.ingest`, which loads
:mod:`audioscope.pipelines.ingest_beam`) with any Beam
flags given after ``--``. While the pipeline runs it shows progress read back
from the status records in the store, so the display is the same on the
local runner and on Dataflow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from audioscope.options import add_command, add_store_option, add_workers_option
from audioscope.pipelines.runner import local_parallelism, local_runner  # noqa: F401 (re-exported)
from audioscope.shell import q

if TYPE_CHECKING:  # pragma: no cover
    from audioscope.clipstore.format import Layout

DESCRIPTION = """\
Decode every video of a list into a clip store: one ffmpeg pass per video
gives 16 kHz mono audio and one 128x128 frame per second (the picture at the
centre of each second); 5-second clips with a 1-second hop are indexed.

LIST is an AudioScope clip CSV, a YFCC100M metadata file (23 or 25 columns,
or the SQLite file), or a text file of URIs/paths (detected from the content
unless --format is given); .gz, .bz2, .xz and .zst lists are read as
streams. A list naming clips stores only the seconds those clips need; a
later list into the same store adds its new clips. One ingest at a time
writes a store (a second one is refused while the first runs). Every video
that cannot give clips (corrupt, no audio, unreachable, ...) and every
unreadable list row is recorded in STORE/index/status.parquet with a reason;
the run goes on and exits 0. Re-running the same command resumes: finished
videos are not redone. A run that the runner cut short says so in one line
and exits non-zero (1: requested videos without an outcome; 2: an index the
runner lost part of, when the store reads as unfinished); running the same
command again completes it.

Beam flags go after `--`, e.g.
  audioscope ingest list.csv --store gs://b/store -- --runner=DataflowRunner \\
      --project=P --region=R --temp_location=gs://b/tmp \\
      --sdk_container_image=IMAGE
The default is Beam's local DirectRunner."""


def _add_options(p: argparse.ArgumentParser) -> None:
    add_store_option(p, aliases=("--out",), required=False, help="clip store to create or resume (path, gs://, s3://)")
    p.add_argument(
        "--media-root", metavar="URI", default=None,
        help="root that relative paths in LIST are resolved against (local folder, "
        "gs://, s3:// or http(s) URL; see the list formats in the README)",
    )
    p.add_argument(
        "--allow-outside-root", action="store_true",
        help="let absolute URIs in LIST point outside a remote --media-root (refused by default: "
        "a list could otherwise make workers fetch from any host or bucket)",
    )
    p.add_argument(
        "--format", choices=("audioscope-csv", "yfcc", "uris"), default=None,
        help="format of LIST (default: detected from its content)",
    )
    p.add_argument(
        "--aspect", choices=("pad", "crop", "stretch"), default="pad",
        help="how frames are made square: pad (letterbox, keeps all content; default), "
        "crop (centre square) or stretch; fixed when the store is created",
    )
    p.add_argument(
        "--frame-codec", choices=("png", "jpeg"), default="png",
        help="how stored frames are compressed: png (lossless, default) or jpeg "
        "(quality 95); fixed when the store is created",
    )
    p.add_argument(
        "--retry-failed", action="store_true",
        help="also redo videos that failed permanently before (transient failures are always retried)",
    )
    p.add_argument("--max-bytes", type=int, default=None, metavar="N", help="refuse media larger than N bytes (default: the fetcher's limit)")
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="time limit in seconds for fetching one video (default: the fetcher's)")
    p.add_argument("--decode-timeout", type=float, default=600.0, metavar="S", help="time limit in seconds for decoding one video (default: 600)")
    p.add_argument(
        "--max-duration", type=float, default=None, metavar="S",
        help="stop decoding a video at S seconds and refuse it (enforced during the decode; "
        "default: 3600; `inf` for no limit)",
    )
    p.add_argument(
        "--max-pixels", type=int, default=None, metavar="N",
        help="refuse videos whose pictures have more than N pixels, before decoding them "
        "(default: 7680x4320 = 33177600)",
    )
    p.add_argument(
        "--anonymous", action="store_true",
        help="read gs:// and s3:// media without credentials (public buckets such as "
        "s3://multimedia-commons); automatic when no credentials are found; "
        "AUDIOSCOPE_ANONYMOUS=1 does the same")
    add_workers_option(p, "videos processed")
    p.add_argument(
        "--ffmpeg-threads", type=int, default=None, metavar="N",
        help="threads ffmpeg may use for one video (0: ffmpeg decides; default: CPU count / "
        "--workers on the local runner, else 1, since each core already decodes its own video)",
    )
    p.add_argument("--poll", type=float, default=2.0, metavar="S", help="seconds between progress updates (default: 2)")


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    p = add_command(
        subparsers,
        "ingest",
        help="decode a video list into a clip store (Beam pipeline)",
        description=DESCRIPTION,
    )
    p.add_argument("list", metavar="LIST", help="the video list (path or URI)")
    _add_options(p)
    p.add_argument(
        "rest", nargs=argparse.REMAINDER, metavar="-- BEAM_FLAGS",
        help="standard Apache Beam pipeline options after `--` (e.g. --runner=DataflowRunner); "
        "other unknown flags are passed to Beam too",
    )
    p.set_defaults(func=run, writes=("store", "store"))
    return p


def split_args(args: argparse.Namespace) -> list[str]:
    """Parse the options written after LIST into ``args``; return the Beam flags.

    argparse stops at the first positional of a REMAINDER, so options that
    follow LIST arrive in ``args.rest``: they are parsed here, and what is
    after ``--`` (or not one of ours) goes to Beam's PipelineOptions.
    """
    rest = list(args.rest or [])
    beam: list[str] = []
    if "--" in rest:
        i = rest.index("--")
        rest, beam = rest[:i], rest[i + 1 :]
    opts = argparse.ArgumentParser(prog="audioscope ingest", add_help=False)
    _add_options(opts)
    defaults = opts.parse_args([])
    parsed, unknown = opts.parse_known_args(rest)
    for key, value in vars(parsed).items():
        if value != getattr(defaults, key):
            setattr(args, key, value)
    return local_parallelism(unknown + beam, args.workers)


def ffmpeg_threads(asked: int | None, workers: int | None, beam_args: list[str]) -> int:
    """Threads per ffmpeg run: what was asked, else the cores left per local worker.

    Videos are decoded in parallel, one per worker; ffmpeg's own frame and
    filter threads then only cost CPU. On the local runner with fewer workers
    than cores, the spare cores go to ffmpeg.
    """
    if asked is not None:
        if asked < 0:
            from audioscope.errors import UserError

            raise UserError("--ffmpeg-threads must be 0 (ffmpeg decides) or a positive number")
        return asked
    if not local_runner(beam_args):
        return 1
    cores = os.cpu_count() or 1
    return max(1, cores // max(1, workers or cores))


class StatusPoller:
    """Progress read back from the status records of this run's videos.

    Each record is read once; only counts are kept (and the names already
    counted), never the records.
    """

    def __init__(self, layout: "Layout", video_ids: Any) -> None:
        self.layout = layout
        self.video_ids = video_ids  # anything with `in` (a set, or the run's on-disk id set)
        self.seen: set[str] = set()
        self.ok = self.failed = self.clips = 0

    def __call__(self) -> tuple[int, dict[str, int]]:
        from audioscope import storage

        for path in storage.list_files(self.layout.status_dir, ".json"):
            vid = path.rsplit("/", 1)[-1][: -len(".json")]
            if vid in self.seen or vid not in self.video_ids:
                continue
            record = json.loads(storage.read_text(path))
            self.seen.add(vid)
            if record.get("status") in ("ok", "partial"):
                self.ok += 1
                self.clips += len(record.get("clips", ()))
            else:
                self.failed += 1
        return len(self.seen), {"ok": self.ok, "failed": self.failed, "clips": self.clips}


def run(args: argparse.Namespace) -> int:
    from audioscope.errors import UserError
    from audioscope.pipelines.ingest_pool import boot_fork_server, local_pool_size, stop_fork_server

    beam_args = split_args(args)
    if not args.store:
        raise UserError("--store STORE is required: the clip store to create or resume (the older spelling --out works too)")
    from audioscope.folders import refuse_another_steps

    refuse_another_steps(args.store, "store", "--store")  # given after LIST, it was parsed only now
    if not local_pool_size(beam_args):
        return _run(args, beam_args)
    boot_fork_server()  # the local pool's fork server imports the per-video code while the launcher imports
    try:
        return _run(args, beam_args)
    finally:
        stop_fork_server()  # a run that ended before its pool started leaves no server behind


def _run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from audioscope.clipstore.summary import summary_rows
    from audioscope.pipelines.ingest import IngestConfig, ingest
    from audioscope.progress import Poller, Progress, print_summary

    config = IngestConfig(
        list_path=args.list,
        store=args.store,
        media_root=args.media_root,
        list_format=args.format,
        allow_outside_root=args.allow_outside_root,
        aspect=args.aspect,
        frame_codec=args.frame_codec,
        retry_failed=args.retry_failed,
        max_bytes=args.max_bytes,
        timeout_s=args.timeout,
        decode_timeout_s=args.decode_timeout,
        max_duration_s=args.max_duration,
        max_pixels=args.max_pixels,
        anonymous=args.anonymous,
        ffmpeg_threads=ffmpeg_threads(args.ffmpeg_threads, args.workers, beam_args),
        beam_args=tuple(beam_args),
    )

    def watch(layout: "Layout", n_requested: int, ids: Any) -> Poller:
        print(f"ingest: {n_requested} videos requested, store {args.store}", file=sys.stderr)
        progress = Progress("ingest", total=n_requested, unit="videos")
        return Poller(progress, StatusPoller(layout, ids), every=args.poll)

    result = ingest(config, watch=watch)
    print(f"ingest: {result.bad_rows} bad list rows (in the status table)", file=sys.stderr)
    print_summary("Ingest finished", {**summary_rows(result.summary), "store": args.store})
    print(
        f"\nPer-video reasons: audioscope clips list --status --store {q(args.store)}\n"
        f"Clips:             audioscope clips list --store {q(args.store)}"
    )
    if result.unfinished:
        print(
            f"ingest: {result.unfinished} of {result.requested} requested videos were not finished "
            "(the runner lost them); run the same command again to complete the store",
            file=sys.stderr,
        )
        return 1
    return 0
