"""`audioscope train`: train the reference AudioScope model on mixture shards.

Only the standard library is imported here; TensorFlow is imported by ``run``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from audioscope.argtypes import positive_int, seconds_or_none
from audioscope.options import add_command
from audioscope.shell import q

RECIPES = ("semi-supervised", "unsupervised-soff25", "unsupervised")
STRATEGIES = ("default", "mirrored", "tpu")

DESCRIPTION = """\
Train the AudioScope model (separation into M sources with MixIT, on-screen
classification of every source from the video) on the mixture shards made by
`audioscope mix`, or on a release.

--data is a mixtures directory (training reads its train/<recipe>/ shards,
see --recipe), a folder of shards, one shard, a glob, or a release. Examples
are shuffled and repeated; each step separates the mixture of mixtures
audio1 + audio2, finds the best MixIT assignment of the sources to the two
mixtures, and labels the sources assigned to audio1 as on screen when
audio1 is (types NOn, LOn) and every source as off screen otherwise (SOff,
LOff).

Configurations (--config): `paper` has the published sizes and settings
(Adam, learning rate 1e-4, 256 examples per step; meant for GPUs/TPUs),
`tiny` is small enough to train on a laptop CPU in minutes (learning rate
5e-3 falling to 5e-4, 8 examples per step, 0.5 s of audio cut from each
example and resampled at random, frames mirrored and shifted at random, the
classification loss kept out of the separation network and weighted by
each source's power (--classification-weighting), the video tower
seeing motion (--video-input) and the export holding the mean of the weights
over the last third of the run (--export-weights)).

RUN_DIR holds run.json (configuration and data), checkpoints/, tensorboard/
(`tensorboard --logdir RUN_DIR/tensorboard`), export/ (the SavedModel that
`audioscope evaluate` uses, written when training stops) and
train_summary.json. Running the same command again resumes from the last
checkpoint; --steps and --time-budget are totals over all runs, so a run
that reached them only makes sure its model is exported. Ctrl-C writes a
checkpoint and the export first.

Exported signature "serving_default":
  mixture float32 [None, None] (16 kHz), frames uint8 [None, 5, 128, 128, 3]
  -> sources float32 [None, M, None], probabilities float32 [None, M],
     on_screen float32 [None, None] (x_on = sum_m p_m s_m)"""

EPILOG = """\
examples:
  audioscope train --data mix --out runs/tiny --config tiny --steps 3000 --time-budget 900
  audioscope evaluate --model runs/tiny --data mix --out runs/tiny/eval
  audioscope train --data gs://b/mix --out runs/paper --config paper --strategy mirrored"""


