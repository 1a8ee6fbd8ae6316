"""The plan of a mixture directory: every example of every shard, decided before any media is read.

``audioscope mix`` plans on the launcher and writes with Beam
(:mod:`audioscope.pipelines.mix`), so the same seed gives the same bytes on
every runner. The plan is pure Python over sorted inputs:

* ``NOn``: frames and audio of a Df train clip; ``SOff``: frames of a Df
  clip, audio of a clip of another Df video; ``LOn``/``LOff``: frames and
  audio of a unanimously labeled train clip, every other one a single mixture
  (no second mixture). The second mixture is the audio of a Df train clip
  from a video that is in no other part of the example (SPEC.md 2.6).
* Types are interleaved by a low-discrepancy schedule that restarts at every
  shard: the first k examples of a shard hold each type within one example of
  k times its proportion.
* Evaluation sets (SPEC.md 2.7) come from unanimously labeled validation and
  test clips (each first clip of a MoM set gets ``mom_partners`` partners from
  other videos; the published lists pair each clip with 5), or exactly from
  pair CSVs in the published format.
* Randomness is a hash of (seed, purpose, position) (:func:`hash64`), not a
  random generator's stream, so the plan does not depend on library versions.

It also makes what is derived from the plan alone: ``examples.parquet``, the
pair CSVs and ``summary.json``. No Beam and no TensorFlow here.
"""

from __future__ import annotations

import csv
import hashlib
import heapq
import io
import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from typing import Any, Iterable, Iterator, Mapping, Sequence

import pandas as pd

from audioscope import storage
from audioscope.schemas import records
from audioscope.schemas.records import EVAL_SETS, LOFF, LON, NON, SOFF, TRAIN_TYPES
from audioscope.schemas.tables import LABEL_OFFSCREEN_ONLY, LABEL_ONSCREEN_ONLY

FORMAT_VERSION = 1
#: Shard size target (bytes); about 470 examples of ~566 kB.
DEFAULT_SHARD_BYTES = 256 * 2**20
#: Second clips per first clip in the evaluation MoM sets (the published lists use 5).
DEFAULT_MOM_PARTNERS = 5

#: The named batch recipes (SPEC.md 2.6) and their default type proportions.
RECIPES: dict[str, dict[str, float]] = {
    "unsupervised": {NON: 1.0},
    "unsupervised-soff25": {NON: 0.75, SOFF: 0.25},
    "semi-supervised": {NON: 0.5, SOFF: 0.25, LON: 0.125, LOFF: 0.125},
}
EVAL_SPLITS: tuple[str, ...] = ("validation", "test")
#: The label of an evaluation set's first clip, and of its partner (MoM sets).
SET_LABELS: dict[str, tuple[str, str | None]] = {
    "onscreen_single": (LABEL_ONSCREEN_ONLY, None),
    "offscreen_single": (LABEL_OFFSCREEN_ONLY, None),
    "onscreen_mom": (LABEL_ONSCREEN_ONLY, LABEL_OFFSCREEN_ONLY),
    "offscreen_mom": (LABEL_OFFSCREEN_ONLY, LABEL_OFFSCREEN_ONLY),
}
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_MMCOMMONS = "data/videos/mp4/"


class PlanError(ValueError):
    """A recipe or set cannot be planned from these inputs (the message says why)."""


# --------------------------------------------------------------------------- layout


