"""Import checks every record as the API does and stores a file whole or not at all (issue 19).

Each bad file is refused by the library (SQLite and PostgreSQL, both flavours), over HTTP (a real
server: a problem naming the line and field, never a 500, the connection kept) and by the CLI
(exit 1, one ``error:`` line, no traceback), and the store is left exactly as it was, change feed
included. Counters come from the rows. ``on_conflict`` decides what happens to sessions that
already exist. A 100,000-line file streams in bounded memory.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from aisopod_session import (
    ConflictError,
    InvalidInputError,
    SessionKey,
    SessionStatus,
    SessionStore,
    StoredMessage,
)
from aisopod_session.cli import app
from aisopod_session.limits import MAX_IMPORT_LINE_BYTES, MAX_MESSAGE_CHARS, MAX_METADATA_CHARS
from aisopod_session.models import HistoryQuery
from aisopod_session.results import ChangeKind
from aisopod_session.service import BackgroundService, ServiceConfig
from aisopod_session.store import _import_write
from tests.conftest import PG_URL, StoreFactory, drop_pg_schema, pg_available

HEADER = {"kind": "aisopod-session-export", "version": 1}
ADMIN_TOKEN = "import-admin-token-0123456789"
SEEDED = SessionKey("bot", "telegram", "acct", "dm", "seeded")


def key(peer: str) -> dict[str, str]:
    return {"agent_id": "bot", "channel": "telegram", "account_id": "acct", "peer_kind": "dm",
            "peer_id": peer}


def session(id: int = 1, peer: str = "alice", **fields: Any) -> dict[str, Any]:
    return {"kind": "session", "id": id, "key": key(peer), "status": "active",
            "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:01:00Z",
            "message_count": None, "token_usage": 0, "metadata": {}, "compaction_count": 0,
            "last_compacted_at": None, "last_compaction_summary": None, "last_seq": None,
            "archived_at": None, **fields}


def message(seq: int, session: int = 1, **fields: Any) -> dict[str, Any]:
    return {"kind": "message", "session": session, "seq": seq, "role": "user",
            "content": f"message {seq}", "tool_calls": None,
            "created_at": "2025-01-01T00:00:30Z", "token_count": None, "external_id": None,
            "compacted": False, "compacted_at": None, **fields}


def queued(content: Any, peer: str = "alice", **fields: Any) -> dict[str, Any]:
    return {"kind": "queued", "key": key(peer), "role": "user", "content": content,
            "tool_calls": None, "created_at": "2025-01-01T00:00:30Z", "token_count": None,
            "external_id": None, "enqueued_at": "2025-01-01T00:00:31Z", **fields}


def lines_of(*records: dict[str, Any] | str) -> list[str]:
    """The lines of a file: the header, then the records, each session's counters (when not
    given) as an export writes them, so that a file is bad only where a case makes it so."""
    done: list[dict[str, Any] | str] = []
    for given in reversed(records):  # a session's messages come after it
        record = given
        if isinstance(record, dict) and record["kind"] == "session":
            own = []
            for later in done[::-1]:
                if not isinstance(later, dict) or later["kind"] != "message":
                    break
                own.append(later)
            if record["last_seq"] is None:
                record = {**record, "last_seq": max((m["seq"] for m in own), default=0)}
            if record["message_count"] is None:
                record = {**record, "message_count": sum(not m["compacted"] for m in own)}
        done.append(record)
    return [r if isinstance(r, str) else json.dumps(r) for r in (HEADER, *reversed(done))]


def nested(record: dict[str, Any], depth: int) -> str:
    """The record's line with its content nested ``depth`` lists deep (as raw text: json.dumps
    itself cannot write that)."""
    return json.dumps({**record, "content": "DEEP"}).replace(
        '"DEEP"', "[" * depth + "]" * depth)


@dataclass(frozen=True)
class Bad:
    name: str
    lines: Callable[[], list[str]]
    field: str
    """What the error names first: ``line N.field`` (or the line alone)."""
    status: int = 422


BAD = [
    Bad("external-id-twice", lambda: lines_of(
        session(last_seq=2), message(1, external_id="m-1"), message(2, external_id="m-1")),
        "line 4.external_id"),
    Bad("external-id-twice-across-chunks", lambda: lines_of(
        session(), *(message(i, external_id=f"m-{i}") for i in range(1, 601)),
        message(601, external_id="m-3")), "line 603.external_id"),
    Bad("content-nested-10000-deep", lambda: lines_of(session(), nested(message(1), 10_000)),
        "line 3.content"),
    Bad("content-nested-100-deep", lambda: lines_of(session(), nested(message(1), 100)),
        "line 3.content"),
    Bad("seq-1-three-times", lambda: lines_of(session(last_seq=1), message(1), message(1),
                                              message(1)), "line 4.seq"),
    Bad("seq-going-back", lambda: lines_of(session(), message(2), message(1)), "line 4.seq"),
    Bad("seq-at-the-end-of-bigint", lambda: lines_of(  # the next append would overflow
        session(last_seq=2**63 - 1), message(2**63 - 1)), "line 3.seq"),
    Bad("token-count-past-bigint", lambda: lines_of(session(), message(1, token_count=2**63)),
        "line 3.token_count"),
    Bad("external-id-with-control-character", lambda: lines_of(
        session(), message(1, external_id="a\x07b")), "line 3.external_id"),
    Bad("content-over-1-MiB", lambda: lines_of(
        session(), message(1, content="x" * MAX_MESSAGE_CHARS)), "line 3.content"),
    Bad("waiting-message-over-1-MiB", lambda: lines_of(
        session(), queued("x" * MAX_MESSAGE_CHARS)), "line 3.content"),
    Bad("metadata-over-64-KiB", lambda: lines_of(
        session(metadata={"notes": "x" * MAX_METADATA_CHARS})), "line 2.metadata"),
    Bad("line-over-4-MiB", lambda: lines_of(
        session(), message(1, content="x" * (MAX_IMPORT_LINE_BYTES + 1))), "line 3"),
    Bad("updated-before-created", lambda: lines_of(
        session(updated_at="2024-12-31T23:59:59Z")), "line 2.updated_at"),
    Bad("compacted-at-on-a-live-message", lambda: lines_of(
        session(), message(1, compacted_at="2025-01-02T00:00:00Z")), "line 3.compacted_at"),
    Bad("two-live-sessions-of-one-key", lambda: lines_of(
        session(1, "alice"), session(2, "alice")), "line 3.key"),
    Bad("bad-line-after-good-sessions", lambda: lines_of(
        session(1, "alice"), message(1, 1), session(2, "bob"), message(1, 2),
        session(3, "carol"), message(1, 3, role="robot")), "line 7.role"),
    Bad("existing-live-key", lambda: lines_of(
        session(1, "alice"), message(1, 1), session(2, SEEDED.peer_id)), "line 4.key", 409),
]


def seed(store: Any) -> None:
    """Something to leave untouched: a live session with messages, an archived generation."""
    bot = store.for_agent("bot")
    bot.get_or_create(SEEDED)
    bot.append_messages(SEEDED, [StoredMessage.user("old", external_id="m-1")])
    bot.reset(SEEDED)
    bot.append_messages(SEEDED, [StoredMessage.user("hello", external_id="m-1", token_count=5),
                                 StoredMessage.assistant("hi")])


def exported(store: Any) -> list[str]:
    """The store's export, from either flavour (the asyncio one streams an async iterator,
    collected on the store's event loop)."""
    produced = store.export_jsonl()
    if hasattr(produced, "__aiter__"):
        async def collect() -> list[str]:
            return [line async for line in produced]

        return list(store._portal.call(collect()))
    return list(produced)


