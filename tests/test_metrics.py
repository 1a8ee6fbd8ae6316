"""audioscope.metrics: ROC AUC against a brute-force pair count."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from audioscope.metrics import precision_recall, roc_auc


def brute_auc(labels, scores):
    pos = [s for y, s in zip(labels, scores) if y]
    neg = [s for y, s in zip(labels, scores) if not y]
    total = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return total / (len(pos) * len(neg))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 6)), min_size=2, max_size=40))
def test_auc_equals_pair_count_with_ties(pairs):
    labels = [y for y, _ in pairs]
    scores = [s / 6 for _, s in pairs]  # few distinct values: many ties
    got = roc_auc(np.array(labels), np.array(scores))
    if all(labels) or not any(labels):
        assert math.isnan(got)
    else:
        assert math.isclose(got, brute_auc(labels, scores), rel_tol=1e-12, abs_tol=1e-12)


def test_auc_known_values():
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert roc_auc(np.array([1, 1, 0, 0]), np.array([0.1, 0.2, 0.3, 0.4])) == 0.0
    assert roc_auc(np.array([0, 1, 0, 1]), np.full(4, 0.5)) == 0.5
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500).astype(bool)
    s = rng.uniform(size=500).round(2)
    assert math.isclose(roc_auc(y, s), brute_auc(y.tolist(), s.tolist()), rel_tol=1e-12)


def test_precision_recall():
    p, r = precision_recall(np.array([1, 1, 0, 0, 1]), np.array([1, 0, 1, 0, 1]))
    assert (p, r) == (2 / 3, 2 / 3)
    p, r = precision_recall(np.array([0, 0]), np.array([0, 0]))
    assert math.isnan(p) and math.isnan(r)
