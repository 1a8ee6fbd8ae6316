"""Writer pieces of the clip store: one video in, one media shard and one status record out.

:func:`ingest_video` is the whole per-video unit of work of the ingest
pipeline (fetch, probe, decode once, slice, write media then status), in two
halves: :func:`decode_video` (waits on the network and ffmpeg, writes only a
failure's status) and :func:`store_video` (Python work: slice, encode, write).
The pipeline runs the first half of one video while the second half of the
one before runs. Neither raises for a bad item: every failure becomes a
status record with a ``kind`` and a message. It is plain Python so that it
is tested without Beam and runs the same inside any Beam worker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from audioscope import storage
from audioscope.errors import ends_the_run
from audioscope.media import DEFAULT_MAX_PIXELS
from audioscope.clipstore.format import (
    Layout,
    StoreParams,
    clip_id,
    encode_media,
    fit_spans,
    needed_seconds,
    sliding_windows,
)

logger = logging.getLogger(__name__)

if TYPE_CHECKING:  # pragma: no cover
    from audioscope.media import Decoded, ProbeInfo
    from audioscope.sources.fetch import FetchLimits
    from audioscope.sources.lists import BadRow, VideoRequest

STATUS_OK = "ok"
STATUS_PARTIAL = "partial"  # some requested spans did not fit the media
STATUS_FAILED = "failed"
STATUS_BAD_ROW = "bad_row"
#: A request whose video id the store already holds from another source
#: (``STORE/conflicts/``); the store's video is kept as it is.
STATUS_CONFLICT = "conflict"


@dataclass(frozen=True, kw_only=True)
class StatusRecord:
    """What became of one requested video (``STORE/status/<id[:2]>/<id>.json``).

    Written after the video's media shard, so its existence means the video is
    finished. ``clips`` are the (start, end) windows stored for it; the index
    is rebuilt from these records.
    """

    video_id: str
    source: str
    origin: str = ""
    status: str = STATUS_OK
    kind: str | None = None
    message: str | None = None
    transient: bool = False
    split: str | None = None
    licence_name: str | None = None
    licence_url: str | None = None
    duration: float | None = None
    usable_seconds: int = 0
    clips: tuple[tuple[float, float], ...] = ()
    media: str | None = None
    media_bytes: int = 0
    media_seconds: int = 0
    probe: dict[str, Any] = field(default_factory=dict)
    span_problems: tuple[dict[str, Any], ...] = ()
    decode_seconds: float = 0.0
    finished_at: str = ""
    #: The spans the lists asked for (all lists that named this video, so a
    #: store that grows keeps them all); None: every clip of the video.
    requested: tuple[tuple[float, float], ...] | None = None
    #: ``source`` below the media root it was listed under (:attr:`VideoRequest.relative`; "" when
    #: not below one, or written before this field): a list naming the same path below another
    #: root names this video, moved.
    source_relative: str = ""

    @property
    def n_clips(self) -> int:
        return len(self.clips)

    @property
    def clips_requested(self) -> int | None:
        """Clips the lists asked for: the named spans, or every window of the
        usable seconds when no list named spans (None while that is unknown)."""
        if self.requested is not None:
            return len(self.requested)
        if self.status in (STATUS_OK, STATUS_PARTIAL) or self.usable_seconds:
            return len(sliding_windows(self.usable_seconds))
        return None

    def missing_spans(self, spans: "tuple[tuple[float, float], ...] | None") -> list[tuple[float, float]]:
        """The spans of a new request that this finished record neither stored nor refused."""
        if spans is None:
            have = {(float(a), float(b)) for a, b in self.clips}
            return [(float(a), float(b)) for a, b in sliding_windows(self.usable_seconds) if (a, b) not in have]
        done = {(float(a), float(b)) for a, b in self.clips}
        done |= {(float(p["start"]), float(p["end"])) for p in self.span_problems}
        return [s for s in spans if (float(s[0]), float(s[1])) not in done]

    def is_done(self, retry_failed: bool = False) -> bool:
        """Whether a re-run should skip this video."""
        if self.status in (STATUS_OK, STATUS_PARTIAL):
            return True
        return not (self.transient or retry_failed)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["clips"] = [list(c) for c in self.clips]
        d["span_problems"] = list(self.span_problems)
        d["requested"] = None if self.requested is None else [list(c) for c in self.requested]
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "StatusRecord":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["clips"] = tuple((float(a), float(b)) for a, b in d.get("clips", ()))
        kw["span_problems"] = tuple(d.get("span_problems", ()))
        req = d.get("requested")
        kw["requested"] = None if req is None else tuple((float(a), float(b)) for a, b in req)
        return cls(**kw)

    def index_rows(self) -> list[dict[str, Any]]:
        """Rows of the clip index (``schemas.tables.CLIP_INDEX``)."""
        return [
            {
                "clip_id": clip_id(self.video_id, start),
                "video_id": self.video_id,
                "start": float(start),
                "end": float(end),
                "split": self.split,
                "licence_name": self.licence_name,
                "licence_url": self.licence_url,
                "source_uri": self.source,
                "video_duration": self.duration,
            }
            for start, end in self.clips
        ]

    def status_row(self) -> dict[str, Any]:
        """A row of the status table (``schemas.tables.STATUS``)."""
        return {
            "video_id": self.video_id,
            "source": self.source,
            "origin": self.origin,
            "status": self.status,
            "kind": self.kind,
            "message": self.message,
            "transient": self.transient,
            "n_clips": self.n_clips,
            "duration": self.duration,
            "media_bytes": self.media_bytes,
            "media_seconds": self.media_seconds,
            "format_name": self.probe.get("format_name"),
            "video_codec": self.probe.get("video_codec"),
            "audio_codec": self.probe.get("audio_codec"),
            "split": self.split,
            "clips_requested": self.clips_requested,
            "clips_produced": self.n_clips,
        }


def _unread_status(**fields: Any) -> dict[str, Any]:
    """A status-table row for a request no video was read for (no clips, no media); ``fields`` name it."""
    return {
        "transient": False,
        "n_clips": 0,
        "duration": None,
        "media_bytes": 0,
        "media_seconds": 0,
        "format_name": None,
        "video_codec": None,
        "audio_codec": None,
        "split": None,
        "clips_produced": 0,
        **fields,
    }


def conflict_status(video_id: str, source: str, origin: str, store_source: str) -> dict[str, Any]:
    """A status-table row for a request whose id the store has from another source."""
    return _unread_status(**{
        "video_id": video_id,
        "source": source,
        "origin": origin,
        "status": STATUS_CONFLICT,
        "kind": "id_conflict",
        "message": (
            f"the store already has video {video_id!r} from {store_source}; this list names {source} "
            "with the same id. The store's video is kept: give this video another id (a uris CSV with a "
            "video_id column), or ingest the list into another store"
        ),
        "clips_requested": 0,
    })


def write_conflict(layout: Layout, row: dict[str, Any]) -> None:
    storage.atomic_write(layout.conflict(row["video_id"], row["source"]), json.dumps(row, sort_keys=True) + "\n")


def bad_row_status(row: "BadRow") -> dict[str, Any]:
    """A status-table row for a list row that could not be read."""
    return _unread_status(
        video_id=None, source=row.raw, origin=row.origin, status=STATUS_BAD_ROW, kind=row.kind,
        message=row.message, clips_requested=None,
    )


def read_status(layout: Layout, video_id: str) -> StatusRecord | None:
    path = layout.status(video_id)
    if not storage.exists(path):
        return None
    return StatusRecord.from_json(json.loads(storage.read_text(path)))


def write_status(layout: Layout, record: StatusRecord) -> None:
    storage.atomic_write(
        layout.status(record.video_id), json.dumps(record.to_json(), sort_keys=True, indent=1) + "\n"
    )


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True, kw_only=True)
class IngestSettings:
    """Per-video processing settings shipped to workers (small and picklable)."""

    store: str
    params: StoreParams
    limits: "FetchLimits | None" = None
    decode_timeout_s: float = 600.0
    #: ffmpeg decoder/filter threads per video (0: ffmpeg decides); 1 when
    #: as many videos as cores are decoded at once, as on Dataflow.
    ffmpeg_threads: int = 1
    max_duration_s: float | None = None
    #: pictures over this many pixels are refused before any is decoded
    max_pixels: int = DEFAULT_MAX_PIXELS
    retry_failed: bool = False


@dataclass(frozen=True)
class DecodedVideo:
    """The first half of a video's work: fetched, probed and decoded, nothing written yet."""

    request: "VideoRequest"
    base: StatusRecord
    info: "ProbeInfo"
    #: None when the probe shows the video is too short for one clip (it was not decoded)
    decoded: "Decoded | None"
    t0: float


