"""`audioscope synth` stopped (SIGTERM to it alone or to its process group, Ctrl-C to the group): it ends
at once, its pool's processes with it, says so, and a re-run finishes the same corpus as one run makes.

Before, the pool was left to make every queued video first (SIGTERM to the command alone: all 12 made
before it exited 143), and its processes kept the command's signal handlers (a pool process that got
the group's SIGTERM raised the command's stop exception inside the pool; once a run waited for ever).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.synth.conftest import CORPUS_ARGS, SEED, corpus  # noqa: F401  (the fixture)
from tests.synth.test_corpus import _digests

pytestmark = pytest.mark.integration


def _made(videos: Path) -> int:
    return sum(1 for p in videos.iterdir() if not p.name.startswith(".")) if videos.is_dir() else 0


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize(
    "sig,to_group,code,said",
    [
        (signal.SIGTERM, False, 143, "stopped by SIGTERM"),
        (signal.SIGTERM, True, 143, "stopped by SIGTERM"),
        (signal.SIGINT, True, 130, "interrupted"),
    ],
    ids=["sigterm-command", "sigterm-group", "ctrl-c"],
)
def test_a_stopped_synth_ends_at_once_and_a_rerun_finishes_it(corpus, tmp_path, sig, to_group, code, said):  # noqa: F811
    out = tmp_path / "corpus"
    cmd = [sys.executable, "-m", "audioscope", "synth", "--out", str(out), "--seed", str(SEED), *CORPUS_ARGS]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while _made(out / "videos") == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "synth ended before it could be stopped"
        (os.killpg if to_group else os.kill)(proc.pid, sig)
        err = proc.communicate(timeout=60)[1]
        assert proc.returncode == code, err
        assert "Traceback" not in err and err.strip().splitlines()[-1] == (
            f"audioscope synth: {said}. Finished work is kept; run the same command again to resume."
        )
        assert _made(out / "videos") < 12  # the queued videos were not made first
        deadline = time.monotonic() + 10
        while not _group_gone(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _group_gone(proc.pid)  # the pool's processes ended with the command
    finally:
        if not _group_gone(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    # a pool process stopped inside an atomic write leaves its temporary file (seen in CI): the re-run removes it
    (out / "truth" / ".syn108-0003.json.0123456789ab.tmp").write_text("{")
    (out / ".list.csv.0123456789ab.tmp").write_text("uri")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _digests(out) == _digests(corpus)  # byte for byte the corpus of one uninterrupted run
