"""``aisopod-session``: the operator's command line, mirroring the library's admin operations.

Every command is written once against :class:`Backend`, which has two implementations:
:class:`LocalBackend` opens the database (``--db``) with :class:`SessionStore`, and
:class:`RemoteBackend` talks to a running server (``--server``) over its HTTP API.

Data goes to stdout (a Rich table, or JSON with ``--json``); questions, progress bars and errors go
to stderr. An error is one line, ``error: ...``, and exit status 1; a usage error exits with 2.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import IO, Annotated, Any
from urllib.parse import quote

import httpx
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from aisopod_session.compaction import (
    CompactionRecord,
    SlidingWindow,
    Summarize,
    TruncateToolResults,
)
from aisopod_session.errors import SessionError
from aisopod_session.lifecycle import Policies, PurgeResult, SweepResult
from aisopod_session.models import (
    HistoryQuery,
    PeerKind,
    Session,
    SessionFilter,
    SessionKey,
    SessionStatus,
    SessionSummary,
    StoredMessage,
)
from aisopod_session.store import AuditRecord, PeerResult, SessionPage, SessionStore

__all__ = ["Backend", "LocalBackend", "RemoteBackend", "app", "main"]

DEFAULT_DB_URL = "sqlite:///data/sessions.db"
NDJSON = "application/x-ndjson"
IMPORT_CHUNK_BYTES = 256 * 1024
HTTP_TIMEOUT = httpx.Timeout(60.0, connect=10.0)

Ref = SessionKey | int
"""A session named by its canonical key (the live session) or by its id (any generation)."""
Strategy = SlidingWindow | Summarize | TruncateToolResults


class CliError(Exception):
    """A failure the operator can act on: reported as one line on stderr, exit status 1."""


@dataclass(frozen=True, slots=True)
class Stats:
    sessions_by_status: dict[str, int]
    agents: int
    messages_live: int
    messages_compacted: int

    @classmethod
    def of(cls, by_status: dict[str, int], agents: int, live: int, compacted: int) -> Stats:
        counts = {status.value: int(by_status.get(status.value, 0)) for status in SessionStatus}
        return cls(counts, int(agents), int(live), int(compacted))

    def as_json(self) -> dict[str, Any]:
        return {"sessions_by_status": self.sessions_by_status, "agents": self.agents,
                "messages_live": self.messages_live,
                "messages_compacted": self.messages_compacted}


# --- the backend interface ---------------------------------------------------------------------


class Backend(ABC):
    """What the commands need; one implementation over a database, one over the HTTP API."""

    @abstractmethod
    def list_sessions(self, agent_id: str | None, filter: SessionFilter) -> SessionPage:
        """One agent's sessions, or every agent's when ``agent_id`` is None."""

    @abstractmethod
    def get(self, ref: Ref) -> Session: ...

    @abstractmethod
    def history(self, ref: Ref, query: HistoryQuery) -> list[StoredMessage]: ...

    @abstractmethod
    def delete(self, key: SessionKey) -> bool: ...

    @abstractmethod
    def reset(self, key: SessionKey) -> Session: ...

    @abstractmethod
    def compact(self, key: SessionKey, strategy: Strategy) -> CompactionRecord: ...

    @abstractmethod
    def count(self, agent_id: str | None) -> int | None:
        """How many sessions (all generations) ``clear`` would delete, when it can be known."""

    @abstractmethod
    def clear(self, agent_id: str | None) -> int: ...

    @abstractmethod
    def stats(self) -> Stats: ...

    @abstractmethod
    def export(self, agent_id: str | None) -> Iterator[str]:
        """The export's JSON Lines, without their line ends, streamed."""

    @abstractmethod
    def import_jsonl(self, lines: Iterable[bytes]) -> tuple[int, int]:
        """Import an export; returns (sessions, messages)."""

    @abstractmethod
    def schema_version(self) -> tuple[str, int]:
        """(backend name, schema version) of the database."""

    @abstractmethod
    def sweep(self, dry_run: bool) -> SweepResult:
        """Apply the lifecycle policy (silent sessions go idle, long-idle ones are archived)."""

    @abstractmethod
    def purge(self, dry_run: bool) -> PurgeResult:
        """Apply the retention policy (old compacted messages and archived sessions go)."""

    @abstractmethod
    def forget_peer(self, channel: str, peer_id: str) -> PeerResult:
        """Erase a person's direct-conversation sessions, every agent and account; audited."""

    @abstractmethod
    def export_peer(self, channel: str, peer_id: str) -> Iterator[str]:
        """Everything held about a person as export JSON Lines (no line ends), streamed;
        audited."""

    @abstractmethod
    def audit_log(self, limit: int) -> list[AuditRecord]:
        """The newest audit records, newest first."""


