"""Secrets of the Label Studio server: the admin account and the rater accounts.

Secrets never travel on a command line (where ``ps`` and the shell history
see them) and are never printed or logged. They come from:

* the **secrets file** (JSON, mode 0600), which ``audioscope annotate server``
  writes when it creates accounts, and which the other commands read
  (``--secrets-file``, default ``SERVER_DIR/secrets.json``);
* **environment variables**, which win over the file:
  ``AUDIOSCOPE_LS_ADMIN_PASSWORD`` when the server is created,
  ``AUDIOSCOPE_LS_ADMIN_TOKEN`` (a personal access token of the admin made
  elsewhere) and ``LABEL_STUDIO_API_KEY`` (the SDK's own name) for the admin
  token a client uses.

Tokens are Label Studio's personal access tokens (JWT refresh tokens; the
legacy tokens are off, as Label Studio ships since 1.17): the server makes
one per account (``annotate server``) and the SDK turns it into short-lived
access tokens. Missing passwords are generated with :mod:`secrets` (32
URL-safe characters).
"""

from __future__ import annotations

import json
import os
import secrets as _secrets
import stat
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

ENV_ADMIN_PASSWORD = "AUDIOSCOPE_LS_ADMIN_PASSWORD"
ENV_ADMIN_TOKEN = "AUDIOSCOPE_LS_ADMIN_TOKEN"
ENV_CLIENT_TOKEN = "LABEL_STUDIO_API_KEY"

DEFAULT_ADMIN_EMAIL = "admin@audioscope.local"
RATER_DOMAIN = "audioscope.local"


class SecretsError(ValueError):
    """The secrets file is missing, unreadable or readable by others."""


@dataclass(frozen=True)
class Account:
    """One Label Studio account. ``token`` is its API token (empty until known)."""

    email: str
    password: str
    token: str = ""
    user_id: int | None = None
    organization_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "email": self.email, "password": self.password, "token": self.token, "user_id": self.user_id,
            "organization_id": self.organization_id,
        }  # fmt: skip

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Account":
        uid, org = d.get("user_id"), d.get("organization_id")
        return cls(
            str(d["email"]), str(d["password"]), str(d.get("token") or ""), int(uid) if uid is not None else None,
            int(org) if org is not None else None,
        )  # fmt: skip

    @property
    def has_access_token(self) -> bool:
        """True when ``token`` is a personal access token (a JWT), not a legacy token or nothing."""
        return self.token.count(".") == 2

    def __repr__(self) -> str:  # never show secrets in tracebacks or logs
        return f"Account(email={self.email!r}, user_id={self.user_id!r})"


@dataclass(frozen=True)
class Secrets:
    """The admin account and the rater accounts (by name, e.g. ``rater1``)."""

    admin: Account
    raters: dict[str, Account] = field(default_factory=dict)
    url: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "admin": self.admin.to_json(),
            "raters": {name: acc.to_json() for name, acc in sorted(self.raters.items())},
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Secrets":
        raters = {str(k): Account.from_json(v) for k, v in (d.get("raters") or {}).items()}
        return cls(Account.from_json(d["admin"]), raters, d.get("url"))

    def with_rater(self, name: str, account: Account) -> "Secrets":
        return replace(self, raters={**self.raters, name: account})

    def __repr__(self) -> str:
        return f"Secrets(admin={self.admin!r}, raters={sorted(self.raters)})"


def new_password() -> str:
    return _secrets.token_urlsafe(24)


def new_token() -> str:
    return _secrets.token_hex(20)


def rater_email(name: str) -> str:
    """``rater1`` -> ``rater1@audioscope.local``; an address is kept as it is."""
    return name if "@" in name else f"{name}@{RATER_DOMAIN}"


def read_secrets(path: str) -> Secrets:
    """Load a secrets file; refuse one that others may read."""
    if not os.path.isfile(path):
        raise SecretsError(
            f"no secrets file at {path}: start the server with `audioscope annotate server` (it writes one), "
            "or give --secrets-file"
        )
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        raise SecretsError(f"{path} may be read by other users (mode {mode:o}); run `chmod 600 {path}`")
    try:
        with open(path, encoding="utf-8") as f:
            return Secrets.from_json(json.load(f))
    except (ValueError, KeyError, TypeError) as e:
        raise SecretsError(f"{path} is not a secrets file written by `audioscope annotate server` ({type(e).__name__})") from None


def write_secrets(path: str, value: Secrets) -> None:
    """Write the secrets file atomically with mode 0600 (it never exists with wider rights)."""
    from audioscope import storage

    storage.atomic_write(path, json.dumps(value.to_json(), indent=2, sort_keys=True) + "\n", mode=0o600)


def server_secrets(path: str, admin_email: str, raters: list[str], env: Mapping[str, str] = os.environ) -> Secrets:
    """The secrets a server starts with: the file's, then the environment's, then new ones.

    Rater accounts named in ``raters`` that the file lacks get new passwords
    (their tokens are learnt after they sign up).
    """
    if os.path.exists(path):
        current = read_secrets(path)
        if current.admin.email != admin_email:
            raise SecretsError(
                f"{path} holds the admin account {current.admin.email}, not {admin_email}; "
                "give the same --admin-email, or another --data-dir for a new server"
            )
    else:
        current = Secrets(Account(admin_email, "", ""))
    admin = Account(
        admin_email,
        env.get(ENV_ADMIN_PASSWORD) or current.admin.password or new_password(),
        env.get(ENV_ADMIN_TOKEN) or current.admin.token,
        current.admin.user_id,
        current.admin.organization_id,
    )
    out = replace(current, admin=admin)
    for name in raters:
        if name not in out.raters:
            out = out.with_rater(name, Account(rater_email(name), new_password()))
    return out


def client_token(secrets_path: str | None, env: Mapping[str, str] = os.environ) -> str:
    """The admin API token a client uses: ``LABEL_STUDIO_API_KEY``, else the secrets file's."""
    token = env.get(ENV_CLIENT_TOKEN)
    if token:
        return token
    if secrets_path is None:
        raise SecretsError(f"no API token: set {ENV_CLIENT_TOKEN} or give --secrets-file")
    return read_secrets(secrets_path).admin.token
