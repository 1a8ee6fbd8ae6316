"""How `audioscope ingest` turns --workers and --ffmpeg-threads into runner and ffmpeg settings."""

from __future__ import annotations

import pytest

from audioscope.errors import UserError
from audioscope.pipelines.ingest_cli import ffmpeg_threads, local_parallelism, local_runner


def test_local_runner_is_the_default_and_named_direct_runner():
    assert local_runner([])
    assert local_runner(["--runner=DirectRunner"])
    assert not local_runner(["--runner=DataflowRunner", "--project=p"])


def test_workers_become_threads_on_the_local_runner_only(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert local_parallelism([], None) == ["--direct_num_workers=4", "--direct_running_mode=multi_threading"]
    assert local_parallelism([], 1) == []
    # the user's own --direct_* flags win; other runners decide for themselves
    assert local_parallelism(["--direct_num_workers=3"], 2) == ["--direct_num_workers=3"]
    assert local_parallelism(["--runner=DataflowRunner"], 2) == ["--runner=DataflowRunner"]


def test_ffmpeg_gets_the_cores_left_per_local_worker(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert ffmpeg_threads(None, None, []) == 1          # one video per core
    assert ffmpeg_threads(None, 2, []) == 4             # spare cores go to ffmpeg
    assert ffmpeg_threads(None, 2, ["--runner=DataflowRunner"]) == 1
    assert ffmpeg_threads(0, 2, []) == 0                # asked: ffmpeg decides
    assert ffmpeg_threads(3, None, ["--runner=DataflowRunner"]) == 3
    with pytest.raises(UserError, match="--ffmpeg-threads"):
        ffmpeg_threads(-1, None, [])
