"""audioscope.storage: atomic writes and listings, local and through fsspec."""

from __future__ import annotations

import errno
import os

import fsspec
import pytest

from audioscope import storage


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a" / "b" / "x.json"
    storage.atomic_write(str(target), "one")
    storage.atomic_write(str(target), b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(target.parent) == ["x.json"]
    assert storage.read_text(str(target)) == "two"
    assert storage.size(str(target)) == 3


def test_failed_write_keeps_old_content(tmp_path, monkeypatch):
    target = tmp_path / "x.bin"
    storage.atomic_write(str(target), b"old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        storage.atomic_write(str(target), b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["x.bin"]


def test_a_failed_write_names_its_file(tmp_path, monkeypatch):
    """The OSError of a write (a full disk) names no file; atomic_write's names the one it was writing."""

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", lambda fd: full(fd, b""))
    with pytest.raises(OSError) as caught:
        storage.atomic_write(str(tmp_path / "x.bin"), b"new")
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "x.bin")
    assert os.listdir(tmp_path) == []


def test_listing_skips_hidden_temporaries(tmp_path):
    (tmp_path / "s" / "ab").mkdir(parents=True)
    (tmp_path / "s" / "ab" / "v1.json").write_text("{}")
    (tmp_path / "s" / "ab" / ".v2.json.123.tmp").write_text("{")
    (tmp_path / "s" / "ab" / "notes.txt").write_text("")
    assert storage.list_files(str(tmp_path / "s"), ".json") == [str(tmp_path / "s" / "ab" / "v1.json")]
    assert storage.glob(str(tmp_path / "s" / "*" / "*")) == [
        str(tmp_path / "s" / "ab" / "notes.txt"),
        str(tmp_path / "s" / "ab" / "v1.json"),
    ]
    assert storage.list_files(str(tmp_path / "missing")) == []
    assert [p for p, _ in storage.iter_sizes(str(tmp_path / "s"))] == [
        str(tmp_path / "s" / "ab" / "notes.txt"), str(tmp_path / "s" / "ab" / "v1.json")
    ]


def test_uris_keep_their_protocol():
    fs = fsspec.filesystem("memory")
    fs.store.clear()
    storage.atomic_write("memory://bucket/store/status/ab/v.json", '{"a": 1}')
    assert storage.exists("memory://bucket/store/status/ab/v.json")
    assert storage.glob("memory://bucket/store/status/*/*.json") == ["memory://bucket/store/status/ab/v.json"]
    assert storage.list_files("memory://bucket/store", ".json") == ["memory://bucket/store/status/ab/v.json"]
    assert storage.join("memory://bucket/store/", "status", "x") == "memory://bucket/store/status/x"
    storage.remove("memory://bucket/store/status/ab/v.json")
    assert not storage.exists("memory://bucket/store/status/ab/v.json")
    assert storage.join("/tmp/s", "a", "b") == os.path.join("/tmp/s", "a", "b")
    assert storage.is_local("/x") and not storage.is_local("gs://b/x")


def test_list_dirs(tmp_path):
    (tmp_path / "ab").mkdir()
    (tmp_path / "cd").mkdir()
    (tmp_path / "f.txt").write_text("")
    assert storage.list_dirs(str(tmp_path)) == [str(tmp_path / "ab"), str(tmp_path / "cd")]
    assert storage.list_dirs(str(tmp_path / "none")) == []
    storage.atomic_write("memory://lb/s/xy/a.json", "{}")
    assert storage.list_dirs("memory://lb/s") == ["memory://lb/s/xy"]


@pytest.mark.integration
def test_gs_on_an_emulator_goes_anonymous_and_lists_fresh(tmp_path):
    """With STORAGE_EMULATOR_HOST set, gs:// reaches the emulator without credentials, even where the machine has
    some (fsspec's default gcsfs would spend them on a token request to Google, and fail offline), and a listing
    sees an object another filesystem instance wrote after the previous listing."""
    from gcsfs.core import GCSFileSystem

    from tests.gcs_emulator import GcsEmulator, pointed_at

    adc = tmp_path / "adc.json"
    adc.write_text('{"type": "authorized_user", "client_id": "x", "client_secret": "y", "refresh_token": "z"}')
    with GcsEmulator(bucket="store") as emu, pointed_at(emu.url) as mp:
        mp.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
        storage.atomic_write("gs://store/s/a.json", '{"a": 1}')
        assert storage.read_text("gs://store/s/a.json") == '{"a": 1}'
        assert storage.list_files("gs://store/s", ".json") == ["gs://store/s/a.json"]
        GCSFileSystem(token="anon", skip_instance_cache=True).pipe_file("store/s/b.json", b"{}")
        assert storage.glob("gs://store/s/*.json") == ["gs://store/s/a.json", "gs://store/s/b.json"]
        assert storage.sizes(["gs://store/s/b.json", "gs://store/s/a.json"]) == [2, 8]
        storage.remove("gs://store/s/a.json")
        assert not storage.exists("gs://store/s/a.json")


def test_sizes_lists_each_folder_of_object_storage_once(tmp_path, monkeypatch):
    """The sizes of many shards on object storage come from one listing per folder, in the order asked;
    a local file is sized directly."""
    for name, data in (("a", b"12345"), ("b", b""), ("c", b"123")):
        storage.atomic_write(f"memory://sz/d/{name}.tfrecord", data)
    storage.atomic_write("memory://sz/e/x.tfrecord", b"1234567")
    (tmp_path / "local.bin").write_bytes(b"12")
    fs, _ = storage.url_to_fs("memory://sz")
    listings: list[str] = []
    real_ls = type(fs).ls

    def ls(self, path, *args, **kwargs):
        listings.append(path)
        return real_ls(self, path, *args, **kwargs)

    monkeypatch.setattr(type(fs), "ls", ls)
    files = ["memory://sz/d/c.tfrecord", "memory://sz/e/x.tfrecord", "memory://sz/d/a.tfrecord",
             str(tmp_path / "local.bin"), "memory://sz/d/b.tfrecord"]  # fmt: skip
    assert storage.sizes(files) == [3, 7, 5, 2, 0]
    assert len(listings) == 2
