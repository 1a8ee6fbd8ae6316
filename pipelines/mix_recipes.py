"""Training recipes of a mixtures folder: type proportions, their interleaving, shard sizes, hashing.

A recipe names the proportion of each training type (``NOn``, ``SOff``, ``LOn``,
``LOff``, docs/recipe.md); :func:`type_schedule` interleaves the types so that
every prefix of a shard holds each within one example of its share, and
:func:`hash64` is the plan's only source of randomness (a hash of seed,
purpose and position, so the plan does not depend on library versions).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Mapping

from audioscope.schemas import records
from audioscope.schemas.records import LOFF, LON, NON, SOFF, TRAIN_TYPES

#: Shard size target (bytes); see :func:`examples_per_shard`.
DEFAULT_SHARD_BYTES = 256 * 2**20

#: The named batch recipes (docs/recipe.md) and their default type proportions.
RECIPES: dict[str, dict[str, float]] = {
    "unsupervised": {NON: 1.0},
    "unsupervised-soff25": {NON: 0.75, SOFF: 0.25},
    "semi-supervised": {NON: 0.5, SOFF: 0.25, LON: 0.125, LOFF: 0.125},
}
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")

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
