#!/usr/bin/env python
"""How much the order of a list costs ingest on many cores: the last video.

A pool of N workers takes the next video whenever one is free (list
scheduling). The run ends when the last video does, so a long video taken
late leaves N - 1 cores idle at the end. `audioscope ingest` hands a list of
local files out largest file first, the size being the free guess of a
video's decode time. This script measures each video's decode CPU (the
one-thread bare decode of `benchmarks/ingest.py`, one video at a time) on
the same corpus, then plays the pool's schedule at ``--workers`` for:

  list order     the list as it comes (what ingest did before)
  largest first  ours: by file size, descending
  longest first  by the measured decode CPU itself (the best this order
                 could do, knowing each cost in advance)

and prints each run's end against a perfectly balanced one (total / N).
The model leaves out what every order pays alike (start-up, the index); it
needs no machine with that many cores.

    .venv/bin/python benchmarks/ingest_schedule.py --workdir /tmp/bench-ingest --minutes 140 --workers 16
"""

from __future__ import annotations

import argparse
import heapq
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import bare_decode, children_cpu, make_corpus  # noqa: E402  (this folder's benchmark)

from audioscope.geometry import CLIP_SECONDS  # noqa: E402
from audioscope.progress import print_summary  # noqa: E402


def run_end(costs: list[float], workers: int) -> float:
    """When the last of ``costs`` (in hand-out order) ends on ``workers`` that each take the next one when free."""
    free = [0.0] * workers
    for c in costs:
        heapq.heappush(free, heapq.heappop(free) + c)
    return max(free)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default=None, help="where the corpus is (or goes; default: a temp dir)")
    ap.add_argument("--minutes", type=float, default=140.0, help="minutes of video in the corpus (default 140)")
    ap.add_argument("--seed", type=int, default=90210, help="corpus seed (default 90210, as benchmarks/ingest.py)")
    ap.add_argument("--workers", type=int, nargs="+", default=[2, 16], help="pool sizes to play (default 2 16)")
    args = ap.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-schedule-"))
    corpus, videos = make_corpus(workdir, args.minutes, args.seed)
    # Shorter than a clip: finished from the probe, no decode (benchmarks/ingest.py leaves them out too).
    videos = [v for v in videos if v["duration"] >= CLIP_SECONDS]

    costs, sizes = [], []
    for v in videos:  # one at a time: each video's own CPU
        path = str(corpus / v["file"])
        c0 = children_cpu()
        bare_decode(path, ("-threads", "1", "-filter_threads", "1"))
        costs.append(children_cpu() - c0)
        sizes.append(os.path.getsize(path))
    total = sum(costs)
    by_size = [costs[i] for i in sorted(range(len(costs)), key=lambda i: -sizes[i])]
    rows = [("corpus", f"{len(videos)} videos, {sum(v['duration'] for v in videos) / 60:.1f} min, "
                       f"decode CPU {total:.1f} s (longest video {max(costs):.2f} s)")]
    for n in args.workers:
        ideal = total / n
        rows.append((f"{n} workers: end / balanced", "list order {:.3f}x, largest first {:.3f}x, longest first {:.3f}x".format(
            run_end(costs, n) / ideal, run_end(by_size, n) / ideal, run_end(sorted(costs, reverse=True), n) / ideal)))
    print_summary("ingest schedule", dict(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
