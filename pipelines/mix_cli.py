"""`audioscope mix`: the command line of the mix step (arguments, progress, exit code).

The step itself is :func:`audioscope.pipelines.mix.mix`; this module turns
the arguments into its :class:`~audioscope.pipelines.mix.MixConfig`, prints
the summary and maps the result to an exit code (1 when shards are missing).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Mapping

from audioscope.argtypes import positive_int

DESCRIPTION = """\
Write mixture-of-mixtures (MoM) training shards and the four evaluation sets
as TFRecord files (docs/recipe.md), from a clip store, the filtered subset
Df (`audioscope filter`) and the unanimous labels of the annotation step.

Training examples (train split only):
  NOn   frames and audio of a Df clip, plus a second mixture: the audio of a
        Df clip from another video
  SOff  frames of a Df clip, audio of a clip from another Df video (nothing
        heard is on screen), plus a second mixture from a third video
  LOn / LOff
        frames and audio of a unanimously on-screen-only / off-screen-only
        labeled clip; every other one is a single mixture (audio2 all zeros),
        the rest have a second mixture from another Df video
Recipes (--recipes, default: all three), each written to train/<recipe>/:
  unsupervised          NOn=1
  unsupervised-soff25   NOn=0.75,SOff=0.25
  semi-supervised       NOn=0.5,SOff=0.25,LOn=0.125,LOff=0.125
  Change the proportions with NAME:TYPE=P,...; e.g.
  --recipes unsupervised semi-supervised:NOn=0.4,SOff=0.2,LOn=0.2,LOff=0.2
Types are interleaved, so any run of examples read in order already has the
recipe's proportions (the first k examples of every shard: within one
example of k times each proportion).

Evaluation sets (from unanimously labeled validation and test clips), in
eval/<split>/<set>/ with a pair list <split>_<set>_pairs.csv in the published
six-column format (path1,start1,end1,path2,start2,end2; single mixtures leave
the last three empty):
  onscreen_single   on-screen-only clips
  offscreen_single  off-screen-only clips
  onscreen_mom      each on-screen-only clip + the audio of K off-screen-only
                    clips of other videos (K = --eval-mom-partners, default 5
                    as in the published lists)
  offscreen_mom     each off-screen-only clip + K other off-screen-only clips
With --pairs-dir, the evaluation sets are rebuilt exactly from pair CSVs
instead: ours, or the published AudioScope lists
(filtered_test_onscreen_unanimous_clips.csv,
filtered_validate_onscreen_unanimous_plus_offscreen_unanimous_mom_clips.csv,
...), matched to the store's clips by video path and start.
Without --labels (and --pairs-dir), LOn/LOff recipes and the evaluation sets
are skipped; summary.json says so.

Every record carries both clips' ids, video ids, times and licences, the
frames' clip and licence, clip 1's rater votes, label and coincidence score
(see audioscope.schemas.records). Shards are packed (record schema 5): each
clip's media once, then the examples, which refer to them; the second
mixture of a training example is a Df clip of the same shard. Clips whose licence matches
--exclude-licence are never used.

Output in MIX_DIR:
  train/<recipe>/<recipe>-NNNNN-of-MMMMM.tfrecord
  eval/<split>/<set>/<set>-NNNNN-of-MMMMM.tfrecord and the pair CSVs
  examples.parquet   one row per example (shard, index, type, clips, ...)
  summary.json       written last: options, inputs, counts, shards
Read them with audioscope.models.data.load_dataset(MIX_DIR/train/<recipe>) (TensorFlow),
or audioscope.models.numpy_data.MixtureArrays(...) (numpy only: PyTorch, JAX).

The same inputs, options and --seed give byte-identical files on every run
and runner. Re-running resumes: shards that exist are kept. A MIX_DIR holds
one plan: other inputs or options need a new --out.

Example:
  audioscope mix --store store --df df --labels annotation/labels.parquet --out mix
Beam flags go after `--`, e.g.
  audioscope mix --store gs://b/store --df gs://b/df --labels gs://b/labels.parquet \\
      --out gs://b/mix -- --runner=DataflowRunner --project=P --region=R \\
      --temp_location=gs://b/tmp --sdk_container_image=IMAGE"""


