"""Launchers in bounded memory: filter, annotate sample, the score launcher and render's source
check stream the clip index (issue 23, item 2) and never gather it into ``ClipStore.index``.

The store here has several index shards (as ingest writes them) and the streams are cut into
small batches, so that every "carry over between batches" path runs; each streamed result is
compared with the in-memory pieces the steps used before (``join_index``/``build_df``,
``candidates``/``draw_pools``, the index grouped per video).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audioscope import cli, storage
from audioscope.annotation import pools as pools_mod
from audioscope.clipstore.format import Layout, StoreParams, index_shard_of, init_store
from audioscope.clipstore.reader import ClipStore
from audioscope.curation import filter as filter_mod
from audioscope.schemas.tables import CLIP_INDEX, POOLS, validate
from tests.curation.helpers import index_rows, make_corpus, write_scores

N_SHARDS = 3


def make_sharded_store(root: Path, index: pd.DataFrame, n_shards: int = N_SHARDS) -> str:
    """A metadata-only clip store whose index is split into shards by video, as ingest splits it."""
    layout = Layout(str(root))
    init_store(layout, StoreParams())
    shard = index["video_id"].map(lambda v: index_shard_of(v, n_shards))
    names = []
    for i in range(n_shards):
        part = index[shard == i].sort_values(["video_id", "start"], kind="stable")
        table = validate(pa.Table.from_pandas(part, schema=CLIP_INDEX, preserve_index=False), CLIP_INDEX)
        buf = io.BytesIO()
        pq.write_table(table, buf)
        path = layout.index_shard(i, n_shards)
        storage.atomic_write(path, buf.getvalue())
        names.append(path.rsplit("/", 1)[-1])
    summary = {"index_files": names, "clips": len(index), "videos": int(index["video_id"].nunique())}
    storage.atomic_write(layout.summary_json, json.dumps(summary))
    return str(root)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bounded")
    rng = np.random.default_rng(7)
    counts = {f"v{i:03d}": int(rng.integers(1, 15)) for i in range(60)}
    index = index_rows(counts, video_dir=root / "corpus" / "videos", split={"v003": "test", "v010": "validation"})
    counts["v003"] = 6
    index = index_rows(counts, video_dir=root / "corpus" / "videos", split={"v003": "test", "v010": "validation"})
    index.loc[index.index[index["video_id"] == "v003"][-1], "split"] = "train"  # a video whose rows disagree
    make_corpus(root / "corpus", {v: range(0, n, 2) for v, n in counts.items()}, {v: n + 4 for v, n in counts.items()})
    store = make_sharded_store(root / "store", index)
    # rounded probabilities: ties within and between videos exercise every tie rule
    probability = np.round(rng.uniform(0, 1, len(index)), 1)
    order = rng.permutation(len(index))  # scores in another order than the index
    scores = write_scores(root / "scores", index.iloc[order].reset_index(drop=True), probability[order])
    return root, index, store, scores


@pytest.fixture
def no_whole_index(monkeypatch):
    """``ClipStore.index`` raises: a launcher that gathers the whole index fails the test."""

    def refuse(self):
        raise AssertionError("a launcher read ClipStore.index (the whole index in memory)")

    monkeypatch.setattr(ClipStore, "index", property(refuse))
    monkeypatch.setattr(filter_mod, "BATCH_ROWS", 7)


SELECTIONS = [
    filter_mod.Selection(),
    filter_mod.Selection(threshold=0.5, max_clips_per_video=2),
    filter_mod.Selection(threshold=None, top_k_videos=9),
    filter_mod.Selection(threshold=None, top_k_videos=6, max_clips_per_video=3),
]


@pytest.mark.parametrize("selection", SELECTIONS, ids=lambda s: s.describe())
def test_filter_streams_and_gives_the_in_memory_df(inputs, tmp_path, no_whole_index, selection):
    root, index, store, scores = inputs
    config = filter_mod.FilterConfig(
        scores=scores, store=store, out=str(tmp_path / "df"), selection=selection,
        truth=str(root / "corpus" / "truth.parquet"),
    )  # fmt: skip
    got = filter_mod.filter(config)
    # the same inputs through the in-memory pieces (the whole index as one frame)
    whole, _ = filter_mod.load_scores(scores, columns=("clip_id", "probability", "model_id"))
    scored = filter_mod.join_index(whole, index, store, columns=filter_mod.KEY_COLUMNS)
    published, conflicts = filter_mod.published_splits(index)
    want = filter_mod.build_df(scored, selection, filter_mod.SplitSettings(), published, index=index)
    assert filter_mod.df_table_bytes(got.df) == filter_mod.df_table_bytes(want)
    assert len(want) > 0
    report = got.report
    assert report["store"] == {"clips": len(index), "videos": index["video_id"].nunique(), "clips_not_scored": 0}
    assert report["scored"] == {"clips": len(index), "videos": index["video_id"].nunique()}
    assert any("different published splits (e.g. " + conflicts[0] in w for w in report["warnings"])
    assert report["truth_metrics"] is not None and report["truth_metrics"]["clips_without_truth"] == 0
    labels = filter_mod.clip_labels(scored, filter_mod.load_truth(str(root / "corpus" / "truth.parquet")))
    p = scored["probability"].to_numpy(np.float64)
    assert report["truth_metrics"] == filter_mod.truth_metrics(p, scored["clip_id"].isin(want["clip_id"]).to_numpy(), labels)
    # the store streamed, and an index given as a frame, give the same files
    frame_out = filter_mod.filter(filter_mod.FilterConfig(**{**config.__dict__, "out": str(tmp_path / "df2")}), index=index)
    assert frame_out.report == report
    for name in ("df.parquet", "report.md", "report.json"):
        assert (tmp_path / "df" / name).read_bytes() == (tmp_path / "df2" / name).read_bytes()


def test_filter_cli_refuses_scores_of_another_store_without_the_whole_index(inputs, tmp_path, no_whole_index, capsys):
    root, index, store, _ = inputs
    other = index_rows({"zz9": 3})
    scores = write_scores(tmp_path / "scores", pd.concat([index.head(5), other]), [0.9] * 8)
    assert cli.main(["filter", "--scores", scores, "--store", store, "--out", str(tmp_path / "df")]) == 2
    err = capsys.readouterr().err
    assert "3 of 8 scored clips (e.g. 'zz9-" in err and "different store" in err
    assert not (tmp_path / "df" / "report.json").exists()


@pytest.mark.parametrize("sizes", [pools_mod.PoolSizes(40, 20, 10), pools_mod.PoolSizes(5, 300, 7, 30)])
def test_sample_streams_and_draws_the_in_memory_pools(inputs, tmp_path, no_whole_index, sizes):
    root, index, store, scores = inputs
    df_dir = tmp_path / "df"
    assert cli.main(["filter", "--scores", scores, "--store", store, "--out", str(df_dir), "--threshold", "0.5"]) == 0
    summary = pools_mod.sample(store, str(df_dir), str(tmp_path / "ann"), sizes, seed=3)
    got = pools_mod.read_pools(str(tmp_path / "ann"))
    df = pools_mod.load_df(str(df_dir))
    ratios, split_seed = pools_mod.df_split_settings(str(df_dir))
    whole = pools_mod.candidates(index, df, ratios, split_seed)
    want = pools_mod.draw_pools(whole, sizes, seed=3)
    assert pools_mod.pools_table_bytes(got) == pools_mod.pools_table_bytes(want)
    assert {p: summary["pools"][p]["candidates"] for p in POOLS} == {p: len(whole[p]) for p in POOLS}
    assert summary["pools"]["unfiltered_train"]["drawn"] == min(sizes.unfiltered_train, len(whole["unfiltered_train"]))

    def small_batches(cols):  # the index in batches of 5 rows
        frame = index[[c for c in cols if c in index.columns]]
        return (frame.iloc[i : i + 5] for i in range(0, len(frame), 5))

    cut, counts = pools_mod.stream_candidates(small_batches, list(index.columns), df, ratios, split_seed, sizes, 3)
    assert sum(len(cut[p]) for p in POOLS) < sum(len(whole[p]) for p in POOLS)  # only what can be drawn is kept
    assert counts == {p: len(whole[p]) for p in POOLS}
    assert pools_mod.pools_table_bytes(pools_mod.draw_pools(cut, sizes, seed=3)) == pools_mod.pools_table_bytes(want)


def test_score_launcher_builds_its_work_from_the_streamed_index(inputs, no_whole_index):
    from audioscope.pipelines.score import read_index_clips, todo_work_lines, work_line

    _, index, store, _ = inputs
    cs = ClipStore.open(store)
    counts, invalid, n_index = read_index_clips(cs)
    assert (n_index, invalid) == (len(index), {})
    assert counts == index.groupby("video_id").size().to_dict()
    todo = {"v001", "v017", "v042"}
    lines = list(todo_work_lines(cs, todo))
    want = [
        work_line(v, [(c, s, e) for c, s, e in index.loc[index["video_id"] == v, ["clip_id", "start", "end"]].itertuples(index=False)])
        for v in sorted(todo)
    ]  # fmt: skip
    assert lines == want


def test_render_checks_sources_against_the_streamed_index(inputs, tmp_path, no_whole_index):
    from audioscope.pipelines.render import source_policy
    from audioscope.schemas.annotations import AnnotationLayout

    _, index, store, _ = inputs
    ann = tmp_path / "ann"
    ann.mkdir()
    Path(AnnotationLayout(str(ann)).pools_json).write_text(json.dumps({"store": store}))
    policy = source_policy(str(ann), None, {"v002", "v050", "nope"})
    first = index.drop_duplicates("video_id").set_index("video_id")["source_uri"]
    assert policy.recorded == {"v002": first["v002"], "v050": first["v050"]}