def cli_actor() -> str:
    """Who the audit log names for a local command: ``cli:<OS user name>``."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no user name anywhere (a container with a bare uid)
        user = f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"cli:{user}"


class LocalBackend(Backend):
    def __init__(self, store: SessionStore, actor: str | None = None) -> None:
        self.store = store
        self.actor = actor or cli_actor()

    def list_sessions(self, agent_id: str | None, filter: SessionFilter) -> SessionPage:
        if agent_id is None:
            return self.store.list_all_sessions(filter)
        return self.store.for_agent(agent_id).list(filter)

    def get(self, ref: Ref) -> Session:
        if isinstance(ref, int):
            return self.store.get_session_by_id(ref)
        return self.store.for_agent(ref.agent_id).get(ref)

    def history(self, ref: Ref, query: HistoryQuery) -> list[StoredMessage]:
        if isinstance(ref, int):
            return self.store.get_history_by_id(ref, query)
        return self.store.for_agent(ref.agent_id).get_history(ref, query)

    def delete(self, key: SessionKey) -> bool:
        return self.store.for_agent(key.agent_id).delete(key)

    def reset(self, key: SessionKey) -> Session:
        return self.store.for_agent(key.agent_id).reset(key)

    def compact(self, key: SessionKey, strategy: Strategy) -> CompactionRecord:
        return self.store.for_agent(key.agent_id).compact(key, strategy)

    def count(self, agent_id: str | None) -> int | None:
        return sum(self.store.count_sessions_by_status(agent_id).values())

    def clear(self, agent_id: str | None) -> int:
        return self.store.clear_sessions(agent_id)

    def stats(self) -> Stats:
        found = self.store.stats()
        return Stats.of({s.value: n for s, n in found.sessions_by_status.items()}, found.agents,
                        found.messages_live, found.messages_compacted)

    def export(self, agent_id: str | None) -> Iterator[str]:
        return self.store.export_jsonl(agent_id)

    def import_jsonl(self, lines: Iterable[bytes]) -> tuple[int, int]:
        result = self.store.import_jsonl(lines)
        return result.sessions, result.messages

    def schema_version(self) -> tuple[str, int]:
        return self.store.backend, self.store.schema_version()

    def sweep(self, dry_run: bool) -> SweepResult:
        return self.store.sweep(dry_run=dry_run)

    def purge(self, dry_run: bool) -> PurgeResult:
        return self.store.purge(dry_run=dry_run)

    def forget_peer(self, channel: str, peer_id: str) -> PeerResult:
        return self.store.forget_peer(channel, peer_id, actor=self.actor)

    def export_peer(self, channel: str, peer_id: str) -> Iterator[str]:
        return self.store.export_peer(channel, peer_id, actor=self.actor)

    def audit_log(self, limit: int) -> list[AuditRecord]:
        return self.store.audit_log(limit)


def _param(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class RemoteBackend(Backend):
    """The same operations over the HTTP API of a running ``aisopod-session serve``."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def _call(self, method: str, path: str, **options: Any) -> Any:
        response = self.client.request(method, path, **options)
        raise_for_problem(response)
        try:
            return response.json()
        except ValueError:
            raise CliError(f"{response.url} did not answer JSON: is it an aisopod-session "
                           "server?") from None

    @staticmethod
    def _agent_path(agent_id: str) -> str:
        return f"/v1/agents/{_part(agent_id)}/sessions"

    @classmethod
    def _key_path(cls, key: SessionKey) -> str:
        parts = (key.channel, key.account_id, key.peer_kind.value, key.peer_id)
        return cls._agent_path(key.agent_id) + "".join("/" + _part(p) for p in parts)

    @staticmethod
    def _peer_path(channel: str, peer_id: str) -> str:
        return f"/v1/admin/peers/{_part(channel)}/{_part(peer_id)}"

    def list_sessions(self, agent_id: str | None, filter: SessionFilter) -> SessionPage:
        params: list[tuple[str, str]] = []
        for name in ("channel", "account_id", "peer_kind", "peer_id", "cursor"):
            value = getattr(filter, name)
            if value is not None:
                params.append((name, _param(value)))
        if filter.status is not None:
            params.extend(("status", _param(status)) for status in filter.statuses)
        params.append(("limit", str(filter.limit)))
        path = "/v1/admin/sessions" if agent_id is None else self._agent_path(agent_id)
        body = self._call("GET", path, params=params)
        items = [SessionSummary.model_validate(item) for item in body["items"]]
        return SessionPage(items, body.get("next_cursor"))

    def get(self, ref: Ref) -> Session:
        path = f"/v1/admin/sessions/{ref}" if isinstance(ref, int) else self._key_path(ref)
        return Session.model_validate(self._call("GET", path))

    def history(self, ref: Ref, query: HistoryQuery) -> list[StoredMessage]:
        path = (f"/v1/admin/sessions/{ref}/messages" if isinstance(ref, int)
                else self._key_path(ref) + "/messages")
        params = {name: _param(value) for name, value in query.model_dump().items()
                  if value is not None}
        return [StoredMessage.model_validate(m) for m in self._call("GET", path, params=params)]

    def delete(self, key: SessionKey) -> bool:
        return bool(self._call("DELETE", self._key_path(key))["deleted"])

    def reset(self, key: SessionKey) -> Session:
        return Session.model_validate(self._call("POST", self._key_path(key) + "/reset"))

    def compact(self, key: SessionKey, strategy: Strategy) -> CompactionRecord:
        body = self._call("POST", self._key_path(key) + "/compact",
                          json=strategy.model_dump(mode="json"))
        return CompactionRecord.model_validate(body)

    def count(self, agent_id: str | None) -> int | None:
        if agent_id is not None:
            return None  # the API has no per-agent count
        return sum(self.stats().sessions_by_status.values())

    def clear(self, agent_id: str | None) -> int:
        params = {"confirm": "true"}
        if agent_id is not None:
            params["agent_id"] = agent_id
        return int(self._call("DELETE", "/v1/admin/sessions", params=params)["deleted"])

    def stats(self) -> Stats:
        body = self._call("GET", "/v1/admin/stats")
        return Stats.of(body["sessions_by_status"], body["agents"], body["messages_live"],
                        body["messages_compacted"])

    def export(self, agent_id: str | None) -> Iterator[str]:
        params = {} if agent_id is None else {"agent_id": agent_id}
        return self._stream_lines("/v1/admin/export", params)

    def _stream_lines(self, path: str, params: dict[str, str]) -> Iterator[str]:
        """A JSON Lines answer, line by line (without line ends), as it arrives."""
        with self.client.stream("GET", path, params=params) as response:
            if not response.is_success:
                response.read()
                raise_for_problem(response)
            # Split on "\n" only: httpx's iter_lines also splits on U+2028, U+0085 and friends,
            # which JSON leaves unescaped inside strings.
            pending = b""
            for chunk in response.iter_bytes():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line.decode("utf-8")
            if pending:
                yield pending.decode("utf-8")

    def import_jsonl(self, lines: Iterable[bytes]) -> tuple[int, int]:
        body = self._call("POST", "/v1/admin/import", content=_chunked(lines),
                          headers={"Content-Type": NDJSON})
        return int(body["sessions"]), int(body["messages"])

    def schema_version(self) -> tuple[str, int]:
        raise CliError("db migrate works on a database (--db); a server migrates its own "
                       "database when it starts")

    def sweep(self, dry_run: bool) -> SweepResult:
        body = self._call("POST", "/v1/admin/sweep", params={"dry_run": _param(dry_run)})
        return SweepResult.model_validate(body)

    def purge(self, dry_run: bool) -> PurgeResult:
        body = self._call("POST", "/v1/admin/purge", params={"dry_run": _param(dry_run)})
        return PurgeResult.model_validate(body)

    def forget_peer(self, channel: str, peer_id: str) -> PeerResult:
        body = self._call("DELETE", self._peer_path(channel, peer_id),
                          params={"confirm": "true"})
        return PeerResult.model_validate(body)

    def export_peer(self, channel: str, peer_id: str) -> Iterator[str]:
        return self._stream_lines(self._peer_path(channel, peer_id) + "/export", {})

    def audit_log(self, limit: int) -> list[AuditRecord]:
        body = self._call("GET", "/v1/admin/audit", params={"limit": str(limit)})
        return [AuditRecord.model_validate(record) for record in body]


