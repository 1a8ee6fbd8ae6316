"""The clip store's ``summary.json``: built from status rows, shown by ingest and ``clips stats``.

Standard library only (the ``clips`` command imports it without numpy).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Iterable, Mapping, Sequence

STATUS_OK = "ok"
STATUS_PARTIAL = "partial"
STATUS_FAILED = "failed"
STATUS_BAD_ROW = "bad_row"
STATUS_CONFLICT = "conflict"


class SummaryCounts:
    """Running totals over status rows (so the rows never need to be held together)."""

    def __init__(self) -> None:
        self.videos = self.ok = self.partial = self.failed = self.bad_rows = self.conflicts = 0
        self.clips = self.clips_requested = self.media_bytes = self.media_seconds = 0
        self.seconds_of_video = 0.0
        self.by_kind: dict[str, int] = {}
        self.not_produced: dict[str, int] = {}

    def add(self, r: Mapping[str, Any]) -> None:
        status = r["status"]
        if status in (STATUS_FAILED, STATUS_BAD_ROW, STATUS_CONFLICT):
            self.by_kind[str(r["kind"])] = self.by_kind.get(str(r["kind"]), 0) + 1
        if status == STATUS_BAD_ROW:
            self.bad_rows += 1
            return
        if status == STATUS_CONFLICT:
            self.conflicts += 1
            return
        self.videos += 1
        requested = r.get("clips_requested")
        produced = int(r.get("clips_produced", r.get("n_clips", 0)) or 0)
        if status in (STATUS_OK, STATUS_PARTIAL):
            self.ok += status == STATUS_OK
            self.partial += status == STATUS_PARTIAL
            self.clips += int(r["n_clips"])
            self.media_bytes += int(r["media_bytes"])
            self.media_seconds += int(r["media_seconds"])
            self.seconds_of_video += float(r["duration"] or 0.0)
        else:
            self.failed += 1
        if requested is not None:
            self.clips_requested += int(requested)
            short = int(requested) - produced
            if short > 0:
                reason = str(r["kind"] or "unknown")
                self.not_produced[reason] = self.not_produced.get(reason, 0) + short

    def merge(self, other: "SummaryCounts") -> "SummaryCounts":
        for name in ("videos", "ok", "partial", "failed", "bad_rows", "conflicts", "clips", "clips_requested",
                     "media_bytes", "media_seconds", "seconds_of_video"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in ((self.by_kind, other.by_kind), (self.not_produced, other.not_produced)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v
        return self


def build_summary(
    status_rows: Iterable[Mapping[str, Any]] | SummaryCounts, index_files: Sequence[str], params_json: dict[str, Any],
    wall_seconds: float | None, started_at: float | None = None,
) -> dict[str, Any]:
    """The store's ``summary.json`` from its status rows (or their running totals).

    ``started_at`` (seconds since the epoch): when the run that wrote it started, kept as
    :func:`run_stamp` gives it, by which the launcher knows the index was rebuilt by its own run.
    """
    from audioscope.clipstore.format import FORMAT_VERSION, StoreParams, naive_bytes_per_clip

    if isinstance(status_rows, SummaryCounts):
        c = status_rows
    else:
        c = SummaryCounts()
        for r in status_rows:
            c.add(r)
    params = StoreParams.from_json(params_json)
    clip_seconds = c.clips * params.clip_seconds
    naive_per_clip_second = naive_bytes_per_clip(params) / params.clip_seconds
    per_clip_second = c.media_bytes / clip_seconds if clip_seconds else None
    per_media_second = c.media_bytes / c.media_seconds if c.media_seconds else None
    return {
        "format_version": FORMAT_VERSION,
        "params": params.to_json(),
        "videos": c.videos,
        "videos_ok": c.ok,
        "videos_partial": c.partial,
        "videos_failed": c.failed,
        "bad_rows": c.bad_rows,
        "conflicts": c.conflicts,
        "failures_by_kind": dict(sorted(c.by_kind.items())),
        "clips": c.clips,
        "clips_requested": c.clips_requested,
        "clips_not_produced": sum(c.not_produced.values()),
        "clips_not_produced_by_reason": dict(sorted(c.not_produced.items())),
        "hours": round(c.seconds_of_video / 3600.0, 4),
        "media_bytes": c.media_bytes,
        "bytes_per_clip_second": round(per_clip_second, 1) if per_clip_second else None,
        "naive_bytes_per_clip_second": naive_per_clip_second,
        # naive bytes / store bytes for these clips (short videos lower it:
        # their last seconds are shared by fewer clips)
        "compression_vs_naive": (
            round(naive_per_clip_second / per_clip_second, 2) if per_clip_second else None
        ),
        "media_seconds": c.media_seconds,
        "bytes_per_media_second": round(per_media_second, 1) if per_media_second else None,
        # the same ratio for long videos (one clip per stored second)
        "compression_vs_naive_long_videos": (
            round(naive_bytes_per_clip(params) / per_media_second, 2) if per_media_second else None
        ),
        "index_files": sorted(index_files),
        "wall_seconds": None if wall_seconds is None else round(wall_seconds, 1),
        "started_at": None if started_at is None else run_stamp(started_at),
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def run_stamp(started_at: float) -> str:
    """A run's start (seconds since the epoch) as ``summary.json`` keeps it: UTC, to the microsecond."""
    return _dt.datetime.fromtimestamp(started_at, _dt.timezone.utc).isoformat(timespec="microseconds")


