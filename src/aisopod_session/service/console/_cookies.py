"""The console's sign-in cookie and its CSRF tokens.

The cookie holds no token: only the id of the token that signed in (see
:meth:`TokenRegistry.identify`), a random nonce and an expiry, signed with HMAC-SHA256 under a key
derived from the configured tokens. Any replica with the same configuration accepts it, and
removing a token signs its cookies out. Signing out records the cookie's :meth:`revocation id
<ConsoleCookies.revocation_id>` in the database (``revoke_console_sign_in``), where every replica
looks before it accepts a cookie. Each state-changing form carries a CSRF token derived from
the cookie's nonce, so a page on another site cannot submit a form with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from aisopod_session.service.auth import OPEN_ACCESS, Principal, TokenRegistry

COOKIE_NAME = "aisopod_console"
COOKIE_PATH = "/console"
LIFETIME_SECONDS = 12 * 3600
OPEN_TOKEN_ID = "open"
"""The token id of a sign-in to a server with no tokens configured (loopback only)."""


@dataclass(frozen=True, slots=True)
class SignIn:
    principal: Principal
    nonce: str
    expires: int
    """When the cookie stops being accepted anyway (seconds since the epoch)."""


class ConsoleCookies:
    def __init__(self, tokens: TokenRegistry) -> None:
        self._tokens = tokens
        self._key = tokens.signing_key()

    def issue(self, token_id: str, now: float | None = None) -> str:
        payload = json.dumps({"t": token_id, "n": secrets.token_urlsafe(16),
                              "e": int((time.time() if now is None else now) + LIFETIME_SECONDS)},
                             separators=(",", ":")).encode()
        body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{body}.{self._sign(body)}"

    def read(self, cookie: str | None, now: float | None = None) -> SignIn | None:
        """The sign-in a cookie proves, or None (absent, forged, expired or token removed)."""
        if not cookie or cookie.count(".") != 1 or len(cookie) > 1024:
            return None
        body, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            token_id, nonce, expires = str(payload["t"]), str(payload["n"]), int(payload["e"])
        except (ValueError, KeyError, TypeError):
            return None
        if expires < (time.time() if now is None else now):
            return None
        if self._tokens.enabled:
            principal = self._tokens.principal_of(token_id)
        else:
            principal = OPEN_ACCESS if token_id == OPEN_TOKEN_ID else None
        return None if principal is None else SignIn(principal, nonce, expires)

    def revocation_id(self, sign_in: SignIn) -> str:
        """What a sign-out records: a digest of the cookie's nonce (not the nonce, which the
        CSRF tokens are derived from)."""
        return hashlib.sha256(b"aisopod-session sign-out\x00" + sign_in.nonce.encode()
                              ).hexdigest()

    def csrf_token(self, sign_in: SignIn) -> str:
        return self._sign("csrf:" + sign_in.nonce)

    def csrf_ok(self, sign_in: SignIn, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, self.csrf_token(sign_in))

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()
