"""audioscope.synth.truth: clip labels from a synthetic corpus's truth.parquet, and finding that file
(moved here from the filter's tests with the code; assertions unchanged)."""

from __future__ import annotations

import pandas as pd

from audioscope.synth.truth import clip_labels, detect_truth
from tests.curation.helpers import make_corpus


def test_clip_labels_use_seconds_inside_the_clip():
    truth = pd.DataFrame({
        "video_id": ["a"] * 10, "second": range(10),
        "has_onscreen": [s == 5 for s in range(10)], "has_offscreen": [s == 1 for s in range(10)],
    })  # fmt: skip
    clips = pd.DataFrame({"video_id": ["a", "a", "a", "a", "b"], "start": [0.0, 1.0, 5.0, 5.5, 0.0], "end": [5.0, 6.0, 10.0, 10.5, 5.0]})
    got = clip_labels(clips, truth)
    assert got["onscreen"].tolist() == [False, True, True, False, False]
    assert got["offscreen_only"].tolist() == [True, False, False, False, False]
    assert got["has_truth"].tolist() == [True, True, True, True, False]


def test_truth_detection_rules(tmp_path):
    corpus = make_corpus(tmp_path / "c", {}, {"x": 8})
    v = str(corpus / "videos")
    assert detect_truth([f"{v}/a.mp4", f"{v}/b.mp4"]).path == str(corpus / "truth.parquet")
    assert detect_truth([f"file://{v}/a.mp4"]).path == str(corpus / "truth.parquet")
    assert detect_truth([f"{v}/a.mp4", "https://example.com/videos/b.mp4"]).path is None
    assert detect_truth([f"{v}/a.mp4", str(tmp_path / "other" / "videos" / "b.mp4")]).path is None
    assert detect_truth([str(tmp_path / "c" / "a.mp4")]).path is None
    (corpus / "corpus.json").unlink()
    assert detect_truth([f"{v}/a.mp4"]).path is None
