"""The filtered subset Df: select clips by coincidence score, split, export, report.

Inputs are a clip store's index (:class:`audioscope.clipstore.reader.ClipStore`)
and a scores folder written by ``audioscope score`` (read through
:class:`audioscope.pipelines.score.ScoresLayout`: clip_id, video_id, start,
end, probability, model_id, and the run's ``scores.json``). The selection
rules (docs/recipe.md, "filtering"):

* **threshold** (default, 0.8 as published): clips with probability >= t;
* **top-K videos**: rank videos by the mean probability of their best
  min(N, n) clips (N = the per-video cap, all clips without a cap; n = the
  video's scored clips), keep the K best (ties: smaller video_id first) and
  their best clips up to the cap; no threshold.
* the optional cap ``max_clips_per_video`` N keeps a video's N
  highest-probability selected clips (ties: earlier start first).

Splits are per video (:mod:`audioscope.curation.splits`); a published split
in the store's index wins. The outputs and their layout are
:class:`audioscope.schemas.df.DfLayout`'s (all written atomically; the same
inputs give byte-identical files). Ground truth of a synthetic corpus comes
from :mod:`audioscope.synth.truth`.

The library entry is :func:`filter` (a :class:`FilterConfig` in, a
:class:`FilterResult` out); the pure pieces (:func:`select_clips`,
:func:`build_df`, :func:`truth_metrics`) take DataFrames so they can be tested
and reused without files. :func:`filter` never gathers the store's index
into one frame: it streams the index shards and reads the scores in
batches into a few compact columns (~150 B per clip), and only the clips
the selection may keep (about Df's size) become a DataFrame.
"""

from __future__ import annotations

import csv
import io
import json
import math
import textwrap
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from audioscope import storage
from audioscope.errors import UserError
from audioscope.folders import another_steps_folder
from audioscope.schemas.df import DF_PARQUET, HISTOGRAM_PNG, REPORT_MD, DfLayout
from audioscope.curation.splits import CSV_NAMES, DEFAULT_RATIOS, SPLITS, assign_splits, normalise_split
from audioscope.metrics import precision_recall, roc_auc
from audioscope.shell import q
from audioscope.synth.truth import TruthSource, clip_labels, detect_truth, load_truth

#: The published threshold (docs/recipe.md).
DEFAULT_THRESHOLD = 0.8
#: Thresholds of the precision/recall table in the report.
TABLE_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
#: Histogram bins over [0, 1].
HIST_BINS = 20

SCORE_COLUMNS: tuple[str, ...] = ("clip_id", "video_id", "start", "end", "probability", "model_id")


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Selection:
    """How clips are chosen: a threshold, or the top K videos; optional per-video cap."""

    threshold: float | None = DEFAULT_THRESHOLD
    top_k_videos: int | None = None
    max_clips_per_video: int | None = None

    def __post_init__(self) -> None:
        if (self.threshold is None) == (self.top_k_videos is None):
            raise ValueError("give exactly one of a threshold and a number of top videos")
        if self.threshold is not None and not (0.0 <= self.threshold <= 1.0):
            raise ValueError(f"the threshold must be in [0, 1], got {self.threshold:g}")
        if self.top_k_videos is not None and self.top_k_videos < 1:
            raise ValueError(f"the number of top videos must be >= 1, got {self.top_k_videos}")
        if self.max_clips_per_video is not None and self.max_clips_per_video < 1:
            raise ValueError(f"the clip cap per video must be >= 1, got {self.max_clips_per_video}")

    @property
    def rule(self) -> str:
        return "threshold" if self.threshold is not None else "top_k_videos"

    def describe(self) -> str:
        if self.threshold is not None:
            text = f"probability >= {self.threshold:g}"
        else:
            n = "all" if self.max_clips_per_video is None else f"best {self.max_clips_per_video}"
            text = f"top {self.top_k_videos} videos by mean probability of their {n} clips"
        if self.max_clips_per_video is not None:
            text += f", at most {self.max_clips_per_video} clips per video"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "threshold": self.threshold,
            "top_k_videos": self.top_k_videos,
            "max_clips_per_video": self.max_clips_per_video,
            "description": self.describe(),
        }


@dataclass(frozen=True)
class SplitSettings:
    ratios: tuple[float, float, float] = DEFAULT_RATIOS
    seed: int = 0


# --------------------------------------------------------------------------- selection


def select_clips(scores: pd.DataFrame, selection: Selection) -> pd.DataFrame:
    """The selected rows of ``scores`` (needs video_id, start, probability), sorted by (video_id, start)."""
    if scores.empty:
        return scores.iloc[0:0].copy()
    s = scores.assign(_p=scores["probability"].astype(np.float64))
    # Best first within each video; ties by start (earlier first), then clip_id for total order.
    order_cols = ["video_id", "_p", "start"] + (["clip_id"] if "clip_id" in s.columns else [])
    s = s.sort_values(order_cols, ascending=[True, False, True] + [True] * (len(order_cols) - 3), kind="mergesort")
    s["_rank"] = s.groupby("video_id", sort=False).cumcount()
    cap = selection.max_clips_per_video
    if selection.threshold is not None:
        kept = s[s["_p"] >= selection.threshold]
        if cap is not None:
            kept = kept[kept.groupby("video_id", sort=False).cumcount() < cap]
    else:
        best = s if cap is None else s[s["_rank"] < cap]
        means = best.groupby("video_id", sort=True)["_p"].mean().rename("_mean").reset_index()
        means = means.sort_values(["_mean", "video_id"], ascending=[False, True], kind="mergesort")
        top = set(means["video_id"].iloc[: selection.top_k_videos])
        kept = best[best["video_id"].isin(top)]
    kept = kept.sort_values(["video_id", "start"], kind="mergesort")
    return kept.drop(columns=["_p", "_rank"]).reset_index(drop=True)


