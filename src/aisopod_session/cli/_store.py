"""The store the global options name: a database (``--db``, ``--config``) or a running server
(``--server``, ``--token``), opened with :meth:`SessionStore.open` either way. The commands call
its methods as they are; a server's store is the same API over HTTP (``store.backend`` is then
``http+sqlite`` or ``http+postgres``)."""

from __future__ import annotations

import getpass
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from aisopod_session.cli._output import CliError
from aisopod_session.errors import AccessDeniedError, StoreUnavailableError
from aisopod_session.lifecycle import Policies
from aisopod_session.store import SessionStore

__all__ = ["DEFAULT_DB_URL", "Settings", "cli_actor", "location", "open_store"]

DEFAULT_DB_URL = "sqlite:///data/sessions.db"
"""The service's default database too (``serve``, ``./scripts/run``)."""


@dataclass(frozen=True, slots=True)
class Settings:
    """The global options: where the data is."""

    db: str
    db_given: bool
    """Whether --db was given on the command line (it then overrides a config file's URL)."""
    schema: str | None
    server: str | None
    token: str | None
    config: Path | None = None
    """The service config file (--config): its policies, and its database unless --db says."""


def open_store(settings: Settings) -> SessionStore:
    """The store the global options name, open (use it in a ``with``): the server's
    (``--server``) or the database's."""
    if settings.server:
        return _server_store(settings.server, settings.token)
    url, schema, policies = _local_database(settings)
    return SessionStore.open(url, schema=schema, policies=policies)


def location(settings: Settings) -> str:
    """Where the options point, for the operator's eyes (stderr): ``server URL``, or ``database
    …`` with a SQLite file's absolute path (a relative one depends on the current directory) or
    a URL without its password."""
    if settings.server:
        return f"server {_without_password(settings.server)}"
    url, schema, _ = _local_database(settings)
    if re.match(r"postgres(ql)?(\+\w+)?://", url):
        return f"database {_without_password(url)}" + (f", schema {schema}" if schema else "")
    if url in (":memory:", "sqlite://", "sqlite:///:memory:"):
        return "database :memory:"
    path = url.removeprefix("sqlite:///")
    return f"database {os.path.abspath(path)}"


def _without_password(url: str) -> str:
    """``url`` with the password of its ``user:password@`` and of a ``password=`` parameter
    masked."""
    masked = re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", masked)


def cli_actor() -> str:
    """Who the audit log names for the CLI's privacy commands: ``cli:<OS user name>``."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no user name anywhere (a container with a bare uid)
        user = f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"cli:{user}"


def _server_store(server: str, token: str | None) -> SessionStore:
    """The store of the server at ``server`` (``host:port`` means ``http://host:port``). Opening
    it asks the server who the token is, so an unreachable server or a refused token fails
    here, naming the server."""
    url = server if "://" in server else f"http://{server}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (a port that is not a number raises ValueError)
    except ValueError as exc:
        raise CliError(f"--server: {server!r} is not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise CliError(f"--server: {server!r} is not an http:// or https:// URL")
    try:
        return SessionStore.open(url, token=token)
    except StoreUnavailableError as exc:
        raise CliError(f"cannot talk to the server {url}: {exc}") from exc
    except AccessDeniedError as exc:
        raise CliError(f"server {url} refused access: {exc}") from exc


def _local_database(settings: Settings) -> tuple[str, str | None, Policies | None]:
    """(url, schema, policies) of a database. Without --config: --db, --schema and the default
    policies. With it: its policies, and its database where --db / --schema (the command line
    or their environment variables) do not say otherwise, as ``serve --config`` would."""
    if settings.config is None:
        if not settings.db_given and settings.db == DEFAULT_DB_URL:
            # the documented default: its folder is made (a path given is taken as it is)
            Path(DEFAULT_DB_URL.removeprefix("sqlite:///")).parent.mkdir(parents=True,
                                                                         exist_ok=True)
        return settings.db, settings.schema, None
    from aisopod_session.service.config import load_config

    env = {name: os.environ[name] for name in ("AISOPOD_DATABASE_URL",) if name in os.environ}
    config = load_config(settings.config, env=env,
                         db_url=settings.db if settings.db_given else None)
    schema = settings.schema if settings.schema is not None else config.database.db_schema
    return config.database.url, schema, config.policies
