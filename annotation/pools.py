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
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any, Mapping

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
    filtered = df.reindex(columns=cols)
    return {
        "unfiltered_train": unfiltered[unfiltered["split"] == "train"],
        "filtered_train": filtered[filtered["split"] == "train"],
        "filtered_eval": filtered[filtered["split"].isin(["validation", "test"])],
        "unfiltered_eval": unfiltered[unfiltered["split"].isin(["validation", "test"])],
    }


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
        index = ClipStore.open(store).index
    except StoreError as e:
        raise UserError(str(e)) from None
    df = load_df(df_dir)
    ratios, split_seed = df_split_settings(df_dir)
    pool_candidates = candidates(index, df, ratios, split_seed)
    pools = draw_pools(pool_candidates, sizes, seed)
    counts = pools["pool"].value_counts()
    summary = {
        "seed": seed,
        "store": store,
        "df": df_dir,
        "split_ratios": list(ratios),
        "split_seed": split_seed,
        "pools": {
            p: {"asked": sizes.of(p), "drawn": int(counts.get(p, 0)), "candidates": int(len(pool_candidates[p]))}
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
