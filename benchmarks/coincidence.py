#!/usr/bin/env python
"""Coincidence-model benchmark: how well the demo's training finds on-screen sound.

Runs the real commands, as a user would, on a fresh synthetic corpus:

    synth (--videos, --seed) -> ingest -> coincidence train (--budget s)
        -> score -> filter (threshold 0.8)

and reads the filter's report, which measures the scores against the
corpus' ground truth: the ROC AUC of the probability for "the clip has an
audible on-screen source", and the precision and recall of Df at the
threshold. This is the issue's acceptance check (AUC >= 0.90 and precision
>= 0.9 when the base rate is below 0.6, after at most 10 minutes of
training on 2 cores).

With ``--unseen-seed`` it also makes a second corpus the model never saw,
scores and filters it with the same model, and reports the same numbers:
how far the model carries to new videos.

    .venv/bin/python benchmarks/coincidence.py --workdir /tmp/bench-coincidence \\
        --videos 100 --seed 4711 --unseen-seed 4712

With ``--data stream,memory`` it trains one model per way of reading the
store (streamed from the clip store, the default; or every video loaded
into memory first) with the same budget, scores and filters with each, and
prints the trainer's examples/s of each against the first as the baseline
(measured in the same run, one after the other), next to the quality:

    .venv/bin/python benchmarks/coincidence.py --workdir /tmp/bench-coincidence \\
        --videos 40 --budget 240 --data memory,stream

Every step is resumable, so running it again with the same --workdir only
does what is missing (delete WORKDIR/model-* to train again).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

AUDIOSCOPE = [sys.executable, "-m", "audioscope"]


def run(*args: str) -> float:
    t0 = time.monotonic()
    print("+ audioscope " + " ".join(args), file=sys.stderr, flush=True)
    subprocess.run([*AUDIOSCOPE, *args], check=True)
    return time.monotonic() - t0


def corpus_and_store(root: Path, videos: int, seed: int) -> tuple[Path, Path]:
    corpus, store = root / "corpus", root / "clipstore"
    run("synth", "--out", str(corpus), "--videos", str(videos), "--seed", str(seed))
    run("ingest", str(corpus / "list.csv"), "--out", str(store))
    return corpus, store


def score_and_filter(root: Path, store: Path, model: Path, threshold: float, tag: str = "") -> dict:
    scores, df = root / f"scores{tag}", root / f"df{tag}"
    run("score", "--store", str(store), "--model", str(model), "--out", str(scores))
    run("filter", "--scores", str(scores), "--store", str(store), "--out", str(df), "--threshold", str(threshold))
    return json.loads((df / "report.json").read_text())


def examples_per_s(card: dict) -> float:
    """The trainer's examples per second of training time, from a model card."""
    tr = card["training"]
    return tr["examples_seen"] / tr["seconds"] if tr["seconds"] else float("nan")


def num(t: dict, key: str) -> float:
    """A metric of the report (None there when undefined) as a float."""
    value = t.get(key)
    return float("nan") if value is None else float(value)


