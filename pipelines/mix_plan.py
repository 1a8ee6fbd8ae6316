"""The plan of a mixtures folder: every example of every shard, decided before any media is read.

``audioscope mix`` plans on the launcher and writes with Beam
(:mod:`audioscope.pipelines.mix`), so the same seed gives the same bytes on
every runner. The plan is pure Python over sorted inputs:

* ``NOn``: frames and audio of a Df train clip; ``SOff``: frames of a Df
  clip, audio of a clip of another Df video; ``LOn``/``LOff``: frames and
  audio of a unanimously labeled train clip, every other one a single mixture
  (no second mixture). The second mixture is the audio of a Df train clip
  from a video that is in no other part of the example (docs/recipe.md).
* Types are interleaved by a low-discrepancy schedule that restarts at every
  shard (:mod:`audioscope.pipelines.mix_recipes`).
* Evaluation sets (docs/recipe.md) come from unanimously labeled validation and
  test clips (each first clip of a MoM set gets ``mom_partners`` partners from
  other videos; the published lists pair each clip with 5), or exactly from
  pair CSVs in the published format (:mod:`audioscope.pipelines.mix_pairs`).

Clips come from :mod:`audioscope.pipelines.mix_catalog`; what is derived from
the plan (examples.parquet, pair CSVs, summary.json) is
:mod:`audioscope.pipelines.mix_outputs`. No Beam and no TensorFlow here.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Callable, Iterator, Mapping, Sequence

import pandas as pd

from audioscope.pipelines.mix_catalog import Catalog, ClipRef, licence_excluded  # noqa: F401 - curation.datacard imports it from here
from audioscope.pipelines.mix_layout import eval_folder, shard_name, train_folder
from audioscope.pipelines.mix_pairs import EVAL_SPLITS, PairList, PairRow
from audioscope.pipelines.mix_recipes import (
    DEFAULT_SHARD_BYTES,
    RECIPES,
    Recipe,
    examples_per_shard,
    hash64,
    shard_sizes,
    type_schedule,
)
from audioscope.schemas.records import EVAL_SETS, LOFF, LON, NON, SOFF, TRAIN_TYPES
from audioscope.schemas.tables import LABEL_OFFSCREEN_ONLY, LABEL_ONSCREEN_ONLY

#: Second clips per first clip in the evaluation MoM sets (the published lists use 5).
DEFAULT_MOM_PARTNERS = 5

#: The label of an evaluation set's first clip, and of its partner (MoM sets).
SET_LABELS: dict[str, tuple[str, str | None]] = {
    "onscreen_single": (LABEL_ONSCREEN_ONLY, None),
    "offscreen_single": (LABEL_OFFSCREEN_ONLY, None),
    "onscreen_mom": (LABEL_ONSCREEN_ONLY, LABEL_OFFSCREEN_ONLY),
    "offscreen_mom": (LABEL_OFFSCREEN_ONLY, LABEL_OFFSCREEN_ONLY),
}


class PlanError(ValueError):
    """A recipe or set cannot be planned from these inputs (the message says why)."""


@dataclass(frozen=True)
class Planned:
    """One planned example: its first mixture's audio clip, frames clip and second clip (if a MoM)."""

    subset: str
    split: str
    type: str
    first: ClipRef
    frames: ClipRef
    second: ClipRef | None

    @property
    def is_mom(self) -> bool:
        return self.second is not None

    def to_json(self, with_paths: bool = False) -> dict[str, Any]:
        p = with_paths
        return {
            "subset": self.subset, "split": self.split, "type": self.type, "first": self.first.to_json(p),
            "frames": None if self.frames == self.first else self.frames.to_json(p),
            "second": None if self.second is None else self.second.to_json(p),
        }  # fmt: skip

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Planned":
        first = ClipRef.from_json(d["first"])
        return cls(
            subset=d["subset"], split=d["split"], type=d["type"], first=first,
            frames=first if d["frames"] is None else ClipRef.from_json(d["frames"]),
            second=None if d["second"] is None else ClipRef.from_json(d["second"]),
        )  # fmt: skip


