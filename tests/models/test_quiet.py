"""No TensorFlow/absl start-up noise in a command's output unless --verbose."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from audioscope import quiet

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
from audioscope import quiet
quiet.configure(int(sys.argv[1]))
import tensorflow as tf
import keras
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
print("result", float(tf.reduce_sum(model(tf.ones((1, 3))))) == float(tf.reduce_sum(model(tf.ones((1, 3))))),
      file=sys.stderr)
sys.stderr.write("step 1/2\\r")
sys.stderr.write("step 2/2\\n")
raise SystemExit("a last error line")
"""

NOISE_MARKERS = ("oneDNN custom operations", "absl::InitializeLog", "cpu_feature_guard", "I0000")


def test_noise_lines_are_recognised_and_others_are_not() -> None:
    assert quiet.is_noise(b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR")
    assert quiet.is_noise(b"I0000 00:00:1796398097.964522     911 port.cc:153] oneDNN custom operations are on.")
    assert quiet.is_noise(b"W0000 00:00:1796398097.1     911 cpu_feature_guard.cc:227] This TensorFlow binary")
    assert quiet.is_noise(b"2026-01-02 10:11:12.123456: I tensorflow/core/util/port.cc:113] oneDNN custom ops")
    assert quiet.is_noise(b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
                          b"with the appropriate compiler flags.")  # fmt: skip
    for kept in (b"E0000 00:00:1.2  9 x.cc:1] a real error", b"Traceback (most recent call last):",
                 b"training: 10/200 steps", b"audioscope score: error: no such model", b"WARNING: low disk"):
        assert not quiet.is_noise(kept), kept


@pytest.mark.parametrize("verbose", [0, 1])
def test_tensorflow_start_up_lines_only_with_verbose(verbose: int) -> None:
    # not the settings an earlier test of this process left in os.environ (configure(0) sets them)
    env = {k: v for k, v in os.environ.items() if k not in quiet.QUIET_ENV}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(verbose)], cwd=REPO, capture_output=True, timeout=300,
                          env=env)  # fmt: skip
    err = done.stderr.decode()
    assert done.returncode == 1
    # what the program itself writes comes through whole, progress lines included
    assert "result True" in err and "step 1/2\rstep 2/2\n" in err and err.rstrip().endswith("a last error line")
    noisy = [m for m in NOISE_MARKERS if m in err]
    if verbose:
        assert noisy, err  # the check sees the noise when it is there
    else:
        assert not noisy, err


def test_command_help_is_quiet() -> None:
    """(A command that trains a model is checked in test_coincidence_streaming.)"""
    helped = subprocess.run([sys.executable, "-m", "audioscope", "coincidence", "train", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert helped.returncode == 0 and "--store" in helped.stdout
    assert not [m for m in NOISE_MARKERS if m in helped.stdout + helped.stderr]


def test_harmless_library_log_records_are_dropped_and_others_kept(caplog) -> None:
    import logging

    from audioscope import quiet

    root = logging.getLogger()
    before = list(root.filters)
    try:
        quiet.configure(0)
        with caplog.at_level(logging.WARNING):
            logging.warning("Resource module is not available for current platform, memory usage cannot be fetched.")
            logging.warning("the store is half full")
        assert [r.getMessage() for r in caplog.records] == ["the store is half full"]
    finally:
        root.filters[:] = before



CHILD_OUTLIVES = """
import subprocess, sys, time
from audioscope import quiet
quiet.configure(0)
# a child that inherits standard error and outlives the command, as
# multiprocessing's resource tracker does
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
sys.stderr.write("I0000 00:00:1.5     911 port.cc:153] oneDNN custom operations are on.\\n")
sys.stderr.write("the last line\\n")
sys.stderr.write("and one without an end of line")
print(child.pid, time.time(), flush=True)
"""


def test_a_child_that_outlives_the_command_does_not_hold_up_its_exit() -> None:
    """The filter's end of file never comes while a child holds standard error: the command still ends
    at once (it used to wait 2 s for it), and everything written before the end comes through, less the
    noise line."""
    import os
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-c", CHILD_OUTLIVES], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    pid, ended_at = proc.stdout.readline().split()
    try:
        err = proc.stderr.read()
        proc.wait(timeout=60)
        exit_s = time.time() - float(ended_at)
        assert proc.returncode == 0, err
        assert err == "the last line\nand one without an end of line"
        assert exit_s < 1.5, f"the command took {exit_s:.2f} s to exit after its last line"
    finally:
        os.kill(int(pid), signal.SIGKILL)


IN_ORDER = """
import os, sys
from audioscope import quiet
from audioscope.progress import Progress, print_summary
quiet.configure(0)
for i in range(40):
    progress = Progress(f"step{i}", total=3, log_interval=3600)
    progress.update(3)
    progress.close()  # its last line goes through the filter, to standard error
    print_summary(f"Summary {i}", {"done": 3})  # straight to standard output
    sys.stderr.write("I0000 00:00:1.5     911 port.cc:153] oneDNN custom operations are on.\\n")
    sys.stderr.write(f"partial {i}")  # no end of line: held back until it cannot be noise...
    quiet.sync()  # ...or until someone waits for it
    print(f"after {i}", flush=True)
"""


def test_standard_error_comes_before_what_standard_output_prints_after_it() -> None:
    """Standard output does not pass through the filter: without waiting for it, a command's last
    progress line landed in the middle of the summary printed after it (in a log file, and over the
    summary's first line in a terminal)."""
    done = subprocess.run([sys.executable, "-c", IN_ORDER], cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout
    expected = []
    for i in range(40):
        expected += [f"step{i}: 3/3", "", f"Summary {i}", "  done  3", f"partial {i}after {i}"]
    lines = [line.split(" items")[0] for line in done.stdout.splitlines()]
    assert lines == expected
