"""The `audioscope` command line: every command and option is documented."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import types

import pytest

from audioscope import cli


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Yield (command path, parser) for the parser and every nested subcommand."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, path + (name,))


def _all_parsers():
    return list(_walk(cli.build_parser()))


def test_every_registered_module_adds_a_command():
    names = {path[0] for path, _ in _all_parsers() if len(path) == 1}
    assert len(names) >= len(cli.COMMAND_MODULES)
    for expected in ("synth", "ingest", "clips"):
        assert expected in names


@pytest.mark.parametrize("path,parser", _all_parsers(), ids=lambda p: " ".join(p) if isinstance(p, tuple) else "")
def test_help_is_complete(path, parser):
    """Each command has a description, and every option and positional has help
    text that shows in `--help`."""
    text = parser.format_help()
    if path:
        assert parser.description, f"`audioscope {' '.join(path)}` has no description"
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                assert choice.help, f"subcommand {choice.dest!r} of {path} has no help"
            continue
        assert action.help and action.help is not argparse.SUPPRESS, (
            f"`audioscope {' '.join(path)}`: {action.option_strings or action.dest} has no help"
        )
        for opt in action.option_strings:
            assert opt in text


def test_help_runs_as_a_program_without_heavy_imports():
    """`audioscope --help` must not import Beam or TensorFlow (it stays fast)."""
    code = (
        "import sys; from audioscope import cli;"
        "cli.build_parser().format_help();"
        "heavy = [m for m in ('apache_beam', 'tensorflow') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = subprocess.run(
        [sys.executable, "-m", "audioscope", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0
    for name in ("synth", "ingest", "clips"):
        assert name in out.stdout


def test_no_command_prints_help_and_fails():
    proc = subprocess.run([sys.executable, "-m", "audioscope"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "commands" in proc.stdout


def test_user_error_is_reported_without_traceback(monkeypatch, capsys):
    """A UserError prints its message (which says what to do) and exits 2."""
    fake = types.ModuleType("fake_cmd")

    def register(sub):
        p = sub.add_parser("boom", help="fails", description="Always fails.")

        def run(args):
            raise cli.UserError("the store is missing; run `audioscope ingest` first")

        p.set_defaults(func=run)
        return p

    fake.register = register
    monkeypatch.setitem(sys.modules, "fake_cmd", fake)
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("fake_cmd",))
    rc = cli.main(["boom"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "audioscope boom: error:" in err
    assert "run `audioscope ingest` first" in err
    assert "Traceback" not in err


def test_printed_commands_paste_as_the_same_paths(tmp_path, capsys):
    """A fix we print names a path with spaces and quotes as one shell word:
    pasted into a shell, it is the folder the user gave."""
    import re
    import shlex

    store = tmp_path / "my store's copy"
    store.mkdir()
    rc = cli.main(["clips", "stats", "--store", str(store)])
    err = capsys.readouterr().err
    assert rc == 2
    command = re.search(r"`(audioscope ingest [^`]*)`", err)
    assert command, err
    words = shlex.split(command.group(1))
    assert words[words.index("--store") + 1] == str(store)


def test_console_script_exits_with_main_code_after_atexit_handlers(tmp_path):
    """`run` (the console script) ends with os._exit, but only after what an
    ordinary exit does first: other threads joined, atexit handlers run,
    output flushed; the exit code is main's."""
    marker = tmp_path / "atexit-ran"
    code = (
        "import atexit, pathlib, sys, threading, time\n"
        f"atexit.register(lambda: pathlib.Path({str(marker)!r}).write_text('yes'))\n"
        "out = []\n"
        "t = threading.Thread(target=lambda: (time.sleep(0.3), out.append(1), print('thread done')))\n"
        "t.start()\n"
        f"sys.argv = ['audioscope', 'clips', 'stats', '--store', {str(tmp_path / 'no-store')!r}]\n"
        "print('buffered line', end='')\n"
        "from audioscope.cli import run\n"
        "run()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "is not a clip store" in proc.stderr
    assert "buffered line" in proc.stdout and "thread done" in proc.stdout
    assert marker.read_text() == "yes"


def test_closed_pipe_stops_quietly(tmp_path):
    """`audioscope ... | head` : the reader leaving is not an error with a traceback."""
    code = (
        "import sys\n"
        "from audioscope import cli\n"
        "def boom(args):\n"
        "    raise BrokenPipeError(32, 'Broken pipe')\n"
        "sys.argv = ['audioscope', 'synth', '--out', 'x']\n"
        "import audioscope.synth.cli as s\n"
        "s.run = boom\n"
        "cli.run()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 141, proc.stderr
    assert "Traceback" not in proc.stderr


#: A command that writes a folder, with that folder given as ``OUT`` (everything else may not exist:
#: the output folder is checked first).
WRITERS = {
    "synth": ["synth", "--out", "OUT", "--videos", "1"],
    "ingest (store after the list)": ["ingest", "list.csv", "--store", "OUT"],
    "ingest (store first)": ["ingest", "--store", "OUT", "list.csv"],
    "score": ["score", "--store", "S", "--model", "M", "--out", "OUT"],
    "filter": ["filter", "--scores", "SC", "--store", "S", "--out", "OUT"],
    "annotate sample": ["annotate", "sample", "--store", "S", "--df", "D", "--annotations", "OUT"],
    "annotate render": ["annotate", "render", "--annotations", "A", "--media", "OUT"],
    "mix": ["mix", "--store", "S", "--df", "D", "--out", "OUT"],
    "release pull": ["release", "pull", "x:1.0.0", "--root", "R", "--to", "OUT"],
    "coincidence train": ["coincidence", "train", "--store", "S", "--out", "OUT"],
    "train": ["train", "--data", "MIX", "--out", "OUT"],
    "evaluate": ["evaluate", "--model", "M", "--data", "MIX", "--out", "OUT"],
    "report": ["report", "RUN", "--out", "OUT"],
}


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_no_command_writes_into_another_steps_folder(command, tmp_path, capsys):
    """Every command that writes a folder refuses one that another step wrote (a Df folder given as
    --out of score): one line naming what the folder is, nothing written there."""
    other = tmp_path / "df"
    other.mkdir()
    (other / "df.parquet").write_bytes(b"")
    if command.startswith(("filter", "annotate")) or command == "synth":  # these read or write a Df
        other = tmp_path / "store"
        other.mkdir()
        (other / "store.json").write_text("{}")
    before = sorted(p.name for p in other.iterdir())
    argv = [str(other) if a == "OUT" else str(tmp_path / a) if a.isupper() else a for a in WRITERS[command]]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "must not be another step's folder" in err and "written by `audioscope " in err, err
    assert sorted(p.name for p in other.iterdir()) == before


def test_a_folder_given_to_the_wrong_option_is_named(tmp_path, capsys):
    """Given where another step's folder is expected, a folder is named for what it is, and the fix
    does not suggest writing into it."""
    from audioscope.folders import another_steps_folder, folder_kind

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "corpus.json").write_text("{}")
    assert folder_kind(str(corpus)) == "corpus" and folder_kind(str(tmp_path)) is None
    assert another_steps_folder(str(corpus), "corpus", "--out") is None
    assert cli.main(["clips", "stats", "--store", str(corpus)]) == 2
    err = capsys.readouterr().err
    assert "is a synthetic corpus (written by `audioscope synth`), not a clip store" in err
    assert "give --store the folder that `audioscope ingest` wrote" in err and "--store " + str(corpus) not in err


@pytest.mark.parametrize("command", [["coincidence", "train", "--store", "s"], ["train", "--data", "m"]])
def test_a_training_takes_no_time_budget_when_told_none(command, capsys):
    """`--time-budget none` ends a training by its steps only (the demo's trainings: a budget sets the
    learning-rate schedule by the clock whenever the steps lag, and the same seed then gives another model)."""
    parser = cli.build_parser()
    assert parser.parse_args([*command, "--out", "o", "--time-budget", "none"]).time_budget is None
    assert parser.parse_args([*command, "--out", "o", "--time-budget", "90"]).time_budget == 90.0
    with pytest.raises(SystemExit):
        parser.parse_args([*command, "--out", "o", "--time-budget", "0"])
    assert "must be > 0 seconds" in capsys.readouterr().err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
@pytest.mark.parametrize("where", ["import", "__del__"])
def test_a_stop_raised_where_it_is_lost_is_delivered_again(where, sig, tmp_path):
    """SIGTERM raises Stopped (Ctrl-C KeyboardInterrupt) wherever the main thread is. Raised inside an import, a C extension's
    module set-up can clear it (seen: ingest stopped while it imported Beam, and the run went on until
    killed); raised in a ``__del__``, Python only reports it. Here the import swallows it and the
    ``__del__`` reports it; the command must still stop, once it waits."""
    swallow = f"import os, time\ntry:\n    os.kill(os.getpid(), {int(sig)})\n    time.sleep(1)\nexcept BaseException:\n    pass\n"
    (tmp_path / "swallows.py").write_text(swallow)
    (tmp_path / "reports.py").write_text(
        "import os, time\nclass Reported:\n    def __del__(self):\n"
        f"        os.kill(os.getpid(), {int(sig)})\n        time.sleep(1)\n"
        "def lose():\n    Reported()\n"
    )
    trigger = "import swallows" if where == "import" else "import reports; reports.lose()"
    code = (
        "import sys, threading\nfrom audioscope.cli import Stopped, _stop_signals\ntry:\n"
        f"    with _stop_signals():\n        {trigger}\n        print('waiting', flush=True)\n"
        "        threading.Event().wait(20)\n"
        "except Stopped as e:\n    print('stopped', int(e.signum))\n    sys.exit(3)\n"
        "except KeyboardInterrupt:\n    print('interrupted')\n    sys.exit(4)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    said = ["stopped", str(int(sig))] if sig == signal.SIGTERM else ["interrupted"]
    assert (run.returncode, run.stdout.split()) == (3 if sig == signal.SIGTERM else 4, ["waiting", *said]), run.stderr
    assert "Exception ignored" not in run.stderr


def test_the_mix_help_names_the_record_schema_mix_writes():
    """The help says which record schema the shards are in: the one `mix` writes now."""
    from audioscope.schemas.records import SCHEMA_VERSION

    text = " ".join(dict(_all_parsers())[("mix",)].format_help().split())
    assert f"Shards are packed (record schema {SCHEMA_VERSION})" in text
