"""`audioscope evaluate`: measure a trained AudioScope model on the evaluation sets.

Only the standard library is imported here; TensorFlow is imported by ``run``.
"""

from __future__ import annotations

import argparse
import json
import sys

from audioscope.argtypes import positive_int
from audioscope.options import add_command
from audioscope.shell import q

DESCRIPTION = """\
Evaluate a model trained by `audioscope train` on the four evaluation sets
made by `audioscope mix`: on-screen single mixtures, off-screen single
mixtures, on-screen MoMs (an on-screen-only clip plus an off-screen-only
clip's audio) and off-screen MoMs.

For each example the model separates the input into sources s_m with
on-screen probabilities p_m; the on-screen estimate is x_on = sum_m p_m s_m.
Reported per set (medians; values can be +-inf):
  on-screen sets   SI-SNR of x_on against the on-screen clip's audio, and for
                   MoMs the input's SI-SNR and the improvement
  off-screen sets  OSR = 10 log10(power of the input / power of x_on)
  MoM sets         SI-SNR of the best MixIT remix of the sources (separation
                   quality, whatever the classifier says)
  all sets         power-weighted ROC AUC of p_m (each source weighted by its
                   power relative to the input), also pooled over the sets

--data is a mixtures directory (its eval/<split>/ sets are used), an
eval/<split> folder, or any folder with the set folders (onscreen_single,
offscreen_single, onscreen_mom, offscreen_mom) holding .tfrecord shards.

REPORT_DIR gets report.json (every number, and the two targets, each from
the same statistic as its column of the table: the median OSR on off-screen
single mixtures >= 6 dB, and the median SI-SNR improvement of x_on over
the input on on-screen MoMs >= 3 dB), report.md (the table printed here,
with what each column means) and examples/<set>/<n>/*.wav (mixture,
audio1, audio2, x_on and every source with its probability in the file
name). Running it again with the
same model step and data prints the saved report without evaluating again."""

EPILOG = """\
example:
  audioscope evaluate --model runs/tiny --data mix --out runs/tiny/eval"""


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    p = add_command(
        subparsers,
        "evaluate",
        help="evaluate a trained AudioScope model on the evaluation sets (SI-SNR, OSR, AUC)",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    p.add_argument("--model", required=True, metavar="RUN_DIR",
                   help="run directory of `audioscope train` (its export/), or an exported model folder")
    p.add_argument("--data", required=True, metavar="EVAL_DIR",
                   help="mixtures directory, eval/<split> folder, or folder of the four set folders")
    p.add_argument("--out", required=True, metavar="REPORT_DIR", help="folder for the report and audio examples")
    p.add_argument("--split", choices=("test", "validation"), default="test",
                   help="with a mixtures directory: which eval/<split>/ to use (default: test)")
    p.add_argument("--batch-size", type=positive_int, default=16, metavar="N",
                   help="examples per model call (default: 16)")
    p.add_argument("--examples", type=int, default=2, metavar="N",
                   help="examples per set written as WAV files (default: 2; 0 for none)")
    p.set_defaults(func=run, writes=("out", None))
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from audioscope import storage
    from audioscope.errors import UserError

    if not storage.is_local(args.out):
        raise UserError(f"--out must be a local folder (got {args.out})")

    from audioscope.models import evaluate as E

    model_path = E.export_path(args.model)
    info_path = model_path / "model.json"
    if not (model_path / "saved_model.pb").exists():
        raise UserError(
            f"{args.model} has no exported model (no saved_model.pb in {model_path}); "
            f"train one first: audioscope train --data MIX_DIR --out {q(args.model)} --config tiny"
        )
    sets = E.find_sets(args.data, args.split)
    if not sets:
        raise UserError(
            f"no evaluation sets under {args.data} (folders {', '.join(E.EVAL_SETS)} with .tfrecord shards, "
            f"or a mixtures directory with eval/{args.split}/); make them with `audioscope mix`"
        )
    report_path = Path(args.out) / "report.json"
    step = json.loads(info_path.read_text()).get("step") if info_path.exists() else None
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    if report and report.get("model_info", {}).get("step") == step and report.get("data") == sets and step is not None:
        print(f"{report_path} is up to date (model step {step}); delete it to evaluate again", file=sys.stderr)
    else:
        report = E.evaluate(args.model, args.data, args.out, split=args.split, batch_size=args.batch_size,
                            examples_per_set=args.examples)  # fmt: skip
    print(E.format_table(report))
    print(f"\nreport: {report_path}, examples: {Path(args.out) / 'examples'}", file=sys.stderr)
    return 0