class MixLayout:
    """Where each part of a mixture directory lives (local path or URI); shard paths are relative."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/") if "://" in root else root

    def path(self, rel: str) -> str:
        return storage.join(self.root, *rel.split("/"))

    mix_json = property(lambda self: self.path("mix.json"))
    summary_json = property(lambda self: self.path("summary.json"))
    examples_parquet = property(lambda self: self.path("examples.parquet"))
    work_dir = property(lambda self: self.path("work"))
    failed_dir = property(lambda self: self.path("failed"))

    def existing_shards(self) -> dict[str, int]:
        """Every shard file that exists (path relative to the root, ``/`` separated) and its size,
        from one listing; temporary names are skipped."""
        root = self.root.rstrip("/")
        return {
            p[len(root) + 1 :].replace("\\", "/"): n for p, n in storage.iter_sizes(root) if p.endswith(".tfrecord")
        }

    def work_file(self, i: int, n: int) -> str:
        return self.path(f"work/work-{i:05d}-of-{n:05d}.jsonl")

    def failed(self, shard: str) -> str:
        """The failure marker of a shard (its relative path with ``/`` as ``__``)."""
        return self.path(f"failed/{shard.replace('/', '__')}.json")


def shard_name(folder: str, stem: str, i: int, n: int) -> str:
    return f"{folder}/{stem}-{i:05d}-of-{n:05d}.tfrecord"


def pairs_csv_path(split: str, name: str) -> str:
    return f"eval/{split}/{name}/{split}_{name}_pairs.csv"


# --------------------------------------------------------------------------- recipes


@dataclass(frozen=True)
class Recipe:
    """A named batch recipe: the proportion of each training type (summing to 1)."""

    name: str
    proportions: Mapping[str, float]

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"recipe name {self.name!r}: use lowercase letters, digits, '-' and '_'")
        unknown = sorted(set(self.proportions) - set(TRAIN_TYPES))
        if unknown:
            raise ValueError(f"recipe {self.name}: unknown types {unknown}; the types are {', '.join(TRAIN_TYPES)}")
        values = list(self.proportions.values())
        if any(not math.isfinite(v) or v < 0 for v in values) or abs(sum(values) - 1.0) > 1e-6:
            raise ValueError(f"recipe {self.name}: proportions must be >= 0 and sum to 1, got {dict(self.proportions)}")

    def to_json(self) -> dict[str, float]:
        return {t: float(self.proportions.get(t, 0.0)) for t in TRAIN_TYPES}


def parse_recipe(text: str) -> Recipe:
    """``NAME`` (a known recipe) or ``NAME:TYPE=P,TYPE=P,...`` (proportions for any name)."""
    name, _, spec = text.partition(":")
    name = name.strip()
    if not spec:
        if name not in RECIPES:
            raise ValueError(
                f"unknown recipe {name!r}: use one of {', '.join(RECIPES)} or give proportions, "
                "e.g. mine:NOn=0.5,SOff=0.5"
            )
        return Recipe(name, dict(RECIPES[name]))
    proportions: dict[str, float] = {}
    for part in spec.split(","):
        key, eq, value = part.partition("=")
        by_lower = {t.lower(): t for t in TRAIN_TYPES}
        if not eq or key.strip().lower() not in by_lower:
            raise ValueError(f"recipe {text!r}: write TYPE=PROPORTION with TYPE one of {', '.join(TRAIN_TYPES)}")
        try:
            proportions[by_lower[key.strip().lower()]] = float(value)
        except ValueError:
            raise ValueError(f"recipe {text!r}: {value!r} is not a number") from None
    return Recipe(name, proportions)


def type_schedule(n: int, proportions: Mapping[str, float]) -> list[str]:
    """``n`` types interleaved so that every prefix holds each type within one of its share.

    Exact integer credits (proportions as fractions): each step every type
    earns its weight, the type with the most credit (ties: the order of
    :data:`TRAIN_TYPES`) is taken and pays the total weight.
    """
    types = [t for t in TRAIN_TYPES if proportions.get(t, 0) > 0]
    fractions = {t: Fraction(proportions[t]).limit_denominator(10**6) for t in types}
    denominator = math.lcm(*(f.denominator for f in fractions.values())) if types else 1
    weights = {t: int(f * denominator) for t, f in fractions.items()}
    total = sum(weights.values())
    credit = dict.fromkeys(types, 0)
    out: list[str] = []
    for _ in range(n):
        for t in types:
            credit[t] += weights[t]
        best = max(types, key=lambda t: credit[t])
        credit[best] -= total
        out.append(best)
    return out


def shard_sizes(total: int, per_shard: int) -> list[int]:
    """``total`` examples in ceil(total / per_shard) shards of near-equal size (larger first)."""
    if total <= 0:
        return []
    n = math.ceil(total / max(1, per_shard))
    base, extra = divmod(total, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


def examples_per_shard(shard_bytes: int) -> int:
    """How many examples fit the byte target (at least one)."""
    return max(1, int(shard_bytes) // records.estimated_bytes())


def hash64(*parts: object) -> int:
    """A 64-bit number from the parts (BLAKE2b): the plan's only source of randomness."""
    text = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


