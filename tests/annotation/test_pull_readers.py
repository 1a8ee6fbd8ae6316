"""Pull reads the raters' projects side by side on the server's processes (`annotate server --processes`).

Label Studio's server is one process working on one core; `annotate server
--processes N` adds N - 1 reader processes on loopback ports (server.json)
and pull gives each process one rater's project at a time. Checked here: the
scheduling on small health servers (one job per process, all processes
busy together, readers that do not answer skipped, rater order kept, the
first error raised), and, on the session's real server with one real reader
process, that a pull through both processes writes the same bytes as a pull
through one, that the CLI takes the readers from server.json, and that
starting the server again with one process stops the reader.
"""

from __future__ import annotations

import http.server
import json
import shutil
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import ContextManager

import pytest

from audioscope import cli
from audioscope.annotation.client import Client, answers
from audioscope.annotation.pull import ExportShrank, PullCounts, RaterRead, pull, read_raters
from audioscope.annotation.server import free_port

from ..http_servers import serving
from .conftest import new_annotation_dir, server_env


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def health_server() -> ContextManager[str]:
    """A server on 127.0.0.1 that answers /health (what pull asks a reader before using it)."""
    return serving(_Health)


def test_projects_are_read_side_by_side_one_per_process_in_rater_order():
    lock = threading.Lock()
    busy: Counter[str] = Counter()
    peak_per_url: Counter[str] = Counter()
    peak = [0]
    used: list[str] = []

    def job(name: str):
        def run(client: Client) -> RaterRead:
            with lock:
                busy[client.url] += 1
                used.append(client.url)
                peak_per_url[client.url] = max(peak_per_url[client.url], busy[client.url])
                peak[0] = max(peak[0], sum(busy.values()))
            time.sleep(0.2)
            with lock:
                busy[client.url] -= 1
            return RaterRead([{"rater": name}], [], PullCounts(tasks=1), [])

        return run

    names = [f"rater{i}" for i in (5, 1, 4, 2, 3)]
    with health_server() as first, health_server() as reader:
        dead = f"http://127.0.0.1:{free_port()}"
        assert answers(reader) and not answers(dead)
        readers = [reader, dead, first + "/", reader + "/"]
        read = read_raters(first, readers, {n: job(n) for n in names}, {n: "token" for n in names})
    assert list(read) == sorted(names)  # merged in rater order, whatever finished first
    assert [r.votes for r in read.values()] == [[{"rater": n}] for n in sorted(names)]
    assert set(used) == {first, reader} and len(used) == len(names)  # the dead reader and the repeated URLs left out
    assert max(peak_per_url.values()) == 1  # one request at a time per process
    assert peak[0] == 2  # both processes busy together


def test_one_process_reads_one_project_after_another():
    order: list[str] = []

    def job(name: str):
        return lambda client: (order.append(name), RaterRead([], [], PullCounts(), []))[1]

    with health_server() as only:
        read = read_raters(only, [], {n: job(n) for n in ("b", "a", "c")}, {n: "t" for n in "abc"})
    assert order == ["a", "b", "c"] and list(read) == ["a", "b", "c"]


def test_the_first_error_in_rater_order_is_raised():
    def job(name: str):
        def run(client: Client) -> RaterRead:
            if name in ("rater2", "rater3"):
                raise ExportShrank(f"{name} gave less than it lists")
            return RaterRead([], [], PullCounts(), [])

        return run

    names = ["rater1", "rater2", "rater3"]
    with health_server() as first, health_server() as reader:
        with pytest.raises(ExportShrank, match="rater2 gave less"):
            read_raters(first, [reader], {n: job(n) for n in names}, {n: "t" for n in names})


# --------------------------------------------------------------------------- the real server


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.xdist_group("labelstudio")
def test_pull_through_a_reader_process_writes_what_one_process_writes(labelstudio, media, tmp_path, monkeypatch):
    from audioscope.annotation.server import start
    from audioscope.processes import pid_alive

    ann = new_annotation_dir(media, tmp_path / "ann")
    assert cli.main(["annotate", "push", "--annotations", str(ann), "--media", str(labelstudio.root / "media"),
                     "--project-title", "readers", *labelstudio.args()]) == 0  # fmt: skip
    assert cli.main(["annotate", "demo-raters", "--annotations", str(ann), "--error-rates", "0", *labelstudio.args()]) == 0
    one = tmp_path / "one"
    shutil.copytree(ann, one)
    pull(labelstudio.url, labelstudio.secrets, str(one))  # the first process only

    exported_by: list[str] = []
    export = Client.export

    def recording_export(self: Client, *args, **kwargs):
        exported_by.append(self.url)
        return export(self, *args, **kwargs)

    monkeypatch.setattr(Client, "export", recording_export)
    data_dir = Path(labelstudio.data_dir)
    with server_env(labelstudio.gcs.url):
        server = start(replace(labelstudio.settings, processes=2))
    try:
        assert server.url == labelstudio.url and len(server.readers) == 1 and answers(server.readers[0])
        listed = json.loads((data_dir / "server.json").read_text())["readers"]
        assert [r["url"] for r in listed] == list(server.readers)
        reader_pid = int(listed[0]["pid"])
        assert cli.main(["annotate", "pull", "--annotations", str(ann), *labelstudio.args()]) == 0  # readers from server.json
        assert set(exported_by) == {labelstudio.url, server.readers[0]}
        assert len(exported_by) == len(json.loads((ann / "projects.json").read_text())["raters"])
    finally:
        with server_env(labelstudio.gcs.url):
            again = start(replace(labelstudio.settings, processes=1))
    assert again.readers == () and json.loads((data_dir / "server.json").read_text())["readers"] == []
    deadline = time.monotonic() + 30
    while pid_alive(reader_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not pid_alive(reader_pid)
    outputs = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file() and p.name != "pull.json")
    assert Path("votes.parquet") in outputs and Path("labels.parquet") in outputs
    for rel in outputs:
        assert (ann / rel).read_bytes() == (one / rel).read_bytes(), rel
    assert json.loads((ann / "pull.json").read_text())["counted"] == json.loads((one / "pull.json").read_text())["counted"] > 0


def test_stop_leaves_alone_a_process_that_only_has_a_listed_readers_pid(tmp_path):
    """server.json may be stale: a pid it lists may belong to another program by now."""
    import subprocess
    import sys

    from audioscope.annotation.server import stop
    from audioscope.processes import pid_alive

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        (tmp_path / "server.json").write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": 0,
                                                          "readers": [{"url": "http://127.0.0.1:9", "pid": other.pid}]}))  # fmt: skip
        assert stop(str(tmp_path)) is False
        assert pid_alive(other.pid) and other.poll() is None
    finally:
        other.kill()
        other.wait()
