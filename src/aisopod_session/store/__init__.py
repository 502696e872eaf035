"""Session storage: one API over SQLite, PostgreSQL, blocking and asyncio.

Only this package's public names are for use outside it: the modules named ``_*`` are private
(``tests/test_architecture.py`` keeps it so).
"""

from aisopod_session.results import (
    AuditRecord,
    CommitResult,
    DailyUsage,
    ImportResult,
    MetadataMerge,
    Page,
    PeerResult,
    QueuedMessage,
    Resolution,
    Run,
    SearchFilter,
    SearchHit,
    SearchIndexStatus,
    SearchPage,
    SessionDetailPage,
    SessionPage,
    SnippetSegment,
    StoreStats,
)
from aisopod_session.store._agent_async import AsyncAgentSessions
from aisopod_session.store._agent_sync import AgentSessions
from aisopod_session.store._async import AsyncSessionStore
from aisopod_session.store._checkpoints import (
    AsyncCheckpoints,
    Checkpoints,
    CheckpointWrite,
    ListPosition,
    StoredCheckpoint,
)
from aisopod_session.store._console import (
    console_sign_in_revoked,
    messages_after,
    revoke_console_sign_in,
)
from aisopod_session.store._engine import Durability
from aisopod_session.store._sync import SessionStore

__all__ = [
    "AgentSessions",
    "AsyncAgentSessions",
    "AsyncCheckpoints",
    "AsyncSessionStore",
    "AuditRecord",
    "CheckpointWrite",
    "Checkpoints",
    "CommitResult",
    "DailyUsage",
    "Durability",
    "ImportResult",
    "ListPosition",
    "MetadataMerge",
    "Page",
    "PeerResult",
    "QueuedMessage",
    "Resolution",
    "Run",
    "SearchFilter",
    "SearchHit",
    "SearchIndexStatus",
    "SearchPage",
    "SessionDetailPage",
    "SessionPage",
    "SessionStore",
    "SnippetSegment",
    "StoreStats",
    "StoredCheckpoint",
    "console_sign_in_revoked",
    "messages_after",
    "revoke_console_sign_in",
]
