"""The training spine both models share: schedule, weight averaging, run
directory, checkpoints, TensorBoard, export and the result of a training.

The coincidence model (:mod:`audioscope.models.coincidence_train`) and the
AudioScope model (:mod:`audioscope.models.train`) differ in their data and
their losses; everything around the step is here, once:

- **schedule**: a half-cosine from the base learning rate to a floor, over
  the run's progress (:func:`run_progress`: the larger of the share of the
  steps and the share of the time budget used, so a budgeted run anneals
  fully too);
- **weight averaging**: :class:`WeightAverage`, a running mean of the
  weights (batch-norm statistics included) over the last part of the run,
  kept in the checkpoints so that a resumed run goes on with it;
- **run directory**: ``run.json`` (configuration and data, written at the
  first start; a start with another configuration is refused,
  :class:`RunDirError`), ``checkpoints/`` (model, optimizer, step, training
  seconds, the running mean; the last few kept) and ``tensorboard/``;
- **export**: one convention, :func:`publish_export`: the model is written
  to a temporary sibling folder, its model card (with its content id,
  :func:`audioscope.schemas.coincidence_signature.content_id`) added, and the folder renamed into place, so a reader
  sees a whole export or none. A finished export is never overwritten by
  another run; only a run trained further replaces its own earlier export;
- **result**: :class:`TrainResult`, how one invocation ended.

TensorFlow is imported at module level: import this module lazily.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import tensorflow as tf

from audioscope import storage

RUN_JSON = "run.json"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
STRATEGIES = ("default", "mirrored", "tpu")


class RunDirError(ValueError):
    """The run directory belongs to a different run (another configuration)."""


class RunDirBusy(RunDirError):
    """Another training is running in the run directory."""


# --------------------------------------------------------------------------- schedule


def run_progress(step: int, target: int, elapsed_s: float, time_budget_s: float | None) -> float:
    """How far the run is, in [0, 1]: the larger of the share of ``target``
    steps done and the share of the time budget used."""
    p = step / target if target else 1.0
    if time_budget_s:
        p = max(p, elapsed_s / time_budget_s)
    return min(max(p, 0.0), 1.0)


def cosine_learning_rate(base: float, floor_fraction: float, progress: float) -> float:
    """Half-cosine from ``base`` (progress 0) to ``floor_fraction * base`` (progress 1)."""
    progress = min(max(progress, 0.0), 1.0)
    return base * (floor_fraction + (1.0 - floor_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def make_strategy(name: str, tpu: str | None = None) -> tf.distribute.Strategy:
    """``default`` (one device), ``mirrored`` (all local GPUs, or the CPU) or ``tpu``."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown strategy {name!r}; choose one of {STRATEGIES}")


# --------------------------------------------------------------------------- weight averaging


class WeightAverage(tf.Module):
    """A running mean of a model's weights (batch-norm statistics included),
    checkpointed with the run, with the steps and time budget of the run it
    belongs to (a run resumed with other ones starts a new mean)."""

    def __init__(self, weights: list[tf.Variable]) -> None:
        super().__init__(name="weight_average")
        self.count = tf.Variable(0, dtype=tf.int64, trainable=False, name="count")
        self.first_step = tf.Variable(-1, dtype=tf.int64, trainable=False, name="first_step")
        self.last_step = tf.Variable(-1, dtype=tf.int64, trainable=False, name="last_step")
        self.target = tf.Variable(0, dtype=tf.int64, trainable=False, name="target_steps")
        self.budget = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="time_budget_s")
        self.means = [tf.Variable(tf.zeros_like(w), trainable=False, name=f"mean_{i}") for i, w in enumerate(weights)]

    def start(self, target: int, budget: float | None) -> None:
        """Keep the mean of a resumed run of the same length; else start again."""
        budget_value = -1.0 if budget is None else float(budget)
        if int(self.target.numpy()) != target or float(self.budget.numpy()) != budget_value:
            self.count.assign(0)
            self.target.assign(target)
            self.budget.assign(budget_value)

    def add(self, weights: list[tf.Variable], step: int) -> None:
        """Take the weights at ``step`` into the mean (once per step)."""
        n = int(self.count.numpy())
        if n and int(self.last_step.numpy()) == step:
            return
        n += 1
        for mean, w in zip(self.means, weights):
            mean.assign_add((tf.convert_to_tensor(w) - mean) / float(n))
        if n == 1:
            self.first_step.assign(step)
        self.last_step.assign(step)
        self.count.assign(n)

    @property
    def snapshots(self) -> int:
        return int(self.count.numpy())

    def describe(self) -> dict[str, Any]:
        """What an export of the averaged weights holds."""
        return {"kind": "average", "snapshots": int(self.count.numpy()),
                "from_step": int(self.first_step.numpy()), "to_step": int(self.last_step.numpy())}  # fmt: skip

    def swap_into(self, model: Any) -> list[np.ndarray]:
        """Put the mean into ``model``; return the weights it held (for :meth:`restore`)."""
        trained = model.get_weights()
        model.set_weights([m.numpy() for m in self.means])
        return trained


