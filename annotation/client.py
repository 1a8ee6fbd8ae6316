"""The toolkit's connection to Label Studio: the official SDK, one account per client.

Every client acts as one account with that account's **personal access
token** (a JWT refresh token; Label Studio's legacy tokens are off by
default since 1.17). Calls go through ``label-studio-sdk`` (``LabelStudio``,
which turns the token into short-lived access tokens itself) wherever it
covers them. Hand-written requests remain where the SDK is missing
something or measured slower, each saying why:

* the task list with ``include=`` (only ids, for pull's ``--page-size``
  reads): the SDK's ``tasks.list`` returns every field of every task,
  parsed into models;
* :func:`answers`, the health check of a server process (not an API call);
* the export of given task ids (pull's pages): the SDK sends ``ids=``,
  which the server ignores (it answers with the whole project);
* ``get``/``post``/``patch`` for the few calls the tests make by path.

Errors are :class:`LabelStudioError` (the server answered with an error) or
:class:`ServerUnreachable` (it did not answer); messages never carry the
token.
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

import requests

from audioscope.shell import q

logger = logging.getLogger(__name__)

#: Tasks per page of the task list.
LIST_PAGE_SIZE = 1000
#: Task ids per export request (the ids travel in the query string).
EXPORT_PAGE_SIZE = 500

T = TypeVar("T")


class LabelStudioError(RuntimeError):
    """The server answered with an HTTP error."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ServerUnreachable(LabelStudioError):
    """The server did not answer (stopped, wrong URL, network)."""


def _detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason
    return _body_detail(body)