def _part(text: str) -> str:
    """One percent-encoded path part. A part of only dots is encoded too (``%2E``): HTTP clients
    remove ``.`` and ``..`` segments, which would send the request elsewhere."""
    encoded = quote(text, safe="")
    return encoded.replace(".", "%2E") if set(text) == {"."} else encoded


def _chunked(lines: Iterable[bytes]) -> Iterator[bytes]:
    """Lines gathered into request-body chunks of a few hundred KiB."""
    batch: list[bytes] = []
    size = 0
    for line in lines:
        batch.append(line)
        size += len(line)
        if size >= IMPORT_CHUNK_BYTES:
            yield b"".join(batch)
            batch, size = [], 0
    if batch:
        yield b"".join(batch)


def raise_for_problem(response: httpx.Response) -> None:
    """A non-2xx answer as a CliError carrying the problem's ``detail``."""
    if response.is_success:
        return
    detail: Any = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("title")
    if not detail:
        detail = response.reason_phrase or "request failed"
    raise CliError(f"server answered {response.status_code}: {detail}")


# --- settings, errors and output ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    db: str
    db_given: bool
    """Whether --db was given on the command line (it then overrides a config file's URL)."""
    schema: str | None
    server: str | None
    token: str | None
    config: Path | None = None
    """The service config file (--config): its policies, and its database unless --db says."""


