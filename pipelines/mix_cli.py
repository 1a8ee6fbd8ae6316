"""`audioscope mix`: mixture-of-mixtures training shards and the evaluation sets (the launcher).

The launcher does the small, serial part on the user's machine: it reads the
clip store's index, Df, the labels and any pair lists, makes the plan
(:mod:`audioscope.pipelines.mix_plan`: every example of every shard), pins
it in ``MIX_DIR/mix.json``, writes the shards still missing as work lines
and runs the Beam pipeline (:mod:`audioscope.pipelines.mix`) with any Beam
flags given after ``--``. Progress is read back from the shard files. When
every shard exists it writes ``examples.parquet``, the pair CSVs and, last,
``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from audioscope.argtypes import positive_int

if TYPE_CHECKING:  # pragma: no cover
    from audioscope.pipelines.mix_plan import MixLayout, Plan, Shard

DESCRIPTION = """\
Write mixture-of-mixtures (MoM) training shards and the four evaluation sets
as TFRecord files (SPEC.md 2.6, 2.7), from a clip store, the filtered subset
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
(see audioscope.schemas.records). Clips whose licence matches
--exclude-licence are never used.

Output in MIX_DIR:
  train/<recipe>/<recipe>-NNNNN-of-MMMMM.tfrecord
  eval/<split>/<set>/<set>-NNNNN-of-MMMMM.tfrecord and the pair CSVs
  examples.parquet   one row per example (shard, index, type, clips, ...)
  summary.json       written last: options, inputs, counts, shards
