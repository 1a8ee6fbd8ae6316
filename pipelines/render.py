"""The render Beam pipeline: one 5-second MP4 per sampled clip, for raters.

Raters watch each clip in Label Studio, so every clip becomes an MP4 a
browser plays with sound: H.264 (yuv420p) + AAC, constant frame rate (the
source's, at most 30 fps), the source's resolution with the short side
capped at 480 px (square pixels), ``-movflags +faststart``. The clips are
cut from the **source videos** (the clip store keeps only 128x128 frames).

Stages (labels as they show in the Beam / Dataflow UI)::

    ReadWork               the videos to render: JSON lines in MEDIA_DIR/work/
                           (source URI + the clips still missing), written by
                           the launcher (:func:`write_work`), spread over
                           workers (pipelines/work.py)
    RenderVideos           per video: fetch the source once (local files are
                           read in place; http, gs://, s3:// are downloaded),
                           probe it once, then one ffmpeg run per clip with the
                           protocol and demuxer whitelists of audioscope.media;
                           each MP4 is written atomically to
                           MEDIA_DIR/clips/<clip_id>.mp4. A clip or video that
                           fails gets MEDIA_DIR/failed/<clip_id>.json with the
                           reason (retried by the next run) and a counter.

Layout of MEDIA_DIR (owned by :class:`RenderLayout`)::

    clips/<clip_id>.mp4                 one rendered clip (written whole)
    failed/<clip_id>.json               a clip this run could not render (kind, message, video_id)
    invalid-ids.jsonl                   pool rows whose clip id is not a valid id (never a file name)
    work/work-NNNNN-of-MMMMM.jsonl      the videos this run renders
    render.json                         counts and failures of the last run

MEDIA_DIR is a local folder (served by Label Studio's local-files storage)
or ``gs://`` (served through a GCS import storage with presigned URLs).
Every clip and video id of the pools is checked (:mod:`audioscope.ids`),
every source is confined to ``--media-root`` when one is given
(:func:`confine_source`), and every file name is made by
:func:`audioscope.ids.file_in`. Every clip sent to the workers must come
back as an MP4 or a failure record: a run that ends with clips of a work
shard unaccounted for raises :class:`~audioscope.pipelines.work.IncompleteRun`.
:func:`render` is the library entry (``audioscope annotate render`` wraps it).
Everything shipped to workers is a path or a number.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Iterator, Mapping, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics

from audioscope import storage, uris
from audioscope.clipstore.summary import STATUS_CONFLICT
from audioscope.errors import UserError, ends_the_run
from audioscope.folders import FolderLayout
from audioscope.ids import check_clip_id, check_video_id, file_in
from audioscope.schemas.annotations import AnnotationLayout
from audioscope.media import SAFE_INPUT_ARGS, MediaError, ProbeInfo, probe, run_tool, stderr_tail
from audioscope.pipelines.runner import RunnerConfig, new_pipeline, run_to_end, to_stderr
from audioscope.pipelines.work import WORK_SHARDS, ReadWork, write_work_shards
from audioscope.progress import Poller, Progress
from audioscope.shell import q

logger = logging.getLogger(__name__)

METRICS_NAMESPACE = "audioscope.render"
#: Videos per work shard (one JSON line each).
VIDEOS_PER_WORK_SHARD = 10_000
#: The short side of a rendered clip is at most this many pixels.
MAX_SHORT_SIDE = 480
#: Frame rates above this are reduced (raters do not need more).
MAX_FPS = 30
#: Used when the source does not say its frame rate.
DEFAULT_FPS = 25


@dataclass(frozen=True)
class RenderLayout(FolderLayout):
    """The one owner of a media folder (local path or URI): every path, "finished?", the readers.

    Other steps (``annotate push``) ask it which clips are rendered
    (:meth:`rendered`) instead of listing files by name.
    """

    @property
    def clips_dir(self) -> str:
        return self.path("clips")

    @property
    def failed_dir(self) -> str:
        return self.path("failed")

    @property
    def work_dir(self) -> str:
        return self.path("work")

    @property
    def summary_json(self) -> str:
        return self.path("render.json")

    @property
    def invalid_ids(self) -> str:
        """``invalid-ids.jsonl``: pool rows whose clip id is not a valid id (never used as a file name)."""
        return self.path("invalid-ids.jsonl")

    def clip(self, clip_id: str) -> str:
        """``clips/<clip_id>.mp4`` (:class:`~audioscope.ids.BadId` for an invalid clip id)."""
        return file_in(self.clips_dir, clip_id, ".mp4", kind="clip id")

    def failed(self, clip_id: str) -> str:
        return file_in(self.failed_dir, clip_id, ".json", kind="clip id")

    def work_shard(self, i: int, n: int) -> str:
        return self.path("work", WORK_SHARDS.name(i, n))

    # ------------------------------------------------------------------ state and readers
    def rendered(self) -> set[str]:
        """The clip ids with an MP4 (each is written whole, atomically)."""
        return {clip_id_of(p, ".mp4") for p in storage.list_files(self.clips_dir, ".mp4")}

    def failures(self) -> dict[str, dict[str, Any]]:
        """clip id -> failure record (kind, message, video_id) of the clips the last run could not render."""
        out = {}
        for path in storage.list_files(self.failed_dir, ".json"):
            record = json.loads(storage.read_text(path))
            out[str(record["clip_id"])] = record
        if storage.exists(self.invalid_ids):
            for line in storage.read_lines(self.invalid_ids):
                record = json.loads(line)
                out[str(record["clip_id"])] = record
        return dict(sorted(out.items()))

    def read_summary(self) -> dict[str, Any]:
        return json.loads(storage.read_text(self.summary_json))

    def is_finished(self) -> bool:
        """True when the last run ended with every clip of the pools rendered or recorded as failed."""
        if not storage.exists(self.summary_json):
            return False
        try:
            return self.read_summary().get("missing") == 0
        except ValueError:
            return False


def clip_id_of(path: str, suffix: str) -> str:
    return path.rsplit("/", 1)[-1][: -len(suffix)]


# --------------------------------------------------------------------------- one clip


def output_fps(info: ProbeInfo) -> str:
    """The constant frame rate of the rendered clip, as ffmpeg text: the source's, at most :data:`MAX_FPS`.

    NTSC rates (29.97 = 30000/1001, 23.976, 59.94 -> 30000/1001) are kept
    exact; other rates, and variable ones, are rounded to whole frames per second.
    """
    fps = info.fps
    if not fps or not math.isfinite(fps):
        return str(DEFAULT_FPS)
    if fps > MAX_FPS + 0.5:
        fps = fps / math.ceil(fps / MAX_FPS - 1e-3)
    whole = round(fps * 1.001)
    if abs(fps - whole / 1.001) < 0.005 and abs(fps - round(fps)) > 0.005:
        return f"{whole * 1000}/1001"
    return str(int(max(1, min(MAX_FPS, round(fps)))))


def video_filter(fps: str, max_short_side: int = MAX_SHORT_SIDE) -> str:
    """Square pixels, short side capped (even sizes for H.264), constant frame rate, yuv420p."""
    n = int(max_short_side)
    cap = f"trunc(min(%s,{n})/2)*2"
    scale = (
        f"scale=w='if(gte(iw,ih),-2,{cap % 'iw'})':h='if(gte(iw,ih),{cap % 'ih'},-2)'"
    )
    return f"scale=iw*sar:ih,setsar=1,{scale},setsar=1,fps={fps},format=yuv420p"


def render_command(src: str, info: ProbeInfo, start: float, duration: float, out: str) -> list[str]:
    """The ffmpeg command that cuts [start, start + duration) of ``src`` into an MP4 at ``out``."""
    fps = output_fps(info)
    return [
        "ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y",
        *SAFE_INPUT_ARGS, "-ss", f"{start:.3f}", "-t", f"{duration:.3f}", "-i", "file:" + src,
        "-map", f"0:{info.video_stream}", "-map", f"0:{info.audio_stream}",
        "-vf", video_filter(fps), "-fps_mode", "cfr",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-g", str(2 * math.ceil(float(Fraction(fps)))),
        "-af", "aresample=async=1:first_pts=0", "-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2",
        "-t", f"{duration:.3f}", "-movflags", "+faststart", "-f", "mp4", "file:" + out,
    ]  # fmt: skip


def render_clip(src: str, info: ProbeInfo, start: float, end: float, timeout_s: float = 300.0) -> bytes:
    """The MP4 bytes of one clip; raises :class:`MediaError` when ffmpeg fails."""
    if not info.has_video or not info.has_audio:
        raise MediaError("no_audio" if info.has_video else "no_video", "the source lacks a video or an audio stream")
    with tempfile.TemporaryDirectory(prefix="audioscope-render-") as tmp:
        out = os.path.join(tmp, "clip.mp4")
        res = run_tool(render_command(src, info, start, end - start, out), timeout_s)
        if res.returncode != 0 or not os.path.exists(out) or os.path.getsize(out) == 0:
            raise MediaError("corrupt", f"ffmpeg could not render the clip: {stderr_tail(res.stderr)}")
        with open(out, "rb") as f:
            return f.read()


# --------------------------------------------------------------------------- per-video work


def work_line(source_uri: str, video_id: str, clips: Sequence[tuple[str, float, float]]) -> str:
    """One line of a work shard: a source video and its clips to render (clip_id, start, end)."""
    return json.dumps(
        {"source_uri": source_uri, "video_id": video_id, "clips": [[c, float(s), float(e)] for c, s, e in clips]}
    )


class RenderVideo(beam.DoFn):
    """A work line -> its clips' MP4s in MEDIA_DIR/clips/; failures recorded per clip."""

    def __init__(self, media_dir: str) -> None:
        self.media_dir = media_dir

    def setup(self) -> None:
        self.layout = RenderLayout(self.media_dir)
        self.counters = {
            name: Metrics.counter(METRICS_NAMESPACE, name)
            for name in ("videos_read", "videos_failed", "clips_rendered", "clips_failed")
        }

    def _fail(self, clip_id: str, video_id: str, kind: str, message: str) -> None:
        record = {"clip_id": clip_id, "video_id": video_id, "kind": kind, "message": message}
        storage.atomic_write(self.layout.failed(clip_id), json.dumps(record, sort_keys=True) + "\n")
        self.counters["clips_failed"].inc()

    def process(self, line: str) -> Iterator[int]:
        from audioscope.sources.fetch import FetchError, fetch

        if not line.strip():
            return
        work = json.loads(line)
        clips = work["clips"]
        with tempfile.TemporaryDirectory(prefix="audioscope-fetch-") as workdir:
            try:
                media = fetch(work["source_uri"], workdir)
                info = probe(media.path)
            except (FetchError, MediaError) as e:
                kind, message = e.kind, e.message
            except Exception as e:  # noqa: BLE001 - recorded per clip, naming the video; the run goes on
                if ends_the_run(e):  # a full disk fails every video after it: the run stops
                    raise
                kind, message = "error", f"{type(e).__name__}: {e}"
            else:
                kind = message = None
            if kind is not None:
                logger.warning("cannot read %s (video %s): %s", work["source_uri"], work["video_id"], message)
                self.counters["videos_failed"].inc()
                for clip_id, _, _ in clips:
                    self._fail(clip_id, work["video_id"], kind, f"{work['source_uri']}: {message}")
                return
            self.counters["videos_read"].inc()
            done = 0
            for clip_id, start, end in clips:
                try:
                    data = render_clip(media.path, info, float(start), float(end))
                    storage.atomic_write(self.layout.clip(clip_id), data, content_type="video/mp4")
                except MediaError as e:
                    self._fail(clip_id, work["video_id"], e.kind, e.message)
                    continue
                except Exception as e:  # noqa: BLE001 - recorded (retried by the next run); the run goes on
                    if ends_the_run(e):
                        raise
                    self._fail(clip_id, work["video_id"], "error", f"{type(e).__name__}: {e}")
                    continue
                self.counters["clips_rendered"].inc()
                done += 1
        yield done


