#!/usr/bin/env python
"""Mix planning benchmark: time and peak memory of planning N and 4N examples per recipe (no media).

Each run is its own process: a store index and a Df of ``--clips`` train
clips (30 per video) are made in memory, then the launcher's planning runs as
``audioscope mix`` runs it (the unsupervised and unsupervised-soff25 recipes,
E examples each): ``make_plan``, one scan (SHA-256, counts, every work line)
and every row of ``examples.parquet``. Printed per run: seconds per phase,
the work lines' size, and peak RSS above the inputs' RSS (the index and Df
frames, which the launcher holds either way; the clip pools grow with the
Df, not with the examples). Then the ratios 4N / N, the baseline being the
same measurement at N in the same run: memory that does not grow with the
plan gives a memory ratio near 1 while the time ratio is about 4.

    .venv/bin/python benchmarks/mix_plan.py --clips 30000 --examples 30000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def measure(n: int, examples: int) -> dict[str, float]:
    import numpy as np
    import pandas as pd

    from audioscope.pipelines.mix_catalog import Catalog
    from audioscope.pipelines.mix_outputs import example_rows
    from audioscope.pipelines.mix_plan import PlanOptions, make_plan

    videos = n // 30 + 1
    vid = np.repeat([f"v{i:07d}" for i in range(videos)], 30)[:n]
    start = np.tile(np.arange(30, dtype=float), videos)[:n]
    index = pd.DataFrame({
        "clip_id": [f"{v}-{int(s * 1000):07d}" for v, s in zip(vid, start)], "video_id": vid, "start": start,
        "end": start + 5, "source_uri": [f"gs://b/data/videos/mp4/{v}.mp4" for v in vid],
        "licence_name": "CC BY 2.0", "licence_url": "https://creativecommons.org/licenses/by/2.0/",
    })  # fmt: skip
    df = pd.DataFrame({"clip_id": index["clip_id"], "split": "train", "probability": 0.9})
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    catalog = Catalog(index, set(index["video_id"]), (), None, scores=dict(zip(df["clip_id"], df["probability"])))
    recipes = tuple(r for r in PlanOptions().recipes if r.name != "semi-supervised")
    plan = make_plan(catalog, df, None, None, PlanOptions(recipes=recipes, examples=examples))
    t1 = time.perf_counter()
    size = [0]
    plan.scan(lambda shard, line: size.__setitem__(0, size[0] + len(line) + 1))
    t2 = time.perf_counter()
    rows = sum(1 for _ in example_rows(plan))
    t3 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"clips": n, "examples": rows, "plan_s": t1 - t0, "scan_s": t2 - t1, "rows_s": t3 - t2,
            "work_mib": size[0] / 2**20, "inputs_mib": base, "above_inputs_mib": peak - base}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=30_000, help="Df train clips (default 30000)")
    ap.add_argument("--examples", type=int, default=30_000, help="examples per recipe of the small run, N (default 30000)")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # a child process: measure one run
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.clips, args.one)))
        return 0
    from audioscope.progress import print_summary

    results = []
    for n in (args.examples, 4 * args.examples):
        command = [sys.executable, __file__, "--clips", str(args.clips), "--one", str(n)]
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    rows: dict[str, object] = {}
    for r in results:
        rows[f"{r['examples']} examples"] = (
            f"{r['clips']} Df clips: plan {r['plan_s']:.1f} s, scan {r['scan_s']:.1f} s "
            f"({r['work_mib']:.0f} MiB of work lines), rows {r['rows_s']:.1f} s; peak RSS "
            f"{r['above_inputs_mib']:.0f} MiB above the inputs' {r['inputs_mib']:.0f} MiB"
        )
    small, big = results
    total = lambda r: r["plan_s"] + r["scan_s"] + r["rows_s"]  # noqa: E731
    rows["4N / N time"] = f"{total(big) / total(small):.2f}x"
    rows["4N / N memory above inputs"] = f"{big['above_inputs_mib'] / max(small['above_inputs_mib'], 1):.2f}x"
    rows["4N / N work lines"] = f"{big['work_mib'] / small['work_mib']:.2f}x (held in memory: one shard at a time)"
    print_summary("mix planning benchmark", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
