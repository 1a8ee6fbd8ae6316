"""fsspec helpers: the same calls for local paths, ``gs://`` and ``s3://``.

Writes are atomic so that a reader (or a resumed run) never takes a partial
file for a result: on a local file system the bytes go to a hidden temporary
name in the same directory (``.NAME.<random>.tmp``) and are renamed into
place; on object stores one ``put`` of a whole object is already atomic.
Listing helpers skip hidden names, so leftover temporary files of a killed
run are never seen as results.
"""

from __future__ import annotations

import functools
import os
import posixpath
import uuid
from typing import IO, Any, Iterator, Sequence

import fsspec
from fsspec import AbstractFileSystem

from audioscope import uris

Pathlike = str | os.PathLike[str]


#: gcsfs sends every request to this address when it is set (a GCS emulator).
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"

#: Set to 1 (or true/yes) to read source media from gs:// and s3:// without
#: credentials even when some are configured (public buckets such as
#: ``s3://multimedia-commons``). Without it, anonymous access is used only
#: when no credentials are found. It applies to media sources only
#: (:func:`audioscope.sources.fetch.fetch`), never to writes to a store.
ANONYMOUS_ENV = "AUDIOSCOPE_ANONYMOUS"

#: The environment variables that decide which AWS credentials botocore finds.
_AWS_CREDENTIAL_ENV = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_EC2_METADATA_DISABLED",
)


