"""Status on fake votes: Fleiss' kappa, pairwise agreement, progress, unanimity, files."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from audioscope.annotation.pull import aggregate
from audioscope.annotation.status import (
    compute_status,
    fleiss_kappa,
    pairwise_agreement,
    question_kappa,
    write_status,
)

from .test_pull_logic import USERS, ann, task

#: Fleiss (1971)-style worked example as printed in many textbooks: 10 subjects,
#: 14 raters, 5 categories; kappa = 0.210.
TEXTBOOK = np.array([
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
])  # fmt: skip


def test_fleiss_kappa_of_the_textbook_example():
    assert fleiss_kappa(TEXTBOOK) == pytest.approx(0.2099, abs=5e-4)


def test_fleiss_kappa_edges():
    assert fleiss_kappa(np.array([[3, 0], [0, 3], [3, 0]])) == pytest.approx(1.0)
    assert np.isnan(fleiss_kappa(np.array([[3, 0], [3, 0]])))  # one category only: undefined
    assert np.isnan(fleiss_kappa(np.zeros((0, 2))))
    with pytest.raises(ValueError):
        fleiss_kappa(np.array([[3, 0], [1, 1]]))


def pairwise_kappa(answers: list[list[bool]]) -> float:
    """Fleiss' kappa written differently: 1 - observed / expected disagreement, the observed one
    counted over every pair of ratings of a clip, the expected one from the share of "yes" answers."""
    observed = np.mean([np.mean([a != b for a, b in itertools.combinations(v, 2)]) for v in answers])
    p = np.mean([x for v in answers for x in v])
    return float(1 - observed / (2 * p * (1 - p)))


def _fake_votes(rng: np.random.Generator, clips: int, error: float) -> pd.DataFrame:
    rows = []
    for c in range(clips):
        truth_on, truth_off = bool(rng.random() < 0.5), bool(rng.random() < 0.4)
        for r, name in enumerate(("ann@x", "bob@x", "cyd@x")):
            rows.append({
                "clip_id": f"v{c}", "rater": name,
                "onscreen": truth_on != bool(rng.random() < error), "offscreen": truth_off != bool(rng.random() < error),
            })  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", range(5))
def test_kappa_agrees_with_the_pairwise_formulation(seed):
    votes = _fake_votes(np.random.default_rng(seed), 60, 0.15)
    for q in ("onscreen", "offscreen"):
        k, n = question_kappa(votes, q)
        answers = [g[q].tolist() for _, g in votes.groupby("clip_id")]
        assert n == 60
        assert k == pytest.approx(pairwise_kappa(answers), abs=1e-12)


def test_kappa_uses_only_clips_with_three_votes():
    votes = _fake_votes(np.random.default_rng(1), 30, 0.2)
    partial = pd.DataFrame([{"clip_id": "extra", "rater": "ann@x", "onscreen": True, "offscreen": True}])
    assert question_kappa(pd.concat([votes, partial]), "onscreen") == question_kappa(votes, "onscreen")


def test_pairwise_agreement_per_question():
    votes = pd.DataFrame([
        {"clip_id": "a", "rater": "x", "onscreen": True, "offscreen": False},
        {"clip_id": "a", "rater": "y", "onscreen": True, "offscreen": True},
        {"clip_id": "b", "rater": "x", "onscreen": False, "offscreen": False},
        {"clip_id": "b", "rater": "y", "onscreen": True, "offscreen": False},
        {"clip_id": "c", "rater": "y", "onscreen": True, "offscreen": False},
    ])  # fmt: skip
    assert pairwise_agreement(votes) == [{"raters": ["x", "y"], "clips": 2, "onscreen": 0.5, "offscreen": 0.5}]


def test_status_progress_raters_and_files(tmp_path):
    from audioscope.annotation.pull import write_outputs

    tasks = [
        task(1, "a-0000000", [ann(1, 2, True, False), ann(2, 3, True, False), ann(3, 4, True, False)]),
        task(2, "a-0001000", [ann(4, 2, False, True), ann(5, 3, False, True)], start=1.0),
        task(3, "a-0002000", [], start=2.0),
    ]
    votes, labels, _ = aggregate(tasks, USERS)
    status = compute_status(votes, labels)
    assert status["pools"]["filtered_train"] == {"tasks": 3, "0": 1, "1": 0, "2": 1, "3": 1}
    assert status["pools"]["unfiltered_train"]["tasks"] == 0
    assert status["raters"]["ann@x"] == {"votes": 2, "median_seconds_per_task": 5.5}  # lead times 4 and 7
    assert status["agreement"]["unanimity"]["clips_with_3_votes"] == 1
    assert status["agreement"]["kappa"]["onscreen"]["fleiss_kappa"] is None  # one clip, one category
    write_outputs(str(tmp_path), votes, labels, {})
    written = write_status(str(tmp_path))
    assert json.loads((tmp_path / "status.json").read_text()) == json.loads(json.dumps(written))
    assert (tmp_path / "status.png").read_bytes()[:4] == b"\x89PNG"