class RenderPipeline(beam.PTransform):
    """Work shards -> MP4s (and failure records)."""

    def __init__(self, media_dir: str, work_files: Sequence[str]) -> None:
        super().__init__()
        self.media_dir = media_dir
        self.work_files = list(work_files)

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection[int]:
        return (
            pbegin
            | "ReadWork" >> ReadWork(self.work_files)
            | "RenderVideos" >> beam.ParDo(RenderVideo(self.media_dir))
        )


def run_pipeline(media_dir: str, work_files: Sequence[str], beam_args: Sequence[str] = ()) -> Any:
    """Build and run the render pipeline; waits until it finishes."""
    p = new_pipeline(beam_args)
    _ = p | "Render" >> RenderPipeline(media_dir, work_files)
    return run_to_end(p)


# --------------------------------------------------------------------------- the launcher's part

#: (source_uri, video_id) -> the clips to render from it: (clip_id, start, end)
Todo = dict[tuple[str, str], list[tuple[str, float, float]]]


def rendered(layout: RenderLayout) -> set[str]:
    """The clip ids with an MP4 in ``layout`` (see :meth:`RenderLayout.rendered`)."""
    return layout.rendered()


def failures(layout: RenderLayout) -> dict[str, dict[str, Any]]:
    return layout.failures()