def _body_detail(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("validation_errors", "detail", "error"):
            if body.get(key):
                return json.dumps(body[key])[:400]
    return json.dumps(body, default=str)[:400]


@contextmanager
def sdk_errors(url: str, what: str) -> Iterator[None]:
    """The SDK's errors (httpx, ApiError) as ours."""
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    try:
        yield
    except ApiError as e:
        raise LabelStudioError(f"Label Studio answered {e.status_code} to {what}: {_body_detail(e.body)}", e.status_code) from None
    except (httpx.TransportError, requests.ConnectionError) as e:
        raise ServerUnreachable(f"Label Studio at {url} did not answer {what} ({type(e).__name__})") from None


class Client:
    """One account on one server: the SDK (``.sdk``) plus the few hand-written calls."""

    def __init__(self, url: str, token: str, timeout_s: float = 120.0, retries: int = 2) -> None:
        from label_studio_sdk import LabelStudio

        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.retries = retries
        self._token = token
        self._access: str | None = None
        self.sdk = LabelStudio(base_url=self.url, api_key=token, timeout=timeout_s)
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy from the environment for a local server

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def call(self, what: str, fn: Callable[[Any], T]) -> T:
        """``fn(sdk)`` with the SDK's errors turned into ours; GET-like calls retried on connection errors."""
        for attempt in range(self.retries + 1):
            try:
                with sdk_errors(self.url, what):
                    return fn(self.sdk)
            except ServerUnreachable:
                if attempt == self.retries:
                    raise
                time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ hand-written requests

    def _authorization(self, fresh: bool = False) -> str:
        if self._token.count(".") != 2:  # a legacy token (only where an old server still has them on)
            return f"Token {self._token}"
        if self._access is None or fresh:
            self._access = self.call("POST /api/token/refresh", lambda sdk: sdk.tokens.refresh(refresh=self._token).access)
        return f"Bearer {self._access}"

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; GETs are retried on connection errors. Returns the decoded JSON (or None)."""
        tries = self.retries + 1 if method == "GET" else 1
        fresh = False
        for attempt in range(tries + 1):
            try:
                headers = {"Authorization": self._authorization(fresh)}
                response = self.session.request(method, self.url + path, timeout=self.timeout_s, headers=headers, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as e:
                if attempt + 1 >= tries:
                    raise ServerUnreachable(
                        f"Label Studio at {self.url} did not answer {method} {path.split('?')[0]} "
                        f"({type(e).__name__})"
                    ) from None
                time.sleep(0.5 * 2**attempt)
                continue
            if response.status_code == 401 and not fresh and self._token.count(".") == 2:
                fresh = True  # the access token expired: one more try with a new one
                continue
            break
        if response.status_code >= 400:
            raise LabelStudioError(
                f"Label Studio answered {response.status_code} to {method} {path.split('?')[0]}: {_detail(response)}",
                response.status_code,
            )
        if not response.content:
            return None
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, json=body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, json=body)

    # ------------------------------------------------------------------ through the SDK

    def whoami(self) -> dict[str, Any]:
        return self.call("GET /api/current-user/whoami", lambda sdk: sdk.users.whoami().model_dump())

    def projects(self) -> list[dict[str, Any]]:
        """Every project this account sees (id, title, ...)."""
        return self.call("GET /api/projects", lambda sdk: [p.model_dump() for p in sdk.projects.list(page_size=100)])

    def project(self, project_id: int) -> dict[str, Any]:
        return self.call(f"GET /api/projects/{project_id}", lambda sdk: sdk.projects.get(project_id).model_dump())

    def create_project(self, settings: Mapping[str, Any]) -> int:
        return int(self.call("POST /api/projects", lambda sdk: sdk.projects.create(**settings).id))

    def update_project(self, project_id: int, settings: Mapping[str, Any]) -> None:
        self.call(f"PATCH /api/projects/{project_id}", lambda sdk: sdk.projects.update(project_id, **settings))

    def import_tasks(self, project_id: int, tasks: Sequence[Mapping[str, Any]]) -> list[int]:
        """Import tasks in one request; the ids of the tasks the server made."""
        what = f"POST /api/projects/{project_id}/import"
        with sdk_errors(self.url, what):  # never retried: a retry could import twice
            got = self.sdk.projects.import_tasks(project_id, request=list(tasks), return_task_ids=True)
        return [int(t) for t in got.task_ids or []]

    def export(self, project_id: int, task_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """Tasks with data and annotations (JSON export): every task (SDK), or those of ``task_ids``.

        With ids the request is hand-written: the SDK's ``download_sync(ids=...)``
        sends ``ids=``, which server 1.23 ignores (measured: a page of 500
        ids returned all 10,000 tasks, 11.5 MB); the server reads ``ids[]``.
        """
        if task_ids is not None:
            return self.get(
                f"/api/projects/{project_id}/export", exportType="JSON", download_all_tasks="true",
                **{"ids[]": [str(t) for t in task_ids]},
            )  # fmt: skip

        def run(sdk: Any) -> list[dict[str, Any]]:
            chunks = sdk.projects.exports.download_sync(project_id, export_type="JSON", download_all_tasks=True)
            return json.loads(b"".join(chunks))

        return self.call(f"GET /api/projects/{project_id}/export", run)

    def storages(self, kind: str, project_id: int) -> list[dict[str, Any]]:
        """The project's import storages of ``kind`` ("localfiles" or "gcs")."""
        attr = "local" if kind == "localfiles" else kind
        return self.call(
            f"GET /api/storages/{kind}", lambda sdk: [s.model_dump() for s in getattr(sdk.import_storage, attr).list(project=project_id)]
        )

    def create_storage(self, kind: str, body: Mapping[str, Any]) -> None:
        attr = "local" if kind == "localfiles" else kind
        with sdk_errors(self.url, f"POST /api/storages/{kind}"):
            getattr(self.sdk.import_storage, attr).create(**body)

    def update_storage(self, kind: str, storage_id: int, body: Mapping[str, Any]) -> None:
        attr = "local" if kind == "localfiles" else kind
        with sdk_errors(self.url, f"PATCH /api/storages/{kind}/{storage_id}"):
            getattr(self.sdk.import_storage, attr).update(storage_id, **body)

    def annotate(self, task_id: int, body: Mapping[str, Any]) -> int:
        """Add an annotation (as this account) to a task; its id."""
        with sdk_errors(self.url, f"POST /api/tasks/{task_id}/annotations"):
            return int(self.sdk.annotations.create(task_id, **body).id)

    # ------------------------------------------------------------------ tasks

    def task_pages(self, project_id: int, include: str, page_size: int = LIST_PAGE_SIZE) -> Iterator[list[dict[str, Any]]]:
        """The project's tasks, a page at a time, with only the ``include`` fields.

        Hand-written: the SDK's ``tasks.list`` has no ``include`` and returns
        every field of every task parsed into models (its own annotations,
        predictions, drafts), several times the bytes and time for ids.
        """
        page, seen = 1, 0
        while True:
            try:
                body = self.get("/api/tasks/", project=project_id, page=page, page_size=page_size, include=include)
            except LabelStudioError as e:
                if e.status == 404 and page > 1:  # past the last page
                    return
                raise
            tasks = body.get("tasks") or []
            if not tasks:
                return
            yield tasks
            seen += len(tasks)
            if seen >= int(body.get("total") or 0):
                return
            page += 1

    def task_ids(self, project_id: int) -> list[int]:
        return [int(t["id"]) for page in self.task_pages(project_id, "id") for t in page]

    def export_pages(
        self, project_id: int, task_ids: Sequence[int], page_size: int = EXPORT_PAGE_SIZE
    ) -> Iterator[list[dict[str, Any]]]:
        """Tasks with data and annotations (JSON export), ``page_size`` task ids per request."""
        for i in range(0, len(task_ids), page_size):
            yield self.export(project_id, task_ids[i : i + page_size])


def answers(url: str, timeout_s: float = 5.0) -> bool:
    """True when the Label Studio at ``url`` answers its health check."""
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment for a local server
    try:
        return session.get(url.rstrip("/") + "/health", timeout=timeout_s).status_code == 200
    except requests.RequestException:
        return False
    finally:
        session.close()


@dataclass(frozen=True)
class ServerInfo:
    """What ``audioscope annotate server`` wrote into ``SERVER_DIR/server.json``."""

    url: str
    document_root: str | None = None
    #: URLs of the server's reader processes (``annotate server --processes``): the same
    #: server and database, on loopback ports, for pull's exports side by side
    readers: tuple[str, ...] = ()

    @classmethod
    def read(cls, server_dir: str) -> "ServerInfo | None":
        path = os.path.join(server_dir, "server.json")
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        readers = tuple(str(r["url"]) for r in d.get("readers") or [] if isinstance(r, dict) and r.get("url"))
        return cls(str(d["url"]), d.get("document_root"), readers)


def connection_settings(
    server_dir: str, url: str | None, secrets_file: str | None, env: Mapping[str, str] = os.environ
) -> tuple[str, str, str | None]:
    """(url, secrets file, document root) from the flags, the environment and ``SERVER_DIR``."""
    info = ServerInfo.read(server_dir)
    secrets_path = secrets_file or os.path.join(server_dir, "secrets.json")
    resolved = url or env.get("LABEL_STUDIO_URL") or (info.url if info else None)
    if not resolved:
        raise LabelStudioError(
            f"no Label Studio URL: {server_dir}/server.json does not exist. Start the server with "
            f"`audioscope annotate server --data-dir {q(server_dir)} --detach`, or give --url (or LABEL_STUDIO_URL)"
        )
    return resolved, secrets_path, info.document_root if info else None
