"""What the pipeline steps share: shard names, work shards, expected counts, runner paths."""

from __future__ import annotations

import os

import pytest

from audioscope.errors import UserError
from audioscope.pipelines.runner import check_paths_for_runner, remote_workers
from audioscope.pipelines.work import (
    WORK_SHARDS,
    IncompleteRun,
    ShardTemplate,
    Shortfall,
    require_complete,
    shortfalls,
    write_work_shards,
)


def test_one_template_names_and_parses_shards():
    t = ShardTemplate(stem="chunk", suffix=".parquet")
    assert t.name(3, 12) == "chunk-00003-of-00012.parquet"
    assert t.parse("chunk-00003-of-00012.parquet") == (3, 12)
    assert t.parse("chunk-3-of-12.parquet") is None and t.parse("work-00000-of-00001.jsonl") is None
    assert t.pattern() == "chunk-*.parquet"
    with pytest.raises(ValueError):
        t.name(12, 12)


def test_work_shards_are_written_whole_and_stale_ones_go(tmp_path):
    folder = str(tmp_path / "work")
    first = write_work_shards(folder, [f"line {i}" for i in range(7)], per_shard=3)
    assert [os.path.basename(p) for p in first] == [WORK_SHARDS.name(i, 3) for i in range(3)]
    assert (tmp_path / "work" / WORK_SHARDS.name(2, 3)).read_text() == "line 6\n"
    (tmp_path / "work" / "notes.txt").write_text("mine")  # not a shard: kept

    # streamed (total given): the earlier run's three shards go, the new two stay
    second = write_work_shards(folder, (f"v{i}" for i in range(4)), per_shard=2, total=4)
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == [
        "notes.txt", "work-00000-of-00002.jsonl", "work-00001-of-00002.jsonl",
    ]  # fmt: skip
    assert [open(p).read() for p in second] == ["v0\nv1\n", "v2\nv3\n"]
    assert write_work_shards(folder, [], per_shard=2) == []
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["notes.txt"]
    with pytest.raises(ValueError, match="more than"):
        write_work_shards(folder, iter(["a", "b", "c"]), per_shard=2, total=2)


def test_expected_counts_name_every_unit_that_came_up_short():
    expected = {"a": 3, "b": 2, "c": 1}
    assert shortfalls(expected, {"a": 3, "b": 2, "c": 1, "old": 9}) == []
    assert shortfalls(expected, {"a": 2, "c": 1}) == [
        Shortfall(unit="a", expected=3, got=2), Shortfall(unit="b", expected=2, got=0),
    ]  # fmt: skip
    require_complete("score", "videos", expected, {"a": 3, "b": 5, "c": 1}, "Run it again.")
    with pytest.raises(IncompleteRun) as e:
        require_complete("score", "videos", expected, {"c": 1}, "Run it again.")
    assert isinstance(e.value, UserError)
    assert str(e.value).startswith("score ended short: 2 videos") and "a (0 of 3), b (0 of 2)" in str(e.value)
    assert str(e.value).endswith("Run it again.")


@pytest.mark.parametrize(
    "flags,remote",
    [
        ([], False),
        (["--runner=DirectRunner"], False),
        (["--runner", "DataflowRunner"], True),
        (["--runner=PortableRunner", "--environment_type=LOOPBACK"], False),
        (["--runner=PortableRunner", "--environment_type=EXTERNAL"], True),
        (["--runner=FlinkRunner", "--environment_type", "DOCKER"], True),
        (["--runner=apache_beam.runners.dask.dask_runner.DaskRunner"], False),
        # Beam's defaults when --environment_type is not given
        (["--runner=PortableRunner", "--job_endpoint=localhost:8099"], True),  # containers
        (["--runner=PrismRunner"], False),
        (["--runner=FlinkRunner"], False),  # [auto]: a Flink started here, LOOPBACK workers
        (["--runner=FlinkRunner", "--flink_master=[local]"], False),
        (["--runner=FlinkRunner", "--flink_master=flink.example:8081"], True),
        (["--runner=SparkRunner"], False),  # local[4]
        (["--runner=SparkRunner", "--spark_master_url", "spark://host:7077"], True),
        (["--runner=PortableRunner", "--environment_type=beam:env:external:v1"], True),
        (["--runner=PortableRunner", "--environment_type=beam:env:embedded_python_loopback:v1"], False),
        (["--runner=PortableRunner", "--environment_type=process"], False),
    ],
)
def test_which_runners_have_workers_that_cannot_see_our_disk(flags, remote):
    assert remote_workers(flags) is remote


def test_paths_are_normalised_and_local_ones_refused_with_remote_workers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    got = check_paths_for_runner([], {"--out": "rel/out", "--model": "gs://b/m/", "--store": None})
    assert got == {"--out": str(tmp_path / "rel" / "out"), "--model": "gs://b/m", "--store": None}
    assert check_paths_for_runner(["--runner=DataflowRunner"], {"--out": "gs://b/o"}) == {"--out": "gs://b/o"}
    with pytest.raises(UserError) as e:
        check_paths_for_runner(
            ["--runner=DataflowRunner"], {"--store": "gs://b/s", "--out": "rel/out", "--model": "file:///m"}
        )
    message = str(e.value)
    assert f"--out {tmp_path}/rel/out" in message and "--model /m" in message and "--store" not in message
    assert "DataflowRunner" in message and "gs://" in message