def row(name: str, report: dict) -> str:
    t = report["truth_metrics"] or {}
    return (
        f"{name:<18} {report['scored']['videos']:>6} {report['scored']['clips']:>6} "
        f"{num(t, 'base_rate'):>9.3f} {num(t, 'roc_auc'):>7.3f} "
        f"{report['kept']['clips']:>6} {num(t, 'precision'):>9.3f} {num(t, 'recall'):>7.3f}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True, help="folder for corpora, stores, model, scores (resumable)")
    ap.add_argument("--videos", type=int, default=100, help="videos in the training corpus (default 100)")
    ap.add_argument("--seed", type=int, default=4711, help="seed of the training corpus")
    ap.add_argument("--budget", type=float, default=480.0, help="seconds of training (default 480)")
    ap.add_argument("--threshold", type=float, default=0.8, help="Df threshold (default 0.8)")
    ap.add_argument("--unseen-seed", type=int, default=None, help="also measure on a fresh corpus with this seed")
    ap.add_argument("--data", default="stream",
                    help="comma-separated ways to read the store for training: stream, memory (default stream); "
                    "the first is the baseline of the examples/s ratios")  # fmt: skip
    args = ap.parse_args()
    modes = [m.strip() for m in args.data.split(",") if m.strip()]

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    corpus, store = corpus_and_store(work / "train", args.videos, args.seed)
    if modes != ["stream"]:
        return compare_modes(work, store, modes, args)
    model = work / "model"
    train_s = None
    if not (model / "saved_model.pb").exists():
        train_s = run("coincidence", "train", "--clips", str(store), "--out", str(model), "--time-budget", str(args.budget))
    card = json.loads((model / "model_card.json").read_text())
    reports = {"training corpus": score_and_filter(work / "train", store, model, args.threshold)}
    if args.unseen_seed is not None:
        _, store2 = corpus_and_store(work / "unseen", args.videos, args.unseen_seed)
        reports["unseen corpus"] = score_and_filter(work / "unseen", store2, model, args.threshold)

    cores = len(os.sched_getaffinity(0))
    tr = card["training"]
    print(f"\ncoincidence benchmark ({cores} cores), model {card['model_id'][:19]}...")
    print(
        f"training: {tr['steps']} steps in {tr['seconds']} s ({tr['stopped_by']}), weights of step "
        f"{tr.get('exported_step', tr['steps'])}; command wall time "
        + (f"{train_s:.0f} s" if train_s is not None else "(model reused)")
    )
    print(f"validation (self-supervised, held-out videos): AUC {card['validation']['auc']:.3f}")
    print(f"\n{'corpus':<18} {'videos':>6} {'clips':>6} {'base rate':>9} {'ROC AUC':>7} {'kept':>6} {'precision':>9} {'recall':>7}")
    for name, rep in reports.items():
        print(row(name, rep))
    t = reports["training corpus"]["truth_metrics"]
    print(
        f"\ntarget on the training corpus: ROC AUC >= 0.90 (got {num(t, 'roc_auc'):.3f}), "
        f"precision at {args.threshold} >= 0.9 (got {num(t, 'precision'):.3f}) "
        f"when the base rate < 0.6 (it is {num(t, 'base_rate'):.3f})"
    )
    return 0


def compare_modes(work: Path, store: Path, modes: list[str], args: argparse.Namespace) -> int:
    """One model per way of reading the store, same budget; examples/s against the first."""
    cards, reports = {}, {}
    for mode in modes:
        model = work / f"model-{mode}"
        if not (model / "saved_model.pb").exists():
            run("coincidence", "train", "--store", str(store), "--out", str(model), "--time-budget", str(args.budget),
                "--data", mode)  # fmt: skip
        cards[mode] = json.loads((model / "model_card.json").read_text())
        reports[mode] = score_and_filter(work / "train", store, model, args.threshold, tag=f"-{mode}")
    cores = len(os.sched_getaffinity(0))
    base = examples_per_s(cards[modes[0]])
    print(f"\ncoincidence training by way of reading the store ({cores} cores, budget {args.budget:g} s each, "
          f"{args.videos} videos, seed {args.seed}); baseline: {modes[0]}")  # fmt: skip
    print(f"{'data':<8} {'steps':>6} {'examples/s':>10} {'ratio':>6} {'val AUC':>7} {'Df AUC':>7} "
          f"{'kept':>5} {'precision':>9} {'recall':>7}")  # fmt: skip
    for mode in modes:
        card, t = cards[mode], reports[mode]["truth_metrics"] or {}
        rate = examples_per_s(card)
        print(f"{mode:<8} {card['training']['steps']:>6} {rate:>10.1f} {rate / base:>6.2f} "
              f"{card['validation']['auc']:>7.3f} {num(t, 'roc_auc'):>7.3f} {reports[mode]['kept']['clips']:>5} "
              f"{num(t, 'precision'):>9.3f} {num(t, 'recall'):>7.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