# --------------------------------------------------------------------------- clips and examples


@dataclass(frozen=True)
class ClipRef:
    """A clip of the store as the plan uses it: where it is, its licence, label and score."""

    clip_id: str
    video_id: str
    start: float
    end: float
    path: str
    licence_name: str | None = None
    licence_url: str | None = None
    label: str | None = None
    votes_onscreen: tuple[int, ...] = ()
    votes_offscreen: tuple[int, ...] = ()
    score: float | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["votes_onscreen"], d["votes_offscreen"] = list(self.votes_onscreen), list(self.votes_offscreen)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "ClipRef":
        return cls(**{**d, "votes_onscreen": tuple(d["votes_onscreen"]), "votes_offscreen": tuple(d["votes_offscreen"])})


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

    def to_json(self) -> dict[str, Any]:
        return {
            "subset": self.subset, "split": self.split, "type": self.type, "first": self.first.to_json(),
            "frames": None if self.frames == self.first else self.frames.to_json(),
            "second": None if self.second is None else self.second.to_json(),
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

    def work_line(self) -> str:
        return json.dumps({"path": self.path, "examples": [e.to_json() for e in self.examples]}, sort_keys=True)


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
    check_recipe(recipe, pools)
    df = pools.df_train
    firsts = {
        NON: _Cycle(df, seed, recipe.name, NON),
        SOFF: _Cycle(df, seed, recipe.name, SOFF),
        LON: _Cycle(pools.label_pool("train", LABEL_ONSCREEN_ONLY) or df, seed, recipe.name, LON),
        LOFF: _Cycle(pools.label_pool("train", LABEL_OFFSCREEN_ONLY) or df, seed, recipe.name, LOFF),
    }
    sizes = shard_sizes(total, per_shard)
    types = [t for size in sizes for t in type_schedule(size, recipe.proportions)]  # restarts at every shard
    examples = [_training_example(recipe.name, t, firsts[t], df, seed, i) for i, t in enumerate(types)]
    return cut_into_shards(f"train/{recipe.name}", recipe.name, examples, sizes)


def cut_into_shards(folder: str, stem: str, examples: Sequence[Planned], sizes: Sequence[int]) -> list[Shard]:
    """``examples`` in order, cut into shards of ``sizes`` named ``<folder>/<stem>-i-of-n.tfrecord``."""
    shards, i = [], 0
    for s, size in enumerate(sizes):
        shards.append(Shard(shard_name(folder, stem, s, len(sizes)), list(examples[i : i + size])))
        i += size
    return shards


def _training_example(name: str, t: str, cycle: _Cycle, df: Sequence[ClipRef], seed: int, i: int) -> Planned:
    """Example ``i`` of a recipe, of type ``t`` (its first clip from ``cycle``)."""
    shown = cycle.next()
    first = shown
    if t == SOFF:
        first = pick_other(df, {shown.video_id}, seed, name, i, "audio")
    single = t in (LON, LOFF) and (cycle.taken - 1) % 2 == 1
    second = None if single else pick_other(df, {shown.video_id, first.video_id}, seed, name, i, "second")
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
    return cut_into_shards(f"eval/{split}/{name}", name, examples, shard_sizes(len(examples), per_shard))


# --------------------------------------------------------------------------- pair lists


def published_path(uri: str) -> str:
    """How a pair list names a video: its multimedia-commons path when it has one, else its URI."""
    at = uri.find(_MMCOMMONS)
    return uri[at:] if at >= 0 else uri


def _seconds(x: float) -> str:
    return repr(float(x))


def pairs_csv(examples: Iterable[Planned]) -> str:
    """The published six-column pair list (single mixtures: the last three fields empty)."""
    from audioscope.schemas.tables import PAIRS, to_table

    rows = []
    for e in examples:
        second = e.second
        rows.append({
            "path1": published_path(e.first.path), "start1": e.first.start, "end1": e.first.end,
            "path2": None if second is None else published_path(second.path),
            "start2": None if second is None else second.start, "end2": None if second is None else second.end,
        })  # fmt: skip
    table = to_table(rows, PAIRS)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for r in table.to_pylist():
        second = [] if r["path2"] is None else [r["path2"], _seconds(r["start2"]), _seconds(r["end2"])]
        writer.writerow([r["path1"], _seconds(r["start1"]), _seconds(r["end1"]), *(second or ["", "", ""])])
    return out.getvalue()


#: One row of a pair list: path1, start1, end1, path2, start2, end2 (clip 2 None for a single mixture).
PairRow = tuple[str, float, float, str | None, float | None, float | None]


@dataclass(frozen=True)
class PairList:
    """The rows of one pair CSV: which split and set it is, and its (path, start, end) pairs."""

    source: str
    split: str
    name: str
    rows: tuple[PairRow, ...]


def pair_list_kind(filename: str) -> tuple[str, str] | None:
    """(split, set) that a pair CSV's file name names, or None (train lists, other files).

    Ours (``validation_onscreen_mom_pairs.csv``) and the published names
    (``filtered_test_onscreen_unanimous_plus_offscreen_unanimous_mom_clips.csv``,
    ``filtered_validate_offscreen_unanimous_clips.csv``) are both understood.
    """
    from audioscope.sources.lists import split_from_name

    words = re.split(r"[^a-z0-9]+", filename.rsplit("/", 1)[-1].lower())
    first = next((w for w in words if w in ("onscreen", "offscreen")), None)
    split = split_from_name(filename)
    if split not in EVAL_SPLITS or first is None:
        return None
    return split, f"{first}_{'mom' if 'mom' in words else 'single'}"


def parse_pairs(text: str, source: str) -> tuple[list[PairRow], list[str]]:
    """Rows of a pair CSV (3 or 6 fields; a header line is skipped) and the problems of bad rows."""
    rows, problems = [], []
    for n, fields in enumerate(csv.reader(io.StringIO(text)), 1):
        fields = [f.strip() for f in fields]
        if not fields or not any(fields) or fields[0].startswith("#"):
            continue
        try:
            rows.append(_pair_row(fields))
        except ValueError as e:
            if n == 1 and not rows and "path" in fields[0].lower():
                continue  # a header
            problems.append(f"{source}:{n}: {e}")
    return rows, problems


def _pair_row(fields: list[str]) -> PairRow:
    if len(fields) == 3 or (len(fields) == 6 and not any(fields[3:])):
        return fields[0], float(fields[1]), float(fields[2]), None, None, None
    if len(fields) == 6 and all(fields):
        return fields[0], float(fields[1]), float(fields[2]), fields[3], float(fields[4]), float(fields[5])
    raise ValueError(f"expected path,start,end[,path,start,end], got {len(fields)} fields")


def read_pairs_dir(directory: str) -> tuple[list[PairList], list[str]]:
    """Every validation/test pair CSV under ``directory`` (sorted by path) and the problems found."""
    lists, problems = [], []
    for path in storage.list_files(directory, ".csv"):
        kind = pair_list_kind(path)
        if kind is None:
            problems.append(f"{path}: not a validation or test on-/off-screen list by its name; ignored")
            continue
        rows, bad = parse_pairs(storage.read_text(path), path)
        problems += bad
        lists.append(PairList(source=path, split=kind[0], name=kind[1], rows=tuple(rows)))
    return lists, problems


# --------------------------------------------------------------------------- inputs


def licence_excluded(name: str | None, url: str | None, patterns: Sequence[str]) -> bool:
    """True when a case-insensitive pattern is in the licence name or URL."""
    text = f"{name or ''}\n{url or ''}".casefold()
    return any(p.casefold() in text for p in patterns if p)


class Catalog:
    """The store's clips that the plan may use: in the index, with media, licence not excluded.

    Everything else is counted in :attr:`left_out` (by use, then reason).
    Labels and Df scores are attached to the clips it hands out.
    """

    def __init__(
        self, index: pd.DataFrame, media_videos: set[str], exclude_licences: Sequence[str] = (),
        labels: pd.DataFrame | None = None, scores: Mapping[str, float] | None = None,
    ) -> None:
        cols = ["clip_id", "video_id", "start", "end", "source_uri", "licence_name", "licence_url"]
        self.index = index[cols].drop_duplicates("clip_id").set_index("clip_id")
        self.media = set(media_videos)
        self.exclude = tuple(exclude_licences)
        self.scores = dict(scores or {})
        self.labels = {} if labels is None else {
            str(r.clip_id): (r.label, tuple(int(v) for v in r.onscreen_votes), tuple(int(v) for v in r.offscreen_votes))
            for r in labels.itertuples(index=False)
        }  # fmt: skip
        self.left_out: dict[str, dict[str, int]] = {}
        self._video_by_path: dict[str, str] | None = None

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
            videos = self.index.drop_duplicates("video_id")
            self._video_by_path = {}
            for vid, uri in zip(videos["video_id"], videos["source_uri"]):
                self._video_by_path.setdefault(published_path(str(uri)), str(vid))
                self._video_by_path[str(uri)] = str(vid)
        video = self._video_by_path.get(path) or self._video_by_path.get(published_path(path)) or video_id_for(path)
        row = next(self._rows([clip_id(video, start)]))
        return self._reason(row) or self._ref(row)


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


# --------------------------------------------------------------------------- the whole plan


@dataclass(frozen=True, kw_only=True)
class MixConfig:
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
class Plan:
    """Every shard to write, the counts they hold and what was left out (``notes``)."""

    shards: list[Shard]
    counts: dict[str, Any]
    notes: dict[str, Any]

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for shard in self.shards:
            digest.update(shard.work_line().encode("utf-8") + b"\n")
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
    config: MixConfig,
) -> Plan:
    """The whole plan: training shards of every recipe, then the evaluation sets."""
    pools = build_pools(catalog, df, labels)
    per_shard = examples_per_shard(config.shard_bytes)
    total = config.examples if config.examples is not None else len(pools.df_train)
    shards: list[Shard] = []
    counts: dict[str, Any] = {"train": {}, "eval": {}}
    skipped: dict[str, str] = {}
    for recipe in config.recipes:
        if labels is None and any(recipe.proportions.get(t, 0) > 0 for t in (LON, LOFF)):
            skipped[f"train/{recipe.name}"] = "no --labels given: LOn/LOff examples need the annotation step's labels.parquet"
            continue
        try:
            planned = plan_recipe(recipe, pools, total, config.seed, per_shard)
        except PlanError as e:
            skipped[f"train/{recipe.name}"] = str(e)
            continue
        shards += planned
        counts["train"][recipe.name] = training_counts(planned)
    notes: dict[str, Any] = {"skipped": skipped, "pair_problems": []}
    if pair_lists is not None:
        sets, notes["pair_problems"] = eval_from_pairs(catalog, pair_lists)
    elif labels is not None:
        sets = {(s, n): plan_eval_set(pools, s, n, config.seed, config.mom_partners) for s in EVAL_SPLITS for n in EVAL_SETS}
    else:
        sets = {}
        skipped["eval"] = "no --labels given: the evaluation sets need unanimous validation and test labels"
    for (split, name), examples in sorted(sets.items(), key=lambda kv: (EVAL_SPLITS.index(kv[0][0]), EVAL_SETS.index(kv[0][1]))):
        shards += eval_shards(split, name, examples, per_shard)
        counts["eval"].setdefault(split, {})[name] = len(examples)
    notes["left_out"] = catalog.left_out
    return Plan(shards=shards, counts=counts, notes=notes)


