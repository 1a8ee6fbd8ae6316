"""Small binary-classification metrics in numpy (no TensorFlow).

The one implementation used by the coincidence model's validation, the
filter report and the benchmarks; importing it loads no TensorFlow.
"""

from __future__ import annotations

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative),
    ties counted one half (Mann-Whitney U with average ranks).

    NaN when only one class is present.
    """
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in shape")
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    # 1-based average rank of each distinct value: last rank of the group minus half its extent.
    avg_rank = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = avg_rank[inverse.reshape(-1)]
    u = ranks[y.reshape(-1)].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def auc_standard_error(auc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of an ROC AUC measured on ``n_pos`` positives and
    ``n_neg`` negatives (Hanley & McNeil, 1982). NaN when either is 0."""
    if n_pos <= 0 or n_neg <= 0 or not 0.0 <= auc <= 1.0:
        return float("nan")
    q1 = auc / (2.0 - auc)
    q2 = 2.0 * auc * auc / (1.0 + auc)
    var = (auc * (1.0 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    return float(np.sqrt(max(var, 0.0)))


def precision_recall(labels: np.ndarray, selected: np.ndarray) -> tuple[float, float]:
    """Precision and recall of ``selected`` for the positive ``labels`` (NaN when undefined)."""
    y = np.asarray(labels).astype(bool)
    sel = np.asarray(selected).astype(bool)
    tp = int((y & sel).sum())
    n_sel = int(sel.sum())
    n_pos = int(y.sum())
    precision = tp / n_sel if n_sel else float("nan")
    recall = tp / n_pos if n_pos else float("nan")
    return precision, recall
