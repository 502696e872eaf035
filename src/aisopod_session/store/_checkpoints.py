"""Graph checkpoints kept with a session (migration 0011): the storage operations of the
LangGraph checkpointer (``aisopod_session.integrations.langgraph``), exposed through
:class:`Checkpoints` / :class:`AsyncCheckpoints`, one agent's view over a store.

A thread is a session: its checkpoints and pending writes reference the session's row, so
deleting, purging or erasing the session deletes them (the foreign keys cascade), and so does
archiving it (a reset, a sweep: a trigger of the migration), so the thread starts again empty.
Values are stored as the checkpointer's serializer wrote them (a type name and bytes); nothing
here decodes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from aisopod_session import _time
from aisopod_session._time import to_us
from aisopod_session.errors import InvalidInputError
from aisopod_session.models import SessionKey, StoredMessage
from aisopod_session.store import _agent_async, _agent_sync, _checks, _messages
from aisopod_session.store._schema import LIVE_KEY_WHERE, create_live, key_params, lock_order
from aisopod_session.store._tx import Tx, Work

if TYPE_CHECKING:
    from aisopod_session.store._async import AsyncSessionStore
    from aisopod_session.store._sync import SessionStore

__all__ = ["AsyncCheckpoints", "CheckpointWrite", "Checkpoints", "ListPosition",
           "StoredCheckpoint"]


class StoredCheckpoint(NamedTuple):
    """One checkpoint as stored (its pending writes come with it)."""

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_id: str | None
    type: str
    checkpoint: bytes
    metadata_type: str
    metadata: bytes
    writes: list[CheckpointWrite]


class CheckpointWrite(NamedTuple):
    """One pending write: ``idx`` is its position in its task's writes (negative for the
    special channels, which a later write of the same task and index replaces)."""

    task_id: str
    idx: int
    channel: str
    type: str
    value: bytes
    task_path: str


_CHECKPOINT_COLUMNS = (
    "session_id, checkpoint_ns, checkpoint_id, parent_id, thread_id, type, checkpoint, "
    "metadata_type, metadata"
)
_LIVE_ID = f"SELECT id FROM sessions WHERE {LIVE_KEY_WHERE}"
_OF_AGENT = "session_id IN (SELECT id FROM sessions WHERE agent_id = ? AND status <> 'archived')"


def _live_or_create(tx: Tx, key: SessionKey) -> int:
    row = tx.one(_LIVE_ID, key_params(key))
    if row is not None:
        return int(row[0])
    session, _ = create_live(tx, key)
    return int(session.id)


def _live(tx: Tx, key: SessionKey) -> int | None:
    row = tx.one(_LIVE_ID, key_params(key))
    return None if row is None else int(row[0])


def _text(value: Any, field: str, *, empty: bool = True) -> str:
    if not isinstance(value, str) or (not empty and not value):
        raise InvalidInputError.for_field(field, f"expected a string, got {value!r}")
    return value


def _bytes(value: Any, field: str) -> bytes:
    if not isinstance(value, bytes):
        raise InvalidInputError.for_field(field, f"expected bytes, got {type(value).__name__}")
    return value


def put(key: SessionKey, thread_id: str, checkpoint_ns: str, checkpoint_id: str,
        parent_id: str | None, run_id: str | None, typed: tuple[str, bytes],
        typed_metadata: tuple[str, bytes], transcript: Sequence[StoredMessage]) -> Work[None]:
    """Store a checkpoint (replacing one with the same id) and append ``transcript`` to the
    session's history (de-duplicated on external ids), in one transaction."""
    values = (_text(checkpoint_ns, "checkpoint_ns"),
              _text(checkpoint_id, "checkpoint_id", empty=False),
              None if parent_id is None else _text(parent_id, "parent_id"),
              _text(thread_id, "thread_id"), None if run_id is None else str(run_id),
              _text(typed[0], "type"), _bytes(typed[1], "checkpoint"),
              _text(typed_metadata[0], "metadata_type"), _bytes(typed_metadata[1], "metadata"))
    append = _messages.append_messages(key, list(transcript), None) if transcript else None

    def write(tx: Tx) -> None:
        session_id = _live_or_create(tx, key)
        tx.run(
            "INSERT INTO checkpoints (session_id, checkpoint_ns, checkpoint_id, parent_id, "
            "thread_id, run_id, type, checkpoint, metadata_type, metadata, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (session_id, checkpoint_ns, checkpoint_id) DO UPDATE SET "
            "parent_id = excluded.parent_id, run_id = excluded.run_id, type = excluded.type, "
            "checkpoint = excluded.checkpoint, metadata_type = excluded.metadata_type, "
            "metadata = excluded.metadata",
            (session_id, *values, to_us(_time.utc_now())))
        if append is not None and append.write is not None:
            append.write(tx)

    return Work(write=write, lock_key=lock_order(key))


