"""A full disk, a read-only folder, a server out of reach: the command says so in one line
(which file or server, what to do), with no traceback and a non-zero exit, and running it
again once there is room resumes."""

from __future__ import annotations

import errno
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from audioscope.clipstore import ClipStore
from audioscope.errors import ends_the_run, system_failure, tool_failure

from .namespaces import can_mount
from .videos import av_video

pytestmark = pytest.mark.integration

AUDIOSCOPE = f"{shlex.quote(sys.executable)} -m audioscope"


needs_mount = pytest.mark.skipif(not can_mount(), reason="needs root and `unshare -m` to mount a small disk")


def _in_own_mounts(script: str) -> subprocess.CompletedProcess[str]:
    """``script`` (sh) in a private mount namespace: its tmpfs mounts vanish with it."""
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=600)


def _sections(out: str) -> dict[str, str]:
    """The script's output cut at ``== NAME`` marker lines."""
    parts: dict[str, list[str]] = {}
    name = ""
    for line in out.splitlines():
        if line.startswith("== "):
            name = line[3:]
            parts[name] = []
        else:
            parts.setdefault(name, []).append(line)
    return {k: "\n".join(v) for k, v in parts.items()}


def _full_then_room(mount: str, *, full: str, room: str, after: str = "") -> str:
    """In a mount namespace of its own: ``mount``, then the command ``full``, which must fail
    in one line (returned) without a traceback, then ``room``, which must succeed, then ``after``."""
    out = _in_own_mounts(
        f"{mount} && echo '== full' && {{ {full} 2>&1; echo \"rc=$?\"; }}; "
        f"echo '== room' && {{ {room} 2>&1; echo \"rc=$?\"; }}; {after}"
    )
    said = _sections(out.stdout)
    failed = said["full"].splitlines()
    assert failed[-1] == "rc=1" and "Traceback" not in said["full"], out.stdout + out.stderr
    assert said["room"].splitlines()[-1] == "rc=0", said["room"]
    return failed[-2]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("full-disk")
    (root / "videos").mkdir()
    for i in range(5):
        av_video(root / "videos" / f"v{i}.mp4", duration=7 + i % 2, size="320x240")
    (root / "list.txt").write_text("".join(f"videos/v{i}.mp4\n" for i in range(5)))
    return root


@pytest.fixture(scope="module")
def reference(videos, tmp_path_factory) -> Path:
    """The store of an ingest of ``videos`` that never lacked room."""
    store = tmp_path_factory.mktemp("reference") / "store"
    ok = subprocess.run([sys.executable, "-m", "audioscope", "ingest", str(videos / "list.txt"), "--out", str(store)],
                        capture_output=True, text=True)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    return store