def training_counts(shards: Sequence[Shard]) -> dict[str, int]:
    """total, one count per type, and how many are mixtures of mixtures / single mixtures."""
    examples = [e for s in shards for e in s.examples]
    out = {"total": len(examples), **{t: sum(e.type == t for e in examples) for t in TRAIN_TYPES}}
    out["mom"] = sum(e.is_mom for e in examples)
    out["single"] = out["total"] - out["mom"]
    return out


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


# --------------------------------------------------------------------------- outputs


def first_clip_info(e: Planned) -> tuple[str, tuple[int, ...], tuple[int, ...], float]:
    """Label, votes and score of clip 1. They describe it as a clip (its own audio
    with its own frames), so an SOff example, whose frames come from another
    video, has none."""
    first = e.first
    if e.frames != first:
        return "", (), (), math.nan
    return first.label or "", first.votes_onscreen, first.votes_offscreen, math.nan if first.score is None else first.score


def example_rows(plan: Plan) -> list[dict[str, Any]]:
    """One EXAMPLES row per planned example, in (shard, index) order."""
    rows = []
    for shard in sorted(plan.shards, key=lambda s: s.path):
        for i, e in enumerate(shard.examples):
            label, _, _, score = first_clip_info(e)
            second = e.second
            rows.append({
                "shard": shard.path, "index": i, "subset": e.subset, "split": e.split, "type": e.type,
                "is_mom": e.is_mom, "frames_clip_id": e.frames.clip_id,
                "clip_id1": e.first.clip_id, "video_id1": e.first.video_id, "start1": e.first.start,
                "end1": e.first.end, "path1": published_path(e.first.path),
                "clip_id2": second and second.clip_id, "video_id2": second and second.video_id,
                "start2": second and second.start, "end2": second and second.end,
                "path2": second and published_path(second.path),
                "label1": label or None, "score1": None if math.isnan(score) else score,
                "licence_name1": e.first.licence_name, "licence_url1": e.first.licence_url,
                "licence_name2": second and second.licence_name, "licence_url2": second and second.licence_url,
                "frames_licence_name": e.frames.licence_name, "frames_licence_url": e.frames.licence_url,
            })  # fmt: skip
    return rows


