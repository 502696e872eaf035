"""Google ADK: a ``DatabaseSessionService`` database (a SQLite file or URL, or a PostgreSQL
URL), schema version 1 (ADK's current one: events as JSON in ``events.event_data``).

The tables are read as ADK writes them: ``sessions`` (app_name, user_id, id, state,
create_time, update_time), ``events`` (id, app_name, user_id, session_id, invocation_id,
timestamp, event_data), ``app_states`` and ``user_states`` (state). A database of schema
version 0 (pickled events) is refused: ADK's own migration (``adk migrate session``) brings it
to version 1 first.

Everything lands where :mod:`aisopod_session.integrations.adk` keeps it, so
``AisopodSessionService`` serves the imported sessions as ADK did: each session under
``agent:<app>:adk:<user>:dm:<session id>``, its state in the metadata (``{"state": …, "adk":
{"last_update_time": …}}``), each event one message (its JSON, with the role the integration
gives it), the app's and each user's state in the metadata of the sessions
``agent:<app>:adk-state:*:dm:app`` and ``agent:<app>:adk-state:<user>:dm:user``. App and user
names are encoded into key parts as the integration encodes them; ``--agent`` puts every app
under one agent id instead (the integration then no longer finds them by app name). The
external id is ``adk:<event id>``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from aisopod_session.importers._db import Database
from aisopod_session.importers._model import (
    EPOCH,
    KeyMapping,
    Skip,
    SourceError,
    SourceMessage,
    SourceSession,
    utc,
)
from aisopod_session.integrations._common import encode_name, encode_peer
from aisopod_session.models import PeerKind, Role, SessionKey

CHANNEL = "adk"
STATE_CHANNEL = "adk-state"
SCHEMA_VERSION = "1"


def _json_value(value: Any) -> Any:
    """A JSON column: text on SQLite, already decoded (JSONB) on PostgreSQL."""
    if isinstance(value, str | bytes):
        return json.loads(value)
    return value


def event_role(event: dict[str, Any]) -> Role:
    """The integration's rule: the user's events are ``user``, an event carrying function
    responses is ``tool``, any other is ``assistant``."""
    if event.get("author") == "user":
        return Role.USER
    content = event.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    if isinstance(parts, list) and any(isinstance(part, dict) and part.get("function_response")
                                       for part in parts):
        return Role.TOOL
    return Role.ASSISTANT


class AdkSource:
    kind = "adk"

    def __init__(self, source: str, mapping: KeyMapping | None = None) -> None:
        self.mapping = mapping or KeyMapping()
        self.db = Database(source)
        try:
            self._check_schema()
        except BaseException:
            self.db.close()
            raise

    def _check_schema(self) -> None:
        what = "an ADK DatabaseSessionService database"
        if not self.db.columns("adk_internal_metadata"):
            if self.db.columns("events"):
                raise SourceError.for_field(
                    "source", f"{self.db.describe()} is an ADK database of schema version 0 "
                    "(pickled events), which this importer does not read: migrate it to "
                    "version 1 with ADK's own 'adk migrate session' first")
            raise SourceError.for_field("source", f"{self.db.describe()} is not {what}")
        row = self.db.one("SELECT value FROM adk_internal_metadata WHERE key = ?",
                          ("schema_version",))
        version = None if row is None else str(row[0])
        if version != SCHEMA_VERSION:
            raise SourceError.for_field(
                "source", f"ADK schema version {version!r} is not one this importer reads "
                f"(only {SCHEMA_VERSION!r})")
        self.db.require("sessions", ("app_name", "user_id", "id", "state", "create_time",
                                     "update_time"), what)
        self.db.require("events", ("id", "app_name", "user_id", "session_id", "invocation_id",
                                   "timestamp", "event_data"), what)
        self.db.require("app_states", ("app_name", "state"), what)
        self.db.require("user_states", ("app_name", "user_id", "state"), what)

    def close(self) -> None:
        self.db.close()

    def _agent(self, app_name: str) -> str:
        return self.mapping.agent_id or encode_name(app_name, "app_name")

    def sessions(self) -> Iterator[SourceSession]:
        channel = self.mapping.channel or CHANNEL
        for app, user, sid, state, created, updated, count in self.db.rows(
                "SELECT s.app_name, s.user_id, s.id, s.state, s.create_time, s.update_time, "
                "(SELECT count(*) FROM events e WHERE e.app_name = s.app_name AND "
                "e.user_id = s.user_id AND e.session_id = s.id) FROM sessions s "
                "ORDER BY s.app_name, s.user_id, s.id"):
            source_id = f"{app}/{user}/{sid}"
            key = SessionKey(self._agent(app), channel, encode_name(user, "user_id"),
                             PeerKind.DM, encode_peer(sid, "session_id"))
            created_at, updated_at = utc(created), utc(updated)
            try:
                metadata = {"state": _json_value(state) or {},
                            "adk": {"last_update_time": updated_at.timestamp()}}
                problem = None
            except ValueError:
                metadata, problem = {}, "the session's state is not JSON"
            yield SourceSession(
                source_id=source_id, key=key, created_at=created_at, updated_at=updated_at,
                metadata=metadata, size_hint=int(count), problem=problem,
                read=partial(self._events, app, user, sid, created_at))
        yield from self._shared_state()

    def _shared_state(self) -> Iterator[SourceSession]:
        """The app's and the users' state, each in its own session's metadata."""
        for app, state, updated in self.db.rows(
                "SELECT app_name, state, update_time FROM app_states ORDER BY app_name"):
            yield self._state_session(f"app:{app}", SessionKey(
                self._agent(app), STATE_CHANNEL, "*", PeerKind.DM, "app"), state, updated)
        for app, user, state, updated in self.db.rows(
                "SELECT app_name, user_id, state, update_time FROM user_states "
                "ORDER BY app_name, user_id"):
            yield self._state_session(f"user:{app}/{user}", SessionKey(
                self._agent(app), STATE_CHANNEL, encode_name(user, "user_id"), PeerKind.DM,
                "user"), state, updated)

    def _state_session(self, source_id: str, key: SessionKey, state: Any,
                       updated: Any) -> SourceSession:
        moment = utc(updated)
        try:
            metadata, problem = {"state": _json_value(state) or {}}, None
        except ValueError:
            metadata, problem = {}, "the state is not JSON"
        return SourceSession(source_id=source_id, key=key, created_at=moment,
                             updated_at=moment, metadata=metadata, problem=problem,
                             read=lambda: iter(()))

    def _events(self, app: str, user: str, session_id: str,
                created_at: datetime) -> Iterator[SourceMessage | Skip]:
        for event_id, invocation_id, timestamp, data in self.db.rows(
                "SELECT id, invocation_id, timestamp, event_data FROM events WHERE "
                "app_name = ? AND user_id = ? AND session_id = ? ORDER BY timestamp, id",
                (app, user, session_id)):
            try:
                event = _json_value(data) or {}
            except ValueError:
                yield Skip("event_data is not JSON")
                continue
            if not isinstance(event, dict):
                yield Skip("event_data is not a JSON object")
                continue
            moment = event.get("timestamp")
            if not isinstance(moment, int | float) or isinstance(moment, bool):
                moment = utc(timestamp, created_at).timestamp()
            event = {**event, "id": event_id, "invocation_id": invocation_id,
                     "timestamp": moment}
            # as the integration stores an event's time: whole microseconds, rounded up
            yield SourceMessage(source_id=str(event_id), role=event_role(event), content=event,
                                created_at=EPOCH + timedelta(microseconds=math.ceil(
                                    moment * 1_000_000)))
