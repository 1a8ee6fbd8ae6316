"""The evaluation report says what its numbers are: targets from the table's statistics, defined columns."""

from __future__ import annotations

import pytest

pytest.importorskip("tensorflow")

from audioscope.models import evaluate as E  # noqa: E402


def _accumulators() -> dict[str, E.SetAccumulator]:
    on = E.SetAccumulator("onscreen_mom")
    # per example: x_on 10, 2, 9 dB over inputs of 0, -5, 8 dB: improvements 10, 7, 1
    on.si_snr, on.input_si_snr = [10.0, 2.0, 9.0], [0.0, -5.0, 8.0]
    on.examples, on.first_clips = 3, {"a", "b", "c"}
    off = E.SetAccumulator("offscreen_single")
    off.osr, off.examples, off.first_clips = [4.0, 7.0, 12.0], 3, {"d", "e", "f"}
    return {"onscreen_mom": on, "offscreen_single": off}


def test_targets_come_from_the_same_statistic_as_the_table() -> None:
    accs = _accumulators()
    targets = E.check_targets(accs)
    gain = targets["onscreen_mom_median_si_snr_minus_input_db"]
    # the median of the per-example improvements (7), not the difference of the medians (9 - 0 = 9)
    assert gain["value"] == pytest.approx(7.0) and gain["met"] is True
    assert gain["difference_of_medians"] == pytest.approx(9.0)
    assert targets["offscreen_single_median_osr_db"]["value"] == pytest.approx(7.0)
    sets = {name: acc.report() for name, acc in accs.items()}
    assert sets["onscreen_mom"]["si_snr_improvement"]["median"] == pytest.approx(gain["value"])
    assert sets["offscreen_single"]["osr"]["median"] == pytest.approx(targets["offscreen_single_median_osr_db"]["value"])

    table = E.format_table({"sets": sets, "auc_pooled": None, "targets": targets,
                            "examples_written": {"onscreen_mom": 14, "offscreen_single": 12}})  # fmt: skip
    for column, _ in E.COLUMNS:
        assert f"- {column}: " in table
    assert "OSR: off-screen suppression ratio" in table and "mean p: power-weighted mean" in table
    assert "7.00 dB (>= 3 dB): met (the table's median SI-SNRi on onscreen_mom; the difference of the two medians is 9.00 dB)" in table
    assert "26 WAV files under examples/<set>/<n>/" in table