def published_splits(index: pd.DataFrame) -> tuple[dict[str, str], list[str]]:
    """Per video, the published split in the index (first by start), and videos whose rows disagree."""
    if "split" not in index.columns or index.empty:
        return {}, []
    rows = index[index["split"].notna()]
    out: dict[str, str] = {}
    conflicts: list[str] = []
    for vid, group in rows.sort_values(["video_id", "start"], kind="mergesort").groupby("video_id", sort=True):
        values = [normalise_split(v) for v in group["split"]]
        out[str(vid)] = values[0]
        if len(set(values)) > 1:
            conflicts.append(str(vid))
    return out, conflicts


# --------------------------------------------------------------------------- inputs


def load_scores(scores_dir: str, columns: tuple[str, ...] = SCORE_COLUMNS) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The scores table (``columns`` of it) and ``scores.json`` of a folder written by ``audioscope score``, checked.

    One frame of every scored clip: for small folders and tests (:func:`filter`
    reads :func:`read_score_columns`). ``model_id`` is a categorical column.
    """
    base = ("clip_id", "probability", "model_id")
    cols, meta = read_score_columns(scores_dir, extra=[c for c in columns if c not in base])
    data = {
        "clip_id": cols.clip_id.to_pandas(),
        "probability": cols.probability.astype(np.float32),
        "model_id": pd.Categorical(np.array(cols.models, dtype=object)[cols.model_code]),
        **cols.extra,
    }
    return pd.DataFrame({c: data[c] for c in dict.fromkeys(["clip_id", "probability", *columns])}), meta


#: The store's columns Df carries.
INDEX_COLUMNS: tuple[str, ...] = (
    "clip_id", "video_id", "start", "end", "split", "source_uri", "licence_name", "licence_url"
)
#: The store's columns the selection needs (the rest are attached to kept clips only).
KEY_COLUMNS: tuple[str, ...] = ("clip_id", "video_id", "start", "end")


def _not_in_store(n: int, total: int, example: str, store: str) -> UserError:
    """The error for ``n`` of ``total`` scored clips (``example`` one of them) missing from the store."""
    return UserError(
        f"{n} of {total} scored clips (e.g. {example!r}) are not in the clip store {store}: "
        "the scores were made from a different store. Give the store that was scored with --store, "
        f"or score this one with `audioscope score --store {q(store)} --out NEW_SCORES_DIR`"
    )


def join_index(
    scores: pd.DataFrame, index: pd.DataFrame, store: str = "the store", columns: tuple[str, ...] = INDEX_COLUMNS
) -> pd.DataFrame:
    """Scores with the store's ``columns`` (default: video_id, start, end, split, source_uri, licences).

    Raises :class:`UserError` when scored clip ids are not in the store.
    """
    idx = index[[c for c in columns if c in index.columns]]
    merged = scores[["clip_id", "probability", "model_id"]].merge(idx, on="clip_id", how="left", indicator=True)
    unknown = merged["_merge"] == "left_only"
    if unknown.any():
        raise _not_in_store(int(unknown.sum()), len(scores), merged.loc[unknown, "clip_id"].iloc[0], store)
    for c in ("split", "licence_name", "licence_url"):
        if c in columns and c not in merged.columns:
            merged[c] = None
    return merged.drop(columns=["_merge"])


def attach_index(kept: pd.DataFrame, index: pd.DataFrame) -> pd.DataFrame:
    """``kept`` (rows of :func:`join_index` with the key columns) with the store's other columns."""
    extra = [c for c in INDEX_COLUMNS if c not in kept.columns]
    out = kept.merge(index[["clip_id", *[c for c in extra if c in index.columns]]], on="clip_id", how="left")
    for c in extra:
        if c not in out.columns:
            out[c] = None
    return out


# --------------------------------------------------------------------------- streamed inputs
#
# At the users' scale (~7.2 M clips) the index and the scores are never pandas
# frames: they are read in batches into a few columns (Arrow strings for clip
# ids, numpy arrays, one integer code per video), about 150 B per clip; only the
# candidate clips of the selection (~Df's size) become a DataFrame, and the
# store's other columns are read again for the kept clips alone.

#: Rows per batch when the index and the scores are streamed.
BATCH_ROWS = 262_144


