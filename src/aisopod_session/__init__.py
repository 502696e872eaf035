"""aisopod-session: durable, isolated conversation sessions for AI agents on chat channels."""

from aisopod_session.compaction import (
    CompactionRecord,
    CompactionStrategy,
    SlidingWindow,
    Summarize,
    TruncateToolResults,
)
from aisopod_session.errors import (
    AccessDeniedError,
    ConflictError,
    InvalidInputError,
    SchemaVersionError,
    SessionError,
    SessionNotFoundError,
    StoreClosedError,
    StoreUnavailableError,
)
from aisopod_session.models import (
    HistoryQuery,
    JsonValue,
    PeerKind,
    Role,
    Session,
    SessionFilter,
    SessionKey,
    SessionMetadata,
    SessionPatch,
    SessionStatus,
    SessionSummary,
    StoredMessage,
)
from aisopod_session.routing import ChannelContext, DmScope, IdentityLinks, resolve_session_key
from aisopod_session.store import (
    AgentSessions,
    AsyncAgentSessions,
    AsyncSessionStore,
    Durability,
    SessionPage,
    SessionStore,
)

__version__ = "0.1.0"

__all__ = [
    "AccessDeniedError",
    "AgentSessions",
    "AsyncAgentSessions",
    "AsyncSessionStore",
    "ChannelContext",
    "CompactionRecord",
    "CompactionStrategy",
    "ConflictError",
    "DmScope",
    "Durability",
    "HistoryQuery",
    "IdentityLinks",
    "InvalidInputError",
    "JsonValue",
    "PeerKind",
    "Role",
    "SchemaVersionError",
    "Session",
    "SessionError",
    "SessionFilter",
    "SessionKey",
    "SessionMetadata",
    "SessionNotFoundError",
    "SessionPage",
    "SessionPatch",
    "SessionStatus",
    "SessionStore",
    "SessionSummary",
    "StoreClosedError",
    "StoreUnavailableError",
    "StoredMessage",
    "TruncateToolResults",
    "SlidingWindow",
    "Summarize",
    "__version__",
    "resolve_session_key",
]
