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


def test_ingest_options_after_the_list_reach_the_library_config(tmp_path, monkeypatch):
    """The CLI only parses: every option lands in the IngestConfig the library gets."""
    from audioscope import cli
    from audioscope.pipelines import ingest as ingest_lib

    seen = {}

    def fake_ingest(config, watch=None):
        seen["config"] = config
        raise UserError("stop here")

    monkeypatch.setattr(ingest_lib, "ingest", fake_ingest)
    rc = cli.main([
        "ingest", "list.csv", "--store", str(tmp_path / "s"), "--media-root", "https://media.example/data",
        "--allow-outside-root", "--format", "uris", "--max-duration", "60", "--", "--runner=DataflowRunner",
    ])
    assert rc == 2
    config = seen["config"]
    assert isinstance(config, ingest_lib.IngestConfig)
    assert (config.list_path, config.media_root, config.allow_outside_root, config.list_format) == (
        "list.csv", "https://media.example/data", True, "uris")
    assert config.max_duration_s == 60.0 and "--runner=DataflowRunner" in config.beam_args
    assert config.ffmpeg_threads == 1  # remote runner: one thread per video