def put_writes(key: SessionKey, checkpoint_ns: str, checkpoint_id: str,
               writes: Sequence[CheckpointWrite]) -> Work[None]:
    """Store pending writes of a checkpoint: a write already stored under its task and index
    is kept, except for a special (negative) index, which the new write replaces."""
    rows = [(_text(checkpoint_ns, "checkpoint_ns"), _text(checkpoint_id, "checkpoint_id"),
             _text(w.task_id, "task_id"), int(w.idx), _text(w.channel, "channel"),
             _text(w.type, "type"), _bytes(w.value, "value"), _text(w.task_path, "task_path"))
            for w in writes]
    insert = (
        "INSERT INTO checkpoint_writes (session_id, checkpoint_ns, checkpoint_id, task_id, idx, "
        "channel, type, value, task_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (session_id, checkpoint_ns, checkpoint_id, task_id, idx) ")

    def write(tx: Tx) -> None:
        session_id = _live_or_create(tx, key)
        for ns, checkpoint, task_id, idx, channel, kind, value, task_path in rows:
            special = idx < 0  # an error, interrupt, resume...: the newest one counts
            tx.run(insert + ("DO UPDATE SET channel = excluded.channel, type = excluded.type, "
                             "value = excluded.value, task_path = excluded.task_path"
                             if special else "DO NOTHING"),
                   (session_id, ns, checkpoint, task_id, idx, channel, kind, value, task_path))

    return Work(write=write, lock_key=lock_order(key))


def _with_writes(tx: Tx, rows: list[Any]) -> list[StoredCheckpoint]:
    found = []
    for session_id, ns, checkpoint_id, parent_id, thread_id, kind, blob, meta_kind, meta in rows:
        writes = [CheckpointWrite(*row) for row in tx.all(
            "SELECT task_id, idx, channel, type, value, task_path FROM checkpoint_writes "
            "WHERE session_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
            (session_id, ns, checkpoint_id))]
        found.append(StoredCheckpoint(thread_id, ns, checkpoint_id, parent_id, kind, bytes(blob),
                                      meta_kind, bytes(meta), writes))
    return found


def get(key: SessionKey, checkpoint_ns: str, checkpoint_id: str | None
        ) -> Work[StoredCheckpoint | None]:
    """One checkpoint of the live session (the newest of the namespace without an id)."""
    ns = _text(checkpoint_ns, "checkpoint_ns")

    def read(tx: Tx) -> StoredCheckpoint | None:
        session_id = _live(tx, key)
        if session_id is None:
            return None
        sql = (f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE session_id = ? "
               "AND checkpoint_ns = ?")
        params: list[Any] = [session_id, ns]
        if checkpoint_id is not None:
            sql += " AND checkpoint_id = ?"
            params.append(_text(checkpoint_id, "checkpoint_id"))
        else:
            sql += " ORDER BY checkpoint_id DESC LIMIT 1"
        found = _with_writes(tx, tx.all(sql, params))
        return found[0] if found else None

    return Work(read=read)


class ListPosition(NamedTuple):
    """Where a page of :func:`list_checkpoints` ended (the next page starts after it)."""

    checkpoint_id: str
    session_id: int
    checkpoint_ns: str


def list_checkpoints(agent_id: str, key: SessionKey | None,
                     checkpoint_ns: str | None, checkpoint_id: str | None, before: str | None,
                     limit: int, after: ListPosition | None
                     ) -> Work[tuple[list[StoredCheckpoint], ListPosition | None]]:
    """A page of checkpoints, newest id first: of the live session of ``key``, or of every
    live session of the agent; the position to read the next page from."""
    if type(limit) is not int or limit < 1:
        raise InvalidInputError.for_field("limit", f"expected a positive int, got {limit!r}")

    def read(tx: Tx) -> tuple[list[StoredCheckpoint], ListPosition | None]:
        clauses: list[str] = []
        params: list[Any] = []
        if key is not None:
            session_id = _live(tx, key)
            if session_id is None:
                return [], None
            clauses.append("session_id = ?")
            params.append(session_id)
        else:
            clauses.append(_OF_AGENT)
            params.append(agent_id)
        for column, op, value in (("checkpoint_ns", "=", checkpoint_ns),
                                  ("checkpoint_id", "=", checkpoint_id),
                                  ("checkpoint_id", "<", before)):
            if value is not None:
                clauses.append(f"{column} {op} ?")
                params.append(_text(value, column))
        if after is not None:
            clauses.append("(checkpoint_id < ? OR (checkpoint_id = ? AND (session_id < ? OR "
                           "(session_id = ? AND checkpoint_ns < ?))))")
            params += [after.checkpoint_id, after.checkpoint_id, after.session_id,
                       after.session_id, after.checkpoint_ns]
        rows = tx.all(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE {' AND '.join(clauses)} "
            "ORDER BY checkpoint_id DESC, session_id DESC, checkpoint_ns DESC LIMIT ?",
            (*params, limit))
        position = None
        if len(rows) == limit:
            position = ListPosition(rows[-1][2], int(rows[-1][0]), rows[-1][1])
        return _with_writes(tx, rows), position

    return Work(read=read)


