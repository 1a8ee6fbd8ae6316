"""MixIT and the classification losses against plain-numpy versions of the formulas.

The references below are written from the formulas (loops, every
assignment and every subset enumerated), independently of the TensorFlow
code, which finds the best assignment from inner products and the AC
minimum in closed form.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from audioscope.models import losses as L  # noqa: E402

TAU = 1e-3


# --------------------------------------------------------------------------- numpy references


def ref_snr_loss(t: np.ndarray, e: np.ndarray, tau: float = TAU) -> float:
    err = sum((float(a) - float(b)) ** 2 for a, b in zip(t, e))
    power = sum(float(a) ** 2 for a in t)
    return 10 * math.log10(err + tau * power)


def ref_mixit(refs: np.ndarray, sources: np.ndarray, tau: float = TAU) -> tuple[float, tuple[int, ...]]:
    """(loss, which mixture (0/1) each source goes to) by trying every assignment."""
    m = sources.shape[0]
    best = (math.inf, ())
    for choice in itertools.product((0, 1), repeat=m):
        total = 0.0
        for i in range(2):
            if not np.any(refs[i]):
                continue  # a missing (all-zero) mixture is left out
            remix = np.zeros(refs.shape[1])
            for k in range(m):
                if choice[k] == i:
                    remix = remix + sources[k]
            total += ref_snr_loss(refs[i], remix, tau)
        if total < best[0]:
            best = (total, choice)
    return best


def bce(y: int, p: float) -> float:
    return -math.log(p) if y == 1 else -math.log(1 - p)


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def ref_exact(logits: np.ndarray, labels: np.ndarray, w: np.ndarray | None = None) -> float:
    w = np.ones(len(logits)) if w is None else w
    return sum(wm * bce(int(y), sigmoid(z)) for z, y, wm in zip(logits, labels, w))


def ref_mi(logits: np.ndarray, labels: np.ndarray, w: np.ndarray | None = None) -> float:
    w = np.ones(len(logits)) if w is None else w
    p = [sigmoid(z) for z in logits]
    pos = [m for m in range(len(p)) if labels[m] == 1]
    out = sum(w[m] * bce(0, p[m]) for m in range(len(p)) if labels[m] == 0)
    if pos:
        bag_weight = sum(w[m] for m in pos) / len(pos)
        out += bag_weight * bce(1, max(p[m] for m in pos))
    return out


def ref_ac(logits: np.ndarray, labels: np.ndarray, w: np.ndarray | None = None) -> float:
    w = np.ones(len(logits)) if w is None else w
    p = [sigmoid(z) for z in logits]
    a1 = [m for m in range(len(p)) if labels[m] == 1]
    if not a1:
        return sum(w[m] * bce(0, p[m]) for m in range(len(p)))
    best = math.inf
    for r in range(1, len(a1) + 1):
        for subset in itertools.combinations(a1, r):
            cost = sum(w[m] * bce(1 if m in subset else 0, p[m]) for m in range(len(p)))
            best = min(best, cost)
    return best


REFERENCES = {"exact": ref_exact, "mi": ref_mi, "ac": ref_ac}


# --------------------------------------------------------------------------- tests


def test_assignment_matrices_cover_every_binary_assignment_once() -> None:
    a = L.assignment_matrices(4)
    assert a.shape == (16, 2, 4)
    np.testing.assert_array_equal(a.sum(axis=1), np.ones((16, 4)))  # each source in exactly one mixture
    assert len({a[k].tobytes() for k in range(16)}) == 16
    np.testing.assert_array_equal(a[0, 0], np.ones(4))  # assignment 0: everything to mixture 1


def test_thresholded_snr_matches_formula() -> None:
    rng = np.random.default_rng(0)
    t, e = rng.normal(size=(2, 5, 300))
    got = L.thresholded_snr(tf.constant(t, tf.float32), tf.constant(e, tf.float32), TAU).numpy()
    want = [ref_snr_loss(t[i], e[i]) for i in range(5)]
    np.testing.assert_allclose(got, want, rtol=1e-4)


@pytest.mark.parametrize("m", [2, 3, 4, 5])
def test_mixit_matches_exhaustive_search_on_random_inputs(m: int) -> None:
    rng = np.random.default_rng(m)
    refs = rng.normal(size=(6, 2, 200)) * rng.uniform(0.1, 2.0, size=(6, 2, 1))
    sources = rng.normal(size=(6, m, 200)) * rng.uniform(0.1, 2.0, size=(6, m, 1))
    refs[5, 1] = 0.0  # a single mixture: its missing second mixture is skipped
    got = L.mixit_loss(tf.constant(refs, tf.float32), tf.constant(sources, tf.float32), TAU)
    for b in range(6):
        want_loss, want_choice = ref_mixit(refs[b], sources[b])
        assert abs(float(got.loss[b]) - want_loss) <= 1e-4 * abs(want_loss)
        np.testing.assert_array_equal(got.assignment[b, 1].numpy(), np.array(want_choice, np.float32))


def test_mixit_finds_the_assignment_when_estimates_are_known_mixtures() -> None:
    """Sources are exact pieces of the two references: MixIT must put each
    piece back with its own reference, whatever the output order."""
    rng = np.random.default_rng(7)
    pieces = rng.normal(size=(4, 4, 400)) * rng.uniform(0.2, 3.0, size=(4, 4, 1))
    belongs = np.array([[0, 1, 0, 1], [1, 1, 0, 0], [0, 0, 0, 1], [1, 0, 1, 1]])
    refs = np.stack([np.stack([pieces[b][belongs[b] == i].sum(axis=0) for i in range(2)]) for b in range(4)])
    order = np.stack([rng.permutation(4) for _ in range(4)])
    sources = np.stack([pieces[b][order[b]] for b in range(4)])
    got = L.mixit_loss(tf.constant(refs, tf.float32), tf.constant(sources, tf.float32), TAU)
    for b in range(4):
        np.testing.assert_array_equal(got.assignment[b, 1].numpy(), belongs[b][order[b]].astype(np.float32))
        floor = sum(10 * math.log10(TAU * float(np.sum(refs[b, i] ** 2))) for i in range(2))
        assert float(got.loss[b]) == pytest.approx(floor, abs=1e-2)  # perfect remix: the tau floor


def test_single_mixture_sends_everything_to_the_first_mixture_and_stays_finite() -> None:
    rng = np.random.default_rng(3)
    sources = tf.Variable(rng.normal(size=(2, 4, 100)).astype(np.float32))
    refs = np.zeros((2, 2, 100), np.float32)
    refs[:, 0] = sources.numpy().sum(axis=1)
    with tf.GradientTape() as tape:
        result = L.mixit_loss(tf.constant(refs), sources, TAU)
        total = tf.reduce_sum(result.loss)
    grad = tape.gradient(total, sources)
    np.testing.assert_array_equal(result.assignment[:, 0].numpy(), np.ones((2, 4)))
    assert np.all(np.isfinite(result.loss.numpy())) and np.all(np.isfinite(grad.numpy()))


@pytest.mark.parametrize("kind", ["exact", "mi", "ac"])
def test_classification_losses_match_formulas(kind: str) -> None:
    rng = np.random.default_rng(11)
    logits = rng.normal(scale=2.5, size=(64, 4))
    labels = (rng.random((64, 4)) < 0.4).astype(np.float32)
    labels[:4] = 0.0  # empty A1 (e.g. an off-screen first mixture)
    labels[4:8] = 1.0
    got = L.classification_loss(tf.constant(logits, tf.float32), tf.constant(labels), kind).numpy()
    want = np.array([REFERENCES[kind](logits[i], labels[i]) for i in range(64)])
    np.testing.assert_allclose(got, want, rtol=1e-4)


@pytest.mark.parametrize("kind", ["exact", "mi", "ac"])
def test_weighted_classification_losses_match_formulas(kind: str) -> None:
    rng = np.random.default_rng(12)
    logits = rng.normal(scale=2.5, size=(64, 4))
    labels = (rng.random((64, 4)) < 0.4).astype(np.float32)
    labels[:4] = 0.0
    labels[4:8] = 1.0
    weights = rng.uniform(0.0, 3.0, size=(64, 4))
    weights[8:12, 1] = 0.0  # a silent source teaches nothing
    got = L.classification_loss(
        tf.constant(logits, tf.float32), tf.constant(labels), kind, tf.constant(weights, tf.float32)
    ).numpy()
    want = np.array([REFERENCES[kind](logits[i], labels[i], weights[i]) for i in range(64)])
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_source_power_weights_are_power_shares_times_m() -> None:
    rng = np.random.default_rng(5)
    sources = rng.normal(size=(3, 4, 50)) * np.array([3.0, 1.0, 0.1, 0.0])[None, :, None]
    sources[2] = 0.0  # an all-silent example: uniform weights
    got = L.source_power_weights(tf.constant(sources, tf.float32)).numpy()
    for b in range(2):
        power = [sum(float(x) ** 2 for x in sources[b, m]) for m in range(4)]
        np.testing.assert_allclose(got[b], [4 * q / sum(power) for q in power], rtol=1e-4)
    assert got[0, 3] == 0.0
    np.testing.assert_array_equal(got[2], np.ones(4))


def test_ac_forces_one_source_on_when_all_prefer_off() -> None:
    logits = tf.constant([[-3.0, -1.0, -4.0, 2.0]])
    labels = tf.constant([[1.0, 1.0, 1.0, 0.0]])
    got = float(L.classification_loss(logits, labels, "ac")[0])
    assert got == pytest.approx(ref_ac(np.array([-3.0, -1.0, -4.0, 2.0]), np.array([1, 1, 1, 0])), rel=1e-5)
    all_off = float(L.classification_loss(logits, tf.zeros_like(labels), "exact")[0])
    assert got > all_off  # switching the cheapest source (logit -1) on costs something


def test_pseudo_labels_follow_the_first_mixture_only_when_on_screen() -> None:
    assignment = tf.constant(L.assignment_matrices(3)[[5, 2]])  # two examples
    got = L.pseudo_labels(assignment, tf.constant([True, False])).numpy()
    np.testing.assert_array_equal(got[0], L.assignment_matrices(3)[5, 0])
    np.testing.assert_array_equal(got[1], np.zeros(3))


def test_unknown_classification_loss_is_refused() -> None:
    with pytest.raises(ValueError, match="exact, mi or ac"):
        L.classification_loss(tf.zeros((1, 2)), tf.zeros((1, 2)), "focal")
