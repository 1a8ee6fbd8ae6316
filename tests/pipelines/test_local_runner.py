"""The steps' local runner: Beam's FnApiRunner, never the DirectRunner's PrismRunner detour.

Beam's DirectRunner first tries the PrismRunner, downloading its binary from
GitHub at run time (offline: a failed download, an empty ``beam-temp*``
folder left behind, then the FnApiRunner). The steps' local runs must reach
no network and leave nothing in the temporary directory, in one process or
in several.
"""

from __future__ import annotations

import os
import tempfile
import urllib.request

import apache_beam as beam
import pytest

from audioscope.pipelines.runner import new_pipeline


def _pid(x: int) -> tuple[int, int]:
    return x, os.getpid()


@pytest.mark.parametrize(
    "flags",
    [[], ["--runner=DirectRunner", "--direct_num_workers=2", "--direct_running_mode=multi_processing"]],
    ids=["default", "two-processes"],
)
def test_a_local_run_reaches_no_network_and_leaves_no_temporary_folder(flags, tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    fetched: list[str] = []

    def no_network(url, *args, **kwargs):
        fetched.append(str(getattr(url, "full_url", url)))
        raise OSError("no network in this test")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    out = tmp_path / "out"
    p = new_pipeline(flags)
    _ = (
        p
        | beam.Create(range(40))
        | beam.Reshuffle()
        | beam.Map(_pid)
        | beam.Map(lambda t: f"{t[0]} {t[1]}")
        | beam.io.WriteToText(str(out / "part"))
    )
    result = p.run()
    result.wait_until_finish()
    assert result.state == "DONE"
    rows = [line.split() for f in sorted(out.iterdir()) for line in f.read_text().splitlines()]
    assert sorted(int(x) for x, _ in rows) == list(range(40))
    if flags:  # the --direct_* flags reach the runner: the elements ran in worker processes
        assert {int(pid) for _, pid in rows} - {os.getpid()}
    assert fetched == []
    assert list(scratch.iterdir()) == []


def test_other_runners_are_left_to_beam(tmp_path):
    from audioscope.pipelines.local_runner import LocalRunner
    from audioscope.processes import temporary_files_in

    with temporary_files_in(str(tmp_path / "tmp")):  # Beam makes a folder per pipeline that only run() removes
        assert isinstance(new_pipeline([]).runner, LocalRunner)
        assert isinstance(new_pipeline(["--runner", "direct"]).runner, LocalRunner)
        assert not isinstance(new_pipeline(["--runner=PortableRunner", "--job_endpoint=localhost:1"]).runner,
                              LocalRunner)  # fmt: skip