def _settings(ctx: typer.Context) -> Settings:
    settings = ctx.find_object(Settings)
    assert settings is not None
    return settings


@contextmanager
def open_backend(settings: Settings) -> Iterator[Backend]:
    if settings.server:
        server = settings.server if "://" in settings.server else f"http://{settings.server}"
        headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
        with httpx.Client(base_url=server, headers=headers, timeout=HTTP_TIMEOUT) as client:
            yield RemoteBackend(client)
        return
    url, schema, policies = _local_database(settings)
    with SessionStore.open(url, schema=schema, policies=policies) as store:
        yield LocalBackend(store)


def _local_database(settings: Settings) -> tuple[str, str | None, Policies | None]:
    """(url, schema, policies) of local mode. Without --config: --db, --schema and the default
    policies. With it: its policies, and its database where --db / --schema (the command line
    or their environment variables) do not say otherwise, as ``serve --config`` would."""
    if settings.config is None:
        return settings.db, settings.schema, None
    from aisopod_session.service.config import load_config

    env = {name: os.environ[name] for name in ("AISOPOD_DATABASE_URL",) if name in os.environ}
    config = load_config(settings.config, env=env,
                         db_url=settings.db if settings.db_given else None)
    schema = settings.schema if settings.schema is not None else config.database.db_schema
    return config.database.url, schema, config.policies


def _backend(ctx: typer.Context) -> AbstractContextManager[Backend]:
    return open_backend(_settings(ctx))


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "failed"


def _os_message(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc) or type(exc).__name__


def _http_message(exc: Exception) -> str:
    if isinstance(exc, httpx.RequestError):
        where = ""
        with suppress(RuntimeError):  # no request attached
            where = f" {exc.request.url.copy_with(query=None)}"
        if isinstance(exc, httpx.TimeoutException):
            return f"timed out talking to the server ({type(exc).__name__}){where}"
        return f"cannot talk to the server{where}: {exc or type(exc).__name__}"
    return f"{type(exc).__name__}: {exc}"


def _silence_stdout() -> None:
    """After a broken pipe (``... | head``), stop Python complaining when it flushes stdout."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


class _Cli(TyperGroup):
    """Turns the errors an operator can act on into one ``error:`` line and exit status 1."""

    def invoke(self, ctx: Any) -> Any:
        message: str
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            _silence_stdout()
            raise typer.Exit(1) from None
        except (CliError, SessionError) as exc:
            message = str(exc)
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
            message = _http_message(exc)
        except OSError as exc:
            message = _os_message(exc)
        typer.echo(f"error: {_one_line(message)}", err=True)
        raise typer.Exit(1)


def _console() -> Console:
    """Rich output to the current stdout. Not a terminal: as wide as the content, so that keys
    are never wrapped for grep or cut (a table is only as wide as its content needs)."""
    width = None if sys.stdout.isatty() else 8192
    return Console(file=sys.stdout, width=width, highlight=False)


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False, indent=2))


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _content(value: Any, limit: int = 2000) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "…"


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    try:
        answer = typer.confirm(question, default=False, err=True)
    except typer.Abort:  # no answer at all (end of input)
        answer = False
        typer.echo("", err=True)
    else:
        if not sys.stdin.isatty():  # the answer was not echoed: end the prompt's line
            typer.echo("", err=True)
    if not answer:
        raise CliError("not confirmed: nothing was changed (pass --yes to skip the question)")


def _parse_key(text: str) -> SessionKey:
    return SessionKey.parse(text)


def _parse_ref(text: str) -> Ref:
    stripped = text.strip()
    if stripped.isascii() and stripped.isdigit():
        return int(stripped)
    return SessionKey.parse(text)


@contextmanager
def _progress(total: int | None, label: str) -> Iterator[Callable[[int], None]]:
    """A byte-counting progress bar on stderr, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield lambda _: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