def ingest_video(
    request: "VideoRequest", settings: IngestSettings, workdir: str
) -> tuple[StatusRecord, bool]:
    """Process one video unless already finished.

    Returns ``(record, skipped)``: ``skipped`` is true when a finished record
    was found and nothing was redone. Never raises for a bad item. It is
    :func:`decode_video` then :func:`store_video`; the ingest pipeline runs
    the two halves of consecutive videos at the same time.
    """
    return finish_video(decode_video(request, settings, workdir), settings)


def finish_video(
    first: "DecodedVideo | tuple[StatusRecord, bool]", settings: IngestSettings
) -> tuple[StatusRecord, bool]:
    """``(record, skipped)`` from what :func:`decode_video` returned: a decoded
    video is stored (:func:`store_video`), a finished or failed one is as it is."""
    if isinstance(first, DecodedVideo):
        return store_video(first, settings), False
    return first


def decode_video(
    request: "VideoRequest", settings: IngestSettings, workdir: str, decode_slot: Any = None
) -> DecodedVideo | tuple[StatusRecord, bool]:
    """The first half: skip a finished video, else fetch, probe and decode it.

    Returns the decoded video, or ``(record, skipped)`` when the video is
    finished already (``skipped``) or failed here (its status is written).
    Waits mostly on the network and on ffmpeg; writes no media.
    ``decode_slot``, if given, is a context manager (a semaphore shared by
    processes) held while ffmpeg runs, not while the video downloads.
    """
    from audioscope.media import MediaError, check_decodable, decode, probe, usable_seconds_at_most
    from audioscope.sources.fetch import FetchError, FetchLimits, fetch

    layout = Layout(settings.store)
    params = settings.params
    existing = read_status(layout, request.video_id)
    if existing is not None and not request.names(existing.source, existing.source_relative):
        # The same id from another source: the store's video stays, the
        # request is recorded as a conflict (never silently skipped). The same
        # path below another media root is the same video, moved: not a conflict.
        write_conflict(layout, conflict_status(request.video_id, request.uri, request.origin, existing.source))
        return existing, True
    if existing is not None and existing.source != request.uri:
        # The media moved: the store's video now lives where this list says (render opens it there).
        storage.remove(layout.conflict(request.video_id, request.uri))  # recorded by a run before moves were known
        existing = dataclasses.replace(existing, source=request.uri)
        write_status(layout, existing)
    if existing is not None and existing.is_done(settings.retry_failed):
        if existing.status not in (STATUS_OK, STATUS_PARTIAL):
            return existing, True
        missing = existing.missing_spans(request.spans)
        if not missing:
            return existing, True
        # A later list asks for spans the store does not have yet. Those that
        # cannot fit the known length are recorded without any download; the
        # others make the video be decoded again with all its spans.
        fit, impossible = fit_spans(tuple(missing), existing.usable_seconds, params.clip_seconds)
        requested = _union(existing.requested, request.spans)
        if not fit:
            problems = existing.span_problems + tuple(dataclasses.asdict(p) for p in impossible)
            record = dataclasses.replace(
                existing, requested=requested, span_problems=problems, status=STATUS_PARTIAL,
                kind=problems[0]["kind"], message=_skipped_message(problems),
            )
            return _finish(layout, record, time.monotonic()), False
        request = dataclasses.replace(request, spans=requested)

    base = StatusRecord(
        video_id=request.video_id,
        source=request.uri,
        origin=request.origin,
        split=request.split,
        licence_name=request.licence_name,
        licence_url=request.licence_url,
        requested=request.spans,
        source_relative=request.relative,
    )
    t0 = time.monotonic()
    local = None
    info = None
    try:
        local = fetch(request.uri, workdir, settings.limits or FetchLimits())
        info = probe(local.path, max_pixels=settings.max_pixels)
        check_decodable(info, max_duration_s=settings.max_duration_s, max_pixels=settings.max_pixels)
        at_most = usable_seconds_at_most(info)
        if at_most is not None and at_most < params.clip_seconds:
            # Too short for one clip whatever its streams hold: no ffmpeg run.
            return DecodedVideo(request=request, base=base, info=info, decoded=None, t0=t0)
        with decode_slot if decode_slot is not None else contextlib.nullcontext():
            decoded = decode(
                local.path,
                sample_rate=params.sample_rate,
                frame_size=params.frame_size,
                aspect=params.aspect,
                timeout_s=settings.decode_timeout_s,
                threads=settings.ffmpeg_threads,
                max_duration_s=settings.max_duration_s,
                max_pixels=settings.max_pixels,
                info=info,
            )
    except FetchError as e:
        record = dataclasses.replace(
            base, status=STATUS_FAILED, kind=e.kind, message=e.message, transient=bool(e.transient)
        )
        return _finish(layout, record, t0), False
    except MediaError as e:
        record = dataclasses.replace(
            base, status=STATUS_FAILED, kind=e.kind, message=e.message,
            probe=info.to_json() if info is not None else {},
        )
        return _finish(layout, record, t0), False
    except Exception as e:  # noqa: BLE001 - recorded with its message, retried next run
        if ends_the_run(e):  # a full disk fails every video after it: the run stops, nothing recorded
            raise
        # An unexpected error on one item (a bug, a storage hiccup) must not
        # kill the bundle; it is logged with its traceback and recorded as
        # transient so that the next run tries the video again.
        logger.exception("unexpected error on %s", request.video_id)
        record = dataclasses.replace(
            base, status=STATUS_FAILED, kind="internal_error",
            message=f"{type(e).__name__}: {e}", transient=True,
        )
        return _finish(layout, record, t0), False
    finally:
        if local is not None and local.is_temp and os.path.exists(local.path):
            os.remove(local.path)

    return DecodedVideo(request=request, base=base, info=info, decoded=decoded, t0=t0)


