"""AudioScope's losses: MixIT with the thresholded SNR, and on-screen classification.

**Thresholded SNR.** For a reference ``t`` and an estimate ``t^`` (``T``
samples each)::

    L_SNR(t, t^) = 10 log10(||t - t^||^2 + tau ||t||^2)

``tau`` (1e-3) caps the reward for a near-perfect estimate at 30 dB, so a
well-separated example stops dominating the gradient.

**MixIT** (mixture invariant training). The model separates the mixture of
mixtures ``x = r_1 + r_2`` into M sources; every binary assignment of the M
sources to the two reference mixtures (all ``2^M``: each source goes to
exactly one mixture) gives two remixes, and the loss is that of the best
assignment::

    L_MixIT = min_A  sum_i  L_SNR(r_i, sum_m A_im s_m)

A reference that is all zeros (the missing second mixture of a single
mixture) is left out of the sum. The best assignment is found from inner
products (``<r_i, s_m>``, ``<s_m, s_k>``), which gives every assignment's
error without forming its remix; the loss itself is then computed directly
for the chosen assignment, which carries the gradient.

**Classification.** Pseudo-labels come from the assignment: ``y_m = 1``
when source m went to the first mixture *and* the first mixture is on
screen (NOn and LOn examples; in SOff and LOff examples nothing heard is on
screen, so every ``y_m = 0``). With ``l(y, p)`` the binary cross-entropy and
``A1`` the sources with ``y_m = 1``:

- exact:  ``sum_m l(y_m, p_m)``;
- multiple-instance (MI), at least one source of ``A1`` is on screen:
  ``l(1, max_{m in A1} p_m) + sum_{m not in A1} l(0, p_m)``;
- active combinations (AC), the best labelling that switches on a
  non-empty subset S of ``A1``:
  ``min_{S subset of A1, S not empty} sum_{m in S} l(1, p_m) + sum_{m not in S} l(0, p_m)``.

Weighted (``classification_weighting="power"``): each source's terms are
multiplied by ``w_m = M P_m / sum_k P_k``, its share of the power of the
separated sources (:func:`source_power_weights`; MI's "at least one" term by
the mean ``w`` over ``A1``), so the loss follows the loud sources that
``x_on`` is made of, as the power-weighted AUC does.

When ``A1`` is empty, MI and AC reduce to ``sum_m l(0, p_m)`` (there is no
"at least one" to enforce). Probabilities enter as logits, for stable
cross-entropies: ``l(1, p) = softplus(-z)``, ``l(0, p) = softplus(z)``.

TensorFlow is imported at module level: import this module lazily.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np
import tensorflow as tf

DEFAULT_TAU = 1e-3


def assignment_matrices(num_sources: int) -> np.ndarray:
    """Every binary assignment of ``num_sources`` sources to 2 mixtures:
    float32 ``[2^M, 2, M]``; row ``k`` sends source m to mixture 2 when bit m
    of k is set, so assignment 0 sends everything to mixture 1."""
    bits = np.array(list(itertools.product((0, 1), repeat=num_sources)), np.float32)[:, ::-1]
    return np.stack([1.0 - bits, bits], axis=1)


def thresholded_snr(reference: tf.Tensor, estimate: tf.Tensor, tau: float = DEFAULT_TAU) -> tf.Tensor:
    """``10 log10(||t - t^||^2 + tau ||t||^2)`` over the last axis (lower is better)."""
    error = tf.reduce_sum(tf.square(reference - estimate), axis=-1)
    power = tf.reduce_sum(tf.square(reference), axis=-1)
    return _db(error + tau * power)


def _db(x: tf.Tensor) -> tf.Tensor:
    return 10.0 * tf.math.log(x) / tf.math.log(tf.constant(10.0, x.dtype))


class MixITResult(NamedTuple):
    """``loss [B]`` (sum over the non-zero references) and ``assignment [B, 2, M]``
    (1 where source m went to mixture i)."""

    loss: tf.Tensor
    assignment: tf.Tensor


def best_assignment(references: tf.Tensor, sources: tf.Tensor, tau: float = DEFAULT_TAU) -> tf.Tensor:
    """The MixIT assignment ``[B, 2, M]`` of ``sources [B, M, T]`` to
    ``references [B, 2, T]`` (no gradient)."""
    references = tf.stop_gradient(references)
    sources = tf.stop_gradient(sources)
    m = sources.shape[1]
    a = tf.constant(assignment_matrices(m))  # [K, 2, M]
    rr = tf.reduce_sum(tf.square(references), axis=-1)  # [B, 2]
    rs = tf.einsum("bit,bmt->bim", references, sources)  # [B, 2, M]
    ss = tf.einsum("bmt,bnt->bmn", sources, sources)  # [B, M, M]
    # ||r_i - sum_m a_im s_m||^2 = rr_i - 2 sum_m a_im rs_im + sum_mn a_im a_in ss_mn
    cross = tf.einsum("kim,bim->bki", a, rs)
    quad = tf.einsum("kim,bmn,kin->bki", a, ss, a)
    error = tf.maximum(rr[:, None, :] - 2.0 * cross + quad, 0.0)  # [B, K, 2]
    present = rr > 0.0
    safe_rr = tf.where(present, rr, 1.0)[:, None, :]
    per_ref = tf.where(present[:, None, :], _db(tf.maximum(error + tau * safe_rr, 1e-30)), 0.0)
    best = tf.argmin(tf.reduce_sum(per_ref, axis=-1), axis=1)  # [B]
    return tf.gather(a, best)


def mixit_loss(references: tf.Tensor, sources: tf.Tensor, tau: float = DEFAULT_TAU) -> MixITResult:
    """MixIT: the thresholded-SNR loss of the best of all ``2^M`` assignments.

    ``references [B, 2, T]`` (the two mixtures; an all-zero one is skipped),
    ``sources [B, M, T]``.
    """
    assignment = best_assignment(references, sources, tau)
    remix = tf.einsum("bim,bmt->bit", assignment, sources)  # [B, 2, T]
    present = tf.reduce_sum(tf.square(references), axis=-1) > 0.0  # [B, 2]
    # A missing reference is replaced by ones before the log, so neither the
    # value nor the gradient of the unused branch can be inf or NaN.
    safe_ref = tf.where(present[:, :, None], references, tf.ones_like(references))
    safe_remix = tf.where(present[:, :, None], remix, tf.zeros_like(remix))
    per_ref = tf.where(present, thresholded_snr(safe_ref, safe_remix, tau), 0.0)
    return MixITResult(tf.reduce_sum(per_ref, axis=-1), assignment)


def pseudo_labels(assignment: tf.Tensor, first_onscreen: tf.Tensor) -> tf.Tensor:
    """``y [B, M]``: 1 for sources assigned to the first mixture of an example
    whose first mixture is on screen (``first_onscreen [B]`` bool)."""
    return assignment[:, 0, :] * tf.cast(first_onscreen, assignment.dtype)[:, None]


def source_power_weights(sources: tf.Tensor) -> tf.Tensor:
    """``w [B, M]``: each source's share of the power of the separated
    sources ``[B, M, T]``, times M (weights sum to M, as the uniform ones;
    no gradient). A silent source weighs 0; an all-silent example, 1 each."""
    power = tf.reduce_sum(tf.square(tf.stop_gradient(sources)), axis=-1)
    total = tf.reduce_sum(power, axis=-1, keepdims=True)
    m = tf.cast(tf.shape(power)[-1], power.dtype)
    return tf.where(total > 0.0, m * power / tf.where(total > 0.0, total, 1.0), tf.ones_like(power))


def classification_loss(
    logits: tf.Tensor, labels: tf.Tensor, kind: str, weights: tf.Tensor | None = None
) -> tf.Tensor:
    """Per-example on-screen classification loss ``[B]`` (``kind``: exact, mi, ac).

    ``weights [B, M]`` (default: 1 each) scale each source's terms; MI's
    "at least one" term is scaled by the mean weight of ``A1``."""
    labels = tf.cast(labels, logits.dtype)
    w = tf.ones_like(logits) if weights is None else tf.cast(weights, logits.dtype)
    l1 = w * tf.nn.softplus(-logits)  # -w log p
    l0 = w * tf.nn.softplus(logits)  # -w log (1 - p)
    negatives = tf.reduce_sum((1.0 - labels) * l0, axis=-1)
    if kind == "exact":
        return tf.reduce_sum(labels * l1, axis=-1) + negatives
    has_positive = tf.reduce_any(labels > 0.5, axis=-1)
    if kind == "mi":
        best = tf.reduce_max(tf.where(labels > 0.5, logits, logits.dtype.min), axis=-1)
        bag = tf.reduce_sum(labels * w, axis=-1) / tf.maximum(tf.reduce_sum(labels, axis=-1), 1.0)
        return negatives + tf.where(has_positive, bag * tf.nn.softplus(-tf.where(has_positive, best, 0.0)), 0.0)
    if kind == "ac":
        # The best labelling of A1 picks, per source, the cheaper label; if that
        # switches none on, the cheapest source to switch on is switched on.
        gap = tf.where(labels > 0.5, l1 - l0, np.inf)  # extra cost of labelling m on-screen
        per_source = tf.reduce_sum(labels * tf.minimum(l1, l0), axis=-1)
        cheapest = tf.reduce_min(gap, axis=-1)
        forced = tf.where(has_positive & (cheapest > 0.0), tf.where(has_positive, cheapest, 0.0), 0.0)
        return negatives + per_source + forced
    raise ValueError(f"unknown classification loss {kind!r}; use exact, mi or ac")