# --- the application ---------------------------------------------------------------------------

app = typer.Typer(
    cls=_Cli,
    name="aisopod-session",
    help="Operate aisopod-session stores: list, inspect, compact, export, import and erase "
         "conversation sessions, on a database (--db) or a running server (--server).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
sessions_app = typer.Typer(help="List, inspect, reset and delete sessions.", no_args_is_help=True)
db_app = typer.Typer(help="The database: migrate it, count what it holds.", no_args_is_help=True)
peers_app = typer.Typer(
    help="A person's data across agents and accounts: export it, erase it (both audited).",
    no_args_is_help=True)
app.add_typer(sessions_app, name="sessions")
app.add_typer(db_app, name="db")
app.add_typer(peers_app, name="peers")

KeyArg = Annotated[str, typer.Argument(
    metavar="KEY", help="Canonical key: agent:<agent>:<channel>:<account>:<kind>:<peer>.")]
RefArg = Annotated[str, typer.Argument(
    metavar="KEY", help="Canonical key (the live session), or a session id (any generation).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DryRunOpt = Annotated[bool, typer.Option(
    "--dry-run", help="Only count what would change; change nothing.")]
ChannelArg = Annotated[str, typer.Argument(
    metavar="CHANNEL", help="The person's channel (* for a linked name of per-peer sessions).")]
PeerIdArg = Annotated[str, typer.Argument(metavar="PEER_ID", help="Their id on that channel.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


@app.callback()
def _global(
    ctx: typer.Context,
    db: Annotated[str, typer.Option(
        "--db", envvar="AISOPOD_DATABASE_URL", metavar="URL",
        help="Database: a SQLite path, sqlite:///path or postgresql://...")] = DEFAULT_DB_URL,
    schema: Annotated[str | None, typer.Option(
        "--schema", envvar="AISOPOD_DATABASE_SCHEMA",
        help="PostgreSQL schema (default aisopod_session).")] = None,
    server: Annotated[str | None, typer.Option(
        "--server", envvar="AISOPOD_SERVER", metavar="URL",
        help="Work against a running server instead of a database (--db is then unused).",
    )] = None,
    token: Annotated[str | None, typer.Option(
        "--token", envvar="AISOPOD_TOKEN", help="Bearer token for --server.",
        show_default=False)] = None,
    config_file: Annotated[Path | None, typer.Option(
        "--config", metavar="FILE",
        # Rich reads [word] as markup: the brackets are escaped to be shown.
        help="Service TOML config: its \\[lifecycle], \\[reset] and \\[retention] policies "
             "apply to sweep and purge, its \\[database] unless --db is given (not used with "
             "--server).",
    )] = None,
) -> None:
    source = ctx.get_parameter_source("db")
    given = source is not None and source.name == "COMMANDLINE"
    ctx.obj = Settings(db=db, db_given=given, schema=schema, server=server, token=token,
                       config=config_file)


@app.command()
def serve(
    ctx: typer.Context,
    db: Annotated[str | None, typer.Option("--db", metavar="URL",
                                           help="Database URL (overrides the config).")] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(min=0, max=65535, help="Port.")] = None,
    config_file: Annotated[Path | None, typer.Option(
        "--config", metavar="FILE", help="TOML configuration file.")] = None,
) -> None:
    """Run the HTTP API (until SIGINT/SIGTERM)."""
    from aisopod_session.service import server
    from aisopod_session.service.config import load_config

    settings = _settings(ctx)
    db_url = db or (settings.db if settings.db_given else None)
    config = load_config(config_file or settings.config, db_url=db_url, host=host, port=port)
    if settings.schema is not None:
        database = config.database.model_copy(update={"db_schema": settings.schema})
        config = config.model_copy(update={"database": database})
    server.serve(config)


@sessions_app.command("list")
def list_sessions(
    ctx: typer.Context,
    *,
    agent: Annotated[str | None, typer.Option(
        help="Only this agent's sessions (default: every agent).")] = None,
    channel: Annotated[str | None, typer.Option()] = None,
    account: Annotated[str | None, typer.Option(help="Bot account id.")] = None,
    peer_kind: Annotated[PeerKind | None, typer.Option()] = None,
    peer: Annotated[str | None, typer.Option(help="Peer id.")] = None,
    status: Annotated[list[SessionStatus] | None, typer.Option(
        help="Only these statuses (repeatable; default: every live status).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Sessions, most recently updated first, one page at a time."""
    filter = SessionFilter(channel=channel, account_id=account, peer_kind=peer_kind,
                           peer_id=peer, status=tuple(status) if status else None,
                           limit=limit, cursor=cursor)
    with _backend(ctx) as backend:
        page = backend.list_sessions(agent, filter)
    if as_json:
        _print_json({"items": [s.model_dump(mode="json") for s in page],
                     "next_cursor": page.next_cursor})
        return
    if page:
        table = Table("id", "key", "status", "messages", "tokens", "updated (UTC)")
        table.columns[1].overflow = "fold"
        for s in page:
            table.add_row(str(s.id), Text(s.key.canonical()), s.status.value,
                          str(s.message_count), str(s.token_usage), _when(s.updated_at))
        _console().print(table)
    else:
        typer.echo("no sessions", err=True)
    if page.next_cursor:
        typer.echo(f"more: --cursor {page.next_cursor}", err=True)


def _print_session(session: Session) -> None:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows: list[tuple[str, str]] = [
        ("key", session.key.canonical()),
        ("id", str(session.id)),
        ("status", session.status.value),
        ("created (UTC)", _when(session.created_at)),
        ("updated (UTC)", _when(session.updated_at)),
        ("messages", str(session.message_count)),
        ("tokens", str(session.token_usage)),
        ("compactions", str(session.compaction_count)),
    ]
    if session.last_compacted_at is not None:
        rows.append(("last compacted", _when(session.last_compacted_at)))
    if session.last_compaction_summary is not None:
        rows.append(("summary", _content(session.last_compaction_summary)))
    rows.append(("metadata", json.dumps(session.metadata, ensure_ascii=False)))
    for name, value in rows:
        table.add_row(name, Text(value))
    _console().print(table)


@sessions_app.command()
def show(ctx: typer.Context, key: RefArg, as_json: JsonOpt = False) -> None:
    """One session: the live one of a key, or any generation by id."""
    ref = _parse_ref(key)
    with _backend(ctx) as backend:
        session = backend.get(ref)
    if as_json:
        _print_json(session.model_dump(mode="json"))
    else:
        _print_session(session)


@sessions_app.command()
def history(
    ctx: typer.Context,
    key: RefArg,
    *,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many messages.")] = None,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many.")] = 0,
    tail: Annotated[bool, typer.Option(
        "--tail", help="The newest --limit messages (still oldest first).")] = False,
    include_compacted: Annotated[bool, typer.Option(
        "--include-compacted", help="Also the messages compaction took out.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """A session's messages, in append order."""
    ref = _parse_ref(key)
    query = HistoryQuery(limit=limit, offset=offset, tail=tail,
                         include_compacted=include_compacted)
    with _backend(ctx) as backend:
        messages = backend.history(ref, query)
    if as_json:
        _print_json([m.model_dump(mode="json") for m in messages])
        return
    if not messages:
        typer.echo("no messages", err=True)
        return
    table = Table("id", "role", "created (UTC)", "tokens", "content")
    table.columns[4].overflow = "fold"
    for m in messages:
        role = m.role.value + (" (compacted)" if m.compacted else "")
        content = _content(m.content)
        if m.tool_calls is not None:
            content += f"\n[tool_calls] {_content(m.tool_calls)}"
        table.add_row(str(m.id or ""), role, _when(m.created_at),
                      "" if m.token_count is None else str(m.token_count), Text(content))
    _console().print(table)


@sessions_app.command()
def delete(ctx: typer.Context, key: KeyArg, yes: YesOpt = False) -> None:
    """Delete a session and every archived generation of its key, messages included."""
    parsed = _parse_key(key)
    with _backend(ctx) as backend:
        _confirm(f"Delete {parsed} and all its archived generations for good?", yes)
        if not backend.delete(parsed):
            raise CliError(f"no session for {parsed}: nothing was deleted")
    typer.echo(f"deleted {parsed}")


@sessions_app.command("reset")
def reset_session(ctx: typer.Context, key: KeyArg, as_json: JsonOpt = False) -> None:
    """Archive the live session (history kept) and start a fresh one: the chat /new."""
    parsed = _parse_key(key)
    with _backend(ctx) as backend:
        session = backend.reset(parsed)
    if as_json:
        _print_json(session.model_dump(mode="json"))
    else:
        typer.echo(f"reset {parsed}: new session {session.id}")


def _clear(ctx: typer.Context, agent: str | None, yes: bool) -> None:
    with _backend(ctx) as backend:
        if not yes:
            count = backend.count(agent)
            what = "every session of every agent" if agent is None else \
                f"every session of agent {agent!r}"
            if count is not None:
                what += f" ({count} session{'' if count == 1 else 's'})"
            _confirm(f"Erase {what}, messages included, for good?", yes)
        deleted = backend.clear(agent)
    typer.echo(f"deleted {deleted} session{'' if deleted == 1 else 's'}")


@sessions_app.command()
def clear(
    ctx: typer.Context,
    agent: Annotated[str | None, typer.Option(help="Only this agent's sessions.")] = None,
    yes: YesOpt = False,
) -> None:
    """Delete every session (of one agent), all generations and messages."""
    _clear(ctx, agent, yes)


@app.command("reset")
def reset_all(ctx: typer.Context, yes: YesOpt = False) -> None:
    """Erase every session of every agent."""
    _clear(ctx, None, yes)


@app.command()
def compact(
    ctx: typer.Context,
    key: KeyArg,
    *,
    window: Annotated[int | None, typer.Option(
        min=1, metavar="N", help="SlidingWindow: keep the newest N messages.")] = None,
    summary: Annotated[str | None, typer.Option(
        metavar="TEXT", help="Summarize: replace the history by this system message.")] = None,
    keep_recent: Annotated[int | None, typer.Option(
        min=0, metavar="N", help="With --summary: keep the newest N messages.")] = None,
    truncate_tools: Annotated[int | None, typer.Option(
        metavar="N", help="TruncateToolResults: cut tool results to N characters.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compact a session's live history (nothing is deleted; see --include-compacted)."""
    given = [name for name, value in (("--window", window), ("--summary", summary),
                                      ("--truncate-tools", truncate_tools)) if value is not None]
    if len(given) != 1:
        raise typer.BadParameter("give exactly one of them",
                                 param_hint="--window / --summary / --truncate-tools")
    if keep_recent is not None and summary is None:
        raise typer.BadParameter("goes with --summary", param_hint="--keep-recent")
    parsed = _parse_key(key)
    strategy: Strategy
    if window is not None:
        strategy = SlidingWindow(max_messages=window)
    elif summary is not None:
        strategy = Summarize(summary=summary, keep_recent=keep_recent or 0)
    else:
        assert truncate_tools is not None
        strategy = TruncateToolResults(max_chars=truncate_tools)
    with _backend(ctx) as backend:
        record = backend.compact(parsed, strategy)
    if as_json:
        _print_json(record.model_dump(mode="json"))
    else:
        typer.echo(f"compacted {parsed}: {record.compaction_count} compaction"
                   f"{'' if record.compaction_count == 1 else 's'} so far")


def _write_lines(lines: Iterable[str], out: IO[bytes]) -> int:
    count = 0
    for line in lines:
        out.write(line.encode("utf-8") + b"\n")
        count += 1
    out.flush()
    return count


@app.command()
def export(
    ctx: typer.Context,
    agent: Annotated[str | None, typer.Option(help="Only this agent's sessions.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", metavar="FILE", help="Write here (default: stdout).")] = None,
) -> None:
    """Every session (all generations) and message as JSON Lines, streamed."""
    with _backend(ctx) as backend:
        _write_out(backend.export(agent), out)


def _write_out(lines: Iterable[str], out: Path | None) -> None:
    """Lines to stdout, or to ``out`` through ``out.partial`` (only a complete file is kept)."""
    if out is None:
        sys.stdout.flush()
        _write_lines(lines, sys.stdout.buffer)
        return
    partial = out.with_name(out.name + ".partial")
    try:
        with partial.open("wb") as handle:
            count = _write_lines(lines, handle)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    typer.echo(f"wrote {count} line{'' if count == 1 else 's'} to {out}")


def _numbered(stream: IO[bytes], advance: Callable[[int], None]) -> Iterator[bytes]:
    for line in stream:
        advance(len(line))
        yield line


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(metavar="FILE", help="An export; - reads stdin.")],
    as_json: JsonOpt = False,
) -> None:
    """Import an export (JSON Lines), streamed. A session that fails half-way is not kept."""
    source: AbstractContextManager[IO[bytes]]
    if file == "-":
        total = None
        source = nullcontext(sys.stdin.buffer)
    else:
        path = Path(file)
        total = path.stat().st_size if path.is_file() else None
        source = path.open("rb")
    with source as stream, _backend(ctx) as backend, _progress(total, "importing") as advance:
        sessions, messages = backend.import_jsonl(_numbered(stream, advance))
    if as_json:
        _print_json({"sessions": sessions, "messages": messages})
    else:
        typer.echo(f"imported {sessions} session{'' if sessions == 1 else 's'}, "
                   f"{messages} message{'' if messages == 1 else 's'}")


@db_app.command()
def migrate(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Create or upgrade the database schema; print its version."""
    settings = _settings(ctx)
    if settings.server:
        raise CliError("db migrate works on a database (--db), not through --server")
    with _backend(ctx) as backend:
        name, version = backend.schema_version()
    if as_json:
        _print_json({"backend": name, "schema_version": version})
    else:
        typer.echo(f"{name} database is at schema version {version}")


@db_app.command()
def stats(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Sessions by status, agents, live and compacted messages."""
    with _backend(ctx) as backend:
        found = backend.stats()
    if as_json:
        _print_json(found.as_json())
        return
    table = Table("", "count", show_header=False)
    table.columns[1].justify = "right"
    for status, count in found.sessions_by_status.items():
        table.add_row(f"sessions {status}", str(count))
    table.add_row("agents", str(found.agents))
    table.add_row("messages live", str(found.messages_live))
    table.add_row("messages compacted", str(found.messages_compacted))
    _console().print(table)


# --- lifecycle, retention and privacy ----------------------------------------------------------


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@app.command()
def sweep(ctx: typer.Context, dry_run: DryRunOpt = False, as_json: JsonOpt = False) -> None:
    """Apply the lifecycle policy: silent sessions go idle, long-idle ones are archived."""
    with _backend(ctx) as backend:
        result = backend.sweep(dry_run)
    if as_json:
        _print_json(result.model_dump(mode="json"))
    elif dry_run:
        typer.echo(f"dry run: would make {_plural(result.idled, 'session')} idle and archive "
                   f"{result.archived}")
    else:
        typer.echo(f"made {_plural(result.idled, 'session')} idle, archived {result.archived}")


@app.command()
def purge(ctx: typer.Context, dry_run: DryRunOpt = False, as_json: JsonOpt = False) -> None:
    """Apply the retention policy: delete old compacted messages and archived sessions."""
    with _backend(ctx) as backend:
        result = backend.purge(dry_run)
    if as_json:
        _print_json(result.model_dump(mode="json"))
        return
    what = (f"{_plural(result.sessions, 'archived session')} and "
            f"{_plural(result.messages, 'message')}")
    typer.echo(f"dry run: would purge {what}" if dry_run else f"purged {what}")


@peers_app.command("forget")
def forget_peer(ctx: typer.Context, channel: ChannelArg, peer_id: PeerIdArg, yes: YesOpt = False,
                as_json: JsonOpt = False) -> None:
    """Erase every direct-conversation session of a person, across agents and accounts,
    archived generations and compacted messages included (group chats are not touched)."""
    with _backend(ctx) as backend:
        _confirm(f"Erase every direct conversation with {peer_id!r} on {channel!r}, of every "
                 "agent, archived ones included, for good?", yes)
        result = backend.forget_peer(channel, peer_id)
    if as_json:
        _print_json(result.model_dump(mode="json"))
    else:
        typer.echo(f"erased {_plural(result.sessions, 'session')} and "
                   f"{_plural(result.messages, 'message')} of {peer_id} on {channel}")


@peers_app.command("export")
def export_peer(
    ctx: typer.Context,
    channel: ChannelArg,
    peer_id: PeerIdArg,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", metavar="FILE", help="Write here (default: stdout).")] = None,
) -> None:
    """Everything held about a person, as export JSON Lines (importable), streamed."""
    with _backend(ctx) as backend:
        _write_out(backend.export_peer(channel, peer_id), out)


@app.command()
def audit(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """The newest audit records, newest first: who erased or exported whose data, how much."""
    with _backend(ctx) as backend:
        records = backend.audit_log(limit)
    if as_json:
        _print_json([record.model_dump(mode="json") for record in records])
        return
    if not records:
        typer.echo("no audit records", err=True)
        return
    table = Table("id", "at (UTC)", "actor", "action", "subject", "sessions", "messages")
    table.columns[4].overflow = "fold"
    for record in records:
        table.add_row(str(record.id), _when(record.at), Text(record.actor), record.action,
                      Text(record.subject or ""), str(record.sessions), str(record.messages))
    _console().print(table)


def main() -> None:
    """The ``aisopod-session`` console script."""
    app(prog_name="aisopod-session")