def anonymous_from_env() -> bool:
    """True when ``AUDIOSCOPE_ANONYMOUS`` asks for anonymous reads of media."""
    return os.environ.get(ANONYMOUS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


@functools.lru_cache(maxsize=8)
def _aws_credentials_found(env: tuple[str | None, ...]) -> bool:
    """Whether botocore finds any AWS credentials (for this environment).

    The lookup walks botocore's whole chain (variables, files, SSO, container
    and instance metadata), which can take a second off AWS, so its answer is
    kept per process for each value of the variables that decide it.
    """
    del env  # the cache key
    import botocore.session

    try:
        return botocore.session.get_session().get_credentials() is not None
    except Exception:  # noqa: BLE001 - a broken profile: let the request say what is wrong
        return True


def aws_credentials_found() -> bool:
    return _aws_credentials_found(tuple(os.environ.get(k) for k in _AWS_CREDENTIAL_ENV))


def url_to_fs(uri: Pathlike, *, anonymous: bool = False) -> tuple[AbstractFileSystem, str]:
    """The file system of ``uri`` and the path inside it.

    A ``gs://`` URI while ``STORAGE_EMULATOR_HOST`` is set (a GCS emulator)
    gets gcsfs's JSON-API filesystem, anonymous and uncached: an emulator
    takes no credentials (real ones found on the machine must not be sent to
    it), and fsspec's default gcsfs class first asks for the bucket type over
    gRPC, which an emulator answers only after a minute of retries. Uncached,
    a listing always sees what other processes (Beam workers) wrote. Real
    GCS and S3 use fsspec's defaults: gcsfs and s3fs find credentials and
    endpoints (``AWS_ENDPOINT_URL``) by themselves.

    Public buckets need no credentials: ``s3://`` goes anonymous (unsigned
    requests) when botocore finds no AWS credentials, as gcsfs already does
    for ``gs://``. ``anonymous=True`` forces it (``token="anon"`` for gcsfs,
    ``anon=True`` for s3fs) even where credentials exist, e.g. when the
    configured keys belong to another account or have expired.
    """
    uri_s = os.fspath(uri)
    if uri_s.startswith("gs://") and os.environ.get(EMULATOR_ENV):
        from gcsfs.core import GCSFileSystem

        fs = GCSFileSystem(token="anon", skip_instance_cache=True)
        return fs, fs._strip_protocol(uri_s)
    if uri_s.startswith(("s3://", "s3a://")) and (anonymous or not aws_credentials_found()):
        return fsspec.core.url_to_fs(uri_s, anon=True)  # type: ignore[no-any-return]
    if uri_s.startswith(("gs://", "gcs://")) and anonymous:
        return fsspec.core.url_to_fs(uri_s, token="anon")  # type: ignore[no-any-return]
    fs, path = fsspec.core.url_to_fs(uri_s)
    return fs, path


is_local = uris.is_local


def join(base: Pathlike, *parts: str) -> str:
    """Join path parts with ``/`` (kept as a URI when ``base`` is one)."""
    base_s = os.fspath(base)
    if is_local(base_s) and not base_s.startswith(uris.FILE_SCHEME):
        return os.path.join(base_s, *parts)
    return posixpath.join(base_s.rstrip("/"), *parts)


def exists(uri: Pathlike) -> bool:
    fs, path = url_to_fs(uri)
    return bool(fs.exists(path))


def read_bytes(uri: Pathlike) -> bytes:
    fs, path = url_to_fs(uri)
    return bytes(fs.cat_file(path))


def read_text(uri: Pathlike) -> str:
    return read_bytes(uri).decode("utf-8")


def read_lines(uri: Pathlike) -> list[str]:
    """The non-blank lines of a text file (JSON-lines shards, lists)."""
    return [line for line in read_text(uri).splitlines() if line.strip()]


def open_file(uri: Pathlike, mode: str = "rb") -> IO[bytes]:
    """Open a file for reading (use :func:`atomic_write` for writing)."""
    fs, path = url_to_fs(uri)
    return fs.open(path, mode)  # type: ignore[no-any-return]


def size(uri: Pathlike) -> int:
    fs, path = url_to_fs(uri)
    return int(fs.size(path))


def sizes(files: Sequence[Pathlike]) -> list[int]:
    """The sizes of ``files``, in order: on object storage one listing per folder, not a request per file."""
    listed: dict[str, int] = {}
    out: list[int] = []
    for uri in files:
        fs, path = url_to_fs(uri)
        if path not in listed and not is_local(str(uri)):
            folder = posixpath.dirname(path)
            listed.update({info["name"].rstrip("/"): int(info.get("size") or 0)
                           for info in fs.ls(folder, detail=True)})  # fmt: skip
        out.append(listed[path] if path in listed else int(fs.size(path)))
    return out


#: The end of the temporary file a local :func:`atomic_write` renames into place
#: (``.NAME.<12 hex>.tmp`` beside it).
_TMP_SUFFIX = ".tmp"


def is_atomic_write_leftover(name: str) -> bool:
    """Whether a file name is that of :func:`atomic_write`'s temporary file, which a process
    killed inside the write leaves behind."""
    return name.startswith(".") and name.endswith(_TMP_SUFFIX)


def atomic_write(
    uri: Pathlike, data: bytes | str, mode: int | None = None, content_type: str | None = None
) -> None:
    """Write a whole file so that readers see either nothing or all of it.

    ``mode`` (local files only) creates the file with these permissions from
    the start, e.g. 0o600 for secrets that must never be readable by others.
    ``content_type`` (gs:// and s3:// only) is the object's Content-Type, the
    header a browser gets when it fetches the object (e.g. ``video/mp4``);
    object stores otherwise say ``application/octet-stream``.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    fs, path = url_to_fs(uri)
    if is_local(uri):
        parent = os.path.dirname(path) or "."
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}{_TMP_SUFFIX}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as e:
            if os.path.exists(tmp):
                os.remove(tmp)
            if isinstance(e, OSError) and e.errno is not None and e.filename is None:  # say which file
                raise OSError(e.errno, e.strerror, os.fspath(uri)) from e
            raise
    else:
        fs.pipe_file(path, payload, **_content_type_kwargs(fs, content_type))


def _content_type_kwargs(fs: Any, content_type: str | None) -> dict[str, str]:
    """How each object store's fsspec writer takes a Content-Type."""
    if content_type is None:
        return {}
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    if "gs" in protocols or "gcs" in protocols:
        return {"content_type": content_type}
    if "s3" in protocols or "s3a" in protocols:
        return {"ContentType": content_type}
    return {}


def remove(uri: Pathlike) -> None:
    """Remove a file if it exists."""
    fs, path = url_to_fs(uri)
    if fs.exists(path):
        fs.rm_file(path)


def makedirs(uri: Pathlike) -> None:
    fs, path = url_to_fs(uri)
    fs.makedirs(path, exist_ok=True)


def _visible(path: str) -> bool:
    return not posixpath.basename(path.rstrip("/")).startswith(".")


def _with_protocol(uri: Pathlike, fs: AbstractFileSystem, path: str) -> str:
    """A path found by ``fs`` written the way ``uri`` was (URI stays URI)."""
    uri_s = os.fspath(uri)
    if is_local(uri_s):
        return path
    protocol = uri_s.split("://", 1)[0]
    return f"{protocol}://{path.lstrip('/')}"


def list_dirs(uri: Pathlike) -> list[str]:
    """The sub-folders directly under ``uri`` (none if it does not exist), sorted."""
    fs, path = url_to_fs(uri)
    if not fs.exists(path):
        return []
    found = [e["name"].rstrip("/") for e in fs.ls(path, detail=True) if e.get("type") == "directory"]
    return sorted(_with_protocol(uri, fs, p) for p in found if _visible(p))


def glob(pattern: Pathlike) -> list[str]:
    """Files matching a glob pattern, sorted, hidden (temporary) names skipped.

    Results carry the protocol of ``pattern`` (``gs://...`` stays ``gs://...``).
    """
    fs, path = url_to_fs(pattern)
    found = [p for p in fs.glob(path) if _visible(p)]
    return sorted(_with_protocol(pattern, fs, p) for p in found)


def list_files(uri: Pathlike, suffix: str = "") -> list[str]:
    """All files under ``uri`` (recursive) ending with ``suffix``, sorted."""
    fs, path = url_to_fs(uri)
    if not fs.exists(path):
        return []
    found = [p for p in fs.find(path) if _visible(p) and p.endswith(suffix)]
    return sorted(_with_protocol(uri, fs, p) for p in found)


def iter_sizes(uri: Pathlike) -> Iterator[tuple[str, int]]:
    """(path, size) of every visible file under ``uri``."""
    fs, path = url_to_fs(uri)
    if not fs.exists(path):
        return
    for p, info in sorted(fs.find(path, detail=True).items()):
        if _visible(p):
            yield _with_protocol(uri, fs, p), int(info.get("size") or 0)
