"""Fetch one video to local disk: local paths, http(s), gs://, s3://, pages.

:func:`fetch` is the only entry point. It returns a :class:`LocalMedia` (a
local file ffmpeg can read) or raises :class:`FetchError` with a short
``kind`` and a message that says what happened; ``transient`` tells the
ingest pipeline whether a later run may succeed (it then retries the video;
permanent failures are not retried unless asked).

- **Local files** are used in place (never copied); they must be regular
  files (no FIFOs or devices) within the size limit.
- **http(s)** is streamed to a temporary file with retries and exponential
  backoff on connection errors, stalls (no byte for ``read_timeout_s``), 5xx,
  408 and 429 (honouring ``Retry-After``, capped), and truncated bodies
  (fewer bytes than ``Content-Length``). Other 4xx are final. ``max_bytes``
  is enforced from ``Content-Length`` and while streaming; the whole item has
  a deadline (``timeout_s``). An HTML answer means a *page* URL: it goes to
  yt-dlp.
- **gs:// and s3://** go through fsspec (:func:`audioscope.storage.url_to_fs`:
  a GCS emulator named by ``STORAGE_EMULATOR_HOST`` is reached anonymously;
  s3fs/botocore honour ``AWS_ENDPOINT_URL`` and the usual credential
  variables), with the same retries, size limit and deadline. Public
  buckets need no credentials: without any (or with
  ``FetchLimits(anonymous=True)`` / ``AUDIOSCOPE_ANONYMOUS=1``) requests go
  anonymous. A credentials problem is one failure kind, ``access_denied``,
  with a one-line message that says what to do; it is not retried.
- **Pages** (Flickr, YouTube, any page with an embedded video) use yt-dlp as
  a library with options that cannot run commands: no config files, no exec
  or post-processors, no external downloader, no playlists, output confined
  to the work directory.
"""

from __future__ import annotations

import logging
import os
import random
import stat
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Iterable, TypeVar
from urllib.parse import unquote, urlsplit

from audioscope.errors import ends_the_run

logger = logging.getLogger(__name__)

T = TypeVar("T")

_CHUNK = 1 << 20


@dataclass(frozen=True)
class FetchLimits:
    """Limits and access settings for fetching one item.

    ``anonymous`` reads gs:// and s3:// media without credentials (public
    buckets such as ``s3://multimedia-commons``) even where credentials are
    configured; ``AUDIOSCOPE_ANONYMOUS=1`` in the environment does the same.
    Without either, anonymous access is used only when no credentials are
    found (:func:`audioscope.storage.url_to_fs`). Limits on the media itself
    (duration, picture size) are :func:`audioscope.media.decode`'s.
    """

    max_bytes: int = 4 * 1024**3
    timeout_s: float = 600.0
    connect_timeout_s: float = 20.0
    read_timeout_s: float = 60.0
    retries: int = 4
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    anonymous: bool = False


class FetchError(Exception):
    """A source that could not be fetched.

    kinds: ``not_found``, ``access_denied`` (credentials missing, wrong or
    not allowed to read the object; never retried), ``http_error``,
    ``timeout``, ``too_large``, ``truncated``, ``unsafe_uri``,
    ``page_error``, ``io_error``.
    """

    def __init__(self, kind: str, message: str, transient: bool = False) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.transient = transient

    def __reduce__(self):  # picklable across Beam worker processes
        return (FetchError, (self.kind, self.message, self.transient))


@dataclass(frozen=True)
class LocalMedia:
    path: str
    size: int
    is_temp: bool


