"""`audioscope annotate onboard`: each rater's login, written for the owner to hand out.

The owner sends each rater their own block (URL of the login page, email,
password) by a private channel, with the rater guide (docs/rater-guide.md).
The file is written with mode 0600 (only the owner may read it), atomically,
and is never printed. Accounts are made by ``annotate server --raters``;
there is no signup form for raters to use (it is closed).
"""

from __future__ import annotations

from typing import Any

from audioscope import storage

LOGINS_FILE = "rater-logins.txt"
GUIDE = "docs/rater-guide.md"


def logins_text(url: str, secrets: Any) -> str:
    lines = [
        "# Label Studio logins of the raters: one block per rater, send each only their own.",
        "# Owner-only file (mode 0600). Hand it out by a private channel, never by a shared one.",
        f"# With each login, send the rater guide ({GUIDE}).",
        "",
    ]
    for name, acc in sorted(secrets.raters.items()):
        lines += [f"[{name}]", f"login page: {url.rstrip('/')}/user/login/", f"email:      {acc.email}", f"password:   {acc.password}", ""]
    return "\n".join(lines)


def write_logins(path: str, url: str, secrets: Any) -> int:
    """Write the raters' logins to ``path`` (mode 0600); how many raters."""
    storage.atomic_write(path, logins_text(url, secrets), mode=0o600)
    return len(secrets.raters)
