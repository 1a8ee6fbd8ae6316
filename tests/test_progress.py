"""Progress lines and summaries."""

from __future__ import annotations

import io
import time

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


def test_a_slow_poll_spaces_the_polls_so_polling_takes_a_bounded_share_of_the_run():
    out = io.StringIO()
    calls: list[float] = []

    def poll():  # a listing that takes 50 ms (a bucket of many parts)
        calls.append(time.monotonic())
        time.sleep(0.05)
        return len(calls), {}

    poller = Poller(Progress("x", stream=out, log_interval=0), poll, every=0.01, max_share=0.1)
    with poller:
        time.sleep(1.0)
    # every 10 ms, a 50 ms poll would run ~17 times a second; at most 10% of the time, ~2 (and the final poll)
    assert 2 <= len(calls) <= 5
    assert poller.wait >= 0.45
    gaps = [b - a for a, b in zip(calls, calls[1:-1])]
    assert all(g >= 0.45 for g in gaps)
    assert f"x: {len(calls)} items" in out.getvalue().splitlines()[-1]  # the lines are the same, fewer of them


def test_a_fast_poll_keeps_its_interval():
    calls: list[float] = []

    def poll():
        calls.append(time.monotonic())
        return 1, {}

    poller = Poller(Progress("x", stream=io.StringIO(), log_interval=0), poll, every=0.02)
    with poller:
        time.sleep(0.5)
    assert poller.wait == 0.02 and len(calls) >= 5


def test_summary_is_aligned():
    out = io.StringIO()
    print_summary("Done", {"videos": 3, "failures by kind": "corrupt=1"}, stream=out)
    assert out.getvalue().splitlines()[1:] == ["Done", "  videos            3", "  failures by kind  corrupt=1"]
