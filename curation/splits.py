"""Train / validation / test splits, assigned per video, deterministically.

A video's split depends only on its id, the seed and the ratios:

    u = int.from_bytes(sha256(f"{seed}:{video_id}").digest()[:8], "big") / 2**64
    train if u < r_train, validation if u < r_train + r_validation, else test

so adding videos to a corpus never moves a video that is already assigned,
and all clips of one video share its split. A video that already carries a
published split (an imported AudioScope list names it in its file name) keeps
that split instead.

Split names are the ones :mod:`audioscope.sources.lists` uses
(``train``, ``validation``, ``test``); the published CSV file names spell the
middle one ``validate`` (see :data:`CSV_NAMES`).

Standard library only: releases and the CLI import it cheaply.
"""

from __future__ import annotations

import hashlib
import math
from typing import Iterable, Mapping

#: Split names, their published CSV spelling and the default ratios are part
#: of the Df's contract (schemas.tables); re-exported here.
from audioscope.schemas.tables import CSV_NAMES, DEFAULT_RATIOS, SPLITS  # noqa: E402,F401

_ALIASES = {
    "train": "train",
    "validation": "validation", "validate": "validation", "val": "validation",
    "valid": "validation", "dev": "validation",
    "test": "test", "eval": "test",
}  # fmt: skip


def parse_ratios(text: str | Iterable[float]) -> tuple[float, float, float]:
    """Three non-negative numbers summing to 1 (train, validation, test).

    Accepts ``"0.8,0.1,0.1"`` or a sequence of numbers; raises ``ValueError``
    with a message saying what is wrong.
    """
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",")]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ValueError(
                f"split ratios {text!r} are not numbers: give three numbers for train,validation,test "
                "such as 0.8,0.1,0.1"
            ) from None
    else:
        values = [float(v) for v in text]
    if len(values) != 3:
        raise ValueError(
            f"expected 3 split ratios (train,validation,test), got {len(values)}: e.g. 0.8,0.1,0.1"
        )
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"split ratios must be finite and >= 0, got {','.join(f'{v:g}' for v in values)}")
    if abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(
            f"split ratios must sum to 1, these sum to {sum(values):g}: e.g. 0.8,0.1,0.1"
        )
    return (values[0], values[1], values[2])


def split_unit(video_id: str, seed: int | str = 0) -> float:
    """The video's position in [0, 1): the first 8 bytes of sha256(f"{seed}:{video_id}") / 2**64."""
    digest = hashlib.sha256(f"{seed}:{video_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def hashed_split(video_id: str, ratios: tuple[float, float, float] = DEFAULT_RATIOS, seed: int | str = 0) -> str:
    """The split of a video without a published split (see the module docstring)."""
    u = split_unit(video_id, seed)
    if u < ratios[0]:
        return "train"
    if u < ratios[0] + ratios[1]:
        return "validation"
    return "test"


def normalise_split(value: str) -> str:
    """``train`` / ``validation`` / ``test`` from the usual spellings; ``ValueError`` otherwise."""
    v = _ALIASES.get(str(value).strip().lower())
    if v is None:
        raise ValueError(f"unknown split {value!r}: use one of {', '.join(SPLITS)}")
    return v


def assign_splits(
    video_ids: Iterable[str],
    ratios: tuple[float, float, float] = DEFAULT_RATIOS,
    seed: int | str = 0,
    published: Mapping[str, str | None] | None = None,
) -> dict[str, str]:
    """The split of every video: its published split when it has one, else :func:`hashed_split`."""
    published = published or {}
    out: dict[str, str] = {}
    for vid in video_ids:
        given = published.get(vid)
        out[vid] = normalise_split(given) if given else hashed_split(vid, ratios, seed)
    return out
