"""gs:// and s3:// for real, on 127.0.0.1: a GCS emulator
(gcp-storage-emulator, reached by gcsfs through STORAGE_EMULATOR_HOST) and
moto's S3 server (reached by s3fs through AWS_ENDPOINT_URL)."""

from __future__ import annotations

import socket

import pytest

from audioscope.sources.fetch import FetchError, FetchLimits, fetch

pytestmark = pytest.mark.integration

FAST = FetchLimits(retries=1, backoff_s=0.01, timeout_s=30)
MEDIA = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 64


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def gcs(monkeypatch):
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="media")
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    from gcsfs.core import GCSFileSystem  # the JSON-API filesystem (see storage.url_to_fs)

    try:
        yield GCSFileSystem(token="anon", skip_instance_cache=True)
    finally:
        server.stop()


@pytest.fixture()
def s3(monkeypatch):
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }.items():
        monkeypatch.setenv(k, v)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    try:
        yield s3fs.S3FileSystem(endpoint_url=f"http://127.0.0.1:{port}")
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()


def test_gs_objects_are_fetched_and_missing_ones_reported(gcs, tmp_path):
    with gcs.open("media/videos/a.mp4", "wb") as f:
        f.write(MEDIA)
    got = fetch("gs://media/videos/a.mp4", str(tmp_path), FAST)
    assert got.is_temp and open(got.path, "rb").read() == MEDIA
    with pytest.raises(FetchError) as e:
        fetch("gs://media/videos/nope.mp4", str(tmp_path), FAST)
    assert e.value.kind == "not_found" and not e.value.transient


def test_s3_objects_are_fetched_and_missing_ones_reported(s3, tmp_path):
    s3.mkdir("media")
    with s3.open("media/videos/a.mp4", "wb") as f:
        f.write(MEDIA)
    got = fetch("s3://media/videos/a.mp4", str(tmp_path), FAST)
    assert got.is_temp and open(got.path, "rb").read() == MEDIA
    with pytest.raises(FetchError) as e:
        fetch("s3://media/videos/nope.mp4", str(tmp_path), FAST)
    assert e.value.kind == "not_found"


def test_atomic_write_gives_objects_their_content_type(gcs, s3):
    """What a browser is told when it fetches the object (a rendered clip is video/mp4)."""
    from audioscope import storage

    s3.makedirs("rendered", exist_ok=True)  # moto keeps buckets across servers in one process
    storage.atomic_write("gs://media/clips/a.mp4", MEDIA, content_type="video/mp4")
    storage.atomic_write("s3://rendered/clips/a.mp4", MEDIA, content_type="video/mp4")
    storage.atomic_write("s3://rendered/clips/b.bin", MEDIA)
    assert gcs.info("media/clips/a.mp4")["contentType"] == "video/mp4"
    assert s3.info("rendered/clips/a.mp4")["ContentType"] == "video/mp4"
    assert storage.read_bytes("s3://rendered/clips/a.mp4") == MEDIA
    assert s3.info("rendered/clips/b.bin")["ContentType"] != "video/mp4"
