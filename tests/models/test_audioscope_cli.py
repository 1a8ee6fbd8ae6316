"""`audioscope train` and `audioscope evaluate` end to end on real TFRecord shards.

The shards are written with the mixture record layout (schemas.records) in
the layout of a mixtures directory; the `tiny` configuration is swapped for
an even smaller one so that the commands run in seconds (this checks the
commands, the loader and the files they write, not the model's accuracy).
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from audioscope import cli  # noqa: E402
from audioscope.models import configs  # noqa: E402
from audioscope.schemas import records  # noqa: E402

from .audioscope_toys import micro_config, toy_example  # noqa: E402

pytestmark = pytest.mark.integration


def _record(example: dict, kind: str, n: int) -> bytes:
    to_int16 = lambda a: np.round(np.clip(a, -1, 1) * 32767).astype(np.int16)  # noqa: E731
    is_mom = bool(example["is_mom"])
    return records.encode(records.MixtureRecord(
        frames=example["frames"], audio1=to_int16(example["audio1"]),
        audio2=to_int16(example["audio2"]) if is_mom else None, type=kind, is_mom=is_mom,
        clip_id1=f"va{n}-0000000", video_id1=f"va{n}", start1=0.0, end1=5.0, frames_clip_id=f"va{n}-0000000",
        clip_id2=f"vb{n}-0001000" if is_mom else "", video_id2=f"vb{n}" if is_mom else "",
    ))  # fmt: skip


def make_mix_dir(root: Path) -> Path:
    """A mixtures directory: summary.json, train/semi-supervised/, eval/test/<set>/."""
    rng = np.random.default_rng(0)
    train = []
    for n in range(8):
        ex = toy_example(rng, samples=records.AUDIO_SAMPLES)
        train.append(_record(ex, ex["type"].decode(), n))
    records.write_tfrecord(str(root / "train/semi-supervised/semi-supervised-00000-of-00001.tfrecord"), train)
    kinds = {"onscreen_single": "LOn", "offscreen_single": "LOff", "onscreen_mom": "NOn", "offscreen_mom": "LOff"}
    for name, like in kinds.items():
        shard = []
        for n in range(2):
            ex = toy_example(rng, samples=records.AUDIO_SAMPLES, kind=like)
            single = name.endswith("single")
            ex["is_mom"] = not single
            if single:
                ex["audio2"] = np.zeros_like(ex["audio2"])
            elif not np.any(ex["audio2"]):
                ex["audio2"] = 0.5 * ex["audio1"][::-1].copy()
            shard.append(_record(ex, name, 100 + n))
        records.write_tfrecord(str(root / f"eval/test/{name}/{name}-00000-of-00001.tfrecord"), shard)
    (root / "summary.json").write_text(json.dumps({"schema_versions": {"mixture_record": 1}}))
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cli")
    mix = make_mix_dir(root / "mix")
    patch = pytest.MonkeyPatch()
    patch.setitem(configs.CONFIGS, "tiny", lambda: micro_config(train_crop_s=0.25))
    try:
        rc = cli.main(["train", "--data", str(mix), "--out", str(root / "run"), "--config", "tiny",
                       "--steps", "4", "--batch-size", "2", "--shuffle-buffer", "8",
                       "--video-input", "frames", "--export-weights", "last",
                       "--classification-weighting", "uniform"])  # fmt: skip
    finally:
        patch.undo()
    assert rc == 0
    return mix, root / "run"


def test_train_reads_the_recipe_shards_and_exports(trained) -> None:
    _, run = trained
    body = json.loads((run / "run.json").read_text())
    assert body["data"]["recipe"] == "semi-supervised" and body["data"]["shards"] == 1
    assert body["config"]["batch_size"] == 2
    # the flags override tiny's motion input, averaged export and power weighting
    assert (body["config"]["video_input"], body["config"]["export_weights"]) == ("frames", "last")
    assert body["config"]["classification_weighting"] == "uniform"
    assert json.loads((run / "export" / "model.json").read_text())["exported_weights"] == {"kind": "last", "step": 4}
    assert json.loads((run / "export" / "model.json").read_text())["step"] == 4
    assert json.loads((run / "train_summary.json").read_text())["stopped_by"] == "steps"


def test_evaluate_writes_report_table_and_wavs(trained, tmp_path, capsys) -> None:
    mix, run = trained
    out = tmp_path / "report"
    assert cli.main(["evaluate", "--model", str(run), "--data", str(mix), "--out", str(out), "--examples", "1"]) == 0
    table = capsys.readouterr().out
    for name in records.EVAL_SETS:
        assert name in table
    report = json.loads((out / "report.json").read_text())
    assert {n: s["examples"] for n, s in report["sets"].items()} == {n: 2 for n in records.EVAL_SETS}
    assert report["model_info"]["step"] == 4 and report["missing_sets"] == []
    assert "osr" in report["sets"]["offscreen_single"] and "si_snr" in report["sets"]["onscreen_mom"]
    assert set(report["targets"]) == {"offscreen_single_median_osr_db", "onscreen_mom_median_si_snr_minus_input_db"}
    # two first clips per set: each target says so, and the table says it is too few to judge
    assert {t["first_clips"] for t in report["targets"].values()} == {2}
    assert table.count("from only 2 clips: too few to judge") == 2
    wavs = sorted(p.name for p in (out / "examples" / "onscreen_mom" / "000").glob("*.wav"))
    assert {"mixture.wav", "audio1.wav", "audio2.wav", "on_screen_estimate.wav"} <= set(wavs)
    assert sum(name.startswith("source") for name in wavs) == 4
    with wave.open(str(out / "examples" / "onscreen_mom" / "000" / "mixture.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getnframes()) == (16_000, 1, records.AUDIO_SAMPLES)
    # the same model and data again: the saved report is printed, nothing is recomputed
    before = (out / "report.json").stat().st_mtime_ns
    assert cli.main(["evaluate", "--model", str(run), "--data", str(mix), "--out", str(out)]) == 0
    assert (out / "report.json").stat().st_mtime_ns == before
    assert "onscreen_mom" in capsys.readouterr().out


def test_errors_say_what_to_do(trained, tmp_path, capsys) -> None:
    mix, run = trained
    assert cli.main(["evaluate", "--model", str(tmp_path / "nothing"), "--data", str(mix), "--out", str(tmp_path / "r")]) == 2
    assert "train one first" in capsys.readouterr().err
    assert cli.main(["evaluate", "--model", str(run), "--data", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "audioscope mix" in capsys.readouterr().err
    assert cli.main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run2"), "--config", "tiny"]) == 2
    assert "no TFRecord shards" in capsys.readouterr().err
    assert cli.main(["train", "--data", str(mix), "--out", str(tmp_path / "run3"), "--recipe", "unsupervised"]) == 2
    assert "train/unsupervised" in capsys.readouterr().err


def test_the_next_step_names_the_folder_that_holds_the_evaluation_sets(trained, capsys) -> None:
    mix, run = trained
    assert cli.main(["train", "--data", str(mix), "--out", str(run), "--steps", "4"]) == 0  # already trained
    err = capsys.readouterr().err
    assert "already trained to step 4" in err
    assert f"Next: audioscope evaluate --model {run} --data {mix} --out REPORT_DIR" in err
    # trained from a recipe's shards alone: where the evaluation sets are is the user's to say
    assert cli.main(["train", "--data", str(mix / "train" / "semi-supervised"), "--out", str(run), "--steps", "4"]) == 0
    assert f"--model {run} --data MIX_DIR --out REPORT_DIR" in capsys.readouterr().err


def test_the_two_kinds_of_model_are_told_apart(trained, tmp_path, capsys) -> None:
    """The coincidence model (`coincidence train`, for `score`) and the AudioScope model (`train`, for
    `evaluate`) are both SavedModels: given to the other command, each is named for what it is, in one
    line (evaluate used to end in TensorFlow's traceback of the signature call)."""
    from audioscope.schemas import coincidence_signature as C

    from ..pipelines.test_score import export_model

    mix, run = trained
    coincidence = export_model(tmp_path / "coincidence", 1.0)
    assert cli.main(["evaluate", "--model", str(coincidence), "--data", str(mix), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "is a coincidence model" in err and "audioscope train" in err and "Traceback" not in err
    assert not (tmp_path / "r" / "report.json").exists()
    for folder in (run, run / "export"):
        with pytest.raises(C.SignatureError, match="AudioScope model .*`audioscope coincidence train`"):
            C.load_model(folder)


def test_a_folder_of_another_step_is_not_taken_as_a_run_folder(trained, tmp_path, capsys) -> None:
    """`train --out` at a folder holding something else (a coincidence model, a Df) is refused before
    anything is written there: training used to add its run.json and tensorboard/ to it."""
    mix, _ = trained
    other = tmp_path / "model"
    other.mkdir()
    (other / "saved_model.pb").write_bytes(b"not ours")
    before = sorted(p.name for p in other.rglob("*"))
    assert cli.main(["train", "--data", str(mix), "--out", str(other), "--steps", "1", "--config", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "is not a training run folder" in err and "saved_model.pb" in err
    assert sorted(p.name for p in other.rglob("*")) == before
    (tmp_path / "empty").mkdir()  # an empty folder made beforehand is fine
    patch = pytest.MonkeyPatch()
    patch.setitem(configs.CONFIGS, "tiny", lambda: micro_config(train_crop_s=0.25))
    try:
        assert cli.main(["train", "--data", str(mix), "--out", str(tmp_path / "empty"), "--config", "tiny",
                         "--steps", "1", "--batch-size", "2", "--shuffle-buffer", "8"]) == 0  # fmt: skip
    finally:
        patch.undo()
    assert (tmp_path / "empty" / "run.json").exists()


def test_a_training_too_large_for_this_machine_is_refused_before_it_starts(trained, tmp_path, capsys) -> None:
    """On the CPU, a configuration and batch that need more memory than the machine has would be
    killed for memory without a word (`paper`'s default 256 examples per step: ~950 GB); it is refused
    in one line that says what fits, and nothing is written."""
    from audioscope.models.configs import cpu_memory_gb, get_config
    from audioscope.processes import available_memory

    mix, _ = trained
    have = available_memory()
    assert have is not None and have > 0
    assert cpu_memory_gb(get_config("paper")) > 900  # the measured rate at the published batch
    too_many = int(have / 1e9 / 0.019) + 1000  # tiny's measured memory per example
    out = tmp_path / "big"
    assert cli.main(["train", "--data", str(mix), "--out", str(out), "--config", "tiny",
                     "--batch-size", str(too_many)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "GB of memory on the CPU" in err and "--batch-size" in err and "Traceback" not in err
    assert not out.exists()
    # the examples a shuffle buffer holds count too (with their compressed clips)
    buffer = int(have / 30_000) + 1000  # more than this machine holds at 30 kB an example
    assert cli.main(["train", "--data", str(mix), "--out", str(out), "--config", "tiny",
                     "--shuffle-buffer", str(buffer)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "GB of memory on the CPU (of which" in err and "--shuffle-buffer" in err and "Traceback" not in err
    assert not out.exists()


def test_evaluation_shards_below_the_data_folder_are_never_trained_on(trained, tmp_path, capsys) -> None:
    """A release pulled with --only eval, or mixtures that have not finished, are not mixtures folders
    with train/ shards: read as a folder of shards, their evaluation sets were trained on (the test
    data leaked into the model, exit 0). Refused in one line, before anything is written."""
    import shutil

    mix, _ = trained
    eval_only = tmp_path / "pulled"
    shutil.copytree(mix, eval_only)
    shutil.rmtree(eval_only / "train")
    assert cli.main(["train", "--data", str(eval_only), "--out", str(tmp_path / "a"), "--config", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "holds evaluation shards" in err and "leak the test sets" in err and "--only eval" in err
    assert not (tmp_path / "a").exists()
    unfinished = tmp_path / "unfinished"
    shutil.copytree(mix, unfinished)
    (unfinished / "summary.json").unlink()
    (unfinished / "mix.json").write_text("{}")
    assert cli.main(["train", "--data", str(unfinished), "--out", str(tmp_path / "b"), "--config", "tiny"]) == 2
    assert "have not finished" in capsys.readouterr().err
    assert cli.main(["train", "--data", str(unfinished / "**" / "*.tfrecord"), "--out", str(tmp_path / "c"),
                     "--config", "tiny"]) == 2  # fmt: skip
    assert "holds evaluation shards" in capsys.readouterr().err


def test_a_second_training_in_the_same_run_folder_is_refused(trained, tmp_path, capsys) -> None:
    """Two trainings in one run folder both started from its last checkpoint and wrote their
    checkpoints over each other's (both exit 0). While one holds the folder, another is refused in one
    line; once it has ended, the same command resumes."""
    from audioscope.models.spine import training_lock

    mix, run = trained
    with training_lock(run):  # a training running there
        assert cli.main(["train", "--data", str(mix), "--out", str(run), "--steps", "8"]) == 2
    err = capsys.readouterr().err
    assert f"another training is running in {run} (process " in err and "Traceback" not in err
    assert json.loads((run / "export" / "model.json").read_text())["step"] == 4  # untouched
    assert cli.main(["train", "--data", str(mix), "--out", str(run), "--steps", "4"]) == 0  # free again
