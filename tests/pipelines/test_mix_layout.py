"""audioscope.pipelines.mix_layout: the one owner of a mixtures folder's names and state."""

from __future__ import annotations

import json

import pytest

from audioscope.errors import UserError
from audioscope.pipelines.mix_layout import MixLayout, is_mix_folder, pairs_csv_path, shard_name


def test_names_come_from_one_template():
    assert shard_name("train/unsupervised", "unsupervised", 3, 12) == "train/unsupervised/unsupervised-00003-of-00012.tfrecord"
    assert pairs_csv_path("validation", "onscreen_mom") == "eval/validation/onscreen_mom/validation_onscreen_mom_pairs.csv"
    layout = MixLayout("gs://bucket/mix/")
    assert layout.root == "gs://bucket/mix" and layout.path("train/a/x.tfrecord") == "gs://bucket/mix/train/a/x.tfrecord"
    assert layout.failed("train/a/x.tfrecord").endswith("failed/train__a__x.tfrecord.json")


def test_finished_only_with_summary_and_readers_refuse_damage(tmp_path):
    layout = MixLayout(str(tmp_path))
    (tmp_path / "train" / "r").mkdir(parents=True)
    (tmp_path / "train" / "r" / "r-00000-of-00001.tfrecord").write_bytes(b"x" * 7)
    (tmp_path / "train" / "r" / ".r-00000-of-00001.tfrecord.abc.tmp").write_bytes(b"partial")
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "work-00000-of-00001.jsonl").write_text("{}\n")
    assert not layout.is_finished() and not is_mix_folder(str(tmp_path))
    with pytest.raises(UserError, match="not a finished mixtures folder"):
        layout.read_examples()
    assert layout.existing_shards() == {"train/r/r-00000-of-00001.tfrecord": 7}
    (tmp_path / "summary.json").write_text("{not json")
    assert layout.is_finished() and is_mix_folder(str(tmp_path))
    with pytest.raises(UserError, match="summary.json is not valid JSON"):
        layout.read_summary()
    (tmp_path / "summary.json").write_text(json.dumps({"shards": [{"path": "train/r/r-00000-of-00001.tfrecord", "examples": 3}]}))
    assert layout.shard_list() == {"train/r/r-00000-of-00001.tfrecord": 3}
    assert set(layout.output_files()) == {"summary.json", "train/r/r-00000-of-00001.tfrecord"}  # no work/, no temp
    (tmp_path / "examples.parquet").write_text("not parquet")
    with pytest.raises(UserError, match="examples.parquet cannot be read"):
        layout.read_examples()


@pytest.mark.parametrize("content", ["[1, 2]", "{broken", "\udcff"])
def test_a_damaged_pin_is_one_clear_error(tmp_path, content):
    (tmp_path / "mix.json").write_bytes(content.encode("utf-8", "surrogateescape"))
    with pytest.raises(UserError, match="mix.json is damaged"):
        MixLayout(str(tmp_path)).read_pin()
    assert MixLayout(str(tmp_path / "new")).read_pin() is None


def test_a_pin_hashed_with_source_paths_is_matched_by_that_hash(tmp_path):
    # mix.json written before plans were hashed without the clips' source paths: the folder
    # resumes when the plan hashed that older way matches, and the pin is written the new way.
    from audioscope.pipelines.mix import PLAN_DIGEST, pin_plan

    layout = MixLayout(str(tmp_path))
    old = {"format_version": 1, "plan_sha256": "with-paths", "config": {"seed": 0}, "inputs": {"store": "/a"}}
    (tmp_path / "mix.json").write_text(json.dumps(old))
    asked = []

    def with_paths() -> str:
        asked.append(1)
        return "with-paths"

    pin_plan(layout, "without-paths", {"seed": 0}, {"store": "/b"}, (), with_paths)
    pin = json.loads((tmp_path / "mix.json").read_text())
    assert asked == [1]
    assert (pin["plan_sha256"], pin["plan_digest"], pin["inputs"]) == ("without-paths", PLAN_DIGEST, {"store": "/b"})
    pin_plan(layout, "without-paths", {"seed": 0}, {"store": "/b"}, (), with_paths)
    assert asked == [1]  # a pin of this version is compared with the new hash alone
    with pytest.raises(UserError, match="another plan"):
        pin_plan(layout, "another", {"seed": 0}, {"store": "/b"}, (), with_paths)