@dataclass
class Shard:
    """One TFRecord file of the plan: its path in MIX_DIR and its examples in order."""

    path: str
    examples: list[Planned]

    def work_line(self, with_paths: bool = False) -> str:
        """The shard as one JSON line: what its worker needs, and what the plan's SHA-256 is over
        (``with_paths``: with each clip's source path, as plans were hashed before format 2)."""
        examples = [e.to_json(with_paths) for e in self.examples]
        return json.dumps({"path": self.path, "examples": examples}, sort_keys=True)


@dataclass
class Pools:
    """The clips the plan draws from, each list sorted by clip id.

    ``df_train``: Df train clips; ``labeled[(split, label)]``: unanimously
    labeled clips of a split.
    """

    df_train: list[ClipRef]
    labeled: dict[tuple[str, str], list[ClipRef]] = field(default_factory=dict)

    def label_pool(self, split: str, label: str) -> list[ClipRef]:
        return self.labeled.get((split, label), [])


# --------------------------------------------------------------------------- training plan


class _Cycle:
    """A pool's clips in hashed order, a new order each pass (each clip once per pass)."""

    def __init__(self, pool: Sequence[ClipRef], *key: object) -> None:
        self.pool = pool
        self.key = key
        self.taken = 0
        self._order: list[int] = []

    def next(self) -> ClipRef:
        epoch, i = divmod(self.taken, len(self.pool))
        if i == 0:
            self._order = sorted(range(len(self.pool)), key=lambda j: hash64(*self.key, epoch, self.pool[j].clip_id))
        self.taken += 1
        return self.pool[self._order[i]]


def pick_other(pool: Sequence[ClipRef], exclude: set[str], *key: object) -> ClipRef:
    """A clip of ``pool`` whose video is not in ``exclude``, chosen by hashing ``key``."""
    for attempt in range(32):
        clip = pool[hash64(*key, attempt) % len(pool)]
        if clip.video_id not in exclude:
            return clip
    start = hash64(*key, "scan") % len(pool)
    for j in range(len(pool)):
        clip = pool[(start + j) % len(pool)]
        if clip.video_id not in exclude:
            return clip
    raise PlanError(f"no clip from a video other than {sorted(exclude)}")


def _videos(pool: Sequence[ClipRef]) -> int:
    return len({c.video_id for c in pool})


def check_recipe(recipe: Recipe, pools: Pools) -> None:
    """Raise :class:`PlanError` when the pools cannot give one of the recipe's types."""
    need = {NON: 2, SOFF: 3, LON: 2, LOFF: 2}
    for t, p in recipe.proportions.items():
        if p <= 0:
            continue
        if _videos(pools.df_train) < need[t]:
            raise PlanError(
                f"{t} examples need Df train clips from at least {need[t]} videos, there are "
                f"{_videos(pools.df_train)}"
            )
        label = {LON: LABEL_ONSCREEN_ONLY, LOFF: LABEL_OFFSCREEN_ONLY}.get(t)
        if label and not pools.label_pool("train", label):
            raise PlanError(f"{t} examples need unanimously {label} train clips; the labels have none")


def plan_recipe(recipe: Recipe, pools: Pools, total: int, seed: int, per_shard: int) -> list[Shard]:
    """The shards of one training recipe (``train/<recipe>/``)."""
    return list(iter_recipe(recipe, pools, total, seed, per_shard))


def iter_recipe(recipe: Recipe, pools: Pools, total: int, seed: int, per_shard: int) -> Iterator[Shard]:
    """The shards of one training recipe, planned one at a time (memory: one shard)."""
    check_recipe(recipe, pools)
    df = pools.df_train
    firsts = {
        NON: _Cycle(df, seed, recipe.name, NON),
        SOFF: _Cycle(df, seed, recipe.name, SOFF),
        LON: _Cycle(pools.label_pool("train", LABEL_ONSCREEN_ONLY) or df, seed, recipe.name, LON),
        LOFF: _Cycle(pools.label_pool("train", LABEL_OFFSCREEN_ONLY) or df, seed, recipe.name, LOFF),
    }
    sizes = shard_sizes(total, per_shard)
    df_ids = {c.clip_id for c in df}
    i = 0
    for s, size in enumerate(sizes):
        drafts = []
        for t in type_schedule(size, recipe.proportions):  # restarts at every shard
            drafts.append(_training_draft(recipe.name, t, firsts[t], df, seed, i))
            i += 1
        # Second mixtures come from the Df clips the shard already holds (stored once, packed shards).
        local = sorted({d[2].clip_id: d[2] for d in drafts if d[2].clip_id in df_ids}.values(), key=lambda c: c.clip_id)
        examples = [_with_second(d, local or df, df, seed) for d in drafts]
        yield Shard(shard_name(train_folder(recipe.name), recipe.name, s, len(sizes)), examples)


