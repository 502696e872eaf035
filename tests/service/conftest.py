"""Fixtures of the HTTP service tests: an app on a fresh database of every backend, reached
through real HTTP requests (httpx over ASGI, inside the app's lifespan).

``api`` is an :class:`Api`: an ``httpx.AsyncClient`` that sends the admin token unless told
otherwise, plus helpers that build percent-encoded session URLs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI

from aisopod_session.errors import PROBLEM_TYPES
from aisopod_session.service.app import create_app
from aisopod_session.service.config import ServiceConfig
from tests.conftest import BACKENDS, PG_URL, drop_pg_schema, pg_available

ADMIN_TOKEN = "admin-token-0123456789abcdef"
BOT_TOKEN = "bot-token-0123456789abcdef"
OTHER_TOKEN = "other-token-0123456789abcdef"
PROBLEM_JSON = "application/problem+json"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ADMIN = bearer(ADMIN_TOKEN)
BOT = bearer(BOT_TOKEN)
OTHER = bearer(OTHER_TOKEN)

TOKENS = [
    {"token": ADMIN_TOKEN, "role": "admin"},
    {"token": BOT_TOKEN, "role": "agent", "agent": "bot"},
    {"token": OTHER_TOKEN, "role": "agent", "agent": "other"},
]


def service_config(url: str, options: dict[str, Any], *, tokens: bool = True,
                   **server: Any) -> ServiceConfig:
    database: dict[str, Any] = {"url": url}
    if "schema" in options:
        database["schema"] = options["schema"]
    if "pool_size" in options:
        database["pool_size"] = options["pool_size"]
    # the token matrices send hundreds of wrong tokens from one client: the throttle of failed
    # authentication has tests of its own (test_hardening.py)
    return ServiceConfig.model_validate(
        {"database": database, "server": server, "tokens": TOKENS if tokens else [],
         "auth": {"failures_per_client": 100_000, "failures_global": 1_000_000}}
    )


def session_path(agent: str = "bot", channel: str = "discord", account: str = "acct",
                 kind: str = "dm", peer: str = "alice", suffix: str = "") -> str:
    """The URL of a session: every part percent-encoded, ``/`` included (as %2F)."""
    parts = "/".join(encode_part(part) for part in (channel, account, kind, peer))
    return f"/v1/agents/{encode_part(agent)}/sessions/{parts}{suffix}"


def encode_part(part: str) -> str:
    """Percent-encode one path part; a part of only dots is encoded too (``%2E``), as URL
    clients would otherwise remove it as a ``.``/``..`` segment."""
    encoded = quote(part, safe="")
    return encoded.replace(".", "%2E") if set(part) == {"."} else encoded


def message(content: Any, role: str = "user", **fields: Any) -> dict[str, Any]:
    return {"role": role, "content": content, **fields}


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status, and leaks no internals."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["title"]
    kind = body.get("type", "about:blank")
    assert kind == "about:blank" or kind in PROBLEM_TYPES, kind
    assert_no_internals(response.text)
    return body


def assert_no_internals(text: str) -> None:
    for leak in ("Traceback", 'File "', "sqlite3.", "psycopg", "site-packages"):
        assert leak not in text, text


class Api(httpx.AsyncClient):
    """An HTTP client of one app; sends the admin token unless a request says otherwise."""

    app: FastAPI

    async def put_session(self, **parts: Any) -> dict[str, Any]:
        response = await self.put(session_path(**parts))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def append(self, messages: list[dict[str, Any]], **parts: Any) -> list[dict[str, Any]]:
        response = await self.post(session_path(suffix="/messages", **parts),
                                   json={"messages": messages})
        assert response.status_code == 200, response.text
        body: list[dict[str, Any]] = response.json()
        return body

    async def export_lines(self, **params: Any) -> list[dict[str, Any]]:
        response = await self.get("/v1/admin/export", params=params)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/x-ndjson")
        return [json.loads(line) for line in response.text.splitlines()]


@asynccontextmanager
async def serving(app: FastAPI, headers: dict[str, str] | None = None) -> AsyncIterator[Api]:
    """An Api client of ``app``, inside the app's lifespan (start-up opens the database)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with Api(transport=transport, base_url="http://testserver",
                       headers=ADMIN if headers is None else headers) as client:
            client.app = app
            yield client


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def config(backend_url: tuple[str, dict[str, Any]]) -> ServiceConfig:
    """The service's configuration on a fresh database of each backend, with tokens."""
    url, options = backend_url
    return service_config(url, options)


@pytest.fixture
async def api(config: ServiceConfig) -> AsyncIterator[Api]:
    async with serving(create_app(config)) as client:
        yield client


@pytest.fixture(scope="module", params=BACKENDS)
async def shared_api(request: pytest.FixtureRequest,
                     tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    """One app per backend for a whole module, for tests that only read or that each use their
    own keys: many small cases without a database apiece."""
    if request.param == "postgres":
        pg_available()
        schema = f"t_{uuid.uuid4().hex[:12]}"
        config = service_config(PG_URL, {"schema": schema, "pool_size": 2})
    else:
        config = service_config(str(tmp_path_factory.mktemp("shared") / "service.db"), {})
    try:
        async with serving(create_app(config)) as client:
            yield client
    finally:
        if request.param == "postgres":
            drop_pg_schema(schema)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return str(tmp_path / "service.db")
