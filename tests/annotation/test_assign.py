"""Rater assignment without a server: 3 distinct raters per clip, balanced, deterministic, stable, re-queued."""

from __future__ import annotations

import pytest

from audioscope.annotation.assign import assign, check
from audioscope.errors import UserError

RATERS = [f"rater{i}" for i in range(1, 6)]
CLIPS = [f"v{i // 10:03d}-{(i % 10) * 1000:07d}" for i in range(200)]


def test_three_distinct_raters_per_clip_balanced_and_deterministic():
    a = assign(CLIPS, RATERS, seed=3)
    per_clip = a.groupby("clip_id")["rater"].agg(list)
    assert len(per_clip) == 200 and all(len(r) == 3 and len(set(r)) == 3 for r in per_clip)
    load = a["rater"].value_counts()
    assert load.max() - load.min() <= 1 and load.sum() == 600
    assert a.equals(assign(list(reversed(CLIPS)), RATERS, seed=3))  # order of the input does not matter
    assert not a.equals(assign(CLIPS, RATERS, seed=4))
    assert check(a) == []


def test_more_clips_and_raters_move_nothing():
    first = assign(CLIPS[:100], RATERS[:3])
    later = assign(CLIPS, RATERS + ["rater6"], previous=first)
    kept = later.merge(first, on=["clip_id", "rater"])
    assert len(kept) == len(first)  # every earlier (clip, rater) pair is still there
    assert later.groupby("clip_id")["rater"].nunique().eq(3).all()
    assert set(later.loc[later["clip_id"].isin(CLIPS[100:]), "rater"]) >= {"rater4", "rater5", "rater6"}


def test_cant_tell_goes_to_one_more_rater_once_and_three_raters_cannot_requeue():
    a = assign(CLIPS[:10], RATERS)
    clip = CLIPS[0]
    who = sorted(a.loc[a["clip_id"] == clip, "rater"])[0]
    b = assign(CLIPS[:10], RATERS, previous=a, cant_tell=[(clip, who)])
    extra = b[b["reason"] == "requeued"]
    assert len(extra) == 1 and extra.iloc[0]["replaces"] == who and extra.iloc[0]["rater"] not in set(a.loc[a["clip_id"] == clip, "rater"])
    assert assign(CLIPS[:10], RATERS, previous=b, cant_tell=[(clip, who)]).equals(b)  # once only
    three = assign(CLIPS[:10], RATERS[:3])
    assert assign(CLIPS[:10], RATERS[:3], previous=three, cant_tell=[(clip, "rater1")]).equals(three)


def test_fewer_than_three_raters_is_refused():
    with pytest.raises(UserError, match="3 distinct raters"):
        assign(CLIPS, RATERS[:2])