def delete_for_runs(agent_id: str, run_ids: Sequence[str]) -> Work[int]:
    """Delete the agent's checkpoints written by these runs, with their pending writes."""
    ids = [_text(run_id, "run_ids") for run_id in run_ids]

    def write(tx: Tx) -> int:
        deleted = 0
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ", ".join("?" * len(chunk))
            gone = tx.all(f"DELETE FROM checkpoints WHERE run_id IN ({marks}) AND {_OF_AGENT} "
                          "RETURNING session_id, checkpoint_ns, checkpoint_id",
                          (*chunk, agent_id))
            for row in gone:
                tx.run("DELETE FROM checkpoint_writes WHERE session_id = ? AND checkpoint_ns = ? "
                       "AND checkpoint_id = ?", row)
            deleted += len(gone)
        return deleted

    return Work(write=write)


def copy_thread(source: SessionKey, target: SessionKey, target_thread_id: str) -> Work[int]:
    """Copy the live checkpoints and pending writes of ``source`` to ``target`` (its live
    session, created if needed), keeping their ids; answers how many checkpoints were copied."""
    thread_id = _text(target_thread_id, "target_thread_id")

    def write(tx: Tx) -> int:
        source_id = _live(tx, source)
        if source_id is None:
            return 0
        target_id = _live_or_create(tx, target)
        if target_id == source_id:
            return 0
        copied = tx.run(
            "INSERT INTO checkpoints (session_id, checkpoint_ns, checkpoint_id, parent_id, "
            "thread_id, run_id, type, checkpoint, metadata_type, metadata, created_at) "
            "SELECT ?, checkpoint_ns, checkpoint_id, parent_id, ?, run_id, type, checkpoint, "
            "metadata_type, metadata, created_at FROM checkpoints WHERE session_id = ? "
            "ON CONFLICT (session_id, checkpoint_ns, checkpoint_id) DO NOTHING",
            (target_id, thread_id, source_id))
        tx.run(
            "INSERT INTO checkpoint_writes (session_id, checkpoint_ns, checkpoint_id, task_id, "
            "idx, channel, type, value, task_path) SELECT ?, checkpoint_ns, checkpoint_id, "
            "task_id, idx, channel, type, value, task_path FROM checkpoint_writes "
            "WHERE session_id = ? ON CONFLICT (session_id, checkpoint_ns, checkpoint_id, "
            "task_id, idx) DO NOTHING", (target_id, source_id))
        return copied

    return Work(write=write, lock_key=lock_order(target))


def prune(keys: Sequence[SessionKey], keep_latest: bool) -> Work[int]:
    """Delete the checkpoints (and their pending writes) of the live sessions of ``keys``: all
    of them, or all but the newest of each namespace; answers how many were deleted."""

    def write(tx: Tx) -> int:
        deleted = 0
        for key in keys:
            session_id = _live(tx, key)
            if session_id is None:
                continue
            kept = ("AND checkpoint_id <> (SELECT max(checkpoint_id) FROM checkpoints AS newest "
                    "WHERE newest.session_id = checkpoints.session_id "
                    "AND newest.checkpoint_ns = checkpoints.checkpoint_ns)") if keep_latest else ""
            gone = tx.all(f"DELETE FROM checkpoints WHERE session_id = ? {kept} "
                          "RETURNING checkpoint_ns, checkpoint_id", (session_id,))
            for ns, checkpoint_id in gone:
                tx.run("DELETE FROM checkpoint_writes WHERE session_id = ? AND checkpoint_ns = ? "
                       "AND checkpoint_id = ?", (session_id, ns, checkpoint_id))
            if not keep_latest:  # writes of checkpoints never stored go too
                tx.run("DELETE FROM checkpoint_writes WHERE session_id = ?", (session_id,))
            deleted += len(gone)
        return deleted

    return Work(write=write)


# --- the facade ------------------------------------------------------------------------------


class _Scope:
    def __init__(self, store: Any, agent_id: str) -> None:
        engine = getattr(store, "_engine", None)
        if engine is None or store.backend not in ("sqlite", "postgres"):
            raise InvalidInputError.for_field(
                "store", "checkpoints need a store on a database (SQLite or PostgreSQL), not "
                f"{type(store).__name__}")
        self._engine = engine
        self.agent_id = _checks.agent_id(agent_id)

    def key(self, key: SessionKey) -> SessionKey:
        return _checks.owned_key(key, self.agent_id)


