"""Door: a release manifest from a root nobody here controls. Every malformed manifest is refused
before anything is done, with one line naming the bad field, by pull, list, verify and diff (library
and command line), and nothing outside the intended folder changes."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from audioscope import cli
from audioscope.curation import release
from audioscope.curation.manifest import Manifest, ManifestError
from audioscope.errors import UserError
from tests.curation.hostile import entry, make_root, snapshot, valid_manifest

FILES = {"README.md": b"card", "eval/test/a/a.csv": b"x,1,2\n", "train/r/s.tfrecord": b"t" * 64}


def _with(mutate) -> dict:
    d = copy.deepcopy(valid_manifest(FILES))
    mutate(d)
    return d


def _set_file(i: int, **kw):
    def mutate(d):
        d["files"][i].update(kw)
        for k, v in kw.items():
            if v is _DROP:
                del d["files"][i][k]
    return mutate


_DROP = object()

#: (id, mutation, text the error must contain)
CASES = [
    ("size-string", _set_file(0, size="4"), "size is a string, not a whole number"),
    ("size-missing", _set_file(0, size=_DROP), "has no 'size'"),
    ("size-null", _set_file(0, size=None), "size is null"),
    ("size-float", _set_file(0, size=4.0), "size is the number 4.0"),
    ("size-negative", _set_file(0, size=-1), "size is -1"),
    ("size-bool", _set_file(0, size=True), "size is a boolean"),
    ("sha-short", _set_file(0, sha256="abc"), "sha256 is not 64 lower-case hex"),
    ("path-dotdot", _set_file(0, path="../../escaped.txt"), "unsafe path"),
    ("path-absolute", _set_file(0, path="/etc/passwd"), "unsafe path"),
    ("path-backslash", _set_file(0, path="eval\\..\\x"), "unsafe path"),
    ("path-hidden", _set_file(0, path=".audioscope-release.json"), "unsafe path"),
    ("path-number", _set_file(0, path=7), "path is the number 7"),
    ("group-wrong", _set_file(0, group="train"), "belongs to 'meta'"),
    ("entry-not-object", lambda d: d["files"].append("README.md"), "files[3] is a string"),
    ("files-not-list", lambda d: d.update(files={"a": 1}), "manifest.files is an object, not a list"),
    ("duplicate", lambda d: d["files"].append(dict(d["files"][0])), "lists a file twice"),
    ("file-and-folder", lambda d: d["files"].append(entry("eval", b"e")), "both a file and the folder"),
    ("manifest-listed", lambda d: d["files"].append(entry("manifest.json", b"m")), "reserved for the manifest"),
    ("name-traversal", lambda d: d.update(name="../x"), "release name"),
    ("version-bad", lambda d: d.update(version="1.0"), "not a valid version"),
    ("counts-not-object", lambda d: d.update(counts={"train": [1, 2]}), "manifest.counts.train is a list"),
    ("count-negative", lambda d: d.update(counts={"eval": {"test": {"a": -3}}}), "counts.eval.test.a is the number -3"),
    ("total-wrong", lambda d: d.update(total_bytes=1), "total_bytes"),
    ("format-other", lambda d: d.update(format="zip"), "not an audioscope release"),
    ("format-version-string", lambda d: d.update(format_version="1"), "format_version is a string"),
    ("format-version-future", lambda d: d.update(format_version=9), "newer than this toolkit"),
    ("not-object", lambda d: (d.clear()), "not an audioscope release"),
]  # fmt: skip


@pytest.mark.parametrize("case,mutate,message", CASES, ids=[c[0] for c in CASES])
def test_a_malformed_manifest_is_refused_naming_the_field(case, mutate, message):
    with pytest.raises(ManifestError, match=_re(message)):
        Manifest.from_dict(_with(mutate))


def _re(text: str) -> str:
    import re

    return re.escape(text)


@pytest.mark.parametrize(
    "text,message",
    [
        ('{"format": "audioscope-release", "size": 1e400}', "must be finite"),  # 1e400 reads as infinity
        ("[1, 2]", "does not hold a JSON object"),
        ("{", "not valid JSON"),
        ('{"format": NaN}', "holds NaN"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ],
    ids=["1e400", "list", "truncated", "nan", "deep"],
)
def test_json_that_is_not_a_manifest_is_refused(text, message):
    with pytest.raises(ManifestError, match=message):
        Manifest.from_json(text.replace('"size": 1e400', '"format_version": 1, "x": 1e400'))


def test_1e400_as_a_size_is_refused():
    d = valid_manifest(FILES)
    text = json.dumps(d).replace(f'"size": {len(b"card")}', '"size": 1e400', 1)
    with pytest.raises(ManifestError, match=r"files\[0\]\.size is inf: numbers in a manifest must be finite"):
        Manifest.from_json(text)


DOOR_CASES = CASES[:12] + CASES[15:18]


@pytest.mark.parametrize("case,mutate,message", DOOR_CASES, ids=[c[0] for c in DOOR_CASES])
def test_pull_list_verify_diff_refuse_it_with_one_line_and_touch_nothing(case, mutate, message, tmp_path, capsys):
    root = tmp_path / "root"
    make_root(root, FILES)
    make_root(root, FILES, version="1.1.0", manifest=_with(mutate))
    dest = tmp_path / "copy"
    before = snapshot(tmp_path)
    root_before = snapshot(root)

    with pytest.raises(UserError, match=_re(message)):
        release.pull("ds:1.1.0", root=str(root), dest=str(dest), show_progress=False)
    with pytest.raises(UserError, match=_re(message)):
        release.load_manifest("ds:1.1.0", str(root))
    after = snapshot(tmp_path, skip=(str(dest),))
    assert after == before  # nothing written anywhere (dest may have been created, empty)
    assert not dest.exists() or not any(p for p in dest.rglob("*") if not p.name.startswith("."))

    listing = release.list_versions(str(root), "ds")  # the good version is listed, the bad one is BAD
    assert [v.version for v in listing.versions] == ["1.0.0"]
    assert [b.version for b in listing.bad] == ["1.1.0"] and message.split()[0] in listing.bad[0].problem

    rc = cli.main(["release", "list", "--root", str(root)])
    out, err = capsys.readouterr()
    assert rc == 0 and "ds:1.0.0" in out and "ds:1.1.0" in out and "BAD:" in out and "Traceback" not in err
    rc = cli.main(["release", "pull", "ds:1.1.0", "--root", str(root), "--to", str(dest)])
    out, err = capsys.readouterr()
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err

    copy_dir = tmp_path / "published-copy"  # a local copy whose manifest is bad: verify says so in one line
    release.pull("ds:1.0.0", root=str(root), dest=str(copy_dir), show_progress=False)
    (copy_dir / "manifest.json").write_text(json.dumps(_with(mutate)))
    rc = cli.main(["release", "verify", str(copy_dir)])
    out, err = capsys.readouterr()
    assert rc == 2 and "manifest.json" in err and "Traceback" not in err
    rc = cli.main(["release", "diff", str(copy_dir), "ds:1.0.0", "--root", str(root)])
    _, err = capsys.readouterr()
    assert rc == 2 and "Traceback" not in err
    assert snapshot(root) == root_before  # the root is only read
    assert snapshot(tmp_path, skip=(str(dest), str(copy_dir))) == before


def test_a_manifest_that_never_ends_is_refused_by_size(tmp_path, monkeypatch):
    from audioscope.curation import manifest as mf

    root = tmp_path / "root"
    make_root(root, FILES)
    base = root / "ds" / "1.0.0" / "manifest.json"
    base.unlink()
    base.symlink_to("/dev/zero")  # a "manifest" that streams forever
    monkeypatch.setattr(mf, "MAX_MANIFEST_BYTES", 1 << 20)
    import audioscope.curation.release_list as rl

    monkeypatch.setattr(rl, "MAX_MANIFEST_BYTES", 1 << 20)
    with pytest.raises(UserError, match="larger than"):
        release.pull("ds:1.0.0", root=str(root), dest=str(tmp_path / "copy"), show_progress=False)
    assert [b.version for b in release.list_versions(str(root), "ds").bad] == ["1.0.0"]


def test_a_bad_name_on_the_command_line_is_refused(tmp_path, capsys):
    root = tmp_path / "root"
    make_root(root, FILES)
    (tmp_path / "secret").mkdir()
    rc = cli.main(["release", "list", "../secret", "--root", str(root)])
    _, err = capsys.readouterr()
    assert rc == 2 and "release name" in err
    with pytest.raises(UserError, match="release name"):
        release.resolve_source("../x:1.0.0/eval", root=str(root), dest=str(tmp_path / "c"))
    with pytest.raises(UserError, match="unsafe path"):
        release.resolve_source("ds:1.0.0/../../secret", root=str(root), dest=str(tmp_path / "c"))
