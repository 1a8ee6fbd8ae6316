"""benchmarks/tf_allocator.py at a tiny size: both allocators train the same model, and the table says so."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_the_allocator_benchmark_trains_the_same_model_with_both(tmp_path):
    from tests.pipelines.test_score import make_store

    store = make_store(tmp_path / "store", {f"vid-{i:03d}": 20 for i in range(8)}, seed=3)
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "tf_allocator.py"), "--store", str(store),
                           "--steps", "2", "--workdir", str(tmp_path / "work")], capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for name in ("default", "bfc"):
        assert re.search(rf"coincidence, {name}, round 1 +[\d.]+ s wall +[\d.]+ s user +[\d.]+ s system +\d+ MB peak", out), out
    assert re.search(r"coincidence: bfc / default +wall [\d.]+x +user [\d.]+x +system [\d.]+x +peak memory [\d.]+x", out), out
    assert re.search(r"coincidence: model id +the same with both allocators: sha256:", out), out
    assert not list((tmp_path / "work").iterdir())  # each run deleted once measured


def test_the_allocator_benchmark_needs_something_to_train_on():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "tf_allocator.py")], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "give --store, --mix or both" in done.stderr
