"""Signing out of the console revokes the cookie server-side, on every replica (issue 19), and
failed sign-ins are throttled."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aisopod_session.service.app import create_app
from aisopod_session.service.config import ServiceConfig
from aisopod_session.store import (
    AsyncSessionStore,
    console_sign_in_revoked,
    revoke_console_sign_in,
)

from ..conftest import PG_URL
from .conftest import ADMIN_TOKEN, TOKENS, csrf_of, page, sign_in


def _config(backend: str, database: Path, schema: str | None, **extra: Any) -> ServiceConfig:
    db: dict[str, Any] = ({"url": PG_URL, "schema": schema} if backend == "postgres"
                          else {"url": str(database)})
    return ServiceConfig.model_validate({"database": db, "tokens": TOKENS, **extra})


@pytest.fixture(params=["sqlite", "postgres"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> ServiceConfig:
    schema = request.getfixturevalue("pg_schema") if request.param == "postgres" else None
    return _config(request.param, tmp_path / "console.db", schema)


def test_a_signed_out_cookie_is_refused_by_every_replica(config: ServiceConfig) -> None:
    with TestClient(create_app(config), follow_redirects=False) as one, \
            TestClient(create_app(config), follow_redirects=False) as two:
        sign_in(one, ADMIN_TOKEN)
        cookie = one.cookies.get("aisopod_console")
        assert cookie
        two.cookies.set("aisopod_console", cookie)
        assert two.get("/console/").status_code == 200  # the same sign-in on the other replica
        response = one.post("/console/logout", data={"csrf": csrf_of(page(one, "/console/"))})
        assert response.status_code == 303
        # the old value, replayed on either replica, is no longer a sign-in
        for replica in (one, two):
            replica.cookies.clear()
            replica.cookies.set("aisopod_console", cookie)
            response = replica.get("/console/")
            assert response.status_code == 303
            assert response.headers["location"].startswith("/console/login")
            assert replica.post("/console/logout", data={"csrf": "x"}).status_code == 303
        # a new sign-in works
        two.cookies.clear()
        sign_in(two, ADMIN_TOKEN)
        assert two.get("/console/").status_code == 200


def test_expired_revocations_are_pruned(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = await AsyncSessionStore.open(str(tmp_path / "revocations.db"))
        try:
            now = time.time()
            await revoke_console_sign_in(store, "recent", now - 60, now=now - 60)
            await revoke_console_sign_in(store, "old", now - 7200, now=now - 7200)
            assert await console_sign_in_revoked(store, "old")
            # a later sign-out prunes what expired more than an hour ago, not what just expired
            assert await revoke_console_sign_in(store, "new", now + 3600, now=now) == 1
            assert not await console_sign_in_revoked(store, "old")
            assert await console_sign_in_revoked(store, "recent")
            assert await console_sign_in_revoked(store, "new")
            assert not await console_sign_in_revoked(store, "never")
            await revoke_console_sign_in(store, "new", now + 3600, now=now)  # twice: harmless
        finally:
            await store.close()

    asyncio.run(scenario())


def test_failed_sign_ins_are_throttled_per_client(tmp_path: Path) -> None:
    config = _config("sqlite", tmp_path / "console.db", None,
                     auth={"failures_per_client": 3, "window_seconds": 60})
    with TestClient(create_app(config), follow_redirects=False) as client:
        sign_in(client, ADMIN_TOKEN)  # successes are not counted
        for _ in range(3):
            response = client.post("/console/login", data={"token": "wrong-token-0123456789"})
            assert response.status_code == 401
        response = client.post("/console/login", data={"token": "wrong-token-0123456789"})
        assert response.status_code == 429
        assert 1 <= int(response.headers["retry-after"]) <= 60
        assert "Too many failed sign-ins" in response.text
        # locked out: not even a right token is checked from this client until the window ends
        response = client.post("/console/login", data={"token": ADMIN_TOKEN})
        assert response.status_code == 429
        # (the API refuses this client too: /metrics needs a token here)
        metrics = client.app.state.metrics.render()[0].decode()  # type: ignore[attr-defined]
        assert 'aisopod_auth_throttled_total{surface="console"} 2.0' in metrics
