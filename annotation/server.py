"""Run a Label Studio server from its own virtualenv, with its accounts.

Label Studio (the ``label-studio`` package, 1.23) pins Django, its own SDK
and numpy versions that must not fight ours, so it lives in its own
virtualenv (``make labelstudio`` makes ``.venv-labelstudio``) and runs as a
subprocess. :func:`start` launches it on 127.0.0.1, waits until it answers,
creates the accounts and writes, into the data directory::

    labelstudio/     Label Studio's own data (SQLite database, uploads)
    secrets.json     admin and rater accounts with their tokens (mode 0600)
    server.json      url, port, pid, document root, database (no secrets)
    server.pid       the server's process id (its process group)
    server.log       the server's output (and its readers')

Readers (``processes`` > 1): Label Studio's own ``label-studio start`` is
Django's development server, one process whose requests share one core (its
threads hold Python's lock in turn: three exports at once took longer than
one after another). Pull's exports are the heavy requests (about 1.4 ms of
server CPU per task, measured with 10,000 tasks), so :func:`start` can add
``processes - 1`` more Label Studio processes on the same database, each
on a free port of 127.0.0.1 only ("readers", listed in ``server.json``);
``annotate pull`` reads one rater's project per process at a time. The
browser and every other command use the first process only. Every process
is a plain ``label-studio start`` of the same installation and settings:
SQLite locks the same way between processes as between the threads of one.

Accounts: the admin is created by Label Studio itself on its first start,
from ``LABEL_STUDIO_USERNAME`` / ``_PASSWORD`` in the subprocess's
environment (never its command line). Rater accounts are made by
:func:`provision` (``ls_provision.py`` run by Label Studio's own Python),
each alone in an organization of its own, so that a rater sees only their
own project (see ``annotation/isolation.py``). Every account gets a personal
access token (legacy tokens stay off, Label Studio's default since 1.17).
The signup form is closed from the first start
(``LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK=true``): nobody who reaches the
port can make an account.

Nothing reaches the internet: the version check, analytics and Sentry of
Label Studio are switched off in its environment.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

import requests

from audioscope import storage
from audioscope.annotation.credentials import Account, Secrets, read_secrets, server_secrets, write_secrets
from audioscope.processes import pid_alive

logger = logging.getLogger(__name__)

LS_DATA = "labelstudio"
SECRETS_JSON = "secrets.json"
SERVER_JSON = "server.json"
PID_FILE = "server.pid"
LOG_FILE = "server.log"

#: Where ``make labelstudio`` installs the server, relative to the repository.
VENV_DIR = ".venv-labelstudio"
ENV_EXECUTABLE = "AUDIOSCOPE_LABELSTUDIO"
#: PostgreSQL settings Label Studio reads (``POSTGRE_PORT`` is optional).
POSTGRES_ENV: tuple[str, ...] = ("POSTGRE_NAME", "POSTGRE_USER", "POSTGRE_PASSWORD", "POSTGRE_HOST")


class ServerError(RuntimeError):
    """The server cannot be started or stopped; the message says what to do."""


@dataclass(frozen=True)
class ServerSettings:
    """How to run one server. ``port`` 0 picks a free port."""

    data_dir: str
    host: str = "127.0.0.1"
    port: int = 8080
    document_root: str | None = None
    admin_email: str = "admin@audioscope.local"
    raters: tuple[str, ...] = ()
    postgres: bool = False
    secrets_file: str | None = None
    executable: str | None = None
    timeout_s: float = 300.0
    #: Label Studio processes: the first serves everyone on ``port``, the others
    #: are pull's readers on free loopback ports (module docstring)
    processes: int = 1

    def path(self, name: str) -> str:
        return os.path.join(self.data_dir, name)

    @property
    def secrets_path(self) -> str:
        return self.secrets_file or self.path(SECRETS_JSON)

    @property
    def root(self) -> str:
        return os.path.abspath(self.document_root or os.getcwd())


@dataclass
class RunningServer:
    """A started server: its URL, process and the seconds it took to answer."""

    url: str
    pid: int
    secrets: Secrets = field(repr=False)
    seconds: float
    process: subprocess.Popen | None = field(default=None, repr=False)
    #: URLs of the reader processes (module docstring)
    readers: tuple[str, ...] = ()


# --------------------------------------------------------------------------- the executable


def find_executable(explicit: str | None = None, env: Mapping[str, str] = os.environ) -> str:
    """The ``label-studio`` program: given, ``$AUDIOSCOPE_LABELSTUDIO``, the repo's venv, or PATH."""
    import shutil

    repo = Path(__file__).resolve().parents[1]
    candidates = [explicit, env.get(ENV_EXECUTABLE), str(repo / VENV_DIR / "bin" / "label-studio")]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    found = shutil.which("label-studio")
    if found:
        return found
    raise ServerError(
        f"Label Studio is not installed: run `make labelstudio` (it installs it into {repo / VENV_DIR}), "
        f"or point {ENV_EXECUTABLE} at a `label-studio` program"
    )


