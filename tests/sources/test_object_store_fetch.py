"""gs:// and s3:// for real, on 127.0.0.1: a GCS emulator
(gcp-storage-emulator, reached by gcsfs through STORAGE_EMULATOR_HOST) and
moto's S3 server (reached by s3fs through AWS_ENDPOINT_URL)."""

from __future__ import annotations

import os
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


# --------------------------------------------------------------------------- #
# public buckets without credentials (s3://multimedia-commons is one)

_NO_AWS_CREDENTIALS = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AUDIOSCOPE_ANONYMOUS",
)


@pytest.fixture()
def public_s3(monkeypatch, tmp_path):
    """An S3 server holding a public bucket (public-read objects) and a private
    one; this process has no AWS credentials at all (no variables, no files,
    no instance metadata)."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    import boto3

    owner = boto3.client(  # the publisher, with its own keys
        "s3", endpoint_url=url, aws_access_key_id="owner", aws_secret_access_key="owner", region_name="us-east-1",
    )
    owner.create_bucket(Bucket="commons")
    owner.create_bucket(Bucket="private")
    for k in _NO_AWS_CREDENTIALS:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    try:
        yield owner, url
    finally:
        _enforce_auth(url, False)
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()


def _enforce_auth(url: str, on: bool) -> None:
    """moto checks every request's signature and keys when ``on`` (its reset-auth call)."""
    import urllib.request

    req = urllib.request.Request(
        f"{url}/moto-api/reset-auth", data=b"0" if on else b"inf", method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


def test_public_bucket_is_read_without_credentials(public_s3, tmp_path):
    from audioscope import storage

    owner, _ = public_s3
    owner.put_object(Bucket="commons", Key="data/videos/mp4/a.mp4", Body=MEDIA, ACL="public-read")
    assert not storage.aws_credentials_found()
    fs, _ = storage.url_to_fs("s3://commons/data/videos/mp4/a.mp4")
    assert fs.anon  # unsigned requests: botocore would refuse to sign without keys
    got = fetch("s3://commons/data/videos/mp4/a.mp4", str(tmp_path / "work"), FAST)
    assert open(got.path, "rb").read() == MEDIA


def test_a_compressed_list_on_a_public_bucket_is_read_without_credentials(public_s3):
    """The list reader goes through the same storage layer as the media (before: fsspec's defaults, which sign
    every request and fail with no AWS keys)."""
    import gzip

    from audioscope.sources.lists import VideoRequest, read_video_list

    owner, _ = public_s3
    body = gzip.compress(b"videos/a.mp4\nvideos/b.mp4\n")
    owner.put_object(Bucket="commons", Key="lists/videos.txt.gz", Body=body, ACL="public-read")
    items = list(read_video_list("s3://commons/lists/videos.txt.gz", media_root="s3://commons"))
    assert [i.uri for i in items if isinstance(i, VideoRequest)] == [
        "s3://commons/videos/a.mp4", "s3://commons/videos/b.mp4",
    ]


def test_private_object_without_credentials_is_one_clear_access_denied(public_s3, tmp_path):
    owner, _ = public_s3
    owner.put_object(Bucket="private", Key="a.mp4", Body=MEDIA)  # not public
    with pytest.raises(FetchError) as e:
        fetch("s3://private/a.mp4", str(tmp_path / "work"), FetchLimits(retries=3, backoff_s=5, timeout_s=30))
    err = e.value
    assert err.kind == "access_denied" and not err.transient  # not retried: 3 tries x 5 s would exceed the test
    assert "\n" not in err.message and "Traceback" not in err.message
    assert "s3://private/a.mp4" in err.message and "no AWS credentials found" in err.message
    assert "AWS_ACCESS_KEY_ID" in err.message  # says what to do
    assert not os.listdir(tmp_path / "work")  # no partial download left


def test_bad_credentials_are_one_clear_access_denied_and_anonymous_gets_around_them(public_s3, monkeypatch, tmp_path):
    from audioscope import storage

    owner, url = public_s3
    owner.put_object(Bucket="commons", Key="a.mp4", Body=MEDIA, ACL="public-read")
    owner.put_object(Bucket="private", Key="a.mp4", Body=MEDIA)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXPIREDORWRONG00")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    assert storage.aws_credentials_found()
    _enforce_auth(url, True)  # the server now checks keys, as S3 does: these are unknown to it
    try:
        with pytest.raises(FetchError) as e:
            fetch("s3://commons/a.mp4", str(tmp_path), FAST)
    finally:
        _enforce_auth(url, False)
    assert e.value.kind == "access_denied" and not e.value.transient and "\n" not in e.value.message
    assert "configured AWS credentials were refused" in e.value.message and "--anonymous" in e.value.message

    # Forcing anonymous access sends no keys: the public object is read, the
    # private one is refused although keys are configured (they are not sent).
    anon = FetchLimits(retries=1, backoff_s=0.01, timeout_s=30, anonymous=True)
    assert open(fetch("s3://commons/a.mp4", str(tmp_path), anon).path, "rb").read() == MEDIA
    with pytest.raises(FetchError) as e:
        fetch("s3://private/a.mp4", str(tmp_path), anon)
    assert e.value.kind == "access_denied" and "anonymous" in e.value.message
    # ... and so does the environment variable, for runs whose CLI has no flag
    monkeypatch.setenv("AUDIOSCOPE_ANONYMOUS", "1")
    with pytest.raises(FetchError) as e:
        fetch("s3://private/a.mp4", str(tmp_path), FAST)
    assert e.value.kind == "access_denied" and "the request was anonymous" in e.value.message
    assert open(fetch("s3://commons/a.mp4", str(tmp_path), FAST).path, "rb").read() == MEDIA


def test_a_public_bucket_ingests_and_a_private_one_fails_with_one_reason(public_s3, tmp_path):
    """The per-video unit of work of ingest on s3:// sources with no credentials anywhere."""
    import json
    import subprocess

    from audioscope.clipstore.format import Layout, StoreParams, init_store
    from audioscope.clipstore.writer import STATUS_FAILED, STATUS_OK, IngestSettings, ingest_video, read_status
    from audioscope.sources.lists import VideoRequest

    owner, _ = public_s3
    video = tmp_path / "v.mp4"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=160x120:r=25:d=6",
         "-f", "lavfi", "-i", "sine=f=440:d=6", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
         "-shortest", str(video)],
        check=True,
    )
    owner.put_object(Bucket="commons", Key="data/videos/mp4/123/abc.mp4", Body=video.read_bytes(), ACL="public-read")
    owner.put_object(Bucket="private", Key="abc.mp4", Body=video.read_bytes())
    store = str(tmp_path / "store")
    init_store(Layout(store), StoreParams())
    settings = IngestSettings(store=store, params=StoreParams(), limits=FAST)

    def request(video_id: str, uri: str) -> VideoRequest:
        return VideoRequest(video_id=video_id, uri=uri, spans=None, split=None, licence_name=None,
                            licence_url=None, origin="test")

    ok, _ = ingest_video(request("pub", "s3://commons/data/videos/mp4/123/abc.mp4"), settings, str(tmp_path / "w"))
    assert ok.status == STATUS_OK and ok.n_clips == 2
    bad, _ = ingest_video(request("priv", "s3://private/abc.mp4"), settings, str(tmp_path / "w"))
    assert bad.status == STATUS_FAILED and bad.kind == "access_denied" and not bad.transient
    assert "\n" not in bad.message and "Traceback" not in json.dumps(bad.to_json())
    assert read_status(Layout(store), "priv") == bad