def state(store: Any) -> tuple[list[str], str]:
    """Everything a refused import must leave as it was: the data and the feed's position."""
    return exported(store), store.latest_cursor()


# --- the library ---------------------------------------------------------------------------------

COMBOS = [("sqlite", "sync"), ("sqlite", "async"), ("postgres", "sync"), ("postgres", "async")]


@pytest.fixture(scope="module", params=COMBOS, ids=[f"{b}-{f}" for b, f in COMBOS])
def seeded(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One seeded store per backend and flavour for the whole module (each bad file must leave
    it as it was, so the cases can share it)."""
    backend, flavour = request.param
    if backend == "postgres":
        pg_available()
        location = f"t_{uuid.uuid4().hex[:12]}"
    else:
        location = str(tmp_path_factory.mktemp("seeded") / "sessions.db")
    factory = StoreFactory(backend, flavour, location)
    try:
        store = factory()
        seed(store)
        yield store
    finally:
        factory.close_all()
        if backend == "postgres":
            drop_pg_schema(location)


@pytest.mark.parametrize("bad", BAD, ids=[bad.name for bad in BAD])
def test_a_bad_file_is_refused_by_line_and_field_and_nothing_of_it_is_stored(
        seeded: Any, bad: Bad) -> None:
    before = state(seeded)
    expected = ConflictError if bad.status == 409 else InvalidInputError
    with pytest.raises(expected) as refused:
        seeded.import_jsonl(bad.lines())
    assert state(seeded) == before  # nothing stored, nothing in the change feed
    assert str(refused.value).startswith(f"{bad.field}: "), refused.value
    if isinstance(refused.value, InvalidInputError):
        assert refused.value.errors[0]["field"] == bad.field


def test_an_unknown_conflict_policy_is_refused(seeded: Any) -> None:
    with pytest.raises(InvalidInputError) as refused:
        seeded.import_jsonl(lines_of(), on_conflict="replace")
    assert refused.value.errors[0]["field"] == "on_conflict"


@pytest.fixture(params=COMBOS, ids=[f"{b}-{f}" for b, f in COMBOS])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    backend, flavour = request.param
    if backend == "postgres":
        pg_available()
        location = f"t_{uuid.uuid4().hex[:12]}"
    else:
        location = str(tmp_path / "sessions.db")
    factory = StoreFactory(backend, flavour, location)
    try:
        yield factory()
    finally:
        factory.close_all()
        if backend == "postgres":
            drop_pg_schema(location)


def test_counters_and_positions_come_from_the_rows(store: Any) -> None:
    result = store.import_jsonl(lines_of(
        # claims 999 messages, 999 positions: one row
        session(1, "alice", message_count=999, last_seq=999, token_usage=7), message(1, 1),
        # a compacted message and its live summary at one position, the compacted one claimed
        # as live
        session(2, "bob", message_count=3, last_seq=3),
        message(1, 2, compacted=True), message(2, 2, compacted=True),
        message(2, 2, role="system", content="summary"), message(3, 2),
        # no messages at all, a count all the same
        session(3, "carol", message_count=5, last_seq=5)))
    assert (result.sessions, result.messages) == (3, 5)
    bot = store.for_agent("bot")
    alice, bob, carol = (SessionKey("bot", "telegram", "acct", "dm", p)
                         for p in ("alice", "bob", "carol"))
    assert bot.get(alice).message_count == 1
    assert bot.get(alice).token_usage == 7  # set by callers (patch), kept: see the README
    assert bot.get(bob).message_count == 2
    assert bot.get(carol).message_count == 0
    # the next append takes the position after the highest stored one
    assert [m.content for m in bot.get_history(bob)] == ["summary", "message 3"]
    bot.append_messages(alice, [StoredMessage.user("next")])
    bot.append_messages(carol, [StoredMessage.user("first")])
    records = [json.loads(line) for line in exported(store)]
    last_seq = {r["key"]["peer_id"]: r["last_seq"] for r in records if r["kind"] == "session"}
    assert last_seq == {"alice": 2, "bob": 3, "carol": 1}
    everything = bot.get_history(alice, HistoryQuery(include_compacted=True))
    assert [m.content for m in everything] == ["message 1", "next"]


def _feed_since(store: Any, cursor: str) -> list[Any]:
    return list(store.changes(cursor, limit=1000))


def _existing_and_file(store: Any) -> list[str]:
    """The store holds SEEDED (two generations); the file has a new key, SEEDED's archived
    generation as exported and a live SEEDED session of its own."""
    seed(store)
    records = [json.loads(line) for line in exported(store)]
    archived = next(r for r in records if r["kind"] == "session" and r["status"] == "archived")
    old = [r for r in records if r["kind"] == "message" and r["session"] == archived["id"]]
    return lines_of(session(1, "new"), message(1, 1), archived, *old,
                    session(2, SEEDED.peer_id, created_at="2025-02-01T00:00:00Z",
                            updated_at="2025-02-01T00:00:00Z"),
                    message(1, 2, content="from the file", external_id="m-1"))


def test_on_conflict_fail_refuses_the_whole_file(store: Any) -> None:
    lines = _existing_and_file(store)
    before = state(store)
    with pytest.raises(ConflictError) as refused:
        store.import_jsonl(lines)  # "fail" is the default
    assert str(refused.value).startswith("line 4.key: this archived session for "), refused.value
    assert "already exists" in str(refused.value)
    assert "on_conflict" in str(refused.value)  # says how to go on
    assert state(store) == before  # the new session before the conflict is not kept either


def test_on_conflict_skip_keeps_what_is_stored_and_a_second_run_stores_nothing(
        store: Any) -> None:
    lines = _existing_and_file(store)
    stored = store.for_agent("bot").get(SEEDED)
    start = store.latest_cursor()
    result = store.import_jsonl(lines, on_conflict="skip")
    assert (result.sessions, result.messages, result.skipped, result.archived) == (1, 1, 2, 0)
    bot = store.for_agent("bot")
    assert bot.get(SEEDED) == stored  # the stored live session, untouched
    assert [m.content for m in bot.get_history(SEEDED)] == ["hello", "hi"]
    kinds = [c.kind for c in _feed_since(store, start)]
    assert kinds == [ChangeKind.SESSION_IMPORTED, ChangeKind.MESSAGES_APPENDED,
                     ChangeKind.IMPORT_DONE]
    assert _feed_since(store, start)[-1].data == result.model_dump()

    before = exported(store)
    again = store.import_jsonl(lines, on_conflict="skip")
    assert (again.sessions, again.messages, again.skipped) == (0, 0, 3)
    assert exported(store) == before


def test_on_conflict_archive_existing_archives_the_stored_live_session(store: Any) -> None:
    lines = _existing_and_file(store)
    stored = store.for_agent("bot").get(SEEDED)
    start = store.latest_cursor()
    result = store.import_jsonl(lines, on_conflict="archive-existing")
    assert (result.sessions, result.messages, result.skipped, result.archived) == (2, 2, 1, 1)
    bot = store.for_agent("bot")
    live = bot.get(SEEDED)
    assert live.id != stored.id
    assert [m.content for m in bot.get_history(SEEDED)] == ["from the file"]
    assert store.get_session_by_id(stored.id).status is SessionStatus.ARCHIVED
    assert [m.content for m in store.get_history_by_id(stored.id)] == ["hello", "hi"]
    feed = [(c.kind, c.session_id) for c in _feed_since(store, start)]
    assert (ChangeKind.SESSION_RESET, stored.id) in feed
    assert (ChangeKind.SESSION_IMPORTED, live.id) in feed
    assert feed[-1] == (ChangeKind.IMPORT_DONE, None)


def test_an_import_that_writes_its_feed_entries_early_is_still_all_or_nothing(
        store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large import writes its change-feed entries before it ends (FEED_FLUSH): they go with
    the transaction all the same."""
    monkeypatch.setattr(_import_write, "FEED_FLUSH", 2)
    records = [r for i in range(1, 6) for r in (session(i, f"p{i}"), message(1, i))]
    bad = lines_of(*records, message(2, 5, external_id="x"), message(3, 5, external_id="x"))
    before = state(store)
    with pytest.raises(InvalidInputError) as refused:
        store.import_jsonl(bad)
    assert refused.value.errors[0]["field"] == "line 13.external_id"
    assert state(store) == before
    start = store.latest_cursor()
    store.import_jsonl(lines_of(*records))
    assert [c.kind for c in _feed_since(store, start)] == [
        ChangeKind.SESSION_IMPORTED, ChangeKind.MESSAGES_APPENDED] * 5 + [ChangeKind.IMPORT_DONE]


# --- HTTP: a real server ---------------------------------------------------------------------


@dataclass
class Served:
    service: BackgroundService
    store: SessionStore  # the same database, opened here to look at it

    def connection(self) -> http.client.HTTPConnection:
        url = urlsplit(self.service.url)
        return http.client.HTTPConnection(url.hostname or "", url.port, timeout=60)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    config = ServiceConfig.model_validate({"tokens": [{"token": ADMIN_TOKEN, "role": "admin"}]})
    if request.param == "postgres":
        pg_available()
        schema = f"t_{uuid.uuid4().hex[:12]}"
        url, options = PG_URL, {"schema": schema, "pool_size": 2}
    else:
        url, options = str(tmp_path_factory.mktemp("served") / "sessions.db"), {}
    service = BackgroundService.over(url, config, **options)
    store = SessionStore.open(url, **options)
    try:
        seed(store)
        yield Served(service, store)
    finally:
        store.close()
        service.close()
        if request.param == "postgres":
            drop_pg_schema(schema)


def _post(conn: http.client.HTTPConnection, path: str, body: bytes
          ) -> tuple[http.client.HTTPResponse, bytes]:
    conn.request("POST", path, body=body, headers={
        "Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/x-ndjson"})
    response = conn.getresponse()
    return response, response.read()


@pytest.mark.parametrize("bad", BAD, ids=[bad.name for bad in BAD])
def test_http_refuses_a_bad_file_with_a_problem_and_keeps_the_connection(
        served: Served, bad: Bad) -> None:
    before = state(served.store)
    conn = served.connection()
    try:
        body = ("\n".join(bad.lines()) + "\n").encode()
        response, raw = _post(conn, "/v1/admin/import", body)
        assert response.status == bad.status, raw[:2000]
        assert response.getheader("content-type", "").startswith("application/problem+json")
        problem = json.loads(raw)
        assert problem["detail"].startswith(f"{bad.field}: "), problem
        if bad.status == 422:
            assert problem["errors"][0]["field"] == bad.field
        assert b"Traceback" not in raw
        # the same connection answers the next request (a 500 would have closed it)
        assert not response.will_close
        sock = conn.sock
        conn.request("GET", "/v1/admin/stats", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        again = conn.getresponse()
        again.read()
        assert again.status == 200 and conn.sock is sock
    finally:
        conn.close()
    assert state(served.store) == before


def test_http_takes_the_conflict_policy(served: Served) -> None:
    conn = served.connection()
    try:
        body = ("\n".join(lines_of(session(1, SEEDED.peer_id))) + "\n").encode()
        response, raw = _post(conn, "/v1/admin/import?on_conflict=replace", body)
        assert response.status == 422, raw
        assert json.loads(raw)["errors"][0]["field"] == "on_conflict"
        before = state(served.store)
        response, raw = _post(conn, "/v1/admin/import?on_conflict=skip", body)
        assert response.status == 200, raw
        assert json.loads(raw) == {"sessions": 0, "messages": 0, "queued": 0, "skipped": 1,
                                   "archived": 0}
        assert state(served.store)[0] == before[0]
    finally:
        conn.close()


def test_the_remote_store_passes_the_conflict_policy(served: Served) -> None:
    with SessionStore.open(served.service.url, token=ADMIN_TOKEN) as remote:
        with pytest.raises(InvalidInputError):  # checked on the client: no request
            remote.import_jsonl([], on_conflict="replace")
        with pytest.raises(ConflictError) as refused:
            remote.import_jsonl(lines_of(session(1, SEEDED.peer_id)))
        assert str(refused.value).startswith("line 2.key: ")
        result = remote.import_jsonl(lines_of(session(1, SEEDED.peer_id)), on_conflict="skip")
        assert result.skipped == 1


# --- the CLI ---------------------------------------------------------------------------------

runner = CliRunner()
CLEAN_ENV: dict[str, str | None] = dict.fromkeys((
    "AISOPOD_DATABASE_URL", "AISOPOD_DATABASE_SCHEMA", "AISOPOD_SERVER", "AISOPOD_TOKEN",
    "AISOPOD_TOKEN_FILE", "AISOPOD_ADMIN_TOKEN", "AISOPOD_AGENT_TOKENS"))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def cli_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[list[str], SessionStore, Path]]:
    """CLI arguments of a seeded database, the store itself, and a folder for files."""
    folder = tmp_path_factory.mktemp("cli")
    if request.param == "postgres":
        pg_available()
        schema = f"t_{uuid.uuid4().hex[:12]}"
        url, options, args = PG_URL, {"schema": schema}, ["--db", PG_URL, "--schema", schema]
    else:
        url, options = str(folder / "sessions.db"), {}
        args = ["--db", url]
    store = SessionStore.open(url, **options)
    try:
        seed(store)
        yield args, store, folder
    finally:
        store.close()
        if request.param == "postgres":
            drop_pg_schema(schema)


@pytest.mark.parametrize("bad", BAD, ids=[bad.name for bad in BAD])
def test_cli_refuses_a_bad_file_in_one_error_line(
        cli_db: tuple[list[str], SessionStore, Path], bad: Bad) -> None:
    args, store, folder = cli_db
    before = state(store)
    path = folder / f"{bad.name}.jsonl"
    path.write_text("\n".join(bad.lines()) + "\n", encoding="utf-8")
    result = runner.invoke(app, [*args, "import", str(path)], env=CLEAN_ENV)
    assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith(f"error: {bad.field}: "), result.stderr
    assert state(store) == before


def test_cli_takes_the_conflict_policy(cli_db: tuple[list[str], SessionStore, Path]) -> None:
    args, store, folder = cli_db
    path = folder / "conflict.jsonl"
    path.write_text("\n".join(lines_of(session(1, SEEDED.peer_id))) + "\n", encoding="utf-8")
    bad = runner.invoke(app, [*args, "import", str(path), "--on-conflict", "replace"],
                        env=CLEAN_ENV)
    assert bad.exit_code == 2
    before = state(store)
    skipped = runner.invoke(app, [*args, "import", str(path), "--on-conflict", "skip"],
                            env=CLEAN_ENV)
    assert skipped.exit_code == 0, skipped.output
    assert "imported 0 sessions, 0 messages; skipped 1 session already stored" in skipped.stdout
    assert state(store)[0] == before[0]


def test_the_real_cli_prints_one_error_line_and_no_traceback(tmp_path: Path) -> None:
    """In a subprocess, as an operator runs it: the cases that were tracebacks."""
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    for bad in (BAD[0], BAD[2]):
        path = tmp_path / f"{bad.name}.jsonl"
        path.write_text("\n".join(bad.lines()) + "\n", encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "-m", "aisopod_session", "--db", str(tmp_path / "s.db"), "import",
             str(path)], check=False, capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 1, (done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        assert done.stderr.strip().splitlines() == [done.stderr.strip()]
        assert done.stderr.startswith(f"error: {bad.field}: "), done.stderr


# --- a large file: bounded memory ------------------------------------------------------------


def _write_file(path: Path, sessions: int, per_session: int, peer: str = "user") -> int:
    """An export of ``sessions`` sessions of ``per_session`` messages (~300 bytes each)."""
    text = "x" * 200
    lines = 1
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps(HEADER) + "\n")
        for s in range(1, sessions + 1):
            out.write(json.dumps(session(s, f"{peer}{s}", message_count=per_session,
                                         last_seq=per_session,
                                         token_usage=3 * per_session)) + "\n")
            for seq in range(1, per_session + 1):
                out.write(json.dumps(message(seq, s, content=f"{seq} {text}",
                                             external_id=f"m-{seq}", token_count=3)) + "\n")
            lines += 1 + per_session
    return lines


MEASURE = """
import json, sys, time
from aisopod_session import SessionStore

def kib(name):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(name + ":"))

def lines(path):
    with open(path, "rb") as handle:
        yield from handle

with SessionStore.open(sys.argv[1]) as store:
    store.import_jsonl(lines(sys.argv[2]))  # warm: every module loaded, every statement cached
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # the peak (VmHWM) starts again from the current size
    before = kib("VmRSS")
    started = time.perf_counter()
    result = store.import_jsonl(lines(sys.argv[3]))
    elapsed = time.perf_counter() - started
    peak = kib("VmHWM")
    assert store.stats().messages_live == result.messages + 1
print(json.dumps({"before_kib": before, "peak_kib": peak, "seconds": elapsed,
                  "sessions": result.sessions, "messages": result.messages}))
"""


@pytest.mark.slow
def test_a_100000_line_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    """Peak resident memory of a process importing 100,000 lines (42 MB), from the size after a
    small import has loaded everything (Linux's VmHWM, reset just before): held in memory, the
    file alone would take more than its size, as Python objects several times that."""
    _write_file(tmp_path / "warm.jsonl", 1, 1, peer="warm")
    lines = _write_file(tmp_path / "large.jsonl", 1000, 99)
    assert lines == 100_001  # the header and 100,000 records
    size = (tmp_path / "large.jsonl").stat().st_size
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(tmp_path / "s.db"), str(tmp_path / "warm.jsonl"),
         str(tmp_path / "large.jsonl")], check=False, capture_output=True, text=True,
        timeout=300)
    assert done.returncode == 0, done.stderr
    measured = json.loads(done.stdout)
    grown = (measured["peak_kib"] - measured["before_kib"]) * 1024
    before, peak = measured["before_kib"] / 1024, measured["peak_kib"] / 1024
    print(f"\n100,000-line import ({size / 1e6:.1f} MB): resident {before:.1f} MiB before, "
          f"peak {peak:.1f} MiB (+{grown / 1e6:.1f} MB), "
          f"{measured['seconds']:.1f} s, {measured['messages'] / measured['seconds']:,.0f} "
          "messages/s (SQLite)")
    assert (measured["sessions"], measured["messages"]) == (1000, 99_000)
    assert grown < 16_000_000, grown
