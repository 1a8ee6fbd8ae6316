"""SI-SNR, OSR and the power-weighted ROC AUC against plain-numpy versions of the formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from audioscope.metrics import roc_auc
from audioscope.models import separation_metrics as sm

# --------------------------------------------------------------------------- references (loops)


def ref_si_snr(r: np.ndarray, e: np.ndarray) -> float:
    n = len(r)
    mr = sum(float(v) for v in r) / n
    me = sum(float(v) for v in e) / n
    r = [float(v) - mr for v in r]
    e = [float(v) - me for v in e]
    alpha = sum(a * b for a, b in zip(e, r)) / sum(a * a for a in r)
    target = [alpha * a for a in r]
    noise = [t - b for t, b in zip(target, e)]
    return 10 * math.log10(sum(t * t for t in target) / sum(x * x for x in noise))


def ref_osr(x: np.ndarray, x_on: np.ndarray) -> float:
    return 10 * math.log10(sum(float(v) ** 2 for v in x) / sum(float(v) ** 2 for v in x_on))


def ref_weighted_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> float:
    num = den = 0.0
    for i in range(len(labels)):
        for j in range(len(labels)):
            if labels[i] and not labels[j]:
                w = weights[i] * weights[j]
                den += w
                if scores[i] > scores[j]:
                    num += w
                elif scores[i] == scores[j]:
                    num += 0.5 * w
    return num / den


# --------------------------------------------------------------------------- tests


def test_si_snr_matches_formula_on_random_inputs() -> None:
    rng = np.random.default_rng(0)
    r = rng.normal(size=(6, 500)) + 0.3
    e = 0.7 * r + rng.normal(scale=rng.uniform(0.05, 2.0, size=(6, 1)), size=(6, 500)) - 0.1
    got = sm.si_snr(r, e)
    want = [ref_si_snr(r[i], e[i]) for i in range(6)]
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_si_snr_is_scale_invariant_and_handles_the_edges() -> None:
    rng = np.random.default_rng(1)
    r = rng.normal(size=400)
    e = r + rng.normal(scale=0.3, size=400)
    assert sm.si_snr(r, 5.0 * e) == pytest.approx(sm.si_snr(r, e), rel=1e-9)
    assert sm.si_snr(r, r.copy()) == np.inf  # perfect
    assert sm.si_snr(r, 3.0 * r) > 250  # perfect up to scale (and float rounding)
    assert sm.si_snr(r, np.zeros(400)) == -np.inf  # nothing recovered
    assert np.isnan(sm.si_snr(np.zeros(400), e))  # no reference to measure against


def test_osr_matches_formula_and_edges() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5, 300))
    x_on = x * rng.uniform(0.01, 1.0, size=(5, 1)) + rng.normal(scale=0.01, size=(5, 300))
    np.testing.assert_allclose(sm.off_screen_suppression(x, x_on), [ref_osr(x[i], x_on[i]) for i in range(5)], rtol=1e-4)
    assert sm.off_screen_suppression(x[0], 0.5 * x[0]) == pytest.approx(20 * math.log10(2))
    assert sm.off_screen_suppression(x[0], np.zeros(300)) == np.inf
    assert np.isnan(sm.off_screen_suppression(np.zeros(300), x[0]))


def test_power_weights_are_power_ratios() -> None:
    rng = np.random.default_rng(3)
    sources = rng.normal(size=(2, 4, 200))
    mixture = sources.sum(axis=1)
    got = sm.power_weights(sources, mixture)
    for b in range(2):
        for m in range(4):
            want = sum(v * v for v in sources[b, m]) / sum(v * v for v in mixture[b])
            assert got[b, m] == pytest.approx(want, rel=1e-6)


def test_weighted_auc_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(4)
    labels = rng.random(80) < 0.4
    scores = np.round(rng.random(80), 1)  # ties on purpose
    weights = rng.uniform(0.0, 2.0, 80)
    assert sm.weighted_roc_auc(labels, scores, weights) == pytest.approx(
        ref_weighted_auc(labels, scores, weights), rel=1e-4
    )


def test_unit_weights_give_the_plain_roc_auc() -> None:
    rng = np.random.default_rng(5)
    labels = rng.random(200) < 0.5
    scores = np.round(rng.random(200), 2)
    assert sm.weighted_roc_auc(labels, scores) == pytest.approx(roc_auc(labels, scores), rel=1e-12)


def test_auc_is_nan_without_both_classes_and_ignores_zero_weight_items() -> None:
    assert math.isnan(sm.weighted_roc_auc(np.ones(3), np.array([0.1, 0.5, 0.9])))
    # a mis-ranked negative with weight 0 changes nothing
    labels = np.array([1, 0, 0])
    scores = np.array([0.5, 0.1, 0.9])
    assert sm.weighted_roc_auc(labels, scores, np.array([1.0, 1.0, 0.0])) == 1.0


def test_median_and_summary_keep_infinities_and_drop_nan() -> None:
    assert sm.median([1.0, np.inf, np.inf, np.nan]) == np.inf
    s = sm.summarize([1.0, 3.0, -np.inf, np.nan])
    assert s["median"] == 1.0 and s["median_text"] == "1.00 dB"
    assert (s["count"], s["minus_inf"], s["plus_inf"], s["nan"]) == (4, 1, 0, 1)
    assert s["mean_finite"] == 2.0
    assert sm.summarize([np.inf])["median"] is None and sm.summarize([np.inf])["median_text"] == "+inf dB"


def test_source_labels_per_set() -> None:
    first = np.array([[1, 0, 1, 0]])
    np.testing.assert_array_equal(sm.source_labels("onscreen_mom", first), first.astype(bool))
    assert sm.source_labels("onscreen_single", first).all()
    assert not sm.source_labels("offscreen_mom", first).any()
    assert not sm.source_labels("offscreen_single", first).any()
