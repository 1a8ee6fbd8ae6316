"""Releases against a real local folder and a real gs:// (GCS emulator): publish, pull, verify,
never overwrite, killed publishes, resumed pulls, evaluation sets alone, list and diff."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from audioscope import storage
from audioscope.errors import UserError
from audioscope.curation import release, release_store
from audioscope.curation.manifest import MANIFEST_JSON, VerificationError, check_dir, verify_files
from audioscope.curation.release import PublishRequest
from tests.curation.release_inputs import flip_byte, read_tree

TRAIN_SHARD = "train/unsupervised/unsupervised-00000-of-00001.tfrecord"


def _req(inputs, root: str, version: str = "1.0.0", **kw) -> PublishRequest:
    return PublishRequest(
        mix=inputs.mix, df=inputs.df, labels=inputs.labels, name="audioscope", version=version, root=root, **kw
    )


def _publish(inputs, root: str, version: str = "1.0.0", **kw) -> release.PublishResult:
    return release.publish(_req(inputs, root, version, **kw), show_progress=False)


def _pull(root: str, dest: Path, spec: str = "audioscope:1.0.0", **kw) -> release.PullResult:
    return release.pull(spec, root=root, dest=str(dest), show_progress=False, **kw)


_PUBLISHED: dict[str, release.PublishResult] = {}


@pytest.fixture()
def published(release_inputs_template, shared_root) -> tuple[str, release.PublishResult]:
    """One release published once per root and worker, for the tests that only pull from it."""
    if shared_root not in _PUBLISHED:
        _PUBLISHED[shared_root] = _publish(release_inputs_template, shared_root)
    return shared_root, _PUBLISHED[shared_root]


@pytest.fixture()
def local_root(tmp_path: Path) -> str:
    """A local release root, for what does not depend on the store (listing order, diff, contents)."""
    return str(tmp_path / "releases")


def _versions(root: str) -> list[str]:
    return [v.version for v in release.list_versions(root, "audioscope").versions]


class FailAfter:
    """Replaces release_store.copy_file: lets ``n`` copies through, then raises (a dropped connection)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.calls: list[str] = []
        self.real = release_store.copy_file

    def __call__(self, src_fs, src, dst_fs, dst, dst_local, **kw):
        if len(self.calls) >= self.n:
            raise ConnectionError("injected failure")
        self.calls.append(src.split("/audioscope/1.0.0/", 1)[-1])  # pull: the release path of the file
        return self.real(src_fs, src, dst_fs, dst, dst_local, **kw)


# --------------------------------------------------------------------------- publish, pull, verify


def test_publish_pull_verify_gives_identical_bytes(published, release_inputs_template, tmp_path):
    root, result = published
    inputs = release_inputs_template
    assert result.uri == f"{root}/audioscope/1.0.0"
    pulled = _pull(root, tmp_path / "copy")
    assert len(pulled.transferred) == len(result.manifest.files) and not pulled.kept

    got = read_tree(tmp_path / "copy")
    mix = read_tree(inputs.mix)
    released_mix = {p: b for p, b in mix.items() if not p.startswith("work/")}
    assert {p: got[p] for p in released_mix} == released_mix  # shards, pair CSVs, examples, summary: same bytes
    df = read_tree(inputs.df)
    assert {p: got[f"curated/df/{p}"] for p in df} == df
    labels = read_tree(inputs.labels)
    assert "media/preview.mp4" in labels and "curated/labels/media/preview.mp4" not in got
    assert {p: got[f"curated/labels/{p}"] for p in labels if "/" not in p} == {
        p: b for p, b in labels.items() if "/" not in p
    }
    assert "work/work-00000-of-00001.jsonl" not in got
    assert {"README.md", "LICENSES.csv", MANIFEST_JSON} <= set(got)

    # the copy in the root and the pulled copy are the same bytes, the manifest names every file
    assert storage.read_bytes(f"{result.uri}/{MANIFEST_JSON}") == got[MANIFEST_JSON]
    manifest = json.loads(got[MANIFEST_JSON])
    assert sorted(f["path"] for f in manifest["files"]) == sorted(set(got) - {MANIFEST_JSON})
    assert verify_files(str(tmp_path / "copy")) == sorted(f["path"] for f in manifest["files"])
    assert release.resolve("audioscope:1.0.0", root=root, dest=str(tmp_path / "copy")) == str(tmp_path / "copy")
    assert result.manifest_sha256 == pulled.manifest_sha256