def write_work(layout: RenderLayout, todo: Mapping[tuple[str, str], list[tuple[str, float, float]]]) -> list[str]:
    """Work shards, one line per (source_uri, video_id); stale shards of an earlier run go."""
    items = sorted(todo.items())
    return write_work_shards(
        layout.work_dir, (work_line(uri, vid, clips) for (uri, vid), clips in items),
        per_shard=VIDEOS_PER_WORK_SHARD, total=len(items),
    )  # fmt: skip


def confine_source(raw: str, media_root: str | None) -> str:
    """The source video a pool row names, checked; raises ``RowError`` (kind ``unsafe_path`` ...).

    The same rules as an ingest list (:func:`audioscope.sources.lists.resolve_location`:
    schemes http(s), gs, s3, file and plain paths; no ``..`` components or
    control characters), and, with a ``media_root``, the source must lie
    inside it: a local root takes local files whose real path (symlinks
    followed) is under it, a ``gs://``/``s3://``/``https://`` root takes
    URIs under its prefix. Without a media root, absolute local paths and
    remote URIs are taken as they are (the pools are the user's own).
    """
    from audioscope.sources.lists import RowError, resolve_location

    if not isinstance(raw, str):
        raise RowError("unsafe_path", f"{raw!r} is not a location")
    if media_root is None and "://" not in raw and not raw.startswith("/"):
        raise RowError("unsafe_path", f"{raw!r} is a relative path; give --media-root to say what it is relative to")
    value = resolve_location(raw, media_root or "/", media_root)
    if media_root is None:
        return value
    if not uris.is_local(media_root):
        root = media_root.rstrip("/") + "/"
        if not value.startswith(root):
            raise RowError("unsafe_path", f"{raw!r} is outside the media root {media_root}")
        return value
    if not uris.is_local(value):
        raise RowError("unsafe_path", f"{raw!r} is not a file under the media root {media_root}")
    root = os.path.realpath(uris.local_path(media_root))
    real = os.path.realpath(value)
    if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
        raise RowError("unsafe_path", f"{raw!r} is outside the media root {root}")
    return value


