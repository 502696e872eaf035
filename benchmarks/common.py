"""Helpers every benchmark child uses: the message text, timing loops, percentiles.

Nothing here imports a system under test, so each child only loads the one it measures.
"""

from __future__ import annotations

import asyncio
import os
import platform
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

TEXT = "benchmark message {i}: could you check the order I placed yesterday, it has not arrived"
"""One chat message (about 90 characters): every system stores the same text."""

AGENT = "bench"


def machine() -> str:
    """The machine a run measured on, for a report: CPUs, their model, the kernel."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}"


def stop(process: subprocess.Popen[Any], seconds: float) -> None:
    """Stop a server started for a measurement: SIGTERM, then SIGKILL after ``seconds``."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def loadavg() -> str:
    """The load averages, for a report's before / after."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())
CHANNEL = "slack"
ACCOUNT = "acct"


def text(i: int) -> str:
    return TEXT.format(i=i)


def role_of(i: int) -> str:
    return "user" if i % 2 == 0 else "assistant"


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def rate(count: int, seconds: float, capped: bool, *, planned: int, errors: int = 0,
         **extra: Any) -> dict[str, Any]:
    return {"ops": count, "planned": planned, "seconds": seconds,
            "rate": count / seconds if seconds > 0 else 0.0, "capped": capped,
            "errors": errors, **extra}


def timed_loop(count: int, budget: float, step: Callable[[int], object]) -> dict[str, Any]:
    """Run ``step(i)`` for i in range(count), stopping early once ``budget`` seconds passed."""
    started = time.perf_counter()
    deadline = started + budget
    done = 0
    for i in range(count):
        step(i)
        done += 1
        if time.perf_counter() > deadline:
            break
    elapsed = time.perf_counter() - started
    return rate(done, elapsed, done < count, planned=count)


def latency_loop(count: int, budget: float, step: Callable[[int], object],
                 warmup: int = 5) -> dict[str, Any]:
    """Like :func:`timed_loop`, also keeping each call's latency (p50/p99 in ms)."""
    for i in range(min(warmup, count)):
        step(i)
    samples: list[float] = []
    started = time.perf_counter()
    deadline = started + budget
    for i in range(count):
        t0 = time.perf_counter()
        step(i)
        samples.append(time.perf_counter() - t0)
        if time.perf_counter() > deadline:
            break
    elapsed = time.perf_counter() - started
    return _with_latencies(rate(len(samples), elapsed, len(samples) < count, planned=count),
                           samples)


async def async_timed_loop(count: int, budget: float,
                           step: Callable[[int], Awaitable[object]]) -> dict[str, Any]:
    started = time.perf_counter()
    deadline = started + budget
    done = 0
    for i in range(count):
        await step(i)
        done += 1
        if time.perf_counter() > deadline:
            break
    elapsed = time.perf_counter() - started
    return rate(done, elapsed, done < count, planned=count)


async def async_latency_loop(count: int, budget: float,
                             step: Callable[[int], Awaitable[object]],
                             warmup: int = 5) -> dict[str, Any]:
    for i in range(min(warmup, count)):
        await step(i)
    samples: list[float] = []
    started = time.perf_counter()
    deadline = started + budget
    for i in range(count):
        t0 = time.perf_counter()
        await step(i)
        samples.append(time.perf_counter() - t0)
        if time.perf_counter() > deadline:
            break
    elapsed = time.perf_counter() - started
    return _with_latencies(rate(len(samples), elapsed, len(samples) < count, planned=count),
                           samples)


async def concurrent_writers(writers: int, per_writer: int, budget: float,
                             step: Callable[[int, int], Awaitable[object]]) -> dict[str, Any]:
    """``writers`` asyncio tasks, each calling ``step(writer, i)`` ``per_writer`` times.

    An exception in a call is counted (some peers raise "database is locked" under concurrency)
    and the writer goes on. Each writer stops once ``budget`` seconds passed.
    """
    errors: list[str] = []
    done = [0]
    started = time.perf_counter()
    deadline = started + budget

    async def writer(w: int) -> None:
        for i in range(per_writer):
            try:
                await step(w, i)
                done[0] += 1
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
            if time.perf_counter() > deadline:
                return

    await asyncio.gather(*(writer(w) for w in range(writers)))
    elapsed = time.perf_counter() - started
    planned = writers * per_writer
    result = rate(done[0], elapsed, done[0] + len(errors) < planned, planned=planned,
                  errors=len(errors), writers=writers)
    if errors:
        result["first_error"] = errors[0]
    return result


def _with_latencies(result: dict[str, Any], samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    result["p50_ms"] = percentile(ordered, 0.50) * 1000
    result["p99_ms"] = percentile(ordered, 0.99) * 1000
    return result


def sqlite_settings(path: str) -> dict[str, str]:
    """The journal mode a file is in (persistent for WAL) and the synchronous level a connection
    gets when nobody sets one (what a peer that sets nothing runs with)."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        sync = conn.execute("PRAGMA synchronous").fetchone()[0]
    finally:
        conn.close()
    names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
    return {"journal_mode": str(mode).upper(), "default_synchronous": names.get(sync, str(sync))}
