"""The mix plan without media: recipes, interleaving, pairing rules, pair lists, the catalog."""

from __future__ import annotations

import itertools
from collections import Counter

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audioscope.pipelines import mix_catalog, mix_pairs, mix_recipes
from audioscope.pipelines import mix_plan as mp
from audioscope.pipelines.mix_catalog import ClipRef
from audioscope.pipelines.mix_plan import Pools
from audioscope.schemas.records import TRAIN_TYPES
from audioscope.schemas.tables import LABEL_OFFSCREEN_ONLY as OFF
from audioscope.schemas.tables import LABEL_ONSCREEN_ONLY as ON

from ..curation.helpers import index_rows


def clips(video: str, n: int, label: str | None = None) -> list[ClipRef]:
    return [
        ClipRef(clip_id=f"{video}-{k * 1000:07d}", video_id=video, start=float(k), end=float(k + 5),
                path=f"/videos/{video}.mp4", licence_name="CC BY 2.0", label=label, score=0.9)
        for k in range(n)
    ]  # fmt: skip


def pools() -> Pools:
    df = [c for v in ("a", "b", "c", "d", "e") for c in clips(v, 6)]
    return Pools(
        df_train=df,
        labeled={
            ("train", ON): clips("on1", 3, ON) + clips("on2", 2, ON), ("train", OFF): clips("off1", 4, OFF),
            ("validation", ON): clips("von", 3, ON), ("validation", OFF): clips("voff1", 2, OFF) + clips("voff2", 3, OFF),
        },
    )  # fmt: skip


def within_rounding(types: list[str], proportions: dict[str, float]) -> bool:
    counts = Counter(types)
    return all(abs(counts.get(t, 0) - len(types) * proportions.get(t, 0)) < 1 for t in TRAIN_TYPES)


# --------------------------------------------------------------------------- recipes and interleaving


def test_recipes_by_name_and_with_proportions():
    assert mix_recipes.parse_recipe("unsupervised").proportions == {"NOn": 1.0}
    assert mix_recipes.parse_recipe("unsupervised-soff25").proportions == {"NOn": 0.75, "SOff": 0.25}
    r = mix_recipes.parse_recipe("semi-supervised:non=0.4,SOff=0.2,LOn=0.2,LOff=0.2")
    assert r.name == "semi-supervised" and r.to_json() == {"NOn": 0.4, "SOff": 0.2, "LOn": 0.2, "LOff": 0.2}
    assert mix_recipes.parse_recipe("mine:NOn=0.5,SOff=0.5").name == "mine"


@pytest.mark.parametrize(
    "text,message",
    [("nope", "unknown recipe"), ("x:NOn=0.5", "sum to 1"), ("x:Foo=1", "TYPE=PROPORTION"),
     ("x:NOn=one", "not a number"), ("Bad Name:NOn=1", "recipe name")],
)  # fmt: skip
def test_bad_recipes_say_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        mix_recipes.parse_recipe(text)


@pytest.mark.parametrize("name", list(mix_recipes.RECIPES))
def test_every_prefix_of_the_schedule_has_the_recipe_proportions_within_one(name):
    props = mix_recipes.RECIPES[name]
    schedule = mix_recipes.type_schedule(1000, props)
    assert all(within_rounding(schedule[:k], props) for k in range(1, 1001))
    # interleaved, not sorted: no long runs of one type once a recipe mixes types
    if len(props) > 1:
        longest = max(len(list(g)) for _, g in itertools.groupby(schedule))
        assert longest <= 3


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 20), min_size=1, max_size=4), st.integers(1, 300))
def test_schedule_prefixes_hold_for_any_proportions(weights, n):
    total = sum(weights)
    props = {t: w / total for t, w in zip(TRAIN_TYPES, weights)}
    schedule = mix_recipes.type_schedule(n, props)
    assert len(schedule) == n
    assert all(within_rounding(schedule[:k], props) for k in range(1, n + 1))


def test_shard_sizes_follow_the_byte_target():
    assert mix_recipes.shard_sizes(10, 4) == [4, 3, 3]
    assert mix_recipes.shard_sizes(0, 4) == []
    per = mix_recipes.examples_per_shard(256 * 2**20)
    assert 950 < per < 1100  # ~266 kB per example (compressed media, records schema 2)
    assert mix_recipes.examples_per_shard(1) == 1


# --------------------------------------------------------------------------- training plan


def plan(recipe: str = "semi-supervised", total: int = 120, seed: int = 0, per_shard: int = 50) -> list[mp.Shard]:
    return mp.plan_recipe(mix_recipes.parse_recipe(recipe), pools(), total, seed, per_shard)