@dataclass(frozen=True, kw_only=True)
class SourcePolicy:
    """Which source videos render may open for the pools' rows.

    - ``media_root`` given: a source must lie inside it (:func:`confine_source`).
    - else ``recorded`` (video id -> the source the clip store records for
      the video, ``store`` its root): the video is opened there, whatever
      source the row names (the store's ingest confined it; the row's may be
      stale, the media moved since the pools were drawn, or tampered with);
      a video the store does not hold is refused.
    - else: the sources are taken as the pools name them (ingest-list rules).
    """

    media_root: str | None = None
    store: str | None = None
    recorded: Mapping[str, str] | None = field(default=None, repr=False)

    def check(self, raw: Any, video_id: str) -> str:
        from audioscope.sources.lists import RowError

        if self.media_root is not None or self.recorded is None:
            return confine_source(raw, self.media_root)
        want = self.recorded.get(video_id)
        if want is None:
            raise RowError("unsafe_path", f"the video {video_id} is not in the clip store {self.store} the pools came from")
        return confine_source(want, None)

    def describe(self) -> str:
        if self.media_root is not None:
            return f"sources confined to the media root {self.media_root}"
        if self.recorded is not None:
            return f"sources checked against those the clip store {self.store} recorded"
        return "no --media-root and no clip store recorded with the pools: sources are opened where the pools say"


