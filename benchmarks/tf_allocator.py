#!/usr/bin/env python
"""TensorFlow's CPU allocator: glibc's malloc (TensorFlow's default, the baseline) against its
pooling BFC allocator (what every `audioscope` command now asks for, ``audioscope/tfmemory.py``).

Runs the real training commands as a user would, once with each allocator
per round (``TF_CPU_ALLOCATOR_USE_BFC=false`` / ``true``), one after the
other on the same machine, and prints per run: wall seconds, user and
system CPU seconds, peak memory (the process's maximum resident set), and
the model id (SHA-256 of the export: the same id means the same model bit
for bit); then each command's BFC/default ratios, taken from the rounds'
least times.

    .venv/bin/python benchmarks/tf_allocator.py --store demo-output/clipstore \\
        --mix demo-output/mix --steps 60 --rounds 2

``--store``: the coincidence training (``audioscope coincidence train
--steps N --time-budget none``); ``--mix``: the AudioScope training
(``audioscope train --config tiny --recipe semi-supervised --steps N
--time-budget none``). Runs go to ``--workdir`` (a temporary folder by
default) and are deleted after each is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from audioscope.progress import print_summary

ALLOCATORS = {"default": "false", "bfc": "true"}


def measured(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall, user and system seconds and peak RSS (MB) of one command's process."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.decode(errors='replace')[-2000:]}")
    return {"wall": time.monotonic() - t0, "user": usage.ru_utime, "sys": usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024}  # fmt: skip


def remove_run(out: Path) -> None:
    """A run's model folder and its ``.run`` state folder gone."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(f"{out}.run", ignore_errors=True)


def model_id(command: str, out: Path) -> str:
    if command == "coincidence":
        return str(json.loads((out / "model_card.json").read_text()).get("model_id", ""))
    return str(json.loads((out / "train_summary.json").read_text()).get("model_id", ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", help="a clip store: time `audioscope coincidence train` on it")
    ap.add_argument("--mix", help="a mixtures folder (`audioscope mix`'s): time `audioscope train --config tiny` on it")
    ap.add_argument("--steps", type=int, default=60, help="training steps per run (default 60)")
    ap.add_argument("--rounds", type=int, default=1, help="runs of each allocator, alternating (default 1)")
    ap.add_argument("--workdir", default=None, help="where the runs go (default: a temporary folder)")
    args = ap.parse_args()
    if not (args.store or args.mix):
        ap.error("give --store, --mix or both")
    audioscope = [sys.executable, "-m", "audioscope"]
    commands: dict[str, Any] = {}
    if args.store:
        commands["coincidence"] = lambda out: [*audioscope, "coincidence", "train", "--store", args.store, "--out",
                                               str(out), "--steps", str(args.steps), "--time-budget", "none"]  # fmt: skip
    if args.mix:
        commands["train"] = lambda out: [*audioscope, "train", "--data", args.mix, "--out", str(out), "--config", "tiny",
                                         "--recipe", "semi-supervised", "--steps", str(args.steps), "--time-budget", "none"]  # fmt: skip
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-tf-allocator-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    ids: dict[tuple[str, str], set[str]] = {}
    rows: dict[str, object] = {"steps per run": args.steps, "rounds": args.rounds}
    for r in range(args.rounds):
        for command, make in commands.items():
            for name, value in ALLOCATORS.items():
                out = work / f"{command}-{name}-{r}"
                remove_run(out)
                env = {**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": value}
                got = measured(make(out), env)
                results.setdefault((command, name), []).append(got)
                ids.setdefault((command, name), set()).add(model_id(command, out))
                rows[f"{command}, {name}, round {r + 1}"] = (
                    f"{got['wall']:6.1f} s wall  {got['user']:6.1f} s user  {got['sys']:6.1f} s system  "
                    f"{got['rss_mb']:6.0f} MB peak"
                )
                remove_run(out)
    for command in commands:
        best = {name: {k: min(run[k] for run in results[(command, name)]) for k in ("wall", "user", "sys", "rss_mb")}
                for name in ALLOCATORS}  # fmt: skip
        base, bfc = best["default"], best["bfc"]
        rows[f"{command}: bfc / default"] = (
            f"wall {bfc['wall'] / base['wall']:.2f}x  user {bfc['user'] / base['user']:.2f}x  "
            f"system {bfc['sys'] / max(base['sys'], 1e-9):.2f}x  peak memory {bfc['rss_mb'] / base['rss_mb']:.2f}x"
        )
        same = len(ids[(command, "default")] | ids[(command, "bfc")]) == 1
        rows[f"{command}: model id"] = ("the same with both allocators: " if same else "DIFFERS: ") + ", ".join(
            sorted(i[:19] for i in ids[(command, "default")] | ids[(command, "bfc")])
        )
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    print_summary("TensorFlow CPU allocator benchmark", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
