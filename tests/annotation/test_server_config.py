"""Server configuration and secrets without a server: env, command line, secrets file, postgres flag."""

from __future__ import annotations

import os
import stat

import pytest

from audioscope.annotation import credentials as C
from audioscope.annotation.server import ServerError, ServerSettings, server_command, server_env, stop


def test_secrets_file_is_private_and_round_trips(tmp_path):
    path = str(tmp_path / "s" / "secrets.json")
    s = C.server_secrets(path, "admin@x", ["rater1", "bob@y"], env={})
    C.write_secrets(path, s)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    back = C.read_secrets(path)
    assert back == s and sorted(back.raters) == ["bob@y", "rater1"]
    assert back.raters["rater1"].email == "rater1@audioscope.local" and back.raters["bob@y"].email == "bob@y"
    # no token before the server makes one (a personal access token): none is invented here
    assert back.admin.token == "" and not back.admin.has_access_token and len(back.admin.password) >= 24
    # a second call keeps the existing secrets and adds only new raters
    again = C.server_secrets(path, "admin@x", ["rater1", "rater2"], env={})
    assert again.admin == s.admin and again.raters["rater1"] == s.raters["rater1"] and "rater2" in again.raters
    for secret in (s.admin.password, s.raters["rater1"].password):
        assert secret not in repr(s) and secret not in repr(s.admin)


def test_secrets_file_readable_by_others_is_refused(tmp_path):
    path = str(tmp_path / "secrets.json")
    C.write_secrets(path, C.server_secrets(path, "admin@x", [], env={}))
    os.chmod(path, 0o644)
    with pytest.raises(C.SecretsError, match="chmod 600"):
        C.read_secrets(path)


def test_environment_secrets_win(tmp_path):
    env = {C.ENV_ADMIN_PASSWORD: "pw-from-env-123456", C.ENV_ADMIN_TOKEN: "tok-from-env-123456"}
    s = C.server_secrets(str(tmp_path / "s.json"), "admin@x", [], env=env)
    assert (s.admin.password, s.admin.token) == ("pw-from-env-123456", "tok-from-env-123456")
    path = str(tmp_path / "s.json")
    C.write_secrets(path, s)
    assert C.client_token(path, env={}) == "tok-from-env-123456"
    assert C.client_token(path, env={C.ENV_CLIENT_TOKEN: "other"}) == "other"


def test_another_admin_email_is_refused(tmp_path):
    path = str(tmp_path / "s.json")
    C.write_secrets(path, C.server_secrets(path, "admin@x", [], env={}))
    with pytest.raises(C.SecretsError, match="--admin-email"):
        C.server_secrets(path, "other@x", [], env={})


def _settings(tmp_path, **kw) -> ServerSettings:
    return ServerSettings(data_dir=str(tmp_path), document_root=str(tmp_path / "root"), executable="/bin/true", **kw)


def test_secrets_travel_in_the_environment_not_the_command_line(tmp_path):
    settings = _settings(tmp_path, port=8123)
    s = C.server_secrets(str(tmp_path / "s.json"), "admin@x", ["r"], env={})
    env = server_env(settings, s, base={"PATH": "/bin", "LABEL_STUDIO_PASSWORD": "stale", "HOME": "/h"})
    assert env["LABEL_STUDIO_PASSWORD"] == s.admin.password and "LABEL_STUDIO_USER_TOKEN" not in env
    # personal access tokens only (Label Studio's default since 1.17); the signup form is closed
    assert env["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "false" and env["DJANGO_DB"] == "sqlite"
    assert env["LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK"] == "true"
    assert env["LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"] == str(tmp_path / "root")
    assert env["LABEL_STUDIO_LATEST_VERSION_CHECK"] == "false"  # no internet at run time
    assert env["LABEL_STUDIO_BASE_DATA_DIR"] == os.path.join(str(tmp_path), "labelstudio")
    cmd = server_command(settings, 8123)
    assert cmd == ["/bin/true", "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", "8123"]
    assert s.admin.password not in " ".join(cmd)


def test_postgres_flag_needs_its_variables_and_selects_the_database(tmp_path):
    settings = _settings(tmp_path, postgres=True)
    s = C.server_secrets(str(tmp_path / "s.json"), "admin@x", [], env={})
    with pytest.raises(ServerError, match="POSTGRE_NAME"):
        server_env(settings, s, base={"POSTGRE_USER": "u"})
    base = {"POSTGRE_NAME": "ls", "POSTGRE_USER": "u", "POSTGRE_PASSWORD": "p", "POSTGRE_HOST": "db"}
    env = server_env(settings, s, base=base)
    assert env["DJANGO_DB"] == "default" and env["POSTGRE_HOST"] == "db"


def test_stop_without_a_server_says_so(tmp_path):
    (tmp_path / "server.pid").write_text("999999999\n")
    assert stop(str(tmp_path)) is False
    assert not (tmp_path / "server.pid").exists()


def test_a_host_other_than_loopback_says_what_it_exposes(tmp_path, monkeypatch, capsys):
    from audioscope import cli

    monkeypatch.setenv("AUDIOSCOPE_LABELSTUDIO", "/bin/false")  # a "server" that exits at once: nothing listens
    code = cli.main(["annotate", "server", "--host", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path / "s"),
                     "--document-root", str(tmp_path), "--raters", "a,b,c", "--detach", "--timeout", "20"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "stopped while starting" in err
    assert "listening on 0.0.0.0" in err and "sign-up stays closed" in err and "unencrypted" in err
    assert "change, export or delete" in err  # what Label Studio cannot prevent is said plainly


def test_one_signing_key_without_a_dollar_for_every_label_studio_process(tmp_path):
    # django-environ reads a value starting with "$" as the name of another variable, so a key Label
    # Studio generates with a leading "$" reads back as missing and the next process signs with another.
    settings = _settings(tmp_path)
    s = C.server_secrets(str(tmp_path / "s.json"), "admin@x", [], env={})
    env_file = tmp_path / "labelstudio" / ".env"
    env = server_env(settings, s, base={"PATH": "/bin", "SECRET_KEY": "the-user's-own"})
    key = env["SECRET_KEY"]
    assert len(key) == 50 and "$" not in key and key != "the-user's-own"
    assert env_file.read_text().splitlines() == [f"SECRET_KEY={key}"]
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert server_env(settings, s, base={})["SECRET_KEY"] == key  # the same key for the next process

    env_file.write_text("DEBUG=1\nSECRET_KEY=$3dollar-first\nSECRET_KEY=another\n")
    fresh = server_env(settings, s, base={})["SECRET_KEY"]
    assert not fresh.startswith("$") and env_file.read_text().splitlines() == ["DEBUG=1", f"SECRET_KEY={fresh}"]

    env_file.write_text("SECRET_KEY=kept-as-it-is\n")  # a usable key of an existing server stays
    assert server_env(settings, s, base={})["SECRET_KEY"] == "kept-as-it-is"


def test_an_unreadable_settings_file_is_one_clear_error(tmp_path):
    settings = _settings(tmp_path)
    s = C.server_secrets(str(tmp_path / "s.json"), "admin@x", [], env={})
    env_file = tmp_path / "labelstudio" / ".env"
    env_file.parent.mkdir()
    env_file.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ServerError, match="not Label Studio's settings file.*move it away"):
        server_env(settings, s, base={})
    assert env_file.read_bytes() == b"\xff\xfe\x00binary"  # left as it was
