"""`audioscope clips`: list, export and summarise the clips of a clip store."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Iterator

from audioscope.options import add_store_option

if TYPE_CHECKING:  # pragma: no cover
    from audioscope.clipstore.reader import ClipStore


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "clips",
        help="list, export and summarise the clips of a clip store",
        description="Inspect a clip store made by `audioscope ingest`.",
    )
    sub = parser.add_subparsers(dest="clips_command", metavar="ACTION", title="actions", required=True)

    p = sub.add_parser(
        "list", help="print the clip index (or the per-video status)",
        description="Print the clip index, one row per clip (clip_id, video_id, start, end, "
        "split, licence, source), or with --status the per-video status with reasons.",
    )
    _store_arg(p)
    p.add_argument("--format", choices=("table", "csv"), default="table", help="output format (default: table)")
    p.add_argument("--status", action="store_true", help="print the per-video status (video_id, source, status, kind, message) instead")
    p.add_argument("--video", metavar="VIDEO_ID", default=None, help="only this video's rows")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="print at most N rows (table format only)")
    p.set_defaults(func=run_list)

    p = sub.add_parser(
        "export", help="write one clip as audio.wav and frame_0..4.png",
        description="Write one clip as DIR/audio.wav (16 kHz mono PCM16) and "
        "DIR/frame_0.png .. frame_4.png (one per second).",
    )
    _store_arg(p)
    p.add_argument("clip_id", metavar="CLIP_ID", help="the clip to export (see `audioscope clips list`)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write the files into (created)")
    p.set_defaults(func=run_export)

    p = sub.add_parser(
        "stats", help="summarise the store",
        description="Summarise the store: videos ok / failed by kind, clips, hours, bytes, "
        "and bytes per clip-second against the naive store (float32 audio + raw frames per clip).",
    )
    _store_arg(p)
    p.set_defaults(func=run_stats)
    return parser


def _store_arg(p: argparse.ArgumentParser) -> None:
    add_store_option(p, help="the clip store (path, gs://, s3://)")


def _open(uri: str) -> "ClipStore":
    from audioscope.errors import UserError
    from audioscope.clipstore.format import StoreError
    from audioscope.clipstore.reader import ClipStore

    try:
        return ClipStore.open(uri)
    except StoreError as e:
        raise UserError(str(e)) from None


INDEX_COLUMNS = ("clip_id", "video_id", "start", "end", "split", "licence_name", "source_uri")
STATUS_COLUMNS = ("video_id", "source", "status", "kind", "message")
_TABLE_BLOCK = 1000  # rows whose widths set the table's columns
_MAX_WIDTH = 60


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "None" if value is None else "NaN"
    text = str(value)
    return text if len(text) <= _MAX_WIDTH else text[: _MAX_WIDTH - 3] + "..."


def _print_table(header: list[str], rows: "Iterator[tuple[object, ...]]", limit: int | None) -> None:
    """Rows as an aligned text table, streamed: the first block of rows sets the widths."""
    import itertools

    if limit is not None:
        rows = itertools.islice(rows, limit)
    first = [tuple(_cell(v) for v in r) for r in itertools.islice(rows, _TABLE_BLOCK)]
    if not first:
        print("(no rows)")
        return
    widths = [max([len(h), *(len(r[i]) for r in first)]) for i, h in enumerate(header)]

    def line(cells: "tuple[str, ...] | list[str]") -> str:
        return " ".join(c.rjust(w) for c, w in zip(cells, widths))

    out = sys.stdout
    out.write(line(header) + "\n")
    for r in first:
        out.write(line(r) + "\n")
    for r in rows:
        out.write(line(tuple(_cell(v) for v in r)) + "\n")


def run_list(args: argparse.Namespace) -> int:
    """Streams the rows (one batch per index shard in memory), whatever the store's size."""
    import csv

    store = _open(args.store)
    if args.status:
        header = list(STATUS_COLUMNS)
        rows: "Iterator[tuple[object, ...]]" = (
            r for frame in store.iter_status() for r in frame[header].itertuples(index=False, name=None)
            if args.video is None or r[0] == args.video
        )
    else:
        header = [("source" if c == "source_uri" else c) for c in INDEX_COLUMNS]
        rows = store.iter_index_rows(list(INDEX_COLUMNS), video_id=args.video)
    if args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
        for r in rows:
            writer.writerow(["" if v is None else v for v in r])
    else:
        _print_table(header, rows, args.limit)
    return 0


def run_export(args: argparse.Namespace) -> int:
    import wave

    import numpy as np
    from PIL import Image

    from audioscope.errors import UserError

    store = _open(args.store)
    try:
        clip = store.clip(args.clip_id)
    except KeyError as e:
        raise UserError(str(e.args[0])) from None
    os.makedirs(args.out, exist_ok=True)
    pcm = np.clip(np.round(clip.audio * 32768.0), -32768, 32767).astype("<i2")
    with wave.open(os.path.join(args.out, "audio.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(store.params.sample_rate)
        w.writeframes(pcm.tobytes())
    for i, frame in enumerate(clip.frames):
        Image.fromarray(frame, mode="RGB").save(os.path.join(args.out, f"frame_{i}.png"))
    print(f"wrote {args.out}/audio.wav and frame_0..{len(clip.frames) - 1}.png for {clip.clip_id}")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from audioscope.clipstore.summary import summary_rows
    from audioscope.progress import print_summary

    store = _open(args.store)
    print_summary(f"Clip store {args.store}", summary_rows(store.summary))
    return 0
