"""The AudioScope network: shapes, mixture consistency, any length, export round trip, configs."""

from __future__ import annotations

import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from audioscope.models import configs  # noqa: E402
from audioscope.models.audioscope_model import (  # noqa: E402
    ExportedModel,
    build_model,
    export_model,
    on_screen_estimate,
)
from audioscope.models.separation import mixture_consistency  # noqa: E402

from .audioscope_toys import micro_config, toy_examples  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return build_model(micro_config(), samples=4000)


def _inputs(n: int, samples: int, seed: int = 0) -> dict[str, np.ndarray]:
    ex = toy_examples(n, seed=seed, samples=samples)
    return {"mixture": np.stack([e["mixture"] for e in ex]), "frames": np.stack([e["frames"] for e in ex])}


@pytest.mark.parametrize("samples", [4000, 2345])
def test_outputs_have_the_right_shapes_and_sum_to_the_mixture(model, samples: int) -> None:
    x = _inputs(3, samples)
    out = model(x, training=False)
    assert out["sources"].shape == (3, 4, samples)
    assert out["logits"].shape == (3, 4)
    np.testing.assert_allclose(out["sources"].numpy().sum(axis=1), x["mixture"], atol=1e-5)


def test_sources_differ_from_each_other(model) -> None:
    """The M outputs are not M copies of the mixture / M (the masks differ)."""
    sources = model(_inputs(2, 4000), training=False)["sources"].numpy()
    assert np.abs(sources[:, 0] - sources[:, 1]).max() > 1e-4


def test_mixture_consistency_projection() -> None:
    rng = np.random.default_rng(0)
    s = rng.normal(size=(2, 3, 50)).astype(np.float32)
    x = rng.normal(size=(2, 50)).astype(np.float32)
    out = mixture_consistency(tf.constant(s), tf.constant(x)).numpy()
    np.testing.assert_allclose(out.sum(axis=1), x, atol=1e-5)
    # the correction is the same for every source: the differences between sources are kept
    np.testing.assert_allclose(out[:, 0] - out[:, 1], s[:, 0] - s[:, 1], atol=1e-5)


def test_on_screen_estimate_weights_sources_by_probability() -> None:
    s = tf.constant(np.arange(12, dtype=np.float32).reshape(1, 3, 4))
    p = tf.constant([[1.0, 0.0, 0.5]])
    np.testing.assert_allclose(on_screen_estimate(s, p).numpy(), [s.numpy()[0, 0] + 0.5 * s.numpy()[0, 2]])


def test_export_round_trip_gives_the_same_outputs(model, tmp_path) -> None:
    export_model(model, tmp_path / "export", {"step": 7, "config": micro_config().to_dict()})
    exported = ExportedModel(tmp_path / "export", batch_size=2)
    assert exported.info["step"] == 7
    x = _inputs(3, 4000, seed=1)
    got = exported(x["mixture"], x["frames"])
    want = model(x, training=False)
    np.testing.assert_allclose(got["sources"], want["sources"].numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["probabilities"], tf.sigmoid(want["logits"]).numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        got["on_screen"], np.einsum("bm,bmt->bt", got["probabilities"], got["sources"]), rtol=1e-4, atol=1e-6
    )
    # a second export replaces the first only once it is complete
    export_model(model, tmp_path / "export", {"step": 8})
    assert json.loads((tmp_path / "export" / "model.json").read_text())["step"] == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_named_configs_and_round_trip() -> None:
    paper, tiny = configs.get_config("paper"), configs.get_config("tiny")
    assert (paper.learning_rate, paper.batch_size, paper.num_sources) == (1e-4, 256, 4)
    assert (paper.window_samples, paper.repeats, paper.blocks_per_repeat) == (40, 4, 8)
    assert tiny.batch_size < paper.batch_size and tiny.learning_rate > paper.learning_rate
    assert configs.AudioScopeConfig.from_dict(json.loads(json.dumps(tiny.to_dict()))) == tiny
    assert configs.get_config("tiny", batch_size=3).batch_size == 3
    with pytest.raises(ValueError, match="unknown configuration"):
        configs.get_config("huge")
    with pytest.raises(ValueError, match="classification_loss"):
        configs.get_config("tiny", classification_loss="hinge")
    with pytest.raises(ValueError, match="video_input"):
        configs.get_config("tiny", video_input="flow")
    with pytest.raises(ValueError, match="classification_weighting"):
        configs.get_config("tiny", classification_weighting="loudness")
    with pytest.raises(ValueError, match="export_weights"):
        configs.get_config("tiny", export_weights="best")
    with pytest.raises(ValueError, match="average_fraction"):
        configs.get_config("tiny", average_fraction=0.0)
    for bad in ((), ("av", "av"), ("av", "pixels")):
        with pytest.raises(ValueError, match="classifier_inputs"):
            configs.get_config("tiny", classifier_inputs=bad)


def test_the_classifier_sees_only_its_inputs() -> None:
    """Without "global", two videos whose global embeddings differ but whose
    sources' audio and audio-visual features are the same get the same
    logits; with it, they do not."""
    from audioscope.models.embeddings import OnScreenClassifier

    rng = np.random.default_rng(0)
    audio = np.repeat(rng.normal(size=(1, 3, 8)).astype(np.float32), 2, axis=0)
    av = np.repeat(rng.normal(size=(1, 3, 4)).astype(np.float32), 2, axis=0)
    glob = rng.normal(size=(2, 6)).astype(np.float32)
    for inputs, width in ((("global", "audio", "av"), 18), (("audio", "av"), 12), (("av",), 4)):
        clf = OnScreenClassifier(5, inputs)
        logits = clf(glob, audio, av).numpy()
        assert logits.shape == (2, 3)
        assert clf.hidden.kernel.shape == (width, 5)
        assert np.allclose(logits[0], logits[1]) == ("global" not in inputs)
    config = micro_config(classifier_inputs=("av",))
    out = build_model(config, samples=4000)(_inputs(2, 4000), training=False)
    assert tuple(out["logits"].shape) == (2, config.num_sources)


@pytest.mark.parametrize("video_input", ["frames", "motion"])
def test_motion_input_does_not_see_a_static_background(video_input: str) -> None:
    """With ``video_input="motion"`` two still videos on different
    backgrounds look the same to the video tower (each frame minus the mean
    of the five is zero); a moving square does not. With frames they differ."""
    from audioscope.models.embeddings import VideoEmbedding

    tower = VideoEmbedding(micro_config(video_input=video_input))
    still = np.stack([np.full((5, 128, 128, 3), v, np.uint8) for v in (40, 160)])
    moving = still.copy()
    for i in range(5):
        moving[:, i, 20 * i : 20 * i + 16, 30:46] = 250
    glob_still, local_still = (x.numpy() for x in tower(still, training=False))
    glob_moving, _ = (x.numpy() for x in tower(moving, training=False))
    same = np.allclose(glob_still[0], glob_still[1], atol=1e-6) and np.allclose(local_still[0], local_still[1], atol=1e-6)
    assert same == (video_input == "motion")
    assert not np.allclose(glob_moving[0], glob_still[0], atol=1e-6)


def test_the_initial_weights_depend_on_the_seed_only(busy_global_random: None) -> None:
    """Not on Python's global ``random``, which another thread of the process may draw from."""
    def weights(seed: int) -> list[np.ndarray]:
        return [np.asarray(w) for w in build_model(micro_config(seed=seed), samples=4000).get_weights()]

    first, again, other = weights(3), weights(3), weights(4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))