def examples_parquet(plan: Plan) -> bytes:
    """``examples.parquet`` bytes (schemas.tables.EXAMPLES; deterministic)."""
    import pyarrow.parquet as pq

    from audioscope.schemas.tables import EXAMPLES, to_table

    buf = io.BytesIO()
    pq.write_table(to_table(example_rows(plan), EXAMPLES), buf, compression="zstd")
    return buf.getvalue()


def eval_sets(plan: Plan) -> dict[tuple[str, str], list[Planned]]:
    """The planned examples of each evaluation set (split, set), in shard order."""
    out: dict[tuple[str, str], list[Planned]] = {}
    for shard in plan.shards:
        for e in shard.examples:
            if e.split != "train":
                out.setdefault((e.split, e.subset), []).append(e)
    return out


def summary(plan: Plan, config: MixConfig, inputs: Mapping[str, Any], shard_bytes: Mapping[str, int]) -> dict[str, Any]:
    """``summary.json``: versions, every option, inputs, counts, shards (with sizes) and notes."""
    from audioscope import __version__
    from audioscope.schemas.tables import SCHEMA_VERSIONS

    return {
        "format_version": FORMAT_VERSION,
        "schema_versions": {
            "mixture_record": records.SCHEMA_VERSION, "examples": SCHEMA_VERSIONS["examples"],
            "pairs": SCHEMA_VERSIONS["pairs"],
        },
        "toolkit_version": __version__,
        "config": config.to_json(),
        "inputs": dict(inputs),
        "plan_sha256": plan.sha256(),
        "counts": plan.counts,
        "shards": [{"path": s.path, "examples": len(s.examples), "bytes": int(shard_bytes[s.path])} for s in plan.shards],
        "examples": "examples.parquet",
        "pairs": [pairs_csv_path(split, name) for split, name in eval_sets(plan)],
        "notes": plan.notes,
    }  # fmt: skip


def write_outputs(layout: MixLayout, plan: Plan, config: MixConfig, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """After every shard exists: examples.parquet, the pair CSVs, then summary.json (last)."""
    sizes = layout.existing_shards()
    storage.atomic_write(layout.examples_parquet, examples_parquet(plan))
    for (split, name), examples in eval_sets(plan).items():
        storage.atomic_write(layout.path(pairs_csv_path(split, name)), pairs_csv(examples))
    result = summary(plan, config, inputs, sizes)
    storage.atomic_write(layout.summary_json, json.dumps(result, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return result
