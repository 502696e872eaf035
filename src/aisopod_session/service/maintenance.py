"""The service's periodic maintenance: sweep (lifecycle), purge (retention), and the search
index of messages stored before search was turned on, built a few batches at a time."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import TypeVar

from aisopod_session.errors import SessionError
from aisopod_session.service.metrics import Metrics
from aisopod_session.store import AsyncSessionStore

log = logging.getLogger("aisopod_session.service")
T = TypeVar("T")

SEARCH_BATCH_SIZE = 1000
"""Messages per batch of the index build (each batch one short write transaction)."""
SEARCH_BATCHES_PER_ROUND = 5
"""Batches one round indexes: a bounded piece of work (5,000 messages, about a second), so that
a large backlog never holds up sweeping and purging."""
SEARCH_BACKLOG_PAUSE = 1.0
"""Seconds between two rounds of indexing while older messages are still pending (sweep and
purge keep their own interval)."""


async def run_maintenance(store: AsyncSessionStore, interval_seconds: float,
                          metrics: Metrics | None = None) -> None:
    """Sweep and purge every ``interval_seconds``, and index pending older messages (a few
    batches a round, every ``SEARCH_BACKLOG_PAUSE`` seconds while some are left), until
    cancelled; failures are logged and retried at the next round, never fatal to the service.
    ``metrics``: where the index's progress is reported (``/metrics``)."""
    upkeep_due = time.monotonic() + interval_seconds
    backlog = True  # until the first round says otherwise: a backlog starts soon after start-up
    while True:
        pause = upkeep_due - time.monotonic()
        await asyncio.sleep(max(0.0, min(pause, SEARCH_BACKLOG_PAUSE) if backlog else pause))
        if time.monotonic() >= upkeep_due:
            upkeep_due = time.monotonic() + interval_seconds
            await _guarded(_upkeep(store), interval_seconds)
        backlog = bool(await _guarded(index_step(store, metrics), interval_seconds))


async def _guarded(step: Awaitable[T], interval_seconds: float) -> T | None:
    """``step``'s result; None when it failed (logged)."""
    try:
        return await step
    except SessionError as exc:
        log.warning("maintenance failed, retrying in %ss: %s", interval_seconds, exc)
    except Exception:  # a bug must not end maintenance for the rest of the process's life
        log.exception("maintenance failed unexpectedly, retrying in %ss", interval_seconds)
    return None


async def _upkeep(store: AsyncSessionStore) -> None:
    swept = await store.sweep()
    purged = await store.purge()
    if swept.idled or swept.archived or purged.messages or purged.sessions or purged.changes:
        log.info("maintenance: %d idle, %d archived, purged %d sessions, %d messages and "
                 "%d change-feed entries", swept.idled, swept.archived, purged.sessions,
                 purged.messages, purged.changes)


async def index_step(store: AsyncSessionStore, metrics: Metrics | None = None) -> bool:
    """Index up to ``SEARCH_BATCHES_PER_ROUND`` batches of the messages still pending; whether
    some are left."""
    status = await store.search_index_status()
    if status.enabled and status.pending:
        before = status.pending
        status = await store.build_search_index(batch_size=SEARCH_BATCH_SIZE,
                                                max_batches=SEARCH_BATCHES_PER_ROUND)
        indexed = max(0, before - status.pending)
        if metrics is not None:
            metrics.search_indexed(indexed)
        if status.pending:
            log.info("maintenance: indexed %d older messages for search, %d still pending",
                     indexed, status.pending)
        else:
            log.info("maintenance: indexed %d older messages for search; the search index is "
                     "complete", indexed)
    if metrics is not None:
        metrics.search_pending(status.pending if status.enabled else 0)
    return status.enabled and status.pending > 0
