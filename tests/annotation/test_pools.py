"""Pools: deterministic, no clip twice, sizes, splits of unfiltered clips (real files)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from audioscope import cli
from audioscope.annotation.pools import PoolSizes, candidates, clip_rank, draw_pools, read_pools
from audioscope.schemas.tables import POOLS

from ..curation.helpers import index_rows, make_store, rng_probabilities, write_scores


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pools")
    index = index_rows({f"v{i:02d}": 12 for i in range(30)}, split={"v00": "test"})
    store = make_store(root / "store", index)
    scores = write_scores(root / "scores", index, rng_probabilities(len(index), 3))
    assert cli.main(["filter", "--scores", scores, "--store", store, "--out", str(root / "df"), "--threshold", "0.5"]) == 0
    return root, index


def _sample(root, out, *sizes: str, seed: str = "0"):
    assert cli.main([
        "annotate", "sample", "--store", str(root / "store"), "--df", str(root / "df"), "--annotations", str(out),
        "--seed", seed, *sizes,
    ]) == 0  # fmt: skip
    return read_pools(str(out))


def test_pools_are_deterministic_disjoint_and_sized(inputs, tmp_path):
    root, index = inputs
    sizes = ["--unfiltered-train", "40", "--filtered-train", "30", "--filtered-eval", "20"]
    a = _sample(root, tmp_path / "a", *sizes)
    b = _sample(root, tmp_path / "b", *sizes)
    assert (tmp_path / "a" / "pools.parquet").read_bytes() == (tmp_path / "b" / "pools.parquet").read_bytes()
    assert a["clip_id"].is_unique
    assert a.groupby("pool").size().to_dict() == {"unfiltered_train": 40, "filtered_train": 30, "filtered_eval": 20}
    df = pd.read_parquet(root / "df" / "df.parquet").set_index("clip_id")
    filtered = a[a["pool"] != "unfiltered_train"]
    assert filtered["clip_id"].isin(df.index).all()  # filtered pools come from Df
    assert (df.loc[a.loc[a["pool"] == "filtered_train", "clip_id"], "split"] == "train").all()
    assert set(df.loc[a.loc[a["pool"] == "filtered_eval", "clip_id"], "split"]) <= {"validation", "test"}
    assert (a.loc[a["pool"] == "unfiltered_train", "split"] == "train").all()
    assert "v00" not in set(a.loc[a["pool"] == "unfiltered_train", "video_id"])  # published test split kept
    assert json.loads((tmp_path / "a" / "pools.json").read_text())["pools"]["filtered_eval"]["drawn"] == 20


def test_a_bigger_pool_only_adds_clips_and_another_seed_changes_them(inputs, tmp_path):
    root, _ = inputs
    small = _sample(root, tmp_path / "s", "--unfiltered-train", "10", "--filtered-train", "0", "--filtered-eval", "0")
    big = _sample(root, tmp_path / "b", "--unfiltered-train", "25", "--filtered-train", "0", "--filtered-eval", "0")
    other = _sample(root, tmp_path / "o", "--unfiltered-train", "10", "--filtered-train", "0", "--filtered-eval", "0", seed="1")
    assert set(small["clip_id"]) < set(big["clip_id"])
    assert set(other["clip_id"]) != set(small["clip_id"])


def test_no_clip_twice_when_pools_compete_for_it():
    clips = pd.DataFrame({
        "clip_id": [f"c{i}" for i in range(10)], "video_id": "v", "start": [float(i) for i in range(10)],
        "end": [float(i + 5) for i in range(10)], "split": "train", "source_uri": "/v.mp4",
        "licence_name": None, "licence_url": None,
    })  # fmt: skip
    pools = draw_pools({p: clips for p in POOLS}, PoolSizes(4, 4, 4), seed=0)
    assert pools["clip_id"].is_unique and len(pools) == 10  # the last pool gets only what is left
    first = sorted(clips["clip_id"], key=lambda c: clip_rank(c, 0))[:4]
    assert sorted(pools.loc[pools["pool"] == POOLS[0], "clip_id"]) == sorted(first)


def test_unfiltered_split_falls_back_to_the_hash_with_df_settings():
    index = pd.DataFrame({"clip_id": ["a-0", "b-0", "c-0"], "video_id": ["a", "b", "c"], "start": 0.0, "end": 5.0,
                          "split": [None, "validate", None], "source_uri": "/x.mp4"})  # fmt: skip
    df = pd.DataFrame({"clip_id": ["a-0"], "video_id": ["a"], "start": 0.0, "end": 5.0, "split": ["test"],
                       "source_uri": "/x.mp4"})  # fmt: skip
    got = candidates(index, df, (1.0, 0.0, 0.0), 0)
    # a: Df's split (test); b: published (validation); c: the hash with ratios 1,0,0 -> train
    assert got["unfiltered_train"]["clip_id"].tolist() == ["c-0"]


def test_the_unfiltered_eval_pool_comes_last_and_changes_no_other_pool(inputs, tmp_path):
    root, _ = inputs
    sizes = ["--unfiltered-train", "40", "--filtered-train", "30", "--filtered-eval", "20"]
    three = _sample(root, tmp_path / "three", *sizes)
    four = _sample(root, tmp_path / "four", *sizes, "--unfiltered-eval", "25")
    assert "unfiltered_eval" not in set(three["pool"])  # the recipe's three pools by default
    pd.testing.assert_frame_equal(
        four[four["pool"] != "unfiltered_eval"].reset_index(drop=True), three.reset_index(drop=True)
    )
    extra = four[four["pool"] == "unfiltered_eval"]
    assert len(extra) == 25 and four["clip_id"].is_unique
    assert set(extra["split"]) <= {"validation", "test"}
    assert not extra["clip_id"].isin(three["clip_id"]).any()
