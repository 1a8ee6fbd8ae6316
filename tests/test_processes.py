"""Where a process's temporary files go while a step holds its folder (audioscope.processes.temporary_files_in)."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from audioscope.processes import temporary_files_in


def test_temporary_files_go_to_the_folder_which_starts_empty_and_is_removed(tmp_path: Path) -> None:
    before = tempfile.gettempdir()
    scratch = tmp_path / "run" / ".tmp"
    scratch.mkdir(parents=True)
    (scratch / "left-by-a-killed-run.py").write_text("x = 1\n")
    with temporary_files_in(str(scratch)) as folder:
        assert folder == str(scratch) and list(scratch.iterdir()) == []
        with tempfile.NamedTemporaryFile(delete=False) as f:
            made = Path(f.name)
        assert made.parent == scratch
    assert not scratch.exists() and not made.exists()
    assert tempfile.gettempdir() == before


def test_overlapping_blocks_leave_the_default_on_a_folder_still_open(tmp_path: Path) -> None:
    """Two trainings in two threads of one process: whichever ends first, temporary files never go to a
    removed folder, and the default comes back once both end."""
    before = tempfile.gettempdir()
    a_open, b_open, a_done = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, str] = {}

    def first() -> None:
        with temporary_files_in(str(tmp_path / "a")):
            a_open.set()
            b_open.wait(10)
        a_done.set()

    thread = threading.Thread(target=first)
    thread.start()
    a_open.wait(10)
    with temporary_files_in(str(tmp_path / "b")):
        b_open.set()
        a_done.wait(10)  # a ended while b is open
        seen["after a"] = tempfile.gettempdir()
        with tempfile.TemporaryDirectory() as d:
            seen["made in"] = str(Path(d).parent)
    thread.join()
    assert seen == {"after a": str(tmp_path / "b"), "made in": str(tmp_path / "b")}
    assert tempfile.gettempdir() == before
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_link_in_place_of_the_folder_is_replaced_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not ours")
    link = tmp_path / "run" / ".tmp"
    link.parent.mkdir()
    link.symlink_to(elsewhere)
    with temporary_files_in(str(link)):
        assert link.is_dir() and not link.is_symlink()
    assert (elsewhere / "keep.txt").read_text() == "not ours"


def test_a_command_scratch_is_removed_at_the_end_and_orphans_at_the_next_start(tmp_path: Path) -> None:
    import fcntl
    import os

    from audioscope.processes import COMMAND_SCRATCH_PREFIX, SCRATCH_OWNER, command_scratch, remove_orphan_scratch

    base = tmp_path / "system-tmp"
    base.mkdir()
    # a command killed outright: its scratch with its lock file, nobody holding it
    orphan = base / f"{COMMAND_SCRATCH_PREFIX}killed1"
    (orphan / "pymp-x").mkdir(parents=True)
    (orphan / SCRATCH_OWNER).touch()
    # a command still running (its lock held through another open file)
    running = base / f"{COMMAND_SCRATCH_PREFIX}running"
    running.mkdir()
    held = os.open(running / SCRATCH_OWNER, os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)
    # someone else's folders that only look alike: no lock file
    stranger = base / f"{COMMAND_SCRATCH_PREFIX}stranger"
    stranger.mkdir()
    from multiprocessing import util

    util.get_temp_dir()  # this process's multiprocessing folder exists already (not in base)
    before = tempfile.tempdir
    tempfile.tempdir = str(base)
    try:
        with command_scratch() as folder:
            assert Path(folder).parent == base and Path(folder).name.startswith(COMMAND_SCRATCH_PREFIX)
            assert tempfile.gettempdir() == folder
            tempfile.mkdtemp(prefix="beam-pipeline-temp")  # a library's folder that it never removes
            # the running command's removal sweep does not touch this one
            assert remove_orphan_scratch(str(base)) == []
        assert not Path(folder).exists()
    finally:
        tempfile.tempdir = before
        os.close(held)
    assert sorted(p.name for p in base.iterdir()) == [running.name, stranger.name]


def test_a_command_killed_leaves_only_its_scratch_which_the_next_one_removes(tmp_path: Path) -> None:
    """In a process that runs commands without ending with them (``cli.main`` called by a script), a
    command that never starts a process pool makes no multiprocessing folder, so a kill leaves only the
    command's scratch; the next command removes it."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "TMPDIR": str(tmp_path)}
    killed = "import os\nfrom audioscope.processes import command_scratch\nwith command_scratch():\n    os._exit(9)"
    assert subprocess.run([sys.executable, "-c", killed], env=env).returncode == 9
    assert [p.name[: len("audioscope-run-")] for p in tmp_path.iterdir()] == ["audioscope-run-"]
    after = "from audioscope.processes import command_scratch\nwith command_scratch():\n    pass"
    assert subprocess.run([sys.executable, "-c", after], env=env).returncode == 0
    assert list(tmp_path.iterdir()) == []


def test_a_socket_folder_outside_a_long_tmpdir_is_an_orphan_once_its_process_is_killed(tmp_path: Path) -> None:
    """Under a TMPDIR too long for a Unix socket, the fork server's folder goes to a short folder (/tmp in
    use); a process killed outright left it there for good, now the next command removes it."""
    import os
    import subprocess
    import sys

    from audioscope.processes import remove_orphan_scratch

    short = tmp_path / "s"
    short.mkdir()
    long_tmp = tmp_path / ("x" * 90)
    long_tmp.mkdir()
    code = (
        "import os, sys\nfrom audioscope.processes import short_socket_folder\n"
        f"folder = short_socket_folder(({str(short)!r},))\nprint(folder, flush=True)\nos._exit(9)"
    )
    run = subprocess.run([sys.executable, "-c", code], env={**os.environ, "TMPDIR": str(long_tmp)},
                         capture_output=True, text=True)  # fmt: skip
    folder = Path(run.stdout.strip())
    assert run.returncode == 9 and folder.is_dir() and folder.name.startswith("pymp-")
    assert folder.parent.parent == short and folder.parent.name.startswith("audioscope-run-")
    assert remove_orphan_scratch(str(short)) == [str(folder.parent)]
    assert list(short.iterdir()) == [] and list(long_tmp.iterdir()) == []