def test_gs_can_be_forced_anonymous(monkeypatch):
    from audioscope import storage

    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    fs, path = storage.url_to_fs("gs://public-bucket/a.mp4", anonymous=True)
    assert fs.credentials.method == "anon" and path == "public-bucket/a.mp4"


def _credential_errors():
    import botocore.exceptions
    from gcsfs.retry import HttpError
    from google.auth.exceptions import DefaultCredentialsError, RefreshError

    return [
        ("gs://b/o.mp4", OSError("Forbidden: b/o.mp4\nanonymous caller does not have storage.objects.get access")),
        ("gs://b/o.mp4", HttpError({"code": 401, "message": "Invalid Credentials"})),
        ("gs://b/o.mp4", DefaultCredentialsError("File /nope.json was not found.")),
        ("gs://b/o.mp4", RefreshError("invalid_grant: Token has been expired or revoked.")),
        ("s3://b/o.mp4", PermissionError("The AWS Access Key Id you provided does not exist in our records.")),
        ("s3://b/o.mp4", botocore.exceptions.NoCredentialsError()),
        ("s3://b/o.mp4", botocore.exceptions.PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY")),
    ]


@pytest.mark.parametrize("uri,error", _credential_errors(), ids=lambda x: type(x).__name__ if isinstance(x, Exception) else x)
def test_every_credentials_error_of_gcsfs_s3fs_and_their_auth_libraries_is_access_denied(uri, error, tmp_path, monkeypatch):
    """The errors each library raises for refused or missing credentials (as
    their code raises them: gcsfs's 403 is an OSError("Forbidden: ..."), its
    401 an HttpError) become one access_denied, tried once."""
    from audioscope import storage

    calls = []

    class Refusing:
        def info(self, path):
            calls.append(path)
            raise error

    monkeypatch.setattr(storage, "url_to_fs", lambda u, anonymous=False: (Refusing(), u.split("://", 1)[1]))
    # The message says whether AWS credentials exist; botocore's chain would end at the instance metadata
    # server (169.254.169.254), as it should on EC2. This machine is not one.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(FetchError) as e:
        fetch(uri, str(tmp_path), FetchLimits(retries=3, backoff_s=0.01, timeout_s=30))
    assert e.value.kind == "access_denied" and not e.value.transient and len(calls) == 1
    assert "\n" not in e.value.message and e.value.message.startswith(f"{uri}: access denied (")
    assert ("--anonymous" in e.value.message) or ("the request was anonymous" in e.value.message)


def test_other_io_errors_are_still_retried_as_transient(tmp_path, monkeypatch):
    from audioscope import storage

    calls = []

    class Flaky:
        def info(self, path):
            calls.append(path)
            raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(storage, "url_to_fs", lambda u, anonymous=False: (Flaky(), u.split("://", 1)[1]))
    with pytest.raises(FetchError) as e:
        fetch("gs://b/o.mp4", str(tmp_path), FetchLimits(retries=2, backoff_s=0.01, timeout_s=30))
    assert e.value.kind == "io_error" and e.value.transient and len(calls) == 3


def test_check_access_tells_a_credentials_problem_once_before_any_download(public_s3, tmp_path):
    from audioscope.sources.fetch import check_access

    owner, _ = public_s3
    owner.put_object(Bucket="commons", Key="a.mp4", Body=MEDIA, ACL="public-read")
    owner.put_object(Bucket="private", Key="a.mp4", Body=MEDIA)
    check_access("s3://commons/a.mp4")  # public: fine without credentials
    check_access("s3://commons/missing.mp4")  # missing is the video's own failure, not the run's
    check_access(str(tmp_path / "local.mp4"))  # not an object store: nothing to check
    with pytest.raises(FetchError) as e:
        check_access("s3://private/a.mp4")
    assert e.value.kind == "access_denied" and "\n" not in e.value.message