def in_average_window(progress: float, average_fraction: float) -> bool:
    """Whether weights taken at this point of the run go into the mean:
    the last ``average_fraction`` of the run."""
    return progress >= 1.0 - average_fraction - 1e-9


# --------------------------------------------------------------------------- run directory


def read_run_json(run_dir: str | Path) -> dict[str, Any] | None:
    """``run.json`` of a run directory (None for a new one)."""
    path = Path(run_dir) / RUN_JSON
    if not path.exists():
        return None
    return json.loads(path.read_text())


def _refuse_foreign(run_dir: Path) -> None:
    """Refuse a folder that holds other files and no ``run.json`` (another step's folder: a model,
    mixtures): nothing of it may change."""
    if read_run_json(run_dir) is not None or not run_dir.is_dir():
        return
    foreign = sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("."))
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise RunDirError(
            f"{run_dir} holds other files ({shown}) and is not a training run folder (no {RUN_JSON}); "
            "give --out a new or empty folder"
        )


#: Held (``flock``) by the process training in a run folder; the system releases it when that process
#: ends, however it ends.
TRAINING_LOCK = ".training.lock"
#: The temporary files of the training holding the run folder (emptied when the next one starts).
SCRATCH_DIR = ".tmp"


@contextlib.contextmanager
def training_lock(run_dir: Path) -> Iterator[None]:
    """One training at a time per run folder: a second one is refused (:class:`RunDirError`) while the
    first runs (both would start from the same checkpoint and write their checkpoints over each other's).
    Meanwhile the process's temporary files (TensorFlow's traced code) go to the run folder's
    :data:`SCRATCH_DIR`, so a training killed outright leaves nothing in the system's temporary folder."""
    from audioscope.locks import local_flock
    from audioscope.processes import temporary_files_in

    def refuse(holder: str) -> None:
        raise RunDirBusy(
            f"another training is running in {run_dir}{f' (process {holder})' if holder.isdigit() else ''}: "
            "wait for it to end (running the same command again then resumes it), or give another --out"
        )

    _refuse_foreign(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with local_flock(run_dir / TRAINING_LOCK, refuse), temporary_files_in(str(run_dir / SCRATCH_DIR)):
        yield


#: One model built at a time under :func:`private_default_seeds` (it swaps a module-level name).
_BUILD_LOCK = threading.Lock()


@contextlib.contextmanager
def private_default_seeds(seed: int) -> Iterator[None]:
    """Layers built inside take the seeds they were not given from a generator of their own, seeded by ``seed``.

    Keras draws the seed of every initializer and dropout layer built without one from Python's global
    ``random`` (``make_default_seed``), so after ``keras.utils.set_random_seed`` a model still came out
    different whenever another thread of the process (a client's retry jitter, a server in the same
    process) drew from it in between: the same training gave two models. Keras has no setting for this;
    its module's reference to ``random`` is replaced by a private ``random.Random(seed)`` while the
    model is built.
    """
    import keras.src.random.seed_generator as keras_seeds

    with _BUILD_LOCK:
        shared = keras_seeds.python_random
        keras_seeds.python_random = random.Random(seed)
        try:
            yield
        finally:
            keras_seeds.python_random = shared


def check_run_dir(run_dir: Path, config: Mapping[str, Any], data: Mapping[str, Any] | None) -> bool:
    """Write ``run.json`` on the first start (returns True); refuse a run
    directory started with another configuration (:class:`RunDirError`)."""
    existing = read_run_json(run_dir)
    if existing is None:
        _refuse_foreign(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        body = {"config": _plain(config), "data": dict(data or {}),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
        storage.atomic_write(str(run_dir / RUN_JSON), json.dumps(body, indent=2) + "\n")
        return True
    old = existing.get("config", {})
    new = _plain(config)
    if old != new:
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise RunDirError(
            f"{run_dir} was started with another configuration (differs in {', '.join(diff)}); "
            "use a new run directory, or the same options as the first start"
        )
    return False


def _plain(d: Mapping[str, Any]) -> dict[str, Any]:
    """``d`` as JSON would give it back (tuples -> lists), for comparisons."""
    return json.loads(json.dumps(dict(d)))


class Checkpoints:
    """Model, optimizer, step, training seconds and (optionally) the running
    weight mean of a run, saved under ``RUN_DIR/checkpoints``."""

    def __init__(self, run_dir: Path, model: Any, optimizer: Any, keep: int,
                 average: WeightAverage | None = None) -> None:  # fmt: skip
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="train_seconds")
        tracked: dict[str, Any] = {"average": average} if average is not None else {}
        # The model's trainable variables are reached through the optimizer
        # here (Keras 3): restore a checkpoint with both, never the model alone.
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=optimizer, step=self.step, train_seconds=self.seconds, **tracked
        )
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(run_dir / CHECKPOINT_DIR), max_to_keep=keep)

    def restore(self) -> int:
        """Restore the latest checkpoint, if any; the step it was taken at."""
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
        return int(self.step.numpy())

    def save(self, step: int, seconds: float) -> None:
        self.step.assign(step)
        self.seconds.assign(seconds)
        latest = self.manager.latest_checkpoint
        if not latest or not latest.endswith(f"-{step}"):
            self.manager.save(checkpoint_number=step)


