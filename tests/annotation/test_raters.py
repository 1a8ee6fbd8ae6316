"""Demo raters without a server: answers from the ground truth, deterministic flips."""

from __future__ import annotations

import numpy as np
import pandas as pd

from audioscope.annotation.raters import rater_answer, truth_answers


def test_truth_answers_look_at_every_second_of_the_clip():
    truth = pd.DataFrame({
        "video_id": ["v"] * 10, "second": list(range(10)),
        "has_onscreen": [False, False, True, False, False, False, False, False, False, False],
        "has_offscreen": [False] * 7 + [True, False, False],
    })  # fmt: skip
    clips = pd.DataFrame({"video_id": ["v", "v", "v", "w"], "start": [0.0, 3.0, 5.0, 0.0], "end": [5.0, 8.0, 10.0, 5.0]})
    got = truth_answers(clips, truth)
    assert got["onscreen"].tolist() == [True, False, False, False]
    assert got["offscreen"].tolist() == [False, True, True, False]
    assert got["has_truth"].tolist() == [True, True, True, False]


def test_flips_are_deterministic_and_follow_the_error_rate():
    answers = [rater_answer(7, "rater1", f"c{i}", "onscreen", True, 0.1) for i in range(4000)]
    assert answers == [rater_answer(7, "rater1", f"c{i}", "onscreen", True, 0.1) for i in range(4000)]
    assert 0.08 < 1 - np.mean(answers) < 0.12
    assert all(rater_answer(7, "rater1", f"c{i}", "onscreen", False, 0.0) is False for i in range(200))
    other = [rater_answer(7, "rater2", f"c{i}", "onscreen", True, 0.1) for i in range(4000)]
    assert answers != other  # raters err independently
