#!/usr/bin/env python
"""Loader benchmark: examples per second per core through ``load_dataset``, with decoding.

Measured in one run on the same shards (``--source``, or ``--examples``
random examples written to a temporary shard with the real encoder):

  raw      the baseline: ``tf.data.TFRecordDataset`` over the shards, batched,
           serialized records only (reading and CRC checks, no parsing).
  loader   ``audioscope.models.data.load_dataset(batch_size=B)``: the same
           records parsed and decoded (frames uint8, audio1/audio2/mixture
           float32, ids, labels), as a training job gets them.

TensorFlow runs with ``--threads`` threads (intra-op, inter-op and the
tf.data thread pool; default 1, so the rate is per core), and the rate per
core is also given as examples per second of process CPU time. The target
is at least 500 examples/s per core, so that the input pipeline never holds
a GPU back. It prints both rates, and the loader's time over the raw read's.

    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python benchmarks/loader.py --examples 3000
    .venv/bin/python benchmarks/loader.py --source demo-output/mix/train/semi-supervised
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any, Callable

from audioscope.progress import print_summary


def synthetic_shard(path: str, n: int, seed: int = 0) -> None:
    """``n`` random MoM examples (fixed seed) written with the real encoder."""
    import numpy as np

    from audioscope.schemas import records

    rng = np.random.default_rng(seed)

    def one(i: int) -> bytes:
        rec = records.MixtureRecord(
            frames=rng.integers(0, 256, records.FRAMES_SHAPE, dtype=np.uint8),
            audio1=rng.integers(-8000, 8000, records.AUDIO_SAMPLES, dtype=np.int16),
            audio2=rng.integers(-8000, 8000, records.AUDIO_SAMPLES, dtype=np.int16),
            type="NOn", is_mom=True, clip_id1=f"a{i}-0000000", video_id1=f"a{i}", start1=0.0, end1=5.0,
            frames_clip_id=f"a{i}-0000000", clip_id2=f"b{i}-0001000", video_id2=f"b{i}", start2=1.0, end2=6.0,
            score1=0.9, licence_name1="CC BY 2.0", licence_name2="CC BY 2.0",
        )  # fmt: skip
        return records.encode(rec)

    records.write_tfrecord(path, (one(i) for i in range(n)))


def timed(make: Callable[[], Any], options: Any) -> tuple[float, float, int]:
    """(wall s, process CPU s, examples) for one full pass over a dataset."""
    ds = make().with_options(options)
    n = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    for batch in ds:
        first = batch if not isinstance(batch, dict) else batch["frames"]
        n += int(first.shape[0])
    return time.perf_counter() - t0, time.process_time() - cpu0, n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=None, help="shards to read (file, glob or folder); default: a temporary synthetic shard")
    ap.add_argument("--examples", type=int, default=2000, help="examples in the synthetic shard (default 2000)")
    ap.add_argument("--batch-size", type=int, default=64, help="batch size of both passes (default 64)")
    ap.add_argument("--threads", type=int, default=1, help="TensorFlow and tf.data threads (default 1: per core)")
    ap.add_argument("--repeats", type=int, default=3, help="passes of each kind; the fastest counts (default 3)")
    args = ap.parse_args()
    for var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(var, str(args.threads))

    import tensorflow as tf

    from audioscope.models.data import load_dataset, shard_files

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    options = tf.data.Options()
    options.threading.private_threadpool_size = args.threads
    options.threading.max_intra_op_parallelism = 1

    scratch = tempfile.TemporaryDirectory(prefix="bench-loader-")
    source = args.source
    if source is None:
        source = os.path.join(scratch.name, "bench-00000-of-00001.tfrecord")
        synthetic_shard(source, args.examples)
    files = shard_files(source)
    nbytes = sum(os.path.getsize(f) for f in files if os.path.exists(f))

    def raw() -> Any:
        return tf.data.TFRecordDataset(files).batch(args.batch_size)

    def loader() -> Any:
        return load_dataset(files, batch_size=args.batch_size)

    timed(raw, options)  # warm-up: page cache, graph tracing
    timed(loader, options)
    t_raw = min((timed(raw, options) for _ in range(args.repeats)), key=lambda r: r[0])
    t_dec = min((timed(loader, options) for _ in range(args.repeats)), key=lambda r: r[0])
    n = t_dec[2]
    assert n == t_raw[2], (n, t_raw[2])

    def line(t: tuple[float, float, int]) -> str:
        wall, cpu, k = t
        return f"{wall:7.2f} s  {k / wall:8.0f} examples/s  {k / cpu:8.0f} examples per CPU-second"

    rows = {
        "shards": f"{len(files)} files, {n} examples, {nbytes / 2**20:.0f} MiB ({source})",
        "threads": args.threads,
        "batch size": args.batch_size,
        "raw records (baseline)": line(t_raw),
        "loader, decoded": line(t_dec),
        "loader / raw time": f"{t_dec[0] / t_raw[0]:7.2f}x",
        "loader per core": f"{n / t_dec[1]:8.0f} examples per CPU-second, {n / t_dec[0] / args.threads:.0f} "
        f"examples/s per thread of wall time (target >= 500; wall time counts waiting on a busy machine)",
    }
    print_summary("loader benchmark", rows)
    scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