def cut_into_shards(folder: str, stem: str, examples: Sequence[Planned], sizes: Sequence[int]) -> list[Shard]:
    """``examples`` in order, cut into shards of ``sizes`` named ``<folder>/<stem>-i-of-n.tfrecord``."""
    shards, i = [], 0
    for s, size in enumerate(sizes):
        shards.append(Shard(shard_name(folder, stem, s, len(sizes)), list(examples[i : i + size])))
        i += size
    return shards


_Draft = tuple[str, str, ClipRef, ClipRef, bool, int]


def _training_draft(name: str, t: str, cycle: _Cycle, df: Sequence[ClipRef], seed: int, i: int) -> _Draft:
    """Example ``i`` of a recipe, of type ``t``, before its second mixture: (recipe, type, first
    clip, frames clip, is a MoM, i); the shown clip comes from ``cycle``."""
    shown = cycle.next()
    first = shown
    if t == SOFF:
        first = pick_other(df, {shown.video_id}, seed, name, i, "audio")
    single = t in (LON, LOFF) and (cycle.taken - 1) % 2 == 1
    return name, t, first, shown, not single, i


def _with_second(draft: _Draft, local: Sequence[ClipRef], df: Sequence[ClipRef], seed: int) -> Planned:
    """The planned example of a draft: its second mixture a clip of ``local`` (the shard's Df
    clips) from another video, or of the whole Df when the shard has none."""
    name, t, first, shown, mom, i = draft
    second = None
    if mom:
        exclude = {shown.video_id, first.video_id}
        pool = local if any(c.video_id not in exclude for c in local) else df
        second = pick_other(pool, exclude, seed, name, i, "second")
    return Planned(subset=name, split="train", type=t, first=first, frames=shown, second=second)



# --------------------------------------------------------------------------- evaluation plan


def plan_eval_set(pools: Pools, split: str, name: str, seed: int, partners: int) -> list[Planned]:
    """One evaluation set of a split from its unanimously labeled clips (clip-id order)."""
    label, partner_label = SET_LABELS[name]
    out = []
    candidates = pools.label_pool(split, partner_label) if partner_label else []
    for clip in pools.label_pool(split, label):
        if partner_label is None:
            out.append(Planned(subset=name, split=split, type=name, first=clip, frames=clip, second=None))
            continue
        others = [c for c in candidates if c.video_id != clip.video_id]
        chosen = heapq.nsmallest(partners, others, key=lambda c: hash64(seed, split, name, clip.clip_id, c.clip_id))
        out += [Planned(subset=name, split=split, type=name, first=clip, frames=clip, second=c) for c in chosen]
    return out


def eval_shards(split: str, name: str, examples: list[Planned], per_shard: int) -> list[Shard]:
    """An evaluation set cut into shards (``eval/<split>/<set>/``)."""
    return cut_into_shards(eval_folder(split, name), name, examples, shard_sizes(len(examples), per_shard))


# --------------------------------------------------------------------------- the whole plan


@dataclass(frozen=True, kw_only=True)
class PlanOptions:
    """Every option of a mix run (recorded in mix.json and summary.json)."""

    seed: int = 0
    recipes: tuple[Recipe, ...] = tuple(Recipe(n, p) for n, p in RECIPES.items())
    examples: int | None = None
    shard_bytes: int = DEFAULT_SHARD_BYTES
    mom_partners: int = DEFAULT_MOM_PARTNERS
    exclude_licences: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed, "recipes": {r.name: r.to_json() for r in self.recipes},
            "examples_per_recipe": self.examples, "shard_bytes": self.shard_bytes,
            "examples_per_shard": examples_per_shard(self.shard_bytes), "eval_mom_partners": self.mom_partners,
            "exclude_licences": list(self.exclude_licences),
        }  # fmt: skip