def test_flipped_byte_is_refused_naming_the_file_and_a_new_pull_repairs_it(published, tmp_path):
    root, _ = published
    dest = tmp_path / "copy"
    _pull(root, dest)
    flip_byte(dest / TRAIN_SHARD)

    with pytest.raises(VerificationError) as e:
        verify_files(str(dest))
    assert list(e.value.problems) == [TRAIN_SHARD] and TRAIN_SHARD in str(e.value) and "SHA-256" in str(e.value)
    with pytest.raises(VerificationError, match=TRAIN_SHARD):
        verify_files(str(dest), [TRAIN_SHARD])
    verify_files(str(dest), ["eval/test/onscreen_mom/onscreen_mom-00000-of-00001.tfrecord"])  # others are fine
    with pytest.raises(VerificationError, match=TRAIN_SHARD):  # what the loader calls
        release.resolve("audioscope:1.0.0", root=root, dest=str(dest))

    repaired = _pull(root, dest)
    assert repaired.transferred == [TRAIN_SHARD]
    assert check_dir(str(dest)).ok


def test_publishing_a_version_twice_fails_and_the_first_stays_intact(release_inputs, release_root, tmp_path):
    first = _publish(release_inputs, release_root)
    summary = Path(release_inputs.mix, "summary.json")
    summary.write_text(summary.read_text().replace('"seed": 7', '"seed": 8'))
    for version in ("1.0.0", "1.0.0+rebuild"):
        with pytest.raises(UserError, match="never overwritten: bump the version .* --version 1.0.1"):
            _publish(release_inputs, release_root, version)
    assert _versions(release_root) == ["1.0.0"]
    assert storage.read_bytes(f"{first.uri}/{MANIFEST_JSON}") == first.manifest.to_json().encode()
    _pull(release_root, tmp_path / "copy")
    assert json.loads((tmp_path / "copy" / "summary.json").read_text())["config"]["seed"] == 7
    assert release.list_versions(release_root, "audioscope").leftovers == []
    assert _publish(release_inputs, release_root, "1.0.1").manifest.configs["mix"]["seed"] == 8


def test_a_publish_failing_midway_leaves_no_version(release_inputs, release_root, monkeypatch):
    failing = FailAfter(4)
    monkeypatch.setattr(release_store, "copy_file", failing)
    with pytest.raises(ConnectionError):
        _publish(release_inputs, release_root)
    assert len(failing.calls) == 4
    listing = release.list_versions(release_root, "audioscope")
    assert listing.versions == [] and listing.leftovers == []  # what it wrote is removed
    monkeypatch.setattr(release_store, "copy_file", failing.real)
    _publish(release_inputs, release_root)
    assert _versions(release_root) == ["1.0.0"]


@pytest.mark.integration
@pytest.mark.xdist_group("gcs_release")
def test_gs_publish_failing_while_copying_into_the_version_leaves_no_version(
    release_inputs, gs_release_root, monkeypatch
):
    release_root = gs_release_root
    real = release_store.server_copy

    def copy_some_then_fail(fs, sources, targets):
        real(fs, sources[:3], targets[:3])
        raise ConnectionError("injected failure")

    monkeypatch.setattr(release_store, "server_copy", copy_some_then_fail)
    with pytest.raises(ConnectionError):
        _publish(release_inputs, release_root)
    listing = release.list_versions(release_root, "audioscope")
    assert listing.versions == [] and listing.leftovers == []  # the copied files and the staging are removed
    assert not storage.exists(f"{release_root}/audioscope/1.0.0")


