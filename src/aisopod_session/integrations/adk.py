"""A Google ADK ``BaseSessionService`` stored in aisopod-session.

The one-line switch::

    session_service = InMemorySessionService()                                     # before
    session_service = AisopodSessionService.from_url("sqlite:///sessions.db")      # after

:meth:`AisopodSessionService.from_url` opens a store of its own (a SQLite path or URL,
``postgresql://…``, a service's ``https://…``, ``:memory:``) and closes it in
:meth:`~AisopodSessionService.close` or at the end of an ``async with`` block;
``AisopodSessionService(store)`` shares a :class:`~aisopod_session.SessionStore` or
:class:`~aisopod_session.AsyncSessionStore` the application opened (and closes).

``adk web`` / ``adk api_server`` select it with ``--session_service_uri`` once
:func:`register_adk_services` has registered the URI schemes ``aisopod+sqlite://…``,
``aisopod+postgresql://…``, ``aisopod+http://…`` and ``aisopod+https://…`` (the store's URL with
``aisopod+`` in front) with ADK's service registry; ADK runs a ``services.py`` in the agents
folder for that purpose (see docs/integrations/adk.md).

Key mapping (reversible): ADK's ``(app_name, user_id, session_id)`` is the key
``SessionKey(app_name, "adk", user_id, "dm", session_id)``. App and user names go into key parts
that are lower-cased, so every character other than ``a-z0-9_-.`` is written ``%`` + the
lower-case hex of its UTF-8 bytes (``MyApp`` -> ``%4dy%41pp``); the session id keeps its case and
only ``%``, white space and characters Unicode normalisation would change are escaped.
:func:`adk_ids` gives the three ids back. Each event is one stored message (its JSON, exactly as
ADK's own database services write it). ADK's app and user state live in the metadata of two more
sessions of the app's agent: ``SessionKey(app, "adk-state", "*", "dm", "app")`` and
``SessionKey(app, "adk-state", user, "dm", "user")``.

An event, its session state delta and its app and user state deltas are stored in one
transaction (:meth:`~aisopod_session.AgentSessions.commit`), which is also the stale-session check:
a session object read at one revision cannot append once another writer has moved it on
(``StaleSessionError``), on every replica. Re-delivering an equal event (same id and content)
stores nothing and applies its state delta once.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

try:
    from google.adk.errors import StaleSessionError
    from google.adk.errors.already_exists_error import AlreadyExistsError
    from google.adk.errors.session_not_found_error import (
        SessionNotFoundError as AdkSessionNotFoundError,
    )
    from google.adk.events.event import Event
    from google.adk.platform import time as platform_time
    from google.adk.platform import uuid as platform_uuid
    from google.adk.sessions import _session_util
    from google.adk.sessions.base_session_service import (
        BaseSessionService,
        GetSessionConfig,
        ListSessionsResponse,
    )
    from google.adk.sessions.session import Session as AdkSession
    from google.adk.sessions.state import State
except ImportError as exc:  # pragma: no cover - the extra is installed in CI
    from aisopod_session.integrations._common import missing_framework

    raise missing_framework("google-adk", "adk") from exc

from aisopod_session import _json
from aisopod_session._time import from_us, to_us
from aisopod_session.errors import (
    ConflictError,
    InvalidInputError,
    SessionNotFoundError,
    StoreClosedError,
)
from aisopod_session.integrations._common import (
    AnyStore,
    StoreCalls,
    StoreLocation,
    decode_name,
    decode_peer,
    encode_name,
    encode_peer,
    open_owned_store,
)
from aisopod_session.limits import MAX_ID_LENGTH
from aisopod_session.models import (
    HistoryQuery,
    PeerKind,
    Role,
    Session,
    SessionFilter,
    SessionKey,
    StoredMessage,
)
from aisopod_session.store import Durability, SessionStore

if TYPE_CHECKING:
    from google.adk.cli.service_registry import ServiceRegistry

__all__ = [
    "CHANNEL",
    "SCHEMES",
    "STATE_CHANNEL",
    "AisopodSessionService",
    "adk_ids",
    "app_state_key",
    "register_adk_services",
    "session_key",
    "store_url",
    "user_state_key",
]

CHANNEL = "adk"
"""The channel of ADK sessions' keys."""
STATE_CHANNEL = "adk-state"
"""The channel of the sessions holding ADK's app and user state."""

