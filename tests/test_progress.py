"""Progress lines and summaries."""

from __future__ import annotations

import io

from audioscope.progress import Poller, Progress, print_summary


def test_progress_line_counts_rates_and_final_line_once():
    out = io.StringIO()
    p = Progress("ingest", total=4, unit="videos", stream=out, log_interval=0)
    p.update(1, ok=1)
    p.update(1, failed=1)
    p.close()
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith("ingest: 2/4 videos, ok=1, failed=1")
    assert "videos/s" in lines[-1] and "eta" in lines[-1]
    assert len(lines) == 2  # close() does not repeat a line that is already shown


def test_poller_shows_what_storage_says():
    out = io.StringIO()
    state = {"n": 0}

    def poll():
        state["n"] += 1
        return 3, {"clips": 12}

    with Poller(Progress("x", total=3, stream=out, log_interval=0), poll, every=0.01):
        pass
    assert "x: 3/3 items, clips=12" in out.getvalue()
    assert state["n"] >= 1


def test_summary_is_aligned():
    out = io.StringIO()
    print_summary("Done", {"videos": 3, "failures by kind": "corrupt=1"}, stream=out)
    assert out.getvalue().splitlines()[1:] == ["Done", "  videos            3", "  failures by kind  corrupt=1"]
