"""Door: `release pull` from a root nobody here controls, into a folder other people use. A file that
never ends is stopped at its manifest size and dropped; the pull never touches a file it did not make,
never writes through a link; two pulls into one folder both end with a verified copy."""

from __future__ import annotations

import http.server
import os
import threading
from pathlib import Path

import pytest

from audioscope import cli
from audioscope.curation import release, release_store
from audioscope.curation.manifest import VerificationError, check_dir
from audioscope.errors import UserError
from tests.curation.hostile import make_root, snapshot

FILES = {"README.md": b"card", "eval/test/a/a.csv": b"x,1,2\n", "train/r/s.tfrecord": b"t" * 4096}
BIG = "train/r/s.tfrecord"


def _pull(root, dest, **kw):
    return release.pull("ds:1.0.0", root=str(root), dest=str(dest), show_progress=False, **kw)


class _Counting:
    """Wraps release_store.copy_file and records what it wrote (bytes at most)."""

    def __init__(self) -> None:
        self.real = release_store.copy_file
        self.largest = 0

    def __call__(self, src_fs, src, dst_fs, dst, dst_local, **kw):
        try:
            return self.real(src_fs, src, dst_fs, dst, dst_local, **kw)
        finally:
            if os.path.exists(dst):
                self.largest = max(self.largest, os.path.getsize(dst))


def _endless_fifo(path: Path) -> threading.Thread:
    os.unlink(path)
    os.mkfifo(path)

    def writer() -> None:
        try:
            with open(path, "wb") as f:
                block = b"z" * 65536
                for _ in range(200_000):  # ~13 GB if nobody stops reading; the pull stops after 4 KiB
                    f.write(block)
        except (BrokenPipeError, OSError):
            pass

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_a_root_file_that_never_ends_is_stopped_at_its_size_and_dropped(kind, tmp_path, monkeypatch):
    root = tmp_path / "root"
    base = make_root(root, FILES)
    if kind == "dev-zero":
        (base / BIG).unlink()
        (base / BIG).symlink_to("/dev/zero")
        writer = None
    else:
        writer = _endless_fifo(base / BIG)
    counting = _Counting()
    monkeypatch.setattr(release_store, "copy_file", counting)
    dest = tmp_path / "copy"
    before = snapshot(tmp_path, skip=(str(dest), str(root)))
    with pytest.raises(VerificationError, match=f"{BIG}: the copy in the release root has more than the 4096 bytes"):
        _pull(root, dest, jobs=1)
    assert counting.largest <= 4096  # never more than the manifest says on disk
    assert not (dest / BIG).exists() and not (dest / "manifest.json").exists()
    assert not list(dest.rglob("*.part"))  # the partial was deleted
    assert snapshot(tmp_path, skip=(str(dest), str(root))) == before
    if writer is not None:
        writer.join(timeout=30)
        assert not writer.is_alive()  # the endless writer was cut off (broken pipe), not read to the end


class _Endless(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path.endswith(BIG):  # streams forever, no length
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if body:
                try:
                    for _ in range(100_000):
                        self.wfile.write(b"q" * 65536)
                except (BrokenPipeError, ConnectionResetError):
                    pass
            return
        data = self.files.get(path)
        if data is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def test_an_http_root_whose_file_never_ends_is_stopped(tmp_path):
    root = tmp_path / "root"
    base = make_root(root, FILES)
    _Endless.files = {f"/rel/ds/1.0.0/{p}": (base / p).read_bytes() for p in [*FILES, "manifest.json"]}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Endless)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dest = tmp_path / "copy"
        with pytest.raises(VerificationError, match="more than the 4096 bytes"):
            release.pull(
                "ds:1.0.0", root=f"http://127.0.0.1:{server.server_port}/rel", dest=str(dest), show_progress=False,
                jobs=1,
            )  # fmt: skip
        assert not (dest / BIG).exists() and not (dest / "manifest.json").exists()
        assert sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) < 10_000
    finally:
        server.shutdown()


def test_a_pull_keeps_the_users_own_hidden_and_partial_files(tmp_path):
    root = tmp_path / "root"
    make_root(root, FILES)
    dest = tmp_path / "copy"
    dest.mkdir()
    mine = {".notes.part": b"mine", "eval/.draft.csv.0123456789ab.part": b"also mine", ".cache/x.part": b"x"}
    for rel, data in mine.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
    _pull(root, dest)
    _pull(root, dest)  # and again (a resume)
    for rel, data in mine.items():
        assert (dest / rel).read_bytes() == data
    assert check_dir(str(dest)).ok


def test_a_fresh_folder_with_files_at_the_release_paths_is_refused_untouched(tmp_path, capsys):
    root = tmp_path / "root"
    make_root(root, FILES)
    dest = tmp_path / "copy"
    (dest / "eval" / "test" / "a").mkdir(parents=True)
    (dest / "eval" / "test" / "a" / "a.csv").write_bytes(b"the user's own table")
    before = snapshot(tmp_path, skip=(str(root),))
    with pytest.raises(UserError, match="no pull of ds:1.0.0 made .*eval/test/a/a.csv.*never overwrites"):
        _pull(root, dest)
    after = snapshot(tmp_path, skip=(str(root),))
    assert {k: v for k, v in after.items() if ".audioscope-pull" not in k} == before
    rc = cli.main(["release", "pull", "ds:1.0.0", "--root", str(root), "--to", str(dest)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_link_inside_the_folder_is_never_written_through(tmp_path):
    root = tmp_path / "root"
    make_root(root, FILES)
    outside = tmp_path / "outside"
    (outside / "test" / "a").mkdir(parents=True)
    (outside / "test" / "a" / "a.csv").write_bytes(b"precious")
    dest = tmp_path / "copy"
    _pull(root, dest)
    # a copy whose eval folder is swapped for a link to somewhere else, and whose file there is stale
    import shutil

    shutil.rmtree(dest / "eval")
    (dest / "eval").symlink_to(outside)
    before = snapshot(outside)
    with pytest.raises(UserError, match="eval is a symbolic link: a pull never writes through a link"):
        _pull(root, dest)
    assert snapshot(outside) == before
    with pytest.raises(VerificationError, match="eval is a symbolic link"):
        release.verify_files(str(dest))


def test_two_pulls_into_one_folder_both_end_with_a_verified_copy(tmp_path, monkeypatch):
    root = tmp_path / "root"
    files = {f"train/r/s{i}.tfrecord": os.urandom(50_000) for i in range(12)} | {"README.md": b"card"}
    make_root(root, files)
    real = release_store.copy_file

    def slow(*args, **kw):  # each transfer takes a while, so the two pulls overlap
        import time

        time.sleep(0.02)
        return real(*args, **kw)

    monkeypatch.setattr(release_store, "copy_file", slow)
    dest = tmp_path / "cache"
    results, errors = [], []

    def one() -> None:
        try:
            results.append(_pull(root, dest, jobs=3))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and len(results) == 3
    assert sorted(len(r.transferred) for r in results) == [0, 0, len(files)]  # one moved them, the others waited
    assert check_dir(str(dest)).ok
    assert not list(dest.rglob("*.part"))