_STALE = (
    "The session has been modified in storage since it was loaded. "
    "Please reload the session before appending more events."
)
_PAGE = 1000


def session_key(app_name: str, user_id: str, session_id: str) -> SessionKey:
    """The key of an ADK session (see the module docstring)."""
    return SessionKey(encode_name(app_name, "app_name"), CHANNEL,
                      encode_name(user_id, "user_id"), PeerKind.DM,
                      encode_peer(session_id, "session_id"))


def adk_ids(key: SessionKey) -> tuple[str, str, str]:
    """``(app_name, user_id, session_id)`` of a key made by :func:`session_key`."""
    return decode_name(key.agent_id), decode_name(key.account_id), decode_peer(key.peer_id)


def app_state_key(app_name: str) -> SessionKey:
    """The session whose metadata holds the app's ``app:`` state."""
    return SessionKey(encode_name(app_name, "app_name"), STATE_CHANNEL, "*", PeerKind.DM, "app")


def user_state_key(app_name: str, user_id: str) -> SessionKey:
    """The session whose metadata holds a user's ``user:`` state in the app."""
    return SessionKey(encode_name(app_name, "app_name"), STATE_CHANNEL,
                      encode_name(user_id, "user_id"), PeerKind.DM, "user")


def _state(session: Session | None) -> dict[str, Any]:
    if session is None:
        return {}
    state = session.metadata.get("state")
    return dict(state) if isinstance(state, dict) else {}


def _last_update_time(session: Session) -> float:
    adk = session.metadata.get("adk")
    if isinstance(adk, dict) and isinstance(adk.get("last_update_time"), int | float):
        return float(adk["last_update_time"])
    return session.created_at.timestamp()


def _merged(session_state: dict[str, Any], app: dict[str, Any],
            user: dict[str, Any]) -> dict[str, Any]:
    """Session state with the app's and user's, prefixed, as ADK's services return it."""
    merged = dict(session_state)
    for name, value in app.items():
        merged[State.APP_PREFIX + name] = value
    for name, value in user.items():
        merged[State.USER_PREFIX + name] = value
    return merged


def _marker(session: Session) -> str:
    return str(to_us(session.updated_at))


def _ceil_us(timestamp: float) -> int:
    """Event time as whole microseconds, rounded up (monotone, so a bound on it is exact
    enough for the database; the float itself decides)."""
    return math.ceil(timestamp * 1_000_000)


def _event_message(event: Event) -> StoredMessage:
    content = _json.loads(event.model_dump_json(exclude_none=True))
    digest = hashlib.sha256(_json.dumps(content).encode("utf-8")).hexdigest()
    # An equal re-delivery (same id and fields) has the same external id and is stored once;
    # distinct events that merely share an id are both kept, as in ADK's InMemorySessionService.
    external_id = f"{event.id}#{digest[:40]}"
    if len(external_id) > MAX_ID_LENGTH or not event.id.isprintable() or not event.id.strip():
        external_id = digest
    if event.author == "user":
        role = Role.USER
    elif event.get_function_responses():
        role = Role.TOOL
    else:
        role = Role.ASSISTANT
    return StoredMessage(role=role, content=content, external_id=external_id,
                         created_at=from_us(_ceil_us(event.timestamp)))


def _event(message: StoredMessage) -> Event:
    return Event.model_validate_json(_json.dumps(message.content))