def source_policy(annotations: str, media_root: str | None, video_ids: set[str]) -> SourcePolicy:
    """The :class:`SourcePolicy` for a run: ``media_root``, else the store recorded in pools.json (if it opens)."""
    from audioscope.clipstore.format import StoreError
    from audioscope.clipstore.reader import ClipStore

    if media_root is not None:
        return SourcePolicy(media_root=media_root)
    path = AnnotationLayout(annotations).pools_json
    try:
        store = json.loads(storage.read_text(path)).get("store") if storage.exists(path) else None
    except (ValueError, AttributeError):
        raise UserError(f"{path} is not valid JSON; draw the pools again with `audioscope annotate sample`") from None
    if not isinstance(store, str) or not store:
        return SourcePolicy()
    import pyarrow as pa

    from audioscope.schemas.tables import SchemaError

    try:
        cs = ClipStore.open(store)
        recorded = _recorded_sources(cs, set(video_ids))
    except (StoreError, OSError, ValueError, pa.ArrowException, SchemaError) as e:
        raise UserError(
            f"the pools of {annotations} were drawn from the clip store {store}, which cannot be read ({e}); "
            "give --media-root DIR (the folder the source videos lie under) to render without it"
        ) from None
    return SourcePolicy(store=store, recorded=recorded)


def _recorded_sources(cs: Any, video_ids: set[str]) -> dict[str, str]:
    """The recorded source of each of ``video_ids`` in the store, streamed (one batch in memory at a time).

    The status table has one row per video, and one per request whose id the
    store holds from another source (a ``conflict`` row, whose source is not the
    store's: skipped); a store written without it has the sources in its clip
    index (the first row of each video counts).
    """
    import itertools

    frames: Iterator[Any] = cs.iter_status()
    try:
        first = next(frames, None)
        columns, from_index = ["video_id", "source"], False
    except FileNotFoundError:  # a store written without its status table: the clip index has the sources too
        frames, first = cs.iter_index(columns=["video_id", "source_uri"]), None
        columns, from_index = ["video_id", "source_uri"], True
    recorded: dict[str, str] = {}
    for frame in itertools.chain([] if first is None else [first], frames):
        rows = frame[frame["video_id"].isin(video_ids)]
        if not from_index:
            rows = rows[rows["status"] != STATUS_CONFLICT]
        for vid, src in zip(rows[columns[0]].astype(str), rows[columns[1]].astype(str)):
            recorded.setdefault(vid, src)
    return recorded