@dataclass
class Group:
    """One folder of shards: a training recipe or an evaluation set, planned on demand."""

    folder: str
    sizes: list[int]
    make: Callable[[], Iterator[Shard]]

    def paths(self) -> list[str]:
        stem = self.folder.rsplit("/", 1)[-1]
        return [shard_name(self.folder, stem, i, len(self.sizes)) for i in range(len(self.sizes))]


@dataclass
class Plan:
    """Every shard to write (planned on demand, shard by shard), the counts and what was left out.

    The training shards are never all in memory: :meth:`iter_shards` plans
    them again on every pass (the plan is a pure function of its inputs),
    :meth:`scan` makes one pass for the plan's SHA-256 and the counts.
    """

    groups: list[Group]
    counts: dict[str, Any]
    notes: dict[str, Any]
    eval: dict[tuple[str, str], list[Planned]] = field(default_factory=dict)
    _sha256: str | None = None

    def shard_sizes(self) -> dict[str, int]:
        """Shard path -> planned examples, in plan order (nothing planned)."""
        return {p: n for g in self.groups for p, n in zip(g.paths(), g.sizes)}

    def iter_shards(self, by_path: bool = False) -> Iterator[Shard]:
        """Every shard in plan order (training recipes, then evaluation sets), or sorted by path."""
        for group in sorted(self.groups, key=lambda g: g.folder) if by_path else self.groups:
            yield from group.make()

    @property
    def shards(self) -> list[Shard]:
        """Every shard as a list (small plans and tests; big ones use :meth:`iter_shards`)."""
        return list(self.iter_shards())

    def scan(self, visit: Callable[[Shard, str], None] | None = None) -> str:
        """One pass over the plan: its SHA-256 (of the work lines) and the training counts;
        ``visit(shard, work_line)`` is called for every shard on the way."""
        digest = hashlib.sha256()
        train: dict[str, dict[str, int]] = {}
        for shard in self.iter_shards():
            line = shard.work_line()
            digest.update(line.encode("utf-8") + b"\n")
            if shard.path.startswith("train/"):
                add_training_counts(train.setdefault(shard.path.split("/")[1], {}), shard)
            if visit is not None:
                visit(shard, line)
        self.counts["train"] = {name: train.get(name, add_training_counts({}, None)) for name in self.counts["train"]}
        self._sha256 = digest.hexdigest()
        return self._sha256

    def sha256(self) -> str:
        return self._sha256 if self._sha256 is not None else self.scan()

    def sha256_with_paths(self) -> str:
        """The SHA-256 of the work lines with each clip's source path: how plans were hashed
        before the work lines left the paths out (mix.json without ``plan_digest``)."""
        digest = hashlib.sha256()
        for shard in self.iter_shards():
            digest.update(shard.work_line(with_paths=True).encode("utf-8") + b"\n")
        return digest.hexdigest()


def build_pools(catalog: Catalog, df: pd.DataFrame, labels: pd.DataFrame | None) -> Pools:
    """Df train clips and the unanimously labeled clips of each split, usable ones only."""
    pools = Pools(df_train=catalog.refs(df.loc[df["split"] == "train", "clip_id"], "df_train"))
    if labels is not None:
        for (split, label), group in labels[labels["label"].notna() & labels["split"].notna()].groupby(["split", "label"]):
            pools.labeled[(str(split), str(label))] = catalog.refs(group["clip_id"], f"labeled_{split}")
    return pools