class AisopodSessionService(BaseSessionService):
    """ADK sessions, events and state in aisopod-session (see the module docstring).

    Behaves as ADK's own services where they define the behaviour: ``create_session`` raises
    ``AlreadyExistsError`` for a taken id, ``get_session`` returns None for an unknown one and
    applies ``GetSessionConfig`` (``num_recent_events``, ``after_timestamp``: events with
    ``timestamp >= after_timestamp``), ``list_sessions`` returns every session without events,
    oldest update first, ``temp:`` state is never stored, and a stale session object raises
    ``StaleSessionError`` on ``append_event``.
    """

    def __init__(self, store: AnyStore) -> None:
        if not isinstance(store, AnyStore):
            raise InvalidInputError.for_field(
                "store", "expected a SessionStore or AsyncSessionStore (from_url opens one), got "
                f"{type(store).__name__}")
        self._store = store
        self._apps: dict[str, StoreCalls] = {}
        self._owned: SessionStore | None = None
        self._closed = False

    @classmethod
    def from_url(
        cls,
        url: StoreLocation,
        *,
        durability: Durability = "full",
        pool_size: int | None = None,
        schema: str | None = None,
        token: str | None = None,
        timeout: float | None = None,
    ) -> AisopodSessionService:
        """A service on a store of its own at ``url`` (options as in
        :meth:`aisopod_session.SessionStore.open`), closed by :meth:`close`."""
        options: dict[str, Any] = {"durability": durability, "pool_size": pool_size,
                                   "schema": schema, "token": token, "timeout": timeout}
        store = open_owned_store(url, **{k: v for k, v in options.items() if v is not None})
        service = cls(store)
        service._owned = store
        return service

    @property
    def owns_store(self) -> bool:
        """Whether the service opened its store (and closes it)."""
        return self._owned is not None

    async def close(self) -> None:
        """Close the service: its own store is closed, a shared one stays open. Closing twice
        does nothing; any other call afterwards raises ``StoreClosedError``."""
        self._closed = True
        if self._owned is not None:
            await asyncio.to_thread(self._owned.close)

    async def __aenter__(self) -> AisopodSessionService:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    def _calls(self, app_name: str) -> StoreCalls:
        if self._closed:
            raise StoreClosedError("the session service is closed")
        agent = encode_name(app_name, "app_name")
        calls = self._apps.get(agent)
        if calls is None:
            calls = StoreCalls(self._store, agent)
            self._apps[agent] = calls
        return calls

    async def _get(self, calls: StoreCalls, key: SessionKey) -> Session | None:
        try:
            return await calls.call("get", key)  # type: ignore[no-any-return]
        except SessionNotFoundError:
            return None

    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> AdkSession:
        session_id = session_id.strip() if session_id else None
        session_id = session_id or platform_uuid.new_uuid()
        calls = self._calls(app_name)
        deltas = _session_util.extract_json_safe_state_delta(state or {})
        now = platform_time.get_time()
        app_key, user_key = app_state_key(app_name), user_state_key(app_name, user_id)
        try:
            result = await calls.call(
                "commit", session_key(app_name, user_id, session_id), [],
                {"state": deltas["session"], "adk": {"last_update_time": now}},
                create=True,
                shared={app_key: {"state": deltas["app"]}, user_key: {"state": deltas["user"]}},
            )
        except ConflictError:
            raise AlreadyExistsError(f"Session with id {session_id} already exists.") from None
        session = AdkSession(
            app_name=app_name, user_id=user_id, id=session_id,
            state=_merged(_state(result.session), _state(result.shared[app_key]),
                          _state(result.shared[user_key])),
            last_update_time=now,
        )
        session._storage_update_marker = _marker(result.session)
        return session

    async def _events(
        self, calls: StoreCalls, key: SessionKey, config: GetSessionConfig | None
    ) -> list[Event]:
        recent = config.num_recent_events if config else None
        after = config.after_timestamp if config else None
        if recent == 0:
            return []
        if after is None:
            query = HistoryQuery(limit=recent, tail=recent is not None)
            return [_event(m) for m in await calls.call("get_history", key, query)]
        bound = from_us(_ceil_us(after) - 1)  # created_at > bound  <=>  ceil(ts) >= ceil(after)
        limit = recent
        while True:
            query = HistoryQuery(after=bound, limit=limit, tail=limit is not None)
            messages = await calls.call("get_history", key, query)
            events = [_event(m) for m in messages]
            kept = [e for e in events if e.timestamp >= after]
            if recent is None or len(messages) < (limit or 0) or len(kept) >= recent:
                return kept[-recent:] if recent is not None else kept
            limit = (limit or recent) * 2  # a few events within the same microsecond dropped

    async def get_session(
        self,
        *,
        app_name: str,
        user_id: str,
        session_id: str,
        config: GetSessionConfig | None = None,
    ) -> AdkSession | None:
        session_id = session_id.strip() if session_id else session_id
        calls = self._calls(app_name)
        key = session_key(app_name, user_id, session_id)
        stored = await self._get(calls, key)  # first: its revision is never newer than events
        if stored is None:
            return None
        try:
            events, app, user = await asyncio.gather(
                self._events(calls, key, config),
                self._get(calls, app_state_key(app_name)),
                self._get(calls, user_state_key(app_name, user_id)),
            )
        except SessionNotFoundError:  # deleted meanwhile
            return None
        session = AdkSession(
            app_name=app_name, user_id=user_id, id=session_id,
            state=_merged(_state(stored), _state(app), _state(user)),
            events=events, last_update_time=_last_update_time(stored),
        )
        session._storage_update_marker = _marker(stored)
        return session

    async def _all(self, calls: StoreCalls, **filters: Any) -> list[Session]:
        found: list[Session] = []
        cursor = None
        while True:
            page = await calls.call(
                "list_detailed", SessionFilter(limit=_PAGE, cursor=cursor, **filters)
            )
            found.extend(page)
            cursor = page.next_cursor
            if cursor is None:
                return found

    async def list_sessions(
        self, *, app_name: str, user_id: str | None = None
    ) -> ListSessionsResponse:
        calls = self._calls(app_name)
        account = None if user_id is None else encode_name(user_id, "user_id")
        stored = await self._all(calls, channel=CHANNEL, account_id=account)
        app = _state(await self._get(calls, app_state_key(app_name)))
        if user_id is not None:
            users = {account: _state(await self._get(calls, user_state_key(app_name, user_id)))}
        else:
            holders = await self._all(calls, channel=STATE_CHANNEL, peer_id="user")
            users = {holder.key.account_id: _state(holder) for holder in holders}
        sessions = []
        for one in stored:
            _, user, session_id = adk_ids(one.key)
            session = AdkSession(
                app_name=app_name, user_id=user, id=session_id,
                state=_merged(_state(one), app, users.get(one.key.account_id, {})),
                last_update_time=_last_update_time(one),
            )
            session._storage_update_marker = _marker(one)
            sessions.append(session)
        sessions.sort(key=lambda s: (s.last_update_time, s.user_id, s.id))
        return ListSessionsResponse(sessions=sessions)

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        session_id = session_id.strip() if session_id else session_id
        await self._calls(app_name).call("delete", session_key(app_name, user_id, session_id))

    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        calls = self._calls(app_name)
        return _state(await self._get(calls, user_state_key(app_name, user_id)))

    async def _expected_revision(
        self, calls: StoreCalls, key: SessionKey, session: AdkSession
    ) -> datetime:
        """The revision ``session`` was read at; StaleSessionError if storage moved past it."""
        marker = session._storage_update_marker
        if marker is not None and marker.isdigit():
            return from_us(int(marker))
        # A session object without a marker (built by hand, or by another service): stale only
        # if storage has moved on *and* its newest event is not the session's newest event.
        stored = await self._get(calls, key)
        if stored is None:
            raise AdkSessionNotFoundError(f"Session {session.id} not found.")
        if _last_update_time(stored) > session.last_update_time:
            newest = await calls.call("get_history", key, HistoryQuery(limit=1, tail=True))
            newest_id = _event(newest[0]).id if newest else None
            if newest_id != (session.events[-1].id if session.events else None):
                raise StaleSessionError(_STALE)
        return stored.updated_at

    async def append_event(self, session: AdkSession, event: Event) -> Event:
        if event.partial:
            return event
        # As ADK's services: temp state reaches the in-memory session, never the storage.
        self._apply_temp_state(session, event)
        event = self._trim_temp_delta_state(event)
        calls = self._calls(session.app_name)
        key = session_key(session.app_name, session.user_id, session.id)
        deltas = _session_util.extract_json_safe_state_delta(
            event.actions.state_delta if event.actions and event.actions.state_delta else {}
        )
        shared = {
            other: {"state": delta}
            for other, delta in ((app_state_key(session.app_name), deltas["app"]),
                                 (user_state_key(session.app_name, session.user_id),
                                  deltas["user"]))
            if delta
        }
        expected = await self._expected_revision(calls, key, session)
        try:
            result = await calls.call(
                "commit", key, [_event_message(event)],
                {"state": deltas["session"], "adk": {"last_update_time": event.timestamp}},
                expect_updated_at=expected, shared=shared,
            )
        except ConflictError:
            raise StaleSessionError(_STALE) from None
        except SessionNotFoundError:
            raise AdkSessionNotFoundError(f"Session {session.id} not found.") from None
        if not result.applied:  # an equal event delivered again: already stored and applied
            return event
        session.last_update_time = event.timestamp
        session._storage_update_marker = _marker(result.session)
        return self._commit_event_to_session(session, event)


