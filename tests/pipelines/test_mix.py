"""`audioscope mix` end to end: a synthetic corpus ingested with ffmpeg, Beam's DirectRunner,
real TFRecord shards checked example by example against the clip store."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audioscope import cli
from audioscope.clipstore.reader import ClipStore
from audioscope.pipelines.mix_plan import RECIPES
from audioscope.schemas import records
from audioscope.schemas.tables import LABEL_OFFSCREEN_ONLY, LABEL_ONSCREEN_ONLY

from ..curation.helpers import file_bytes
from .mixdata import MODEL_ID, choose_splits, truth_of, write_df, write_labels

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("mix")]

SET_LABEL = {"onscreen_single": LABEL_ONSCREEN_ONLY, "offscreen_single": LABEL_OFFSCREEN_ONLY,
             "onscreen_mom": LABEL_ONSCREEN_ONLY, "offscreen_mom": LABEL_OFFSCREEN_ONLY}  # fmt: skip


@dataclass
class Inputs:
    root: Path
    corpus: Path
    store: Path
    df: Path
    labels: Path
    clips: pd.DataFrame


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Inputs:
    root = tmp_path_factory.mktemp("mix")
    corpus, store = root / "corpus", root / "store"
    assert cli.main([
        "synth", "--out", str(corpus), "--videos", "14", "--seed", "5", "--no-broken",
        "--min-duration", "8", "--max-duration", "12", "--onscreen-rate", "0.5",
    ]) == 0  # fmt: skip
    assert cli.main(["ingest", str(corpus / "list.csv"), "--out", str(store), "--workers", "2"]) == 0
    clips = truth_of(ClipStore.open(str(store)).index)
    split = choose_splits(clips)
    return Inputs(
        root, corpus, store, write_df(root / "df", clips, split), write_labels(root / "labels.parquet", clips, split), clips
    )


def mix(inputs: Inputs, out: Path, *extra: str, labels: bool = True) -> int:
    args = ["mix", "--store", str(inputs.store), "--df", str(inputs.df), "--out", str(out), "--examples", "24",
            "--shard-bytes", "6M", "--eval-mom-partners", "2", "--poll", "0.2"]  # fmt: skip
    if labels:
        args += ["--labels", str(inputs.labels)]
    return cli.main([*args, *extra])


@pytest.fixture(scope="module")
def mixed(inputs) -> Path:
    """One run with every recipe and the evaluation sets, shared by the read-only tests."""
    out = inputs.root / "mix-a"
    assert mix(inputs, out) == 0
    return out


def summary_of(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def copy_pair_lists(mixed: Path, dest: Path) -> Path:
    """The pair CSVs a mix run wrote, copied to ``dest`` (a ``--pairs-dir`` for another run)."""
    for rel in summary_of(mixed)["pairs"]:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(mixed / rel, dest / rel)
    return dest


def shard_records(out: Path) -> dict[str, list[records.MixtureRecord]]:
    return {s["path"]: list(records.decode_shard(records.read_tfrecord(str(out / s["path"])))) for s in summary_of(out)["shards"]}


def tfrecords(out: Path) -> dict[str, bytes]:
    return {k: v for k, v in file_bytes(out).items() if k.endswith(".tfrecord")}


# --------------------------------------------------------------------------- one run


def test_summary_and_examples_describe_every_shard(mixed, capsys):
    summary = summary_of(mixed)
    assert summary["schema_versions"] == {"mixture_record": records.SCHEMA_VERSION, "examples": 1, "pairs": 1}
    assert json.loads((mixed / "mix.json").read_text())["record_schema"] == records.SCHEMA_VERSION
    assert records.SCHEMA_VERSION == 5
    assert summary["config"]["seed"] == 0 and summary["config"]["recipes"]["semi-supervised"]["LOn"] == 0.125
    assert summary["inputs"]["model_id"] == MODEL_ID and summary["inputs"]["labels"].endswith("labels.parquet")
    assert set(summary["counts"]["train"]) == set(RECIPES)
    assert summary["notes"]["skipped"] == {}
    examples = pd.read_parquet(mixed / "examples.parquet")
    on_disk = sorted(str(p.relative_to(mixed)) for p in mixed.rglob("*.tfrecord"))
    assert sorted(s["path"] for s in summary["shards"]) == on_disk
    for s in summary["shards"]:
        assert (mixed / s["path"]).stat().st_size == s["bytes"]
        assert (examples["shard"] == s["path"]).sum() == s["examples"]
    for name, counts in summary["counts"]["train"].items():
        rows = examples[examples["subset"] == name]
        assert counts["total"] == len(rows) == 24
        assert {t: counts[t] for t in records.TRAIN_TYPES} == {t: int((rows["type"] == t).sum()) for t in records.TRAIN_TYPES}
        assert counts["mom"] == int(rows["is_mom"].sum())
    for split, sets in summary["counts"]["eval"].items():
        for name, n in sets.items():
            assert n == int(((examples["split"] == split) & (examples["subset"] == name)).sum())
    assert summary["counts"]["eval"]["validation"]["onscreen_mom"] > 0
    assert summary["counts"]["eval"]["validation"]["offscreen_mom"] > 0
    assert not (mixed / "work").exists() or not list((mixed / "work").iterdir())


def test_every_example_is_made_of_the_clips_it_names(mixed, inputs):
    store = ClipStore.open(str(inputs.store))
    label_of = dict(zip(pd.read_parquet(inputs.labels)["clip_id"], pd.read_parquet(inputs.labels)["label"]))
    examples = pd.read_parquet(mixed / "examples.parquet").set_index(["shard", "index"])
    seen = 0
    for path, recs in shard_records(mixed).items():
        for i, rec in enumerate(recs):
            row = examples.loc[(path, i)]
            assert (rec.type, rec.clip_id1, rec.clip_id2, rec.frames_clip_id) == (
                row["type"], row["clip_id1"], "" if pd.isna(row["clip_id2"]) else row["clip_id2"], row["frames_clip_id"])
            first = store.clip(rec.clip_id1)
            shown = store.clip(rec.frames_clip_id)
            assert rec.audio1.shape == (80_000,) and rec.audio1.dtype == np.int16
            np.testing.assert_array_equal(rec.audio1, (first.audio * 32768).astype(np.int16))
            np.testing.assert_array_equal(rec.frames, shown.frames)
            if rec.type == "SOff":
                assert shown.video_id != first.video_id and rec.label1 == "" and np.isnan(rec.score1)
            else:
                assert rec.frames_clip_id == rec.clip_id1  # frames belong to the first-mixture clip
            if rec.is_mom:
                second = store.clip(rec.clip_id2)
                assert rec.audio2.shape == (80_000,)
                np.testing.assert_array_equal(rec.audio2, (second.audio * 32768).astype(np.int16))
                assert second.video_id not in (first.video_id, shown.video_id)
                np.testing.assert_array_equal(rec.mixture(), first.audio + second.audio)
            assert rec.licence_name1 == "CC0 1.0" and rec.frames_licence_name == "CC0 1.0"
            assert rec.licence_name2 == ("CC0 1.0" if rec.is_mom else "")
            if rec.type in ("LOn", "LOff"):
                assert rec.label1 == {"LOn": LABEL_ONSCREEN_ONLY, "LOff": LABEL_OFFSCREEN_ONLY}[rec.type]
                assert rec.votes_onscreen1 == ((1, 1, 1) if rec.type == "LOn" else (0, 0, 0))
            if rec.type in SET_LABEL:
                assert rec.label1 == SET_LABEL[rec.type] == label_of[rec.clip_id1]
                assert rec.is_mom == rec.type.endswith("_mom")
                if rec.is_mom:
                    assert label_of[rec.clip_id2] == LABEL_OFFSCREEN_ONLY
            seen += 1
    assert seen == len(examples)


def test_types_of_the_first_256_examples_of_every_shard_match_the_recipe(mixed):
    summary = summary_of(mixed)
    for path, recs in shard_records(mixed).items():
        if not path.startswith("train/"):
            continue
        proportions = summary["config"]["recipes"][path.split("/")[1]]
        head = [r.type for r in recs[:256]]
        counts = Counter(head)
        for t, p in proportions.items():
            assert abs(counts[t] - p * len(head)) < 1, (path, counts, proportions)
        lon = [r.is_mom for r in recs if r.type in ("LOn", "LOff")]
        assert abs(sum(lon) - len(lon) / 2) <= 1  # half MoM, half single


def test_pair_lists_name_the_examples_of_each_set(mixed):
    examples = pd.read_parquet(mixed / "examples.parquet")
    summary = summary_of(mixed)
    assert summary["pairs"]
    for rel in summary["pairs"]:
        split, name = rel.split("/")[1:3]
        lines = (mixed / rel).read_text().splitlines()
        rows = examples[(examples["split"] == split) & (examples["subset"] == name)].sort_values(["shard", "index"])
        assert len(lines) == len(rows)
        for line, r in zip(lines, rows.itertuples()):
            r = r._replace(path2=None if pd.isna(r.path2) else r.path2)
            fields = line.split(",")
            assert len(fields) == 6
            assert fields[:3] == [r.path1, repr(r.start1), repr(r.end1)]
            assert fields[3:] == (["", "", ""] if not r.is_mom else [r.path2, repr(r.start2), repr(r.end2)])


def test_the_loader_reads_the_shards_with_mixture_the_sum(mixed):
    from audioscope.models.data import load_dataset

    ds = load_dataset(str(mixed / "train" / "semi-supervised"), batch_size=8)
    n = 0
    for batch in ds:
        assert batch["frames"].shape[1:] == (5, 128, 128, 3) and batch["audio1"].shape[1:] == (80_000,)
        np.testing.assert_array_equal(batch["mixture"].numpy(), batch["audio1"].numpy() + batch["audio2"].numpy())
        single = ~batch["is_mom"].numpy()
        assert not batch["audio2"].numpy()[single].any()
        n += int(batch["frames"].shape[0])
    assert n == 24


# --------------------------------------------------------------------------- more runs


def test_same_seed_gives_the_same_bytes_on_another_runner(mixed, inputs):
    out = inputs.root / "mix-b"
    assert mix(inputs, out, "--", "--direct_running_mode=multi_processing", "--direct_num_workers=2") == 0
    assert file_bytes(out) == file_bytes(mixed)


def test_rerunning_resumes_and_rewrites_only_missing_shards(mixed, inputs, tmp_path, capsys):
    out = tmp_path / "mix"
    shutil.copytree(mixed, out)
    before = {p: (out / p).stat().st_mtime_ns for p in tfrecords(out)}
    assert mix(inputs, out) == 0
    assert {p: (out / p).stat().st_mtime_ns for p in tfrecords(out)} == before
    assert "0 to write" in capsys.readouterr().err
    gone = sorted(before)[1]
    (out / gone).unlink()
    (out / "summary.json").unlink()
    assert mix(inputs, out) == 0
    assert "1 to write" in capsys.readouterr().err
    assert file_bytes(out) == file_bytes(mixed)
    assert [p for p in before if p != gone and (out / p).stat().st_mtime_ns != before[p]] == []


def test_a_folder_begun_in_record_schema_3_is_finished_in_schema_3(mixed, inputs, tmp_path, capsys):
    # As a folder that an older audioscope-data (schema 3, no record_schema in mix.json) began and a
    # newer one resumes: the missing shards are written in the folder's schema, not a second one.
    out = tmp_path / "mix"
    shutil.copytree(mixed, out)
    shards = sorted(tfrecords(out))
    for rel in shards:
        recs = list(records.decode_shard(records.read_tfrecord(str(out / rel))))
        records.write_tfrecord(str(out / rel), records.encode_shard(recs, version=3))
    pin = json.loads((out / "mix.json").read_text())
    del pin["record_schema"]
    (out / "mix.json").write_text(json.dumps(pin))
    (out / shards[0]).unlink()
    (out / "summary.json").unlink()
    assert mix(inputs, out) == 0
    assert "1 to write" in capsys.readouterr().err
    versions = {rel: {r.schema_version for r in recs} for rel, recs in shard_records(out).items()}
    assert versions == {rel: {3} for rel in shards}
    assert summary_of(out)["schema_versions"]["mixture_record"] == 3
    assert json.loads((out / "mix.json").read_text())["record_schema"] == 3
    pin["record_schema"] = 2  # a schema this version reads but no longer writes
    (out / "mix.json").write_text(json.dumps(pin))
    (out / shards[0]).unlink()
    assert mix(inputs, out) == 2
    assert "record schema 2, which this version of audioscope-data reads but no longer writes" in capsys.readouterr().err
    pin["record_schema"] = "4"  # a hand-edited pin is one clear line, not a traceback
    (out / "mix.json").write_text(json.dumps(pin))
    assert mix(inputs, out) == 2
    assert "names record schema '4', not a number" in capsys.readouterr().err


def test_a_project_moved_with_its_media_resumes_and_its_outputs_name_the_new_paths(mixed, inputs, tmp_path, capsys):
    # The corpus, the store and the mixtures copied elsewhere, the list ingested again under the new
    # media root (the store's videos, moved: their sources change): the same plan, nothing rewritten,
    # and the outputs that name source paths name the new ones.
    import dataclasses

    new = dataclasses.replace(inputs, corpus=tmp_path / "corpus", store=tmp_path / "store")
    shutil.copytree(inputs.corpus, new.corpus)
    shutil.copytree(inputs.store, new.store)
    assert cli.main(["ingest", str(new.corpus / "list.csv"), "--out", str(new.store), "--workers", "2"]) == 0
    out = tmp_path / "mix"
    shutil.copytree(mixed, out)
    before = {p: (out / p).stat().st_mtime_ns for p in tfrecords(out)}
    capsys.readouterr()
    assert mix(new, out) == 0
    assert "0 to write" in capsys.readouterr().err
    assert {p: (out / p).stat().st_mtime_ns for p in tfrecords(out)} == before
    examples = pd.read_parquet(out / "examples.parquet")
    assert examples["path1"].str.startswith(str(new.corpus)).all()
    assert json.loads((out / "mix.json").read_text())["inputs"]["store"] == str(new.store)


def test_another_plan_in_the_same_folder_is_refused(mixed, inputs, capsys):
    assert mix(inputs, mixed, "--seed", "7") == 2
    err = capsys.readouterr().err
    assert "another plan (changed: config: seed 0 -> 7)" in err and "pick a new --out" in err


def test_our_pair_lists_rebuild_the_same_evaluation_shards(mixed, inputs, tmp_path):
    pairs = copy_pair_lists(mixed, tmp_path / "pairs")
    out = tmp_path / "rebuilt"
    assert mix(inputs, out, "--recipes", "unsupervised", "--pairs-dir", str(pairs)) == 0
    rebuilt = {k: v for k, v in tfrecords(out).items() if k.startswith("eval/")}
    assert rebuilt == {k: v for k, v in tfrecords(mixed).items() if k.startswith("eval/")}
    assert summary_of(out)["notes"]["pair_problems"] == []


def test_a_published_list_written_by_hand_rebuilds_exactly_its_pairs(inputs, tmp_path, capsys):
    clips = inputs.clips
    on = clips[(clips["onscreen"] & ~clips["offscreen"]).to_numpy()]
    off = clips[(clips["offscreen"] & ~clips["onscreen"]).to_numpy()]
    a, b = on.iloc[0], off[off["video_id"] != on.iloc[0]["video_id"]].iloc[-1]
    c = off.iloc[0]
    def video(r: pd.Series) -> str:  # the video file in the corpus
        return str(next((inputs.corpus / "videos").glob(f"{r['video_id']}.*")))

    pairs = tmp_path / "lists"
    pairs.mkdir()
    mom = pairs / "filtered_validate_onscreen_unanimous_plus_offscreen_unanimous_mom_clips.csv"
    mom.write_text(
        f"{video(a)},{a['start']:.1f},{a['end']:.1f},{video(b)},{b['start']:.1f},{b['end']:.1f}\n"
        f"{video(c)},{c['start']:.1f},{c['end']:.1f},{video(a)},{a['start']:.1f},{a['end']:.1f}\n"
        f"{video(a)},99.0,104.0,{video(b)},{b['start']:.1f},{b['end']:.1f}\n"
    )
    (pairs / "filtered_test_offscreen_unanimous_clips.csv").write_text(f"{video(c)},{c['start']},{c['end']}\n")
    (pairs / "filtered_train_clips.csv").write_text(f"{video(a)},0.0,5.0\n")
    out = tmp_path / "published"
    assert mix(inputs, out, "--recipes", "unsupervised", "--pairs-dir", str(pairs), labels=False) == 0
    assert "pair list problems" in capsys.readouterr().out
    ex = pd.read_parquet(out / "examples.parquet")
    got = [
        tuple(None if pd.isna(v) else v for v in row)
        for row in ex.loc[ex["split"] != "train", ["split", "subset", "path1", "start1", "end1", "path2", "start2"]].itertuples(index=False)
    ]  # examples.parquet is in shard path order: eval/test/... before eval/validation/...
    assert got == [
        ("test", "offscreen_single", video(c), c["start"], c["end"], None, None),
        ("validation", "onscreen_mom", video(a), a["start"], a["end"], video(b), b["start"]),
        ("validation", "onscreen_mom", video(c), c["start"], c["end"], video(a), a["start"]),
    ]
    notes = summary_of(out)["notes"]
    assert any("pair 3" in p and "not_in_store" in p for p in notes["pair_problems"])
    assert any("filtered_train_clips.csv" in p for p in notes["pair_problems"])


def test_without_labels_the_labeled_parts_are_skipped_with_reasons(inputs, tmp_path, capsys):
    out = tmp_path / "nolabels"
    assert mix(inputs, out, "--recipes", "unsupervised", "semi-supervised", labels=False) == 0
    summary = summary_of(out)
    assert list(summary["counts"]["train"]) == ["unsupervised"] and summary["counts"]["eval"] == {}
    assert "no --labels" in summary["notes"]["skipped"]["train/semi-supervised"]
    assert "no --labels" in summary["notes"]["skipped"]["eval"]
    assert "skipped eval" in capsys.readouterr().out
    assert summary["inputs"]["labels"] is None and not (out / "eval").exists()


def test_excluded_licences_are_never_used(inputs, tmp_path):
    out = tmp_path / "excluded"
    assert mix(inputs, out, "--exclude-licence", "PUBLICDOMAIN/zero") == 0
    summary = summary_of(out)
    assert summary["shards"] == [] and summary["config"]["exclude_licences"] == ["PUBLICDOMAIN/zero"]
    assert summary["notes"]["left_out"]["df_train"]["excluded_licence"] > 0
    assert "at least 2 videos" in summary["notes"]["skipped"]["train/unsupervised"]


def test_a_shard_that_cannot_be_written_is_recorded_and_retried(inputs, tmp_path, capsys):
    store = tmp_path / "store"
    shutil.copytree(inputs.store, store)
    broken = sorted((store / "media").rglob("*.npz"))[0]
    good = broken.read_bytes()
    broken.write_bytes(good[:100])
    out = tmp_path / "out"
    args = ["mix", "--store", str(store), "--df", str(inputs.df), "--out", str(out), "--examples", "24",
            "--shard-bytes", "6M", "--recipes", "unsupervised", "--poll", "0.2"]  # fmt: skip
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "could not be written" in err and "run the same command again" in err
    assert not (out / "summary.json").exists() and list((out / "failed").glob("*.json"))
    written = tfrecords(out)
    broken.write_bytes(good)
    assert cli.main(args) == 0
    assert not list((out / "failed").glob("*.json")) and (out / "summary.json").exists()
    assert all(tfrecords(out)[p] == b for p, b in written.items())
    assert len(tfrecords(out)) == len(summary_of(out)["shards"]) > len(written)


def test_a_full_disk_stops_the_run_instead_of_failing_every_shard(inputs, tmp_path, monkeypatch, capsys):
    import errno

    from audioscope.pipelines import mix as mix_module

    real, calls = mix_module.write_shard, []

    def filling(store, layout, shard, *a, **kw):
        calls.append(shard.path)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), layout.path(shard.path))
        return real(store, layout, shard, *a, **kw)

    monkeypatch.setattr(mix_module, "write_shard", filling)
    out = tmp_path / "out"
    args = ["mix", "--store", str(inputs.store), "--df", str(inputs.df), "--out", str(out), "--examples", "24",
            "--shard-bytes", "3M", "--recipes", "unsupervised", "--poll", "0.2", "--workers", "1"]  # fmt: skip
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith(f"audioscope mix: error: no space left on the device ({out}/")
    assert "Traceback" not in err
    assert not list(out.glob("failed/*.json")), "the disk's failure was recorded as the shards' own"
    monkeypatch.setattr(mix_module, "write_shard", real)
    assert cli.main(args) == 0
    assert sum(s["examples"] for s in summary_of(out)["shards"]) == 24


def test_user_errors_say_what_to_do(inputs, tmp_path, capsys):
    out = str(tmp_path / "x")
    assert cli.main(["mix", "--store", str(inputs.store), "--df", str(tmp_path / "none"), "--out", out]) == 2
    assert "audioscope filter" in capsys.readouterr().err
    assert cli.main(["mix", "--store", str(inputs.store), "--df", str(inputs.df), "--labels", str(inputs.df / "df.parquet"),
                     "--out", out]) == 2  # fmt: skip
    assert "not a valid labels table" in capsys.readouterr().err
    assert cli.main(["mix", "--store", str(tmp_path), "--df", str(inputs.df), "--out", out]) == 2
    assert "not a clip store" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["mix", "--store", "s", "--df", "d", "--out", out, "--recipes", "semi-supervised:NOn=2"])
    assert "sum to 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags", [["--runner=DataflowRunner", "--project=p"], ["--runner=PortableRunner", "--environment_type=EXTERNAL"]]
)
def test_a_local_store_or_out_with_remote_workers_is_refused_at_launch(inputs, tmp_path, capsys, flags):
    """The workers read the store and write the shards: local paths there are refused before any
    planning or network call (the Df and labels are read by the launcher, so they may stay local)."""
    out = tmp_path / "mix"
    assert mix(inputs, out, "--", *flags) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"--store {inputs.store}" in line and f"--out {out}" in line and "gs://" in line, line
    assert "--df" not in line and "--labels" not in line
    remote_store = dataclasses.replace(inputs, store="gs://bucket/store")
    assert mix(remote_store, out, "--", *flags) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"--out {out}" in line and "--store" not in line, line
    assert not out.exists()


# --------------------------------------------------------------------------- hostile inputs


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    "what,make,expect",
    [
        ("df", lambda d, i: (d / "df.parquet").write_text("clip_id,score\nx,1\n"), "is not a Parquet file"),
        ("df", lambda d, i: (d / "df.parquet").write_bytes((i.df / "df.parquet").read_bytes()[:300]), "is not a Parquet file"),
        ("df", lambda d, i: pd.DataFrame({"clip_id": ["a"]}).to_parquet(d / "df.parquet"), "is not a valid Df table"),
        ("labels", lambda d, i: (d / "labels.parquet").write_bytes(b"PAR1\x00\x00garbage"), "is not a Parquet file"),
        ("labels", lambda d, i: pd.DataFrame({"x": [1]}).to_parquet(d / "labels.parquet"), "is not a valid labels table"),
    ],
)
def test_a_bad_table_is_one_line_naming_the_file_and_nothing_is_written(inputs, tmp_path, capsys, what, make, expect):
    bad = tmp_path / "bad"
    bad.mkdir()
    make(bad, inputs)
    before = file_bytes(inputs.root / "store")
    out = tmp_path / "out"
    args = ["mix", "--store", str(inputs.store), "--out", str(out)]
    args += ["--df", str(bad), "--labels", str(inputs.labels)] if what == "df" else ["--df", str(inputs.df), "--labels", str(bad)]
    assert cli.main(args) == 2
    line = one_error_line(capsys.readouterr().err)
    name = bad / f"{what}.parquet"
    assert str(name) in line and expect in line, line
    assert ("audioscope filter" if what == "df" else "labels.parquet") in line  # what to do
    assert not out.exists() and file_bytes(inputs.root / "store") == before


def test_a_truncated_media_shard_fails_naming_the_video(inputs, tmp_path, capsys):
    store = tmp_path / "store"
    shutil.copytree(inputs.store, store)
    broken = sorted((store / "media").rglob("*.npz"))
    video = broken[0].stem
    for b in broken:
        if b.stem == video:
            b.write_bytes(b.read_bytes()[: b.stat().st_size // 2])
    out = tmp_path / "out"
    args = ["mix", "--store", str(store), "--df", str(inputs.df), "--out", str(out), "--examples", "24",
            "--shard-bytes", "6M", "--recipes", "unsupervised", "--poll", "0.2"]  # fmt: skip
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert f"video {video}" in err and "Traceback" not in err
    markers = [json.loads(p.read_text()) for p in (out / "failed").glob("*.json")]
    assert markers and all(f"video {video}" in m["message"] for m in markers)
    assert not (out / "summary.json").exists()


# --------------------------------------------------------------------------- library entry and layout


def test_the_library_entry_and_the_layout_readers(mixed, inputs, tmp_path):
    from audioscope.errors import UserError
    from audioscope.pipelines.mix import MixConfig, mix
    from audioscope.pipelines.mix_layout import MixLayout, is_mix_folder
    from audioscope.pipelines.mix_recipes import parse_recipe

    out = tmp_path / "lib"
    config = MixConfig(store=str(inputs.store), df=str(inputs.df), out=str(out), examples=6,
                       recipes=(parse_recipe("unsupervised"),), shard_bytes=2**20)  # fmt: skip
    assert not is_mix_folder(str(out))
    result = mix(config)
    assert result.finished and result.failed == {} and result.layout.root == str(out)
    layout = MixLayout(str(out))
    assert layout.is_finished() and is_mix_folder(str(out)) and not is_mix_folder(str(inputs.df))
    assert layout.read_summary() == result.summary == summary_of(out)
    shards = layout.shard_list()
    assert sum(shards.values()) == 6 and set(shards) == set(layout.existing_shards())
    assert len(layout.read_examples()) == 6
    assert set(layout.output_files()) == {*shards, "summary.json", "examples.parquet"}
    assert layout.train_dir("unsupervised") == str(out / "train" / "unsupervised")
    with pytest.raises(UserError, match="not a finished mixtures folder"):
        MixLayout(str(tmp_path / "none")).read_summary()
    # a finished folder's layout readers agree with the CLI run's files
    big = MixLayout(str(mixed))
    assert len(big.read_examples()) == len(pd.read_parquet(mixed / "examples.parquet"))


def test_a_runner_that_drops_a_shard_cannot_end_the_run_as_finished(inputs, tmp_path, monkeypatch, capsys):
    from audioscope.pipelines import mix as mix_module

    real = mix_module.run_pipeline

    def dropping(*, work_files, **kw):  # a runner stand-in that loses the last element
        last = work_files[-1]
        lines = Path(last).read_text().splitlines()
        Path(last).write_text("".join(line + "\n" for line in lines[:-1]))
        return real(work_files=work_files, **kw)

    monkeypatch.setattr(mix_module, "run_pipeline", dropping)
    out = tmp_path / "out"
    args = ["mix", "--store", str(inputs.store), "--df", str(inputs.df), "--out", str(out), "--examples", "24",
            "--shard-bytes", "3M", "--recipes", "unsupervised", "--poll", "0.2"]  # fmt: skip
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "not written: the runner lost its work" in err and "run the same command again" in err
    # no pointer to a failures folder that holds nothing: the shard was lost, not failed
    assert "1 shards were not written (the runner lost their work)" in err and "reasons in" not in err
    assert not (out / "summary.json").exists()
    monkeypatch.setattr(mix_module, "run_pipeline", real)
    assert cli.main(args) == 0
    summary = summary_of(out)
    assert len(summary["shards"]) > 1 and sum(s["examples"] for s in summary["shards"]) == 24
    assert "1 to write" in capsys.readouterr().err


def test_training_shards_are_packed_each_clip_once_and_pair_within_the_shard(mixed):
    from audioscope.schemas.tfrecord import parse_example

    for s in summary_of(mixed)["shards"]:
        data = records.read_tfrecord(str(mixed / s["path"]))
        kinds = [bytes(parse_example(d)["record_kind"][1][0]) for d in data]
        clips = [bytes(parse_example(d)["clip_id"][1][0]).decode() for d, k in zip(data, kinds) if k == b"clip"]
        assert kinds == [b"clip"] * len(clips) + [b"example"] * s["examples"]  # the clips first, each once
        assert clips == sorted(set(clips))
        recs = shard_records(mixed)[s["path"]]
        assert set(clips) == {r.frames_clip_id for r in recs} | {r.clip_id1 for r in recs} | {r.clip_id2 for r in recs if r.is_mom}
        if s["path"].startswith("train/"):
            heard = {r.clip_id1 for r in recs}
            # every second mixture is a clip the shard already holds as some example's first mixture
            assert all(r.clip_id2 in heard for r in recs if r.is_mom), s["path"]


def test_the_catalog_never_gathers_the_whole_store_index(inputs, tmp_path, monkeypatch, mixed):
    from audioscope.clipstore.reader import ClipStore

    def gathered(self):
        raise AssertionError("mix read ClipStore.index (the whole store's rows)")

    monkeypatch.setattr(ClipStore, "index", property(gathered))
    pairs = copy_pair_lists(mixed, tmp_path / "pairs")
    out = tmp_path / "streamed"
    assert mix(inputs, out, "--recipes", "unsupervised", "--pairs-dir", str(pairs)) == 0
    assert {k: v for k, v in tfrecords(out).items() if k.startswith("eval/")} == {
        k: v for k, v in tfrecords(mixed).items() if k.startswith("eval/")
    }