Read them with audioscope.models.data.load_dataset(MIX_DIR/train/<recipe>).

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
    from audioscope.pipelines.mix_plan import parse_recipe

    try:
        return parse_recipe(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    from audioscope.options import add_runner_options, add_store_option

    p = subparsers.add_parser(
        "mix",
        help="write mixture-of-mixtures training shards and the evaluation sets (Beam pipeline)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
        help="target size of a shard, e.g. 256M (default: 256M, about 470 examples of ~566 kB)",
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
    p.set_defaults(func=run)
    return p


# --------------------------------------------------------------------------- inputs


def _table_path(path: str, name: str) -> str:
    """``path`` itself when it is a .parquet file, else ``path/name``."""
    from audioscope import storage

    return path if path.endswith(".parquet") else storage.join(path, name)


def _read_table(path: str, schema: Any, what: str, fix: str) -> Any:
    from audioscope import storage
    from audioscope.errors import UserError
    from audioscope.pipelines.mix_plan import read_parquet
    from audioscope.schemas.tables import SchemaError

    if not storage.exists(path):
        raise UserError(f"{what} {path} not found: {fix}")
    try:
        return read_parquet(path, schema)
    except SchemaError as e:
        raise UserError(f"{path} is not a valid {what}: {e}") from None


def load_inputs(args: argparse.Namespace, store_uri: str) -> dict[str, Any]:
    """Store index, media, Df, labels and pair lists, each checked; the paths as given."""
    from audioscope.errors import UserError
    from audioscope.pipelines.mix_plan import media_videos, read_pairs_dir
    from audioscope.pipelines.runner import normalise
    from audioscope.pipelines.score_cli import open_store
    from audioscope.schemas.tables import DF, LABELS

    store = open_store(store_uri, "mixture records hold")
    df_path = _table_path(normalise(args.df), "df.parquet")
    df = _read_table(df_path, DF, "Df table", "give the folder `audioscope filter` wrote (df.parquet) with --df")
    labels_path = _table_path(normalise(args.labels), "labels.parquet") if args.labels else None
    labels = None
    if labels_path:
        labels = _read_table(labels_path, LABELS, "labels table", "give the annotation step's labels.parquet")
    pair_lists, problems = None, []
    if args.pairs_dir:
        pair_lists, problems = read_pairs_dir(normalise(args.pairs_dir))
        if not pair_lists:
            raise UserError(
                f"no validation or test pair lists in {args.pairs_dir}: give a folder of pair CSVs named like "
                "validation_onscreen_mom_pairs.csv or filtered_test_onscreen_unanimous_clips.csv"
            )
    model_ids = sorted({str(m) for m in df["model_id"].dropna()})
    return {
        "index": store.index, "media": media_videos(store_uri), "df": df, "labels": labels,
        "pair_lists": pair_lists, "pair_problems": problems,
        "inputs": {
            "store": store_uri, "df": df_path, "labels": labels_path, "pairs_dir": args.pairs_dir and normalise(args.pairs_dir),
            "model_id": model_ids[0] if len(model_ids) == 1 else (model_ids or None),
        },
    }  # fmt: skip


def make_config(args: argparse.Namespace) -> Any:
    from audioscope.pipelines.mix_plan import DEFAULT_SHARD_BYTES, MixConfig

    kwargs: dict[str, Any] = {}
    if args.recipes:
        names = [r.name for r in args.recipes]
        if len(set(names)) != len(names):
            from audioscope.errors import UserError

            raise UserError(f"--recipes names a recipe twice ({', '.join(names)}): give each once")
        kwargs["recipes"] = tuple(args.recipes)
    return MixConfig(
        seed=args.seed, examples=args.examples, shard_bytes=args.shard_bytes or DEFAULT_SHARD_BYTES,
        mom_partners=args.eval_mom_partners, exclude_licences=tuple(args.exclude_licence), **kwargs,
    )  # fmt: skip


# --------------------------------------------------------------------------- the run


def pin_plan(layout: "MixLayout", plan: "Plan", config_json: Mapping[str, Any], inputs: Mapping[str, Any]) -> None:
    """Write ``mix.json``, or refuse a MIX_DIR that holds another plan."""
    from audioscope import storage
    from audioscope.errors import UserError
    from audioscope.pipelines.mix_plan import FORMAT_VERSION

    wanted = {"format_version": FORMAT_VERSION, "plan_sha256": plan.sha256(), "config": dict(config_json),
              "inputs": dict(inputs)}  # fmt: skip
    if storage.exists(layout.mix_json):
        have = json.loads(storage.read_text(layout.mix_json))
        if have.get("plan_sha256") != wanted["plan_sha256"]:
            changed = [k for k in ("config", "inputs") if have.get(k) != wanted[k]] or ["the contents of the inputs"]
            raise UserError(
                f"{layout.root} holds mixtures of another plan (changed: {', '.join(changed)}); "
                "a mixture folder holds one plan: pick a new --out, or delete the old one"
            )
    storage.atomic_write(layout.mix_json, json.dumps(wanted, indent=2, sort_keys=True) + "\n")


class ShardPoller:
    """Progress read back from the shard files (and failure markers) of this run."""

    def __init__(self, layout: "MixLayout", todo: Sequence["Shard"]) -> None:
        self.layout = layout
        self.todo = {s.path: len(s.examples) for s in todo}

    def __call__(self) -> tuple[int, dict[str, int]]:
        from audioscope.pipelines.mix import read_failures

        done = set(self.layout.existing_shards()) & set(self.todo)
        failed = set(read_failures(self.layout)) & set(self.todo)
        return len(done) + len(failed), {"examples": sum(self.todo[p] for p in done), "failed": len(failed)}


def write_shards(layout: "MixLayout", plan: "Plan", store_uri: str, beam_args: list[str], poll: float) -> dict[str, str]:
    """Run the pipeline for the shards that do not exist yet; the failures (path -> reason)."""
    from audioscope import storage
    from audioscope.pipelines.mix import read_failures, run_pipeline, write_work
    from audioscope.progress import Poller, Progress

    for path in storage.list_files(layout.failed_dir, ".json"):
        storage.remove(path)  # failed shards of an earlier run are retried
    written = layout.existing_shards()
    todo = [s for s in plan.shards if s.path not in written]
    print(
        f"mix: {len(plan.shards)} shards planned, {len(plan.shards) - len(todo)} already written, "
        f"{len(todo)} to write ({sum(len(s.examples) for s in todo)} examples)",
        file=sys.stderr,
    )
    work_files = write_work(layout, todo)
    if todo:
        progress = Progress("mix", total=len(todo), unit="shards")
        with Poller(progress, ShardPoller(layout, todo), every=poll):
            run_pipeline(store=store_uri, mix_dir=layout.root, work_files=work_files, beam_args=beam_args)
    for path in work_files:
        storage.remove(path)
    return read_failures(layout)


def summary_rows(result: Mapping[str, Any], seconds: float) -> dict[str, object]:
    rows: dict[str, object] = {}
    shards = {s["path"]: s for s in result["shards"]}
    for name, c in result["counts"]["train"].items():
        n = sum(1 for p in shards if p.startswith(f"train/{name}/"))
        types = ", ".join(f"{t} {c[t]}" for t in ("NOn", "SOff", "LOn", "LOff") if c[t])
        rows[f"train/{name}"] = f"{c['total']} examples in {n} shards ({types}; {c['mom']} MoM, {c['single']} single)"
    for split, sets in result["counts"]["eval"].items():
        rows[f"eval/{split}"] = ", ".join(f"{name} {n}" for name, n in sets.items())
    for what, reason in result["notes"]["skipped"].items():
        rows[f"skipped {what}"] = reason
    for use, reasons in result["notes"]["left_out"].items():
        rows[f"left out ({use})"] = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
    problems = result["notes"]["pair_problems"]
    if problems:
        rows["pair list problems"] = f"{len(problems)} (first: {problems[0]}; all in summary.json)"
    rows["bytes"] = f"{sum(s['bytes'] for s in result['shards']) / 2**20:.1f} MiB in {len(shards)} shards"
    rows["wall time"] = f"{seconds:.1f} s"
    return rows


def run(args: argparse.Namespace) -> int:
    from audioscope.pipelines.runner import beam_flags, local_parallelism, normalise

    beam_args = local_parallelism(beam_flags(args.rest), args.workers)
    started = time.time()
    store_uri, out = normalise(args.store), normalise(args.out)
    config = make_config(args)
    loaded = load_inputs(args, store_uri)

    from audioscope.pipelines.mix_plan import Catalog, MixLayout, make_plan, write_outputs
    from audioscope.progress import print_summary

    df, labels = loaded["df"], loaded["labels"]
    catalog = Catalog(
        loaded["index"], loaded["media"], config.exclude_licences, labels,
        scores=dict(zip(df["clip_id"].astype(str), df["probability"].astype(float))),
    )  # fmt: skip
    n_labels = 0 if labels is None else int(labels["label"].notna().sum())
    n_lists = len(loaded["pair_lists"] or ())
    print(f"mix: planning from {len(df)} Df clips, {n_labels} unanimous labels, {n_lists} pair lists", file=sys.stderr)
    plan = make_plan(catalog, df, labels, loaded["pair_lists"], config)
    plan.notes["pair_problems"] = loaded["pair_problems"] + plan.notes["pair_problems"]
    layout = MixLayout(out)
    pin_plan(layout, plan, config.to_json(), loaded["inputs"])
    failed = write_shards(layout, plan, store_uri, beam_args, args.poll)
    existing = layout.existing_shards()
    failed.update({s.path: "not written (the pipeline stopped early?)" for s in plan.shards
                   if s.path not in existing and s.path not in failed})  # fmt: skip
    if failed:
        for path, message in list(failed.items())[:5]:
            print(f"audioscope mix: {path}: {message}", file=sys.stderr)
        print(
            f"\n{len(failed)} shards could not be written (reasons in {layout.failed_dir}); summary.json is not "
            "written until every shard exists: fix the cause and run the same command again to resume.",
            file=sys.stderr,
        )
        return 1
    result = write_outputs(layout, plan, config, loaded["inputs"])
    print_summary("Mixtures finished", summary_rows(result, time.time() - started))
    print(f"\nMixtures: {layout.root} (summary.json, examples.parquet)")
    return 0