# --- ADK's service registry (adk web / api_server --session_service_uri) ---------------------

SCHEMES = ("aisopod+sqlite", "aisopod+postgresql", "aisopod+http", "aisopod+https")
"""The URI schemes :func:`register_adk_services` registers: the store's own URL with
``aisopod+`` in front (``aisopod+sqlite:///sessions.db``, ``aisopod+postgresql://host/db``)."""
_STORE_OPTIONS = frozenset({"durability", "pool_size", "schema", "token", "timeout"})


def store_url(uri: str) -> str:
    """The store URL of a registry URI: ``aisopod+sqlite:///x.db`` -> ``sqlite:///x.db``."""
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme not in SCHEMES:
        raise InvalidInputError.for_field(
            "session_service_uri", f"expected a URI starting with one of "
            f"{', '.join(s + '://' for s in SCHEMES)}, got {uri[:60]!r}")
    return uri[len("aisopod+"):]


def _service_from_uri(uri: str, **kwargs: Any) -> AisopodSessionService:
    kwargs.pop("agents_dir", None)  # ADK passes the agents folder to every factory
    unknown = sorted(set(kwargs) - _STORE_OPTIONS)
    if unknown:
        raise InvalidInputError.for_field(
            "session_db_kwargs", f"unknown store options {unknown}; expected some of "
            f"{sorted(_STORE_OPTIONS)}")
    return AisopodSessionService.from_url(store_url(uri), **kwargs)


def register_adk_services(registry: ServiceRegistry | None = None) -> None:
    """Register :data:`SCHEMES` with ADK's service registry (the process's own by default), so
    that ``--session_service_uri aisopod+sqlite:///sessions.db`` (or ADK's
    ``create_session_service``) builds an :class:`AisopodSessionService` owning its store.
    Registering again is harmless."""
    if registry is None:
        # Imported here: ADK's CLI package is needed only by those who register.
        from google.adk.cli.service_registry import get_service_registry

        registry = get_service_registry()
    for scheme in SCHEMES:
        registry.register_session_service(scheme, _service_from_uri)
