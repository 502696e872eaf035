"""The service's periodic maintenance: sweep (lifecycle) and purge (retention)."""

from __future__ import annotations

import asyncio
import logging

from aisopod_session.errors import SessionError
from aisopod_session.store import AsyncSessionStore

log = logging.getLogger("aisopod_session.service")


async def run_maintenance(store: AsyncSessionStore, interval_seconds: float) -> None:
    """Sweep and purge every ``interval_seconds`` until cancelled; failures are logged and
    retried at the next round, never fatal to the service."""
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            swept = await store.sweep()
            purged = await store.purge()
        except SessionError as exc:
            log.warning("maintenance failed, retrying in %ss: %s", interval_seconds, exc)
            continue
        except Exception:  # a bug must not end maintenance for the rest of the process's life
            log.exception("maintenance failed unexpectedly, retrying in %ss", interval_seconds)
            continue
        if swept.idled or swept.archived or purged.messages or purged.sessions or purged.changes:
            log.info("maintenance: %d idle, %d archived, purged %d sessions, %d messages and "
                     "%d change-feed entries", swept.idled, swept.archived, purged.sessions,
                     purged.messages, purged.changes)