def test_the_line_names_the_file_and_what_to_do():
    full = system_failure(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/store/media/a.npz"))
    assert full is not None and full.startswith("no space left on the device (/data/store/media/a.npz): free some space")
    assert full.endswith("run the same command again; finished work is kept")
    # Beam's in-process workers hand the launcher only the text of a worker's error;
    # of a copy, the file written is the one to name
    text = RuntimeError(
        "Traceback ...\nOSError: [Errno 30] Read-only file system: '/tmp/work-0.jsonl' -> '/out/mix/work-0.jsonl' "
        "[while running 'Mix/WriteShards']"
    )
    assert system_failure(text).startswith("the file system is read-only (/out/mix/work-0.jsonl): give a location")
    wrapped = RuntimeError("bundle failed")
    wrapped.__cause__ = OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
    assert system_failure(wrapped).startswith("disk quota exceeded: free some space")
    assert system_failure(ValueError("bad value")) is None
    assert system_failure(FileNotFoundError(errno.ENOENT, "No such file", "/x")) is None


def test_a_full_disk_in_a_tools_messages_is_that_oserror():
    said = ("[out#0/s16le @ 0x55] Error writing trailer of file:/tmp/x/audioscope-decode-1/audio.s16le: "
            "No space left on device\nError closing file ...: No space left on device")  # fmt: skip
    failure = tool_failure(said)
    assert failure.errno == errno.ENOSPC and failure.filename == "/tmp/x/audioscope-decode-1/audio.s16le"
    assert tool_failure("moov atom not found") is None
    assert tool_failure("/videos/a.mp4: Permission denied") is None  # an unreadable source is the video's own
    # a step that records one item's failure lets these rise, wrapped or not
    wrapped = ValueError("cannot read the clips")
    wrapped.__context__ = OSError(errno.EMFILE, os.strerror(errno.EMFILE))
    assert ends_the_run(wrapped) and ends_the_run(failure)
    assert not ends_the_run(PermissionError(errno.EACCES, "Permission denied", "/videos/a.mp4"))


def test_a_server_out_of_reach_is_one_line_naming_it():
    import socket

    refused = RuntimeError('Could not connect to the endpoint URL: "http://127.0.0.1:9/b/store.json"')
    refused.__context__ = ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('127.0.0.1', 9)")
    said = system_failure(refused)
    assert said.startswith('cannot reach the server (Could not connect to the endpoint URL: "http://127.0.0.1:9/')
    assert "AWS_ENDPOINT_URL" in said and said.endswith("run the same command again; finished work is kept")
    assert system_failure(socket.gaierror(-2, "Name or service not known")).startswith("cannot reach the server")
    assert not ends_the_run(refused)  # one video's server out of reach is that video's failure


def test_an_object_store_out_of_reach_is_one_line(tmp_path):
    """No S3 server listens at the endpoint: botocore retries, then the command says so in one line."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "k",
           "AWS_SECRET_ACCESS_KEY": "s", "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "audioscope", "clips", "stats", "--store", "s3://bucket/store"],
                          capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f'audioscope clips: error: cannot reach the server (Could not connect to the endpoint URL: '
        f'"http://127.0.0.1:{port}/bucket/store/store.json"): check the network connection and the address '
        "(an emulator's STORAGE_EMULATOR_HOST, an S3 endpoint's AWS_ENDPOINT_URL), then run the same command again; "
        "finished work is kept"
    ]


def test_ffmpeg_missing_is_refused_at_launch_and_ends_a_run_on_workers_without_it(videos, tmp_path, monkeypatch,
                                                                                   capsys):
    """Without ffmpeg every video failed as an "internal_error" (with a traceback each) and ingest
    exited 0. Local workers: refused before anything is written. Workers elsewhere (an image
    without ffmpeg): the first video ends the run in one line, and no video is recorded as failed."""
    import pickle

    from audioscope import cli
    from audioscope.errors import MissingProgram
    from audioscope.media import run_tool
    from audioscope.pipelines import runner

    with pytest.raises(MissingProgram) as caught:
        run_tool(["no-such-program-here", "-version"], 10)
    assert pickle.loads(pickle.dumps(caught.value)).filename == "no-such-program-here"
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    store = tmp_path / "store"
    args = ["ingest", str(videos / "list.txt"), "--out", str(store), "--workers", "2"]
    assert cli.main(args) == 2
    assert capsys.readouterr().err.strip().endswith("ffmpeg is not installed (not found on PATH): install it "
                                                    "(Debian: `apt-get install ffmpeg`; `make install` does it) and run again")  # fmt: skip
    assert not store.exists()
    # as on remote workers: the launcher's check does not apply, the workers lack ffmpeg
    monkeypatch.setattr(runner, "require_local_programs", lambda *a: None)
    for workers in ("1", "2"):  # in the runner's thread, and in the pool's processes
        assert cli.main([*args[:-1], workers]) == 1
        err = capsys.readouterr().err
        assert err.strip().splitlines()[-1].startswith(
            "audioscope ingest: error: ffmpeg is not installed where the work runs (not found on PATH)"
        ) and "Traceback" not in err, err
        status = list((store / "status").rglob("*.json"))
        assert status == [], [p.read_text() for p in status]


def test_a_full_standard_output_is_one_line(reference):
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "audioscope", "clips", "list", "--store", str(reference)],
                              stdout=full, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "audioscope clips: error: no space left on the device: free some space (or give a location on another "
        "disk), then run the same command again; finished work is kept"
    ]


@needs_mount
def test_ingest_on_a_full_disk_stops_in_one_line_and_resumes_once_there_is_room(videos, reference, tmp_path):
    media = sorted(p.stat().st_size for p in (reference / "media").rglob("*.npz"))
    room = sum(media[:2]) + media[-1] // 2 + 64 * 1024  # two videos fit, the third does not
    disk, kept = tmp_path / "disk", tmp_path / "kept"
    disk.mkdir()
    ingest = f"{AUDIOSCOPE} ingest {videos / 'list.txt'} --out {disk / 'store'} --workers 1"
    said = _full_then_room(
        f"mount -t tmpfs -o size={room} tmpfs {disk}", full=ingest,
        room=f"mount -o remount,size={sum(media) * 4} {disk} && {ingest}", after=f"cp -a {disk / 'store'} {kept}",
    )
    assert said.startswith(f"audioscope ingest: error: no space left on the device ({disk / 'store'}/")
    assert said.endswith("free some space (or give a location on another disk), then run the same "
                         "command again; finished work is kept")  # fmt: skip
    # the resumed store is the store of a run that never lacked room
    pd.testing.assert_frame_equal(ClipStore.open(str(kept)).index, ClipStore.open(str(reference)).index)
    assert not [p for p in kept.rglob(".*")], "a partial file was left on the full disk"


@needs_mount
def test_a_full_scratch_disk_stops_ingest_instead_of_failing_every_video(videos, reference, tmp_path):
    """ffmpeg decodes into the temporary directory: when it is full, ffmpeg fails, and
    that is the machine's failure, not the video's (it was recorded as "corrupt", for good)."""
    scratch, store = tmp_path / "scratch", tmp_path / "store"
    scratch.mkdir()
    ingest = f"{AUDIOSCOPE} ingest {videos / 'list.txt'} --out {store}"
    said = _full_then_room(f"mount -t tmpfs -o size=64k tmpfs {scratch}", full=f"TMPDIR={scratch} {ingest}", room=ingest)
    # (the pool's processes decode in its scratch folder, in the command's, there)
    assert re.match(rf"audioscope ingest: error: no space left on the device \({re.escape(str(scratch))}"
                    r"/audioscope-run-\w+/audioscope-ingest-\w+/audioscope-decode-\w+/", said), said  # fmt: skip
    pd.testing.assert_frame_equal(ClipStore.open(str(store)).index, ClipStore.open(str(reference)).index)
    status = pd.read_parquet(store / "index" / "status.parquet")
    assert set(status["status"]) == {"ok"}, status[["video_id", "status", "message"]]


@needs_mount
def test_a_read_only_folder_is_one_line_for_every_writer(videos, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    commands = {
        "synth": f"{AUDIOSCOPE} synth --out {ro / 'corpus'} --videos 2",
        "ingest": f"{AUDIOSCOPE} ingest {videos / 'list.txt'} --out {ro / 'store'}",
    }
    script = f"mount -t tmpfs -o ro tmpfs {ro}" + "".join(
        f" && echo '== {name}' && {{ {cmd} 2>&1; echo \"rc=$?\"; }}" for name, cmd in commands.items()
    )
    said = _sections(_in_own_mounts(script).stdout)
    for name in commands:
        lines = said[name].splitlines()
        assert lines[-1] == "rc=1", (name, said[name])
        assert "Traceback" not in said[name]
        assert lines[-2].startswith(f"audioscope {name}: error: the file system is read-only ({ro}/"), lines