def plan(pools: Any, layout: RenderLayout, policy: SourcePolicy = SourcePolicy()) -> tuple[Todo, int, list[dict[str, Any]]]:
    """The clips still to render, grouped by source video; how many are already there; rows refused.

    Failure records of an earlier run are removed: those clips are retried.
    Every row's ids are checked (:mod:`audioscope.ids`) and its source
    by the ``policy`` (:class:`SourcePolicy`). A row with an invalid clip id is
    returned among the refused rows (it cannot name a file); a row with a
    valid clip id but an invalid video id or an unsafe source gets its
    failure record now. Neither is ever used as a path.
    """
    from audioscope.ids import BadId
    from audioscope.sources.lists import RowError

    done = layout.rendered()
    for path in storage.list_files(layout.failed_dir, ".json"):
        storage.remove(path)
    todo: Todo = {}
    refused: list[dict[str, Any]] = []
    have = 0
    for row in pools.itertuples(index=False):
        clip_id = row.clip_id
        try:
            check_clip_id(clip_id, "pools.parquet")
        except BadId as e:
            refused.append({"clip_id": str(clip_id), "video_id": str(row.video_id), "kind": "invalid_id", "message": str(e)})
            continue
        if clip_id in done:
            have += 1
            continue
        try:
            video_id = check_video_id(row.video_id, "pools.parquet")
            source = policy.check(row.source_uri, video_id)
        except (BadId, RowError) as e:
            kind = "invalid_id" if isinstance(e, BadId) else e.kind
            record = {"clip_id": clip_id, "video_id": str(row.video_id), "kind": kind, "message": str(e)}
            storage.atomic_write(layout.failed(clip_id), json.dumps(record, sort_keys=True) + "\n")
            continue
        todo.setdefault((source, video_id), []).append((clip_id, float(row.start), float(row.end)))
    return todo, have, refused


