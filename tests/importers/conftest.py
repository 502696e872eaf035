"""Fixtures for the importers: target stores, source databases written by the real frameworks
(PostgreSQL sources in a database of their own, dropped after the test), and the comparison of
two stores' contents."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from aisopod_session import SessionStore, _json
from aisopod_session.importers import ImportReport, KeyMapping, import_sessions, open_source
from tests.conftest import PG_URL, pg_available

os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")
os.environ.setdefault("OPENAI_API_KEY", "sk-test-not-used")
os.environ.setdefault("ADK_DISABLE_TELEMETRY", "1")


@pytest.fixture
def target(tmp_path: Path) -> Iterator[SessionStore]:
    with SessionStore.open(str(tmp_path / "target.db")) as store:
        yield store


@pytest.fixture
def pg_source_db() -> Iterator[str]:
    """A fresh PostgreSQL database's URL (without a driver), dropped after the test."""
    pg_available()
    name = f"src_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield PG_URL.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


def run_import(store: SessionStore, kind: str, source: str, **options: Any) -> ImportReport:
    mapping = options.pop("mapping", None) or KeyMapping()
    table = options.pop("table", None)
    opened = open_source(kind, source, mapping, table=table)
    try:
        return import_sessions(store, opened, **options)
    finally:
        opened.close()


def contents(store: SessionStore, *, times: bool = True) -> list[dict[str, Any]]:
    """The store's export without the ids it assigned (and without times, if asked)."""
    records = []
    for line in store.export_jsonl():
        record = _json.loads(line)
        record.pop("id", None)
        record.pop("session", None)
        if not times:
            for field in ("created_at", "updated_at"):
                record.pop(field, None)
        records.append(record)
    return records
