"""`annotate server --postgres` against a real PostgreSQL: accounts, a pushed project, tables in PostgreSQL.

A throwaway PostgreSQL (``initdb`` + ``pg_ctl``, password authentication on
127.0.0.1, a free port) is made in a temporary folder; a real Label Studio
is started by ``audioscope annotate server --postgres`` with the ``POSTGRE_*``
variables pointing at it and a fresh data folder. PostgreSQL refuses to run
as root: as root its programs run as ``nobody`` (``runuser``), otherwise as
the current user. Without the PostgreSQL programs the test skips, saying why.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from audioscope import cli
from audioscope.annotation.client import Client
from audioscope.annotation.credentials import read_secrets
from audioscope.annotation.server import free_port

from .conftest import require_labelstudio
from .helpers import make_inputs

# Label Studio's first start on an empty PostgreSQL database (its migrations) takes 30-90 s on 2 busy cores.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("labelstudio")]

PG_USER = "audioscope"
PG_PASSWORD = "pg-test-password"
PG_DATABASE = "labelstudio"


def pg_bin_dir() -> str | None:
    """The folder of ``initdb``/``pg_ctl``/``psql``: on PATH, or the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl") and shutil.which("psql"):
        return os.path.dirname(os.path.realpath(found))
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True):
        if all(os.access(os.path.join(d, n), os.X_OK) for n in ("initdb", "pg_ctl", "psql")):
            return d
    return None


@dataclass
class Postgres:
    """A running throwaway PostgreSQL server on 127.0.0.1."""

    bin_dir: str
    base: Path
    port: int

    @property
    def data(self) -> Path:
        return self.base / "data"

    def run(self, program: str, *args: str) -> str:
        """Run a PostgreSQL program (as ``nobody`` when we are root); its output."""
        cmd = [os.path.join(self.bin_dir, program), *args]
        if os.geteuid() == 0 and program != "psql":
            cmd = ["runuser", "-u", "nobody", "--", *cmd]
        env = {**os.environ, "PGPASSWORD": PG_PASSWORD}
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{program} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def sql(self, query: str, database: str = PG_DATABASE) -> list[str]:
        """Rows of ``query`` (one line each), through psql over TCP with the password."""
        out = self.run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, "-d", database, "-Atc", query)
        return out.splitlines()


@contextmanager
def throwaway_postgres() -> Iterator[Postgres]:
    """initdb, start, create the database; stopped and removed on exit."""
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL's programs (initdb, pg_ctl, psql) are not installed")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without `runuser`: PostgreSQL refuses to run as root")
    base = Path(tempfile.mkdtemp(prefix="audioscope-pg-"))  # not under pytest's 0700 root-owned tmp: nobody reads it
    os.chmod(base, 0o755)
    pg = Postgres(bin_dir, base, free_port())
    (base / "pwfile").write_text(PG_PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(base, user="nobody")
        shutil.chown(base / "pwfile", user="nobody")
    try:
        pg.run("initdb", "-D", str(pg.data), "-U", PG_USER, f"--pwfile={base / 'pwfile'}", "--auth=scram-sha-256",
               "-E", "UTF8", "--locale=C")  # fmt: skip
        options = f"-h 127.0.0.1 -p {pg.port} -k {base}"
        pg.run("pg_ctl", "-D", str(pg.data), "-l", str(base / "postgres.log"), "-w", "-t", "120", "-o", options, "start")
        try:
            pg.sql(f"CREATE DATABASE {PG_DATABASE}", database="postgres")
            yield pg
        finally:
            pg.run("pg_ctl", "-D", str(pg.data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    require_labelstudio()
    with throwaway_postgres() as pg:
        yield pg


def test_server_with_postgres_keeps_accounts_and_a_pushed_project_in_postgresql(postgres, tmp_path, monkeypatch, capsys):
    for name, value in {"POSTGRE_NAME": PG_DATABASE, "POSTGRE_USER": PG_USER, "POSTGRE_PASSWORD": PG_PASSWORD,
                        "POSTGRE_HOST": "127.0.0.1", "POSTGRE_PORT": str(postgres.port)}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    root, server_dir = tmp_path / "root", tmp_path / "server"
    root.mkdir()
    try:
        assert cli.main([
            "annotate", "server", "--postgres", "--data-dir", str(server_dir), "--port", "0", "--document-root",
            str(root), "--raters", "rater1,rater2,rater3", "--detach", "--timeout", "420",
        ]) == 0  # fmt: skip
        assert "PostgreSQL" in capsys.readouterr().out
        assert json.loads((server_dir / "server.json").read_text())["database"] == "postgresql"
        secrets = read_secrets(str(server_dir / "secrets.json"))

        # The accounts, through the API, with their own tokens.
        admin = Client(secrets.url, secrets.admin.token)
        assert admin.get("/api/current-user/whoami")["email"] == "admin@audioscope.local"
        for name in ("rater1", "rater2", "rater3"):
            rater = Client(secrets.url, secrets.raters[name].token)
            assert rater.get("/api/current-user/whoami")["email"] == f"{name}@audioscope.local"

        # A tiny pool, rendered under the document root and pushed.
        inputs = make_inputs(tmp_path / "inputs", videos=2)
        ann = tmp_path / "ann"
        assert cli.main([
            "annotate", "sample", "--store", str(inputs["store"]), "--df", str(inputs["df"]), "--annotations", str(ann),
            "--unfiltered-train", "2", "--filtered-train", "1", "--filtered-eval", "1",
        ]) == 0  # fmt: skip
        assert cli.main(["annotate", "render", "--annotations", str(ann), "--media", str(root / "media")]) == 0
        assert cli.main(["annotate", "push", "--annotations", str(ann), "--media", str(root / "media"),
                         "--project-title", "on postgres", "--server-dir", str(server_dir)]) == 0  # fmt: skip
        projects = json.loads((ann / "projects.json").read_text())["raters"]
        pushed = {n: len(Client(secrets.url, secrets.raters[n].token).task_ids(p["project_id"])) for n, p in projects.items()}
        assert sum(pushed.values()) > 0

        # Label Studio's tables and rows are in PostgreSQL, and no SQLite database was made.
        tables = set(postgres.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
        assert {"project", "task", "htx_user", "task_completion"} <= tables
        emails = set(postgres.sql("SELECT email FROM htx_user"))
        assert emails == {"admin@audioscope.local", "rater1@audioscope.local", "rater2@audioscope.local", "rater3@audioscope.local"}
        for name, p in projects.items():
            assert postgres.sql(f"SELECT title FROM project WHERE id = {int(p['project_id'])}") == ["on postgres"]
            assert postgres.sql(f"SELECT count(*) FROM task WHERE project_id = {int(p['project_id'])}") == [str(pushed[name])]
        # each rater alone in an organization of their own
        orgs = postgres.sql("SELECT u.email, count(*) FROM organizations_organizationmember m JOIN htx_user u ON u.id = m.user_id GROUP BY u.email")
        assert all(line.endswith("|1") for line in orgs), orgs
        assert [p for p in server_dir.rglob("*") if "sqlite" in p.name] == []
    finally:
        assert cli.main(["annotate", "server", "--data-dir", str(server_dir), "--stop"]) == 0
