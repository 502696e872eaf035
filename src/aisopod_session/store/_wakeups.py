"""Waking the ``start_run`` calls that wait for a busy session when its run ends, and the
change-feed watchers when the feed grows.

A finish (a commit that wrote feed entries) in this process wakes this process's waiters at once;
on PostgreSQL it also sends ``NOTIFY`` in its own transaction (delivered when it commits), which
the engine's listener connection turns into the same wake-up in every other process and replica.
SQLite has no notifications: a thread watches ``PRAGMA data_version`` for other processes'
commits. Waiters still poll, more slowly, as a safety net (and because an expired lease ends
without anyone finishing it).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from aisopod_session.store._tx import LockKey

CHANNEL = "aisopod_run_ended"
"""The PostgreSQL notification channel; payloads are ``<schema> <name of the key>``."""
FEED_CHANNEL = "aisopod_changes"
"""The PostgreSQL channel of new feed entries; payloads are the schema's name."""


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

    @contextmanager
    def watching(self, key: LockKey) -> Iterator[Watch]:
        """Watch for the end of the key's run while the block runs: registered before the
        caller first tries, so an end between a refusal and the wait is not missed."""
        watch, name = Watch(), key_name(key)
        self._add(name, watch.wake)
        try:
            yield watch
        finally:
            self._remove(name, watch.wake)


class FeedWatchers:
    """Who waits for new change-feed entries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watches: set[Watch] = set()
        self.closed = False
        self.on_first_wait: Callable[[], None] | None = None
        """Called before every watch starts (start the listener or the poller)."""

    def changed(self) -> None:
        """Entries were committed: wake every watcher (each reads what is new)."""
        if not self._watches:  # a watcher added meanwhile reads these entries itself first
            return
        with self._lock:
            watches = list(self._watches)
        for watch in watches:
            with suppress(RuntimeError):  # the watcher's event loop is closed
                watch.wake()

    def close(self) -> None:
        self.closed = True
        self.changed()

    @property
    def watched(self) -> bool:
        return bool(self._watches)

    @contextmanager
    def watching(self) -> Iterator[Watch]:
        """Be woken while the block runs (registered before the caller first reads, so a
        commit between that read and the wait is not missed)."""
        if self.on_first_wait is not None:
            self.on_first_wait()
        watch = Watch()
        with self._lock:
            self._watches.add(watch)
        try:
            yield watch
        finally:
            with self._lock:
                self._watches.discard(watch)


class Watch:
    """One waiter's view of a key's run ends (see :meth:`RunEnds.watching`)."""

    def __init__(self) -> None:
        self._ended = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._woken: asyncio.Event | None = None

    def wake(self) -> None:
        self._ended.set()
        if self._loop is not None and self._woken is not None:
            self._loop.call_soon_threadsafe(self._woken.set)

    def wait(self, seconds: float) -> None:
        """Block until a run end was seen (since the last wait), or ``seconds`` pass."""
        self._ended.wait(seconds)
        self._ended.clear()

    async def wait_async(self, seconds: float) -> None:
        """:meth:`wait` without blocking the event loop."""
        if self._woken is None:
            self._loop, self._woken = asyncio.get_running_loop(), asyncio.Event()
        if not self._ended.is_set():
            # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the result, and
            # swallows the cancel, when the caller is cancelled as the wake-up comes.
            with suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._woken.wait()
        self._ended.clear()
        self._woken.clear()
