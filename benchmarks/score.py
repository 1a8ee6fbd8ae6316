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

``finalize`` measures the merge at the end of a run instead (no store or
model needed): it writes --videos synthetic per-video parts of
--clips-per-video scores each, then merges them into scores.parquet twice,
each in a fresh process, and prints the peak memory (RSS above the process
after its imports) and time of each:

  baseline  every part read into one table, sorted and written at once
            (what a single finalize worker held before: all scores)
  chunked   the pipeline's merge: one sorted chunk per parts/<prefix>/
            folder (WriteMergeChunk), then streamed in order into one file
            (write_merged), one chunk in memory at a time

    .venv/bin/python benchmarks/score.py finalize --videos 8000 --clips-per-video 60
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


def _rss_mb() -> float:
    """This process's resident memory now (MB)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def write_parts(scores_dir: str, videos: int, clips_per_video: int, seed: int = 0) -> int:
    """Synthetic parts as the pipeline writes them (one Parquet file per video); returns the clips."""
    import numpy as np

    from audioscope.pipelines.score import ScoresLayout, parquet_bytes
    from audioscope.schemas.tables import SCORES, to_table

    rng = np.random.default_rng(seed)
    layout = ScoresLayout(scores_dir)
    for v in range(videos):
        vid = f"{rng.integers(0, 2**40):010x}"
        rows = [
            {"clip_id": f"{vid}-{s * 1000:07d}", "video_id": vid, "start": float(s), "end": float(s + 5),
             "probability": float(p), "model_id": "sha256:" + "0" * 64}
            for s, p in enumerate(rng.random(clips_per_video, dtype=np.float32))
        ]  # fmt: skip
        path = layout.part(vid)  # plain writes: the parts' fsyncs are not what is measured
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(parquet_bytes(to_table(rows, SCORES)))
    return videos * clips_per_video


def finalize_child(mode: str, scores_dir: str, dest: str) -> None:
    """One merge in this process; prints "seconds peak_mb_above_imports"."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from audioscope import storage
    from audioscope.pipelines.score import (
        ScoresLayout, WriteMergeChunk, _list_part_dirs, _read_part_dir, parquet_bytes, sort_scores, write_merged,
    )  # fmt: skip

    layout = ScoresLayout(scores_dir)
    base = _rss_mb()
    t0 = time.perf_counter()
    if mode == "baseline":
        tables = [t for _, _, d in _list_part_dirs(layout.parts_dir, 0) if (t := _read_part_dir(d)) is not None]
        storage.atomic_write(dest, parquet_bytes(sort_scores(pa.concat_tables(tables))))
    else:
        writer = WriteMergeChunk(scores_dir)
        chunks = sorted(c for e in _list_part_dirs(layout.parts_dir, 0) for c in writer.process(e))
        write_merged(dest, [path for _, path, _, _ in chunks])
        for _, path, _, _ in chunks:
            storage.remove(path)
    seconds = time.perf_counter() - t0
    assert pq.read_metadata(dest).num_rows > 0
    print(f"{seconds:.3f} {_peak_mb() - base:.1f}")


def finalize_main(argv: list[str]) -> int:
    import subprocess

    import pandas as pd

    ap = argparse.ArgumentParser(prog="benchmarks/score.py finalize", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--videos", type=int, default=8000, help="videos (parts) to merge (default 8000)")
    ap.add_argument("--clips-per-video", type=int, default=60, help="scores per video (default 60)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-finalize-") as tmp:
        scores_dir = os.path.join(tmp, "scores")
        t0 = time.perf_counter()
        clips = write_parts(scores_dir, args.videos, args.clips_per_video)
        t_parts = time.perf_counter() - t0
        results = {}
        for mode in ("baseline", "chunked"):
            dest = os.path.join(tmp, f"{mode}.parquet")
            out = subprocess.run([sys.executable, __file__, "finalize-child", mode, scores_dir, dest],
                                 check=True, capture_output=True, text=True).stdout.split()  # fmt: skip
            results[mode] = (float(out[0]), float(out[1]))
        same = pd.read_parquet(os.path.join(tmp, "baseline.parquet")).equals(
            pd.read_parquet(os.path.join(tmp, "chunked.parquet"))
        )
    (tb, mb), (tc, mc) = results["baseline"], results["chunked"]
    print_summary("score finalize benchmark", {
        "scores": f"{clips} clips of {args.videos} videos (parts written in {t_parts:.1f} s)",
        "baseline (all at once)": f"{tb:8.2f} s  peak {mb:8.1f} MB above imports",
        "chunked (the pipeline's)": f"{tc:8.2f} s  peak {mc:8.1f} MB above imports",
        "chunked / baseline": f"time {tc / tb:5.2f}x  memory {mc / mb if mb > 0 else float('nan'):5.2f}x",
        "same table": same,
    })  # fmt: skip
    return 0 if same else 1


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "finalize":
        return finalize_main(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "finalize-child":
        finalize_child(*sys.argv[2:5])
        return 0
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