def byte_size(text: str) -> int:
    """A byte count: a whole number with an optional K, M or G suffix (powers of 1024)."""
    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    scale = units.get(t[-1:], 1)
    number = t[:-1] if t[-1:] in units else t
    try:
        value = int(float(number) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: give bytes, e.g. 268435456 or 256M") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"the size must be at least 1 byte, got {text!r}")
    return value


def _recipe(text: str) -> Any:
    from audioscope.pipelines.mix_recipes import parse_recipe

    try:
        return parse_recipe(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    from audioscope.options import add_command, add_runner_options, add_store_option

    p = add_command(
        subparsers,
        "mix",
        help="write mixture-of-mixtures training shards and the evaluation sets (Beam pipeline)",
        description=DESCRIPTION,
    )
    add_store_option(p)
    p.add_argument("--df", required=True, metavar="DF_DIR", help="folder written by `audioscope filter` (df.parquet), or the file")
    p.add_argument(
        "--labels", metavar="LABELS", default=None,
        help="labels.parquet of the annotation step (or its folder): unanimous labels for LOn/LOff and the "
        "evaluation sets (default: none; those are then skipped)",
    )
    p.add_argument("--out", required=True, metavar="MIX_DIR", help="mixture folder to create or resume (path, gs://, s3://)")
    p.add_argument(
        "--recipes", nargs="+", type=_recipe, default=None, metavar="RECIPE",
        help="training recipes: unsupervised, unsupervised-soff25, semi-supervised, each optionally "
        "NAME:NOn=P,SOff=P,LOn=P,LOff=P (default: all three with their default proportions)",
    )
    p.add_argument(
        "--examples", type=positive_int, default=None, metavar="N",
        help="training examples per recipe (default: the number of usable Df train clips)",
    )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of every random choice (default: 0)")
    p.add_argument(
        "--shard-bytes", type=byte_size, default=None, metavar="SIZE",
        help="target size of a shard, e.g. 256M (default: 256M, about 1,000 examples of ~266 kB; shards are "
        "planned with that estimate, so real sizes follow how well the media compress)",
    )
    p.add_argument(
        "--eval-mom-partners", type=positive_int, default=5, metavar="K",
        help="second clips per first clip in the evaluation MoM sets (default: 5, as in the published lists)",
    )
    p.add_argument(
        "--exclude-licence", action="append", default=[], metavar="TEXT",
        help="never use clips whose licence name or URL contains TEXT (case-insensitive; repeatable), "
        "e.g. NoDerivs or /by-nd/",
    )
    p.add_argument(
        "--pairs-dir", metavar="DIR", default=None,
        help="rebuild the evaluation sets exactly from the pair CSVs in DIR (ours or the published "
        "AudioScope lists) instead of choosing pairs from the labels",
    )
    add_runner_options(p, what="work shards written")
    p.set_defaults(func=run, writes=("out", "mix"))
    return p


# --------------------------------------------------------------------------- the run


def make_config(args: argparse.Namespace) -> Any:
    """The library's :class:`~audioscope.pipelines.mix.MixConfig` from the parsed arguments."""
    from audioscope.pipelines.mix import MixConfig
    from audioscope.pipelines.mix_recipes import DEFAULT_SHARD_BYTES
    from audioscope.pipelines.runner import beam_flags, local_parallelism, normalise

    kwargs: dict[str, Any] = {"recipes": tuple(args.recipes)} if args.recipes else {}
    return MixConfig(
        store=normalise(args.store), df=normalise(args.df), out=normalise(args.out),
        labels=normalise(args.labels) if args.labels else None,
        pairs_dir=normalise(args.pairs_dir) if args.pairs_dir else None,
        seed=args.seed, examples=args.examples, shard_bytes=args.shard_bytes or DEFAULT_SHARD_BYTES,
        mom_partners=args.eval_mom_partners, exclude_licences=tuple(args.exclude_licence),
        beam_args=tuple(local_parallelism(beam_flags(args.rest), args.workers)), progress=True, poll=args.poll,
        **kwargs,
    )  # fmt: skip


def summary_rows(summary: Mapping[str, Any], seconds: float) -> dict[str, object]:
    rows: dict[str, object] = {}
    shards = {s["path"]: s for s in summary["shards"]}
    for name, c in summary["counts"]["train"].items():
        n = sum(1 for p in shards if p.startswith(f"train/{name}/"))
        types = ", ".join(f"{t} {c[t]}" for t in ("NOn", "SOff", "LOn", "LOff") if c[t])
        rows[f"train/{name}"] = f"{c['total']} examples in {n} shards ({types}; {c['mom']} MoM, {c['single']} single)"
    for split, sets in summary["counts"]["eval"].items():
        rows[f"eval/{split}"] = ", ".join(f"{name} {n}" for name, n in sets.items())
    for what, reason in summary["notes"]["skipped"].items():
        rows[f"skipped {what}"] = reason
    for use, reasons in summary["notes"]["left_out"].items():
        rows[f"left out ({use})"] = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
    problems = summary["notes"]["pair_problems"]
    if problems:
        rows["pair list problems"] = f"{len(problems)} (first: {problems[0]}; all in summary.json)"
    rows["bytes"] = f"{sum(s['bytes'] for s in summary['shards']) / 2**20:.1f} MiB in {len(shards)} shards"
    rows["wall time"] = f"{seconds:.1f} s"
    return rows


def run(args: argparse.Namespace) -> int:
    from audioscope.pipelines.mix import LOST, mix
    from audioscope.progress import print_summary

    result = mix(make_config(args))
    layout = result.layout
    if not result.finished:
        for path, message in list(result.failed.items())[:5]:
            print(f"audioscope mix: {path}: {message}", file=sys.stderr)
        lost = sum(message == LOST for message in result.failed.values())
        failed = len(result.failed) - lost
        why = [f"{failed} shards could not be written (reasons in {layout.failed_dir})"] if failed else []
        why += [f"{lost} shards were not written (the runner lost their work)"] if lost else []
        print(
            f"\n{'; '.join(why)}; summary.json is not written until every shard exists: "
            f"{'fix the cause and ' if failed else ''}run the same command again to resume.",
            file=sys.stderr,
        )
        return 1
    assert result.summary is not None
    print_summary("Mixtures finished", summary_rows(result.summary, result.seconds))
    print(f"\nMixtures: {layout.root} (summary.json, examples.parquet)")
    return 0
