"""Throttling of failed authentication: bearer tokens on the API, sign-ins on the console.

Each failure is counted per client IP and globally, in a moving window (the ``limits`` package,
in this replica's memory: every replica counts its own). A client that has failed
``failures_per_client`` times in the window is answered 429 with ``Retry-After`` before its
credentials are even checked, so it cannot go on guessing. Beyond ``failures_global`` failures
from everyone, clients that have failed at least once in the window are refused too (a guessing
spread over many addresses), while a client that has not failed is never refused: a flood from
elsewhere cannot lock it out. Successful requests are not counted and not delayed.
"""

from __future__ import annotations

import math
import time

from fastapi import Request
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from aisopod_session.service.config import AuthSettings

_EVERYONE = "*"


class AuthThrottle:
    def __init__(self, settings: AuthSettings) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._per_client = RateLimitItemPerSecond(settings.failures_per_client,
                                                  settings.window_seconds, namespace="auth-ip")
        self._global = RateLimitItemPerSecond(settings.failures_global, settings.window_seconds,
                                              namespace="auth-all")

    def refusal(self, client: str) -> int | None:
        """Seconds the client must wait before trying again, or None: it may try now."""
        if not self._limiter.test(self._per_client, client):
            return self._wait(self._per_client, client)
        if not self._limiter.test(self._global, _EVERYONE) and self._has_failed(client):
            return self._wait(self._global, _EVERYONE)
        return None

    def failed(self, client: str) -> None:
        self._limiter.hit(self._per_client, client)
        self._limiter.hit(self._global, _EVERYONE)

    def _has_failed(self, client: str) -> bool:
        stats = self._limiter.get_window_stats(self._per_client, client)
        return stats.remaining < self._per_client.amount

    def _wait(self, item: RateLimitItemPerSecond, key: str) -> int:
        reset = self._limiter.get_window_stats(item, key).reset_time
        return max(1, math.ceil(reset - time.time()))


def client_of(request: Request) -> str:
    """The client's IP (behind a proxy: the proxy's, unless uvicorn trusts its headers)."""
    return request.client.host if request.client else "unknown"