# --------------------------------------------------------------------------- ports and processes


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex((host if host != "0.0.0.0" else "127.0.0.1", port)) == 0


def _is_label_studio(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"label-studio" in f.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc here: trust the pid file


def read_pid(data_dir: str) -> int | None:
    try:
        with open(os.path.join(data_dir, PID_FILE), encoding="ascii") as f:
            return int(f.read().strip())
    except (FileNotFoundError, ValueError):
        return None


def running_pid(data_dir: str) -> int | None:
    """The pid of the server of ``data_dir`` when it runs."""
    pid = read_pid(data_dir)
    return pid if pid is not None and pid_alive(pid) and _is_label_studio(pid) else None


# --------------------------------------------------------------------------- environment


#: Characters of the signing key we give Label Studio (no ``$``: see :func:`signing_key`).
_KEY_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"


def signing_key(ls_data_dir: str) -> str:
    """Label Studio's ``SECRET_KEY`` (it signs the access tokens) of its data folder, made once.

    Left to itself, each Label Studio process reads the key from
    ``LS_DATA/.env`` through django-environ, which takes a value that starts
    with ``$`` for the name of another variable: a generated key that starts
    with ``$`` (1 in 50) reads back as missing, so the next process (our
    account script, a reader) makes and appends another key, and every token
    it signs is "invalid" to the server. We keep one key with no ``$`` in
    that file (owner-only) and hand it to every process in the environment,
    where it wins over the file. A valid key already there is kept (tokens
    made with it stay valid); a ``$`` key is replaced.
    """
    import secrets as random

    path = os.path.join(ls_data_dir, ".env")
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    except (UnicodeDecodeError, IsADirectoryError):
        raise ServerError(
            f"{path} is not Label Studio's settings file (not text): move it away and start the server again"
        ) from None
    keys = [line.split("=", 1)[1].strip() for line in lines if line.strip().startswith("SECRET_KEY=")]
    if keys and keys[0] and not keys[0].startswith("$"):
        return keys[0]
    key = "".join(random.choice(_KEY_CHARS) for _ in range(50))
    kept = [line for line in lines if not line.strip().startswith("SECRET_KEY=")]
    os.makedirs(ls_data_dir, mode=0o700, exist_ok=True)
    storage.atomic_write(path, "\n".join([*kept, f"SECRET_KEY={key}", ""]), mode=0o600)
    return key


def server_env(settings: ServerSettings, secrets: Secrets, base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The subprocess environment: ours plus Label Studio's settings (secrets only here)."""
    env = {k: v for k, v in base.items() if not k.startswith(("LABEL_STUDIO_", "HEARTEX_")) and k != "SECRET_KEY"}
    env.update(
        {
            "SECRET_KEY": signing_key(settings.path(LS_DATA)),
            "LABEL_STUDIO_BASE_DATA_DIR": os.path.abspath(settings.path(LS_DATA)),
            "LABEL_STUDIO_USERNAME": secrets.admin.email,
            "LABEL_STUDIO_PASSWORD": secrets.admin.password,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "false",
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": settings.root,
            "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",
            "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
            "LABEL_STUDIO_SENTRY_DSN": "",
            "LABEL_STUDIO_FRONTEND_SENTRY_DSN": "",
            # accounts are made by provision(), never through the signup form: it stays closed
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if settings.postgres:
        missing = [k for k in POSTGRES_ENV if not base.get(k)]
        if missing:
            raise ServerError(
                f"--postgres needs the environment variables {', '.join(missing)} (and POSTGRE_PORT if not 5432): "
                "set them to your PostgreSQL database and run again"
            )
        env["DJANGO_DB"] = "default"
    else:
        env["DJANGO_DB"] = "sqlite"
    return env


# --------------------------------------------------------------------------- accounts


def label_studio_python(settings: ServerSettings) -> str:
    """The Python interpreter of Label Studio's virtualenv (next to its ``label-studio`` program)."""
    exe = find_executable(settings.executable)
    candidate = os.path.join(os.path.dirname(exe), "python")
    if os.access(candidate, os.X_OK):
        return candidate
    with open(exe, "rb") as f:  # a console script: its first line names its interpreter
        first = f.readline().decode("utf-8", "replace")
    if first.startswith("#!") and os.access(first[2:].strip().split()[0], os.X_OK):
        return first[2:].strip().split()[0]
    raise ServerError(f"cannot find the Python of Label Studio next to {exe}; reinstall it with `make labelstudio`")


def provision(settings: ServerSettings, secrets: Secrets) -> Secrets:
    """Make the rater accounts, each alone in its own organization, and missing access tokens.

    Runs ``ls_provision.py`` with Label Studio's own Python (see its
    docstring: neither Label Studio's API nor its signup form can make an
    organization per account); secrets travel on stdin.
    """
    from audioscope.annotation.ls_provision import MARKER

    request = {
        "admin": {"email": secrets.admin.email, "want_token": not secrets.admin.has_access_token},
        "raters": [
            {"name": name, "email": a.email, "password": a.password, "want_token": not a.has_access_token}
            for name, a in sorted(secrets.raters.items())
        ],
    }
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ls_provision.py")
    env = server_env(settings, secrets)
    done = subprocess.run(
        [label_studio_python(settings), script], input=json.dumps(request), env=env, cwd=settings.data_dir,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if done.returncode != 0 or MARKER not in done.stdout:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise ServerError(f"making the Label Studio accounts failed: {_redact(last, secrets)}")
    reply = json.loads(done.stdout.split(MARKER, 1)[1].strip().splitlines()[0])

    def filled(account: Account, got: Mapping[str, object]) -> Account:
        return replace(
            account, user_id=int(got["user_id"]), organization_id=int(got["organization_id"]),  # type: ignore[arg-type]
            token=str(got.get("token") or account.token),
        )  # fmt: skip

    out = replace(secrets, admin=filled(secrets.admin, reply["admin"]))
    for name, got in reply["raters"].items():
        out = out.with_rater(name, filled(secrets.raters[name], got))
    return out


# --------------------------------------------------------------------------- start / stop


def _redact(text: str, secrets: Secrets) -> str:
    accounts = [secrets.admin, *secrets.raters.values()]
    for value in [a.password for a in accounts] + [a.token for a in accounts]:
        if value:
            text = text.replace(value, "***")
    return text


def _log_tail(path: str, secrets: Secrets, n: int = 1500) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()[-n:]
    except FileNotFoundError:
        return "(no log)"
    return _redact(text, secrets)


def wait_ready(url: str, process: subprocess.Popen | None, timeout_s: float, log: str, secrets: Secrets) -> float:
    """Seconds until ``/health`` answers 200; raises ServerError if the process dies or time runs out."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if process is not None and process.poll() is not None:
            raise ServerError(
                f"Label Studio stopped while starting (exit code {process.returncode}); the end of {log}:\n"
                + _log_tail(log, secrets)
            )
        try:
            if requests.get(f"{url}/health", timeout=5).status_code == 200:
                return time.monotonic() - t0
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise ServerError(f"Label Studio did not answer at {url} within {timeout_s:.0f} s; see {log}")


def _write_json(path: str, payload: Mapping[str, object]) -> None:
    storage.atomic_write(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def server_command(settings: ServerSettings, port: int) -> list[str]:
    """The command line of the server: no secrets on it (they travel in the environment)."""
    exe = find_executable(settings.executable)
    return [exe, "start", "--no-browser", "--internal-host", settings.host, "--port", str(port)]


def launch(settings: ServerSettings, secrets: Secrets, port: int, reader: bool = False) -> subprocess.Popen:
    """Start the subprocess in its own process group, output to ``server.log``.

    A ``reader`` listens on 127.0.0.1 whatever ``--host`` says, and gets no
    admin login in its environment (the first process made the admin).
    """
    cmd = server_command(replace(settings, host="127.0.0.1") if reader else settings, port)
    os.makedirs(settings.path(LS_DATA), mode=0o700, exist_ok=True)
    env = server_env(settings, secrets)
    if reader:
        env = {k: v for k, v in env.items() if k not in ("LABEL_STUDIO_USERNAME", "LABEL_STUDIO_PASSWORD")}
    with open(settings.path(LOG_FILE), "ab") as log:
        return subprocess.Popen(
            cmd, env=env, cwd=settings.data_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def start(settings: ServerSettings) -> RunningServer:
    """Start the server (or find it running), create the accounts, write the files; see the module docstring."""
    os.makedirs(settings.data_dir, exist_ok=True)
    secrets = server_secrets(settings.secrets_path, settings.admin_email, list(settings.raters))
    write_secrets(settings.secrets_path, secrets)  # before the first start: the admin is created from it
    pid = running_pid(settings.data_dir)
    if pid is not None:
        url = json.loads(Path(settings.path(SERVER_JSON)).read_text())["url"]
        process, seconds = None, 0.0
    else:
        port = settings.port or free_port(settings.host)
        if port_in_use(settings.host, port):
            raise ServerError(
                f"port {port} on {settings.host} is taken by another program; give another --port (0 picks a free one)"
            )
        process = launch(settings, secrets, port)
        pid = process.pid
        Path(settings.path(PID_FILE)).write_text(f"{pid}\n", encoding="ascii")
        url = f"http://{settings.host if settings.host != '0.0.0.0' else '127.0.0.1'}:{port}"
        try:
            seconds = wait_ready(url, process, settings.timeout_s, settings.path(LOG_FILE), secrets)
        except BaseException:
            stop(settings.data_dir)
            raise
    secrets = replace(provision(settings, secrets), url=url)
    write_secrets(settings.secrets_path, secrets)
    try:
        readers = start_readers(settings, secrets)
    except BaseException:
        stop(settings.data_dir)
        raise
    _write_json(
        settings.path(SERVER_JSON),
        {
            "url": url, "pid": pid, "host": settings.host, "port": int(url.rsplit(":", 1)[1]),
            "document_root": settings.root, "database": "postgresql" if settings.postgres else "sqlite",
            "data_dir": os.path.abspath(settings.data_dir), "secrets_file": os.path.abspath(settings.secrets_path),
            "raters": sorted(secrets.raters), "readers": [{"url": u, "pid": p} for u, p in readers],
        },
    )  # fmt: skip
    return RunningServer(
        url=url, pid=pid, secrets=secrets, seconds=seconds, process=process, readers=tuple(u for u, _ in readers)
    )


def _readers_of(data_dir: str) -> list[tuple[str, int]]:
    """(url, pid) of the readers ``server.json`` lists whose process still runs."""
    try:
        listed = json.loads(Path(data_dir, SERVER_JSON).read_text()).get("readers") or []
    except (FileNotFoundError, ValueError):
        return []
    return [(str(r["url"]), int(r["pid"])) for r in listed if _is_reader(int(r["pid"]), str(r["url"]))]


def _is_reader(pid: int, url: str) -> bool:
    """True when ``pid`` runs and is the Label Studio that serves ``url``'s port (not a later process with that pid)."""
    if not pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc here: trust server.json
    port = url.rsplit(":", 1)[-1].encode()
    return any(b"label-studio" in a for a in args) and any(a == b"--port" and b == port for a, b in zip(args, args[1:]))


def start_readers(settings: ServerSettings, secrets: Secrets) -> list[tuple[str, int]]:
    """(url, pid) of ``settings.processes - 1`` reader processes: those running, plus new ones; waits until they answer."""
    running = _readers_of(settings.data_dir)
    keep, extra = running[: max(settings.processes - 1, 0)], running[max(settings.processes - 1, 0) :]
    for _, pid in extra:
        _stop_group(pid, 30.0)
    started = []
    for _ in range(settings.processes - 1 - len(keep)):  # all launched first: they start side by side
        port = free_port("127.0.0.1")
        started.append((f"http://127.0.0.1:{port}", launch(settings, secrets, port, reader=True)))
    try:
        for url, process in started:
            wait_ready(url, process, settings.timeout_s, settings.path(LOG_FILE), secrets)
    except BaseException:
        for _, process in started:
            _stop_group(process.pid, 30.0)
        raise
    return keep + [(url, process.pid) for url, process in started]


def stop(data_dir: str, timeout_s: float = 30.0) -> bool:
    """Stop the server of ``data_dir`` (its whole process group, and its readers'); False when none ran."""
    for _, reader in _readers_of(data_dir):
        _stop_group(reader, timeout_s)
    pid = read_pid(data_dir)
    pid_file = os.path.join(data_dir, PID_FILE)
    if pid is None or not pid_alive(pid) or not _is_label_studio(pid):
        if os.path.exists(pid_file):
            os.remove(pid_file)
        return False
    _stop_group(pid, timeout_s)
    if os.path.exists(pid_file):
        os.remove(pid_file)
    return True


def _stop_group(pid: int, timeout_s: float) -> None:
    """SIGTERM to the process group of ``pid``, SIGKILL if it is still there after ``timeout_s``."""
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        t0 = time.monotonic()
        while pid_alive(pid) and time.monotonic() - t0 < wait_s:
            time.sleep(0.2)
        if not pid_alive(pid):
            break


def serve_foreground(server: RunningServer, data_dir: str) -> int:
    """Wait for the server's process; Ctrl-C stops it. Returns its exit code."""
    process = server.process
    if process is None:
        print(f"the server of {data_dir} was already running (pid {server.pid}); leaving it running", file=sys.stderr)
        return 0
    try:
        return int(process.wait())
    except KeyboardInterrupt:
        print("\nstopping Label Studio", file=sys.stderr)
        stop(data_dir)
        return 0
    finally:
        if not pid_alive(server.pid):
            stop(data_dir)  # its readers too; removes the pid file


def read_server_secrets(data_dir: str, secrets_file: str | None = None) -> Secrets:
    """The secrets of a server started with ``data_dir``."""
    return read_secrets(secrets_file or os.path.join(data_dir, SECRETS_JSON))
