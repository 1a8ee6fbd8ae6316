"""`audioscope score` end to end: real Beam DirectRunner, real SavedModels, real clip store.

The clip store is written directly with the store's own writer pieces
(media shards, status records, index, summary) from generated arrays, so no
ffmpeg is needed and it takes a fraction of a second; the models are tiny
SavedModels with the coincidence signature exported here.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from audioscope import cli
from audioscope.clipstore.format import Layout, StoreParams, encode_media, init_store, sliding_windows

SR = 16_000
#: video id -> seconds stored (short ones give no clips and are not in the index)
VIDEOS = {"aa-one": 9, "aa-two": 6, "bb-three": 12, "cc-four": 5, "dd-short": 4}


def make_store(root: Path, videos: dict[str, int] = VIDEOS, seed: int = 7) -> Path:
    """A finished clip store in the format `audioscope ingest` writes."""
    from audioscope.clipstore.writer import StatusRecord, write_status
    from audioscope.schemas.tables import CLIP_INDEX, STATUS, to_table

    layout = Layout(str(root))
    params = StoreParams()
    init_store(layout, params)
    rng = np.random.default_rng(seed)
    index_rows, status_rows = [], []
    for vid, seconds in videos.items():
        loud = rng.uniform(0.01, 0.5)
        audio = (rng.standard_normal(seconds * SR) * loud * 32767 / 4).clip(-32768, 32767).astype(np.int16)
        level = rng.integers(0, 256, size=(seconds, 1, 1, 1))
        frames = (level + rng.integers(0, 8, size=(seconds, 128, 128, 3))).clip(0, 255).astype(np.uint8)
        windows = sliding_windows(seconds)
        shard = b""
        if windows:
            shard = encode_media(audio, frames, params, video_id=vid)
            (Path(layout.media(vid))).parent.mkdir(parents=True, exist_ok=True)
            Path(layout.media(vid)).write_bytes(shard)
        record = StatusRecord(
            video_id=vid, source=f"/videos/{vid}.mp4", duration=float(seconds), usable_seconds=seconds,
            clips=tuple((float(a), float(b)) for a, b in windows),
            media=layout.media_rel(vid) if windows else None,
            media_bytes=len(shard), media_seconds=seconds if windows else 0,
        )
        write_status(layout, record)
        index_rows += record.index_rows()
        status_rows.append(record.status_row())
    name = "clips-00000-of-00001.parquet"
    Path(layout.index_dir).mkdir(parents=True, exist_ok=True)
    pq.write_table(to_table(sorted(index_rows, key=lambda r: (r["video_id"], r["start"])), CLIP_INDEX),
                   layout.index_shard(0, 1))
    pq.write_table(to_table(status_rows, STATUS), layout.status_table)
    Path(layout.summary_json).write_text(
        json.dumps({"index_files": [name], "videos": len(videos), "clips": len(index_rows)})
    )
    return root


def export_model(path: Path, weight: float, signature: str = "serving_default") -> Path:
    """A tiny SavedModel with the coincidence contract: bright pictures and quiet sound score high."""
    import tensorflow as tf

    class Tiny(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(weight, dtype=tf.float32)

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 80000], tf.float32, name="audio"),
                tf.TensorSpec([None, 5, 128, 128, 3], tf.uint8, name="frames"),
            ]
        )
        def serve(self, audio, frames):
            bright = tf.reduce_mean(tf.cast(frames, tf.float32), axis=[1, 2, 3, 4]) / 255.0
            rms = tf.sqrt(tf.reduce_mean(tf.square(audio), axis=1))
            return {"probability": tf.sigmoid(self.w * (4.0 * bright - 2.0) - 5.0 * rms)}

    module = Tiny()
    tf.saved_model.save(module, str(path), signatures={signature: module.serve})
    return path


def score(store: Path, model: Path, out: Path, *extra: str) -> int:
    return cli.main(["score", "--store", str(store), "--model", str(model), "--out", str(out), "--poll", "0.2", *extra])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("score") / "store")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {
        "a": export_model(root / "a", 1.0),
        "b": export_model(root / "b", 2.0),
        "nosig": export_model(root / "nosig", 1.0, signature="predict"),
    }


@pytest.fixture(scope="module")
def scored(store, models, tmp_path_factory):
    """One scoring run of the store with model a, shared by the read-only tests."""
    out = tmp_path_factory.mktemp("scored") / "scores"
    assert score(store, models["a"], out) == 0
    return out


def _parts(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "parts").rglob("*.parquet")}


def test_every_clip_is_scored_once_as_the_predictor_scores_it(store, models, scored):
    from audioscope.clipstore import ClipStore
    from audioscope.models.coincidence import load_model, model_hash
    from audioscope.schemas.tables import SCORES

    table = pq.read_table(scored / "scores.parquet")
    assert table.schema.equals(SCORES)
    df = table.to_pandas()
    cs = ClipStore.open(str(store))
    idx = cs.index
    assert len(df) == len(idx) == sum(len(sliding_windows(s)) for s in VIDEOS.values())
    assert df["clip_id"].is_unique
    assert list(df["clip_id"]) == list(idx["clip_id"])  # sorted by (video_id, start), like the index
    assert list(df["start"]) == list(idx["start"]) and list(df["end"]) == list(idx["end"])
    assert "dd-short" not in set(df["video_id"])

    predictor = load_model(models["a"])
    clips = [cs.clip(c) for c in df["clip_id"]]
    assert list(df["video_id"]) == [c.video_id for c in clips]
    one_by_one = np.array([predictor(c.audio, c.frames)[0] for c in clips])
    # TensorFlow's kernels for other batch shapes may differ by a float32 ulp ...
    np.testing.assert_allclose(df["probability"], one_by_one, rtol=0, atol=2e-7)
    # ... at the pipeline's batch shape (64 rows, zero-padded) the numbers are exact
    audio = np.zeros((64, 80000), np.float32)
    frames = np.zeros((64, 5, 128, 128, 3), np.uint8)
    audio[: len(clips)] = [c.audio for c in clips]
    frames[: len(clips)] = [c.frames for c in clips]
    assert np.array_equal(df["probability"].to_numpy(), predictor(audio, frames)[: len(clips)])
    assert df["probability"].dtype == np.float32
    assert df["probability"].nunique() > 5  # the toy model tells the clips apart
    assert set(df["model_id"]) == {model_hash(models["a"])} == {predictor.model_id}

    summary = json.loads((scored / "summary.json").read_text())
    assert summary["clips"] == len(idx) and summary["videos"] == 4
    assert summary["clips_scored"] == len(idx) and summary["videos_scored"] == 4
    assert summary["model_id"] == predictor.model_id
    assert summary["failed"] == {} and summary["clips_per_second"] > 0
    meta = json.loads((scored / "scores.json").read_text())
    assert meta["model_id"] == predictor.model_id
    assert meta["store"] == str(store) and meta["model"] == str(models["a"]) and meta["batch_size"] == 64
    assert sorted(_parts(scored)) == sorted(f"{v}.parquet" for v in ("aa-one", "aa-two", "bb-three", "cc-four"))


def test_rerun_scores_nothing_and_a_deleted_part_is_rescored_alone(store, models, scored, tmp_path, capsys):
    out = tmp_path / "scores"
    # batches of 3 clips: several model calls, clips of one video in several batches
    assert score(store, models["a"], out, "--batch-size", "3") == 0
    first = (out / "scores.parquet").read_bytes()
    # another batch shape may move a score by a float32 rounding step, no more
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "scores.parquet"), pd.read_parquet(scored / "scores.parquet"), rtol=1e-6, atol=0
    )
    parts = _parts(out)

    assert score(store, models["a"], out, "--batch-size", "3") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clips_scored"] == 0 and summary["videos_scored"] == 0
    assert _parts(out) == parts
    assert (out / "scores.parquet").read_bytes() == first
    assert "Scoring finished" in capsys.readouterr().out

    (out / "parts" / "bb" / "bb-three.parquet").unlink()
    assert score(store, models["a"], out, "--batch-size", "3") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["videos_scored"] == 1 and summary["clips_scored"] == len(sliding_windows(12))
    after = _parts(out)
    assert after.keys() == parts.keys()
    assert {k: v for k, v in after.items() if k != "bb-three.parquet"} == {
        k: v for k, v in parts.items() if k != "bb-three.parquet"
    }
    assert (out / "scores.parquet").read_bytes() == first


def test_the_launcher_never_gathers_the_whole_index(store, models, scored, tmp_path, monkeypatch):
    """The work units come from the streamed index (issue 23): ``ClipStore.index`` is never read."""
    from audioscope.clipstore.reader import ClipStore

    def refuse(self):
        raise AssertionError("the score launcher read ClipStore.index (the whole index in memory)")

    monkeypatch.setattr(ClipStore, "index", property(refuse))
    out = tmp_path / "scores"
    assert score(store, models["a"], out) == 0
    assert (out / "scores.parquet").read_bytes() == (scored / "scores.parquet").read_bytes()


def test_another_model_or_store_into_the_same_out_is_refused(store, models, scored, tmp_path, capsys):
    before = (scored / "scores.json").read_text()
    assert score(store, models["b"], scored) == 2
    err = capsys.readouterr().err
    assert "another model" in err and "new --out" in err
    other = make_store(tmp_path / "other", {"zz-x": 6})
    assert score(other, models["a"], scored) == 2
    assert "new --out" in capsys.readouterr().err
    assert (scored / "scores.json").read_text() == before


def test_a_moved_store_keeps_its_scores_and_a_new_store_at_the_old_path_does_not(store, models, scored, tmp_path):
    """Scores know their store by the id store.json got at creation: a store moved (or copied)
    elsewhere resumes its scores folder, and another store made at the same path is refused."""
    out = tmp_path / "scores"
    shutil.copytree(scored, out)
    moved = tmp_path / "moved" / "store"
    shutil.copytree(store, moved)
    assert score(moved, models["a"], out) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clips_scored"] == 0 and summary["store"] == str(moved)
    assert (out / "scores.parquet").read_bytes() == (scored / "scores.parquet").read_bytes()
    assert json.loads((out / "scores.json").read_text())["store"] == str(moved)

    shutil.rmtree(moved)
    make_store(moved)  # the same videos, made again: another store
    assert score(moved, models["a"], out) == 2


def test_scores_of_a_store_made_before_store_ids_are_matched_by_path(store, models, tmp_path):
    from audioscope.clipstore.format import STORE_ID_KEY

    old = tmp_path / "old"
    shutil.copytree(store, old)
    meta = json.loads((old / "store.json").read_text())
    del meta[STORE_ID_KEY]
    (old / "store.json").write_text(json.dumps(meta))
    out = tmp_path / "scores"
    assert score(old, models["a"], out) == 0
    assert json.loads((out / "scores.json").read_text())["store_id"] is None
    moved = tmp_path / "moved"
    shutil.copytree(old, moved)
    assert score(moved, models["a"], out) == 2  # without an id, another path is another store
    assert score(old, models["a"], out) == 0


def test_a_model_without_the_signature_is_refused_clearly(store, models, tmp_path, capsys):
    out = tmp_path / "scores"
    assert score(store, models["nosig"], out) == 2
    err = capsys.readouterr().err
    assert "serving_default" in err and "probability" in err and "Traceback" not in err
    assert not (out / "scores.json").exists()
    assert score(store, tmp_path / "missing", out) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert score(store, tmp_path / "empty", out) == 2
    assert "not a SavedModel" in capsys.readouterr().err


def test_unreadable_media_is_recorded_and_retried(store, models, scored, tmp_path):
    broken = tmp_path / "store"
    shutil.copytree(store, broken)
    media = Path(Layout(str(broken)).media("aa-two"))
    good = media.read_bytes()
    media.write_bytes(b"not a media shard")
    out = tmp_path / "scores"
    assert score(broken, models["a"], out) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["failed"]) == ["aa-two"] and summary["failed"]["aa-two"]
    assert summary["videos"] == 3
    reference = pd.read_parquet(scored / "scores.parquet")
    df = pd.read_parquet(out / "scores.parquet")
    pd.testing.assert_frame_equal(
        df, reference[reference["video_id"] != "aa-two"].reset_index(drop=True), check_exact=True
    )
    assert (out / "failed" / "aa" / "aa-two.json").exists()

    media.write_bytes(good)  # fixed: the next run retries it
    assert score(broken, models["a"], out) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == {} and summary["videos_scored"] == 1
    assert not list((out / "failed").rglob("*.json"))
    assert (out / "scores.parquet").read_bytes() == (scored / "scores.parquet").read_bytes()


def test_help_describes_the_output():
    from audioscope.pipelines import score_cli

    text = cli.build_parser()._subparsers._group_actions[0].choices["score"].format_help()
    for word in ("--store", "--model", "--out", "--batch-size", "scores.parquet", "summary.json", "Example"):
        assert word in text
    assert score_cli.normalise("rel/x") == os.path.abspath("rel/x")
    assert score_cli.normalise("gs://b/x/") == "gs://b/x"


def test_a_model_on_an_object_store_is_loaded_without_leaving_its_copy(models, tmp_path, monkeypatch):
    """Workers copy a gs:// model to a local folder to load it; once loaded (same id as the local files) the
    copy is removed, and a model folder with no files leaves nothing either."""
    import tempfile

    from audioscope import storage
    from audioscope.pipelines.score import load_predictor
    from tests.gcs_emulator import GcsEmulator, pointed_at

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    local = load_predictor(str(models["a"]))
    with GcsEmulator(bucket="models") as emu, pointed_at(emu.url):
        fs, _ = storage.url_to_fs("gs://models/a")
        for f in sorted(p for p in models["a"].rglob("*") if p.is_file()):
            fs.put_file(str(f), f"models/a/{f.relative_to(models['a']).as_posix()}")
        remote = load_predictor("gs://models/a")
        assert remote.model_id == local.model_id
        assert list(scratch.iterdir()) == []
        audio = np.zeros((2, 80000), np.float32)
        frames = np.full((2, 5, 128, 128, 3), 200, np.uint8)
        assert np.allclose(remote(audio, frames), local(audio, frames))
        with pytest.raises(FileNotFoundError):
            load_predictor("gs://models/none")
        assert list(scratch.iterdir()) == []