def summarise(layout: RenderLayout, clip_ids: Sequence[str], seconds: float) -> dict[str, Any]:
    """``render.json``: rendered and failed clips of the pools, written atomically."""
    wanted = set(clip_ids)
    done = layout.rendered() & wanted
    failed = {k: v for k, v in layout.failures().items() if k in wanted}
    summary = {
        "clips": len(wanted),
        "rendered": len(done),
        "failed": len(failed),
        "missing": len(wanted - done - set(failed)),
        "failures": {k: f"{v['kind']}: {v['message']}" for k, v in failed.items()},
        "seconds": round(seconds, 2),
        "format": f"H.264 + AAC MP4, constant frame rate <= {MAX_FPS} fps, short side <= {MAX_SHORT_SIDE} px",
    }
    storage.atomic_write(layout.summary_json, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


# --------------------------------------------------------------------------- the library entry


@dataclass(frozen=True, kw_only=True)
class RenderConfig(RunnerConfig):
    """What :func:`render` does: an MP4 per clip of the pools in ``annotations`` into ``media``.

    ``media_root``: the folder (or gs://, s3://, https:// prefix) the source
    videos must lie under (:func:`confine_source`); None checks each source
    against the one the clip store named in ``pools.json`` recorded for the
    video, or, without one, takes the pools' absolute sources as they are
    (:class:`SourcePolicy`). ``beam_args`` and ``poll`` as in :class:`RunnerConfig`.
    """

    annotations: str
    media: str
    media_root: str | None = None


@dataclass(frozen=True, kw_only=True)
class RenderResult:
    """What a :func:`render` run left: the layout and the counts of ``render.json``."""

    layout: RenderLayout
    clips: int
    rendered: int
    failed: int
    failures: Mapping[str, str]
    summary: Mapping[str, Any] = field(repr=False)


def read_pool_rows(annotations: str) -> Any:
    """The pools table of an annotation folder; one clear line for a missing, non-Parquet or wrong-schema file."""
    import pyarrow as pa

    from audioscope.schemas.tables import SchemaError

    layout = AnnotationLayout(annotations)
    try:
        return layout.read_pools()
    except (pa.ArrowException, SchemaError, OSError) as e:
        path = layout.pools_parquet
        raise UserError(
            f"{path} is not a pools table written by `audioscope annotate sample` ({e}); draw the pools again "
            f"with `audioscope annotate sample --store STORE --df DF_DIR --annotations {q(annotations)}`"
        ) from None


def refuse_local_sources(todo: Todo, runner: str | None) -> None:
    """With ``runner``'s workers elsewhere (None: they see this disk), a source video that is a file
    here cannot be read by them: one :class:`UserError` naming the first, before any work is handed out."""
    if runner is None:
        return
    local = sorted(key for key in todo if storage.is_local(key[0]))
    if local:
        source, video_id = local[0]
        more = f" (and {len(local) - 1} more videos)" if len(local) > 1 else ""
        raise UserError(
            f"video {video_id}: its source {source} is a file on this machine{more}, but {runner} runs its "
            "workers elsewhere and they cannot read it; render on the local runner (without the runner flags), or "
            "render pools drawn from a clip store ingested from gs:// or s3:// videos"
        )


def render(config: RenderConfig, *, echo: Callable[[str], None] = to_stderr) -> RenderResult:
    """Render every clip of the pools not rendered yet; write ``render.json``.

    Resumes (clips with an MP4 are skipped, failed ones retried). Bad pool
    rows (invalid ids, sources outside the media root) are recorded as
    failures and the run goes on. Raises :class:`UserError` for bad inputs
    and :class:`~audioscope.pipelines.work.IncompleteRun` when clips were
    neither rendered nor recorded as failed (a runner lost work; a re-run
    completes it).
    """
    from audioscope.pipelines.runner import check_paths_for_runner, remote_runner, require_local_programs
    from audioscope.pipelines.work import require_complete
    from audioscope.sources.lists import _check_media_root

    beam_args = list(config.beam_args)
    paths = check_paths_for_runner(beam_args, {"--media": config.media, "--media-root": config.media_root})
    require_local_programs(beam_args, "ffmpeg")
    media, media_root = str(paths["--media"]), paths["--media-root"]
    if media_root is not None:
        media_root = _check_media_root(media_root)
    pools = read_pool_rows(config.annotations)
    policy = source_policy(config.annotations, media_root, set(pools["video_id"].astype(str)))
    layout = RenderLayout(media)
    todo, have, refused = plan(pools, layout, policy)
    refuse_local_sources(todo, remote_runner(beam_args))
    storage.makedirs(layout.clips_dir)
    if refused:
        storage.atomic_write(layout.invalid_ids, "".join(json.dumps(r, sort_keys=True) + "\n" for r in refused))
        echo(f"render: {len(refused)} pool rows have invalid clip ids and are not rendered (see {layout.invalid_ids})")
    else:
        storage.remove(layout.invalid_ids)
    echo(f"render: {policy.describe()}")
    n_todo = sum(len(c) for c in todo.values())
    echo(f"render: {len(pools)} clips, {have} already rendered, {n_todo} to render from {len(todo)} videos")
    t0 = time.time()
    if todo:
        work = write_work(layout, todo)
        items = sorted(todo.items())
        # what each work shard must produce: a rendered MP4 or a failure record per clip
        shard_of = {
            clip: work[i // VIDEOS_PER_WORK_SHARD].rsplit("/", 1)[-1]
            for i, (_, clips) in enumerate(items) for clip, _, _ in clips
        }  # fmt: skip
        expected: dict[str, int] = {}
        for shard in shard_of.values():
            expected[shard] = expected.get(shard, 0) + 1

        def accounted() -> set[str]:
            return (layout.rendered() | set(layout.failures())) & shard_of.keys()

        def poll() -> tuple[int, dict[str, int]]:
            failed = len(set(layout.failures()) & shard_of.keys())
            return len(accounted()), {"failed": failed}

        if config.poll is None:
            run_pipeline(media, work, beam_args)
        else:
            with Poller(Progress("render", total=n_todo, unit="clips"), poll, every=config.poll):
                run_pipeline(media, work, beam_args)
    summary = summarise(layout, list(pools["clip_id"]), time.time() - t0)
    if todo:
        produced: dict[str, int] = {}
        for clip in accounted():
            produced[shard_of[clip]] = produced.get(shard_of[clip], 0) + 1
        require_complete("render", "work shards", expected, produced, "Run the same command again to render the rest.")
    return RenderResult(
        layout=layout, clips=summary["clips"], rendered=summary["rendered"], failed=summary["failed"],
        failures=summary["failures"], summary=summary,
    )
