"""The portable path without a shared disk: ingest, score and mix through ``PortableRunner`` with EXTERNAL workers.

A Beam job server runs beside the launcher; the workers come from a Beam
worker pool in a SEPARATE process that runs in its own mount namespace with
an empty tmpfs over the temporary folders (``unshare -m``, root only), so it
cannot see anything the launcher or the test wrote there: a marker file in
the test's folder is checked to be invisible to it. The data (videos, list,
model, store, scores, Df, shards) lives on the GCS emulator, as it would on
Dataflow. The stores, scores and mixture shards must equal the DirectRunner's.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from audioscope import cli, storage
from tests.gcs_emulator import GcsEmulator, free_port, pointed_at
from tests.pipelines.namespaces import can_mount
from tests.pipelines.test_score import export_model
from tests.pipelines.videos import av_video

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout:.0f} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _upload(local: Path, uri: str) -> None:
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        storage.atomic_write(storage.join(uri, *path.relative_to(local).parts), path.read_bytes())


@pytest.fixture(scope="module")
def external(tmp_path_factory):
    """The emulator (this process pointed at it), a job server and an EXTERNAL worker pool blind to our disk."""
    if not can_mount():
        pytest.skip("needs root and `unshare -m` (a private mount namespace for the worker pool)")
    tmp = tmp_path_factory.mktemp("portable")
    marker = tmp / "launcher-only.txt"
    marker.write_text("the workers must not see this\n")
    base = str(tmp_path_factory.getbasetemp())
    hidden = ["/tmp"] + ([base] if not base.startswith("/tmp/") else [])
    mounts = " && ".join(f"mount -t tmpfs tmpfs '{d}'" for d in hidden)
    # A checkout (and its virtualenv) under /tmp stays visible to the pool:
    # bound aside before the tmpfs hides /tmp, and bound back after it.
    repo = str(Path(__file__).resolve().parents[2])
    if repo.startswith("/tmp/"):
        mounts = f"mount --bind '{repo}' /mnt && {mounts} && mkdir -p '{repo}' && mount --bind /mnt '{repo}'"
    with GcsEmulator(bucket="portable") as emu, pointed_at(emu.url):
        env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
        job_port, pool_port = free_port(), free_port()
        pool = subprocess.Popen(
            ["unshare", "-m", "sh", "-c",
             f"{mounts} && test ! -e '{marker}' && exec '{sys.executable}' -m "
             f"apache_beam.runners.worker.worker_pool_main --service_port={pool_port}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        jobs = subprocess.Popen(
            [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main", "--port", str(job_port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            _wait_for_port(pool_port, pool, "the worker pool (or the marker file was visible to it)")
            _wait_for_port(job_port, jobs, "the job server")
            flags = ["--runner=PortableRunner", f"--job_endpoint=localhost:{job_port}",
                     "--environment_type=EXTERNAL", f"--environment_config=localhost:{pool_port}"]  # fmt: skip
            yield {"emu": emu, "flags": flags, "tmp": tmp}
        finally:
            _stop(jobs)
            _stop(pool)


def test_ingest_score_and_mix_with_external_workers_equal_the_direct_runner(external, monkeypatch):
    from audioscope.clipstore import ClipStore
    from audioscope.pipelines.score import ScoresLayout

    tmp = external["tmp"]
    # The launcher's temporary folder: Beam stages a package list there for remote
    # workers (one tmp*/ per launch, never removed by Beam); nothing may be left in it.
    launcher_tmp = tmp / "launcher-tmp"
    launcher_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(launcher_tmp))
    root = f"gs://{external['emu'].bucket}/{uuid.uuid4().hex[:8]}"
    videos = tmp / "videos"
    videos.mkdir()
    av_video(videos / "first.mp4", duration=7)
    av_video(videos / "second_one.mp4", duration=6, rate="30")
    _upload(videos, f"{root}/videos")
    storage.atomic_write(f"{root}/list.txt", "videos/first.mp4\nvideos/second_one.mp4\n")
    export_model(tmp / "model", 1.0)
    _upload(tmp / "model", f"{root}/model")

    results, shards, examples = {}, {}, {}
    for name, beam in (("direct", []), ("external", external["flags"])):
        store, scores = f"{root}/{name}/store", f"{root}/{name}/scores"
        rest = ["--", *beam] if beam else []
        assert cli.main(["ingest", f"{root}/list.txt", "--store", store, "--poll", "1", *rest]) == 0
        assert cli.main(["score", "--store", store, "--model", f"{root}/model", "--out", scores, "--poll", "1", *rest]) == 0
        df, mix = f"{root}/{name}/df", f"{root}/{name}/mix"
        assert cli.main(["filter", "--scores", scores, "--store", store, "--out", df, "--top-k-videos", "2",
                         "--split-ratios", "1,0,0", "--no-truth"]) == 0  # both videos in train  # fmt: skip
        assert cli.main(["mix", "--store", store, "--df", df, "--out", mix, "--recipes", "unsupervised",
                         "--poll", "1", *rest]) == 0  # fmt: skip
        results[name] = (ClipStore.open(store), ScoresLayout(scores))
        shards[name] = {f[len(mix):]: storage.read_bytes(f) for f in storage.list_files(mix, ".tfrecord")}
        examples[name] = pd.read_parquet(io.BytesIO(storage.read_bytes(storage.join(mix, "examples.parquet"))))
        # (multiprocessing's and TensorFlow's files of this process go when it exits)
        left = [p.name for p in launcher_tmp.iterdir() if not p.name.startswith(("pymp-", "__autograph_generated"))]
        assert left == [], name

    (direct, d_scores), (portable, p_scores) = results["direct"], results["external"]
    assert len(direct.index) == 5 and set(direct.index["video_id"]) == {"first", "second_one"}
    pd.testing.assert_frame_equal(portable.index, direct.index)
    for vid in ("first", "second_one"):
        a, b = direct.video(vid), portable.video(vid)
        assert (a[0] == b[0]).all() and (a[1] == b[1]).all()
    assert p_scores.is_finished() and d_scores.is_finished()
    pd.testing.assert_frame_equal(p_scores.read_scores(), d_scores.read_scores())
    # mix: the same shards, byte for byte, and the same example table
    assert shards["direct"] and len(examples["direct"]) > 0
    assert shards["external"] == shards["direct"]
    pd.testing.assert_frame_equal(examples["external"], examples["direct"])


def test_a_remote_runner_with_a_local_out_is_refused_before_anything_runs(external, tmp_path, capsys):
    out = tmp_path / "scores"
    code = cli.main(["score", "--store", "gs://b/store", "--model", "gs://b/model", "--out", str(out), "--",
                     *external["flags"]])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert f"--out {out}" in err and "gs://" in err and "Traceback" not in err
    assert not out.exists()
