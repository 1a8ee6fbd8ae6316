"""Lose one element anywhere in a step's Beam pipeline and see what the step makes of it.

    .venv/bin/python -m tests.pipelines.lossy_sweep ingest|score|mix|render [--work DIR] [--only TEXT]

The runner stand-ins of the tests (:mod:`tests.pipelines.doors`) lose work
at the places we thought of. This sweep loses it everywhere: for every edge
of the pipeline's graph (a transform's output feeding the next one, as
Beam's SDK harness delivers it) and for its first and its last element, it
runs the step once with that one element lost, then once more as the user
would after an error. Each case must end one of two ways:

- ``complete``: exit 0 and the outputs equal an undisturbed run's (the loss
  did not matter, or the step made up for it);
- ``refused``: a non-zero exit, without a traceback, whose last line says
  to run the step again (printed under the case);

and in both, the run that follows exits 0 with the undisturbed outputs. A
case that exits 0 with other outputs is a ``SILENT LOSS``. The sweep exits
1 when any case is one (or when a refusal came with a traceback or a re-run
did not complete), and prints one line per case; each case's output is
kept in ``--work``/cases/.

Beam's compiled (Cython) modules cannot be patched, so the runs load Beam
from its Python sources (``--child``), which is slower: a sweep of one step
takes 10-45 minutes on 2 cores. Not part of the test suite; run it when a
pipeline's graph changes. Inputs are made under ``--work`` (a synthetic
corpus, a store, a tiny scoring model, a Df and labels from the corpus's
truth, annotation pools).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

#: Keys of JSON outputs that differ between two undisturbed runs (clocks, speeds), or between a
#: re-run and one run of everything (what this run did: score's ``clips_scored``).
VOLATILE = ("wall", "seconds", "_at", "elapsed", "per_s", "per_second", "time", "_scored")


# --------------------------------------------------------------------------- the child: one lossy run


def _pure_python_beam() -> None:
    """Load Beam's Cython-compiled modules from their ``.py`` sources (compiled-only ones: not at all,
    which Beam falls back from), so that the SDK harness's classes can be patched."""
    import importlib.abc
    import importlib.machinery
    import importlib.util

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
            if not name.startswith("apache_beam"):
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None or not isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
                return spec
            source = os.path.join(os.path.dirname(spec.origin), name.rsplit(".", 1)[-1] + ".py")
            if not os.path.exists(source):
                raise ImportError(f"{name} is compiled only")
            return importlib.util.spec_from_file_location(name, source)

    sys.meta_path.insert(0, Finder())


def child(argv: list[str]) -> None:
    """Run ``audioscope ARGV`` losing the element LOSSY_NTH of the edge LOSSY_EDGE (if set); every
    edge's element count goes to the JSON file LOSSY_COUNTS."""
    _pure_python_beam()
    from apache_beam.runners.worker import operations

    edge, nth = os.environ.get("LOSSY_EDGE"), int(os.environ.get("LOSSY_NTH", "0"))
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def lossy(cls: Any) -> None:
        receive = cls.receive

        def lossy_receive(self: Any, windowed_value: Any) -> Any:
            key = f"{self.step_name}:{self.output_index}"
            with lock:
                i = counts.get(key, 0)
                counts[key] = i + 1
            if key == edge and i == nth:
                return None
            return receive(self, windowed_value)

        cls.receive = lossy_receive

    lossy(operations.SingletonElementConsumerSet)
    lossy(operations.GeneralPurposeConsumerSet)
    import atexit

    from audioscope import cli

    def write_counts() -> None:
        with lock:
            Path(os.environ["LOSSY_COUNTS"]).write_text(json.dumps(counts))

    atexit.register(write_counts)
    sys.argv = ["audioscope", *argv]
    cli.run()  # as the console script ends (its last lines reach stderr before the exit)