class Checkpoints(_Scope):
    """One agent's graph checkpoints on a blocking :class:`SessionStore` (see the module
    docstring); keys are that agent's sessions."""

    def __init__(self, store: SessionStore, agent_id: str) -> None:
        super().__init__(store, agent_id)

    def put(self, key: SessionKey, thread_id: str, checkpoint_ns: str, checkpoint_id: str,
            parent_id: str | None, run_id: str | None, typed: tuple[str, bytes],
            typed_metadata: tuple[str, bytes], transcript: Sequence[StoredMessage] = ()
            ) -> None:
        _agent_sync.run_work(self._engine, put(self.key(key), thread_id, checkpoint_ns,
                                               checkpoint_id, parent_id, run_id, typed,
                                               typed_metadata, transcript))

    def put_writes(self, key: SessionKey, checkpoint_ns: str, checkpoint_id: str,
                   writes: Sequence[CheckpointWrite]) -> None:
        _agent_sync.run_work(self._engine, put_writes(self.key(key), checkpoint_ns,
                                                      checkpoint_id, writes))

    def get(self, key: SessionKey, checkpoint_ns: str, checkpoint_id: str | None
            ) -> StoredCheckpoint | None:
        return _agent_sync.run_work(self._engine, get(self.key(key), checkpoint_ns,
                                                      checkpoint_id))

    def list(self, key: SessionKey | None, checkpoint_ns: str | None, checkpoint_id: str | None,
             before: str | None, limit: int, after: ListPosition | None = None
             ) -> tuple[list[StoredCheckpoint], ListPosition | None]:
        return _agent_sync.run_work(self._engine, list_checkpoints(
            self.agent_id, None if key is None else self.key(key), checkpoint_ns,
            checkpoint_id, before, limit, after))

    def delete_for_runs(self, run_ids: Sequence[str]) -> int:
        return _agent_sync.run_work(self._engine,
                                    delete_for_runs(self.agent_id, run_ids))

    def copy_thread(self, source: SessionKey, target: SessionKey, target_thread_id: str) -> int:
        return _agent_sync.run_work(self._engine, copy_thread(self.key(source), self.key(target),
                                                              target_thread_id))

    def prune(self, keys: Sequence[SessionKey], keep_latest: bool) -> int:
        return _agent_sync.run_work(self._engine, prune([self.key(k) for k in keys],
                                                        keep_latest))


class AsyncCheckpoints(_Scope):
    """:class:`Checkpoints` on an :class:`AsyncSessionStore`."""

    def __init__(self, store: AsyncSessionStore, agent_id: str) -> None:
        super().__init__(store, agent_id)

    async def put(self, key: SessionKey, thread_id: str, checkpoint_ns: str, checkpoint_id: str,
                  parent_id: str | None, run_id: str | None, typed: tuple[str, bytes],
                  typed_metadata: tuple[str, bytes], transcript: Sequence[StoredMessage] = ()
                  ) -> None:
        await _agent_async.run_work(self._engine, put(self.key(key), thread_id, checkpoint_ns,
                                                      checkpoint_id, parent_id, run_id, typed,
                                                      typed_metadata, transcript))

    async def put_writes(self, key: SessionKey, checkpoint_ns: str, checkpoint_id: str,
                         writes: Sequence[CheckpointWrite]) -> None:
        await _agent_async.run_work(self._engine, put_writes(self.key(key), checkpoint_ns,
                                                             checkpoint_id, writes))

    async def get(self, key: SessionKey, checkpoint_ns: str, checkpoint_id: str | None
                  ) -> StoredCheckpoint | None:
        return await _agent_async.run_work(self._engine, get(self.key(key), checkpoint_ns,
                                                             checkpoint_id))

    async def list(self, key: SessionKey | None, checkpoint_ns: str | None,
                   checkpoint_id: str | None, before: str | None, limit: int,
                   after: ListPosition | None = None
                   ) -> tuple[list[StoredCheckpoint], ListPosition | None]:
        return await _agent_async.run_work(self._engine, list_checkpoints(
            self.agent_id, None if key is None else self.key(key), checkpoint_ns,
            checkpoint_id, before, limit, after))

    async def delete_for_runs(self, run_ids: Sequence[str]) -> int:
        return await _agent_async.run_work(
            self._engine, delete_for_runs(self.agent_id, run_ids))

    async def copy_thread(self, source: SessionKey, target: SessionKey,
                          target_thread_id: str) -> int:
        return await _agent_async.run_work(self._engine, copy_thread(
            self.key(source), self.key(target), target_thread_id))

    async def prune(self, keys: Sequence[SessionKey], keep_latest: bool) -> int:
        return await _agent_async.run_work(self._engine, prune([self.key(k) for k in keys],
                                                               keep_latest))
