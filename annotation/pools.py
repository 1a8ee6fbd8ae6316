"""The annotation pools (docs/recipe.md): which clips raters label.

Three pools, in :data:`audioscope.schemas.tables.POOLS` order:

* ``unfiltered_train``: clips of the clip store whose video is in the train
  split (its published split, else its Df split, else the per-video hashed
  split with the ratios and seed Df was made with, from ``report.json``);
* ``filtered_train``: Df clips of the train split;
* ``filtered_eval``: Df clips of the validation and test splits;
* ``unfiltered_eval`` (not in the recipe; size 0 unless asked): clips of the
  store's validation and test videos. The evaluation sets need unanimous
  off-screen-only clips, and a precise Df has almost none (the synthetic
  demo's has none); this pool brings them in. Its clips come last, so the
  three recipe pools are the same with or without it.

Sampling is deterministic and stable: every clip has a rank
``u = first 8 bytes of sha256(f"{seed}:{clip_id}")``; each pool takes its
candidates in increasing ``u`` (ties by clip id), skipping clips an earlier
pool already took, so no clip is in two pools and a larger size only adds
clips. Output: ``pools.parquet`` (:data:`POOL_SCHEMA`, sorted by pool, then
video_id, start) and ``pools.json`` (sizes asked and drawn, seed, inputs).

:func:`sample` streams the store's index (:func:`stream_candidates`) and keeps
only the lowest-ranked candidates each store pool can draw, so its memory does
not grow with the store (a store of 7.2 M clips, pools of 10,000).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from audioscope import storage
from audioscope.curation.splits import assign_splits, normalise_split
from audioscope.schemas.annotations import POOLS_JSON, POOLS_PARQUET, AnnotationLayout  # noqa: F401 (re-exported)
from audioscope.schemas.tables import ANNOTATION_POOLS, POOLS

DEFAULT_POOL_SIZE = 10_000

#: One row per sampled clip (the table lives with the others in schemas.tables).
POOL_SCHEMA = ANNOTATION_POOLS

_COLUMNS = list(POOL_SCHEMA.names)


@dataclass(frozen=True)
class PoolSizes:
    unfiltered_train: int = DEFAULT_POOL_SIZE
    filtered_train: int = DEFAULT_POOL_SIZE
    filtered_eval: int = DEFAULT_POOL_SIZE
    unfiltered_eval: int = 0

    def of(self, pool: str) -> int:
        return int(getattr(self, pool))


#: The pools drawn from the whole store (streamed); the filtered ones come from Df (small: in memory).
_STORE_POOLS = {"unfiltered_train": ("train",), "unfiltered_eval": ("validation", "test")}


def clip_rank(clip_id: str, seed: int) -> int:
    """The sampling rank of a clip (smaller is drawn first)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{clip_id}".encode("utf-8")).digest()[:8], "big")


def store_splits(index: pd.DataFrame, df: pd.DataFrame, ratios: tuple[float, float, float], seed: int) -> pd.Series:
    """The split of every index clip's video: published, else Df's, else hashed (ratios, seed)."""
    known: dict[str, str] = dict(zip(df["video_id"].astype(str), df["split"].astype(str)))
    if "split" in index.columns:
        for vid, split in zip(index["video_id"], index["split"]):
            if isinstance(split, str) and split:
                known[str(vid)] = normalise_split(split)
    split_of = assign_splits(sorted(set(index["video_id"].astype(str))), ratios, seed, known)
    return index["video_id"].astype(str).map(split_of)


def candidates(index: pd.DataFrame, df: pd.DataFrame, ratios: tuple[float, float, float], seed: int) -> dict[str, pd.DataFrame]:
    """The clips each pool may draw from (columns of :data:`POOL_SCHEMA` but ``pool``)."""
    cols = [c for c in _COLUMNS if c != "pool"]  # missing licence columns come out empty
    unfiltered = index.assign(split=store_splits(index, df, ratios, seed)).reindex(columns=cols)
    return {
        "unfiltered_train": unfiltered[unfiltered["split"].isin(_STORE_POOLS["unfiltered_train"])],
        **filtered_candidates(df),
        "unfiltered_eval": unfiltered[unfiltered["split"].isin(_STORE_POOLS["unfiltered_eval"])],
    }


