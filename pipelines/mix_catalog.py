"""The clips a mix plan may use: the store's index, its media, the licences, labels and Df scores.

:class:`Catalog` hands out :class:`ClipRef` (where a clip is, its licence,
label and score) for usable clips and counts the others by reason; the
input tables are read with :func:`read_parquet` (checked against their
schema).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

import pandas as pd

from audioscope import storage
from audioscope.pipelines.mix_pairs import published_path


@dataclass(frozen=True)
class ClipRef:
    """A clip of the store as the plan uses it: where it is, its licence, label and score."""

    clip_id: str
    video_id: str
    start: float
    end: float
    path: str = ""
    licence_name: str | None = None
    licence_url: str | None = None
    label: str | None = None
    votes_onscreen: tuple[int, ...] = ()
    votes_offscreen: tuple[int, ...] = ()
    score: float | None = None

    def to_json(self, with_path: bool = False) -> dict[str, Any]:
        """The clip for a work line: without ``path`` (where its video is now names no part of a
        shard, and a plan stays the same when the media move), unless ``with_path``."""
        d = asdict(self)
        d["votes_onscreen"], d["votes_offscreen"] = list(self.votes_onscreen), list(self.votes_offscreen)
        if not with_path:
            del d["path"]
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "ClipRef":
        return cls(**{**d, "votes_onscreen": tuple(d["votes_onscreen"]), "votes_offscreen": tuple(d["votes_offscreen"])})


def licence_excluded(name: str | None, url: str | None, patterns: Sequence[str]) -> bool:
    """True when a case-insensitive pattern is in the licence name or URL."""
    text = f"{name or ''}\n{url or ''}".casefold()
    return any(p.casefold() in text for p in patterns if p)


class Catalog:
    """The store's clips that the plan may use: in the index, with media, licence not excluded.

    Everything else is counted in :attr:`left_out` (by use, then reason).
    Labels and Df scores are attached to the clips it hands out. With
    ``keep``, only those clips' index rows are held (not the whole store's).
    """

    def __init__(
        self, index: pd.DataFrame, media_videos: set[str], exclude_licences: Sequence[str] = (),
        labels: pd.DataFrame | None = None, scores: Mapping[str, float] | None = None,
        keep: Iterable[str] | None = None, video_by_path: Mapping[str, str] | None = None,
    ) -> None:
        cols = CATALOG_COLUMNS
        if keep is not None:  # only the clips the plan can name (pair lists can name any: keep None)
            index = index[index["clip_id"].isin(set(keep))]
        self.index = index[cols].drop_duplicates("clip_id").set_index("clip_id")
        self.media = set(media_videos)
        self.exclude = tuple(exclude_licences)
        self.scores = dict(scores or {})
        self.labels = {} if labels is None else {
            str(r.clip_id): (r.label, tuple(int(v) for v in r.onscreen_votes), tuple(int(v) for v in r.offscreen_votes))
            for r in labels.itertuples(index=False)
        }  # fmt: skip
        self.left_out: dict[str, dict[str, int]] = {}
        self._video_by_path: dict[str, str] | None = None if video_by_path is None else dict(video_by_path)

    def _leave_out(self, use: str, reason: str) -> None:
        counts = self.left_out.setdefault(use, {})
        counts[reason] = counts.get(reason, 0) + 1

    def _rows(self, clip_ids: Sequence[str]) -> Iterator[Any]:
        """Index rows of the clips (``Index`` = clip id; ``video_id`` NaN when not in the store)."""
        return self.index.reindex(pd.Index(list(clip_ids), dtype=object)).itertuples()

    def _reason(self, row: Any) -> str | None:
        """Why a clip cannot be used (None when it can)."""
        if not isinstance(row.video_id, str):
            return "not_in_store"
        if row.video_id not in self.media:
            return "no_media"
        if self.exclude and licence_excluded(_text(row.licence_name), _text(row.licence_url), self.exclude):
            return "excluded_licence"
        return None

    def _ref(self, row: Any) -> ClipRef:
        clip_id = str(row.Index)
        label, on, off = self.labels.get(clip_id, (None, (), ()))
        return ClipRef(
            clip_id=clip_id, video_id=row.video_id, start=float(row.start), end=float(row.end),
            path=str(row.source_uri), licence_name=_text(row.licence_name), licence_url=_text(row.licence_url),
            label=_text(label), votes_onscreen=on, votes_offscreen=off, score=self.scores.get(clip_id),
        )  # fmt: skip

    def refs(self, clip_ids: Iterable[str], use: str) -> list[ClipRef]:
        """Usable clips among ``clip_ids``, sorted by clip id; the others counted under ``use``."""
        out = []
        for row in self._rows(sorted({str(c) for c in clip_ids})):
            reason = self._reason(row)
            if reason:
                self._leave_out(use, reason)
            else:
                out.append(self._ref(row))
        return out

    def find(self, path: str, start: float) -> ClipRef | str:
        """The clip a pair list names (video path, start), or why it cannot be used."""
        from audioscope.clipstore.format import clip_id
        from audioscope.sources.lists import video_id_for

        if self._video_by_path is None:
            self._video_by_path = video_paths([self.index.drop_duplicates("video_id")])
        row = next(self._rows([named_clip(self._video_by_path, path, start)]))
        return self._reason(row) or self._ref(row)


#: The index columns a catalog holds.
CATALOG_COLUMNS = ["clip_id", "video_id", "start", "end", "source_uri", "licence_name", "licence_url"]


def video_paths(frames: Iterable[pd.DataFrame]) -> dict[str, str]:
    """Video path (as the store has it, and as published) -> video id, from index frames
    (``video_id``, ``source_uri``): one entry per video, not per clip."""
    out: dict[str, str] = {}
    for frame in frames:
        videos = frame.drop_duplicates("video_id")
        for vid, uri in zip(videos["video_id"], videos["source_uri"]):
            out.setdefault(published_path(str(uri)), str(vid))
            out[str(uri)] = str(vid)
    return out


def named_clip(video_by_path: Mapping[str, str], path: str, start: float) -> str:
    """The clip id a pair list's (video path, start) names."""
    from audioscope.clipstore.format import clip_id
    from audioscope.sources.lists import video_id_for

    video = video_by_path.get(path) or video_by_path.get(published_path(path)) or video_id_for(path)
    return clip_id(video, start)


