"""Make a whole synthetic corpus: videos, ground truth and the list files.

Layout under ``out`` (other parts of the project read exactly this):

``videos/<stem>.<ext>``
    the videos, ``stem = syn{seed}-{i:04d}``, broken ones included.
``list.txt``
    one path per line, relative to ``out`` (``videos/syn7-0003.mp4``).
``list.csv``
    ``uri,video_id,licence_name,licence_url``: uri as in list.txt, the stem as
    video_id, licence CC0 1.0.
``truth/<stem>.json``
    per-video ground truth (see :mod:`audioscope.synth.scene`) plus this
    video's ``record`` (the corpus.json entry) and its ``plan``.
``truth.parquet``
    one row per (video_id, second) -- see :data:`TRUTH_COLUMNS`.
``corpus.json``
    generator version, seed, arguments and one entry per video.
``README.txt``
    these lines, for people who find the folder.

Resume: a video is finished when its ``truth/<stem>.json`` exists, its plan
equals the one this run would make, and the video's sha256 matches the
record. Finished videos are kept; the rest are made again. Every file is
written under a temporary name and renamed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from typing import Callable

from audioscope.errors import UserError
from audioscope.processes import stop_executor
from audioscope.synth.encode import EncodeSettings, encode, missing_encoders
from audioscope.synth.plan import (
    BROKEN_KINDS,
    PlanOptions,
    VideoSpec,
    vfr_select_expr,
    video_spec,
)

GENERATOR_VERSION = "1"
LICENCE_NAME = "CC0 1.0"
LICENCE_URL = "https://creativecommons.org/publicdomain/zero/1.0/"
ARGS_FILE = ".synth-args.json"

#: truth.parquet columns: video_id (string), second (int32), onscreen
#: (list<string>), offscreen (list<string>), has_onscreen (bool),
#: has_offscreen (bool). Rows exist for normal and silent_audio videos (every
#: whole second) and for no_audio videos (every whole second, has_* false:
#: nothing can be heard); broken videos have no rows.
TRUTH_COLUMNS: tuple[str, ...] = (
    "video_id", "second", "onscreen", "offscreen", "has_onscreen", "has_offscreen"
)

NOT_A_VIDEO_TEXT = (
    "This is not a video. It is a text file with a video's extension, made by\n"
    "`audioscope synth` to check that ingest records it as a bad input and goes on.\n"
)

README = """\
Synthetic AudioScope corpus made by `audioscope synth` (generator version {version}).

videos/          the videos (broken ones on purpose: see corpus.json `kind`)
list.txt         one video path per line, relative to this folder
list.csv         uri,video_id,licence_name,licence_url (all CC0 1.0)
truth/<id>.json  ground truth per video: sources (on/off-screen, sound and visual
                 class, [onset, offset] seconds), knock events, and per whole second
                 the on- and off-screen source ids audible (on >= 0.25 s of it)
truth.parquet    one row per (video_id, second): onscreen, offscreen, has_onscreen,
                 has_offscreen (no rows for broken videos; has_* false without audio)
corpus.json      arguments, seed and per video: kind, codecs, size, fps, duration,
                 sample rate, channels, sha256, and what ingest should say (`expected`)