def test_training_examples_follow_the_spec():
    shards = plan()
    assert [s.path for s in shards] == [
        f"train/semi-supervised/semi-supervised-{i:05d}-of-00003.tfrecord" for i in range(3)
    ]
    examples = [e for s in shards for e in s.examples]
    assert len(examples) == 120
    for e in examples:
        parts = [e.frames.video_id, e.first.video_id]
        if e.second is not None:
            assert e.second.video_id not in parts  # a different video than every other part
        if e.type == "SOff":
            assert e.first.video_id != e.frames.video_id and e.is_mom
        else:
            assert e.frames == e.first
        if e.type == "NOn":
            assert e.is_mom
        if e.type == "LOn":
            assert e.first.label == ON and e.first.video_id in ("on1", "on2")
        if e.type == "LOff":
            assert e.first.label == OFF and e.first.video_id == "off1"
    for t in ("LOn", "LOff"):
        of_type = [e.is_mom for e in examples if e.type == t]
        assert of_type[::2] == [True] * len(of_type[::2]) and not any(of_type[1::2])  # half MoM, half single


def test_each_shard_starts_with_the_recipe_proportions():
    props = mix_recipes.RECIPES["semi-supervised"]
    for shard in plan(total=700, per_shard=300):
        types = [e.type for e in shard.examples]
        assert within_rounding(types[:256], props)


def test_first_clips_are_used_evenly_before_any_repeats():
    shards = plan("unsupervised", total=30)
    firsts = Counter(e.first.clip_id for s in shards for e in s.examples)
    assert len(firsts) == 30 and set(firsts.values()) == {1}  # 30 Df clips: each once


def test_the_plan_is_a_function_of_the_seed():
    assert [s.work_line() for s in plan(seed=1)] == [s.work_line() for s in plan(seed=1)]
    assert [s.work_line() for s in plan(seed=1)] != [s.work_line() for s in plan(seed=2)]


def test_recipes_that_the_pools_cannot_give_are_refused():
    tiny = Pools(df_train=clips("a", 3) + clips("b", 3))
    with pytest.raises(mp.PlanError, match="at least 3 videos"):
        mp.plan_recipe(mix_recipes.parse_recipe("unsupervised-soff25"), tiny, 10, 0, 5)
    with pytest.raises(mp.PlanError, match="onscreen_only train clips"):
        mp.plan_recipe(mix_recipes.parse_recipe("x:NOn=0.5,LOn=0.5"), tiny, 10, 0, 5)
    assert mp.plan_recipe(mix_recipes.parse_recipe("unsupervised"), tiny, 10, 0, 5)


# --------------------------------------------------------------------------- evaluation plan


def test_evaluation_sets_pair_each_clip_with_partners_from_other_videos():
    p = pools()
    single = mp.plan_eval_set(p, "validation", "onscreen_single", 0, 5)
    assert [e.first.clip_id for e in single] == [c.clip_id for c in p.label_pool("validation", ON)]
    assert not any(e.is_mom for e in single)
    on_mom = mp.plan_eval_set(p, "validation", "onscreen_mom", 0, 2)
    assert len(on_mom) == 3 * 2
    assert all(e.second.label == OFF and e.first.label == ON for e in on_mom)
    off_mom = mp.plan_eval_set(p, "validation", "offscreen_mom", 0, 5)
    for e in off_mom:
        assert e.second.video_id != e.first.video_id and e.second.label == OFF
    # voff1's 2 clips get voff2's 3 clips; voff2's 3 clips get voff1's 2: fewer partners than asked
    assert len(off_mom) == 2 * 3 + 3 * 2
    pairs = [(e.first.clip_id, e.second.clip_id) for e in off_mom]
    assert len(set(pairs)) == len(pairs)
    assert mp.plan_eval_set(p, "test", "onscreen_mom", 0, 5) == []


# --------------------------------------------------------------------------- pair lists


@pytest.mark.parametrize(
    "name,kind",
    [
        ("validation_onscreen_mom_pairs.csv", ("validation", "onscreen_mom")),
        ("eval/test/offscreen_single/test_offscreen_single_pairs.csv", ("test", "offscreen_single")),
        ("filtered_validate_onscreen_unanimous_plus_offscreen_unanimous_mom_clips.csv", ("validation", "onscreen_mom")),
        ("filtered_test_offscreen_unanimous_plus_offscreen_unanimous_mom_clips.csv", ("test", "offscreen_mom")),
        ("filtered_test_onscreen_unanimous_clips.csv", ("test", "onscreen_single")),
        ("filtered_validate_offscreen_unanimous_clips.csv", ("validation", "offscreen_single")),
        ("filtered_train_onscreen_unanimous_clips.csv", None),
        ("filtered_test_clips.csv", None),
    ],
)
def test_pair_list_names_say_split_and_set(name, kind):
    assert mix_pairs.pair_list_kind(name) == kind