# --------------------------------------------------------------------------- the steps


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if not any(s in k for s in VOLATILE)}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def files_of(root: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every file under ``root``: JSON by content (clocks and ``root`` itself left out), Parquet by rows,
    others by SHA-256."""
    import pyarrow.parquet as pq

    out: dict[str, Any] = {}
    for path in sorted(glob.glob(f"{root}/**/*", recursive=True)):
        rel = os.path.relpath(path, root)
        if os.path.isdir(path) or rel.startswith(skip):
            continue
        if rel.endswith(".json"):
            try:  # the output folder's own path (base or case) left out
                out[rel] = _clean(json.loads(Path(path).read_text().replace(json.dumps(root)[1:-1], "<out>")))
            except ValueError:
                out[rel] = "not JSON"
        elif rel.endswith(".parquet"):
            out[rel] = sorted(json.dumps(r, sort_keys=True, default=str) for r in pq.read_table(path).to_pylist())
        else:
            out[rel] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return out


class Step:
    """A step under test: ``setup`` makes its inputs once, ``command(out)`` its arguments, ``outputs(out)`` what is compared."""

    #: A folder copied to ``out`` before each run (a store that the run grows), or None: ``out`` starts empty.
    start: str | None = None

    def __init__(self, work: Path) -> None:
        self.work = work

    def setup(self) -> None:
        raise NotImplementedError

    def command(self, out: str) -> list[str]:
        raise NotImplementedError

    def outputs(self, out: str) -> dict[str, Any]:
        return files_of(out)


def _cli(*args: str) -> None:
    from audioscope import cli

    code = cli.main(list(args))
    if code != 0:
        raise SystemExit(f"setting up: audioscope {' '.join(args[:2])} exited {code}")


def _corpus(work: Path) -> Path:
    corpus = work / "corpus"
    _cli("synth", "--out", str(corpus), "--videos", "14", "--seed", "5", "--no-broken", "--min-duration", "8",
         "--max-duration", "12", "--onscreen-rate", "0.5")  # fmt: skip
    return corpus


def _store(work: Path) -> Path:
    store = work / "store"
    if not (store / "summary.json").exists():
        _cli("ingest", str(_corpus(work) / "list.csv"), "--store", str(store), "--workers", "2")
    return store


class Ingest(Step):
    """A store of a first list grown by a second one (the index is rebuilt from both lists' status records)."""

    def setup(self) -> None:
        import csv

        rows = list(csv.DictReader((_corpus(self.work) / "list.csv").open()))
        for name, part, prefix in (("first", rows[:7], "aa"), ("second", rows[7:], "bb")):
            with (self.work / f"{name}.csv").open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                for row in part:  # ids under two status folders, aa/ and bb/
                    writer.writerow({**row, "uri": str(self.work / "corpus" / row["uri"]),
                                     "video_id": f"{prefix}-{row['video_id']}"})  # fmt: skip
        self.start = str(self.work / "grown")
        if not (self.work / "grown" / "summary.json").exists():
            _cli("ingest", str(self.work / "first.csv"), "--store", self.start, "--workers", "2")

    def command(self, out: str) -> list[str]:
        return ["ingest", str(self.work / "second.csv"), "--store", out, "--workers", "2", "--poll", "0.2"]

    def outputs(self, out: str) -> dict[str, Any]:
        return files_of(out, skip=("requests", "ingest.lock", "store.json"))


class Score(Step):
    def setup(self) -> None:
        from tests.pipelines.test_score import export_model

        _store(self.work)
        if not (self.work / "model").exists():
            export_model(self.work / "model", 1.0)

    def command(self, out: str) -> list[str]:
        return ["score", "--store", str(self.work / "store"), "--model", str(self.work / "model"), "--out", out,
                "--batch-size", "3", "--poll", "0.2"]  # fmt: skip

    def outputs(self, out: str) -> dict[str, Any]:
        return files_of(out, skip=("work",))


class Mix(Step):
    def setup(self) -> None:
        from audioscope.clipstore import ClipStore
        from tests.pipelines.mixdata import choose_splits, truth_of, write_df, write_labels

        clips = truth_of(ClipStore.open(str(_store(self.work))).index)
        split = choose_splits(clips)
        write_df(self.work / "df", clips, split)
        write_labels(self.work / "labels.parquet", clips, split)

    def command(self, out: str) -> list[str]:
        return ["mix", "--store", str(self.work / "store"), "--df", str(self.work / "df"), "--labels",
                str(self.work / "labels.parquet"), "--out", out, "--examples", "24", "--shard-bytes", "6M",
                "--eval-mom-partners", "2", "--poll", "0.2"]  # fmt: skip

    def outputs(self, out: str) -> dict[str, Any]:
        return files_of(out, skip=("work",))


class Render(Step):
    """Twelve clips of the store's videos, as `annotate sample` would draw them."""

    def setup(self) -> None:
        from audioscope.annotation.pools import pools_table_bytes
        from audioscope.clipstore import ClipStore

        index = ClipStore.open(str(_store(self.work))).index.head(12)
        pools = index[["clip_id", "video_id", "start", "end", "source_uri", "licence_name", "licence_url"]].assign(split="train")
        (self.work / "ann").mkdir(exist_ok=True)
        (self.work / "ann" / "pools.parquet").write_bytes(pools_table_bytes(pools.assign(pool="filtered_train")))

    def command(self, out: str) -> list[str]:
        return ["annotate", "render", "--annotations", str(self.work / "ann"), "--media", out, "--poll", "0.2"]

    def outputs(self, out: str) -> dict[str, Any]:
        return files_of(out, skip=("work",))


STEPS: dict[str, Callable[[Path], Step]] = {"ingest": Ingest, "score": Score, "mix": Mix, "render": Render}


# --------------------------------------------------------------------------- the sweep


def run(step: Step, out: str, edge: str | None = None, nth: int = 0) -> tuple[int, str, dict[str, int]]:
    """One run of the step into ``out``, losing element ``nth`` of ``edge`` (if given); (exit, output, edge counts)."""
    counts = step.work / "counts.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOSSY_")}
    env.update(LOSSY_COUNTS=str(counts), **({"LOSSY_EDGE": edge, "LOSSY_NTH": str(nth)} if edge else {}))
    proc = subprocess.run(
        [sys.executable, "-m", "tests.pipelines.lossy_sweep", "--child", *step.command(out)],
        capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr, json.loads(counts.read_text()) if counts.exists() else {}


def fresh(step: Step, out: str) -> str:
    shutil.rmtree(out, ignore_errors=True)
    if step.start:
        shutil.copytree(step.start, out)
    return out


def sweep(name: str, work: Path, only: str = "") -> int:
    work.mkdir(parents=True, exist_ok=True)
    step = STEPS[name](work)
    step.setup()
    code, output, counts = run(step, fresh(step, str(work / "base")))
    if code != 0:
        print(output)
        return 2
    base = step.outputs(str(work / "base"))
    code, _, _ = run(step, fresh(step, str(work / "base2")))
    again = step.outputs(str(work / "base2"))
    unstable = sorted(k for k in set(base) | set(again) if base.get(k) != again.get(k))
    if code != 0 or unstable:
        print(f"two undisturbed runs differ ({unstable[:5]}): nothing to compare against")
        return 2
    print(f"{name}: {len(counts)} edges, {len(base)} output files; undisturbed runs agree", flush=True)
    bad = case = 0
    logs = work / "cases"  # each case's output, for a closer look
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir()
    for edge, n in counts.items():
        if only not in edge:
            continue
        for nth in sorted({0, n - 1}):
            out = fresh(step, str(work / "case"))
            code, output, _ = run(step, out, edge, nth)
            got = step.outputs(out)
            differs = sorted(k for k in set(base) | set(got) if base.get(k) != got.get(k))
            said = [line for line in output.splitlines() if line.strip() and not line.startswith(" ")][-1:]
            if code == 0:
                verdict = "complete" if not differs else "SILENT LOSS"
            elif "Traceback" in output:
                verdict = "REFUSED WITH TRACEBACK"
            else:  # the last line says what happened and to run the step again
                verdict = "refused" if said and "again" in said[0] else "REFUSED UNCLEARLY"
            code2, output2, _ = run(step, out)
            rerun = code2 == 0 and step.outputs(out) == base
            ok = verdict in ("complete", "refused") and rerun
            bad += not ok
            case += 1
            (logs / f"{case:03d}.log").write_text(f"{edge} #{nth}\n--- exit {code}\n{output}\n--- re-run: exit {code2}\n{output2}")
            print(f"{verdict:22s} re-run {'completes' if rerun else 'FAILS':9s} {edge} #{nth}  [{case:03d}.log]", flush=True)
            if code != 0 and said:
                print(f"    {said[0][:200]}", flush=True)
            if not ok:
                print(f"    differs: {differs[:4]}", flush=True)
    print(f"{name}: {'every case ended complete or refused, and its re-run completed' if not bad else f'{bad} bad cases'}")
    return 1 if bad else 0


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=sorted(STEPS))
    parser.add_argument("--work", type=Path, default=Path("lossy-sweep"), help="inputs and runs go here (default: lossy-sweep)")
    parser.add_argument("--only", default="", help="only edges whose name contains TEXT")
    args = parser.parse_args()
    sys.exit(sweep(args.step, args.work.resolve(), args.only))


if __name__ == "__main__":
    main()
