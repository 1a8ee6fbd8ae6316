"""Coincidence model: I/O contract, example sampler, metrics, video split."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from audioscope.metrics import auc_standard_error  # noqa: E402
from audioscope.models import coincidence as C  # noqa: E402


def test_model_io_shapes_and_dtypes() -> None:
    model = C.build_model(C.CoincidenceConfig.tiny())
    audio = np.zeros((3, C.CLIP_SAMPLES), np.float32)
    frames = np.zeros((3, 5, 128, 128, 3), np.uint8)
    prob = model({"audio": audio, "frames": frames}, training=False)
    assert tuple(prob.shape) == (3,)
    assert prob.dtype == tf.float32
    p = np.asarray(prob)
    assert np.all((p >= 0) & (p <= 1))
    logit = C.logit_model(model)({"audio": audio, "frames": frames}, training=False)
    np.testing.assert_allclose(1 / (1 + np.exp(-np.asarray(logit))), p, rtol=1e-5, atol=1e-6)


def test_default_model_builds_with_frames_downsampled() -> None:
    model = C.build_model(C.CoincidenceConfig())
    assert model.get_layer("image_per_frame").output.shape[1:] == (5, 64)
    assert model.count_params() < 200_000  # small enough for CPU scoring


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="shift_min_s"):
        C.CoincidenceConfig(shift_min_s=3, shift_max_s=2)
    with pytest.raises(ValueError, match="image_size"):
        C.CoincidenceConfig(image_size=48)


def _window(arrays: tuple[np.ndarray, np.ndarray], start: int) -> tuple[np.ndarray, np.ndarray]:
    audio, frames = arrays
    return audio[start * 16_000 : (start + 5) * 16_000], frames[start : start + 5]


def test_sampler_examples_come_from_where_they_say(small_videos) -> None:
    cfg = C.CoincidenceConfig.tiny(shift_min_s=3, shift_max_s=6)
    b = C.ExampleSampler(small_videos, cfg, seed=7).sample(300)
    kinds = set(b.kind.tolist())
    assert kinds == {C.POSITIVE, C.OTHER_VIDEO, C.SHIFTED}
    for i in range(len(b.label)):
        fa, ff = _window(small_videos[b.frames_video[i]], int(b.frames_start_s[i]))
        aa, _ = _window(small_videos[b.audio_video[i]], int(b.audio_start_s[i]))
        np.testing.assert_array_equal(b.frames[i], ff)
        np.testing.assert_array_equal(b.audio[i], aa)
        if b.kind[i] == C.POSITIVE:
            assert b.label[i] == 1.0
            assert b.audio_video[i] == b.frames_video[i]
            assert b.audio_start_s[i] == b.frames_start_s[i]
        elif b.kind[i] == C.OTHER_VIDEO:
            assert b.label[i] == 0.0
            assert b.audio_video[i] != b.frames_video[i]
        else:
            assert b.label[i] == 0.0
            assert b.audio_video[i] == b.frames_video[i]
            assert 3 <= abs(int(b.audio_start_s[i]) - int(b.frames_start_s[i])) <= 6
    # roughly balanced: 50% positives, 25% per negative kind
    assert 0.4 < (b.kind == C.POSITIVE).mean() < 0.6
    assert 0.15 < (b.kind == C.SHIFTED).mean() < 0.35


def test_sampler_is_deterministic_and_falls_back_when_no_shift_fits(small_videos) -> None:
    cfg = C.CoincidenceConfig.tiny()
    a = C.ExampleSampler(small_videos, cfg, seed=3).sample(40)
    b = C.ExampleSampler(small_videos, cfg, seed=3).sample(40)
    np.testing.assert_array_equal(a.audio, b.audio)
    np.testing.assert_array_equal(a.kind, b.kind)
    # 12 s videos have starts 0..7: a 20 s shift never fits -> other-video audio
    far = C.ExampleSampler(small_videos, C.CoincidenceConfig.tiny(shift_min_s=20, shift_max_s=30), seed=3)
    s = far.sample(60)
    assert C.SHIFTED not in set(s.kind.tolist())
    assert far.fallbacks > 0


def test_sampler_dataset_yields_batches(small_videos) -> None:
    ds = C.ExampleSampler(small_videos, C.CoincidenceConfig.tiny(), seed=0).dataset(4)
    inputs, labels = next(iter(ds))
    assert inputs["audio"].shape == (4, C.CLIP_SAMPLES)
    assert inputs["frames"].dtype == tf.uint8
    assert labels.shape == (4,)


def test_load_videos_records_what_it_leaves_out(small_videos) -> None:
    src = dict(small_videos)
    src["short"] = (np.zeros(3 * 16_000, np.float32), np.zeros((3, 128, 128, 3), np.uint8))
    src["wrong-size"] = (np.zeros(6 * 16_000, np.float32), np.zeros((6, 64, 64, 3), np.uint8))
    videos, skipped = C.load_videos(src)
    assert set(videos) == set(small_videos)
    assert skipped["short"].startswith("too_short")
    assert skipped["wrong-size"].startswith("bad_shape")


def test_split_is_by_whole_video_and_stable() -> None:
    ids = [f"v{i}" for i in range(50)]
    tr, va = C.split_videos(ids, 0.2, seed=1)
    assert not set(tr) & set(va) and set(tr) | set(va) == set(ids)
    assert len(va) == 10
    tr2, va2 = C.split_videos(ids + ["new"], 0.2, seed=1)
    assert set(va) - set(va2) <= {min(va, key=lambda v: v)} or len(set(va) & set(va2)) >= 9
    assert C.split_videos(["a", "b"], 0.01, seed=0)[1]  # never an empty side


def test_threshold_metrics() -> None:
    m = C.threshold_metrics(np.array([1, 1, 0, 0, 1]), np.array([0.9, 0.85, 0.81, 0.1, 0.2]), 0.8)
    assert m["n_kept"] == 3
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["base_rate"] == pytest.approx(0.6)


def test_audio_window_is_centred_on_the_frame_instant() -> None:
    lm = C.CoincidenceConfig().log_mel
    first, width = C.audio_window(C.CoincidenceConfig(audio_context_s=0.32))
    assert width == 32
    # log-mel frame j is centred at j * hop + window / 2 samples
    centres = [(j * lm.hop_samples + lm.window_samples / 2) / lm.sample_rate for j in (first, first + width - 1)]
    assert abs((centres[0] + centres[1]) / 2 - 0.5) <= 0.5 / lm.frames_per_second
    assert C.audio_window(C.CoincidenceConfig(audio_context_s=1.0)) == (0, lm.frames_per_second)
    with pytest.raises(ValueError):
        C.CoincidenceConfig(fusion="nonsense")


def test_sound_outside_the_window_does_not_reach_the_model() -> None:
    """Only the sound around each frame's instant counts: changing the audio
    far from every i + 0.5 s leaves the probability as it is."""
    import keras

    # seeded: an untrained tiny model with some initial weights hardly moves
    # (< 1e-6) for any input, which would make the last check meaningless
    keras.utils.set_random_seed(0)
    model = C.build_model(C.CoincidenceConfig.tiny())
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal((1, C.CLIP_SAMPLES))).astype(np.float32)
    frames = rng.integers(0, 255, (1, 5, 128, 128, 3), dtype=np.uint8)
    changed = audio.copy()
    for i in range(5):  # 0.0-0.2 s and 0.8-1.0 s of every second: outside the +-0.16 s window
        changed[0, i * 16000 : i * 16000 + 3200] = 0.5
        changed[0, i * 16000 + 12800 : (i + 1) * 16000] = -0.5
    p = lambda a: float(model({"audio": a, "frames": frames}, training=False)[0])  # noqa: E731
    assert p(changed) == pytest.approx(p(audio), abs=1e-6)
    centre = audio.copy()
    centre[0, 8000 - 800 : 8000 + 800] = 0.9
    assert p(centre) != pytest.approx(p(audio), abs=1e-6)


@pytest.mark.parametrize("kind", ["flip", "translate", "mel_shift", "gain"])
def test_augmentations_change_training_inputs_only(kind: str) -> None:
    rng = np.random.default_rng(1)
    if kind in ("flip", "translate"):
        x = tf.constant(rng.random((8, 5, 16, 16, 3)), tf.float32)
    elif kind == "mel_shift":
        x = tf.constant(rng.random((8, 20, 12)), tf.float32)
    else:
        x = tf.constant(rng.random((8, 100)), tf.float32)
    layer = C.Augment(kind, 1 if kind == "flip" else 3, seed=0)
    np.testing.assert_array_equal(layer(x, training=False), x)
    y = np.asarray(layer(x, training=True))
    xs = np.asarray(x)
    assert y.shape == xs.shape and not np.array_equal(y, xs)
    for b in range(8):
        if kind == "flip":  # mirrored or not, all frames alike
            assert np.array_equal(y[b], xs[b]) or np.array_equal(y[b], xs[b, :, :, ::-1])
        elif kind == "translate":  # a circular shift, all frames alike
            assert any(
                np.array_equal(y[b], np.roll(xs[b], (dy, dx), axis=(1, 2)))
                for dy in range(-3, 4) for dx in range(-3, 4)
            )
        elif kind == "gain":  # one factor within +-3 dB
            ratio = y[b] / xs[b]
            assert np.allclose(ratio, ratio[0], rtol=1e-5) and 10 ** (-3 / 20) - 1e-6 <= ratio[0] <= 10 ** (3 / 20) + 1e-6


def test_learning_rate_anneals_over_steps_or_the_time_budget() -> None:
    cfg = C.CoincidenceConfig(steps=1000, learning_rate=1e-3)
    assert C.learning_rate_at(cfg, 0, 0.0, None) == pytest.approx(1e-3)
    assert C.learning_rate_at(cfg, 500, 0.0, None) == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5))
    assert C.learning_rate_at(cfg, 1000, 0.0, None) == pytest.approx(5e-5)
    # a budgeted run that will stop by time anneals by time
    assert C.learning_rate_at(cfg, 10, 60.0, 60.0) == pytest.approx(5e-5)
    assert C.learning_rate_at(cfg, 10, 30.0, 60.0) == C.learning_rate_at(cfg, 500, 0.0, None)


def test_sound_on_follows_the_toy_schedule() -> None:
    from tests.models.conftest import toy_video

    audio, _, on = toy_video(np.random.default_rng(5), 20)
    levels = C.frame_levels(audio, 20, context_s=0.32)
    np.testing.assert_array_equal(C.sound_on(levels, margin_db=10.0), on)


def test_shifted_negatives_switch_sound_at_some_frame_instant() -> None:
    from tests.models.conftest import toy_video

    rng = np.random.default_rng(11)
    videos, schedules = {}, {}
    for i in range(4):
        audio, frames, on = toy_video(rng, 30)
        videos[f"v{i}"], schedules[f"v{i}"] = (audio, frames), on
    # v0 sounds all along: none of its shifts differs, so it never gets one
    audio, frames, _ = toy_video(np.random.default_rng(99), 30)
    loud = audio + (0.3 * np.sin(2 * np.pi * 400.0 * np.arange(audio.size) / 16_000)).astype(np.float32)
    videos["v0"], schedules["v0"] = (np.clip(loud, -1, 1), frames), np.ones(30, bool)
    cfg = C.CoincidenceConfig.tiny(shift_onoff_db=10.0, other_match_db=0.0)
    sampler = C.ExampleSampler(videos, cfg, seed=2)
    b = sampler.sample(400)
    shifted = np.flatnonzero(b.kind == C.SHIFTED)
    assert len(shifted) > 40
    for i in shifted:
        on = schedules[b.frames_video[i]]
        f, a = int(b.frames_start_s[i]), int(b.audio_start_s[i])
        assert b.frames_video[i] != "v0"
        assert (on[f : f + 5] != on[a : a + 5]).any()
    assert sampler.fallbacks > 0  # v0's negatives came from other videos
    # With the check off, shifts that change nothing are drawn too.
    plain = C.ExampleSampler(videos, C.CoincidenceConfig.tiny(shift_onoff_db=0.0, other_match_db=0.0), seed=2).sample(400)
    same = [
        i for i in np.flatnonzero(plain.kind == C.SHIFTED)
        if (schedules[plain.frames_video[i]][int(plain.frames_start_s[i]) : int(plain.frames_start_s[i]) + 5]
            == schedules[plain.frames_video[i]][int(plain.audio_start_s[i]) : int(plain.audio_start_s[i]) + 5]).all()
    ]
    assert same


@pytest.mark.parametrize("streaming", [False, True])
def test_other_video_negatives_sound_at_the_same_frame_instants(streaming: bool) -> None:
    from tests.models.conftest import toy_video

    rng = np.random.default_rng(21)
    videos, schedules = {}, {}
    for i in range(6):
        audio, frames, on = toy_video(rng, 30)
        if i < 2:  # a silent stretch (the first 15 s): silent clips and silent shifts
            audio[: 15 * 16_000] = (0.01 * rng.standard_normal(15 * 16_000)).astype(np.float32)
            on[:15] = False
        videos[f"v{i}"], schedules[f"v{i}"] = (audio, frames), on

    def sample(cfg: C.CoincidenceConfig) -> tuple[C.ExampleBatch, int]:
        if streaming:
            s: object = C.StreamingSampler(lambda v: videos[v], sorted(videos), cfg, seed=4, passes=3.0)
        else:
            s = C.ExampleSampler(videos, cfg, seed=4)
        return s.sample(600), s.match_fallbacks  # type: ignore[attr-defined]

    def same_instants(b: C.ExampleBatch, i: int) -> bool:
        f, a = int(b.frames_start_s[i]), int(b.audio_start_s[i])
        return bool((schedules[b.frames_video[i]][f : f + 5] == schedules[b.audio_video[i]][a : a + 5]).all())

    def silent(b: C.ExampleBatch, i: int) -> bool:
        f = int(b.frames_start_s[i])
        return not schedules[b.frames_video[i]][f : f + 5].any()

    cfg = C.CoincidenceConfig.tiny(other_match_db=10.0, window_videos=6)
    b, fallbacks = sample(cfg)
    other = np.flatnonzero(b.kind == C.OTHER_VIDEO)
    assert len(other) > 60
    assert all(b.audio_video[i] != b.frames_video[i] for i in other)
    matched = [same_instants(b, i) for i in other]
    # every draw matches unless no other video has the pattern (counted)
    assert len(matched) - sum(matched) <= fallbacks
    assert sum(matched) > 0.8 * len(matched)
    # a silent clip's shifted negatives are silent too
    quiet = [i for i in np.flatnonzero(b.kind == C.SHIFTED) if silent(b, i)]
    assert len(quiet) > 3 and all(same_instants(b, i) for i in quiet)
    # Without the option the instants agree by chance only (1 in 32 for
    # five fair coin flips).
    plain, none = sample(C.CoincidenceConfig.tiny(window_videos=6, other_match_db=0.0))
    other = np.flatnonzero(plain.kind == C.OTHER_VIDEO)
    assert none == 0
    assert sum(same_instants(plain, i) for i in other) < 0.2 * len(other)


def test_on_codes_and_matched_start() -> None:
    on = np.array([1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1], bool)
    codes = C.on_codes(on)
    assert codes.tolist() == [31, 15, 23, 27, 29, 30, 31]
    assert C.on_codes(on[:3]).size == 0
    rng = np.random.default_rng(0)
    picks = {C.matched_start(rng, [codes, np.array([31, 0, 31])], 31) for _ in range(200)}
    assert picks == {(0, 0), (0, 6), (1, 0), (1, 2)}
    assert C.matched_start(rng, [codes], 3) is None


def _history(*aucs: float) -> list[dict[str, float]]:
    return [{"step": 100.0 * (i + 1), "auc": a} for i, a in enumerate(aucs)]


def test_choose_evaluation_takes_the_latest_within_one_standard_error() -> None:
    # 256 + 256 held-out examples: SE of an AUC of 0.76 is ~0.021
    se = auc_standard_error(0.76, 256, 256)
    assert 0.015 < se < 0.03
    # an early spike, then a plateau inside one SE: the last plateau weights
    assert C.choose_evaluation(_history(0.61, 0.76, 0.74, 0.75, 0.745), 256, 256) == 4
    # a late drop beyond one SE: the latest evaluation still inside it
    assert C.choose_evaluation(_history(0.61, 0.76, 0.75, 0.70, 0.69), 256, 256) == 2
    # with many examples the SE is small and the best itself wins
    assert C.choose_evaluation(_history(0.61, 0.76, 0.75, 0.745), 50_000, 50_000) == 1
    # NaN evaluations (one class only) are skipped, all-NaN gives the last
    nan = float("nan")
    assert C.choose_evaluation(_history(0.7, nan), 256, 256) == 0
    assert C.choose_evaluation(_history(nan, nan), 256, 256) == 1



def test_the_weight_mean_takes_the_evaluations_of_the_last_fraction_of_the_run() -> None:
    from audioscope.models.spine import in_average_window, run_progress

    steps = [250, 500, 750, 1000, 1250, 1500, 1750, 2000, 2250, 2500, 2750, 3000, 3030]

    def taken(fraction: float, end: int = 3030) -> list[int]:
        return [s for s in steps if s <= end and in_average_window(run_progress(s, end, 0.0, None), fraction)]

    # the last third of 3,030 steps starts at 2,020: the evaluations at 2,250 .. 3,030
    assert taken(1 / 3) == [2250, 2500, 2750, 3000, 3030]
    assert taken(1.0) == steps
    assert taken(0.005) == [3030]  # the last one at least
    # a run stopped by its time budget: progress is the share of the budget used
    assert in_average_window(run_progress(100, 3030, 70.0, 100.0), 1 / 3)
    assert not in_average_window(run_progress(100, 3030, 60.0, 100.0), 1 / 3)


def test_config_rejects_bad_weight_choices() -> None:
    with pytest.raises(ValueError, match="export_weights"):
        C.CoincidenceConfig(export_weights="best")
    with pytest.raises(ValueError, match="average_fraction"):
        C.CoincidenceConfig(average_fraction=0.0)
    with pytest.raises(ValueError, match="window_videos"):
        C.CoincidenceConfig(window_videos=1)
