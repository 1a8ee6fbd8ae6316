"""The release manifest: semantic versions, names, safe paths, round trips, checking local copies."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audioscope.errors import UserError
from audioscope.curation import release
from audioscope.curation.manifest import (
    FileEntry,
    Manifest,
    VerificationError,
    check_relative_path,
    group_of,
    latest,
    parse_spec,
    parse_version,
    verify_files,
)


def test_versions_parse_and_order_by_semver_precedence():
    order = ["0.9.9", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta.2", "1.0.0-beta.11",
             "1.0.0-rc.1", "1.0.0", "1.2.0", "1.10.0", "2.0.0"]  # fmt: skip
    shuffled = order[::-1][3:] + order[::-1][:3]
    assert sorted(shuffled, key=lambda v: parse_version(v).key()) == order
    assert parse_version("1.0.0+build.5").key() == parse_version("1.0.0").key()
    assert latest(["1.0.0", "1.1.0-rc.1", "0.9.0"]) == "1.0.0"
    assert latest(["1.1.0-rc.1", "1.1.0-rc.2"]) == "1.1.0-rc.2"
    assert latest([]) is None
    for bad in ("1.0", "v1.0.0", "01.0.0", "1.0.0-", "1.0.0-01", "1.0.0+", ""):
        with pytest.raises(ValueError, match="not a semantic version"):
            parse_version(bad)


@given(st.tuples(st.integers(0, 999), st.integers(0, 999), st.integers(0, 999)),
       st.tuples(st.integers(0, 999), st.integers(0, 999), st.integers(0, 999)))  # fmt: skip
def test_release_versions_order_like_their_numbers(a, b):
    va, vb = parse_version("%d.%d.%d" % a), parse_version("%d.%d.%d" % b)
    assert (va.key() < vb.key()) == (a < b)
    assert str(va) == "%d.%d.%d" % a


def test_specs_and_names():
    assert parse_spec("audioscope:1.2.3") == ("audioscope", "1.2.3")
    assert parse_spec("audioscope") == ("audioscope", None)
    assert parse_spec("audioscope:latest") == ("audioscope", None)
    for bad in ("../x:1.0.0", "a/b:1.0.0", ":1.0.0", ".hidden:1.0.0"):
        with pytest.raises(ValueError, match="release name"):
            parse_spec(bad)
    with pytest.raises(ValueError, match="semantic version"):
        parse_spec("audioscope:one")


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../../x", "a//b", "./a", "a\\b", "C:/x", "a/\x00", ""])
def test_unsafe_paths_are_refused(path):
    with pytest.raises(ValueError, match="unsafe path"):
        check_relative_path(path)


def test_groups_follow_the_top_folder():
    assert group_of("train/unsupervised/x.tfrecord") == "train"
    assert group_of("eval/test/onscreen_mom/x.csv") == "eval"
    assert group_of("curated/df/df.parquet") == "curated"
    assert group_of("summary.json") == group_of("README.md") == group_of("train") == "meta"


def _manifest(files: dict[str, bytes]) -> Manifest:
    entries = [FileEntry(p, len(b), hashlib.sha256(b).hexdigest()) for p, b in files.items()]
    return Manifest(name="ds", version="1.0.0", created="2026-01-01T00:00:00Z", files=entries, counts={"examples": 2})


def test_manifest_round_trips_and_refuses_what_it_cannot_read():
    m = _manifest({"train/a/a.tfrecord": b"aa", "eval/x/y.csv": b"y"})
    again = Manifest.from_json(m.to_json())
    assert again.to_json() == m.to_json() and again.total_bytes == 3
    d = json.loads(m.to_json())
    assert [f["path"] for f in d["files"]] == ["eval/x/y.csv", "train/a/a.tfrecord"]  # sorted
    with pytest.raises(ValueError, match="newer than this toolkit"):
        Manifest.from_dict({**d, "format_version": 99})
    with pytest.raises(ValueError, match="not an audioscope release"):
        Manifest.from_dict({**d, "format": "other"})
    with pytest.raises(ValueError, match="twice"):
        Manifest.from_dict({**d, "files": d["files"] + d["files"][:1]})
    with pytest.raises(ValueError, match="unsafe path"):
        Manifest.from_dict({**d, "files": [{**d["files"][0], "path": "../../.bashrc"}]})


def test_verify_files_names_missing_changed_and_unknown_files(tmp_path):
    files = {"train/a/a.tfrecord": b"a" * 10, "eval/x/y.csv": b"y", "README.md": b"card"}
    for p, b in files.items():
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / p).write_bytes(b)
    (tmp_path / "manifest.json").write_text(_manifest(files).to_json())
    assert verify_files(str(tmp_path)) == sorted(files)
    (tmp_path / "train/a/a.tfrecord").write_bytes(b"a" * 9)
    (tmp_path / "eval/x/y.csv").unlink()
    with pytest.raises(VerificationError) as e:
        verify_files(str(tmp_path))
    assert e.value.problems == {"train/a/a.tfrecord": "size 9 bytes, the manifest says 10", "eval/x/y.csv": "missing"}
    with pytest.raises(VerificationError, match="not in the release manifest"):
        verify_files(str(tmp_path), [str(tmp_path / "other.bin")])
    assert verify_files(str(tmp_path), ["README.md"]) == ["README.md"]
    with pytest.raises(UserError, match="not a release copy"):
        verify_files(str(tmp_path / "train"))


def test_a_hostile_manifest_in_a_root_cannot_make_a_pull_write_outside_its_folder(tmp_path):
    root = tmp_path / "root"
    version = root / "ds" / "1.0.0"
    version.mkdir(parents=True)
    d = json.loads(_manifest({"README.md": b"x"}).to_json())
    d["files"][0]["path"] = "../../../escaped.txt"
    (version / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(UserError, match="unsafe path"):
        release.pull("ds:1.0.0", root=str(root), dest=str(tmp_path / "copy"), show_progress=False)
    assert not (tmp_path / "escaped.txt").exists()


def test_verified_cache_skips_unchanged_files_and_catches_a_rewrite(tmp_path, monkeypatch) -> None:
    from audioscope.curation import manifest as mf

    (tmp_path / "a.bin").write_bytes(b"x" * 1000)
    data = (tmp_path / "a.bin").read_bytes()
    entry = mf.FileEntry(path="a.bin", size=len(data), sha256=hashlib.sha256(data).hexdigest())
    hashed: list[str] = []
    real = mf.sha256_file
    monkeypatch.setattr(mf, "sha256_file", lambda p: (hashed.append(p), real(p))[1])
    cache = mf.VerifiedCache(str(tmp_path))
    assert mf.file_problem(str(tmp_path), entry, cache) is None
    cache.save()
    cache = mf.VerifiedCache(str(tmp_path))  # read back from .verified.json
    assert mf.file_problem(str(tmp_path), entry, cache) is None
    assert len(hashed) == 1  # the second check did not hash
    # Flip one byte in place (same size): the write changes the file's time (after a tick of the
    # file system clock), so it is hashed again and refused.
    time.sleep(0.05)
    with open(tmp_path / "a.bin", "r+b") as f:
        f.seek(10)
        f.write(b"y")
    assert "SHA-256 differs" in mf.file_problem(str(tmp_path), entry, cache)
    assert mf.file_problem(str(tmp_path), entry) is not None  # and without the cache too


def test_the_streamed_manifest_is_the_same_bytes_as_one_json_dump():
    m = _manifest({"train/a/a.tfrecord": b"aa", "eval/x/y.csv": b"y", "README.md": b"r"})
    m.configs = {"mix": {"seed": 7, "nested": [1, {"a": None}], "files": []}, "zz": {"files": []}}
    m.labels = {"validation": {"pool": {"clips": 3}}}
    assert "".join(m.iter_json()) == json.dumps(m.to_dict(), indent=2, sort_keys=True) + "\n"
    empty = Manifest(name="ds", version="1.0.0", created="2026-01-01T00:00:00Z", files=[])
    assert empty.to_json() == json.dumps(empty.to_dict(), indent=2, sort_keys=True) + "\n"
    assert Manifest.from_json(m.to_json()).to_json() == m.to_json()
