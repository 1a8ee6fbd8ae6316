"""Training the coincidence model on the shared spine (:mod:`audioscope.models.spine`).

``train(source, out_dir, config)`` trains self-supervised on a clip store
(streamed, :class:`~audioscope.models.coincidence_data.StreamingSampler`)
or on videos in memory (:class:`~audioscope.models.coincidence_data.ExampleSampler`),
holds whole videos out for validation, and exports the model to
``out_dir`` with its model card and content id.

Run directory (by default ``OUT_DIR.run`` next to the model folder)::

    OUT_DIR.run/
      run.json       configuration and data of the run (written at the first start)
      checkpoints/   model, optimizer, step, training seconds and the running
                     weight mean (every checkpoint_every steps, the last few kept)
      history.json   the validation history up to the last checkpoint
      tensorboard/   summaries: loss, learning rate, steps/s, validation AUCs

A run killed mid-training and started again with the same model folder and
options resumes from its last checkpoint (steps and time budget are totals
over every start); a start with other options is refused (``RunDirError``).
The model folder itself appears only at the end, whole (an existing one is
never overwritten).

Why the weights exported are by default a mean: one training's final
weights, or its best evaluation on the 512 held-out examples, vary a lot
from run to run (the best is often an early noise spike); the mean of the
weights at the evaluations of the last third of the run is steadier and
better. The mean is the spine's running :class:`~audioscope.models.spine.WeightAverage`,
kept in the checkpoints.

TensorFlow is imported at module level: import this module lazily.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from audioscope import storage
from audioscope.geometry import CLIP_SECONDS
from audioscope.metrics import auc_standard_error
from audioscope.models.coincidence_data import (
    ExampleBatch,
    ExampleSampler,
    StreamingSampler,
    VideoArrays,
    VideoStore,
    load_videos,
    split_videos,
    video_ids,
    video_reader,
    video_seconds,
)
from audioscope.models.coincidence_export import export_model, self_supervised_metrics, signature_description
from audioscope.models.coincidence_model import CoincidenceConfig, build_model, logit_model
from audioscope.models.model_card import ModelCard
from audioscope.models.spine import (
    TENSORBOARD_DIR,
    Checkpoints,
    TrainResult,
    WeightAverage,
    check_run_dir,
    training_lock,
    cosine_learning_rate,
    in_average_window,
    make_strategy,
    run_progress,
    write_scalars,
)

log = logging.getLogger(__name__)

HISTORY_JSON = "history.json"
DATA_MODES = ("stream", "memory")
#: the learning rate at the end of the run, as a share of config.learning_rate
FINAL_LEARNING_RATE_FRACTION = 0.05


def run_dir_for(out_dir: str | Path) -> Path:
    """The default run directory of a model folder: ``OUT_DIR.run`` next to it."""
    out = Path(out_dir)
    return out.with_name(out.name + ".run")


def learning_rate_at(
    config: CoincidenceConfig, step: int, elapsed_s: float, time_budget_s: float | None,
    floor: float = FINAL_LEARNING_RATE_FRACTION,
) -> float:  # fmt: skip
    """Cosine decay from ``config.learning_rate`` to ``floor`` times it, over the
    run's progress: the larger of the share of steps and the share of the
    time budget used (the spine's schedule)."""
    return cosine_learning_rate(config.learning_rate, floor, run_progress(step, config.steps, elapsed_s, time_budget_s))


def _predictor(model: keras.Model, batch: int = 64) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Batched inference with one traced graph (eager Keras calls are slow)."""
    fn = tf.function(lambda a, f: model({"audio": a, "frames": f}, training=False), reduce_retracing=True)

    def predict(audio: np.ndarray, frames: np.ndarray) -> np.ndarray:
        out = [
            np.asarray(fn(tf.constant(audio[i : i + batch]), tf.constant(frames[i : i + batch]))).reshape(-1)
            for i in range(0, len(audio), batch)
        ]
        return np.concatenate(out).astype(np.float32)

    return predict


def choose_evaluation(history: Sequence[Mapping[str, float]], n_pos: int, n_neg: int) -> int:
    """Index of the evaluation whose weights to export: the latest one whose
    validation ``auc`` is within one standard error (Hanley & McNeil) of the
    best. The held-out examples are few (512 by default, SE ~0.02), so the
    best alone is often a spike early in the run; the later weights are as
    good on that evidence and better annealed. Evaluations with a NaN AUC
    are never chosen unless all are NaN (then the last)."""
    aucs = np.array([m["auc"] for m in history], dtype=np.float64)
    if not np.isfinite(aucs).any():
        return len(history) - 1
    best = float(np.nanmax(aucs))
    bar = best - auc_standard_error(best, n_pos, n_neg)
    ok = np.flatnonzero(np.isfinite(aucs) & (aucs >= bar))
    return int(ok[-1]) if ok.size else int(np.nanargmax(aucs))


def _window_counts(source: Mapping[str, VideoArrays] | VideoStore, ids: Sequence[str]) -> int:
    """Windows (1 s hop) of the videos ``ids``: from the arrays, or the clip store's index."""
    if isinstance(source, Mapping):
        return int(sum(max(0, video_seconds(source[v]) - CLIP_SECONDS + 1) for v in ids))
    index = source.index
    return int(index["video_id"].isin(set(ids)).sum())


class _Data:
    """Where training and validation examples come from (in memory or streamed)."""

    def __init__(self, source: Any, mode: str, config: CoincidenceConfig, validation_fraction: float,
                 progress: bool) -> None:  # fmt: skip
        self.source = source
        self.mode = mode
        self.config = config
        self.skipped: dict[str, str] = {}
        if mode == "memory":
            self.videos, self.skipped = load_videos(source, progress=progress)
            for vid, why in self.skipped.items():
                log.warning("video %s left out of training: %s", vid, why)
            usable = list(self.videos)
        else:
            self.read = video_reader(source)
            usable = video_ids(source)
        self.usable = len(usable)
        self.train_ids, self.val_ids = split_videos(usable, validation_fraction, config.seed)
        if len(self.train_ids) < 2 or len(self.val_ids) < 2:
            raise ValueError(
                f"need at least 2 training and 2 validation videos with >= {CLIP_SECONDS} s; "
                f"got {len(self.train_ids)} and {len(self.val_ids)} "
                f"(of {len(usable)} usable, {len(self.skipped)} skipped)"
            )
        self.samplers: list[Any] = []

    def validation(self) -> ExampleBatch:
        c = self.config
        if self.mode == "memory":
            sampler: Any = ExampleSampler({v: self.videos[v] for v in self.val_ids}, c, c.seed + 1)
        else:
            # about validation_examples over all held-out videos: one pass, thinned
            windows = max(1, _window_counts(self.source, self.val_ids))
            sampler = StreamingSampler(self.read, self.val_ids, c, c.seed + 1,
                                       passes=min(1.0, c.validation_examples / windows))  # fmt: skip
        self.samplers.append(sampler)
        return sampler.sample(c.validation_examples)

    def training(self, seed: int) -> tf.data.Dataset:
        c = self.config
        if self.mode == "memory":
            sampler: Any = ExampleSampler({v: self.videos[v] for v in self.train_ids}, c, seed)
        else:
            sampler = StreamingSampler(self.read, self.train_ids, c, seed)
        self.samplers.append(sampler)
        self.train_sampler = sampler
        return sampler.dataset(c.batch_size)

    def all_skipped(self) -> dict[str, str]:
        out = dict(self.skipped)
        for s in self.samplers:
            out.update(getattr(s, "skipped", {}))
        return out

    def train_windows(self) -> int:
        if self.mode == "memory":
            return int(sum(int(n) for n in self.train_sampler.n_starts))
        return _window_counts(self.source, self.train_ids)


def train(
    videos_or_store: Mapping[str, VideoArrays] | VideoStore,
    out_dir: str | Path,
    config: CoincidenceConfig = CoincidenceConfig(),
    *,
    validation_fraction: float = 0.2,
    time_budget_s: float | None = None,
    progress: bool = True,
    data_description: Mapping[str, Any] | None = None,
    data: str | None = None,
    strategy: str | tf.distribute.Strategy = "default",
    run_dir: str | Path | None = None,
) -> TrainResult:
    """Train the coincidence model self-supervised (or resume) and export it to ``out_dir``.

    Whole videos are held out for validation; validation AUC (positives vs
    negatives of both kinds) is measured every ``config.eval_every`` steps
    and at the end. Training stops after ``config.steps`` steps or when
    ``time_budget_s`` (training loop only, over every start of the run)
    runs out. ``data`` is ``"stream"`` (default for a clip store) or
    ``"memory"`` (default for a dict of arrays: every video is loaded
    first). ``strategy``: a ``tf.distribute`` strategy or its name (as for
    the AudioScope model). ``data_description`` (e.g. the store URI) goes
    into the card. Checkpoints go to ``run_dir`` (default ``OUT_DIR.run``).
    """
    if Path(out_dir).exists():
        raise FileExistsError(f"{out_dir} already exists; choose a new output directory or delete it")
    run = Path(run_dir) if run_dir is not None else run_dir_for(Path(out_dir))
    with training_lock(run):  # one training at a time per run folder
        return _train(videos_or_store, Path(out_dir), config, run, validation_fraction, time_budget_s, progress,
                      data_description, data, strategy)  # fmt: skip


def _train(videos_or_store: Any, out: Path, config: CoincidenceConfig, run: Path, validation_fraction: float,
           time_budget_s: float | None, progress: bool, data_description: Mapping[str, Any] | None,
           data: str | None, strategy: str | tf.distribute.Strategy) -> TrainResult:  # fmt: skip
    """:func:`train`, in the run folder ``run`` that it holds."""
    from audioscope.progress import Progress, print_summary

    if out.exists():  # exported by a training that ended between the check in `train` and the lock
        raise FileExistsError(f"{out} already exists; choose a new output directory or delete it")
    mode = data or ("memory" if isinstance(videos_or_store, Mapping) else "stream")
    if mode not in DATA_MODES:
        raise ValueError(f"data must be one of {DATA_MODES}, got {mode!r}")
    keras.utils.set_random_seed(config.seed)
    if config.deterministic_ops:
        tf.config.experimental.enable_op_determinism()
    strat = make_strategy(strategy) if isinstance(strategy, str) else strategy
    if config.batch_size % strat.num_replicas_in_sync:
        raise ValueError(f"batch size {config.batch_size} is not a multiple of the {strat.num_replicas_in_sync} replicas")

    source = _Data(videos_or_store, mode, config, validation_fraction, progress)
    check_run_dir(run, {**config.to_dict(), "validation_fraction": validation_fraction, "data": mode}, data_description)
    if progress:
        print("preparing the validation examples", file=sys.stderr)
    val_batch = source.validation()

    with strat.scope():
        model = build_model(config)
        train_view = logit_model(model)
        optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate)
        optimizer.build(train_view.trainable_variables)
        average = WeightAverage(model.weights) if config.export_weights == "average" else None
        checkpoints = Checkpoints(run, model, optimizer, config.keep_checkpoints, average)
    start_step = checkpoints.restore()
    used = float(checkpoints.seconds.numpy())
    history: list[dict[str, float]] = [m for m in _read_history(run) if m["step"] <= start_step]
    if average is not None:
        average.start(config.steps, time_budget_s)

    def replica_step(inputs: dict[str, tf.Tensor], labels: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            logits = train_view(inputs, training=True)
            per_example = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=config.batch_size)
        grads = tape.gradient(loss, train_view.trainable_variables)
        optimizer.apply_gradients(zip(grads, train_view.trainable_variables))
        return loss

    @tf.function
    def step_fn(batch: Any) -> tf.Tensor:
        losses = strat.run(replica_step, args=batch)
        return strat.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    # Validation measures the pairwise alignment logit (what training optimises).
    predict = _predictor(keras.Model(model.inputs, keras.layers.Activation("sigmoid")(train_view.output)))
    writer = tf.summary.create_file_writer(str(run / TENSORBOARD_DIR))
    # Weights at each evaluation, for export_weights="selected" (this start's evaluations).
    snapshots: list[tuple[dict[str, float], list[np.ndarray]]] = []

    def evaluate(at_step: int, loss: float, elapsed: float, final: bool = False) -> dict[str, float]:
        probs = predict(val_batch.audio, val_batch.frames)
        m = {"step": float(at_step), "train_loss": loss, **self_supervised_metrics(val_batch, probs)}
        history.append(m)
        if config.export_weights == "selected":
            snapshots.append((m, model.get_weights()))
        elif average is not None and (final or in_average_window(
                run_progress(at_step, config.steps, elapsed, time_budget_s), config.average_fraction)):
            average.add(model.weights, at_step)
        write_scalars(writer, {
            "train/loss": loss, "learning_rate": float(optimizer.learning_rate.numpy()),
            **{f"validation/{k}": v for k, v in m.items() if k not in ("step", "train_loss")},
        }, at_step)  # fmt: skip
        if progress:
            print(
                f"step {at_step}: loss {loss:.4f}, validation AUC {m['auc']:.4f} "
                f"(vs other video {m['auc_vs_other_video']:.4f}, vs shifted {m['auc_vs_shifted']:.4f})",
                file=sys.stderr,
            )
        return m

    def save(at_step: int, seconds: float) -> None:
        storage.atomic_write(str(run / HISTORY_JSON), json.dumps(_jsonable_history(history), indent=1) + "\n")
        checkpoints.save(at_step, seconds)

    done = start_step
    stopped_by = "steps"
    losses: list[float] = []
    t0 = time.monotonic()
    finished = done >= config.steps or (time_budget_s is not None and used >= time_budget_s)
    if finished:
        stopped_by = "already_done"
    else:
        if progress:
            if start_step:
                print(f"resuming {run} from step {start_step} ({used:.0f} s trained)", file=sys.stderr)
            limit = f" or {time_budget_s:.0f} s, whichever comes first" if time_budget_s is not None else ""
            print(
                f"training on {len(source.train_ids)} videos ({len(source.val_ids)} held out, {mode}): "
                f"at most {config.steps} steps{limit}; validation every {config.eval_every} steps; "
                f"checkpoints in {run}",
                file=sys.stderr,
            )
        # A resumed run reseeds its data, so it does not see the same examples again.
        batches = strat.experimental_distribute_dataset(source.training(config.seed + start_step))
        bar = Progress("training", total=config.steps, unit="steps") if progress else None
        if bar:
            bar.set(start_step)
        try:
            for batch in batches:
                if done >= config.steps:
                    break
                elapsed = used + time.monotonic() - t0
                if time_budget_s is not None and elapsed >= time_budget_s:
                    stopped_by = "time_budget"
                    break
                optimizer.learning_rate.assign(learning_rate_at(config, done, elapsed, time_budget_s))
                losses.append(float(step_fn(batch)))
                done += 1
                if bar:
                    bar.update(1)
                if config.eval_every and done % config.eval_every == 0 and done < config.steps:
                    evaluate(done, float(np.mean(losses[-config.eval_every :])), used + time.monotonic() - t0)
                if done % config.checkpoint_every == 0:
                    save(done, used + time.monotonic() - t0)
        except KeyboardInterrupt:
            save(done, used + time.monotonic() - t0)
            raise
        finally:
            if bar:
                bar.close()
    seconds_this_run = time.monotonic() - t0
    total_seconds = used + seconds_this_run
    window = max(config.eval_every, 1)
    last_loss = float(np.mean(losses[-window:])) if losses else (history[-1]["train_loss"] if history else float("nan"))
    if history and int(history[-1]["step"]) == done:
        last = history[-1]
        if average is not None:
            average.add(model.weights, done)
    else:
        last = evaluate(done, last_loss, total_seconds, final=True)
    save(done, total_seconds)
    writer.flush()

    final = last
    if config.export_weights == "selected" and snapshots:
        n_pos = int((val_batch.label > 0.5).sum())
        chosen = choose_evaluation([m for m, _ in snapshots], n_pos, len(val_batch.label) - n_pos)
        final = snapshots[chosen][0]
        if final is not last:
            model.set_weights(snapshots[chosen][1])
    elif average is not None and average.snapshots >= 1:
        described = average.describe()
        average.swap_into(model)
        probs = predict(val_batch.audio, val_batch.frames)
        final = {
            "step": float(done), "train_loss": last["train_loss"], **self_supervised_metrics(val_batch, probs),
            "averaged_from_step": float(described["from_step"]), "averaged_evaluations": float(described["snapshots"]),
        }  # fmt: skip
        if progress:
            print(
                f"exported: the mean of the weights of steps {described['from_step']}-{done} "
                f"({described['snapshots']} evaluations), validation AUC {final['auc']:.4f}",
                file=sys.stderr,
            )
    snapshots.clear()

    skipped = source.all_skipped()
    train_sampler = getattr(source, "train_sampler", None)
    fallbacks = int(getattr(train_sampler, "fallbacks", 0))
    match_fallbacks = int(getattr(train_sampler, "match_fallbacks", 0))
    exported_weights = (
        f"mean of the weights at the evaluations from step {int(final['averaged_from_step'])}"
        if "averaged_from_step" in final else {
            "selected": "latest evaluation within one standard error of the best validation AUC",
            "last": "last step", "average": "last step",
        }[config.export_weights]
    )  # fmt: skip
    card = ModelCard(
        model_id="",
        signature=signature_description(),
        training_data={
            **dict(data_description or {}),
            "source": type(videos_or_store).__name__,
            "read": "streamed from the clip store" if mode == "stream" else "loaded into memory",
            "videos_usable": source.usable - (len(skipped) if mode == "stream" else 0),
            "videos_skipped": len(skipped),
            "train_videos": len(source.train_ids),
            "validation_videos": len(source.val_ids),
            "train_windows (1 s hop)": source.train_windows(),
            "validation_fraction": validation_fraction,
        },
        training={
            "steps": done,
            "batch_size": config.batch_size,
            "examples_seen": done * config.batch_size,
            "seconds": round(total_seconds, 1),
            "stopped_by": stopped_by,
            "resumed_from_step": start_step,
            "run_directory": run.name,
            "exported_step": int(final["step"]),
            "exported_weights": exported_weights,
            "last_validation_auc": last["auc"],
            "seed": config.seed,
            "shifted_fallbacks": fallbacks,
            "matched_fallbacks": match_fallbacks,
            "validation_history": [
                {"step": int(m["step"]), "train_loss": round(m["train_loss"], 4), "auc": round(m["auc"], 4)}
                for m in history
            ],
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
        config=config.to_dict(),
        validation={k: v for k, v in final.items() if k != "step"},
        notes=[
            "Positives: a clip's own audio and frames. Negatives: audio from a different video "
            f"({config.negative_mix:.0%}) or from the same video shifted by "
            f"{config.shift_min_s}-{config.shift_max_s} s"
            + (
                f" where sound switches on or off ({config.shift_onoff_db:g} dB over the floor) "
                "at some frame instant."
                if config.shift_onoff_db else "."
            )
            + (
                f" Audio from another video sounds at the same frame instants as the clip's own "
                f"({config.other_match_db:g} dB over each video's floor) where the window has such "
                "a start; a clip silent at all five instants gets silent shifted audio."
                if config.other_match_db else ""
            ),
            "Validation AUC is for the self-supervised task on held-out videos, "
            "not for on-screen-sound labels.",
        ],
    )
    model_id = export_model(model, out, card)
    steps_this_run = done - start_step
    rate = steps_this_run / seconds_this_run if seconds_this_run > 0 and steps_this_run else float("nan")
    result = TrainResult(
        run_dir=str(run), export_dir=str(out), model_id=model_id, step=done, steps_this_run=steps_this_run,
        seconds=total_seconds, stopped_by=stopped_by, steps_per_s=rate, examples_per_s=rate * config.batch_size,
        resumed_from=start_step, exported_weights=exported_weights,
        metrics={"validation": final, "history": history, "train_videos": len(source.train_ids),
                 "validation_videos": len(source.val_ids), "skipped": skipped},
    )  # fmt: skip
    if progress:
        print_summary(
            "coincidence model trained",
            {
                "model": str(out),
                "model id": model_id,
                "steps": f"{done} ({stopped_by}; {steps_this_run} this run, from {start_step}), "
                f"{total_seconds:.0f} s in all; " + (
                    f"mean of the weights of steps {int(final['averaged_from_step'])}-{done}"
                    if "averaged_from_step" in final else f"weights of step {int(final['step'])}"
                ),
                "speed": f"{rate:.2f} steps/s, {rate * config.batch_size:.1f} examples/s ({mode})"
                if steps_this_run else "no steps this run (already trained)",
                "videos": f"{len(source.train_ids)} train, {len(source.val_ids)} validation, {len(skipped)} skipped",
                "validation AUC": f"{final['auc']:.4f}",
                "  vs other video": f"{final['auc_vs_other_video']:.4f}",
                "  vs shifted": f"{final['auc_vs_shifted']:.4f}",
                "checkpoints, TensorBoard": str(run),
            },
            stream=sys.stderr,
        )
    return result


def _read_history(run: Path) -> list[dict[str, float]]:
    path = run / HISTORY_JSON
    if not path.exists():
        return []
    return [{k: (float("nan") if v is None else float(v)) for k, v in m.items()} for m in json.loads(path.read_text())]


def _jsonable_history(history: Sequence[Mapping[str, float]]) -> list[dict[str, float | None]]:
    return [{k: (None if not np.isfinite(v) else float(v)) for k, v in m.items()} for m in history]
