#!/usr/bin/env python
"""Score benchmark: how much the model costs on top of reading the clips.

Measured in one run on the same ``--clips`` clips of a clip store (whole
videos in index order, the last one cut to make N), with the code the
pipeline runs, minus Beam itself:

  read    per video, the pipeline's ReadClips (its media shard read and
          decoded once, every clip sliced), no model.
  score   the same reading, then the clips in batches of --batch-size
          (fixed-size batches, as Beam's BatchElements gives the pipeline)
          through the pipeline's RunInference handler
          (CoincidenceModelHandler.run_inference), one model shared by the
          threads as RunInference shares it within a worker process.

Both run on ``--workers`` threads (default: the cores this process may use),
each with its own reader, like the local runner's multi-threaded mode. It
prints clips/s, clips/s per core (os.sched_getaffinity) and the ratio score
time / read time (how many times longer scoring takes than reading alone).

    .venv/bin/python benchmarks/score.py --store STORE --model MODEL_DIR --clips 2000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from audioscope.progress import print_summary


def pick_work(store: Any, n_clips: int) -> list[tuple[str, list[tuple[str, float, float]]]]:
    """Whole videos in index order until ``n_clips`` clips (the last video cut)."""
    work: list[tuple[str, list[tuple[str, float, float]]]] = []
    total = 0
    for vid, group in store.index.groupby("video_id", sort=True):
        clips = [(str(c), float(s), float(e)) for c, s, e in zip(group["clip_id"], group["start"], group["end"])]
        clips = clips[: n_clips - total]
        work.append((str(vid), clips))
        total += len(clips)
        if total >= n_clips:
            break
    return work


def split(items: list, n: int) -> list[list]:
    """``n`` interleaved chunks (bundles), so every thread gets long and short videos."""
    return [items[i::n] for i in range(n) if items[i::n]]


def run_threads(chunks: list[list], fn: Callable[[list], int]) -> tuple[float, int]:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
        n = sum(f.result() for f in [pool.submit(fn, c) for c in chunks])
    return time.perf_counter() - t0, n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True, help="clip store (path, gs://, s3://)")
    ap.add_argument("--model", required=True, help="SavedModel directory with the coincidence signature")
    ap.add_argument("--clips", type=int, default=1000, help="clips to read and to score (default 1000)")
    ap.add_argument("--batch-size", type=int, default=64, help="clips per model call, as `audioscope score` (default 64)")
    cores = len(os.sched_getaffinity(0))
    ap.add_argument("--workers", type=int, default=cores, help=f"threads (default: the {cores} usable cores)")
    args = ap.parse_args()

    from audioscope.clipstore.reader import ClipStore
    from audioscope.pipelines.score import CoincidenceModelHandler, ReadClips, work_line

    store = ClipStore.open(args.store)
    work = pick_work(store, args.clips)
    lines = [work_line(v, c) for v, c in work]
    n_clips = sum(len(c) for _, c in work)
    chunks = split(lines, max(1, min(args.workers, len(lines))))
    scratch = tempfile.mkdtemp(prefix="bench-score-")  # where ReadClips would record failures

    def reader() -> ReadClips:
        r = ReadClips(args.store, scratch)
        r.setup()
        return r

    def read_only(chunk: list[str]) -> int:
        r = reader()
        n = 0
        for line in chunk:
            for _key, (audio, frames) in r.process(line):
                n += 1 if audio.size and frames.size else 0
        return n

    handler = CoincidenceModelHandler(args.model, args.batch_size)
    t0 = time.perf_counter()
    model = handler.load_model()
    t_load = time.perf_counter() - t0

    def read_and_score(chunk: list[str]) -> int:
        r = reader()
        batch: list = []
        n = 0
        for line in chunk:
            for _key, example in r.process(line):
                batch.append(example)
                if len(batch) == args.batch_size:
                    n += len(list(handler.run_inference(batch, model)))
                    batch = []
        if batch:
            n += len(list(handler.run_inference(batch, model)))
        return n

    # warm-up: TensorFlow traces and allocates on the first call
    read_and_score(lines[:1])

    t_read, n_read = run_threads(chunks, read_only)
    t_score, n_scored = run_threads(chunks, read_and_score)
    assert n_read == n_scored == n_clips, (n_read, n_scored, n_clips)

    rows = [
        ("clips", f"{n_clips} from {len(work)} videos of {args.store}"),
        ("threads / usable cores", f"{len(chunks)} / {cores}"),
        ("batch size", args.batch_size),
        ("model load", f"{t_load:8.2f} s  ({model.model_id})"),
        ("read (no model)", f"{t_read:8.2f} s  {n_clips / t_read:8.1f} clips/s  {n_clips / t_read / cores:8.1f} clips/s/core"),
        ("score (read + model)", f"{t_score:8.2f} s  {n_clips / t_score:8.1f} clips/s  {n_clips / t_score / cores:8.1f} clips/s/core"),
        ("score / read time", f"{t_score / t_read:8.2f}x"),
    ]
    print_summary("score benchmark", dict(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
