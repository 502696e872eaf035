"""Choosing and opening a backend from a URL."""

from __future__ import annotations

import os
from typing import Any

from aisopod_session.errors import InvalidInputError
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
