"""benchmarks/loader.py at a tiny size: every pass reads the same examples and the table says so, quietly."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_loader_benchmark_runs_every_pass_and_prints_its_table():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "loader.py"), "--examples", "40", "--batch-size", "16",
         "--repeats", "1", "--shuffle-buffer", "8"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "40 synthetic examples" in out
    sizes = [float(x) for x in re.findall(r"bytes per example, schema \d.*?([\d.]+) kB", out)]
    assert len(sizes) == 4 and sizes[0] == 566.4 and sizes[0] > sizes[1] > sizes[2]
    assert sizes[3] < sizes[0] / 1.5  # schema 4 packed too (its filters spread the synthetic noise: no order with 3)
    rows = re.findall(r"^\s+(.+?)\s{2,}[\d.]+ s\s+\d+ examples/s\s+\d+ examples per CPU-second$", out, re.M)
    assert rows == [
        "raw records (schema 4)", "tf loader, schema 1 (baseline)", "tf loader, schema 2", "tf loader, schema 3",
        "tf loader, schema 4", "numpy loader, schema 2", "numpy loader, schema 3", "numpy loader, schema 4",
        "tf loader, schema 4, shuffled (8)", "numpy loader, schema 4, shuffled (8)",
    ]  # fmt: skip
    assert "oneDNN" not in done.stderr and "absl::InitializeLog" not in done.stderr  # TensorFlow kept quiet


def test_the_loader_benchmark_takes_its_examples_from_real_videos(tmp_path):
    video = tmp_path / "testsrc.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10:duration=11",
                    "-f", "lavfi", "-i", "sine=frequency=440:duration=11", "-c:v", "libx264", "-c:a", "aac",
                    "-shortest", str(video)], check=True)  # fmt: skip
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "loader.py"), "--videos", str(video), "--examples", "12",
         "--batch-size", "4", "--repeats", "1", "--shuffle-buffer", "4"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "12 examples of the clips of 1 real video(s)" in done.stdout
    sizes = [float(x) for x in re.findall(r"bytes per example, schema \d.*?([\d.]+) kB", done.stdout)]
    assert len(sizes) == 4 and sizes[3] < sizes[2] < sizes[1] < sizes[0]  # on real pictures schema 4 is the smallest
