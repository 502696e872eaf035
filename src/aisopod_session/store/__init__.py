"""Session storage: one design, two backends (SQLite, PostgreSQL), blocking and asyncio APIs."""

from aisopod_session.store._admin import DailyUsage
from aisopod_session.store._async import AsyncAgentSessions, AsyncSessionStore
from aisopod_session.store._engine import Durability
from aisopod_session.store._lifecycle import AuditRecord, PeerResult, Resolution
from aisopod_session.store._ops import SessionPage
from aisopod_session.store._sync import AgentSessions, SessionStore

__all__ = [
    "AuditRecord",
    "DailyUsage",
    "PeerResult",
    "Resolution",
    "AgentSessions",
    "AsyncAgentSessions",
    "AsyncSessionStore",
    "Durability",
    "SessionPage",
    "SessionStore",
]
