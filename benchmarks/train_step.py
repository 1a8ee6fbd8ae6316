#!/usr/bin/env python
"""AudioScope training-step benchmark: steps/s and examples/s of `tiny` and `paper`.

For each configuration, on the machine it runs on (the CPU, or the first GPU
when TensorFlow sees one), with random inputs shaped like training batches
(the configuration's training crop of audio, 5 frames of 128 x 128):

  forward   the model's forward pass alone (training=False), the baseline;
  train     one whole training step: forward, MixIT over all 2^M
            assignments, classification loss, gradients, clipping, Adam.

It prints steps/s and examples/s of both and the ratio of a training step's
time to a forward pass's (measured in the same run, on the same batch). The
batch is the configuration's (paper 256, tiny 8) unless it is set with
--batch (e.g. `--batch paper=4` on a CPU, where 256 five-second examples do
not fit a step in reasonable time).

    .venv/bin/python benchmarks/train_step.py
    .venv/bin/python benchmarks/train_step.py --configs tiny --steps 20
    .venv/bin/python benchmarks/train_step.py --batch paper=4 --threads 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Callable


def parse_batches(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        out[name] = int(value)
    return out


def timed(fn: Callable[[], Any], steps: int, warmup: int) -> tuple[float, float]:
    """(seconds of the first call, mean seconds per call after ``warmup`` calls)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    for _ in range(warmup - 1):
        fn()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return first, (time.perf_counter() - t0) / steps


def bench(name: str, batch: int | None, steps: int, warmup: int) -> dict[str, Any]:
    import keras
    import numpy as np
    import tensorflow as tf

    from audioscope.models.audioscope_model import build_model
    from audioscope.models.configs import get_config
    from audioscope.models.train import example_losses

    config = get_config(name)
    b = batch or config.batch_size
    samples = int(round((config.train_crop_s or 5.0) * 16_000))
    model = build_model(config)
    optimizer = keras.optimizers.Adam(config.learning_rate)
    optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    refs = (0.05 * rng.standard_normal((b, 2, samples))).astype(np.float32)
    data = {
        "mixture": tf.constant(refs.sum(axis=1)), "references": tf.constant(refs),
        "frames": tf.constant(rng.integers(0, 256, (b, 5, 128, 128, 3), dtype=np.uint8)),
        "first_onscreen": tf.constant(np.arange(b) % 2 == 0),
    }  # fmt: skip

    @tf.function
    def forward() -> Any:
        return model({"mixture": data["mixture"], "frames": data["frames"]}, training=False)["logits"]

    @tf.function
    def train_step() -> Any:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(example_losses(model, data, config, training=True)["loss"])
        grads = tape.gradient(loss, model.trainable_variables)
        grads, _ = tf.clip_by_global_norm(grads, config.clip_grad_norm)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    fwd_first, fwd = timed(lambda: forward().numpy(), steps, warmup)
    train_first, train = timed(lambda: train_step().numpy(), steps, warmup)
    return {
        "config": name, "batch": b, "seconds": samples / 16_000, "params": model.count_params(),
        "forward_s": fwd, "train_s": train, "trace_s": fwd_first + train_first,
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["tiny", "paper"], help="configurations to measure")
    ap.add_argument("--batch", nargs="*", default=[], metavar="NAME=N", help="batch size per configuration")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per measurement (default 5)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first, tracing included (default 2)")
    ap.add_argument("--threads", type=int, default=None, help="TensorFlow intra-op threads (default: TF's choice)")
    args = ap.parse_args()
    if args.threads:
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(args.threads)
    from audioscope import quiet

    quiet.configure()  # TensorFlow's start-up notes off stderr, as the CLI does
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    device = f"GPU ({gpus[0].name})" if gpus else f"CPU ({len(os.sched_getaffinity(0))} cores usable)"
    batches = parse_batches(args.batch)
    print(f"AudioScope training step on {device}, TensorFlow {tf.__version__}", flush=True)
    rows = [bench(name, batches.get(name), args.steps, args.warmup) for name in args.configs]
    head = f"{'config':<7} {'batch':>5} {'audio':>6} {'params':>10} {'fwd steps/s':>11} {'train steps/s':>13} " \
           f"{'train ex/s':>10} {'train/fwd':>9} {'trace s':>8}"
    print("\n" + head)
    for r in rows:
        print(
            f"{r['config']:<7} {r['batch']:>5} {r['seconds']:>5.1f}s {r['params']:>10,} {1 / r['forward_s']:>11.3f} "
            f"{1 / r['train_s']:>13.3f} {r['batch'] / r['train_s']:>10.2f} {r['train_s'] / r['forward_s']:>9.2f} "
            f"{r['trace_s']:>8.1f}"
        )
    print("\ntrain/fwd: seconds of one training step over seconds of one forward pass on the same batch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