def make_plan(
    catalog: Catalog, df: pd.DataFrame, labels: pd.DataFrame | None, pair_lists: Sequence[PairList] | None,
    config: PlanOptions,
) -> Plan:
    """The whole plan: training shards of every recipe, then the evaluation sets.

    Training shards are planned on demand (:class:`Plan`); the evaluation
    sets (unanimously labeled clips and their partners) are planned here.
    """
    pools = build_pools(catalog, df, labels)
    per_shard = examples_per_shard(config.shard_bytes)
    total = config.examples if config.examples is not None else len(pools.df_train)
    groups: list[Group] = []
    counts: dict[str, Any] = {"train": {}, "eval": {}}
    skipped: dict[str, str] = {}
    for recipe in config.recipes:
        if labels is None and any(recipe.proportions.get(t, 0) > 0 for t in (LON, LOFF)):
            skipped[train_folder(recipe.name)] = "no --labels given: LOn/LOff examples need the annotation step's labels.parquet"
            continue
        try:
            check_recipe(recipe, pools)
        except PlanError as e:
            skipped[train_folder(recipe.name)] = str(e)
            continue
        sizes = shard_sizes(total, per_shard)
        make = partial(iter_recipe, recipe, pools, total, config.seed, per_shard)
        groups.append(Group(train_folder(recipe.name), sizes, make))
        counts["train"][recipe.name] = {}
    notes: dict[str, Any] = {"skipped": skipped, "pair_problems": []}
    if pair_lists is not None:
        sets, notes["pair_problems"] = eval_from_pairs(catalog, pair_lists)
    elif labels is not None:
        sets = {(s, n): plan_eval_set(pools, s, n, config.seed, config.mom_partners) for s in EVAL_SPLITS for n in EVAL_SETS}
    else:
        sets = {}
        skipped["eval"] = "no --labels given: the evaluation sets need unanimous validation and test labels"
    ordered = sorted(sets.items(), key=lambda kv: (EVAL_SPLITS.index(kv[0][0]), EVAL_SETS.index(kv[0][1])))
    for (split, name), examples in ordered:
        shards = eval_shards(split, name, examples, per_shard)
        groups.append(Group(eval_folder(split, name), [len(s.examples) for s in shards], partial(iter, shards)))
        counts["eval"].setdefault(split, {})[name] = len(examples)
    notes["left_out"] = catalog.left_out
    return Plan(groups=groups, counts=counts, notes=notes, eval={k: v for k, v in ordered if v})


def add_training_counts(counts: dict[str, int], shard: Shard | None) -> dict[str, int]:
    """Add a shard's examples to total, one count per type, mixtures of mixtures and single mixtures."""
    for key in ("total", *TRAIN_TYPES, "mom", "single"):
        counts.setdefault(key, 0)
    for e in shard.examples if shard is not None else ():
        counts["total"] += 1
        counts[e.type] += 1
        counts["mom" if e.is_mom else "single"] += 1
    return counts


def training_counts(shards: Sequence[Shard]) -> dict[str, int]:
    """total, one count per type, and how many are mixtures of mixtures / single mixtures."""
    counts: dict[str, int] = add_training_counts({}, None)
    for shard in shards:
        add_training_counts(counts, shard)
    return counts


def eval_from_pairs(catalog: Catalog, pair_lists: Sequence[PairList]) -> tuple[dict[tuple[str, str], list[Planned]], list[str]]:
    """Evaluation sets rebuilt exactly from pair lists (rows in file order); problems of rows left out."""
    sets: dict[tuple[str, str], list[Planned]] = {}
    problems: list[str] = []
    for pl in pair_lists:
        if (pl.split, pl.name) in sets:
            problems.append(f"{pl.source}: a second list for {pl.split} {pl.name}; ignored")
            continue
        examples = sets.setdefault((pl.split, pl.name), [])
        for n, row in enumerate(pl.rows, 1):
            planned = _pair_example(catalog, pl, row)
            if isinstance(planned, str):
                problems.append(f"{pl.source}: pair {n}: {planned}")
            else:
                examples.append(planned)
    return sets, problems


def _pair_example(catalog: Catalog, pl: PairList, row: PairRow) -> Planned | str:
    """One pair-list row as a planned example, or why it cannot be made."""
    mom = pl.name.endswith("_mom")
    if mom != (row[3] is not None):
        return f"a {pl.name} list row needs {'six' if mom else 'three'} fields"
    first = catalog.find(row[0], row[1])
    if isinstance(first, str):
        return f"clip 1 ({row[0]} at {row[1]:g} s) cannot be used: {first}"
    second = catalog.find(row[3], row[4]) if mom else None
    if isinstance(second, str):
        return f"clip 2 ({row[3]} at {row[4]:g} s) cannot be used: {second}"
    if second is not None and second.video_id == first.video_id:
        return f"both clips come from the video {first.video_id}"
    if first.label is None:  # the list says what the clip is
        first = replace(first, label=SET_LABELS[pl.name][0])
    return Planned(subset=pl.name, split=pl.split, type=pl.name, first=first, frames=first, second=second)
