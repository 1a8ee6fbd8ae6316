"""Google credentials that work offline, for Label Studio's GCS storage on an emulator.

Label Studio signs a presigned URL with the private key of a service account
(``google_application_credentials`` of its GCS storage) and, before each call
to the storage API, trades a signed JWT for an access token at the account's
``token_uri``. :func:`service_account_json` makes such an account with a fresh
RSA key whose ``token_uri`` is a :class:`TokenEndpoint` on 127.0.0.1 (it hands
out a dummy token; the emulator ignores it). Nothing is a secret: the key is
made for the test and signs nothing outside it.
"""

from __future__ import annotations

import http.server
import json
import threading
from types import TracebackType

from tests.gcs_emulator import free_port


class _TokenHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"access_token": "emulator-token", "expires_in": 3600, "token_type": "Bearer"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.server.requests += 1  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:
        pass


class TokenEndpoint:
    """An OAuth2 token endpoint on 127.0.0.1 (``url``); ``requests`` counts the tokens it gave."""

    def __init__(self) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _TokenHandler)
        self.server.requests = 0  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def requests(self) -> int:
        return int(self.server.requests)  # type: ignore[attr-defined]

    def __enter__(self) -> "TokenEndpoint":
        self.thread.start()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()


def service_account_json(token_uri: str, project: str = "audioscope-test") -> str:
    """A service-account key file's text with a new 2048-bit RSA key and the given ``token_uri``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return json.dumps({
        "type": "service_account", "project_id": project, "private_key_id": "0" * 40, "private_key": pem.decode(),
        "client_email": f"raters@{project}.iam.gserviceaccount.com", "client_id": "1" * 21, "token_uri": token_uri,
    })  # fmt: skip