def test_a_version_without_manifest_does_not_exist(release_inputs, release_root, tmp_path):
    """Debris of a publish killed while copying (object stores): list and pull ignore it; publish replaces it."""
    storage.atomic_write(f"{release_root}/audioscope/1.0.0/train/x.tfrecord", b"half")
    listing = release.list_versions(release_root, "audioscope")
    assert listing.versions == []
    assert [x.kind for x in listing.leftovers] == ["version without manifest (not published)"]
    with pytest.raises(UserError, match="not published"):
        _pull(release_root, tmp_path / "copy")
    if release_root.startswith("gs://"):
        _publish(release_inputs, release_root)
        assert not storage.exists(f"{release_root}/audioscope/1.0.0/train/x.tfrecord")
        assert _versions(release_root) == ["1.0.0"]
    else:
        with pytest.raises(UserError, match="exists but is not a release"):
            _publish(release_inputs, release_root)


DRIVER = """
import sys, time
from audioscope.curation import release_store
real, seen = release_store.copy_file, []
def copy_then_hang(*args, **kw):
    if len(seen) == 3:
        open(sys.argv[1], "w").close()
        time.sleep(600)
    seen.append(args)
    return real(*args, **kw)
release_store.copy_file = copy_then_hang
from audioscope import cli
sys.exit(cli.main(sys.argv[2:]))
"""


def test_a_publish_killed_with_sigkill_leaves_no_version(release_inputs, release_root, tmp_path):
    ready = tmp_path / "ready"
    args = ["release", "publish", "--mix", release_inputs.mix, "--df", release_inputs.df, "--labels",
            release_inputs.labels, "--name", "audioscope", "--version", "1.0.0", "--root", release_root]  # fmt: skip
    log = tmp_path / "publish.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(ready), *args], stdout=subprocess.DEVNULL, stderr=err
        )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the publish never reached its fourth upload"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    listing = release.list_versions(release_root, "audioscope")
    assert listing.versions == []
    assert [x.kind for x in listing.leftovers] == ["incomplete publish"] and listing.leftovers[0].started
    _publish(release_inputs, release_root)  # a fresh publish is not blocked by the leftover
    assert _versions(release_root) == ["1.0.0"]
    root = release.ReleaseRoot(release_root)
    assert release.clean_leftovers(root, "audioscope") == []  # younger than a day: kept (it may be running)
    assert release.clean_leftovers(root, "audioscope", stale_seconds=0) == [listing.leftovers[0].path]
    assert release.list_versions(release_root, "audioscope").leftovers == []
    _pull(release_root, tmp_path / "copy")
    verify_files(str(tmp_path / "copy"))


# --------------------------------------------------------------------------- resume, parts


def test_an_interrupted_pull_resumes_transferring_only_what_was_missing(published, tmp_path, monkeypatch):
    root, result = published
    dest = tmp_path / "copy"
    failing = FailAfter(5)
    monkeypatch.setattr(release_store, "copy_file", failing)
    with pytest.raises(ConnectionError):
        _pull(root, dest)
    assert not (dest / MANIFEST_JSON).exists()  # not a finished copy
    # a partial left by a killed pull (pulls keep theirs in the copy's .audioscope-pull/ folder)
    (dest / ".audioscope-pull" / "0123456789ab-00001234.part").parent.mkdir(parents=True, exist_ok=True)
    (dest / ".audioscope-pull" / "0123456789ab-00001234.part").write_bytes(b"left by a killed pull")

    monkeypatch.setattr(release_store, "copy_file", failing.real)
    resumed = _pull(root, dest)
    first = failing.calls
    assert sorted(resumed.kept) == sorted(first) and len(first) == 5
    assert sorted(resumed.transferred) == sorted({f.path for f in result.manifest.files} - set(first))
    assert resumed.bytes_transferred == sum(f.size for f in result.manifest.files if f.path not in first)
    assert not list(dest.rglob("*.part"))
    verify_files(str(dest))
    again = _pull(root, dest)
    assert again.transferred == [] and len(again.kept) == len(result.manifest.files)


def test_the_evaluation_sets_can_be_pulled_alone(published, tmp_path):
    root, _ = published
    dest = tmp_path / "eval-only"
    pulled = _pull(root, dest, only="eval")
    files = set(read_tree(dest))
    assert any(p.startswith("eval/test/onscreen_mom/") and p.endswith(".tfrecord") for p in files)
    assert "eval/validation/offscreen_mom/validation_offscreen_mom_pairs.csv" in files
    assert not any(p.startswith(("train/", "curated/")) for p in files)
    assert {"README.md", "LICENSES.csv", "summary.json", "examples.parquet", MANIFEST_JSON} <= files
    assert pulled.groups == ("eval",)
    report = check_dir(str(dest))
    assert report.ok and report.groups == ("eval",)
    assert release.resolve("audioscope:1.0.0", root=root, dest=str(dest), only="eval") == str(dest)

    rest = _pull(root, dest)  # then everything: only the other parts move
    assert rest.transferred and all(p.startswith(("train/", "curated/")) for p in rest.transferred)
    assert check_dir(str(dest)).groups is None


