"""Training: the loss goes down, checkpoints resume, summaries and export are written."""

from __future__ import annotations

import glob
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from audioscope.models import train as T  # noqa: E402
from audioscope.models.audioscope_model import ExportedModel, build_model  # noqa: E402
from audioscope.models.losses import mixit_loss  # noqa: E402

from .audioscope_toys import dataset_fn, micro_config, toy_examples  # noqa: E402

pytestmark = pytest.mark.integration


def scalars(run_dir: Path) -> dict[str, dict[int, float]]:
    """Every scalar summary of a run: tag -> step -> value (read from the event files)."""
    out: dict[str, dict[int, float]] = defaultdict(dict)
    for path in sorted(glob.glob(str(run_dir / T.TENSORBOARD_DIR / "*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                out[value.tag][event.step] = float(tf.make_ndarray(value.tensor))
    return out


def mixit_of(predict, examples: list) -> float:
    """Mean MixIT loss of a model's sources on the examples."""
    out = predict(np.stack([e["mixture"] for e in examples]), np.stack([e["frames"] for e in examples]))
    refs = np.stack([np.stack([e["audio1"], e["audio2"]]) for e in examples])
    return float(np.mean(mixit_loss(tf.constant(refs), tf.constant(out["sources"])).loss))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, T.TrainResult, list]:
    """60 steps on 8 fixed toy examples (a model small enough to fit them), under
    a MirroredStrategy on the local device: the tf.distribute path (strategy.run,
    cross-replica reduce, distributed dataset) that GPUs and TPUs take."""
    examples = toy_examples(8, seed=3)
    run_dir = tmp_path_factory.mktemp("audioscope") / "run"
    result = T.train(dataset_fn(examples), run_dir, micro_config(), steps=60, strategy="mirrored",
                     progress=False, data_description={"data": "toy"})  # fmt: skip
    return run_dir, result, examples


def test_training_decreases_the_loss(run) -> None:
    run_dir, result, _ = run
    assert (result.step, result.stopped_by, result.resumed_from) == (60, "steps", 0)
    loss = scalars(run_dir)["train/loss"]
    assert sorted(loss) == list(range(5, 61, 5))
    first, last = np.mean([loss[5], loss[10]]), np.mean([loss[55], loss[60]])
    assert last < first - 1.0, loss  # dB of MixIT error, plus the small classification term
    snr = scalars(run_dir)["train/mixit_snr_db"]
    assert snr[60] > snr[5], snr


def test_run_directory_holds_config_checkpoints_export_and_summary(run) -> None:
    run_dir, result, examples = run
    assert T.read_run_config(run_dir) == micro_config()
    assert json.loads((run_dir / T.RUN_JSON).read_text())["data"] == {"data": "toy"}
    index_files = sorted(p.name for p in (run_dir / T.CHECKPOINT_DIR).glob("ckpt-*.index"))
    assert index_files == ["ckpt-40.index", "ckpt-50.index", "ckpt-60.index"]  # every 10 steps, 3 kept
    summary = json.loads((run_dir / T.SUMMARY_JSON).read_text())
    assert summary["step"] == 60 and summary["stopped_by"] == "steps"
    exported = ExportedModel(result.export_dir)
    assert exported.info["step"] == 60
    out = exported(np.stack([e["mixture"] for e in examples]), np.stack([e["frames"] for e in examples]))
    assert out["sources"].shape == (8, 4, 4000) and np.all((out["probabilities"] >= 0) & (out["probabilities"] <= 1))


def test_rerun_resumes_from_the_checkpoint_and_respects_the_time_budget(run, tmp_path) -> None:
    import shutil

    source, first, examples = run
    run_dir = tmp_path / "run"
    shutil.copytree(source, run_dir)
    before = mixit_of(ExportedModel(run_dir / T.EXPORT_DIR), examples)

    again = T.train(dataset_fn(examples), run_dir, micro_config(), steps=60, progress=False)
    assert (again.stopped_by, again.steps_this_run, again.step) == ("already_done", 0, 60)
    # a run that trains nothing keeps the summary of the one that trained (it wrote NaN over it)
    kept = json.loads((run_dir / T.SUMMARY_JSON).read_text())
    assert (kept["loss"], kept["steps_per_s"]) == (pytest.approx(first.loss), pytest.approx(first.steps_per_s))
    assert kept["steps_this_run"] == 0

    # Resume (default strategy this time) with a budget of the seconds already
    # trained plus a little: training goes on from step 60, then stops on time.
    budget = first.seconds + 1.0
    more = T.train(dataset_fn(examples), run_dir, micro_config(), steps=10_000, time_budget_s=budget, progress=False)
    assert more.resumed_from == 60 and more.stopped_by == "time_budget" and 60 < more.step < 10_000
    assert more.seconds >= budget
    after = ExportedModel(run_dir / T.EXPORT_DIR)
    assert after.info["step"] == more.step
    # training went on from the checkpoint's weights, not from scratch
    fresh = build_model(micro_config(), samples=4000)
    untrained = mixit_of(lambda m, f: {"sources": fresh({"mixture": m, "frames": f})["sources"].numpy()}, examples)
    assert untrained > before + 1.0
    assert abs(mixit_of(after, examples) - before) < (untrained - before) / 2
    # the budget is spent: running again trains nothing
    done = T.train(dataset_fn(examples), run_dir, micro_config(), steps=10_000, time_budget_s=budget, progress=False)
    assert (done.stopped_by, done.step) == ("already_done", more.step)


def test_export_holds_the_mean_of_the_weights_over_the_last_part_of_the_run(tmp_path) -> None:
    import keras

    examples = toy_examples(8, seed=5)
    config = micro_config(export_weights="average", average_fraction=0.5, checkpoint_every=5, keep_checkpoints=10)
    result = T.train(dataset_fn(examples), tmp_path / "run", config, steps=20, progress=False)
    exported = ExportedModel(result.export_dir)
    # snapshots every summary_every (5) steps once half the run is done: 10, 15, 20
    assert exported.info["exported_weights"] == {"kind": "average", "snapshots": 3, "from_step": 10, "to_step": 20}
    assert result.exported_weights == "average of 3 snapshots, steps 10-20"

    # The same mean, made from the checkpoints of those steps (restored with
    # the optimizer: it is what reaches the model's trainable variables).
    model = build_model(config, samples=4000)
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    snapshots = []
    for step in (10, 15, 20):
        checkpoint.restore(str(tmp_path / "run" / T.CHECKPOINT_DIR / f"ckpt-{step}")).expect_partial()
        snapshots.append(model.get_weights())
    mixture = np.stack([e["mixture"] for e in examples])
    frames = np.stack([e["frames"] for e in examples])
    last = model({"mixture": mixture, "frames": frames}, training=False)["sources"].numpy()
    model.set_weights([np.mean([w[i] for w in snapshots], axis=0) for i in range(len(snapshots[0]))])
    mean = model({"mixture": mixture, "frames": frames}, training=False)
    out = exported(mixture, frames)
    np.testing.assert_allclose(out["sources"], mean["sources"].numpy(), atol=1e-4)
    np.testing.assert_allclose(out["probabilities"], tf.sigmoid(mean["logits"]).numpy(), atol=1e-4)
    assert np.abs(out["sources"] - last).max() > 1e-3  # not the last weights


def test_weight_average_is_a_running_mean_that_restarts_for_another_run_length() -> None:
    weights = [tf.Variable([0.0, 0.0]), tf.Variable(0.0)]
    average = T.WeightAverage(weights)
    average.start(100, None)
    for step, (a, b) in ((70, ([1.0, 2.0], 1.0)), (80, ([3.0, 4.0], 2.0)), (90, ([5.0, 9.0], 6.0))):
        weights[0].assign(a)
        weights[1].assign(b)
        average.add(weights, step)
    np.testing.assert_allclose(average.means[0].numpy(), [3.0, 5.0])
    np.testing.assert_allclose(average.means[1].numpy(), 3.0)
    assert average.describe() == {"kind": "average", "snapshots": 3, "from_step": 70, "to_step": 90}
    average.start(100, None)  # the same run, resumed: the mean goes on
    assert average.describe()["snapshots"] == 3
    average.start(200, None)  # trained on to more steps: a new mean over the new last part
    weights[0].assign([7.0, 7.0])
    average.add(weights, 150)
    np.testing.assert_allclose(average.means[0].numpy(), [7.0, 7.0])
    assert average.describe() == {"kind": "average", "snapshots": 1, "from_step": 150, "to_step": 150}
    average.start(200, 600.0)  # another time budget: likewise
    assert int(average.count.numpy()) == 0


def test_another_configuration_is_refused(run) -> None:
    run_dir, _, examples = run
    with pytest.raises(T.RunDirError, match="learning_rate"):
        T.train(dataset_fn(examples), run_dir, micro_config(learning_rate=0.5), steps=61, progress=False)


def test_first_mixture_is_on_screen_for_non_and_lon_only() -> None:
    types = ("NOn", "SOff", "LOn", "LOff", "onscreen_mom", "offscreen_single")
    got = [bool(T.is_onscreen_first(tf.constant(t))) for t in types]
    assert got == [True, False, True, False, True, False]


@pytest.mark.parametrize("weighting", ["uniform", "power"])
def test_power_weighting_leaves_silent_sources_out_of_the_classification_loss(weighting: str) -> None:
    """Source 3 is silent: with power weighting its logit (whatever its
    pseudo-label) does not change the classification loss."""
    rng = np.random.default_rng(4)
    sources = rng.normal(size=(2, 4, 300)).astype(np.float32)
    sources[:, 3] = 0.0
    batch = {
        "mixture": tf.constant(sources.sum(axis=1)), "frames": tf.zeros((2, 5, 128, 128, 3), tf.uint8),
        "references": tf.constant(np.stack([sources[:, :2].sum(axis=1), sources[:, 2:].sum(axis=1)], axis=1)),
        "first_onscreen": tf.constant([True, True]),
    }  # fmt: skip
    config = micro_config(classification_weighting=weighting)

    def losses(silent_logit: float) -> np.ndarray:
        logits = np.array([[1.0, -2.0, 0.5, silent_logit]] * 2, np.float32)
        fake_model = lambda inputs, training: {"sources": tf.constant(sources), "logits": tf.constant(logits)}  # noqa: E731
        return T.example_losses(fake_model, batch, config, training=False)["classification_loss"].numpy()

    if weighting == "power":
        np.testing.assert_allclose(losses(-4.0), losses(4.0), rtol=1e-6)
    else:
        assert np.all(np.abs(losses(-4.0) - losses(4.0)) > 1.0)


def test_mismatched_frames_label_every_source_off_screen_against_another_videos_frames() -> None:
    """With ``mismatched_frames_weight`` each example's sources are classified again against the
    next example's frames (the batch rolled by one), all labelled off screen, unless both show the
    same video; only in training."""
    rng = np.random.default_rng(5)
    sources = rng.normal(size=(3, 4, 300)).astype(np.float32)
    frames = tf.constant(np.arange(3, dtype=np.uint8)[:, None, None, None, None] * np.ones((3, 5, 2, 2, 3), np.uint8))
    batch = {
        "mixture": tf.constant(sources.sum(axis=1)), "frames": frames,
        "references": tf.constant(np.stack([sources[:, :2].sum(axis=1), sources[:, 2:].sum(axis=1)], axis=1)),
        "first_onscreen": tf.constant([True, True, False]), "video": tf.constant([7, 8, 8], tf.int64),
    }  # fmt: skip
    logits = tf.constant(rng.normal(size=(3, 4)).astype(np.float32))
    against = tf.constant(rng.normal(size=(3, 4)).astype(np.float32))
    shown = []

    class FakeModel:
        def __call__(self, inputs, training):
            return {"sources": tf.constant(sources), "logits": logits, "audio_embeddings": tf.zeros((3, 4, 2))}

        def classify(self, audio, frames, training):
            shown.append(frames[:, 0, 0, 0, 0].numpy().tolist())
            return against

    def cls(weight: float, training: bool = True) -> np.ndarray:
        config = micro_config(mismatched_frames_weight=weight, classification_weighting="uniform")
        return T.example_losses(FakeModel(), batch, config, training=training)["classification_loss"].numpy()

    plain = cls(0.0)
    assert shown == []
    off = tf.reduce_sum(tf.nn.softplus(against), axis=-1).numpy()  # every source labelled off screen
    np.testing.assert_allclose(cls(0.5), plain + 0.5 * off * [1, 1, 0], rtol=1e-6)  # example 2: video 8 twice
    assert shown == [[2, 0, 1]]  # each example against the frames of the one before it
    np.testing.assert_allclose(cls(0.5, training=False), plain, rtol=1e-6)


def test_the_models_classify_gives_its_logits_for_the_frames_given() -> None:
    from audioscope.models.audioscope_model import build_model

    model = build_model(micro_config(), samples=4000)
    rng = np.random.default_rng(6)
    inputs = {"mixture": tf.constant(rng.normal(size=(2, 4000)).astype(np.float32)),
              "frames": tf.constant(rng.integers(0, 255, (2, 5, 128, 128, 3), dtype=np.uint8))}  # fmt: skip
    out = model(inputs, training=False)
    np.testing.assert_allclose(model.classify(out["audio_embeddings"], inputs["frames"]), out["logits"], rtol=1e-5)
    other = model.classify(out["audio_embeddings"], tf.reverse(inputs["frames"], axis=[0]))
    assert not np.allclose(other, out["logits"])


def test_learning_rate_schedule() -> None:
    config = micro_config(learning_rate=1e-3, final_learning_rate_fraction=0.1)
    assert T.learning_rate_at(config, 0.0) == pytest.approx(1e-3)
    assert T.learning_rate_at(config, 1.0) == pytest.approx(1e-4)
    assert T.learning_rate_at(config, 0.5) == pytest.approx(5.5e-4)
    assert T.learning_rate_at(micro_config(), 0.7) == pytest.approx(3e-3)  # constant by default


def test_training_example_crops_augments_and_keeps_the_mixture_the_sum() -> None:
    ex = toy_examples(1, seed=9, samples=4000)[0]
    ex = {k: tf.constant(v) for k, v in ex.items()}
    plain = T.training_example(ex, crop_samples=1000)
    assert plain["references"].shape == (2, 1000) and plain["mixture"].shape == (1000,)
    np.testing.assert_allclose(plain["mixture"].numpy(), plain["references"].numpy().sum(axis=0), atol=1e-6)
    # without resampling, each reference is an exact piece of its own signal
    a1 = ex["audio1"].numpy()
    piece = plain["references"].numpy()[0]
    starts = [s for s in range(3001) if np.array_equal(a1[s : s + 1000], piece)]
    assert starts, "audio1's crop is not a piece of audio1"
    augmented = T.training_example(ex, crop_samples=1000, pitch=0.25, gain_db=6.0, flip=True, translate=8)
    assert augmented["references"].shape == (2, 1000)
    np.testing.assert_allclose(augmented["mixture"].numpy(), augmented["references"].numpy().sum(axis=0), atol=1e-6)
    frames = augmented["frames"].numpy()
    assert frames.shape == (5, 128, 128, 3) and frames.dtype == np.uint8
    # flips and shifts move pixels, they do not change them
    assert sorted(np.unique(frames).tolist()) == sorted(np.unique(ex["frames"].numpy()).tolist())


def test_an_examples_augmentation_depends_on_its_seed_only() -> None:
    """The training maps examples in parallel (``num_parallel_calls``): each example's random choices come
    from its own seed, so a run's seed gives the same examples whichever order the map runs them in (with
    the stateful random ops of before, two runs of one seed trained two models)."""
    exs = toy_examples(12, seed=3, samples=4000)
    ds = tf.data.Dataset.from_tensor_slices({k: np.stack([e[k] for e in exs]) for k in exs[0]})

    def examples(parallel: int | None, run_seed: int) -> list[np.ndarray]:
        made = ds.enumerate().map(
            lambda i, ex: T.training_example(ex, 1000, pitch=0.25, gain_db=6.0, flip=True, translate=8,
                                             seed=tf.stack([tf.constant(run_seed, tf.int64), i])),
            num_parallel_calls=parallel, deterministic=True if parallel else None,
        )  # fmt: skip
        return [np.concatenate([x["references"].numpy().ravel(), x["frames"].numpy().ravel()]) for x in made]

    one_at_a_time = examples(None, 7)
    tf.random.uniform(())  # draws from the global generator change nothing
    at_once = examples(8, 7)
    assert all(np.array_equal(a, b) for a, b in zip(one_at_a_time, at_once, strict=True))
    other = examples(8, 8)
    assert not any(np.array_equal(a, b) for a, b in zip(one_at_a_time, other, strict=True))
