"""Choosing and opening a backend from a URL: a database (SQLite, PostgreSQL), or a running
service (``http://``, ``https://``; see ``_remote_async``)."""

from __future__ import annotations

import os
from typing import Any

from aisopod_session.errors import InvalidInputError
from aisopod_session.store._cursors import make_cursor_key, read_cursor_key
from aisopod_session.store._engine import DURABILITIES, Durability, Engine

ENV_URL = "AISOPOD_DATABASE_URL"


def open_engine(
    url: str | None,
    *,
    durability: Durability = "full",
    pool_size: int | None = None,
    schema: str | None = None,
) -> Engine:
    """``url``: a SQLite path or URL, ``:memory:``, or ``postgresql://…``; None reads
    ``$AISOPOD_DATABASE_URL``."""
    if url is None:
        url = os.environ.get(ENV_URL)
        if not url:
            raise InvalidInputError.for_field(
                "url", f"give a database URL or set {ENV_URL} (e.g. sqlite:///sessions.db)"
            )
    if not isinstance(url, str):
        raise InvalidInputError.for_field("url", f"expected a string, got {type(url).__name__}")
    if durability not in DURABILITIES:
        raise InvalidInputError.for_field(
            "durability", f"{durability!r} is not one of {list(DURABILITIES)}"
        )
    engine = _connect(url, durability=durability, pool_size=pool_size, schema=schema)
    try:
        # Once per open: every list reads the key from here, not from the database.
        key = engine.read(read_cursor_key)
        engine.cursor_key = key if key is not None else engine.write(make_cursor_key)
    except BaseException:
        engine.close()
        raise
    return engine


def _connect(url: str, *, durability: Durability, pool_size: int | None,
             schema: str | None) -> Engine:
    """The engine of ``url``, its database created and migrated."""
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        from aisopod_session.store._postgres import PostgresEngine

        return PostgresEngine(
            url.replace("postgresql+psycopg://", "postgresql://", 1),
            durability=durability,
            pool_size=pool_size,
            schema=schema,
        )
    unused: dict[str, Any] = {"pool_size": pool_size, "schema": schema}
    given = [name for name, value in unused.items() if value is not None]
    if given:
        raise InvalidInputError.for_field(given[0], "only applies to PostgreSQL")
    from aisopod_session.store._sqlite import SQLiteEngine, sqlite_path

    return SQLiteEngine(sqlite_path(url), durability)


_DATABASE_DEFAULTS: dict[str, Any] = {"durability": "full", "pool_size": None, "schema": None,
                                      "policies": None, "search": None}


def remote_url(url: Any, *, token: Any, timeout: Any, **database: Any) -> str | None:
    """The service URL if ``url`` (or ``$AISOPOD_DATABASE_URL``) is ``http(s)://…``, else None.

    A remote store's database options are the server's own, so giving one is refused; and
    ``token`` and ``timeout`` only mean something for a remote store.
    """
    resolved = url if url is not None else os.environ.get(ENV_URL)
    if not (isinstance(resolved, str) and resolved.lower().startswith(("http://", "https://"))):
        for name, given in (("token", token), ("timeout", timeout)):
            if given is not None:
                raise InvalidInputError.for_field(name, "only applies to an http(s):// URL "
                                                        "(a running service)")
        return None
    for name, given in database.items():
        if given != _DATABASE_DEFAULTS[name]:
            raise InvalidInputError.for_field(
                name, "is the server's setting (its config file); it cannot be given to a "
                "store opened on an http(s):// URL")
    return resolved
