"""Fetching over http(s) from a real server on 127.0.0.1 that injects
failures, and a page URL through yt-dlp's generic extractor."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from audioscope.sources.fetch import FetchError, FetchLimits, fetch, ytdlp_options

pytestmark = pytest.mark.integration

FAST = FetchLimits(retries=3, backoff_s=0.01, backoff_max_s=0.05, read_timeout_s=0.5, timeout_s=20)


class _Server:
    """Paths: /flaky (503 twice, then the media), /busy (429 + Retry-After: 0
    once), /stall (headers, then silence), /cut (a short body, always),
    /cut-once (short the first time), /missing (404), /big (a huge
    Content-Length), /page (HTML with the media), /empty-page (HTML, no video),
    /media.mp4."""

    def __init__(self, media: bytes) -> None:
        self.media = media
        self.hits: dict[str, int] = {}
        self.down = True  # /outage.mp4 answers 503 while this is true
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, code, body=b"", ctype="video/mp4", length=None, extra=()):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                for k, v in extra:
                    self.send_header(k, v)
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def do_GET(self):
                path = self.path.split("?")[0]
                n = server.hits[path] = server.hits.get(path, 0) + 1
                m = server.media
                if path == "/flaky":
                    return self._send(503, b"busy") if n <= 2 else self._send(200, m)
                if path == "/busy":
                    return self._send(429, b"", extra=[("Retry-After", "0")]) if n == 1 else self._send(200, m)
                if path == "/stall":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(m)))
                    self.end_headers()
                    self.wfile.write(m[:100])
                    self.wfile.flush()
                    time.sleep(3)
                    return None
                if path == "/cut" or (path == "/cut-once" and n == 1):
                    return self._send(200, m[: len(m) // 2], length=len(m))
                if path == "/cut-once":
                    return self._send(200, m)
                if path == "/big":
                    return self._send(200, b"", length=10**12)
                if path == "/outage.mp4":
                    return self._send(503, b"down") if server.down else self._send(200, m)
                if path in ("/media.mp4",):
                    return self._send(200, m)
                if path == "/page":
                    port = self.server.server_address[1]
                    html = (f'<html><head><meta property="og:video" content="http://127.0.0.1:{port}/media.mp4">'
                            f'</head><body><video src="/media.mp4"></video></body></html>').encode()
                    return self._send(200, html, ctype="text/html; charset=utf-8")
                if path == "/empty-page":
                    return self._send(200, b"<html><body>nothing here</body></html>", ctype="text/html")
                return self._send(404, b"no")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=2",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000:duration=2",
         "-c:v", "libx264", "-c:a", "aac", "-shortest", str(path)],
        check=True,
    )
    return path.read_bytes()


@pytest.fixture()
def server(media):
    with _Server(media) as s:
        yield s


def _left(workdir) -> list[str]:
    return [f for f in os.listdir(workdir)] if os.path.isdir(workdir) else []


def test_5xx_and_429_are_retried_until_the_media_comes(server, media, tmp_path):
    got = fetch(f"{server.url}/flaky", str(tmp_path), FAST)
    assert open(got.path, "rb").read() == media and got.is_temp
    assert server.hits["/flaky"] == 3
    got = fetch(f"{server.url}/busy", str(tmp_path / "b"), FAST)
    assert got.size == len(media) and server.hits["/busy"] == 2


def test_a_stall_is_a_transient_timeout_and_leaves_no_file(server, tmp_path):
    with pytest.raises(FetchError) as e:
        fetch(f"{server.url}/stall", str(tmp_path), FetchLimits(retries=1, backoff_s=0.01, read_timeout_s=0.5, timeout_s=20))
    assert e.value.kind == "timeout" and e.value.transient
    assert _left(tmp_path) == []


def test_truncated_bodies_are_retried_and_reported(server, media, tmp_path):
    got = fetch(f"{server.url}/cut-once", str(tmp_path), FAST)
    assert open(got.path, "rb").read() == media
    os.remove(got.path)
    with pytest.raises(FetchError) as e:
        fetch(f"{server.url}/cut", str(tmp_path), FAST)
    assert e.value.kind == "truncated" and e.value.transient
    assert server.hits["/cut"] == FAST.retries + 1
    assert _left(tmp_path) == []


def test_404_is_final_and_not_retried(server, tmp_path):
    with pytest.raises(FetchError) as e:
        fetch(f"{server.url}/missing", str(tmp_path), FAST)
    assert e.value.kind == "not_found" and not e.value.transient
    assert server.hits["/missing"] == 1


def test_too_large_is_refused_from_content_length(server, tmp_path):
    with pytest.raises(FetchError) as e:
        fetch(f"{server.url}/big", str(tmp_path), FAST)
    assert e.value.kind == "too_large" and "--max-bytes" in e.value.message
    assert _left(tmp_path) == []


def test_a_page_url_goes_through_ytdlp(server, media, tmp_path):
    got = fetch(f"{server.url}/page", str(tmp_path), FAST)
    assert open(got.path, "rb").read() == media
    with pytest.raises(FetchError) as e:
        fetch(f"{server.url}/empty-page", str(tmp_path / "e"), FAST)
    assert e.value.kind == "page_error"


def test_ytdlp_options_cannot_run_commands(tmp_path):
    from audioscope.sources.fetch import _YtdlLogger

    opts = ytdlp_options(str(tmp_path), FAST, _YtdlLogger())
    assert opts["ignoreconfig"] is True and opts["noplaylist"] is True
    assert opts["postprocessors"] == [] and not opts["external_downloader"]
    assert not any(k in opts for k in ("exec", "exec_cmd", "external_downloader_args"))


def test_local_files_fifos_and_missing(tmp_path, media):
    f = tmp_path / "v.mp4"
    f.write_bytes(media)
    got = fetch(str(f), str(tmp_path / "w"), FAST)
    assert got.path == str(f) and not got.is_temp
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    with pytest.raises(FetchError) as e:
        fetch(str(fifo), str(tmp_path / "w"), FAST)
    assert e.value.kind == "unsafe_uri"
    with pytest.raises(FetchError) as e:
        fetch(str(tmp_path / "nope.mp4"), str(tmp_path / "w"), FAST)
    assert e.value.kind == "not_found"


def test_the_next_run_retries_transient_failures_only(server, tmp_path):
    """A video whose server was down is fetched by the next run; a 404 is
    permanent and is not asked for again."""
    from audioscope.cli import main
    from audioscope.clipstore import ClipStore

    lst = tmp_path / "list.txt"
    lst.write_text(f"{server.url}/outage.mp4\n{server.url}/missing\n")
    store = str(tmp_path / "store")
    args = ["ingest", str(lst), "--out", store, "--timeout", "5", "--workers", "1"]
    assert main(args) == 0
    status = ClipStore.open(store).status.set_index("source")
    assert status.loc[f"{server.url}/outage.mp4", "status"] != "ok"
    missing_hits = server.hits["/missing"]

    server.down = False
    assert main(args) == 0
    cs = ClipStore.open(store)
    status = cs.status.set_index("source")
    assert status.loc[f"{server.url}/outage.mp4", "status"] == "ok"
    assert status.loc[f"{server.url}/missing", "kind"] == "not_found"
    assert server.hits["/missing"] == missing_hits  # permanent: not fetched again
    assert len(cs.index) == 0  # fetched and decoded; 2 s of media give no 5-second clip