def write_scalar(name: str, value: float, step: int) -> None:
    """A TensorBoard scalar summary written with TensorFlow's own summary op.

    ``tf.summary.scalar`` needs the tensorboard package, which tensorflow-cpu
    does not install; the record written here (plugin "scalars", a float32
    scalar tensor) is the same one TensorBoard's scalar plugin reads.
    """
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
        data_class=summary_pb2.DATA_CLASS_SCALAR,
    )
    tf.summary.write(name, tf.constant(value, tf.float32), step=step, metadata=metadata)


def write_scalars(writer: Any, values: Mapping[str, float], step: int) -> None:
    """Several scalars at ``step`` into a ``tf.summary`` file writer."""
    with writer.as_default(step=step):
        for name, value in values.items():
            write_scalar(name, float(value), step)
    writer.flush()


# --------------------------------------------------------------------------- export


def publish_export(out_dir: str | Path, write: Callable[[Path], None], *, replace_own: bool = False) -> None:
    """Write an export with ``write(tmp)`` into a temporary sibling of
    ``out_dir`` and rename it into place.

    The one export convention of both models: a reader sees a whole export
    or none, and a finished export is never overwritten by another run
    (:class:`FileExistsError`). ``replace_own`` is for a run trained further
    that replaces its own earlier export (the old one is moved aside first
    and deleted once the new one is in place).
    """
    out = Path(out_dir)
    if out.exists() and not replace_own:
        raise FileExistsError(f"{out} already exists; choose a new output directory or delete it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.incomplete-{os.getpid()}"
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    for stale in (tmp, old):
        if stale.exists():
            shutil.rmtree(stale)
    write(tmp)
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    if old.exists():
        shutil.rmtree(old)


# --------------------------------------------------------------------------- result


@dataclass
class TrainResult:
    """How one invocation of a training ended (either model).

    ``metrics`` holds the model's own end-of-run values: the AudioScope
    model's losses over the last steps, the coincidence model's validation
    AUCs of the exported weights. They read as attributes too
    (``result.loss``, ``result.validation``...).
    """

    run_dir: str
    export_dir: str
    model_id: str
    step: int
    steps_this_run: int
    seconds: float  # training seconds over all invocations
    stopped_by: str  # "steps", "time_budget", "interrupted" or "already_done"
    steps_per_s: float
    examples_per_s: float
    resumed_from: int
    # what the export holds: "last", "average of N snapshots, steps A-B", ...
    exported_weights: str = "last"
    metrics: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        metrics = self.__dict__.get("metrics")
        if metrics is not None and name in metrics:
            return metrics[name]
        raise AttributeError(f"{type(self).__name__} has no {name!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        metrics = d.pop("metrics")
        return _jsonable({**d, **metrics})


def _jsonable(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}
