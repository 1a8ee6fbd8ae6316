"""Door: a local release copy that someone (or the disk) changed. `release verify`, `resolve`,
`resolve_source` and `release_files` never follow a link out of the copy, and the loader's check
hashes every file in each process, so a flipped byte with its timestamps restored is refused naming the
file, whatever kind of file it is."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from audioscope import cli
from audioscope.curation import release
from audioscope.curation.manifest import VerificationError, VerifiedCache, check_dir
from audioscope.errors import UserError
from tests.curation.hostile import make_root, snapshot

FILES = {
    "README.md": b"# card\n", "LICENSES.csv": b"clip_id\nv-0000000\n", "examples.parquet": b"PAR1" + b"p" * 100,
    "eval/test/a/test_a_pairs.csv": b"/v.mp4,0,5,,,\n", "eval/test/a/a-00000-of-00001.tfrecord": b"r" * 300,
    "curated/df/df.parquet": b"PAR1" + b"d" * 200, "train/r/s.tfrecord": b"t" * 500,
}  # fmt: skip


@pytest.fixture()
def copy(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    make_root(root, FILES)
    dest = tmp_path / "copy"
    release.pull("ds:1.0.0", root=str(root), dest=str(dest), show_progress=False)
    return dest


def _flip_keeping_times(path: Path, offset: int = 3) -> None:
    st = os.stat(path)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # the modification time put back


@pytest.mark.parametrize("rel", sorted(FILES))
def test_a_flipped_byte_with_its_mtime_restored_is_refused_naming_the_file(copy, rel):
    assert release.release_files(str(copy))["meta"]  # checked once: this process remembers it intact
    _flip_keeping_times(copy / rel)
    with pytest.raises(VerificationError, match=rel.replace(".", r"\.")):
        release.release_files(str(copy))
    with pytest.raises(VerificationError, match=rel.replace(".", r"\.")):
        release.resolve(str(copy), root=None)
    VerifiedCache.forget()  # as a new process would start
    with pytest.raises(VerificationError, match=rel.replace(".", r"\.")):
        release.resolve_source(str(copy / rel.rsplit("/", 1)[0]) if "/" in rel else str(copy))


def test_a_new_process_hashes_again_so_bit_rot_between_runs_is_caught(copy):
    """The record of intact files is per process: nothing on disk can vouch for a file."""
    script = (
        "import sys\nfrom audioscope.curation import release\n"
        "try:\n    release.release_files(sys.argv[1])\nexcept release.VerificationError as e:\n"
        "    print('REFUSED', *sorted(e.problems)); sys.exit(3)\nprint('OK')\n"
    )
    def run() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", script, str(copy)], capture_output=True, text=True)

    first = run()
    assert first.returncode == 0 and "OK" in first.stdout, first.stderr[-2000:]
    _flip_keeping_times(copy / "curated/df/df.parquet")
    st = os.stat(copy / "curated/df/df.parquet")
    second = run()
    assert second.returncode == 3 and "curated/df/df.parquet" in second.stdout
    assert os.stat(copy / "curated/df/df.parquet").st_mtime_ns == st.st_mtime_ns
    assert not (copy / ".verified.json").exists()  # no record on disk to trust


def test_release_files_lists_each_group_verified(copy):
    files = release.release_files(str(copy))
    rel = {g: sorted(os.path.relpath(p, copy) for p in ps) for g, ps in files.items()}
    assert rel["train"] == ["train/r/s.tfrecord"]
    assert rel["eval"] == ["eval/test/a/a-00000-of-00001.tfrecord", "eval/test/a/test_a_pairs.csv"]
    assert rel["curated"] == ["curated/df/df.parquet"]
    assert rel["meta"] == ["LICENSES.csv", "README.md", "examples.parquet"]
    assert release.release_files(str(copy), ["eval"])["train"] == []


@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_link_out_of_the_copy_fails_verification_even_with_the_right_bytes(copy, tmp_path, what, capsys):
    elsewhere = tmp_path / "elsewhere"
    if what == "file":
        elsewhere.mkdir()
        target = elsewhere / "s.tfrecord"
        shutil.move(copy / "train/r/s.tfrecord", target)  # same bytes, living outside the copy
        (copy / "train/r/s.tfrecord").symlink_to(target)
        bad = "train/r/s.tfrecord"
    else:
        shutil.move(copy / "eval", elsewhere)
        (copy / "eval").symlink_to(elsewhere)
        bad = "eval/test/a/a-00000-of-00001.tfrecord"
    before = snapshot(tmp_path)
    report = check_dir(str(copy))
    assert bad in report.problems and "symbolic link" in report.problems[bad]
    rc = cli.main(["release", "verify", str(copy)])
    out = capsys.readouterr().out
    assert rc == 1 and f"BAD {bad}" in out and "symbolic link" in out
    with pytest.raises(VerificationError, match="symbolic link"):
        release.resolve_source(str(copy))
    with pytest.raises(VerificationError, match="symbolic link"):
        release.release_files(str(copy))
    assert snapshot(tmp_path) == before


def test_a_linked_manifest_is_refused(copy, tmp_path):
    (tmp_path / "m.json").write_bytes((copy / "manifest.json").read_bytes())
    (copy / "manifest.json").unlink()
    (copy / "manifest.json").symlink_to(tmp_path / "m.json")
    with pytest.raises(UserError, match="symbolic link"):
        release.release_files(str(copy))


def test_verify_hashes_in_parallel_and_reports_every_file(copy, monkeypatch):
    import threading

    from audioscope.curation import manifest as mf

    seen: set[str] = set()
    real = mf.sha256_file

    def spy(path):
        seen.add(threading.current_thread().name)
        return real(path)

    monkeypatch.setattr(mf, "sha256_file", spy)
    report = check_dir(str(copy), jobs=4)
    assert report.ok and len(report.checked) == len(FILES)
    assert all(name.startswith("release-hash") for name in seen)


def test_resolving_and_listing_a_release_needs_no_tensorflow_pandas_or_beam(copy):
    script = (
        "import sys\nfrom audioscope.curation.release import release_files, resolve\n"
        "files = release_files(resolve(sys.argv[1], root=None))\n"
        "heavy = sorted(m for m in ('tensorflow', 'pandas', 'apache_beam') if m in sys.modules)\n"
        "print(len(files['train']), len(files['eval']), heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(copy)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["1", "2", "[]"]
