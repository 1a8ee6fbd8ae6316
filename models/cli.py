"""`audioscope coincidence`: train the audio-visual coincidence model.

Only the standard library is imported here; TensorFlow is imported by
``run_train``.
"""

from __future__ import annotations

import argparse
import json
import sys

from audioscope.argtypes import nonnegative_db, open_fraction, positive_int, seconds_or_none
from audioscope.options import add_command, add_store_option
from audioscope.shell import q

TRAIN_DESCRIPTION = """\
Train the audio-visual coincidence model self-supervised on the clips of a
clip store and export it as a SavedModel.

Positives are a clip's own audio and frames; negatives pair the frames with
audio from a different video, or with audio of the same video shifted by
2-10 seconds. Nothing is labelled by hand. Whole videos are held out for
validation; validation AUC is printed as training goes.

Training stops after --steps or when --time-budget runs out (default: 8
minutes of the training loop), whichever comes first. The learning rate
falls over the run's progress, the larger of the share of the steps done
and of the budget used, so a run ended by its budget anneals fully too;
then it follows the clock, and the same seed gives the same model only
with `--time-budget none` (the demo trains 3,000 steps that way). The weights
exported are the mean of the weights at the validations (every 250 steps)
of the last third of the run: one run's final weights, or its best
validation on 512 held-out examples, vary a lot between runs; their average
is steadier. The model
directory holds the SavedModel, model_card.json / MODEL_CARD.md (training
data, steps, validation metrics) and the model id (SHA-256) that
`audioscope score` records next to every score.

Training streams the clips from the store (local, gs:// or s3://): videos
are read a few at a time and examples drawn from a rolling window of 16
videos, so memory does not grow with the store. The run's state sits in
MODEL_DIR.run next to the model folder (run.json, checkpoints/ every 250
steps, history.json, tensorboard/): if training is killed, run the same
command again and it resumes from the last checkpoint (the step count and
the time budget are totals over both runs); other options are refused
there. The model folder appears only when training ends, whole, and is
never overwritten.

Exported signature (any SavedModel with it can be used by `audioscope score`,
e.g. a model trained elsewhere on AudioSet):
  serving_default(audio:  float32 [None, 80000]   16 kHz mono in [-1, 1], 5 s,
                  frames: uint8   [None, 5, 128, 128, 3]  RGB, frame i at i + 0.5 s)
    -> {"probability": float32 [None]}   P(audio and frames belong together)"""

TRAIN_EPILOG = """\
example:
  audioscope coincidence train --store clipstore --out models/coincidence-v1
  audioscope score --store clipstore --model models/coincidence-v1 --out scores"""


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "coincidence",
        help="train the audio-visual coincidence model (scores clips for Df)",
        description="The audio-visual coincidence model: does this audio belong with these "
        "frames in time? `train` makes one from a clip store; `audioscope score` applies it.",
    )
    sub = parser.add_subparsers(dest="coincidence_command", metavar="ACTION", title="actions", required=True)
    p = add_command(
        sub,
        "train",
        help="train self-supervised on a clip store and export a SavedModel",
        description=TRAIN_DESCRIPTION,
        epilog=TRAIN_EPILOG,
    )
    add_store_option(p, aliases=("--clips",), help="the clip store to train on (path, gs://, s3://)")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="folder to export the model to; must not exist")
    p.add_argument(
        "--steps", type=positive_int, default=None, metavar="N",
        help="training steps (default: the model's default, 6000; the time budget usually ends training first)",
    )
    p.add_argument(
        "--time-budget", type=seconds_or_none, default=480.0, metavar="SECONDS",
        help="stop training after this many seconds of the training loop (default: 480; none: end by --steps "
        "only, and the same seed gives the same model)",
    )
    p.add_argument("--batch-size", type=positive_int, default=None, metavar="N", help="examples per step (default: 32)")
    p.add_argument(
        "--validation-fraction", type=open_fraction, default=0.2, metavar="F",
        help="share of videos held out for validation (default: 0.2)",
    )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default: 0); the same seed, store and --steps give the same model on one "
        "machine with --time-budget none (a budget sets the schedule by the clock when the steps lag)")
    p.add_argument(
        "--other-match-db", type=nonnegative_db, default=None, metavar="DB",
        help="negatives from another video take audio that sounds (DB over that video's floor) at the "
        "same five frame instants as the clip's own, so that sound alone is no evidence (default: 0, off; "
        "10 with --shift-onoff-db 10 lifted the demo store's Df AUC, see README)",
    )
    p.add_argument(
        "--shift-onoff-db", type=nonnegative_db, default=None, metavar="DB",
        help="a shifted negative must switch sound (DB over the video's floor) on or off at one of the "
        "five frame instants (default: 0, any shift)",
    )
    p.add_argument(
        "--data", choices=("stream", "memory"), default="stream",
        help="stream the clips from the store (default; memory independent of the store's size) or "
        "load every video into memory first (small stores only)",
    )
    p.add_argument(
        "--strategy", choices=("default", "mirrored"), default="default",
        help="tf.distribute strategy: default (one device) or mirrored (all local GPUs) (default: default)",
    )
    p.add_argument(
        "--tiny", action="store_true",
        help="a very small model for smoke tests (seconds, not minutes; not for real scoring)",
    )
    p.set_defaults(func=run_train, writes=("out", "coincidence"))
    return parser


def run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from audioscope import storage
    from audioscope.errors import UserError
    from audioscope.clipstore.format import StoreError
    from audioscope.clipstore.reader import ClipStore

    if storage.exists(args.out):
        raise UserError(f"{args.out} already exists; choose a new --out or delete it (a model is never overwritten)")
    if not storage.is_local(args.out):
        raise UserError(f"--out must be a local folder (got {args.out}); copy the model to object storage afterwards")
    try:
        store = ClipStore.open(args.store)
    except StoreError as e:
        raise UserError(str(e)) from None
    if len(store) == 0:
        raise UserError(f"{args.store} has no clips; ingest some videos first (`audioscope ingest LIST --store {q(args.store)}`)")

    from audioscope.models.coincidence import CoincidenceConfig, RunDirBusy, RunDirError, train

    overrides: dict[str, object] = {"seed": args.seed}
    for key in ("steps", "batch_size", "other_match_db", "shift_onoff_db"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    config = CoincidenceConfig.tiny(**overrides) if args.tiny else CoincidenceConfig(**overrides)  # type: ignore[arg-type]
    try:
        result = train(
            store,
            Path(args.out),
            config,
            validation_fraction=args.validation_fraction,
            time_budget_s=args.time_budget,
            progress=True,
            data_description={"store": str(args.store), "clips": len(store)},
            data=args.data,
            strategy=args.strategy,
        )
    except RunDirError as e:
        fresh = "" if isinstance(e, RunDirBusy) else f" (delete {Path(str(args.out) + '.run')} to start afresh)"
        raise UserError(f"{e}{fresh}") from None
    except ValueError as e:
        raise UserError(f"cannot train on {args.store}: {e}") from None
    print(json.dumps({"model": result.export_dir, "model_id": result.model_id}))
    print(
        f"\nNext: audioscope score --store {q(args.store)} --model {q(args.out)} --out SCORES_DIR",
        file=sys.stderr,
    )
    return 0