def test_resolve_pulls_into_the_cache_when_there_is_no_copy(release_inputs, local_root, tmp_path, monkeypatch):
    _publish(release_inputs, local_root)
    _publish(release_inputs, local_root, "1.1.0-rc.1")
    monkeypatch.setenv("AUDIOSCOPE_RELEASE_CACHE", str(tmp_path / "cache"))
    got = release.resolve("audioscope", root=local_root, only="eval")  # newest release, not the pre-release
    assert got == str(tmp_path / "cache" / "audioscope" / "1.0.0")
    assert check_dir(got).ok and check_dir(got).groups == ("eval",)
    assert release.resolve(got, root=None) == got  # a local release folder is verified as it is
    with pytest.raises(UserError, match="not published"):
        release.resolve("audioscope:9.9.9", root=local_root)


# --------------------------------------------------------------------------- list, diff, contents


def test_list_orders_versions_and_reports_sizes_dates_counts(release_inputs, local_root):
    for v in ("1.10.0", "1.2.0", "1.2.0-rc.1"):
        _publish(release_inputs, local_root, v)
    listing = release.list_versions(local_root, "audioscope")
    assert [v.version for v in listing.versions] == ["1.2.0-rc.1", "1.2.0", "1.10.0"]
    v = listing.versions[-1]
    assert v.train_examples == 3 and v.eval_examples == 8 and v.created.endswith("Z")
    m = json.loads(storage.read_bytes(f"{local_root}/audioscope/1.10.0/{MANIFEST_JSON}"))
    assert v.total_bytes == m["total_bytes"] + len(
        storage.read_bytes(f"{local_root}/audioscope/1.10.0/{MANIFEST_JSON}")
    )
    assert release.list_names(local_root) == ["audioscope"]


def test_diff_reports_files_counts_and_configs(release_inputs, local_root, tmp_path):
    _publish(release_inputs, local_root)
    mix = Path(release_inputs.mix)
    summary = json.loads((mix / "summary.json").read_text())
    summary["config"]["seed"] = 8
    summary["counts"]["eval"]["test"]["onscreen_mom"] = 2
    flip_byte(mix / TRAIN_SHARD)
    (mix / "eval" / "test" / "onscreen_mom" / "test_onscreen_mom_pairs.csv").unlink()
    (mix / "summary.json").write_text(json.dumps(summary))
    _publish(release_inputs, local_root, "1.1.0")

    a, _ = release.load_manifest("audioscope:1.0.0", local_root)
    b, _ = release.load_manifest("audioscope:1.1.0", local_root)
    d = release.diff(a, b)
    assert [e.path for e in d.removed] == ["eval/test/onscreen_mom/test_onscreen_mom_pairs.csv"]
    assert d.added == []
    assert {new.path for _, new in d.changed} == {TRAIN_SHARD, "summary.json", "README.md"}
    assert ("configs.mix.seed", 7, 8) in d.configs
    assert ("counts.eval.test.onscreen_mom", 1, 2) in d.counts
    local_a = _pull(local_root, tmp_path / "a").directory
    assert release.diff(release.load_manifest(local_a, None)[0], a).changed == []


