"""`audioscope ingest`: decode a video list into a clip store (the launcher).

The launcher does the small, serial part on the user's machine: it reads the
list, records unreadable rows, writes the normalised requests into the store
and runs the Beam pipeline (:mod:`audioscope.pipelines.ingest`) with any Beam
flags given after ``--``. While the pipeline runs it shows progress read back
from the status records in the store, so the display is the same on the
local runner and on Dataflow.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Mapping

from audioscope.options import add_store_option, add_workers_option
from audioscope.pipelines.runner import local_parallelism, local_runner  # noqa: F401 (re-exported)

if TYPE_CHECKING:  # pragma: no cover
    from audioscope.clipstore.format import Layout

#: Requests per ``STORE/requests`` shard.
REQUESTS_PER_SHARD = 10_000

DESCRIPTION = """\
Decode every video of a list into a clip store: one ffmpeg pass per video
gives 16 kHz mono audio and one 128x128 frame per second (the picture at the
centre of each second); 5-second clips with a 1-second hop are indexed.

LIST is an AudioScope clip CSV, a YFCC100M metadata file, or a text file of
URIs/paths (detected from the content unless --format is given). Every video
that cannot give clips (corrupt, no audio, unreachable, ...) and every
unreadable list row is recorded in STORE/index/status.parquet with a reason;
the run goes on and exits 0. Re-running the same command resumes: finished
videos are not redone.

Beam flags go after `--`, e.g.
  audioscope ingest list.csv --out gs://b/store -- --runner=DataflowRunner \\
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
    p.add_argument("--max-duration", type=float, default=None, metavar="S", help="refuse videos longer than S seconds (default: no limit)")
    add_workers_option(p, "videos processed")
    p.add_argument(
        "--ffmpeg-threads", type=int, default=None, metavar="N",
        help="threads ffmpeg may use for one video (0: ffmpeg decides; default: CPU count / "
        "--workers on the local runner, else 1, since each core already decodes its own video)",
    )
    p.add_argument("--poll", type=float, default=2.0, metavar="S", help="seconds between progress updates (default: 2)")


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "ingest",
        help="decode a video list into a clip store (Beam pipeline)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("list", metavar="LIST", help="the video list (path or URI)")
    _add_options(p)
    p.add_argument(
        "rest", nargs=argparse.REMAINDER, metavar="-- BEAM_FLAGS",
        help="standard Apache Beam pipeline options after `--` (e.g. --runner=DataflowRunner); "
        "other unknown flags are passed to Beam too",
    )
    p.set_defaults(func=run)
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


def _line(obj: Any) -> str:
    data = obj.to_json()
    return data if isinstance(data, str) else json.dumps(data, sort_keys=True)


