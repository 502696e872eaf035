"""Fixtures shared by the whole suite.

``store`` / ``open_store`` give one *blocking-looking* store for every combination of backend
(SQLite file, PostgreSQL, and the HTTP service over a SQLite file reached through the remote
store) and flavour (``SessionStore``, ``AsyncSessionStore``). The asyncio store is driven through
:class:`BlockingPortal`, which runs each coroutine on an event loop in another thread, so a
conformance test is written once and proves both APIs on all three backends.

PostgreSQL tests never skip: if the server cannot be reached they fail. Each test gets its own
schema, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from aisopod_session import AsyncSessionStore, SessionStore

PG_URL = os.environ.get("AISOPOD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")

BACKENDS = ["sqlite", "postgres"]
"""The databases (multi-process and service tests run on these)."""
STORE_BACKENDS = [*BACKENDS, "http"]
"""What the conformance suite runs on: the databases, and the service through the remote store."""
FLAVOURS = ["sync", "async"]
SERVICE_ADMIN_TOKEN = "conformance-admin-token-0123456789"
SERVICE_CONFIG_TOKENS = [{"token": SERVICE_ADMIN_TOKEN, "role": "admin"}]


class BlockingPortal:
    """An event loop on its own thread; ``call`` runs a coroutine there and waits for it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


class Blocking:
    """A blocking face for an asyncio object: coroutine methods are run on the portal."""

    def __init__(self, target: Any, portal: BlockingPortal) -> None:
        self._target = target
        self._portal = portal

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if inspect.iscoroutinefunction(attr):
            return lambda *args, **kwargs: self._portal.call(attr(*args, **kwargs))
        if name == "for_agent":
            return lambda *args, **kwargs: Blocking(attr(*args, **kwargs), self._portal)
        return attr

    def __enter__(self) -> Blocking:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pg_available() -> None:
    try:
        with psycopg.connect(PG_URL, connect_timeout=5):
            pass
    except psycopg.Error as exc:  # never a skip: CI must run the PostgreSQL half
        pytest.fail(f"PostgreSQL at {PG_URL} is not reachable: {exc}")


def drop_pg_schema(schema: str) -> None:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh, unique PostgreSQL schema name, dropped after the test."""
    pg_available()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield schema
    drop_pg_schema(schema)


class StoreFactory:
    """Opens stores for one backend and flavour at one location; closes them all at the end."""

    def __init__(self, backend: str, flavour: str, location: str) -> None:
        self.backend = backend
        self.flavour = flavour
        self.location = location  # a SQLite path, or a PostgreSQL schema name
        self.url = PG_URL if backend == "postgres" else location
        self._opened: list[Any] = []
        self._services: list[Any] = []
        self._portal: BlockingPortal | None = None

    def options(self, **options: Any) -> dict[str, Any]:
        if self.backend == "postgres":
            options.setdefault("schema", self.location)
            options.setdefault("pool_size", 2)
        return options

    def __call__(self, **options: Any) -> Any:
        options = self.options(**options)
        url = self.url
        if self.backend == "http":
            from aisopod_session.service import BackgroundService, ServiceConfig

            # The database options configure the server's store; the client has a token.
            service = BackgroundService.over(
                self.location, ServiceConfig.model_validate({"tokens": SERVICE_CONFIG_TOKENS}),
                **options)
            self._services.append(service)
            url, options = service.url, {"token": SERVICE_ADMIN_TOKEN}
        if self.flavour == "sync":
            store: Any = SessionStore.open(url, **options)
        else:
            if self._portal is None:
                self._portal = BlockingPortal()
            store = Blocking(self._portal.call(AsyncSessionStore.open(url, **options)),
                             self._portal)
        self._opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self._opened:
            store.close()
        for service in self._services:
            service.close()
        if self._portal is not None:
            self._portal.close()


@pytest.fixture(params=[(b, f) for b in STORE_BACKENDS for f in FLAVOURS],
                ids=[f"{b}-{f}" for b in STORE_BACKENDS for f in FLAVOURS])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Call it to open a store (again) at this test's own location; every backend x flavour."""
    backend, flavour = request.param
    if backend == "postgres":
        pg_available()
        location = f"t_{uuid.uuid4().hex[:12]}"
    else:
        location = str(tmp_path / "sessions.db")
    factory = StoreFactory(backend, flavour, location)
    yield factory
    factory.close_all()
    if backend == "postgres":
        drop_pg_schema(location)


@pytest.fixture
def store(open_store: StoreFactory) -> Any:
    """A freshly opened, empty store (blocking face) for every backend x flavour."""
    return open_store()


@pytest.fixture(params=BACKENDS)
def backend_url(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(url, options)`` for a fresh location on every backend (for multi-process tests)."""
    if request.param == "postgres":
        pg_available()
        schema = f"t_{uuid.uuid4().hex[:12]}"
        yield PG_URL, {"schema": schema, "pool_size": 2}
        drop_pg_schema(schema)
    else:
        yield str(tmp_path / "sessions.db"), {}


Opener = Callable[..., Any]


TracedOpen = Callable[[str], tuple[Any, list[str]]]


@pytest.fixture
def traced_sqlite(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> TracedOpen:
    """Open a SQLite store (file ``name`` in this test's directory) whose connections record
    every statement they run, into the list returned with it."""
    import sqlite3

    from aisopod_session import SessionStore

    statements: list[str] = []
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real_connect(*args, **kwargs)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)
    return lambda name: (SessionStore.open(str(tmp_path / name)), statements)
