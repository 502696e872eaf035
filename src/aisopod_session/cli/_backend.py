"""Where the CLI's data lives: the :class:`Backend` every command is written against.

:class:`LocalBackend` opens the database (``--db``) with :class:`SessionStore`, and
:class:`RemoteBackend` talks to a running server (``--server``) over its HTTP API.
:func:`open_backend` picks one from the global options. Everything HTTP stays in this module: a
transport failure leaves it as a :class:`CliError`, like an error answer of the server.
"""

from __future__ import annotations

import getpass
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from aisopod_session.cli._output import CliError
from aisopod_session.compaction import (
    CompactionRecord,
    SlidingWindow,
    Summarize,
    TruncateToolResults,
)
from aisopod_session.lifecycle import Policies, PurgeResult, SweepResult
from aisopod_session.models import (
    HistoryQuery,
    Session,
    SessionFilter,
    SessionKey,
    SessionStatus,
    SessionSummary,
    StoredMessage,
)
from aisopod_session.results import AuditRecord, PeerResult, SessionPage
from aisopod_session.store import SessionStore

__all__ = [
    "Backend", "LocalBackend", "Ref", "RemoteBackend", "Settings", "Stats", "Strategy",
    "cli_actor", "open_backend",
]

NDJSON = "application/x-ndjson"
IMPORT_CHUNK_BYTES = 256 * 1024
HTTP_TIMEOUT = httpx.Timeout(60.0, connect=10.0)

Ref = SessionKey | int
"""A session named by its canonical key (the live session) or by its id (any generation)."""
Strategy = SlidingWindow | Summarize | TruncateToolResults


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


# --- opening it --------------------------------------------------------------------------------


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


@contextmanager
def open_backend(settings: Settings) -> Iterator[Backend]:
    """The backend the global options name: the server (``--server``) or the database."""
    if settings.server:
        try:
            server = settings.server if "://" in settings.server else f"http://{settings.server}"
            headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
            with httpx.Client(base_url=server, headers=headers, timeout=HTTP_TIMEOUT) as client:
                yield RemoteBackend(client)
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
            raise CliError(_http_message(exc)) from exc
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


def _http_message(exc: Exception) -> str:
    if isinstance(exc, httpx.RequestError):
        where = ""
        with suppress(RuntimeError):  # no request attached
            where = f" {exc.request.url.copy_with(query=None)}"
        if isinstance(exc, httpx.TimeoutException):
            return f"timed out talking to the server ({type(exc).__name__}){where}"
        return f"cannot talk to the server{where}: {exc or type(exc).__name__}"
    return f"{type(exc).__name__}: {exc}"

