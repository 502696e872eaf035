"""Thread helpers shared by the concurrency and group-commit tests."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable

from aisopod_session import SessionKey

JOIN_SECONDS = 120  # only a guard against a hang; nothing here is a speed assertion


def key_for(index: int) -> SessionKey:
    return SessionKey("bot", "discord", "acct", "dm", f"peer{index}")


def run_threads(count: int, target: Callable[[int], None]) -> list[str]:
    """Run ``target(0..count-1)`` on threads released together; returns formatted errors."""
    barrier = threading.Barrier(count)
    errors: list[str] = []

    def body(index: int) -> None:
        try:
            barrier.wait(timeout=JOIN_SECONDS)
            target(index)
        except BaseException:
            errors.append(f"thread {index}: {traceback.format_exc()}")

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_SECONDS)
    errors.extend(f"thread {t.name} still running (hung)" for t in threads if t.is_alive())
    return errors
