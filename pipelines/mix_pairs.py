"""Pair lists: the published six-column CSVs of the evaluation sets (ours and AudioScope's).

``path1,start1,end1,path2,start2,end2`` per example (single mixtures leave the
last three empty); file names say the split and set (ours:
``validation_onscreen_mom_pairs.csv``; published:
``filtered_test_onscreen_unanimous_plus_offscreen_unanimous_mom_clips.csv``).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from audioscope import storage

if TYPE_CHECKING:  # pragma: no cover
    from audioscope.pipelines.mix_plan import Planned

EVAL_SPLITS: tuple[str, ...] = ("validation", "test")
_MMCOMMONS = "data/videos/mp4/"


def published_path(uri: str) -> str:
    """How a pair list names a video: its multimedia-commons path when it has one, else its URI."""
    at = uri.find(_MMCOMMONS)
    return uri[at:] if at >= 0 else uri


def _seconds(x: float) -> str:
    return repr(float(x))


def pairs_csv(examples: Iterable["Planned"]) -> str:
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
        try:
            rows, bad = parse_pairs(storage.read_text(path), path)
        except (UnicodeDecodeError, csv.Error) as e:
            problems.append(f"{path}: not a text CSV ({type(e).__name__}); ignored")
            continue
        problems += bad
        lists.append(PairList(source=path, split=kind[0], name=kind[1], rows=tuple(rows)))
    return lists, problems