def write_requests(layout: "Layout", list_path: str, fmt: str | None, media_root: str | None) -> tuple[int, int]:
    """Read the list; write requests shards and bad rows into the store.

    Returns (requests, bad rows). Videos named twice keep their first row
    (the others are recorded as ``duplicate_video`` bad rows). Stale shards of
    an earlier list are removed after the new ones are written.
    """
    from audioscope import storage
    from audioscope.sources.lists import BadRow, read_video_list

    seen: dict[str, str] = {}
    requests: list[str] = []
    bad: list[str] = []
    for item in read_video_list(list_path, fmt=fmt, media_root=media_root):
        if isinstance(item, BadRow):
            bad.append(_line(item))
            continue
        if item.video_id in seen:
            bad.append(
                _line(
                    BadRow(
                        origin=item.origin, kind="duplicate_video",
                        message=f"video {item.video_id} is already requested by {seen[item.video_id]}; this row is ignored",
                        raw=item.uri,
                    )
                )
            )
            continue
        seen[item.video_id] = item.origin
        requests.append(_line(item))

    n_shards = max(1, -(-len(requests) // REQUESTS_PER_SHARD))
    names = []
    for i in range(n_shards):
        name = f"requests-{i:05d}-of-{n_shards:05d}.jsonl"
        chunk = requests[i * REQUESTS_PER_SHARD : (i + 1) * REQUESTS_PER_SHARD]
        storage.atomic_write(storage.join(layout.requests_dir, name), "".join(c + "\n" for c in chunk))
        names.append(name)
    for path in storage.glob(storage.join(layout.requests_dir, "requests-*.jsonl")):
        if path.rsplit("/", 1)[-1] not in names:
            storage.remove(path)
    # Bad rows are kept per list (keyed by the list's name and content), so
    # lists ingested into one store one after the other all keep theirs and
    # re-running a list replaces its own file instead of adding duplicates.
    key = hashlib.sha1(os.fspath(list_path).encode() + b"\0" + storage.read_bytes(list_path)).hexdigest()[:16]
    bad_path = storage.join(layout.bad_rows_dir, f"{key}.jsonl")
    if bad or storage.exists(bad_path):
        storage.atomic_write(bad_path, "".join(b + "\n" for b in bad))
    return len(requests), len(bad)


class StatusPoller:
    """Progress read back from status records (cached: each record is read once)."""

    def __init__(self, layout: "Layout", video_ids: set[str]) -> None:
        self.layout = layout
        self.video_ids = video_ids
        self.seen: dict[str, Mapping[str, Any]] = {}

    def __call__(self) -> tuple[int, dict[str, int]]:
        from audioscope import storage

        for path in storage.list_files(self.layout.status_dir, ".json"):
            vid = path.rsplit("/", 1)[-1][: -len(".json")]
            if vid in self.video_ids and vid not in self.seen:
                self.seen[vid] = json.loads(storage.read_text(path))
        ok = [r for r in self.seen.values() if r.get("status") in ("ok", "partial")]
        return len(self.seen), {
            "ok": len(ok),
            "failed": len(self.seen) - len(ok),
            "clips": sum(len(r.get("clips", ())) for r in ok),
        }


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def summary_rows(summary: Mapping[str, Any]) -> dict[str, object]:
    """The lines of the end-of-step summary (shared with `audioscope clips stats`)."""
    failures = summary.get("failures_by_kind") or {}
    ratio = summary.get("compression_vs_naive")
    rows: dict[str, object] = {
        "videos": summary["videos"],
        "videos ok": summary["videos_ok"] + summary.get("videos_partial", 0),
        "videos failed": summary["videos_failed"],
        "bad list rows": summary["bad_rows"],
        "failures by kind": ", ".join(f"{k}={v}" for k, v in failures.items()) or "none",
        "clips": summary["clips"],
        "hours of video": f"{summary['hours']:.2f}",
        "media bytes": _fmt_bytes(summary["media_bytes"]),
        "bytes per clip-second": (
            f"{summary['bytes_per_clip_second']:.0f} (naive {summary['naive_bytes_per_clip_second']:.0f}, "
            f"{ratio:.1f}x smaller)" if ratio else "n/a"
        ),
    }
    if summary.get("bytes_per_media_second"):
        rows["bytes per stored second"] = (
            f"{summary['bytes_per_media_second']:.0f} "
            f"({summary['compression_vs_naive_long_videos']:.1f}x smaller than naive for long videos)"
        )
    if summary.get("wall_seconds") is not None:
        rows["wall time"] = f"{summary['wall_seconds']:.1f} s"
    return rows


def run(args: argparse.Namespace) -> int:
    from audioscope import storage
    from audioscope.errors import UserError
    from audioscope.clipstore.format import Layout, StoreError, StoreParams, init_store
    from audioscope.clipstore.writer import IngestSettings
    from audioscope.progress import Poller, Progress, print_summary

    beam_args = split_args(args)
    if not args.store:
        raise UserError("--store STORE is required: the clip store to create or resume (the older spelling --out works too)")
    if not storage.exists(args.list):
        raise UserError(f"the list {args.list} does not exist; give the path of a video list")
    layout = Layout(args.store)
    params = StoreParams(aspect=args.aspect, frame_codec=args.frame_codec)
    try:
        init_store(layout, params)
    except StoreError as e:
        raise UserError(str(e)) from None
    try:
        n_requests, n_bad = write_requests(layout, args.list, args.format, args.media_root)
    except ValueError as e:
        raise UserError(f"cannot read the list {args.list}: {e}; check --format") from None
    print(f"ingest: {n_requests} videos requested, {n_bad} bad list rows, store {args.store}", file=sys.stderr)

    from audioscope.sources.fetch import FetchLimits

    limit_kw: dict[str, Any] = {}
    if args.max_bytes is not None:
        limit_kw["max_bytes"] = args.max_bytes
    if args.timeout is not None:
        limit_kw["timeout_s"] = args.timeout
    settings = IngestSettings(
        store=args.store,
        params=params,
        limits=FetchLimits(**limit_kw),
        decode_timeout_s=args.decode_timeout,
        ffmpeg_threads=ffmpeg_threads(args.ffmpeg_threads, args.workers, beam_args),
        max_duration_s=args.max_duration,
        retry_failed=args.retry_failed,
    )
    from audioscope.pipelines.ingest import run_pipeline

    request_files = sorted(storage.glob(storage.join(layout.requests_dir, "requests-*.jsonl")))
    ids = set()
    for path in request_files:
        ids.update(json.loads(line)["video_id"] for line in storage.read_lines(path))
    started = time.time()
    progress = Progress("ingest", total=len(ids), unit="videos")
    with Poller(progress, StatusPoller(layout, ids), every=args.poll):
        run_pipeline(settings, request_files, beam_args, started_at=started)
    summary = json.loads(storage.read_text(layout.summary_json))
    print_summary("Ingest finished", {**summary_rows(summary), "store": args.store})
    print(
        f"\nPer-video reasons: audioscope clips list --status --store {args.store}\n"
        f"Clips:             audioscope clips list --store {args.store}"
    )
    return 0
