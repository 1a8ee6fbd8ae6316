"""Training the AudioScope model: a custom loop under a tf.distribute strategy.

``train(dataset_fn, run_dir, config)`` trains on the examples ``dataset_fn``
gives (dicts in the loader's format, see :mod:`audioscope.models.data`),
checkpoints as it goes, resumes from the last checkpoint when started again
on the same run directory, writes TensorBoard summaries and, when it stops,
exports the model (:func:`audioscope.models.audioscope_model.export_model`).

Run directory::

    RUN_DIR/
      run.json            configuration and data of the run (written at the first start)
      checkpoints/        model, optimizer, step, training seconds and the running
                          weight average (last `keep_checkpoints`)
      tensorboard/        summaries: losses, learning rate, steps/s
      export/             the SavedModel and model.json (written when training stops)
      train_summary.json  how the last invocation ended

When training stops: at ``steps`` (a total over all invocations), when the
time budget is used up (also counted over all invocations, so a killed run
resumed finishes the same budget), or on Ctrl-C (a checkpoint is written
first). Starting a run that already reached its steps or its budget again
only makes sure it is exported. With ``export_weights="average"`` the export
holds the mean of the weights taken every ``summary_every`` steps over the
last ``average_fraction`` of the run (the run's progress, as for the
learning rate, is the larger of the share of the steps and of the budget
used); the checkpoints hold the running mean, so a resumed run goes on with it.

Each example: the mixture of mixtures ``x = audio1 + audio2`` is separated,
MixIT assigns the sources to ``audio1``/``audio2``, and the sources assigned
to ``audio1`` get the on-screen pseudo-label when ``audio1`` is on screen
(types NOn and LOn; SOff and LOff are off screen). See
:mod:`audioscope.models.losses`.

TensorFlow is imported at module level: import this module lazily.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import keras
import numpy as np
import tensorflow as tf

from audioscope import storage
from audioscope.models.audioscope_model import AudioScopeModel, build_model, export_model
from audioscope.models.configs import AudioScopeConfig
from audioscope.models.losses import classification_loss, mixit_loss, pseudo_labels, source_power_weights
from audioscope.models.spine import (  # noqa: F401 - the spine's names, as this module's API
    CHECKPOINT_DIR,
    RUN_JSON,
    STRATEGIES,
    TENSORBOARD_DIR,
    Checkpoints,
    RunDirError,
    TrainResult,
    WeightAverage,
    check_run_dir,
    training_lock,
    cosine_learning_rate,
    in_average_window,
    make_strategy,
    read_run_json,
    run_progress,
    write_scalars,
)
from audioscope.schemas import records

log = logging.getLogger(__name__)

SUMMARY_JSON = "train_summary.json"
EXPORT_DIR = "export"
#: Per-step values logged and summarised (see :func:`example_losses`).
STEP_VALUES = ("loss", "mixit_loss", "classification_loss", "mixit_snr_db")
#: Example types whose first mixture is on screen (the rest: off screen).
ONSCREEN_FIRST_TYPES = (records.NON, records.LON, "onscreen_single", "onscreen_mom")

DatasetFn = Callable[[int], tf.data.Dataset]
"""``dataset_fn(seed)``: an unbatched, endlessly repeated dataset of loader dicts."""


def training_example(
    example: Mapping[str, tf.Tensor],
    crop_samples: int = 0,
    pitch: float = 0.0,
    gain_db: float = 0.0,
    flip: bool = False,
    translate: int = 0,
    seed: tf.Tensor | None = None,
) -> dict[str, tf.Tensor]:
    """A loader dict -> the model's inputs and targets.

    ``mixture [T]`` (= the sum of the references), ``references [2, T]``
    (audio1, audio2), ``frames``, ``first_onscreen`` (bool).

    With ``crop_samples`` > 0 each reference is cut to ``crop_samples`` at its
    own random place (audio2 comes from another video: its timing carries no
    meaning) and, with ``pitch`` > 0, resampled by its own random factor in
    ``[1 / (1 + pitch), 1 + pitch]`` (shifting every frequency; a corpus has
    few videos, and the separator must not learn them by heart). With
    ``gain_db`` > 0 each reference is scaled by its own random gain in
    ``+-gain_db``. The frames are mirrored left-right at random (``flip``)
    and shifted circularly by up to ``translate`` pixels each way, all five
    alike, so that the classifier cannot learn a video's background or
    layout by heart. All of this is training-only augmentation.

    ``seed`` (shape [2]) draws every random choice of the example (stateless), so that the same seed
    gives the same example however many examples ``tf.data`` prepares at once; the training gives
    each example its own (the run's seed and the example's number). None draws one.
    """
    if seed is None:
        seed = tf.random.uniform((2,), 0, 2**31 - 1, dtype=tf.int32)
    seeds = iter(tf.unstack(tf.random.experimental.stateless_split(seed, num=8)))
    references = [example["audio1"], example["audio2"]]
    if crop_samples:
        references = [_random_crop(r, crop_samples, pitch, next(seeds), next(seeds)) for r in references]
    if gain_db:
        references = [r * 10.0 ** (tf.random.stateless_uniform((), next(seeds), -gain_db, gain_db) / 20.0)
                      for r in references]  # fmt: skip
    stacked = tf.stack(references)
    return {
        "mixture": tf.reduce_sum(stacked, axis=0),
        "references": stacked,
        "frames": _augment_frames(example["frames"], flip, translate, next(seeds), next(seeds)),
        "first_onscreen": is_onscreen_first(example["type"]),
        "video": tf.strings.to_hash_bucket_fast(example["video_id1"], 2**62),  # which video the frames show
    }


def _augment_frames(frames: tf.Tensor, flip: bool, translate: int, flip_seed: tf.Tensor,
                    shift_seed: tf.Tensor) -> tf.Tensor:  # fmt: skip
    """``frames [5, H, W, 3]`` mirrored (half the time) and rolled by the same random offsets."""
    if flip:
        mirror = tf.random.stateless_uniform((), flip_seed) < 0.5
        frames = tf.cond(mirror, lambda: tf.reverse(frames, axis=[2]), lambda: frames)
    if translate:
        shift = tf.random.stateless_uniform((2,), shift_seed, -translate, translate + 1, dtype=tf.int32)
        frames = tf.roll(frames, shift=shift, axis=[1, 2])
    return frames


def _random_crop(audio: tf.Tensor, crop: int, pitch: float, rate_seed: tf.Tensor, start_seed: tf.Tensor) -> tf.Tensor:
    """``crop`` samples from a random place of ``audio [T]``, read at a random
    rate (linear interpolation) when ``pitch`` > 0."""
    n = tf.shape(audio)[0]
    if pitch:
        rate = tf.exp(tf.random.stateless_uniform((), rate_seed, -1.0, 1.0) * tf.math.log(1.0 + pitch))
    else:
        rate = tf.constant(1.0)
    span = tf.minimum(tf.cast(tf.math.ceil(rate * crop), tf.int32) + 1, n)
    rate = tf.minimum(rate, tf.cast(span - 1, tf.float32) / crop)
    start = tf.random.stateless_uniform((), start_seed, 0, n - span + 1, dtype=tf.int32)
    position = tf.cast(start, tf.float32) + rate * tf.range(crop, dtype=tf.float32)
    left = tf.minimum(tf.cast(tf.floor(position), tf.int32), n - 2)
    frac = position - tf.cast(left, tf.float32)
    return tf.gather(audio, left) * (1.0 - frac) + tf.gather(audio, left + 1) * frac


def is_onscreen_first(example_type: tf.Tensor) -> tf.Tensor:
    """Whether the first mixture of an example of this type is on screen."""
    return tf.reduce_any(tf.equal(example_type, tf.constant(ONSCREEN_FIRST_TYPES)))


def example_losses(
    model: AudioScopeModel, batch: Mapping[str, tf.Tensor], config: AudioScopeConfig, training: bool
) -> dict[str, tf.Tensor]:
    """Per-example values ``[B]`` of a batch: ``loss`` (what is minimised:
    MixIT + weight x classification), ``mixit_loss``, ``classification_loss``
    and ``mixit_snr_db`` (the SNR of the MixIT remixes, mean over the present
    references; capped at 30 dB by tau, a readable training curve)."""
    out = model({"mixture": batch["mixture"], "frames": batch["frames"]}, training=training)
    mix = mixit_loss(batch["references"], out["sources"], config.snr_tau)
    labels = pseudo_labels(mix.assignment, batch["first_onscreen"])
    weights = source_power_weights(out["sources"]) if config.classification_weighting == "power" else None
    cls = classification_loss(out["logits"], labels, config.classification_loss, weights)
    if training and config.mismatched_frames_weight > 0.0:
        # the same sources against another example's frames: none of them is on screen there
        others = tf.roll(batch["frames"], 1, axis=0)
        apart = tf.cast(tf.not_equal(batch["video"], tf.roll(batch["video"], 1, axis=0)), cls.dtype)
        logits = model.classify(out["audio_embeddings"], others, training=training)
        off = classification_loss(logits, tf.zeros_like(labels), config.classification_loss, weights)
        cls = cls + config.mismatched_frames_weight * apart * off
    power = tf.reduce_sum(tf.square(batch["references"]), axis=-1)  # [B, 2]
    present = tf.cast(power > 0.0, power.dtype)
    ref_db = 10.0 * tf.math.log(tf.maximum(power, 1e-30)) / tf.math.log(10.0)
    snr = (tf.reduce_sum(present * ref_db, axis=-1) - mix.loss) / tf.maximum(tf.reduce_sum(present, axis=-1), 1.0)
    return {
        "loss": mix.loss + config.classification_weight * cls,
        "mixit_loss": mix.loss,
        "classification_loss": cls,
        "mixit_snr_db": tf.stop_gradient(snr),
    }


def learning_rate_at(config: AudioScopeConfig, progress: float) -> float:
    """Half-cosine from ``learning_rate`` to ``final_learning_rate_fraction`` of it."""
    return cosine_learning_rate(config.learning_rate, config.final_learning_rate_fraction, progress)


def read_run_config(run_dir: str | Path) -> AudioScopeConfig | None:
    """The configuration a run directory was started with (None for a new one)."""
    body = read_run_json(run_dir)
    return None if body is None else AudioScopeConfig.from_dict(body["config"])


class _Trainer:
    """The model, optimizer, checkpoint and compiled step of one run."""

    def __init__(self, run_dir: Path, config: AudioScopeConfig, strategy: tf.distribute.Strategy) -> None:
        self.config = config
        self.strategy = strategy
        self.global_batch = config.batch_size
        with strategy.scope():
            self.model = build_model(config)
            self.optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate)
            self.optimizer.build(self.model.trainable_variables)
            self.average = WeightAverage(self.model.weights) if config.export_weights == "average" else None
            self.checkpoints = Checkpoints(run_dir, self.model, self.optimizer, config.keep_checkpoints, self.average)
        self.step = self.checkpoints.step
        self.seconds = self.checkpoints.seconds
        self.manager = self.checkpoints.manager
        self._step_fn = tf.function(self._distributed_step)

    def restore(self) -> int:
        """Restore the latest checkpoint, if any; the step it was taken at."""
        return self.checkpoints.restore()

    def _replica_step(self, batch: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            values = example_losses(self.model, batch, self.config, training=True)
            loss = tf.nn.compute_average_loss(values["loss"], global_batch_size=self.global_batch)
        grads = tape.gradient(loss, variables)
        grads, _ = tf.clip_by_global_norm(grads, self.config.clip_grad_norm)
        self.optimizer.apply_gradients(zip(grads, variables))
        return {k: tf.reduce_sum(v) / self.global_batch for k, v in values.items()}

    def _distributed_step(self, batch: Any) -> dict[str, tf.Tensor]:
        results = self.strategy.run(self._replica_step, args=(batch,))
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in results.items()}

    def train_step(self, batch: Any) -> dict[str, float]:
        values = self._step_fn(batch)
        self.step.assign_add(1)
        return {k: float(v) for k, v in values.items()}

    def _averaged(self) -> bool:
        return self.average is not None and int(self.average.count.numpy()) > 0

    def exported_weights(self, step: int) -> dict[str, Any]:
        """What an export at ``step`` holds (``model.json``'s ``exported_weights``)."""
        return self.average.describe() if self._averaged() else {"kind": "last", "step": step}  # type: ignore[union-attr]

    @contextlib.contextmanager
    def weights_to_export(self) -> Iterator[None]:
        """The model holds the weights to export inside the block (the
        running mean, when there is one) and its own again after it."""
        if not self._averaged():
            yield
            return
        trained = self.average.swap_into(self.model)  # type: ignore[union-attr]
        try:
            yield
        finally:
            self.model.set_weights(trained)


def train(
    dataset_fn: DatasetFn,
    run_dir: str | Path,
    config: AudioScopeConfig,
    *,
    steps: int | None = None,
    time_budget_s: float | None = None,
    strategy: str | tf.distribute.Strategy = "default",
    progress: bool = True,
    data_description: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train (or resume training) in ``run_dir`` and export the model.

    ``steps`` (default ``config.steps``) and ``time_budget_s`` are totals over
    every invocation on this run directory. A run directory started with a
    different configuration raises :class:`RunDirError`.
    """
    run_dir = Path(run_dir)
    with training_lock(run_dir):
        return _train(dataset_fn, run_dir, config, steps, time_budget_s, strategy, progress, data_description)


def _train(
    dataset_fn: DatasetFn,
    run_dir: Path,
    config: AudioScopeConfig,
    steps: int | None,
    time_budget_s: float | None,
    strategy: str | tf.distribute.Strategy,
    progress: bool,
    data_description: Mapping[str, Any] | None,
) -> TrainResult:
    target = int(steps or config.steps)
    check_run_dir(run_dir, config.to_dict(), data_description)
    keras.utils.set_random_seed(config.seed)
    strat = make_strategy(strategy) if isinstance(strategy, str) else strategy
    if config.batch_size % strat.num_replicas_in_sync:
        raise ValueError(
            f"batch size {config.batch_size} is not a multiple of the {strat.num_replicas_in_sync} replicas"
        )
    trainer = _Trainer(run_dir, config, strat)
    start_step = trainer.restore()
    used = float(trainer.seconds.numpy())
    if start_step >= target or (time_budget_s is not None and used >= time_budget_s):
        return _finish(trainer, run_dir, start_step, 0, 0.0, "already_done", _mean([]), progress)

    if trainer.average is not None:
        trainer.average.start(target, time_budget_s)
    if progress and start_step:
        print(f"resuming {run_dir} from step {start_step} ({used:.0f} s trained)", file=sys.stderr)
    crop = int(round(config.train_crop_s * records.SAMPLE_RATE))
    # A resumed run reseeds its data, so it does not see the same examples again. Each example's
    # augmentation has its own seed (the data's seed, its number), whatever order the map runs in.
    data_seed = config.seed + start_step
    data = (
        dataset_fn(data_seed)
        .enumerate()
        .map(lambda i, ex: training_example(ex, crop, config.augment_pitch, config.augment_gain_db,
                                            config.augment_flip, config.augment_translate,
                                            seed=tf.stack([tf.constant(data_seed, tf.int64), i])),
             num_parallel_calls=tf.data.AUTOTUNE)
        .batch(config.batch_size, drop_remainder=True)
        .prefetch(2)
    )
    batches = iter(strat.experimental_distribute_dataset(data))
    writer = tf.summary.create_file_writer(str(run_dir / TENSORBOARD_DIR))
    return _loop(trainer, batches, writer, run_dir, target, time_budget_s, start_step, used, progress)


def _loop(
    trainer: _Trainer,
    batches: Any,
    writer: Any,
    run_dir: Path,
    target: int,
    time_budget_s: float | None,
    start_step: int,
    used: float,
    progress: bool,
) -> TrainResult:
    from audioscope.progress import Progress

    config = trainer.config
    bar = Progress("training", total=target, unit="steps") if progress else None
    if bar:
        bar.set(start_step)
    t0 = time.monotonic()
    window: list[dict[str, float]] = []
    stopped_by = "steps"
    interrupt: KeyboardInterrupt | None = None
    step = start_step
    try:
        while step < target:
            elapsed = used + time.monotonic() - t0
            if time_budget_s is not None and elapsed >= time_budget_s:
                stopped_by = "time_budget"
                break
            trainer.optimizer.learning_rate.assign(learning_rate_at(config, run_progress(step, target, elapsed, time_budget_s)))
            window.append(trainer.train_step(next(batches)))
            step += 1
            if bar:
                bar.update(1)
            if step % config.summary_every == 0:
                _summaries(writer, trainer, step, window, time.monotonic() - t0, step - start_step)
                if trainer.average is not None and in_average_window(
                    run_progress(step, target, used + time.monotonic() - t0, time_budget_s), config.average_fraction
                ):
                    trainer.average.add(trainer.model.weights, step)
            if step % config.checkpoint_every == 0:
                trainer.checkpoints.save(step, used + time.monotonic() - t0)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM / SIGHUP (audioscope.cli.Stopped)
        stopped_by, interrupt = "interrupted", e
    finally:
        if bar:
            bar.close()
    seconds = time.monotonic() - t0
    trainer.checkpoints.save(step, used + seconds)
    writer.flush()
    last = _mean(window[-config.summary_every :])
    result = _finish(trainer, run_dir, step, step - start_step, seconds, stopped_by, last, progress)
    if interrupt is not None:
        raise interrupt
    return result


def _mean(window: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each value over the steps of ``window`` (NaN for none)."""
    return {k: float(np.mean([w[k] for w in window])) if window else math.nan for k in STEP_VALUES}


def _summaries(writer: Any, trainer: _Trainer, step: int, window: list, seconds: float, steps_done: int) -> None:
    values = {f"train/{k}": v for k, v in _mean(window[-trainer.config.summary_every :]).items()}
    values["learning_rate"] = float(trainer.optimizer.learning_rate.numpy())
    values["steps_per_second"] = steps_done / max(seconds, 1e-9)
    write_scalars(writer, values, step)


def _finish(
    trainer: _Trainer,
    run_dir: Path,
    step: int,
    steps_this_run: int,
    seconds: float,
    stopped_by: str,
    last: Mapping[str, float],
    progress: bool,
) -> TrainResult:
    """Export the model (unless an export of this step exists) and write the summary."""
    config = trainer.config
    export_dir = run_dir / EXPORT_DIR
    info_path = export_dir / "model.json"
    earlier = json.loads(info_path.read_text()) if info_path.exists() else {}
    described = trainer.exported_weights(step)
    model_id = earlier.get("model_id", "")
    if earlier.get("step") != step:
        info = {
            "model": "audioscope", "config": config.to_dict(), "step": step,
            "train_seconds": float(trainer.seconds.numpy()), "num_sources": config.num_sources,
            "exported_weights": described, "tensorflow": tf.__version__, "keras": keras.__version__,
        }  # fmt: skip
        data = (read_run_json(run_dir) or {}).get("data", {})
        with trainer.weights_to_export():
            model_id = export_model(trainer.model, export_dir, info, data=data)
    rate = steps_this_run / seconds if seconds > 0 else math.nan
    if not steps_this_run:  # nothing trained now: the summary keeps what the run that trained measured
        before = _read_summary(run_dir)
        number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
        last = {k: float(before[k]) if number(before.get(k)) else v for k, v in last.items()}
        rate = float(before["steps_per_s"]) if number(before.get("steps_per_s")) else rate
    result = TrainResult(
        run_dir=str(run_dir), export_dir=str(export_dir), step=step, steps_this_run=steps_this_run,
        seconds=float(trainer.seconds.numpy()), stopped_by=stopped_by, steps_per_s=rate,
        examples_per_s=rate * config.batch_size, resumed_from=step - steps_this_run, model_id=model_id,
        exported_weights=describe_weights(described), metrics=dict(last),
    )  # fmt: skip
    storage.atomic_write(str(run_dir / SUMMARY_JSON), json.dumps(result.to_dict(), indent=2) + "\n")
    if progress:
        from audioscope.progress import print_summary

        print_summary("AudioScope training", summary_rows(result, config), stream=sys.stderr)
    return result


def _read_summary(run_dir: Path) -> dict[str, Any]:
    """``train_summary.json`` of an earlier invocation ({} when absent or unreadable)."""
    try:
        found = json.loads((run_dir / SUMMARY_JSON).read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def describe_weights(described: Mapping[str, Any]) -> str:
    """``model.json``'s ``exported_weights`` as a phrase."""
    if described.get("kind") != "average":
        return "last"
    return f"average of {described['snapshots']} snapshots, steps {described['from_step']}-{described['to_step']}"


def summary_rows(result: TrainResult, config: AudioScopeConfig) -> dict[str, object]:
    """The end-of-training summary, as ``key: value`` rows."""
    return {
        "run": result.run_dir,
        "model": result.export_dir,
        "config": f"{config.name} ({config.num_sources} sources, batch {config.batch_size})",
        "step": f"{result.step} ({result.stopped_by}; {result.steps_this_run} this run, from {result.resumed_from})",
        "training time": f"{result.seconds:.0f} s in all",
        "speed": f"{result.steps_per_s:.2f} steps/s, {result.examples_per_s:.1f} examples/s"
        + ("" if result.steps_this_run else " (when it was trained)"),
        "loss (last steps)": f"{result.loss:.3f} = MixIT {result.mixit_loss:.3f} + "
        f"{config.classification_weight:g} x {config.classification_loss} {result.classification_loss:.3f}"
        + (" (power-weighted)" if config.classification_weighting == "power" else ""),
        "MixIT remix SNR": f"{result.mixit_snr_db:.2f} dB (last steps)",
        "exported weights": result.exported_weights,
    }