def filtered_candidates(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The candidates of the pools drawn from Df: its train clips, and its validation and test clips."""
    filtered = df.reindex(columns=[c for c in _COLUMNS if c != "pool"])
    return {
        "filtered_train": filtered[filtered["split"] == "train"],
        "filtered_eval": filtered[filtered["split"].isin(["validation", "test"])],
    }


def _ranked(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    ranks = np.fromiter((clip_rank(str(c), seed) for c in frame["clip_id"]), dtype=np.uint64, count=len(frame))
    return frame.assign(_rank=ranks)


def stream_candidates(
    batches: Callable[[list[str]], Iterable[pd.DataFrame]],
    columns: Sequence[str],
    df: pd.DataFrame,
    ratios: tuple[float, float, float],
    split_seed: int,
    sizes: PoolSizes,
    seed: int,
) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
    """:func:`candidates` cut to what :func:`draw_pools` can draw, from the index streamed twice; the candidate counts.

    ``batches(cols)`` streams the index's ``cols`` as frames, in index order
    (``columns`` names the columns the index has). The first pass finds every
    video's split (as :func:`store_splits`: published, else Df's, else
    hashed); the second keeps, per store pool, only its lowest-ranked
    candidates: as many as it asks for plus all that the pools before it may
    take (a clip an earlier pool took is skipped), so :func:`draw_pools`
    draws the same pools as from the whole candidate lists. Memory: one
    batch, one split per video and those few candidates, whatever the
    store's size.
    """
    has_split = "split" in columns
    known: dict[str, str] = dict(zip(df["video_id"].astype(str), df["split"].astype(str)))
    videos: set[str] = set()
    for frame in batches(["video_id", "split"] if has_split else ["video_id"]):
        vids = frame["video_id"].astype(str)
        videos.update(vids.unique().tolist())
        if has_split:
            given = frame["split"].notna().to_numpy()
            for vid, split in zip(vids[given], frame["split"][given]):
                if isinstance(split, str) and split:
                    known[vid] = normalise_split(split)
    split_of = assign_splits(sorted(videos), ratios, split_seed, known)

    cols = [c for c in _COLUMNS if c != "pool"]
    earlier = 0
    keep: dict[str, int] = {}
    for pool in POOLS:
        keep[pool] = sizes.of(pool) + earlier
        earlier += sizes.of(pool)
    counts = {pool: 0 for pool in _STORE_POOLS}
    best: dict[str, pd.DataFrame] = {pool: pd.DataFrame(columns=cols) for pool in _STORE_POOLS}
    wanted = [c for c in cols if c in columns and c != "split"]
    for frame in batches(wanted):
        frame = frame.assign(split=frame["video_id"].astype(str).map(split_of)).reindex(columns=cols)
        for pool, splits in _STORE_POOLS.items():
            mine = frame[frame["split"].isin(splits)]
            counts[pool] += len(mine)
            if keep[pool] == 0 or mine.empty:
                continue
            both = pd.concat([best[pool], _ranked(mine, seed)], ignore_index=True) if len(best[pool]) else _ranked(mine, seed)
            both = both.drop_duplicates("clip_id").sort_values(["_rank", "clip_id"], kind="mergesort")
            best[pool] = both.head(keep[pool]).reset_index(drop=True)
    out = filtered_candidates(df)
    for pool in _STORE_POOLS:
        frame = best[pool]
        out[pool] = (frame.drop(columns="_rank") if "_rank" in frame.columns else frame).reindex(columns=cols)
    counts.update({pool: len(out[pool]) for pool in POOLS if pool not in _STORE_POOLS})
    return {pool: out[pool] for pool in POOLS}, counts


def draw_pools(pool_candidates: Mapping[str, pd.DataFrame], sizes: PoolSizes, seed: int) -> pd.DataFrame:
    """The pools: each takes its lowest-ranked candidates no earlier pool took (module docstring)."""
    taken: set[str] = set()
    drawn = []
    for pool in POOLS:
        frame = pool_candidates[pool].drop_duplicates("clip_id")
        ranks = frame["clip_id"].map(lambda c: clip_rank(str(c), seed))
        frame = frame.assign(_rank=ranks).sort_values(["_rank", "clip_id"], kind="mergesort")
        frame = frame[~frame["clip_id"].isin(taken)].head(sizes.of(pool))
        taken.update(frame["clip_id"])
        drawn.append(frame.drop(columns="_rank").assign(pool=pool))
    out = pd.concat(drawn, ignore_index=True) if drawn else pd.DataFrame(columns=_COLUMNS)
    order = {p: i for i, p in enumerate(POOLS)}
    out = out.assign(_p=out["pool"].map(order)).sort_values(["_p", "video_id", "start"], kind="mergesort")
    return out.drop(columns="_p")[_COLUMNS].reset_index(drop=True)


def pools_table_bytes(pools: pd.DataFrame) -> bytes:
    import pyarrow.parquet as pq

    from audioscope.schemas.tables import validate

    table = validate(pa.Table.from_pandas(pools[_COLUMNS], schema=POOL_SCHEMA, preserve_index=False), POOL_SCHEMA)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def read_pools(annotation_dir: str) -> pd.DataFrame:
    """``pools.parquet`` of an annotation folder (:meth:`AnnotationLayout.read_pools`)."""
    return AnnotationLayout(annotation_dir).read_pools()


def df_split_settings(df_dir: str) -> tuple[tuple[float, float, float], int]:
    """The split ratios and seed Df was made with (its report), else the defaults."""
    from audioscope.schemas.df import split_settings

    return split_settings(df_dir)


def load_df(df_dir: str) -> pd.DataFrame:
    """The Df table (:func:`audioscope.schemas.df.read_df`)."""
    from audioscope.schemas.df import read_df

    return read_df(df_dir)


def sample(store: str, df_dir: str, annotation_dir: str, sizes: PoolSizes, seed: int = 0) -> dict[str, Any]:
    """Draw the pools and write ``pools.parquet`` and ``pools.json``; returns the summary."""
    from audioscope.errors import UserError
    from audioscope.clipstore.format import StoreError
    from audioscope.clipstore.reader import ClipStore

    try:
        cs = ClipStore.open(store)
    except StoreError as e:
        raise UserError(str(e)) from None
    df = load_df(df_dir)
    ratios, split_seed = df_split_settings(df_dir)
    from audioscope.schemas.tables import CLIP_INDEX

    pool_candidates, candidate_counts = stream_candidates(
        lambda cols: cs.iter_index(columns=cols), CLIP_INDEX.names, df, ratios, split_seed, sizes, seed
    )
    pools = draw_pools(pool_candidates, sizes, seed)
    counts = pools["pool"].value_counts()
    summary = {
        "seed": seed,
        "store": store,
        "df": df_dir,
        "split_ratios": list(ratios),
        "split_seed": split_seed,
        "pools": {
            p: {"asked": sizes.of(p), "drawn": int(counts.get(p, 0)), "candidates": int(candidate_counts[p])}
            for p in POOLS
        },
        "clips": int(len(pools)),
        "rule": 'rank = first 8 bytes of sha256(f"{seed}:{clip_id}"); each pool in order '
        + ", ".join(POOLS) + " takes its lowest ranks not taken by an earlier pool",
    }
    layout = AnnotationLayout(annotation_dir)
    storage.atomic_write(layout.pools_parquet, pools_table_bytes(pools))
    layout.write_json(layout.pools_json, summary)
    return summary
