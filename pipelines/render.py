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

MEDIA_DIR is a local folder (served by Label Studio's local-files storage)
or ``gs://`` (served through a GCS import storage with presigned URLs).
Everything shipped to workers is a path or a number.
"""

from __future__ import annotations

import json
import logging
import math
import os
from fractions import Fraction
import tempfile
from typing import Any, Iterator, Mapping, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from audioscope import storage
from audioscope.media import SAFE_INPUT_ARGS, MediaError, ProbeInfo, probe, run_tool, stderr_tail
from audioscope.pipelines.work import ReadWork

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


class RenderLayout:
    """Where each part of a media folder lives (local path or URI)."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/") if "://" in root else root

    def path(self, *parts: str) -> str:
        return storage.join(self.root, *parts)

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

    def clip(self, clip_id: str) -> str:
        return self.path("clips", f"{clip_id}.mp4")

    def failed(self, clip_id: str) -> str:
        return self.path("failed", f"{clip_id}.json")

    def work_shard(self, i: int, n: int) -> str:
        return self.path("work", f"work-{i:05d}-of-{n:05d}.jsonl")


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
                logger.warning("cannot read %s: %s", work["source_uri"], e)
                self.counters["videos_failed"].inc()
                for clip_id, _, _ in clips:
                    self._fail(clip_id, work["video_id"], e.kind, e.message)
                return
            self.counters["videos_read"].inc()
            done = 0
            for clip_id, start, end in clips:
                try:
                    data = render_clip(media.path, info, float(start), float(end))
                except MediaError as e:
                    self._fail(clip_id, work["video_id"], e.kind, e.message)
                    continue
                storage.atomic_write(self.layout.clip(clip_id), data, content_type="video/mp4")
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
    p = beam.Pipeline(options=PipelineOptions(list(beam_args)))
    _ = p | "Render" >> RenderPipeline(media_dir, work_files)
    result = p.run()
    result.wait_until_finish()
    return result


# --------------------------------------------------------------------------- the launcher's part


def rendered(layout: RenderLayout) -> set[str]:
    return {clip_id_of(p, ".mp4") for p in storage.list_files(layout.clips_dir, ".mp4")}


def failures(layout: RenderLayout) -> dict[str, dict[str, Any]]:
    out = {}
    for path in storage.list_files(layout.failed_dir, ".json"):
        record = json.loads(storage.read_text(path))
        out[str(record["clip_id"])] = record
    return dict(sorted(out.items()))


def write_work(layout: RenderLayout, todo: Mapping[tuple[str, str], list[tuple[str, float, float]]]) -> list[str]:
    """Work shards, one line per (source_uri, video_id); stale shards of an earlier run go."""
    items = sorted(todo.items())
    n = math.ceil(len(items) / VIDEOS_PER_WORK_SHARD)
    paths = []
    for i in range(n):
        chunk = items[i * VIDEOS_PER_WORK_SHARD : (i + 1) * VIDEOS_PER_WORK_SHARD]
        path = layout.work_shard(i, n)
        storage.atomic_write(path, "".join(work_line(uri, vid, clips) + "\n" for (uri, vid), clips in chunk))
        paths.append(path)
    for path in storage.glob(storage.join(layout.work_dir, "work-*.jsonl")):
        if path not in paths:
            storage.remove(path)
    return paths


def plan(pools: Any, layout: RenderLayout) -> tuple[dict[tuple[str, str], list[tuple[str, float, float]]], int]:
    """The clips still to render, grouped by source video, and how many are already there.

    Failure records of an earlier run are removed: those clips are retried.
    """
    done = rendered(layout)
    for path in storage.list_files(layout.failed_dir, ".json"):
        storage.remove(path)
    todo: dict[tuple[str, str], list[tuple[str, float, float]]] = {}
    have = 0
    for row in pools.itertuples(index=False):
        if row.clip_id in done:
            have += 1
            continue
        todo.setdefault((str(row.source_uri), str(row.video_id)), []).append(
            (str(row.clip_id), float(row.start), float(row.end))
        )
    return todo, have


def summarise(layout: RenderLayout, clip_ids: Sequence[str], seconds: float) -> dict[str, Any]:
    """``render.json``: rendered and failed clips of the pools, written atomically."""
    wanted = set(clip_ids)
    done = rendered(layout) & wanted
    failed = {k: v for k, v in failures(layout).items() if k in wanted}
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
