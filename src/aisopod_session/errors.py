"""The exceptions aisopod-session raises.

Every error the library raises on purpose is a :class:`SessionError`, so a caller can catch the
whole family in one ``except``. Each carries a message written for the person who has to act on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

__all__ = [
    "AccessDeniedError",
    "ConflictError",
    "InvalidInputError",
    "RunLostError",
    "SchemaVersionError",
    "SearchDisabledError",
    "SessionBusyError",
    "SessionError",
    "SessionNotFoundError",
    "StoreClosedError",
    "StoreUnavailableError",
]


class SessionError(Exception):
    """Base class of every error raised by aisopod-session."""


class SessionNotFoundError(SessionError, LookupError):
    """The session asked for does not exist (or is not live under that key)."""


class AccessDeniedError(SessionError, PermissionError):
    """An agent-scoped handle was asked to touch another agent's session."""


class InvalidInputError(SessionError, ValueError):
    """A value given to the library is not acceptable; nothing was stored.

    ``errors`` lists each problem as ``{"field": "a.b", "message": "..."}`` so that the HTTP layer
    can report every field at once.
    """

    def __init__(self, message: str, errors: Sequence[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors: list[dict[str, Any]] = list(errors) if errors else []

    @classmethod
    def for_field(cls, field: str, problem: str) -> InvalidInputError:
        return cls(f"{field}: {problem}", [{"field": field, "message": problem}])


class ConflictError(SessionError):
    """The operation collides with the current state (for example a stale version)."""


class SessionBusyError(ConflictError):
    """Another run holds the session (``start_run``); ``holder`` and ``expires_at`` say whose
    and until when (the run may be renewed past it; it can be taken over after it)."""

    def __init__(self, message: str, *, holder: str | None = None,
                 expires_at: datetime | None = None) -> None:
        super().__init__(message)
        self.holder = holder
        self.expires_at = expires_at


class RunLostError(ConflictError):
    """The run is no longer the session's current run (it finished, or was taken over after
    its lease expired): nothing it asked for was stored."""


class CursorExpiredError(SessionError):
    """A change-feed cursor points before the oldest entry still kept (the feed's retention
    pruned entries the consumer has not seen): start again from ``latest_cursor()`` or from
    the start of the feed, after a full re-read of what the consumer keeps."""


class SearchDisabledError(ConflictError):
    """The store was opened with search turned off (``search=False``): its messages are not
    indexed, so it answers no search. Open it with search on to index them again."""


class SchemaVersionError(SessionError):
    """The database was written by a newer aisopod-session; it is left untouched."""


class StoreUnavailableError(SessionError):
    """The database could not be reached or failed mid-operation.

    When this is raised by a write, the write was not acknowledged. It may or may not have been
    committed only if ``maybe_committed`` is true (the connection broke during COMMIT).
    """

    def __init__(self, message: str, *, maybe_committed: bool = False) -> None:
        super().__init__(message)
        self.maybe_committed = maybe_committed


class StoreClosedError(SessionError):
    """The store was used after :meth:`close`."""


PROBLEM_TYPE_PREFIX = "tag:aisopod-session,2026:problem/"
"""How the HTTP API names an error: this prefix and the error's name in :data:`PROBLEM_TYPES`."""

PROBLEM_TYPES: dict[str, type[SessionError]] = {
    PROBLEM_TYPE_PREFIX + name: kind for name, kind in (
        # the most specific first: a client and the service pick the first that matches
        ("session-busy", SessionBusyError),
        ("run-lost", RunLostError),
        ("cursor-expired", CursorExpiredError),
        ("invalid-input", InvalidInputError),
        ("session-not-found", SessionNotFoundError),
        ("access-denied", AccessDeniedError),
        ("search-disabled", SearchDisabledError),
        ("conflict", ConflictError),
        ("store-unavailable", StoreUnavailableError),
        # a write whose COMMIT failed: StoreUnavailableError with maybe_committed=True
        ("maybe-committed", StoreUnavailableError),
        ("schema-too-new", SchemaVersionError),
        ("store-closed", StoreClosedError),
    )
}
"""The problem ``type`` of each error over HTTP: the service answers with it, and the remote store
raises the error it names (the wire contract between the two)."""