def store_video(video: DecodedVideo, settings: IngestSettings) -> StatusRecord:
    """The second half: slice the decoded video into clips, write its media shard, then its status."""
    from audioscope.media import usable_seconds_at_most

    layout = Layout(settings.store)
    params = settings.params
    request, info, decoded, t0 = video.request, video.info, video.decoded, video.t0
    if decoded is None:
        usable = usable_seconds_at_most(info) or 0
        duration = info.duration
        have = f"the video lasts {info.duration:.2f} s, so at most {usable} s have both audio and frames (not decoded)"
    else:
        usable = decoded.usable_seconds
        duration = info.duration if info.duration else decoded.duration_s
        have = f"only {usable} s have both audio and frames"
    base = dataclasses.replace(video.base, duration=duration, usable_seconds=usable, probe=info.to_json())
    if request.spans is None:
        windows = sliding_windows(usable, params.clip_seconds, params.hop_seconds)
        problems: list[dict[str, Any]] = []
    else:
        windows, bad = fit_spans(tuple(request.spans), usable, params.clip_seconds)
        problems = [dataclasses.asdict(p) for p in bad]
    if not windows and problems:
        record = dataclasses.replace(
            base,
            status=STATUS_FAILED,
            kind=problems[0]["kind"],
            message=f"none of the {len(problems)} requested spans fit: {problems[0]['message']}",
            span_problems=tuple(problems),
        )
        return _finish(layout, record, t0)
    if not windows:
        # Shorter than one clip (decoded, or known from the probe): a finished video with no clips.
        record = dataclasses.replace(
            base,
            message=f"{have}; a clip needs {params.clip_seconds} s",
        )
        return _finish(layout, record, t0)
    assert decoded is not None  # a video that was not decoded cannot give a clip

    sr = params.sample_rate
    if request.spans is None:
        seconds = None
        keep = usable
        audio, frames = decoded.audio[: keep * sr], decoded.frames[:keep]
    else:
        # Only the seconds the listed clips need (each second once).
        seconds = needed_seconds(windows)
        keep = len(seconds)
        audio = decoded.audio[: usable * sr].reshape(usable, sr)[seconds].reshape(-1)
        frames = decoded.frames[seconds]
    shard = encode_media(audio, frames, params, video_id=request.video_id, seconds=seconds)
    storage.atomic_write(layout.media(request.video_id), shard)
    status, kind, message = STATUS_OK, None, None
    if problems:
        status, kind = STATUS_PARTIAL, problems[0]["kind"]
        message = _skipped_message(problems)
    record = dataclasses.replace(
        base,
        status=status,
        kind=kind,
        message=message,
        clips=tuple((float(a), float(b)) for a, b in windows),
        media=layout.media_rel(request.video_id),
        media_bytes=len(shard),
        media_seconds=keep,
        span_problems=tuple(problems),
    )
    return _finish(layout, record, t0)


def _union(
    a: "tuple[tuple[float, float], ...] | None", b: "tuple[tuple[float, float], ...] | None"
) -> "tuple[tuple[float, float], ...] | None":
    """Spans asked by two lists together; None (every clip) wins."""
    if a is None or b is None:
        return None
    return tuple(sorted(set(a) | set(b)))


def _skipped_message(problems: "tuple[dict[str, Any], ...] | list[dict[str, Any]]") -> str:
    return f"{len(problems)} requested span(s) skipped: " + "; ".join(p["message"] for p in problems)


def _finish(layout: Layout, record: StatusRecord, t0: float) -> StatusRecord:
    record = dataclasses.replace(
        record, decode_seconds=round(time.monotonic() - t0, 3), finished_at=_now()
    )
    write_status(layout, record)
    return record
