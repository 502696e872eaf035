"""Fixtures for the framework integrations: a real store (not the blocking test face) of either
flavour on every backend, since each framework calls the store from its own event loop."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aisopod_session import AsyncSessionStore, SessionStore
from tests.conftest import PG_URL, drop_pg_schema, pg_available

# The SDKs must never try to reach a tracing or telemetry service from the tests.
os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")
os.environ.setdefault("OPENAI_API_KEY", "sk-test-not-used")
os.environ.setdefault("LANGSMITH_TRACING", "false")
os.environ.setdefault("ADK_DISABLE_TELEMETRY", "1")


def open_real(url: str, options: dict[str, Any], flavour: str) -> Any:
    if flavour == "sync":
        return SessionStore.open(url, **options)
    return asyncio.run(AsyncSessionStore.open(url, **options))


def close_real(store: Any) -> None:
    if isinstance(store, SessionStore):
        store.close()
    else:
        asyncio.run(store.close())


def _opened(backend: str, flavour: str, tmp_path: Path) -> Iterator[Any]:
    if backend == "postgres":
        pg_available()
        schema = f"t_{uuid.uuid4().hex[:12]}"
        store = open_real(PG_URL, {"schema": schema, "pool_size": 2}, flavour)
    else:
        store = open_real(str(tmp_path / "sessions.db"), {}, flavour)
    yield store
    close_real(store)
    if backend == "postgres":
        drop_pg_schema(schema)


@pytest.fixture(params=[("sqlite", "sync"), ("postgres", "async")],
                ids=["sqlite-sync", "postgres-async"])
def real_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A real store on both backends, one flavour each: the blocking ``SessionStore`` on a fresh
    SQLite file and the ``AsyncSessionStore`` on a fresh PostgreSQL schema. (Which flavour runs
    on which backend does not matter to an integration; ``every_store`` runs all four.)"""
    yield from _opened(*request.param, tmp_path)


@pytest.fixture(params=[(b, f) for b in ("sqlite", "postgres") for f in ("sync", "async")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def every_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A real store for every backend x flavour."""
    yield from _opened(*request.param, tmp_path)


@pytest.fixture
def sync_store(backend_url: tuple[str, dict[str, Any]]) -> Iterator[SessionStore]:
    """A blocking store on every backend (for tests that need one flavour only)."""
    url, options = backend_url
    store = SessionStore.open(url, **options)
    yield store
    store.close()
