"""Training, export and loading of the coincidence model (real TensorFlow, real files)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from audioscope.models import coincidence as C  # noqa: E402
from audioscope.models.model_card import read_card  # noqa: E402

from .conftest import toy_videos  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[C.TrainResult, dict]:
    videos = toy_videos(60, 8, seed=5)
    # Negatives from other videos at any start (stated, though it is the
    # default): with other_match_db (the same frame instants sounding) only
    # the toy's four sound classes tell them apart, which 200 steps do not learn.
    cfg = C.CoincidenceConfig.tiny(steps=200, eval_every=100, batch_size=32, learning_rate=3e-3,
                                   other_match_db=0.0)
    out = tmp_path_factory.mktemp("coinc") / "model"
    result = C.train(videos, out, cfg, validation_fraction=0.25, progress=False,
                     data_description={"store": "toy"})
    return result, videos


def test_short_training_learns_the_toy_correspondence(trained) -> None:
    result, _ = trained
    assert result.step == 200 and result.stopped_by == "steps"
    assert result.train_videos == 45 and result.validation_videos == 15
    # chance is 0.5; ~6,400 examples on 45 videos take it well above
    assert result.validation["auc"] > 0.75, result.history
    assert result.validation["auc_vs_shifted"] > 0.65, result.validation


def test_exported_weights_are_the_mean_of_the_last_third(trained) -> None:
    result, _ = trained
    # 200 steps, evaluations at 100 and 200: the last third (from step 133) holds only step 200
    assert result.validation["averaged_from_step"] == 200
    assert result.validation["averaged_evaluations"] == 1


def test_export_load_round_trip_is_identical(trained) -> None:
    result, videos = trained
    predictor = C.load_model(result.export_dir, batch_size=5)
    assert predictor.model_id == result.model_id == C.model_hash(result.export_dir)
    batch = C.ExampleSampler(videos, C.CoincidenceConfig.tiny(), seed=11).sample(12)
    got = predictor(batch.audio, batch.frames)
    assert got.dtype == np.float32 and got.shape == (12,)
    # the in-memory Keras model rebuilt from the SavedModel's own function
    loaded = tf.saved_model.load(result.export_dir)
    direct = loaded.signatures["serving_default"](
        audio=tf.constant(batch.audio), frames=tf.constant(batch.frames)
    )["probability"].numpy()
    # the same model: equal up to float rounding (batches of 5 and of 12 take other kernels on some CPUs)
    np.testing.assert_allclose(got, direct, rtol=1e-6, atol=1e-6)
    # one clip alone gives the same probability as inside a batch
    single = predictor(batch.audio[3], batch.frames[3])
    np.testing.assert_allclose(single[0], got[3], rtol=1e-5, atol=1e-6)


def test_model_card_written_with_metrics(trained) -> None:
    result, _ = trained
    card = read_card(result.export_dir)
    assert card is not None and card.model_id == result.model_id
    assert card.training["steps"] == 200
    assert card.training_data["store"] == "toy"
    assert card.validation["auc"] == pytest.approx(result.validation["auc"])
    assert card.signature["inputs"]["frames"]["dtype"] == "uint8"
    md = (Path(result.export_dir) / "MODEL_CARD.md").read_text()
    assert result.model_id in md and "Validation" in md
    json.loads((Path(result.export_dir) / "model_card.json").read_text())


def test_export_never_overwrites(trained, tmp_path: Path) -> None:
    result, _ = trained
    with pytest.raises(FileExistsError, match="choose a new output directory"):
        C.train({}, result.export_dir, C.CoincidenceConfig.tiny(), progress=False)


def test_foreign_model_with_same_signature_is_accepted(tmp_path: Path) -> None:
    class Loud(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 80000], tf.float32),
                                      tf.TensorSpec([None, 5, 128, 128, 3], tf.uint8)])
        def serve(self, audio, frames):
            return {"probability": tf.reduce_mean(tf.abs(audio), axis=1)}

    m = Loud()
    tf.saved_model.save(m, str(tmp_path / "loud"), signatures={"serving_default": m.serve})
    p = C.load_model(tmp_path / "loud")
    audio = np.full((2, 80000), 0.25, np.float32)
    np.testing.assert_allclose(p(audio, np.zeros((2, 5, 128, 128, 3), np.uint8)), [0.25, 0.25])
    assert p.model_id.startswith("sha256:")


def test_foreign_model_with_wrong_signature_is_refused(tmp_path: Path) -> None:
    class Wrong(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 16000], tf.float32),
                                      tf.TensorSpec([None, 5, 128, 128, 3], tf.float32)])
        def serve(self, audio, frames):
            return {"score": tf.reduce_mean(audio, axis=1)}

    m = Wrong()
    tf.saved_model.save(m, str(tmp_path / "wrong"), signatures={"serving_default": m.serve})
    with pytest.raises(C.SignatureError) as e:
        C.load_model(tmp_path / "wrong")
    msg = str(e.value)
    assert "input 'audio' has shape" in msg
    assert "input 'frames' is float32, expected uint8" in msg
    assert "missing output 'probability'" in msg

    tf.saved_model.save(m, str(tmp_path / "other_name"), signatures={"predict": m.serve})
    with pytest.raises(C.SignatureError, match="no 'serving_default' signature"):
        C.load_model(tmp_path / "other_name")
    with pytest.raises(C.SignatureError, match="not a SavedModel directory"):
        C.load_model(tmp_path)


def test_training_is_reproducible_with_the_same_seed(tmp_path: Path, busy_global_random: None) -> None:
    """Even while another thread draws from Python's global ``random`` (Keras took the seeds of the
    layers built without one from it: two trainings in one test process gave two models)."""
    videos = toy_videos(6, 10, seed=9)
    cfg = C.CoincidenceConfig.tiny(steps=8, eval_every=0, validation_examples=16, batch_size=8)
    r1 = C.train(videos, tmp_path / "a", cfg, validation_fraction=0.34, progress=False)
    r2 = C.train(videos, tmp_path / "b", cfg, validation_fraction=0.34, progress=False)
    assert r1.model_id == r2.model_id
    assert r1.validation["auc"] == r2.validation["auc"]


def test_average_export_uses_every_evaluation_in_the_window(tmp_path: Path) -> None:
    videos = toy_videos(6, 10, seed=9)
    cfg = C.CoincidenceConfig.tiny(steps=6, eval_every=2, validation_examples=16, batch_size=8, average_fraction=1.0)
    r = C.train(videos, tmp_path / "avg", cfg, validation_fraction=0.34, progress=False)
    assert [int(m["step"]) for m in r.history] == [2, 4, 6]
    assert r.validation["averaged_from_step"] == 2 and r.validation["averaged_evaluations"] == 3
    last = C.train(videos, tmp_path / "last", C.CoincidenceConfig.tiny(
        steps=6, eval_every=2, validation_examples=16, batch_size=8, export_weights="last"),
        validation_fraction=0.34, progress=False)
    assert "averaged_from_step" not in last.validation
    assert r.model_id != last.model_id  # the averaged weights are not the last ones
    assert read_card(r.export_dir).training["exported_weights"].startswith("mean of the weights")


def test_training_runs_under_a_mirrored_strategy_and_its_run_directory_refuses_other_options(tmp_path: Path) -> None:
    """The tf.distribute path (strategy.run, cross-replica reduce) that GPUs take;
    its run directory refuses a start with another configuration."""
    videos = toy_videos(6, 10, seed=9)
    cfg = C.CoincidenceConfig.tiny(steps=4, eval_every=2, checkpoint_every=2, validation_examples=16, batch_size=8)
    r = C.train(videos, tmp_path / "m", cfg, validation_fraction=0.34, progress=False, strategy="mirrored")
    assert (r.step, r.resumed_from, r.stopped_by) == (4, 0, "steps")
    assert sorted(p.name for p in (tmp_path / "m.run" / "checkpoints").glob("ckpt-*.index")) == [
        "ckpt-2.index", "ckpt-4.index"]
    with pytest.raises(C.RunDirError, match="steps"):  # another configuration in the same run directory
        C.train(videos, tmp_path / "m2", C.CoincidenceConfig.tiny(steps=6, eval_every=2, checkpoint_every=2,
                validation_examples=16, batch_size=8), validation_fraction=0.34, progress=False,
                run_dir=tmp_path / "m.run")  # fmt: skip


def test_a_second_training_of_the_same_model_is_refused_while_the_first_runs(tmp_path: Path) -> None:
    """Both would train from the same checkpoint in OUT.run and write over each other's checkpoints;
    the second is refused before it touches anything, and trains once the first has ended."""
    from audioscope.models.spine import training_lock

    videos = toy_videos(6, 10, seed=9)
    cfg = C.CoincidenceConfig.tiny(steps=2, eval_every=2, checkpoint_every=2, validation_examples=16, batch_size=8)
    with training_lock(tmp_path / "m.run"):
        with pytest.raises(C.RunDirBusy, match="another training is running in .*m.run"):
            C.train(videos, tmp_path / "m", cfg, validation_fraction=0.34, progress=False)
        # nothing but the holder's lock and its scratch for temporary files
        assert sorted(p.name for p in (tmp_path / "m.run").iterdir()) == [".tmp", ".training.lock"]
    assert C.train(videos, tmp_path / "m", cfg, validation_fraction=0.34, progress=False).step == 2
