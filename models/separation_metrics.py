"""Separation and on-screen classification metrics in numpy (no TensorFlow).

- **SI-SNR** (scale-invariant signal-to-noise ratio) of an estimate ``e``
  against a reference ``r``, both made zero-mean first::

      a = <e, r> / ||r||^2,   SI-SNR = 10 log10(||a r||^2 / ||a r - e||^2)

  +inf for a perfect (scaled) estimate, -inf for an estimate with nothing
  of the reference in it (orthogonal or silent), NaN for a silent reference.
- **OSR** (off-screen suppression ratio) on an off-screen example: how much
  quieter the on-screen estimate is than the input::

      OSR = 10 log10(||x||^2 / ||x_on||^2)

  +inf for a silent ``x_on``, NaN for a silent input.
- **Power-weighted ROC AUC** of the on-screen probabilities ``p_m``: each
  separated source counts with the weight ``||s_m||^2 / ||x||^2`` (its power
  relative to the input mixture), so near-silent sources, whose label means
  little, hardly count. The AUC is the weighted probability that a positive
  scores above a negative (ties one half); with all weights 1 it equals
  :func:`audioscope.metrics.roc_auc`.

Medians are taken over finite and infinite values alike (NaN left out).
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import numpy as np


def _power(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return np.sum(x * x, axis=-1)


def _ratio_db(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``10 log10(num / den)`` with 0/0 -> NaN, x/0 -> +inf, 0/x -> -inf."""
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10.0 * np.log10(num / den)


def si_snr(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """SI-SNR in dB over the last axis (any leading shape)."""
    r = np.asarray(reference, np.float64)
    e = np.asarray(estimate, np.float64)
    r = r - r.mean(axis=-1, keepdims=True)
    e = e - e.mean(axis=-1, keepdims=True)
    ref_power = _power(r)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(ref_power > 0, np.sum(e * r, axis=-1) / np.where(ref_power > 0, ref_power, 1.0), np.nan)
    target = scale[..., None] * r
    out = np.where(_power(e) > 0, _ratio_db(_power(target), _power(target - e)), -np.inf)
    return np.where(ref_power > 0, out, np.nan)


def off_screen_suppression(mixture: np.ndarray, on_screen: np.ndarray) -> np.ndarray:
    """OSR in dB over the last axis: ``10 log10(||x||^2 / ||x_on||^2)``."""
    mix_power = _power(mixture)
    return np.where(mix_power > 0, _ratio_db(mix_power, _power(on_screen)), np.nan)


def power_weights(sources: np.ndarray, mixture: np.ndarray) -> np.ndarray:
    """``||s_m||^2 / ||x||^2``: ``sources [..., M, T]``, ``mixture [..., T]`` -> ``[..., M]``
    (0 where the mixture is silent)."""
    mix_power = _power(mixture)[..., None]
    return np.where(mix_power > 0, _power(sources) / np.where(mix_power > 0, mix_power, 1.0), 0.0)


def weighted_roc_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> float:
    """ROC AUC where each item counts with its weight: the weighted share of
    (positive, negative) pairs ordered correctly, ties one half. NaN when
    either class has no weight."""
    y = np.asarray(labels).astype(bool).reshape(-1)
    s = np.asarray(scores, np.float64).reshape(-1)
    w = np.ones_like(s) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if not (y.shape == s.shape == w.shape):
        raise ValueError(f"labels {y.shape}, scores {s.shape} and weights {w.shape} differ in shape")
    w_pos, w_neg = np.where(y, w, 0.0), np.where(y, 0.0, w)
    total_pos, total_neg = w_pos.sum(), w_neg.sum()
    if total_pos <= 0 or total_neg <= 0:
        return float("nan")
    values, inverse = np.unique(s, return_inverse=True)
    pos_at = np.bincount(inverse, weights=w_pos, minlength=len(values))
    neg_at = np.bincount(inverse, weights=w_neg, minlength=len(values))
    neg_below = np.cumsum(neg_at) - neg_at  # negative weight strictly below each value
    correct = np.sum(pos_at * (neg_below + 0.5 * neg_at))
    return float(correct / (total_pos * total_neg))


def median(values: Iterable[float]) -> float:
    """The median of the non-NaN values (infinities count); NaN when none."""
    v = np.asarray(list(values), np.float64)
    v = v[~np.isnan(v)]
    return float(np.median(v)) if v.size else float("nan")


def summarize(values: Iterable[float]) -> dict[str, float | int | None]:
    """Median, mean of the finite values, and counts of +inf / -inf / NaN
    (JSON-ready: infinities as strings would break readers, so they are
    counted and the median is written as None when it is not finite)."""
    v = np.asarray(list(values), np.float64)
    finite = v[np.isfinite(v)]
    med = median(v)
    return {
        "count": int(v.size),
        "median": med if math.isfinite(med) else None,
        "median_text": format_db(med),
        "mean_finite": float(finite.mean()) if finite.size else None,
        "plus_inf": int(np.sum(v == np.inf)),
        "minus_inf": int(np.sum(v == -np.inf)),
        "nan": int(np.sum(np.isnan(v))),
    }


def format_db(value: float) -> str:
    """``12.34 dB``, ``+inf dB``, ``-inf dB`` or ``n/a``."""
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "+inf dB" if value > 0 else "-inf dB"
    return f"{value:.2f} dB"


def source_labels(set_name: str, assignment_first: np.ndarray) -> np.ndarray:
    """On-screen labels of the separated sources of an evaluation example:
    every source of an on-screen single mixture, the sources MixIT assigned
    to the first (on-screen) mixture of an on-screen MoM, none otherwise.
    ``assignment_first [..., M]``: 1 where a source went to the first mixture."""
    first = np.asarray(assignment_first).astype(bool)
    if set_name == "onscreen_single":
        return np.ones_like(first)
    if set_name == "onscreen_mom":
        return first
    return np.zeros_like(first)


def pooled_auc(parts: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> float:
    """Power-weighted AUC over several sets: ``{name: (labels, scores, weights)}``."""
    if not parts:
        return float("nan")
    labels, scores, weights = (np.concatenate([np.reshape(p[i], -1) for p in parts.values()]) for i in range(3))
    return weighted_roc_auc(labels, scores, weights)
