"""audioscope.metrics: ROC AUC against a brute-force pair count."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from audioscope.metrics import auc_standard_error, precision_recall, roc_auc


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


def test_auc_standard_error_matches_the_spread_of_repeated_draws():
    # Hanley & McNeil's formula against the empirical spread of the AUC over
    # repeated samples of 150 positives and 250 negatives (true AUC ~0.80).
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(150, bool), np.zeros(250, bool)]
    aucs = [roc_auc(labels, np.r_[rng.normal(1.19, 1, 150), rng.normal(0, 1, 250)]) for _ in range(1500)]
    expected = auc_standard_error(float(np.mean(aucs)), 150, 250)
    assert 0.015 < expected < 0.03
    assert math.isclose(float(np.std(aucs)), expected, rel_tol=0.1)


def test_auc_standard_error_edges():
    assert auc_standard_error(1.0, 10, 10) == 0.0
    assert math.isnan(auc_standard_error(0.7, 0, 10))
    assert math.isnan(auc_standard_error(1.5, 10, 10))
    # more examples, smaller error
    assert auc_standard_error(0.75, 1000, 1000) < auc_standard_error(0.75, 100, 100)
