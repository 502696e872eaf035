"""Bearer tokens: who is calling, and may they touch this agent or the admin routes?

Tokens are compared in constant time: every configured token's digest is compared with the
presented one's, whichever matches, so the time taken says nothing about which token (or how
much of one) was right. Tokens never appear in logs or error messages.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from aisopod_session.service.config import TokenSettings


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: an admin, or an agent's own token."""

    admin: bool
    agent_id: str | None

    @property
    def name(self) -> str:
        return "admin" if self.admin else f"agent:{self.agent_id}"

    def may_use_agent(self, agent_id: str) -> bool:
        return self.admin or self.agent_id == agent_id


OPEN_ACCESS = Principal(admin=True, agent_id=None)
"""Everything is allowed when no tokens are configured (loopback only, see ServiceConfig)."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class TokenRegistry:
    def __init__(self, tokens: list[TokenSettings]) -> None:
        self._entries = [
            (_digest(t.token), Principal(admin=t.role == "admin", agent_id=t.agent))
            for t in tokens
        ]

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    def authenticate(self, presented: str) -> Principal | None:
        digest = _digest(presented)
        found = None
        for expected, principal in self._entries:
            if hmac.compare_digest(expected, digest):
                found = principal
        return found
