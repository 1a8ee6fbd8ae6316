"""Onboarding without a server: each rater's login in an owner-only file, nothing printed."""

from __future__ import annotations

import json
import os
import stat

from audioscope import cli
from audioscope.annotation import credentials as C


def test_onboard_writes_each_login_to_an_owner_only_file(tmp_path, capsys):
    server = tmp_path / "server"
    server.mkdir()
    secrets = C.server_secrets(str(server / "secrets.json"), "admin@x", ["rater1", "rater2", "rater3"], env={})
    C.write_secrets(str(server / "secrets.json"), secrets)
    (server / "server.json").write_text(json.dumps({"url": "http://127.0.0.1:9999"}))
    assert cli.main(["annotate", "onboard", "--server-dir", str(server)]) == 0
    out = server / "rater-logins.txt"
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    text = out.read_text()
    for name, acc in secrets.raters.items():
        assert f"[{name}]" in text and acc.email in text and acc.password in text
    assert "http://127.0.0.1:9999/user/login/" in text and "docs/rater-guide.md" in text
    printed = capsys.readouterr()
    assert not [a.password for a in secrets.raters.values() if a.password in printed.out + printed.err]
    assert secrets.admin.password not in text  # the owner's own login is not handed out