def test_manifest_records_provenance_and_the_data_card_and_licences(release_inputs, local_root):
    m = _publish(release_inputs, local_root).manifest
    assert m.counts["train"]["unsupervised-soff25"]["SOff"] == 1 and m.counts["examples"] == 11
    assert m.counts["eval"]["validation"]["onscreen_mom"] == 1
    assert m.schema_versions["mixtures"] == {"mixture_record": 1, "examples": 1}
    assert m.schema_versions["tables"]["examples"] == 1 and m.schema_versions["manifest"] == 1
    assert m.configs["mix"]["seed"] == 7
    assert m.configs["filter"]["selection"]["threshold"] == 0.5 and m.configs["filter"]["splits"]["seed"] == 0
    assert m.configs["annotation"]["config"]["seed"] == 11
    assert m.configs["coincidence_model"]["training"]["seed"] == 31337
    assert m.models["coincidence"]["model_id"].startswith("sha256:") and m.models["coincidence"]["card_found"]
    assert m.toolkit["version"] and (m.toolkit["git_commit"] is None or len(m.toolkit["git_commit"]) == 40)
    assert m.labels["validation"]["filtered_eval"] == {
        "clips": 4, "three_votes": 4, "onscreen_only": 1, "offscreen_only": 1, "unlabeled": 2,
    }  # fmt: skip
    sizes = {f.path: f.size for f in m.files}
    assert sizes[TRAIN_SHARD] > 5 * 128 * 128 * 3 + 2 * 160_000  # a real, contract-sized record

    base = f"{local_root}/audioscope/1.0.0"
    card = storage.read_text(f"{base}/README.md")
    for text in ("## How it was made", "## Label statistics", "## Known limitations", "probability >= 0.5",
                 "| validation | filtered_eval | 4 | 4 | 1 | 1 | 2 |", "--only eval"):  # fmt: skip
        assert text in card
    lic = pd.read_csv(storage.open_file(f"{base}/LICENSES.csv"))
    assert list(lic.columns) == ["clip_id", "video_id", "source", "licence_name", "licence_url", "attribution"]
    assert len(lic) == 32 and lic["clip_id"].is_unique  # every Df clip (the examples' clips are among them)
    row = lic.set_index("clip_id").loc["vidA-0002000"]  # SOff frames clip: licence from Df
    assert row["licence_url"] == "https://creativecommons.org/licenses/by/2.0/" and "vidA" in row["attribution"]


def test_excluded_licences_refuse_examples_and_leave_curated_clips_out(release_inputs, local_root):
    m = _publish(release_inputs, local_root, exclude_licences=("noderivs",)).manifest
    lic = pd.read_csv(storage.open_file(f"{local_root}/audioscope/1.0.0/LICENSES.csv"))
    assert len(lic) == 28 and not lic["video_id"].eq("vidN").any()
    assert m.licences["curated_clips_left_out"] == 4 and m.licences["excluded_patterns"] == ["noderivs"]
    assert "4 clips of the curated lists carry an excluded licence" in storage.read_text(
        f"{local_root}/audioscope/1.0.0/README.md"
    )

    path = Path(release_inputs.mix, "examples.parquet")
    table = pq.read_table(path)
    names = table.column("licence_name2").to_pylist()
    names[0] = "Attribution-NoDerivs License"
    pq.write_table(table.set_column(table.schema.get_field_index("licence_name2"), "licence_name2", [names]), path)
    with pytest.raises(
        UserError, match=r"vidB-0001000 \(Attribution-NoDerivs License\).*audioscope mix .*--exclude-licence 'NoDerivs'"
    ):
        _publish(release_inputs, local_root, "1.1.0", exclude_licences=("NoDerivs",))
    assert _versions(local_root) == ["1.0.0"]


# --------------------------------------------------------------------------- bad input


def test_bad_names_versions_and_inputs_are_refused_with_what_to_do(release_inputs, tmp_path):
    root = str(tmp_path / "releases")
    with pytest.raises(UserError, match="not a semantic version"):
        _publish(release_inputs, root, "1.0")
    with pytest.raises(UserError, match="release name"):
        release.publish(
            PublishRequest(mix=release_inputs.mix, df=release_inputs.df, name="../x", version="1.0.0", root=root)
        )
    shard = Path(release_inputs.mix, TRAIN_SHARD)
    shard.rename(shard.with_suffix(".moved"))
    with pytest.raises(UserError, match="missing .*re-run `audioscope mix`"):
        _publish(release_inputs, root)
    shard.with_suffix(".moved").rename(shard)
    Path(release_inputs.mix, "summary.json").unlink()
    with pytest.raises(UserError, match="has not finished"):
        _publish(release_inputs, root)
    assert not Path(root).exists() or release.list_versions(root, "audioscope").versions == []
