"""Waking the ``start_run`` calls that wait for a busy session when its run ends.

A finish in this process wakes this process's waiters at once; on PostgreSQL a finish also sends
``NOTIFY`` in its own transaction (delivered when it commits), which the engine's listener
connection turns into the same wake-up in every other process and replica. Waiters still poll,
more slowly, as a safety net (and because an expired lease ends without anyone finishing it).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable
from contextlib import suppress

from aisopod_session.store._tx import LockKey

CHANNEL = "aisopod_run_ended"
"""The PostgreSQL notification channel; payloads are ``<schema> <name of the key>``."""


def key_name(key: LockKey) -> str:
    """A short stable name of a session key for notification payloads (no personal data)."""
    return hashlib.sha256("\0".join(key).encode("utf-8")).hexdigest()[:32]


class RunEnds:
    """Who waits for a run to end, by key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, list[Callable[[], None]]] = {}
        self.on_first_wait: Callable[[], None] | None = None
        """Called before every wait (PostgreSQL: make sure the listener runs)."""

    def ended(self, name: str) -> None:
        """The run of the key named ``name`` ended: wake whoever waits for it."""
        with self._lock:
            wakers = self._waiting.pop(name, [])
        for wake in wakers:
            with suppress(RuntimeError):  # the waiter's event loop is closed: nobody waits
                wake()

    def _add(self, name: str, wake: Callable[[], None]) -> None:
        if self.on_first_wait is not None:
            self.on_first_wait()
        with self._lock:
            self._waiting.setdefault(name, []).append(wake)

    def _remove(self, name: str, wake: Callable[[], None]) -> None:
        with self._lock:
            waiting = self._waiting.get(name)
            if waiting is not None and wake in waiting:
                waiting.remove(wake)
                if not waiting:
                    del self._waiting[name]

    def wait(self, key: LockKey, seconds: float) -> None:
        """Block until the key's run ends here or elsewhere, or ``seconds`` pass."""
        name, event = key_name(key), threading.Event()
        self._add(name, event.set)
        try:
            event.wait(seconds)
        finally:
            self._remove(name, event.set)

    async def wait_async(self, key: LockKey, seconds: float) -> None:
        """:meth:`wait` without blocking the event loop."""
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(woken.set)

        name = key_name(key)
        self._add(name, wake)
        try:
            await asyncio.wait_for(woken.wait(), seconds)
        except TimeoutError:
            pass
        finally:
            self._remove(name, wake)