def store_catalog(
    store: Any, media: set[str], keep: set[str], pair_lists: Sequence[Any] | None = None, **kw: Any
) -> "Catalog":
    """A :class:`Catalog` holding only the index rows of ``keep`` and of the clips the pair lists
    name, the store's index streamed (``ClipStore.iter_index``: one batch in memory at a time, plus
    one path per video when there are pair lists), never gathered whole."""
    video_by_path = None
    wanted = set(keep)
    if pair_lists:
        video_by_path = video_paths(store.iter_index(columns=["video_id", "source_uri"]))
        for pl in pair_lists:
            for row in pl.rows:
                wanted.add(named_clip(video_by_path, row[0], row[1]))
                if row[3] is not None and row[4] is not None:
                    wanted.add(named_clip(video_by_path, row[3], row[4]))
    parts = [f[f["clip_id"].isin(wanted)] for f in store.iter_index(columns=CATALOG_COLUMNS)]
    index = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=CATALOG_COLUMNS)
    index = index.sort_values(["video_id", "start"], kind="stable")  # as ClipStore.index orders its rows
    return Catalog(index, media, keep=None, video_by_path=video_by_path, **kw)


def _text(value: object) -> str | None:
    """A text field of a table row (None for null / NaN)."""
    return None if value is None or pd.isna(value) else str(value)


def read_parquet(path: str, schema: Any) -> pd.DataFrame:
    """A Parquet file checked against its table schema (``SchemaError`` says what is wrong)."""
    import pyarrow.parquet as pq

    from audioscope.schemas.tables import validate

    with storage.open_file(path) as fh:
        return validate(pq.read_table(fh), schema).to_pandas()


def media_videos(store_root: str) -> set[str]:
    """Videos of a clip store that have a media shard (one listing of ``media/``)."""
    from audioscope.clipstore.format import Layout

    return {p.rsplit("/", 1)[-1][: -len(".npz")] for p in storage.list_files(Layout(store_root).path("media"), ".npz")}
