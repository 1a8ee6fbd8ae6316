"""Publish and pull move several files at once (curation.release.each_in_parallel)."""

from __future__ import annotations

import threading
import time

import pytest

from audioscope.curation import release, release_cli


def test_items_run_at_the_same_time_and_results_keep_their_order():
    barrier = threading.Barrier(3, timeout=10)  # broken unless three run at once
    done = []

    def work(i: int) -> int:
        if i < 3:
            barrier.wait()
        return i * i

    assert release.each_in_parallel(list(range(7)), work, 3, done.append) == [i * i for i in range(7)]
    assert sorted(done) == [i * i for i in range(7)]  # on_done once per item, in the calling thread


def test_one_job_runs_in_order_in_the_calling_thread():
    seen = []
    out = release.each_in_parallel(["a", "b"], lambda x: (x, threading.current_thread().name), 1, seen.append)
    assert [x for x, _ in out] == ["a", "b"] and seen == out
    assert {name for _, name in out} == {threading.current_thread().name}


def test_the_first_error_is_raised_and_nothing_starts_after_it():
    started = []
    lock = threading.Lock()

    def work(i: int) -> int:
        with lock:
            started.append(i)
        if i == 0:
            raise ConnectionError("the store went away")
        time.sleep(0.01)  # a transfer takes a while: 200 of them take ~1 s on 2 threads
        return i

    with pytest.raises(ConnectionError, match="went away"):
        release.each_in_parallel(list(range(200)), work, 2, lambda _: None)
    assert len(started) < 200  # the rest were cancelled


def test_the_cli_default_is_the_library_default():
    assert release_cli.JOBS_DEFAULT == release.DEFAULT_JOBS
    assert release.PublishRequest(mix="m", df="d", name="n", version="1.0.0", root="r").jobs == release.DEFAULT_JOBS