Make it again, byte for byte: {command}
"""


@dataclass
class CorpusSummary:
    """What :func:`generate_corpus` made."""

    out: str
    videos: int
    made: int
    skipped: int
    by_kind: dict[str, int]
    by_mode: dict[str, int]
    total_duration_s: float
    onscreen_second_rate: float  # share of truth seconds with an audible on-screen source
    onscreen_clip_rate: float  # share of 5 s clips (1 s hop) with one
    paths: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- #
# one video


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _record(spec: VideoSpec, sha: str, size: int) -> dict[str, object]:
    """The corpus.json entry of a video."""
    empty = spec.kind in ("broken_empty", "broken_not_video")
    return {
        "stem": spec.stem,
        "file": f"videos/{spec.filename}",
        "kind": spec.kind,
        "mode": spec.mode,
        "container": spec.container,
        "vcodec": None if empty else spec.vcodec,
        "acodec": None if empty else spec.acodec,
        "width": None if empty else spec.width,
        "height": None if empty else spec.height,
        "fps": None if empty else spec.fps_value,
        "vfr": spec.vfr and not empty,
        "duration": None if empty else round(spec.duration, 6),
        "sample_rate": None if empty else spec.sample_rate,
        "channels": None if empty else spec.channels,
        "sha256": sha,
        "bytes": size,
        "expected": spec.expected,
    }


def _plan_json(spec: VideoSpec) -> dict[str, object]:
    return {**asdict(spec), "generator_version": GENERATOR_VERSION}


def _is_done(spec: VideoSpec, root: str) -> dict[str, object] | None:
    """The finished record of ``spec`` under ``root``, or None to (re)make it."""
    truth_path = os.path.join(root, "truth", f"{spec.stem}.json")
    video_path = os.path.join(root, "videos", spec.filename)
    try:
        with open(truth_path, encoding="utf-8") as f:
            truth = json.load(f)
    except (OSError, ValueError):
        return None
    record = truth.get("record") or {}
    if truth.get("plan") != _plan_json(spec) or not os.path.isfile(video_path):
        return None
    if os.path.getsize(video_path) != record.get("bytes") or _sha256(video_path) != record.get("sha256"):
        return None
    return dict(record)


def _start_worker() -> None:
    """In a pool process: Ctrl-C (sent to the whole process group) is the parent's to handle, and
    SIGTERM or SIGHUP end the process at once (the parent stops its pool that way; a half-made video
    is removed by the next run). A forked process would otherwise keep the command's handlers."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def make_video(spec: VideoSpec, root: str) -> dict[str, object]:
    """Make one video and its truth file under ``root``; returns its record.

    Runs in a worker process: everything it needs comes from ``spec``.
    """
    from audioscope.storage import atomic_write, is_atomic_write_leftover
    from audioscope.synth.scene import build_scene

    videos = os.path.join(root, "videos")
    os.makedirs(videos, exist_ok=True)
    final = os.path.join(videos, spec.filename)
    tmp = os.path.join(videos, f".{spec.filename}.partial-{os.getpid()}")
    truth: dict[str, object]
    try:
        if spec.kind == "broken_empty":
            open(tmp, "wb").close()
        elif spec.kind == "broken_not_video":
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(NOT_A_VIDEO_TEXT)
        else:
            scene = build_scene(spec)
            settings = EncodeSettings(
                container=spec.container,
                vcodec=spec.vcodec,
                acodec=spec.acodec,
                width=spec.width,
                height=spec.height,
                rate=str(spec.base_rate),
                sample_rate=spec.sample_rate,
                channels=spec.channels,
                select=vfr_select_expr(spec.n_frames, spec.index, spec.seed) if spec.vfr else None,
                faststart=spec.kind != "broken_truncated",
            )
            audio = scene.audio() if spec.acodec else None
            encode(tmp, settings, scene.frames(), audio)
            if spec.kind == "broken_truncated":  # a valid file cut in half
                with open(tmp, "rb") as f:
                    data = f.read()
                with open(tmp, "wb") as f:
                    f.write(data[: len(data) // 2])
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if spec.kind in BROKEN_KINDS:
        truth = {"video_id": spec.stem, "file": f"videos/{spec.filename}", "kind": spec.kind,
                 "sources": [], "events": [], "seconds": []}
    else:
        truth = scene.truth()
        if spec.kind == "no_audio":  # nothing can be heard
            truth["seconds"] = [
                {"second": r["second"], "onscreen": [], "offscreen": []}
                for r in truth["seconds"]  # type: ignore[union-attr]
            ]
    record = _record(spec, _sha256(final), os.path.getsize(final))
    truth["expected"] = spec.expected
    truth["record"] = record
    truth["plan"] = _plan_json(spec)
    atomic_write(os.path.join(root, "truth", f"{spec.stem}.json"), json.dumps(truth, indent=1) + "\n")
    return record


# --------------------------------------------------------------------------- #
# the corpus


def _check_args(root: str, options: PlanOptions) -> None:
    from audioscope.errors import UserError

    path = os.path.join(root, ARGS_FILE)
    want = {"generator_version": GENERATOR_VERSION, **options.to_json()}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            have = json.load(f)
        if have != want:
            diff = ", ".join(
                f"{k}: {have.get(k)!r} there, {want.get(k)!r} now"
                for k in sorted(set(have) | set(want))
                if have.get(k) != want.get(k)
            )
            raise UserError(
                f"{root} already holds a synthetic corpus made with other arguments ({diff}). "
                "Run with the same arguments to resume or extend it (only --videos and "
                "--jobs may change), or choose a new --out directory."
            )
    elif os.path.isdir(root) and any(not n.startswith(".") for n in os.listdir(root)):
        raise UserError(
            f"{root} exists and is not empty, and is not a corpus made by `audioscope synth`. "
            "Choose a new or empty --out directory."
        )


def _remove_surplus(root: str, seed: int, videos: int) -> list[str]:
    """Delete videos of an earlier, larger run (index >= videos)."""
    removed = []
    pattern = re.compile(rf"^syn{seed}-(\d{{4,}})\.(mp4|webm|mkv|avi|json)$")
    for sub in ("videos", "truth"):
        d = os.path.join(root, sub)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            m = pattern.match(name)
            if m and int(m.group(1)) >= videos:
                os.unlink(os.path.join(d, name))
                removed.append(f"{sub}/{name}")
    return removed


def _truth_table(root: str, specs: list[VideoSpec]) -> "object":
    import pyarrow as pa

    cols: dict[str, list[object]] = {c: [] for c in TRUTH_COLUMNS}
    for spec in specs:
        if spec.kind in BROKEN_KINDS:
            continue
        with open(os.path.join(root, "truth", f"{spec.stem}.json"), encoding="utf-8") as f:
            truth = json.load(f)
        for row in truth["seconds"]:
            cols["video_id"].append(spec.stem)
            cols["second"].append(row["second"])
            cols["onscreen"].append(row["onscreen"])
            cols["offscreen"].append(row["offscreen"])
            cols["has_onscreen"].append(bool(row["onscreen"]))
            cols["has_offscreen"].append(bool(row["offscreen"]))
    schema = pa.schema([
        ("video_id", pa.string()), ("second", pa.int32()),
        ("onscreen", pa.list_(pa.string())), ("offscreen", pa.list_(pa.string())),
        ("has_onscreen", pa.bool_()), ("has_offscreen", pa.bool_()),
    ])
    return pa.table(cols, schema=schema)


def _rates(table: "object") -> tuple[float, float]:
    """(share of seconds, share of 5 s clips with 1 s hop) with on-screen sound."""
    import numpy as np

    ids = table.column("video_id").to_pylist()  # type: ignore[attr-defined]
    on = table.column("has_onscreen").to_pylist()  # type: ignore[attr-defined]
    secs = clips = clips_on = 0
    secs_on = 0
    start = 0
    for end in range(1, len(ids) + 1):
        if end == len(ids) or ids[end] != ids[start]:
            v = np.array(on[start:end], dtype=bool)
            secs += len(v)
            secs_on += int(v.sum())
            for k in range(len(v) - 4):
                clips += 1
                clips_on += bool(v[k : k + 5].any())
            start = end
    return (secs_on / secs if secs else 0.0, clips_on / clips if clips else 0.0)


def generate_corpus(
    out: str,
    videos: int,
    seed: int,
    broken: bool = True,
    *,
    min_duration: float = 3.0,
    max_duration: float = 90.0,
    onscreen_rate: float = 0.45,
    jobs: int | None = None,
    on_video: Callable[[dict[str, object], bool], None] | None = None,
) -> CorpusSummary:
    """Make (or resume) the corpus under ``out``; see the module docstring.

    ``on_video(record, skipped)`` is called after each video (for progress).
    Same arguments -> byte-identical files.
    """
    import pyarrow.parquet as pq

    from audioscope.storage import atomic_write, is_atomic_write_leftover

    if videos < 1:
        raise UserError("--videos must be at least 1")
    if seed < 0:
        raise UserError("--seed must be a non-negative integer")
    if not 3.0 <= min_duration <= max_duration:
        raise UserError("durations must satisfy 3 <= --min-duration <= --max-duration")
    if not 0.0 <= onscreen_rate <= 1.0:
        raise UserError("--onscreen-rate must be between 0 and 1")
    options = PlanOptions(seed, broken, float(min_duration), float(max_duration), float(onscreen_rate))
    specs = [video_spec(i, options) for i in range(videos)]
    need = {s.vcodec for s in specs} | {s.acodec for s in specs if s.acodec}
    missing = missing_encoders(need)
    if missing:
        raise UserError(
            "ffmpeg is missing or lacks the encoders " + ", ".join(missing)
            + ": install a full ffmpeg (Debian: `apt-get install ffmpeg`) and run again."
        )
    root = os.path.abspath(out)
    _check_args(root, options)
    os.makedirs(os.path.join(root, "videos"), exist_ok=True)
    os.makedirs(os.path.join(root, "truth"), exist_ok=True)
    atomic_write(
        os.path.join(root, ARGS_FILE),
        json.dumps({"generator_version": GENERATOR_VERSION, **options.to_json()}, indent=1) + "\n",
    )
    _remove_surplus(root, seed, videos)
    for folder in ("videos", "truth", ""):  # leftovers of an interrupted run (a stopped pool's half-written files)
        for name in os.listdir(os.path.join(root, folder)):
            if ".partial-" in name or name.startswith(".audio-") or is_atomic_write_leftover(name):
                os.unlink(os.path.join(root, folder, name))

    records: dict[int, dict[str, object]] = {}
    todo = []
    for spec in specs:
        done = _is_done(spec, root)
        if done is not None:
            records[spec.index] = done
            if on_video:
                on_video(done, True)
        else:
            todo.append(spec)
    jobs = max(1, jobs or os.cpu_count() or 1)
    # Long videos first, so the pool does not end waiting on one.
    todo.sort(key=lambda s: -s.n_frames * s.width * s.height)
    if jobs == 1 or len(todo) <= 1:
        for spec in todo:
            records[spec.index] = make_video(spec, root)
            if on_video:
                on_video(records[spec.index], False)
    else:
        pool = ProcessPoolExecutor(max_workers=min(jobs, len(todo)), initializer=_start_worker)
        try:
            futures = {pool.submit(make_video, spec, root): spec for spec in todo}
            for fut in as_completed(futures):
                spec = futures[fut]
                records[spec.index] = fut.result()
                if on_video:
                    on_video(records[spec.index], False)
        except BrokenProcessPool:
            stop_executor(pool)
            raise UserError(
                "a process of the pool making the videos ended abruptly (killed, or out of memory); the videos "
                "finished are kept: run the same command again to make the rest"
            ) from None
        except BaseException:  # a stop (Ctrl-C, SIGTERM) or an error: the queued videos are not made
            stop_executor(pool)
            raise
        pool.shutdown()

    ordered = [records[s.index] for s in specs]
    files = [str(r["file"]) for r in ordered]
    paths = {
        "videos": os.path.join(root, "videos"),
        "list.txt": os.path.join(root, "list.txt"),
        "list.csv": os.path.join(root, "list.csv"),
        "truth": os.path.join(root, "truth"),
        "truth.parquet": os.path.join(root, "truth.parquet"),
        "corpus.json": os.path.join(root, "corpus.json"),
    }
    atomic_write(paths["list.txt"], "".join(f + "\n" for f in files))
    atomic_write(
        paths["list.csv"],
        "uri,video_id,licence_name,licence_url\n"
        + "".join(f"{r['file']},{r['stem']},{LICENCE_NAME},{LICENCE_URL}\n" for r in ordered),
    )
    table = _truth_table(root, specs)
    import io

    buf = io.BytesIO()
    pq.write_table(table, buf)  # type: ignore[arg-type]
    atomic_write(paths["truth.parquet"], buf.getvalue())
    command = (
        f"audioscope synth --out DIR --videos {videos} --seed {seed}"
        + ("" if broken else " --no-broken")
        + f" --min-duration {min_duration:g} --max-duration {max_duration:g}"
        + f" --onscreen-rate {onscreen_rate:g}"
    )
    manifest = {
        "generator": "audioscope synth",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "args": {"videos": videos, **options.to_json()},
        "command": command,
        "licence": {"name": LICENCE_NAME, "url": LICENCE_URL},
        "truth_rows": (
            "truth.parquet has one row per whole second for normal and silent_audio videos, "
            "rows with has_onscreen/has_offscreen false for no_audio videos, and no rows for "
            "broken videos"
        ),
        "audible_min_s": 0.25,
        "videos": ordered,
    }
    atomic_write(paths["corpus.json"], json.dumps(manifest, indent=1) + "\n")
    atomic_write(os.path.join(root, "README.txt"), README.format(version=GENERATOR_VERSION, command=command))
    sec_rate, clip_rate = _rates(table)
    made = len(todo)
    return CorpusSummary(
        out=root,
        videos=videos,
        made=made,
        skipped=videos - made,
        by_kind=dict(Counter(str(r["kind"]) for r in ordered)),
        by_mode=dict(Counter(s.mode for s in specs if s.kind == "normal")),
        total_duration_s=sum(float(r["duration"] or 0.0) for r in ordered),  # type: ignore[arg-type]
        onscreen_second_rate=sec_rate,
        onscreen_clip_rate=clip_rate,
        paths=paths,
    )


def summary_rows(s: CorpusSummary) -> dict[str, object]:
    """The end-of-run summary as ``print_summary`` rows."""
    return {
        "videos": f"{s.videos} ({s.made} made, {s.skipped} already there)",
        "by kind": ", ".join(f"{k}={v}" for k, v in sorted(s.by_kind.items())),
        "normal videos by sound": ", ".join(f"{k}={v}" for k, v in sorted(s.by_mode.items())),
        "total duration": f"{s.total_duration_s:.1f} s ({s.total_duration_s / 60:.1f} min)",
        "on-screen sound": (
            f"{100 * s.onscreen_second_rate:.0f}% of seconds, "
            f"{100 * s.onscreen_clip_rate:.0f}% of 5 s clips"
        ),
        **{(f"{k} folder" if k in ("videos", "truth") else k): v for k, v in s.paths.items()},
    }


__all__ = ["CorpusSummary", "generate_corpus", "make_video", "summary_rows", "TRUTH_COLUMNS"]