def _number_above(low: float, strict: bool) -> Callable[[str], float]:
    """An argparse type: a number > ``low`` (``strict``) or >= ``low``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low:g}, got {value:g}")
        return value

    return parse


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    p = add_command(
        subparsers,
        "train",
        help="train the reference AudioScope model on mixture shards (TensorFlow)",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    p.add_argument("--data", required=True, metavar="SHARDS_OR_DIR",
                   help="mixtures directory, folder of shards, shard, glob or release to train on")
    p.add_argument("--out", required=True, metavar="RUN_DIR",
                   help="run directory to create, or to resume (a local folder)")
    p.add_argument("--config", choices=("paper", "tiny"), default=None,
                   help="model sizes and training settings (default: the run's own when resuming, else paper)")
    p.add_argument("--recipe", choices=RECIPES, default=None,
                   help="with a mixtures directory: which train/<recipe>/ shards to read "
                   "(default: the first present of " + ", ".join(RECIPES) + ")")
    p.add_argument("--steps", type=positive_int, default=None, metavar="N",
                   help="train until this step (a total over resumed runs; default: the configuration's)")
    p.add_argument("--time-budget", type=seconds_or_none, default=None, metavar="SECONDS",
                   help="stop after this many seconds of training in all (resumed runs included); default: none. "
                   "The learning rate then follows the larger of the shares of steps and time used, so the "
                   "same seed gives the same model only without a budget")
    p.add_argument("--strategy", choices=STRATEGIES, default="default",
                   help="tf.distribute strategy: default (one device), mirrored (all local GPUs) or tpu")
    p.add_argument("--tpu", default=None, metavar="ADDRESS",
                   help="with --strategy tpu: the TPU name or grpc:// address (default: the local TPU)")
    p.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                   help="examples per step over all replicas (default: the configuration's: paper 256, tiny 8)")
    p.add_argument("--learning-rate", type=_number_above(0.0, strict=True), default=None, metavar="LR",
                   help="Adam learning rate (default: the configuration's: paper 1e-4, tiny 5e-3)")
    p.add_argument("--classification-loss", choices=("exact", "mi", "ac"), default=None,
                   help="on-screen loss: exact, multiple-instance (mi) or active-combinations (ac) "
                   "cross-entropy (default: the configuration's)")
    p.add_argument("--classification-weight", type=_number_above(0.0, strict=False), default=None, metavar="W",
                   help="weight of the classification loss added to the MixIT loss (default: the configuration's)")
    p.add_argument("--classification-weighting", choices=("uniform", "power"), default=None,
                   help="weights of the sources' terms of the classification loss: uniform (paper), or power, "
                   "each source's share of the separated power, so quiet sources teach little and the loss "
                   "follows the loud ones that x_on is made of (tiny) (default: the configuration's)")
    p.add_argument("--mismatched-frames-weight", type=_number_above(0.0, strict=False), default=None, metavar="W",
                   help="weight of a second classification term: each example's sources against another "
                   "example's frames (another video), all labelled off screen, so that no sound is called "
                   "on screen for what it sounds like alone; 0 is off (default: the configuration's: paper 0, tiny 2)")
    p.add_argument("--video-input", choices=("frames", "motion"), default=None,
                   help="what the video tower sees: the frames (paper), or motion, each frame minus the mean "
                   "of the five, so a static background carries nothing (tiny) (default: the configuration's)")
    p.add_argument("--export-weights", choices=("last", "average"), default=None,
                   help="the exported weights: the last ones (paper), or the mean of the weights taken every "
                   "summary step over the last third of the run (tiny) (default: the configuration's)")
    p.add_argument("--shuffle-buffer", type=positive_int, default=2048, metavar="N",
                   help="examples in the shuffle buffer, held undecoded with their compressed clips "
                   "(~83 kB each in the demo's mixtures, beside the four shards read at a time). Default: "
                   "2048, one recipe of the demo's mixtures: with 256, `tiny`'s on-screen classifier "
                   "failed on more of its test sets")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="random seed (default: 0)")
    p.set_defaults(func=run, writes=("out", "run"))
    return p


def resolve_data(data: str, recipe: str | None) -> tuple[str, str | None]:
    """The shards to read for ``--data``: ``(source, recipe or None)``."""
    from audioscope import storage
    from audioscope.errors import UserError

    from audioscope.pipelines.mix_layout import is_mix_folder

    if is_mix_folder(data):
        for name in ([recipe] if recipe else list(RECIPES)):
            path = storage.join(data, "train", name)
            if storage.list_files(path, ".tfrecord"):
                return path, name
        wanted = recipe or " or ".join(RECIPES)
        raise UserError(f"{data} has no train/{wanted}/ shards; run `audioscope mix` with that recipe, or pick another --recipe")
    if recipe:
        raise UserError(f"--recipe needs a mixtures directory (with summary.json and train/); {data} is not one")
    return data, None


def refuse_evaluation_shards(data: str, source: str, files: list[str]) -> None:
    """Refuse a --data whose shards include evaluation sets it holds below it (a release pulled with
    ``--only eval``, an unfinished mixtures folder): read as a folder of shards, their eval/ shards
    would be trained on, and the test data leak into the model. A folder given as itself (the user
    pointing at one set) is taken as given."""
    from audioscope import storage
    from audioscope.errors import UserError
    from audioscope.pipelines.mix_layout import MixLayout

    fixed = source.split("*")[0].split("?")[0].split("[")[0]
    prefix = fixed if any(c in source for c in "*?[") else source.rstrip("/") + "/"
    inside = [f[len(prefix):] for f in files if f.startswith(prefix)]  # (folders above --data are the user's)
    held_out = [f for f in inside if "eval" in f.split("/")[:-1]]
    if not held_out:
        return
    layout = MixLayout(data)
    if storage.exists(layout.mix_json) and not layout.is_finished():
        why = f"the mixtures in {data} have not finished (no summary.json): run `audioscope mix` again until it prints its summary"
    else:
        why = "give a mixtures folder or a release with train/ shards (a release pulled without --only eval), or its train/RECIPE folder"
    raise UserError(
        f"{data} holds evaluation shards ({held_out[0]}{', ...' if len(held_out) > 1 else ''}) and no training "
        f"shards of a finished mixtures folder: training on them would leak the test sets into the model; {why}"
    )


def build_config(args: argparse.Namespace, stored: object) -> object:
    """The configuration: the stored one when resuming, else --config; with the options given."""
    from audioscope.models.configs import get_config

    overrides = {
        key: value for key, value in (
            ("batch_size", args.batch_size), ("learning_rate", args.learning_rate),
            ("classification_loss", args.classification_loss), ("classification_weight", args.classification_weight),
            ("classification_weighting", args.classification_weighting),
            ("mismatched_frames_weight", args.mismatched_frames_weight),
            ("seed", args.seed), ("video_input", args.video_input), ("export_weights", args.export_weights),
        ) if value is not None
    }  # fmt: skip
    if stored is not None and (args.config is None or args.config == stored.name):  # type: ignore[attr-defined]
        return stored.replace(**overrides)  # type: ignore[attr-defined]
    return get_config(args.config or "paper", **overrides)


def example_bytes(data: str, files: list[str], sizes: list[int]) -> int:
    """Stored bytes per example of ``files`` (``sizes``: theirs), for the memory check.

    From the mixtures folder's ``summary.json`` when ``data`` is a finished one that lists every
    file (each shard's bytes and examples: nothing is read, whatever the shards' size or place) at
    the sizes the files have; else from the smallest shard, read once
    (:func:`~audioscope.models.numpy_data.stored_example_bytes`)."""
    from audioscope.errors import UserError
    from audioscope.models.numpy_data import stored_example_bytes
    from audioscope.pipelines.mix_layout import MixLayout, is_mix_folder

    if files and is_mix_folder(data):
        try:
            listed = {str(s["path"]): (int(s["examples"]), int(s["bytes"])) for s in MixLayout(data).read_summary()["shards"]}
        except (UserError, KeyError, TypeError, ValueError):
            listed = {}
        found = [_listed_under(f, listed) for f in files]
        # a shard replaced or edited since the summary was written has another size: read it instead
        if listed and all(v is not None and v[0] >= 0 and v[1] == size for v, size in zip(found, sizes)):
            examples, stored = sum(v[0] for v in found), sum(v[1] for v in found)  # type: ignore[index]
            return -(-stored // examples) if examples else 0
    return stored_example_bytes(files, sizes)


def _listed_under(uri: str, listed: dict[str, tuple[int, int]]) -> tuple[int, int] | None:
    """The entry of ``listed`` (relative shard path -> value) whose path ends ``uri`` after a ``/``."""
    parts = uri.split("/")
    return next((listed[p] for p in ("/".join(parts[-k:]) for k in range(1, len(parts))) if p in listed), None)


def check_cpu_memory(config: object, data_bytes: int = 0) -> None:
    """Refuse, in one line, a training on the CPU that needs more memory than this machine has
    (the `paper` configuration's 256 examples per step take ~950 GB there): it would be killed
    for memory with no word, after taking the machine's memory from everything else.
    ``data_bytes``: what the loader holds of the shards at once (``numpy_data.held_bytes``)."""
    import tensorflow as tf

    from audioscope.errors import UserError
    from audioscope.models.configs import CPU_MEMORY_GB, cpu_memory_gb
    from audioscope.processes import available_memory

    if tf.config.list_physical_devices("GPU"):
        return  # an accelerator's memory is its own
    model, have = cpu_memory_gb(config), available_memory()  # type: ignore[arg-type]
    if model is None or have is None:
        return
    data = data_bytes / 1e9
    need = model + data
    if need * 1e9 <= have:
        return
    fixed, per_example = CPU_MEMORY_GB[config.name]  # type: ignore[attr-defined]
    fits = int((have / 1e9 - fixed - data) // per_example)
    smaller = f", or with --batch-size {fits} or less" if fits >= 1 else ""
    shards = f" (of which {data:,.1f} GB for the shards read and the examples in --shuffle-buffer)" if data >= 0.1 else ""
    raise UserError(
        f"the {config.name!r} configuration at {config.batch_size} examples per step needs about "  # type: ignore[attr-defined]
        f"{need:,.0f} GB of memory on the CPU{shards}, and this machine has {have / 1e9:.1f} GB available: "
        f"train it on GPUs (--strategy mirrored) or TPUs (--strategy tpu), or here with --config tiny{smaller}"
    )


def run(args: argparse.Namespace) -> int:
    from audioscope import storage
    from audioscope.errors import UserError

    if not storage.is_local(args.out):
        raise UserError(f"--out must be a local folder (got {args.out}); copy the run to object storage afterwards")
    source, recipe = resolve_data(args.data, args.recipe)

    from audioscope.models import data as loader

    try:
        files = loader.shard_files(source)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    refuse_evaluation_shards(args.data, source, files)

    from audioscope.models import train as T

    config = build_config(args, T.read_run_config(args.out))
    buffer = args.shuffle_buffer
    if args.strategy == "default":
        from audioscope.models.numpy_data import held_bytes

        sizes = storage.sizes(files)
        check_cpu_memory(config, held_bytes(sizes, buffer, example_bytes(args.data, files, sizes)))

    def dataset_fn(seed: int) -> object:
        return loader.load_dataset(source, shuffle_buffer=buffer, seed=seed, repeat=True)

    description = {"data": args.data, "source": source, "recipe": recipe, "shards": len(files)}
    try:
        result = T.train(
            dataset_fn, args.out, config, steps=args.steps, time_budget_s=args.time_budget,  # type: ignore[arg-type]
            strategy=args.strategy if args.strategy != "tpu" else T.make_strategy("tpu", args.tpu),
            data_description=description,
        )  # fmt: skip
    except (T.RunDirError, ValueError) as e:
        raise UserError(str(e)) from None
    if result.stopped_by == "already_done":
        print(f"{args.out} is already trained to step {result.step} (its --steps or --time-budget); "
              "give a larger --steps or --time-budget to train on", file=sys.stderr)  # fmt: skip
    # the folder trained from, when it holds the evaluation sets too (a mixtures folder, a pulled release)
    data = q(args.data) if storage.exists(storage.join(args.data, "eval")) else "MIX_DIR"
    print(f"\nNext: audioscope evaluate --model {q(args.out)} --data {data} --out REPORT_DIR", file=sys.stderr)
    return 0
