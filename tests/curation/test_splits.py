"""audioscope.curation.splits: deterministic per-video splits."""

from __future__ import annotations

import hashlib

import pytest

from audioscope.curation.splits import (
    SPLITS,
    assign_splits,
    hashed_split,
    parse_ratios,
    split_unit,
)
from audioscope.sources.lists import SPLITS as LIST_SPLITS


def test_split_names_are_the_list_readers():
    assert SPLITS == LIST_SPLITS


def test_unit_is_the_documented_hash():
    vid, seed = "827f6b53467db2d5218ed8247418c4c", 7
    digest = hashlib.sha256(b"7:827f6b53467db2d5218ed8247418c4c").digest()
    assert split_unit(vid, seed) == int.from_bytes(digest[:8], "big") / 2**64
    assert 0 <= split_unit(vid, seed) < 1


def test_split_follows_the_unit_and_the_ratios():
    ratios = (0.6, 0.25, 0.15)
    for i in range(300):
        vid = f"v{i:04d}"
        u = split_unit(vid, 3)
        expected = "train" if u < 0.6 else "validation" if u < 0.85 else "test"
        assert hashed_split(vid, ratios, 3) == expected


def test_splits_are_deterministic_and_roughly_proportional():
    ids = [f"vid{i}" for i in range(4000)]
    a = assign_splits(ids, (0.8, 0.1, 0.1), seed=1)
    assert a == assign_splits(list(reversed(ids)), (0.8, 0.1, 0.1), seed=1)
    counts = {s: sum(v == s for v in a.values()) for s in SPLITS}
    assert 0.77 < counts["train"] / 4000 < 0.83
    assert 0.08 < counts["validation"] / 4000 < 0.12
    assert a != assign_splits(ids, (0.8, 0.1, 0.1), seed=2)


def test_adding_videos_never_moves_existing_ones():
    old = [f"old{i}" for i in range(500)]
    new = [f"new{i}" for i in range(500)]
    before = assign_splits(old, seed=0)
    after = assign_splits(new + old, seed=0)
    assert {v: after[v] for v in old} == before


def test_published_split_wins():
    ids = [f"v{i}" for i in range(50)]
    got = assign_splits(ids, (1.0, 0.0, 0.0), seed=0, published={"v3": "test", "v4": "validate", "v5": None})
    assert got["v3"] == "test" and got["v4"] == "validation"
    assert all(got[v] == "train" for v in ids if v not in ("v3", "v4"))


def test_degenerate_ratios():
    ids = [f"v{i}" for i in range(200)]
    assert set(assign_splits(ids, (0.0, 0.0, 1.0)).values()) == {"test"}
    assert set(assign_splits(ids, (0.0, 1.0, 0.0)).values()) == {"validation"}


def test_parse_ratios():
    assert parse_ratios("0.8,0.1,0.1") == (0.8, 0.1, 0.1)
    assert parse_ratios(" 0.7, 0.2 ,0.1 ") == (0.7, 0.2, 0.1)
    assert parse_ratios([1, 0, 0]) == (1.0, 0.0, 0.0)
    for bad, match in [
        ("0.8,0.2", "expected 3"),
        ("0.8,0.1,0.2", "sum to 1"),
        ("1.2,-0.1,-0.1", ">= 0"),
        ("a,b,c", "not numbers"),
        ("nan,0.5,0.5", "finite"),
    ]:
        with pytest.raises(ValueError, match=match):
            parse_ratios(bad)
