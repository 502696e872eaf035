"""Bearer tokens: who is calling, and may they touch this agent or the admin routes?

Tokens are compared in constant time: every configured token's digest is compared with the
presented one's, whichever matches, so the time taken says nothing about which token (or how
much of one) was right. Tokens never appear in logs or error messages.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
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
        # The console's cookie names a token by an id derived from its digest (never the token
        # itself), so that removing a token from the configuration also signs its cookies out.
        self._by_id = {_token_id(digest): principal for digest, principal in self._entries}

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    def authenticate(self, presented: str) -> Principal | None:
        found = self.identify(presented)
        return None if found is None else found[1]

    def identify(self, presented: str) -> tuple[str, Principal] | None:
        """The token's id and principal, for a valid token."""
        digest = _digest(presented)
        found = None
        for expected, principal in self._entries:
            if hmac.compare_digest(expected, digest):
                found = (_token_id(expected), principal)
        return found

    def principal_of(self, token_id: str) -> Principal | None:
        """The principal of a token id from :meth:`identify`, while that token is configured."""
        return self._by_id.get(token_id)

    def signing_key(self) -> bytes:
        """A secret every replica with the same tokens derives alike (none: a random one)."""
        if not self._entries:
            return secrets.token_bytes(32)
        material = b"".join(sorted(digest for digest, _ in self._entries))
        return hashlib.sha256(b"aisopod-session console key\x00" + material).digest()


def _token_id(digest: bytes) -> str:
    return hashlib.sha256(b"aisopod-session token id\x00" + digest).hexdigest()[:32]