class _Retry(Exception):
    """Internal: a transient failure worth another attempt."""

    def __init__(self, error: FetchError, wait_s: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.wait_s = wait_s


def _with_retries(attempt: Callable[[float], T], limits: FetchLimits, what: str) -> T:
    """Run ``attempt(deadline)`` until it succeeds, raises a final FetchError,
    runs out of tries, or the item's deadline passes. Backoff is exponential
    with jitter (seeded by the item, so runs are reproducible)."""
    deadline = time.monotonic() + limits.timeout_s
    rng = random.Random(what)
    last: FetchError | None = None
    for i in range(limits.retries + 1):
        try:
            return attempt(deadline)
        except _Retry as r:
            last = r.error
            if i == limits.retries:
                break
            wait = r.wait_s if r.wait_s is not None else limits.backoff_s * (2**i) * (0.5 + rng.random())
            wait = min(wait, limits.backoff_max_s)
            if time.monotonic() + wait >= deadline:
                raise FetchError("timeout", f"{what}: gave up after {i + 1} tries within {limits.timeout_s:.0f} s ({last.message})", transient=True) from None
            logger.info("retrying %s in %.2f s after: %s", what, wait, last.message)
            time.sleep(wait)
    assert last is not None
    raise FetchError(last.kind, f"{last.message} (after {limits.retries + 1} tries)", transient=True)


def _temp_path(workdir: str, suffix: str) -> str:
    os.makedirs(workdir, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix="fetch-", suffix=suffix, dir=workdir)
    os.close(fd)
    return path


def _suffix(uri: str) -> str:
    ext = os.path.splitext(urlsplit(uri).path)[1]
    return ext if ext.isascii() and 1 < len(ext) <= 6 and ext[1:].isalnum() else ".media"


def _check_size(size: int, limits: FetchLimits, uri: str) -> None:
    if size > limits.max_bytes:
        raise FetchError("too_large", f"{uri} is {size} bytes, over the limit of {limits.max_bytes} (raise --max-bytes to allow it)")


def _copy(
    chunks: Iterable[bytes], path: str, limits: FetchLimits, deadline: float, uri: str, expected: int | None
) -> int:
    """Write ``chunks`` to ``path`` within the size limit and the item's
    deadline; fewer bytes than ``expected`` is a truncated transfer (retried)."""
    n = 0
    with open(path, "wb") as f:
        for chunk in chunks:
            n += len(chunk)
            if n > limits.max_bytes:
                raise FetchError("too_large", f"{uri}: more than {limits.max_bytes} bytes (raise --max-bytes to allow it)")
            if time.monotonic() > deadline:
                raise FetchError("timeout", f"{uri}: not done within {limits.timeout_s:.0f} s", transient=True)
            f.write(chunk)
    if expected is not None and n < expected:
        raise _Retry(FetchError("truncated", f"{uri}: got {n} of {expected} bytes", transient=True))
    return n


# ---------------------------------------------------------------- local files


def _fetch_local(uri: str, limits: FetchLimits) -> LocalMedia:
    path = unquote(urlsplit(uri).path) if uri.startswith("file://") else uri
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FetchError("not_found", f"no such file: {path}") from None
    except OSError as e:
        if ends_the_run(e):
            raise
        raise FetchError("io_error", f"cannot read {path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise FetchError("unsafe_uri", f"{path} is not a regular file (a FIFO, device or folder)")
    _check_size(st.st_size, limits, path)
    return LocalMedia(path=path, size=st.st_size, is_temp=False)


# ---------------------------------------------------------------------- http


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _fetch_http(uri: str, workdir: str, limits: FetchLimits) -> LocalMedia:
    import requests

    path = _temp_path(workdir, _suffix(uri))
    is_page = False

    def attempt(deadline: float) -> LocalMedia:
        nonlocal is_page
        try:
            with requests.get(
                uri, stream=True, timeout=(limits.connect_timeout_s, limits.read_timeout_s),
                # identity: the bytes counted against Content-Length and
                # max_bytes are the bytes on the wire, never a decompressed body.
                headers={"User-Agent": "audioscope-data", "Accept-Encoding": "identity"},
            ) as r:
                if r.status_code in (408, 429) or r.status_code >= 500:
                    raise _Retry(
                        FetchError("http_error", f"{uri}: HTTP {r.status_code}", transient=True),
                        _retry_after(r.headers.get("Retry-After")),
                    )
                if r.status_code in (404, 410):
                    raise FetchError("not_found", f"{uri}: HTTP {r.status_code}")
                if r.status_code >= 400:
                    raise FetchError("http_error", f"{uri}: HTTP {r.status_code} (not retried: the server refuses the request)")
                if r.headers.get("Content-Type", "").split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml"):
                    is_page = True
                    return LocalMedia(path, 0, True)
                expected = r.headers.get("Content-Length")
                expected_n = int(expected) if expected and expected.isdigit() else None
                if expected_n is not None:
                    _check_size(expected_n, limits, uri)
                n = _copy(r.iter_content(_CHUNK), path, limits, deadline, uri, expected_n)
                return LocalMedia(path, n, True)
        except requests.exceptions.ChunkedEncodingError as e:
            # The connection closed before Content-Length bytes came (urllib3's
            # IncompleteRead): a truncated transfer, worth another try.
            raise _Retry(FetchError("truncated", f"{uri}: the body was cut off ({e})", transient=True)) from None
        except (requests.Timeout, requests.ConnectionError) as e:
            # A stall mid-body surfaces as ConnectionError wrapping a read timeout.
            kind = "timeout" if isinstance(e, requests.Timeout) or "timed out" in str(e) else "http_error"
            raise _Retry(FetchError(kind, f"{uri}: {type(e).__name__}: {e}", transient=True)) from None
        except requests.RequestException as e:
            raise FetchError("http_error", f"{uri}: {type(e).__name__}: {e}") from None

    try:
        media = _with_retries(attempt, limits, uri)
    except BaseException:
        _remove(path)
        raise
    if is_page:
        _remove(path)
        return _fetch_page(uri, workdir, limits)
    return media


# --------------------------------------------------------------- gs:// s3://


def _credentials_problem(e: BaseException) -> str | None:
    """What is wrong with the credentials when ``e`` is an access error, else None.

    s3fs turns a 403 (access denied, unknown key id, bad signature) into
    :class:`PermissionError`; gcsfs raises ``OSError("Forbidden: ...")`` for a
    403 and ``HttpError`` with code 401 for refused credentials; botocore and
    google-auth raise their own errors when credentials are missing or
    broken.
    """
    if isinstance(e, PermissionError):
        return str(e) or "access denied"
    if isinstance(e, OSError) and str(e).startswith("Forbidden"):
        return str(e).splitlines()[0]
    if getattr(e, "code", None) in (401, 403) and type(e).__name__ == "HttpError":
        return f"HTTP {e.code}: {str(e).splitlines()[0] if str(e) else 'unauthorized'}"  # type: ignore[attr-defined]
    module = type(e).__module__ or ""
    name = type(e).__name__
    if module.startswith("botocore") and (
        "Credential" in name or "Token" in name or "Sso" in name or "SSO" in name
    ):
        return f"{name}: {e}"
    if module.startswith("google.auth") and name in ("DefaultCredentialsError", "RefreshError", "TransportError"):
        return f"{name}: {e}"
    return None


def _access_message(uri: str, problem: str, anonymous: bool) -> str:
    """One line that says what went wrong and what to do."""
    from audioscope import storage

    problem = " ".join(problem.split())[:200]
    if uri.startswith("s3"):
        anon = anonymous or not storage.aws_credentials_found()
        if anon:
            how = ("the request was anonymous (no AWS credentials found, or anonymous access asked for); "
                   "if the bucket is private, configure AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                   "or AWS_PROFILE) and do not ask for anonymous access")
        else:
            how = ("the configured AWS credentials were refused or may not read it; fix them "
                   f"(AWS_ACCESS_KEY_ID/AWS_PROFILE), or, for a public bucket, read it anonymously "
                   f"(--anonymous, or {storage.ANONYMOUS_ENV}=1)")
    else:
        if anonymous:
            how = ("the request was anonymous; if the bucket is private, configure Google credentials "
                   "(gcloud auth application-default login or GOOGLE_APPLICATION_CREDENTIALS)")
        else:
            how = ("check the Google credentials (gcloud auth application-default login or "
                   "GOOGLE_APPLICATION_CREDENTIALS), or, for a public bucket, read it anonymously "
                   f"(--anonymous, or {storage.ANONYMOUS_ENV}=1)")
    return f"{uri}: access denied ({problem}); {how}"


def _anonymous(limits: FetchLimits) -> bool:
    from audioscope import storage

    return bool(limits.anonymous) or storage.anonymous_from_env()


def _fetch_fsspec(uri: str, workdir: str, limits: FetchLimits) -> LocalMedia:
    from audioscope import storage

    path = _temp_path(workdir, _suffix(uri))
    anonymous = _anonymous(limits)

    def attempt(deadline: float) -> LocalMedia:
        try:
            fs, obj = storage.url_to_fs(uri, anonymous=anonymous)
            info = fs.info(obj)
            if info.get("type") == "directory":
                raise FetchError("not_found", f"{uri} is a folder, not an object")
            size = int(info.get("size") or 0)
            _check_size(size, limits, uri)
            with fs.open(obj, "rb") as src:
                n = _copy(iter(lambda: src.read(_CHUNK), b""), path, limits, deadline, uri, size or None)
            return LocalMedia(path, n, True)
        except FileNotFoundError:
            raise FetchError("not_found", f"no such object: {uri}") from None
        except (FetchError, _Retry):
            raise
        except Exception as e:  # noqa: BLE001 - sorted below; anything else is re-raised
            if ends_the_run(e):  # the scratch disk is full: not worth another try, nor the object's fault
                raise
            problem = _credentials_problem(e)
            if problem is not None:
                raise FetchError("access_denied", _access_message(uri, problem, anonymous)) from None
            if isinstance(e, (OSError, TimeoutError, ConnectionError)):
                raise _Retry(FetchError("io_error", f"{uri}: {type(e).__name__}: {e}", transient=True)) from None
            raise

    try:
        return _with_retries(attempt, limits, uri)
    except BaseException:
        _remove(path)
        raise


def check_access(uri: str, limits: FetchLimits = FetchLimits()) -> None:
    """Raise ``FetchError("access_denied")`` when ``uri`` (gs:// or s3://) cannot be
    read with the credentials (or anonymous access) that :func:`fetch` would use.

    For a launcher: one look at the first remote video of a list tells a
    credentials problem once, in one line, before any worker starts. A missing
    object or any other error is left to the per-video fetch (it is not a
    credentials problem); other schemes are not checked.
    """
    if urlsplit(uri).scheme.lower() not in ("gs", "s3"):
        return
    from audioscope import storage

    anonymous = _anonymous(limits)
    try:
        fs, obj = storage.url_to_fs(uri, anonymous=anonymous)
        fs.info(obj)
    except Exception as e:  # noqa: BLE001 - only a credentials problem is reported here
        problem = _credentials_problem(e)
        if problem is not None:
            raise FetchError("access_denied", _access_message(uri, problem, anonymous)) from None


# --------------------------------------------------------------------- pages


class _YtdlLogger:
    """Keeps yt-dlp's messages so an error carries its text."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        logger.debug("yt-dlp: %s", msg)

    def error(self, msg: str) -> None:
        self.errors.append(msg)


def ytdlp_options(outdir: str, limits: FetchLimits, log: _YtdlLogger) -> dict:
    """yt-dlp options that can only download one file into ``outdir``: no
    config files, no exec, no post-processors, no external downloaders, no
    playlists, restricted file names."""
    return {
        "ignoreconfig": True,
        "noplaylist": True,
        "restrictfilenames": True,
        "windowsfilenames": True,
        "paths": {"home": outdir, "temp": outdir},
        "outtmpl": {"default": "video.%(ext)s"},
        "format": "best[acodec!=none][vcodec!=none]/best",
        "max_filesize": limits.max_bytes,
        "socket_timeout": limits.read_timeout_s,
        "retries": limits.retries,
        "fragment_retries": limits.retries,
        "postprocessors": [],
        "external_downloader": {},
        "noprogress": True,
        "quiet": True,
        "no_warnings": True,
        "logger": log,
        "overwrites": True,
        "cachedir": False,
        "updatetime": False,
        "writeinfojson": False,
        "writethumbnail": False,
        "writesubtitles": False,
    }


def _fetch_page(uri: str, workdir: str, limits: FetchLimits) -> LocalMedia:
    import yt_dlp

    os.makedirs(workdir, exist_ok=True)
    outdir = tempfile.mkdtemp(prefix="page-", dir=workdir)
    log = _YtdlLogger()
    try:
        with yt_dlp.YoutubeDL(ytdlp_options(outdir, limits, log)) as ydl:
            ydl.download([uri])
    except yt_dlp.utils.DownloadError as e:
        _remove_tree(outdir)
        msg = "; ".join(log.errors) or str(e)
        transient = any(s in msg for s in ("timed out", "HTTP Error 5", "Connection"))
        raise FetchError("page_error", f"{uri}: yt-dlp could not get a video: {msg}", transient=transient) from None
    files = [os.path.join(outdir, f) for f in os.listdir(outdir) if not f.endswith((".part", ".ytdl"))]
    if len(files) != 1:
        _remove_tree(outdir)
        raise FetchError("page_error", f"{uri}: yt-dlp produced {len(files)} files, expected one video")
    # Move the file next to the other temporaries so cleanup is one remove.
    final = _temp_path(workdir, os.path.splitext(files[0])[1] or ".media")
    os.replace(files[0], final)
    _remove_tree(outdir)
    size = os.path.getsize(final)
    if size > limits.max_bytes:
        _remove(final)
        raise FetchError("too_large", f"{uri}: {size} bytes, over the limit of {limits.max_bytes}")
    return LocalMedia(final, size, True)


# --------------------------------------------------------------------- entry


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def fetch(uri: str, workdir: str, limits: FetchLimits = FetchLimits()) -> LocalMedia:
    """Make ``uri`` available as a local file (see the module docstring).

    ``workdir`` holds temporary downloads; the caller removes a returned file
    whose ``is_temp`` is true when done with it.
    """
    if any(ord(c) < 32 for c in uri):
        raise FetchError("unsafe_uri", f"{uri!r} contains control characters")
    scheme = urlsplit(uri).scheme.lower()
    if scheme in ("", "file") or len(scheme) == 1:
        return _fetch_local(uri, limits)
    if scheme in ("http", "https"):
        return _fetch_http(uri, workdir, limits)
    if scheme in ("gs", "s3"):
        return _fetch_fsspec(uri, workdir, limits)
    raise FetchError("unsafe_uri", f"{uri}: scheme {scheme!r} is not supported (use a local path, http(s)://, gs:// or s3://)")


__all__ = ["FetchError", "FetchLimits", "LocalMedia", "check_access", "fetch", "ytdlp_options"]