@dataclass
class IndexScan:
    """What :func:`filter` needs from the store's index, gathered from a stream of its batches.

    ``video_code`` numbers the videos in video_id order (``videos[code]`` is the id).
    """

    clip_id: Any  # pyarrow string array, one per index row
    video_code: np.ndarray
    start: np.ndarray
    end: np.ndarray
    videos: list[str]
    published: dict[str, str]
    conflicts: list[str]
    source_uris: list[str]
    has: frozenset[str]

    @classmethod
    def of(cls, batches: Any) -> "IndexScan":
        """The scan of a stream of index ``pyarrow.RecordBatch`` (each shard in (video_id, start) order)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        codes: dict[str, int] = {}
        ids, vcodes, starts, ends = [], [], [], []
        uris: dict[str, None] = {}
        first_split: dict[str, str] = {}
        split_values: dict[str, set[str]] = {}
        has: frozenset[str] = frozenset()
        for batch in batches:
            has = frozenset(batch.schema.names)
            col = {name: batch.column(i) for i, name in enumerate(batch.schema.names)}
            local, uniques = pd.factorize(col["video_id"].to_pandas(), use_na_sentinel=False)
            glob = np.array([codes.setdefault(str(u), len(codes)) for u in uniques], dtype=np.int32)
            vcodes.append(glob[local] if batch.num_rows else np.zeros(0, np.int32))
            ids.append(col["clip_id"].cast(pa.string()))
            starts.append(col["start"].to_numpy(zero_copy_only=False).astype(np.float64))
            ends.append(col["end"].to_numpy(zero_copy_only=False).astype(np.float64))
            if "source_uri" in col:
                uris.update(dict.fromkeys(pc.unique(col["source_uri"]).to_pylist()))
            if "split" in col and col["split"].null_count < batch.num_rows:
                rows = batch.filter(pc.is_valid(col["split"]))
                for vid, value in zip(rows.column("video_id").to_pylist(), rows.column("split").to_pylist()):
                    v = normalise_split(value)
                    first_split.setdefault(str(vid), v)
                    split_values.setdefault(str(vid), set()).add(v)
        names = list(codes)
        order = np.argsort(np.array(names, dtype=object), kind="stable") if names else np.zeros(0, np.int64)
        remap = np.empty(len(names), np.int32)
        remap[order] = np.arange(len(names), dtype=np.int32)
        vcode = remap[np.concatenate(vcodes)] if vcodes else np.zeros(0, np.int32)
        return cls(
            clip_id=pa.concat_arrays(ids) if ids else pa.array([], pa.string()),
            video_code=vcode,
            start=np.concatenate(starts) if starts else np.zeros(0),
            end=np.concatenate(ends) if ends else np.zeros(0),
            videos=[names[i] for i in order],
            published=first_split,
            conflicts=sorted(v for v, values in split_values.items() if len(values) > 1),
            source_uris=list(uris),
            has=has,
        )

    def __len__(self) -> int:
        return len(self.clip_id)


def _frame_batches(index: pd.DataFrame, columns: list[str]) -> Any:
    """A DataFrame index (tests) as the stream a store gives: rows in (video_id, start) order."""
    import pyarrow as pa

    frame = index.sort_values(["video_id", "start"], kind="stable")[[c for c in columns if c in index.columns]]
    return pa.Table.from_pandas(frame, preserve_index=False).to_batches(max_chunksize=BATCH_ROWS)


def _store_batches(store: str, columns: list[str]) -> Any:
    from audioscope.clipstore.format import StoreError
    from audioscope.clipstore.reader import ClipStore

    try:
        cs = ClipStore.open(store)
    except StoreError as e:
        raise UserError(str(e)) from None
    return cs.iter_index_batches(columns=columns, batch_rows=BATCH_ROWS)


@dataclass
class ScoreColumns:
    """The scores table as columns (scores order): clip ids (Arrow), probabilities, and per clip the
    code of its model id in ``models`` (one model id string for the whole table, not one per row)."""

    clip_id: Any
    probability: np.ndarray
    model_code: np.ndarray
    models: list[str | None]
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.clip_id)


def read_score_columns(scores_dir: str, extra: Sequence[str] = ()) -> tuple[ScoreColumns, dict[str, Any]]:
    """The scores and ``scores.json`` of a folder written by ``audioscope score``, read in batches, checked.

    Every probability must be in [0, 1] and every clip id given once; a
    missing or foreign file is a :class:`UserError` that says what to do.
    ``extra`` names other columns to read (as numpy/pandas columns).
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from audioscope.pipelines.score_layout import ScoresLayout

    layout = ScoresLayout(scores_dir)
    path = layout.scores_parquet
    if not storage.exists(path):
        raise UserError(
            another_steps_folder(scores_dir, "scores", "--scores") or
            f"no scores in {scores_dir} (its scores table is missing): score the clip store first with "
            f"`audioscope score --store STORE --out {q(scores_dir)}`, or give the folder it wrote with --scores"
        )
    ids, probs, model_codes = [], [], []
    models: dict[str | None, int] = {}
    more: dict[str, list[Any]] = {c: [] for c in extra}
    try:
        with storage.open_file(path) as fh:
            pf = pq.ParquetFile(fh, read_dictionary=["model_id"])
            missing = [c for c in SCORE_COLUMNS if c not in pf.schema_arrow.names]
            if missing:
                raise UserError(
                    f"{path} lacks the columns {missing}; it was not written by `audioscope score` (re-run the scoring)"
                )
            names = ["clip_id", "probability", "model_id", *extra]
            for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=names):
                ids.append(batch.column(0).cast(pa.string()))
                probs.append(batch.column(1).to_numpy(zero_copy_only=False).astype(np.float64))
                m = batch.column(2)
                if not pa.types.is_dictionary(m.type):
                    m = pc.dictionary_encode(m)
                values = [*m.dictionary.to_pylist(), None]  # a missing model id: the last code
                glob = np.array([models.setdefault(v, len(models)) for v in values], np.int32)
                idx = m.indices.fill_null(len(values) - 1).to_numpy(zero_copy_only=False)
                model_codes.append(glob[idx.astype(np.int64)])
                for i, c in enumerate(extra, start=3):
                    more[c].append(batch.column(i).to_pandas())
    except (pa.ArrowException, OSError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(
            f"{path} is not a scores table written by `audioscope score` ({reason}); "
            f"re-run `audioscope score --store STORE --out {q(scores_dir)}` into a fresh folder"
        ) from None
    meta: dict[str, Any] = {}
    if storage.exists(layout.scores_json):
        try:
            meta = json.loads(storage.read_text(layout.scores_json))
        except ValueError:
            raise UserError(f"{layout.scores_json} is not valid JSON; re-run `audioscope score` to rewrite it") from None
    clip_id = pa.chunked_array(ids, pa.string()).combine_chunks() if ids else pa.array([], pa.string())
    p = np.concatenate(probs) if probs else np.zeros(0)
    bad = ~np.isfinite(p) | (p < 0) | (p > 1)
    if bad.any():
        raise UserError(
            f"{path}: {int(bad.sum())} clips have a probability that is missing or outside [0, 1]; "
            "re-run `audioscope score`"
        )
    if clip_id.null_count:
        raise UserError(f"{path}: some rows have no clip_id; re-run `audioscope score`")
    if len(pc.unique(clip_id)) < len(clip_id):
        dup = clip_id.to_pandas().duplicated()
        raise UserError(
            f"{path}: {int(dup.sum())} clip ids are scored more than once (e.g. {clip_id[int(np.argmax(dup.to_numpy()))].as_py()!r}); "
            "re-run `audioscope score` into a fresh folder"
        )
    columns = {c: pd.concat(v, ignore_index=True) if v else pd.Series([], dtype=object) for c, v in more.items()}
    codes = np.concatenate(model_codes) if model_codes else np.zeros(0, np.int32)
    return ScoreColumns(clip_id=clip_id, probability=p, model_code=codes, models=list(models), extra=columns), meta


def _join_positions(scores: ScoreColumns, index: IndexScan, store: str) -> np.ndarray:
    """Per scored clip, its row in ``index``; a :class:`UserError` when some are not in the store (as :func:`join_index`)."""
    import pyarrow.compute as pc

    pos = pc.index_in(scores.clip_id, value_set=index.clip_id)
    if pos.null_count:
        unknown = pos.is_null().to_numpy(zero_copy_only=False)
        raise _not_in_store(int(unknown.sum()), len(scores), scores.clip_id[int(np.argmax(unknown))].as_py(), store)
    return pos.to_numpy(zero_copy_only=False).astype(np.int64)


def candidate_mask(video_code: np.ndarray, probability: np.ndarray, start: np.ndarray, selection: Selection) -> np.ndarray:
    """The scored clips :func:`select_clips` may keep: those at or above the threshold, or all clips of the top K videos.

    For top K, the videos are ranked exactly as :func:`select_clips` ranks them
    (video codes number the videos in video_id order), on numbers only.
    """
    if selection.threshold is not None:
        return probability >= selection.threshold
    s = pd.DataFrame({"video_id": video_code, "_p": probability, "start": start})
    s = s.sort_values(["video_id", "_p", "start"], ascending=[True, False, True], kind="mergesort")
    cap = selection.max_clips_per_video
    best = s if cap is None else s[s.groupby("video_id", sort=False).cumcount() < cap]
    means = best.groupby("video_id", sort=True)["_p"].mean().rename("_mean").reset_index()
    means = means.sort_values(["_mean", "video_id"], ascending=[False, True], kind="mergesort")
    return np.isin(video_code, means["video_id"].iloc[: selection.top_k_videos].to_numpy())


def _kept_rows_of_index(batches: Any, clip_ids: set[str], columns: list[str]) -> pd.DataFrame:
    """The index rows (``columns``) of ``clip_ids`` only, from a stream of index batches."""
    import pyarrow as pa
    import pyarrow.compute as pc

    wanted = pa.array(sorted(clip_ids), pa.string())
    parts = []
    for batch in batches:
        mask = pc.is_in(batch.column(batch.schema.get_field_index("clip_id")).cast(pa.string()), value_set=wanted)
        part = batch.filter(mask)
        if part.num_rows:
            parts.append(part.to_pandas())
    if not parts:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
    return pd.concat(parts, ignore_index=True)


def _truth_labels(truth: pd.DataFrame, index: IndexScan, pos: np.ndarray) -> pd.DataFrame:
    """:func:`clip_labels` of every scored clip, computed a batch of clips at a time."""
    names = np.array(index.videos, dtype=object)
    parts = []
    for lo in range(0, len(pos), BATCH_ROWS) or [0]:
        rows = pos[lo : lo + BATCH_ROWS]
        clips = pd.DataFrame(
            {"video_id": names[index.video_code[rows]], "start": index.start[rows], "end": index.end[rows]}
        )
        parts.append(clip_labels(clips, truth))
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------- Df


def build_df(
    scored: pd.DataFrame,
    selection: Selection,
    splits: SplitSettings = SplitSettings(),
    published: Mapping[str, str] | None = None,
    index: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Df as a DataFrame in the :data:`audioscope.schemas.tables.DF` column order.

    ``scored`` is the output of :func:`join_index`; ``published`` maps video
    ids to published splits (:func:`published_splits` of the store's index).
    With ``index``, ``scored`` needs only the key columns: the store's other
    columns are attached to the kept clips alone (less memory than joining
    them to every scored clip).
    """
    from audioscope.schemas.tables import DF

    kept = select_clips(scored, selection)
    if index is not None:
        kept = attach_index(kept, index)
    split_of = assign_splits(sorted(kept["video_id"].unique().tolist()), splits.ratios, splits.seed, published)
    kept = kept.assign(split=kept["video_id"].map(split_of))
    if isinstance(kept["model_id"].dtype, pd.CategoricalDtype):
        kept["model_id"] = kept["model_id"].astype(kept["model_id"].cat.categories.dtype)
    kept["probability"] = kept["probability"].astype(np.float32)
    for c in ("start", "end"):
        kept[c] = kept[c].astype(np.float64)
    return kept[list(DF.names)].reset_index(drop=True)


def df_table_bytes(df: pd.DataFrame) -> bytes:
    """``df.parquet`` bytes (validated against the DF schema; deterministic)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from audioscope.schemas.tables import DF, validate

    frame = df[list(DF.names)].astype({"start": np.float64, "end": np.float64, "probability": np.float32})
    table = validate(pa.Table.from_pandas(frame, schema=DF, preserve_index=False), DF)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def _fmt_seconds(x: float) -> str:
    return repr(float(x))


def audioscope_csv(df: pd.DataFrame) -> str:
    """One split as an AudioScope clip list: ``video path,start,end`` per clip, no header."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for uri, start, end in zip(df["source_uri"].tolist(), df["start"].tolist(), df["end"].tolist()):
        writer.writerow([uri, _fmt_seconds(start), _fmt_seconds(end)])
    return out.getvalue()


# --------------------------------------------------------------------------- ground truth


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def truth_metrics(probability: np.ndarray, kept: np.ndarray, labels: pd.DataFrame) -> dict[str, Any]:
    """Ground-truth metrics of Df over all scored clips that have truth.

    ``probability`` and ``kept`` are per scored clip, aligned with ``labels``
    (:func:`clip_labels`).
    """
    m = labels["has_truth"].to_numpy(bool)
    p = np.asarray(probability, np.float64)[m]
    k = np.asarray(kept, bool)[m]
    y = labels["onscreen"].to_numpy(bool)[m]
    off = labels["offscreen_only"].to_numpy(bool)[m]
    precision, recall = precision_recall(y, k)
    table = []
    for t in TABLE_THRESHOLDS:
        sel = p >= t
        tp, tr = precision_recall(y, sel)
        table.append({"threshold": t, "clips": int(sel.sum()), "precision": _num(tp), "recall": _num(tr)})
    return {
        "label": "has on-screen sound: some second s in [start, end) has has_onscreen in truth.parquet",
        "clips_with_truth": int(m.sum()),
        "clips_without_truth": int((~m).sum()),
        "positives": int(y.sum()),
        "base_rate": _num(float(y.mean()) if y.size else float("nan")),
        "precision": _num(precision),
        "recall": _num(recall),
        "roc_auc": _num(roc_auc(y, p)),
        "offscreen_only_rate_all": _num(float(off.mean()) if off.size else float("nan")),
        "offscreen_only_rate_df": _num(float(off[k].mean()) if k.any() else float("nan")),
        "threshold_table": table,
        "pr_curve": pr_curve(p, y),
    }


#: Thresholds of the precision/recall curve in report.json (0, 0.02, ..., 1).
CURVE_THRESHOLDS: tuple[float, ...] = tuple(round(0.02 * i, 2) for i in range(51))


def pr_curve(probability: np.ndarray, positive: np.ndarray) -> list[dict[str, Any]]:
    """Precision and recall of ``probability >= t`` for every t of :data:`CURVE_THRESHOLDS` (rounded to 4 places)."""
    p = np.asarray(probability, np.float64)
    y = np.asarray(positive, bool)
    out = []
    for t in CURVE_THRESHOLDS:
        sel = p >= t
        tp, tr = precision_recall(y, sel)
        out.append({
            "threshold": t, "clips": int(sel.sum()),
            "precision": None if _num(tp) is None else round(float(tp), 4),
            "recall": None if _num(tr) is None else round(float(tr), 4),
        })  # fmt: skip
    return out


# --------------------------------------------------------------------------- report


#: Colours of the histogram's ground-truth classes (colour-blind safe: Okabe-Ito).
_CLASS_COLOURS = {
    "onscreen": ("#009E73", "on-screen sound"),
    "offscreen_only": ("#E69F00", "off-screen sound only"),
    "silent": ("#56B4E9", "no source audible"),
    "unknown": ("#b0b0b0", "no ground truth"),
}


def clip_classes(labels: pd.DataFrame) -> np.ndarray:
    """Per clip, its ground-truth class: onscreen, offscreen_only, silent (no source audible) or unknown."""
    has = labels["has_truth"].to_numpy(bool)
    on = labels["onscreen"].to_numpy(bool)
    off = labels["offscreen_only"].to_numpy(bool)
    return np.where(~has, "unknown", np.where(on, "onscreen", np.where(off, "offscreen_only", "silent")))


def largest_bin(p_all: np.ndarray, classes: np.ndarray | None = None) -> dict[str, Any] | None:
    """The most populated histogram bin: its range, clips, share of all clips, and (with truth) its classes.

    With ground truth it also says how many of its clips have no audible
    source, how many of ALL silent clips fall into it and the range of their
    scores: silent clips get nearly one score (the model sees the same silent
    audio whatever the frames), which is what piles up in one bin.
    """
    p = np.asarray(p_all, np.float64)
    if p.size == 0:
        return None
    counts = np.histogram(p, bins=HIST_BINS, range=(0, 1))[0]
    i = int(np.argmax(counts))
    lo, hi = i / HIST_BINS, (i + 1) / HIST_BINS
    inside = (p >= lo) & ((p < hi) if i < HIST_BINS - 1 else (p <= hi))
    out: dict[str, Any] = {
        "range": [round(lo, 2), round(hi, 2)],
        "clips": int(counts[i]),
        "share": round(float(counts[i]) / p.size, 4),
        "distinct_scores": int(np.unique(np.round(p[inside], 4)).size),
    }
    if classes is not None:
        c = np.asarray(classes)
        out["classes"] = {k: int((c[inside] == k).sum()) for k in _CLASS_COLOURS}
        silent = c == "silent"
        out["silent_clips_in_bin_share_of_all_silent"] = (
            round(float((silent & inside).sum()) / float(silent.sum()), 4) if silent.any() else None
        )
        out["silent_score_range"] = (
            [round(float(p[silent].min()), 3), round(float(p[silent].max()), 3)] if silent.any() else None
        )
    return out


def histogram_png(
    all_p: np.ndarray,
    kept_p: np.ndarray,
    threshold: float | None,
    title: str,
    classes: np.ndarray | None = None,
) -> bytes:
    """The score histogram (20 bins over [0, 1]) as deterministic PNG bytes.

    Without ground truth: all scored clips (grey) and the kept ones (blue).
    With it (``classes`` per scored clip, from :func:`clip_classes`): all
    scored clips stacked by class, the kept ones as a black outline, and the
    largest bin annotated with what fills it.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    bins = np.linspace(0.0, 1.0, HIST_BINS + 1)
    p = np.asarray(all_p, np.float64)
    fig = Figure(figsize=(7.5, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if classes is None:
        ax.hist(p, bins=bins, color="#b0b0b0", label=f"all scored clips ({len(p)})")
        ax.hist(np.asarray(kept_p, np.float64), bins=bins, color="#1f77b4", label=f"kept in Df ({len(kept_p)})")
    else:
        c = np.asarray(classes)
        keys = [k for k in _CLASS_COLOURS if (c == k).any()]
        ax.hist(
            [p[c == k] for k in keys], bins=bins, stacked=True,
            color=[_CLASS_COLOURS[k][0] for k in keys],
            label=[f"{_CLASS_COLOURS[k][1]} ({int((c == k).sum())})" for k in keys],
        )  # fmt: skip
        ax.hist(
            np.asarray(kept_p, np.float64), bins=bins, histtype="step", color="black", linewidth=1.5,
            label=f"kept in Df ({len(kept_p)})",
        )  # fmt: skip
        big = largest_bin(p, c)
        if big is not None and big["share"] >= 0.2 and big["classes"].get("silent"):
            ax.annotate(
                f"{100 * big['share']:.0f}% of clips; {big['classes']['silent']} of them\nhave no audible source",
                xy=((big["range"][0] + big["range"][1]) / 2, big["clips"]), xytext=(0.78, 0.75),
                textcoords="axes fraction", ha="center", fontsize=8,
                arrowprops={"arrowstyle": "->", "color": "#444444"},
            )  # fmt: skip
    if threshold is not None:
        ax.axvline(threshold, color="#d62728", linestyle="--", label=f"threshold {threshold:g}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("coincidence probability")
    ax.set_ylabel("clips")
    ax.set_title(textwrap.fill(title, 70), fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _f3(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def largest_bin_lines(big: Mapping[str, Any] | None) -> list[str]:
    """A sentence on the most populated histogram bin when it holds a fifth of the clips or more."""
    if not big or big["share"] < 0.2:
        return []
    text = (
        f"The bin {big['range'][0]:.2f}-{big['range'][1]:.2f} holds {big['clips']} clips "
        f"({_pct(big['share'])} of all scored clips, {big['distinct_scores']} distinct scores at 4 decimals)."
    )
    classes = big.get("classes")
    if classes:
        text += (
            f" By ground truth: {classes['silent']} have no audible source, {classes['offscreen_only']} "
            f"off-screen sound only, {classes['onscreen']} on-screen sound"
            + (f", {classes['unknown']} no truth" if classes["unknown"] else "")
            + "."
        )
        share = big.get("silent_clips_in_bin_share_of_all_silent")
        lo_hi = big.get("silent_score_range")
        if classes["silent"] and share is not None and lo_hi:
            text += (
                f" {_pct(share)} of all clips without audible sound fall in this bin, and all of them score "
                f"between {lo_hi[0]:.3f} and {lo_hi[1]:.3f}: with silent audio the model sees (almost) the same "
                "input whatever the frames, so it gives these clips nearly one score."
            )
    return [text, ""]


def report_markdown(report: Mapping[str, Any]) -> str:
    inp = report["inputs"]
    sel = inp["selection"]
    lines = [
        "# Filtered subset Df",
        "",
        "## Inputs",
        "",
        f"- scores: `{inp['scores']}` (model `{inp['model_id']}`)",
        f"- clip store: `{inp['store']}`",
        f"- selection: {sel['description']}",
        f"- splits: ratios train/validation/test {'/'.join(f'{r:g}' for r in inp['splits']['ratios'])}, "
        f"seed {inp['splits']['seed']}; "
        f"{inp['splits']['videos_with_published_split']} kept videos keep a published split",
        f"- ground truth: {inp['truth']['how']}" + (f" (`{inp['truth']['path']}`)" if inp["truth"]["path"] else ""),
        "",
        "## Counts",
        "",
        "| | clips | videos |",
        "|---|---:|---:|",
        f"| in the store | {report['store']['clips']} | {report['store']['videos']} |",
        f"| scored | {report['scored']['clips']} | {report['scored']['videos']} |",
        f"| kept in Df | {report['kept']['clips']} | {report['kept']['videos']} |",
    ]
    for split in SPLITS:
        c = report["splits"][split]
        lines.append(f"| {split} (`csv/{CSV_NAMES[split]}.csv`) | {c['clips']} | {c['videos']} |")
    lines += ["", f"![score histogram]({HISTOGRAM_PNG})", ""]
    lines += largest_bin_lines(report["histogram"].get("largest_bin"))
    t = report.get("truth_metrics")
    lines += ["## Against ground truth", ""]
    if t is None:
        lines += ["No ground truth: precision and recall are unknown.", ""]
        lines += ["| threshold | clips >= threshold |", "|---:|---:|"]
        for row in report["threshold_counts"]:
            lines.append(f"| {row['threshold']:.2f} | {row['clips']} |")
    else:
        lines += [
            f"Label: {t['label']}.",
            "",
            f"- clips with ground truth: {t['clips_with_truth']} (without: {t['clips_without_truth']})",
            f"- base rate over all scored clips: {_pct(t['base_rate'])}",
            f"- precision of Df: {_pct(t['precision'])}",
            f"- recall of Df: {_pct(t['recall'])}",
            f"- ROC AUC of the probability: {_f3(t['roc_auc'])}",
            f"- off-screen-only clips: {_pct(t['offscreen_only_rate_all'])} of all scored, "
            f"{_pct(t['offscreen_only_rate_df'])} of Df",
            "",
            "Precision and recall of `probability >= threshold` over all scored clips (no cap):",
            "",
            "| threshold | clips | precision | recall |",
            "|---:|---:|---:|---:|",
        ]
        for row in t["threshold_table"]:
            lines.append(
                f"| {row['threshold']:.2f} | {row['clips']} | {_pct(row['precision'])} | {_pct(row['recall'])} |"
            )
    lines.append("")
    if report["warnings"]:
        lines += ["## Warnings", ""] + [f"- {w}" for w in report["warnings"]] + [""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the step


@dataclass(frozen=True, kw_only=True)
class FilterConfig:
    """What `audioscope filter` needs: where the scores, the store and the output are, and the rules."""

    scores: str
    store: str
    out: str
    selection: Selection = Selection()
    splits: SplitSettings = SplitSettings()
    truth: str | None = None
    use_truth: bool = True


@dataclass
class FilterResult:
    df: pd.DataFrame
    report: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)


def _truth_source(config: FilterConfig, source_uris: list[str]) -> TruthSource:
    if not config.use_truth:
        return TruthSource(None, "disabled (--no-truth)")
    if config.truth is not None:
        return TruthSource(config.truth, "given with --truth")
    return detect_truth(source_uris)


def filter(config: FilterConfig, *, index: pd.DataFrame | None = None) -> FilterResult:  # noqa: A001
    """Build Df and write every output into ``config.out`` (see the module docstring).

    ``index`` replaces the store's index (tests); ``config.store`` is then only named.
    The store's index and the scores are streamed (see "streamed inputs"
    above): memory grows by ~150 B per clip, never by a frame of every clip.
    """
    scores_dir, store = config.scores, config.store
    selection, splits = config.selection, config.splits
    layout = DfLayout.of(config.out)
    scores, meta = read_score_columns(scores_dir)

    def batches(columns: list[str]) -> Any:
        return _store_batches(store, columns) if index is None else _frame_batches(index, columns)

    scan = IndexScan.of(batches(["clip_id", "video_id", "start", "end", "split", "source_uri"]))
    warnings: list[str] = []
    pos = _join_positions(scores, scan, store)
    models = sorted(m for m in (scores.models[i] for i in np.unique(scores.model_code)) if m is not None)
    if len(models) > 1:
        raise UserError(
            f"{scores_dir} holds scores of {len(models)} models ({', '.join(models)}); "
            "give scores of a single model (one `audioscope score` output folder)"
        )
    model_id = models[0] if models else meta.get("model_id")
    not_scored = len(scan) - len(scores)
    if not_scored:
        warnings.append(
            f"{not_scored} clips of the store are not scored and cannot be in Df; "
            f"run `audioscope score --store {q(store)}` again to score them"
        )
    published, conflicts = scan.published, scan.conflicts
    if conflicts:
        warnings.append(
            f"{len(conflicts)} videos have clips with different published splits (e.g. {conflicts[0]}); "
            "the split of their first clip is used"
        )
    p_all = scores.probability
    video_code, start = scan.video_code[pos], scan.start[pos]
    keep = np.flatnonzero(candidate_mask(video_code, p_all, start, selection))
    import pyarrow as pa

    from audioscope.schemas.tables import CLIP_INDEX

    candidates = pd.DataFrame({
        "clip_id": scores.clip_id.take(pa.array(keep, pa.int64())).to_pandas(),
        "probability": p_all[keep],
        "model_id": pd.Series(np.array(scores.models, dtype=object)[scores.model_code[keep]], dtype=object),
        "video_id": pd.Series(np.array(scan.videos, dtype=object)[video_code[keep]], dtype=object),
        "start": start[keep],
        "end": scan.end[pos][keep],
    })  # fmt: skip
    kept_ids = set(select_clips(candidates, selection)["clip_id"].tolist())
    available = set(index.columns) if index is not None else set(CLIP_INDEX.names)
    extra = [c for c in INDEX_COLUMNS if c not in KEY_COLUMNS and c in available]
    rows = _kept_rows_of_index(batches(["clip_id", *extra]), kept_ids, ["clip_id", *extra])
    df = build_df(candidates, selection, splits, published, index=rows)
    del candidates, rows
    if df.empty:
        hint = (
            f"{scores_dir} scores no clips; score the store again" if len(scores) == 0
            else "lower --threshold or use --top-k-videos"
        )
        warnings.append(f"no clip passes the selection ({selection.describe()}): Df is empty; {hint}")

    source = _truth_source(config, scan.source_uris)
    metrics = None
    classes = None
    if source.path is not None:
        import pyarrow.compute as pc

        labels = _truth_labels(load_truth(source.path), scan, pos)
        kept_mask = pc.is_in(scores.clip_id, value_set=pa.array(df["clip_id"].tolist(), pa.string()))
        metrics = truth_metrics(p_all, kept_mask.to_numpy(zero_copy_only=False), labels)
        classes = clip_classes(labels)
        if metrics["clips_without_truth"]:
            warnings.append(
                f"{metrics['clips_without_truth']} scored clips belong to videos absent from {source.path}; "
                "they are left out of the ground-truth metrics"
            )

    counts_by_split = {
        s: {
            "clips": int((df["split"] == s).sum()),
            "videos": int(df.loc[df["split"] == s, "video_id"].nunique()),
        }
        for s in SPLITS
    }
    report: dict[str, Any] = {
        "inputs": {
            "scores": str(scores_dir),
            "scores_json": meta,
            "model_id": model_id,
            "store": str(store),
            "selection": selection.to_json(),
            "splits": {
                "ratios": list(splits.ratios),
                "seed": splits.seed,
                "rule": 'u = first 8 bytes of sha256(f"{seed}:{video_id}") / 2**64; '
                "train if u < r_train, validation if u < r_train + r_validation, else test; "
                "a published split in the store wins",
                "videos_with_published_split": int(sum(1 for v in df["video_id"].unique().tolist() if v in published)),
            },
            "truth": {"path": source.path, "how": source.how},
        },
        "store": {
            "clips": int(len(scan)),
            "videos": int(len(scan.videos)),
            "clips_not_scored": int(not_scored),
        },
        "scored": {"clips": int(len(scores)), "videos": int(np.unique(video_code).size)},
        "kept": {"clips": int(len(df)), "videos": int(df["video_id"].nunique())},
        "splits": counts_by_split,
        "histogram": {
            "bins": [round(float(b), 2) for b in np.linspace(0, 1, HIST_BINS + 1)],
            "all": np.histogram(p_all, bins=HIST_BINS, range=(0, 1))[0].tolist(),
            "kept": np.histogram(df["probability"].to_numpy(np.float64), bins=HIST_BINS, range=(0, 1))[0].tolist(),
            "by_class": None if classes is None else {
                k: np.histogram(p_all[classes == k], bins=HIST_BINS, range=(0, 1))[0].tolist()
                for k in _CLASS_COLOURS
            },
            "largest_bin": largest_bin(p_all, classes),
        },
        "threshold_counts": [{"threshold": t, "clips": int((p_all >= t).sum())} for t in TABLE_THRESHOLDS],
        "truth_metrics": metrics,
        "warnings": warnings,
        "files": {
            "df": DF_PARQUET,
            "csv": {s: layout.csv_name(s) for s in SPLITS},
            "histogram": HISTOGRAM_PNG,
            "report_md": REPORT_MD,
        },
    }

    files = layout.files
    storage.atomic_write(files[DF_PARQUET], df_table_bytes(df))
    for s in SPLITS:
        storage.atomic_write(layout.csv(s), audioscope_csv(df[df["split"] == s]))
    storage.atomic_write(
        layout.histogram_png,
        histogram_png(
            p_all, df["probability"].to_numpy(np.float64), selection.threshold, f"Df: {selection.describe()}",
            classes,
        ),
    )
    storage.atomic_write(layout.report_md, report_markdown(report))
    # report.json last: its presence means the folder is finished (DfLayout.is_finished)
    storage.atomic_write(layout.report_json, json.dumps(report, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return FilterResult(df=df, report=report, files=files)