def test_pair_csv_is_the_published_six_column_format_and_reads_back():
    p = pools()
    examples = mp.plan_eval_set(p, "validation", "onscreen_mom", 0, 1) + mp.plan_eval_set(p, "validation", "onscreen_single", 0, 1)
    text = mix_pairs.pairs_csv(examples)
    lines = text.splitlines()
    first = lines[0].split(",")
    assert first[:3] == ["/videos/von.mp4", "0.0", "5.0"] and first[3].startswith("/videos/voff") and len(first) == 6
    assert lines[-1] == "/videos/von.mp4,2.0,7.0,,,"
    rows, problems = mix_pairs.parse_pairs(text, "x.csv")
    assert problems == [] and len(rows) == len(examples)
    assert rows[-1] == ("/videos/von.mp4", 2.0, 7.0, None, None, None)


def test_bad_pair_rows_are_reported_and_the_rest_kept():
    text = "path1,start1,end1,path2,start2,end2\na.mp4,0,5,b.mp4,1,6\na.mp4,zero,5,b.mp4,1,6\na.mp4,0,5,b.mp4\n\nc.mp4,2,7\n"
    rows, problems = mix_pairs.parse_pairs(text, "l.csv")
    assert rows == [("a.mp4", 0.0, 5.0, "b.mp4", 1.0, 6.0), ("c.mp4", 2.0, 7.0, None, None, None)]
    assert [p.split(":")[1] for p in problems] == ["3", "4"]


def test_published_paths_keep_the_multimedia_commons_part():
    assert mix_pairs.published_path("/m/data/videos/mp4/827/f6b/827f6b5.mp4") == "data/videos/mp4/827/f6b/827f6b5.mp4"
    assert mix_pairs.published_path("gs://b/x.mp4") == "gs://b/x.mp4"


# --------------------------------------------------------------------------- catalog


def catalog(**kw) -> mix_catalog.Catalog:
    index = pd.concat([
        index_rows({"v1": 3}, "/m/data/videos/mp4/aaa/bbb"),
        index_rows({"v2": 2}, "/m/videos", licence=("CC BY-ND 2.0", "https://creativecommons.org/licenses/by-nd/2.0/")),
        index_rows({"v3": 2}, "/m/videos"),
    ])  # fmt: skip
    return mix_catalog.Catalog(index, {"v1", "v2"}, **kw)


def test_catalog_leaves_out_clips_it_cannot_use_with_reasons():
    cat = catalog(exclude_licences=("noderivs", "BY-ND"))
    refs = cat.refs(["v1-0000000", "v2-0000000", "v3-0000000", "zz-0000000", "v1-0001000"], "df_train")
    assert [r.clip_id for r in refs] == ["v1-0000000", "v1-0001000"]
    assert cat.left_out == {"df_train": {"excluded_licence": 1, "no_media": 1, "not_in_store": 1}}
    assert refs[0].licence_name == "CC BY 2.0" and refs[0].path == "/m/data/videos/mp4/aaa/bbb/v1.mp4"


def test_catalog_finds_pair_list_clips_by_path_and_start():
    cat = catalog()
    assert cat.find("data/videos/mp4/aaa/bbb/v1.mp4", 1.0).clip_id == "v1-0001000"  # published relative path
    assert cat.find("/m/videos/v2.mp4", 0.0).clip_id == "v2-0000000"  # as the store names it
    assert cat.find("elsewhere/v1.mp4", 2.0).clip_id == "v1-0002000"  # by video id
    assert cat.find("/m/videos/v2.mp4", 7.0) == "not_in_store"
    assert cat.find("/m/videos/v3.mp4", 0.0) == "no_media"


def test_licence_patterns_are_case_insensitive_substrings():
    assert mix_catalog.licence_excluded("Attribution-NoDerivs License", None, ["noderivs"])
    assert mix_catalog.licence_excluded(None, "https://creativecommons.org/licenses/by-nd/2.0/", ["/BY-ND/"])
    assert not mix_catalog.licence_excluded("CC BY 2.0", "https://creativecommons.org/licenses/by/2.0/", ["NoDerivs"])


def test_a_pair_list_that_is_not_text_is_a_problem_not_a_crash(tmp_path):
    (tmp_path / "validation_onscreen_single_pairs.csv").write_bytes(b"\xff\xfe\x00garbage\x00")
    (tmp_path / "test_offscreen_single_pairs.csv").write_text("v.mp4,1.0,6.0\n")
    lists, problems = mix_pairs.read_pairs_dir(str(tmp_path))
    assert [(pl.split, pl.name, len(pl.rows)) for pl in lists] == [("test", "offscreen_single", 1)]
    assert len(problems) == 1 and "validation_onscreen_single_pairs.csv: not a text CSV" in problems[0]


def test_a_catalog_with_keep_holds_only_those_clips_and_gives_the_same_refs():
    wanted = ["v1-0000000", "v1-0002000", "v3-0000000"]
    small, full = catalog(keep=wanted), catalog()
    assert sorted(small.index.index) == sorted(wanted) and len(full.index) == 7
    assert small.refs(wanted, "df_train") == full.refs(wanted, "df_train")
    assert small.left_out == full.left_out == {"df_train": {"no_media": 1}}