def this_runs_summary(path: str, started_at: float) -> dict[str, Any] | None:
    """The summary JSON at ``path`` if the run that started at ``started_at`` wrote it (its ``started_at``
    is :func:`run_stamp` of that time); otherwise None, and an earlier run's summary there is removed:
    this run rewrote part of what it described (a store's index, a scores table). For the launchers of
    steps whose last pipeline stage writes the summary (ingest, score): a runner that lost that stage
    must not leave an earlier run's summary standing.
    """
    import json

    from audioscope import storage

    summary = json.loads(storage.read_text(path)) if storage.exists(path) else None
    if summary is not None and summary.get("started_at") == run_stamp(started_at):
        return summary
    if summary is not None:
        storage.remove(path)
    return None


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def summary_rows(summary: Mapping[str, Any]) -> dict[str, object]:
    """The lines of the end-of-step summary (ingest's and `audioscope clips stats`)."""
    failures = summary.get("failures_by_kind") or {}
    ratio = summary.get("compression_vs_naive")
    rows: dict[str, object] = {
        "videos": summary["videos"],
        "videos ok": summary["videos_ok"] + summary.get("videos_partial", 0),
        "videos failed": summary["videos_failed"],
        "bad list rows": summary["bad_rows"],
        "failures by kind": ", ".join(f"{k}={v}" for k, v in failures.items()) or "none",
        "clips": summary["clips"],
    }
    if "clips_requested" in summary:
        if summary.get("conflicts"):
            rows["id conflicts"] = summary["conflicts"]
        rows["clips requested"] = summary["clips_requested"]
        reasons = summary.get("clips_not_produced_by_reason") or {}
        rows["clips not produced"] = (
            f"{summary['clips_not_produced']} ("
            + ", ".join(f"{k}={v}" for k, v in reasons.items())
            + ")" if reasons else "0"
        )
    rows.update({
        "hours of video": f"{summary['hours']:.2f}",
        "media bytes": fmt_bytes(summary["media_bytes"]),
        "bytes per clip-second": (
            f"{summary['bytes_per_clip_second']:.0f} (naive {summary['naive_bytes_per_clip_second']:.0f}, "
            f"{ratio:.1f}x smaller)" if ratio else "n/a"
        ),
    })
    if summary.get("bytes_per_media_second"):
        rows["bytes per stored second"] = (
            f"{summary['bytes_per_media_second']:.0f} "
            f"({summary['compression_vs_naive_long_videos']:.1f}x smaller than naive for long videos)"
        )
    if summary.get("wall_seconds") is not None:
        rows["wall time"] = f"{summary['wall_seconds']:.1f} s"
    return rows
