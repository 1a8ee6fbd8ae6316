"""`audioscope score` at its doors: hostile store indexes, broken inputs, remote runners, lossy runners.

Each case asserts the clear error (one line, no traceback) or the recorded
failure, and that nothing outside the scores folder changed (the whole tmp
tree is compared before and after).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audioscope.clipstore.format import Layout
from tests.pipelines.doors import dropping_finish_bundle_outputs, snapshot
from tests.pipelines.test_score import export_model, make_store, score

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return export_model(tmp_path_factory.mktemp("model") / "m", 1.0)


@pytest.fixture(scope="module")
def clean(tmp_path_factory, model):
    """A store and its reference scores (batches of 3 clips, as the lossy-runner test uses)."""
    root = tmp_path_factory.mktemp("clean")
    store = make_store(root / "store")
    assert score(store, model, root / "scores", "--batch-size", "3") == 0
    return {"store": store, "scores": root / "scores"}


def _copy_store(clean, tmp_path: Path) -> Path:
    store = tmp_path / "store"
    shutil.copytree(clean["store"], store)
    return store


def _one_line_error(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


def test_hostile_ids_in_the_index_are_recorded_never_used_as_paths(clean, model, tmp_path, capsys):
    store = _copy_store(clean, tmp_path)
    victim = tmp_path / "config.json"
    victim.write_text('{"mine": true}\n')
    index_path = Path(Layout(str(store)).index_shard(0, 1))
    index = pq.read_table(index_path).to_pandas()
    row = index.iloc[0].to_dict()
    hostile = [
        {**row, "video_id": "../../config", "clip_id": "../../config-0000000"},
        {**row, "video_id": "/tmp/abs", "clip_id": "/tmp/abs-0000000"},
        {**row, "video_id": "ok-video", "clip_id": "ok-video-../../x"},
    ]
    table = pa.Table.from_pandas(pd.concat([index, pd.DataFrame(hostile)], ignore_index=True), preserve_index=False)
    pq.write_table(table.cast(pq.read_schema(index_path)), index_path)
    out = tmp_path / "scores"
    before = snapshot(tmp_path, skip=(out,))

    assert score(store, model, out, "--batch-size", "3") == 0
    assert snapshot(tmp_path, skip=(out,)) == before
    assert victim.read_text() == '{"mine": true}\n'
    summary = json.loads((out / "summary.json").read_text())
    for vid in ("../../config", "/tmp/abs", "ok-video"):
        assert "not a valid" in summary["failed"][vid]
    assert summary["complete"] is True and summary["missing_clips"] == 0
    assert (out / "invalid-ids.jsonl").exists()
    # the valid videos are scored as in a clean run
    pd.testing.assert_frame_equal(pd.read_parquet(out / "scores.parquet"), pd.read_parquet(clean["scores"] / "scores.parquet"))
    assert "invalid ids" in capsys.readouterr().err


def test_a_non_parquet_index_gives_one_line_naming_it(clean, model, tmp_path, capsys):
    store = _copy_store(clean, tmp_path)
    Path(Layout(str(store)).index_shard(0, 1)).write_bytes(b"PAR1 this is not parquet")
    out = tmp_path / "scores"
    before = snapshot(tmp_path, skip=(out,))
    assert score(store, model, out) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "index" in line and str(store) in line and "audioscope ingest" in line
    assert snapshot(tmp_path, skip=(out,)) == before
    assert not (out / "scores.parquet").exists()


def test_a_truncated_media_shard_is_recorded_with_the_video_named(clean, model, tmp_path):
    store = _copy_store(clean, tmp_path)
    media = Path(Layout(str(store)).media("bb-three"))
    media.write_bytes(media.read_bytes()[: media.stat().st_size // 2])
    out = tmp_path / "scores"
    before = snapshot(tmp_path, skip=(out,))
    assert score(store, model, out, "--batch-size", "3") == 0
    assert snapshot(tmp_path, skip=(out,)) == before
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["failed"]) == ["bb-three"]
    assert "media shard" in summary["failed"]["bb-three"] and "ingest" in summary["failed"]["bb-three"]
    assert summary["complete"] is True
    reference = pd.read_parquet(clean["scores"] / "scores.parquet")
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "scores.parquet"), reference[reference["video_id"] != "bb-three"].reset_index(drop=True)
    )


@pytest.mark.parametrize(
    "flags", [["--runner=DataflowRunner", "--project=p"], ["--runner=PortableRunner", "--environment_type=EXTERNAL"]]
)
def test_local_paths_with_remote_workers_are_refused_at_launch(clean, model, tmp_path, capsys, flags):
    out = tmp_path / "scores"
    before = snapshot(tmp_path)
    assert score(clean["store"], model, out, "--", *flags) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "--store" in line and "--model" in line and "--out" in line and "gs://" in line
    assert snapshot(tmp_path) == before and not out.exists()


def test_a_runner_that_drops_batches_cannot_end_in_exit_0_and_a_rerun_completes(clean, model, tmp_path, capsys):
    out = tmp_path / "scores"
    with dropping_finish_bundle_outputs() as dropped:
        code = score(clean["store"], model, out, "--batch-size", "3")
    assert dropped, "the stand-in dropped nothing: the test would prove nothing"
    assert code == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "ended short" in line and "run the same command again" in line.lower()
    # no video is marked scored with fewer clips than it has
    reference = pd.read_parquet(clean["scores"] / "scores.parquet")
    per_video = reference.groupby("video_id").size()
    from audioscope.pipelines.score import ScoresLayout

    layout = ScoresLayout(str(out))
    for part in (out / "parts").rglob("*.parquet"):
        assert len(pd.read_parquet(part)) == per_video[part.stem]
    assert len(layout.scored_videos()) < len(per_video)
    assert not layout.is_finished()

    assert score(clean["store"], model, out, "--batch-size", "3") == 0
    assert layout.is_finished()
    pd.testing.assert_frame_equal(pd.read_parquet(out / "scores.parquet"), reference)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True and summary["clips"] == len(reference)


def test_a_runner_that_loses_the_finalize_step_cannot_leave_an_earlier_summary_standing(
    clean, model, tmp_path, monkeypatch, capsys
):
    """A video new to the scores folder (as after the store grew) is scored, but the runner loses the
    finalize step: scores.parquet stays an earlier run's, without it, and that run's summary said
    complete, so the run ended with exit 0."""
    from audioscope.pipelines import score as score_module

    out = tmp_path / "scores"
    shutil.copytree(clean["scores"], out)
    (out / "parts" / "bb" / "bb-three.parquet").unlink()
    reference = pd.read_parquet(clean["scores"] / "scores.parquet")
    pq.write_table(pa.Table.from_pandas(reference[reference["video_id"] != "bb-three"], preserve_index=False),
                   out / "scores.parquet")  # fmt: skip
    monkeypatch.setattr(score_module.FinalizeScores, "process", lambda self, *a: iter(()))
    assert score(clean["store"], model, out, "--batch-size", "3") == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "score ended short: the runner lost work" in line and "the finalize step never ran" in line
    assert not (out / "summary.json").exists()  # the earlier summary no longer describes the folder
    monkeypatch.undo()
    assert score(clean["store"], model, out, "--batch-size", "3") == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out / "scores.parquet"), reference)
    assert json.loads((out / "summary.json").read_text())["complete"] is True


def test_the_typed_reader_gives_the_table_and_refuses_a_foreign_file(clean, tmp_path):
    from audioscope.errors import UserError
    from audioscope.pipelines.score import ScoresLayout

    layout = ScoresLayout(str(clean["scores"]))
    assert layout.is_finished()
    df = layout.read_scores(["clip_id", "probability"])
    assert list(df.columns) == ["clip_id", "probability"] and len(df) == 16
    assert layout.read_meta()["batch_size"] == 3
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "scores.parquet").write_text("clip_id,probability\n")
    with pytest.raises(UserError, match="not a scores table"):
        ScoresLayout(str(bad)).read_scores()
    with pytest.raises(UserError, match="no scores"):
        ScoresLayout(str(tmp_path / "none")).read_scores()


def test_a_short_part_left_by_an_earlier_version_is_found_and_scored_again(clean, model, tmp_path, capsys):
    out = tmp_path / "scores"
    shutil.copytree(clean["scores"], out)
    part = out / "parts" / "bb" / "bb-three.parquet"
    pq.write_table(pq.read_table(part).slice(0, 5), part)  # 5 of its 8 clips, as a lossy runner left it

    assert score(clean["store"], model, out, "--batch-size", "3") == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "ended short" in line and "bb-three (5 of 8)" in line
    assert not part.exists()
    assert score(clean["store"], model, out, "--batch-size", "3") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True and summary["videos_scored"] == 1
    pd.testing.assert_frame_equal(pd.read_parquet(out / "scores.parquet"), pd.read_parquet(clean["scores"] / "scores.parquet"))
