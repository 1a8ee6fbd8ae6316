"""Which raters label which clip: exactly three distinct raters per clip, balanced, deterministic.

Label Studio Community has no distinct-annotator assignment, so the toolkit
makes it: each rater has a project of their own (see ``annotation/push.py``)
and a clip is imported into the projects of exactly the three raters it is
assigned to. The assignment is kept in ``assignment.parquet`` of the
annotation folder and only grows:

* a clip keeps the raters it was given (push again, a larger pool, more
  raters: nothing moves);
* new clips are taken in the order of their rank (``clip_rank``: first 8
  bytes of ``sha256(f"{seed}:{clip_id}")``), and each goes to the three
  raters with the fewest clips so far, ties broken by
  ``sha256(f"{seed}:{clip_id}:{rater}")``; so every rater gets
  ``3 * clips / N`` clips, give or take one, and the same inputs always give
  the same assignment;
* a rater who answered "can't tell / the clip does not play" is replaced
  once: the clip goes to one more rater (the least loaded not yet given it),
  when there is one (``reason = "requeued"``); with only three raters the
  clip is reported instead.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Sequence

import pandas as pd
import pyarrow as pa

from audioscope.annotation.pools import clip_rank

RATERS_PER_CLIP = 3

#: One row per (clip, rater) given to that rater.
ASSIGNMENT_SCHEMA = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("rater", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),  # "assigned" or "requeued"
        pa.field("replaces", pa.string()),  # the rater who could not tell (requeued rows)
    ],
    metadata={b"audioscope.table": b"annotation_assignment"},
)
COLUMNS = list(ASSIGNMENT_SCHEMA.names)


def _tie(seed: int, clip_id: str, rater: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{clip_id}:{rater}".encode("utf-8")).digest()[:8], "big")


def empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS})


def assign(
    clips: Iterable[str],
    raters: Sequence[str],
    previous: pd.DataFrame | None = None,
    cant_tell: Iterable[tuple[str, str]] = (),
    seed: int = 0,
) -> pd.DataFrame:
    """The assignment after adding ``clips`` and re-queueing ``cant_tell`` (clip, rater) pairs (module docstring)."""
    from audioscope.errors import UserError

    raters = sorted(set(raters))
    if len(raters) < RATERS_PER_CLIP:
        raise UserError(
            f"{len(raters)} rater account(s): each clip needs {RATERS_PER_CLIP} distinct raters; start the server "
            "with --raters NAME1,NAME2,NAME3[,...]"
        )
    rows = [] if previous is None or previous.empty else previous[COLUMNS].to_dict("records")
    given: dict[str, set[str]] = {}
    load = {r: 0 for r in raters}
    for row in rows:
        given.setdefault(row["clip_id"], set()).add(row["rater"])
        if row["rater"] in load:
            load[row["rater"]] += 1

    def least_loaded(clip_id: str, n: int) -> list[str]:
        free = [r for r in raters if r not in given.get(clip_id, set())]
        return sorted(free, key=lambda r: (load[r], _tie(seed, clip_id, r)))[:n]

    new = sorted({c for c in clips if c not in given}, key=lambda c: (clip_rank(c, seed), c))
    for clip_id in new:
        for r in least_loaded(clip_id, RATERS_PER_CLIP):
            rows.append({"clip_id": clip_id, "rater": r, "reason": "assigned", "replaces": None})
            given.setdefault(clip_id, set()).add(r)
            load[r] += 1
    replaced = {(row["clip_id"], row["replaces"]) for row in rows if row["reason"] == "requeued"}
    for clip_id, rater in sorted(set(cant_tell)):
        if (clip_id, rater) in replaced or clip_id not in given:
            continue
        for r in least_loaded(clip_id, 1):
            rows.append({"clip_id": clip_id, "rater": r, "reason": "requeued", "replaces": rater})
            given[clip_id].add(r)
            load[r] += 1
    out = pd.DataFrame(rows, columns=COLUMNS) if rows else empty()
    return out.sort_values(["clip_id", "rater"], kind="mergesort").reset_index(drop=True)


def check(assignment: pd.DataFrame) -> list[str]:
    """What is wrong with an assignment read back (a clip with fewer than 3 or repeated raters)."""
    problems = []
    per_clip = assignment.groupby("clip_id")["rater"]
    few = int((per_clip.nunique() < RATERS_PER_CLIP).sum())
    if few:
        problems.append(f"{few} clips are assigned to fewer than {RATERS_PER_CLIP} distinct raters")
    dup = int(assignment.duplicated(["clip_id", "rater"]).sum())
    if dup:
        problems.append(f"{dup} (clip, rater) pairs are assigned twice")
    return problems
