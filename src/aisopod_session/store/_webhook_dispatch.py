"""Delivering the change feed to webhooks (``store.deliver_webhooks``): one worker per webhook in
every replica that runs it, of which only the one holding the webhook's lease delivers (see
``_webhooks``); another replica's worker takes over when that lease expires, or at once when its
holder stops cleanly (it gives the lease up).

The holder reads the feed after the webhook's position, skips what the webhook's filters leave
out and POSTs each entry in commit order, one at a time, signed as the Standard Webhooks
specification describes (the ``standardwebhooks`` package): ``webhook-id`` is the same for every
try of an entry, by any replica (``<webhook>_<cursor>``), so a receiver can drop a repeat;
``webhook-timestamp`` is the try's, and so the signature. A try that does not answer 2xx in
``timeout_seconds`` is tried again after an exponential backoff, up to ``max_attempts``; then the
entry is logged ``failed`` and delivery goes on with the next one. An entry's outcome is logged,
and the position moved past it, in one transaction after the try: at least once, and an entry is
sent twice only after a failure (a holder that lost its lease between a try and its log).

Wake-ups come from the feed's watchers (a commit in this process, NOTIFY on PostgreSQL, the data
version on SQLite), so an entry is sent as soon as it commits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from aisopod_session import _time
from aisopod_session.errors import (
    CursorExpiredError,
    InvalidInputError,
    SessionError,
    StoreClosedError,
)
from aisopod_session.results import Change, Webhook, WebhookDelivery, WebhookDeliveryStatus
from aisopod_session.store import _changes, _runs, _webhooks
from aisopod_session.store._agent_async import WATCH_POLL_SECONDS, run_work
from aisopod_session.store._engine import Engine
from aisopod_session.store._wakeups import Watch

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("aisopod_session.webhooks")

LEASE_SECONDS = 30.0
"""A webhook's lease: renewed every third of it; a stopped holder is taken over after it."""
MIN_LEASE_SECONDS = 0.05
MAX_LEASE_SECONDS = 3600.0
PAGE = 200
"""Feed entries read at a time."""
PRUNE_EVERY_SECONDS = 60.0
"""How often a running dispatcher removes the log rows of entries the feed has pruned."""
STORE_PAUSE_SECONDS = (0.5, 30.0)
"""After a database failure, the pause before claiming again: the first, the longest."""
MAX_ERROR_CHARS = 300
MAX_ANSWER_BYTES = 64 * 1024
"""A receiver's answer is read up to this (then the connection is dropped, not reused)."""
USER_AGENT = "aisopod-session-webhooks/1"

after_answer: Callable[[str, str], None] | None = None
"""Test hook: called with (owner, cursor) after each try's answer and before its outcome is
logged (a test blocks one replica's thread here to make it lose its lease)."""

OnOutcome = Callable[[WebhookDelivery], None]


class _LeaseLostError(Exception):
    """This worker no longer holds the webhook's lease: it stops delivering."""


def checked_webhooks(value: Any) -> list[Webhook]:
    if isinstance(value, Webhook | str | bytes) or not isinstance(value, Iterable):
        raise InvalidInputError.for_field("webhooks", "expected a list of Webhook")
    hooks = list(value)
    names: set[str] = set()
    for index, hook in enumerate(hooks):
        if not isinstance(hook, Webhook):
            raise InvalidInputError.for_field(f"webhooks.{index}", "expected a Webhook")
        if hook.name in names:
            raise InvalidInputError.for_field(f"webhooks.{index}.name",
                                              f"{hook.name!r} is configured twice")
        names.add(hook.name)
    return hooks


def default_owner() -> str:
    """This process, and a random part (two dispatchers of one process are two workers)."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{secrets.token_hex(4)}"


class Dispatcher:
    """Delivers ``webhooks`` from the feed of ``engine`` until cancelled or the store closes."""

    def __init__(self, engine: Engine, webhooks: Any, owner: Any = None,
                 lease_seconds: Any = LEASE_SECONDS, on_outcome: OnOutcome | None = None
                 ) -> None:
        self.engine = engine
        self.webhooks = checked_webhooks(webhooks)
        self.owner = default_owner() if owner is None else _runs.owner(owner)
        self.lease = _runs.seconds(lease_seconds, "lease_seconds", low=MIN_LEASE_SECONDS,
                                   high=MAX_LEASE_SECONDS, low_included=True)
        if on_outcome is not None and not callable(on_outcome):
            raise InvalidInputError.for_field("on_outcome", "expected a callable or None")
        self.on_outcome = on_outcome

    def run_blocking(self) -> None:
        """:meth:`run` on an event loop of the calling thread (the blocking store's)."""
        asyncio.run(self.run())

    async def run(self) -> None:
        if not self.webhooks:
            return
        try:
            import httpx
            import standardwebhooks
        except ImportError as exc:  # pragma: no cover - both come with the service extra
            raise InvalidInputError.for_field(
                "webhooks", f"delivering webhooks needs httpx and standardwebhooks ({exc}): "
                            "pip install 'aisopod-session[service]'") from None
        async with httpx.AsyncClient(follow_redirects=False,
                                     headers={"User-Agent": USER_AGENT}) as client:
            workers = [asyncio.create_task(
                _Worker(self, hook, client, standardwebhooks.Webhook(
                    hook.secret.get_secret_value())).run(), name=f"webhook {hook.name}")
                for hook in self.webhooks]
            pruner = asyncio.create_task(self._prune())
            try:
                await asyncio.gather(*workers)
            finally:
                for task in (*workers, pruner):
                    task.cancel()
                await asyncio.gather(*workers, pruner, return_exceptions=True)

    async def _prune(self) -> None:
        while not self.engine.closed:
            await asyncio.sleep(PRUNE_EVERY_SECONDS)
            try:
                while await run_work(self.engine, _webhooks.prune_log()) == _webhooks.PRUNE_BATCH:
                    pass  # a batch at a time, until what the feed pruned is gone
            except StoreClosedError:
                return
            except SessionError as exc:
                log.warning("pruning the webhook delivery log failed: %s", exc)


class _Worker:
    """One webhook's worker in this replica."""

    def __init__(self, dispatcher: Dispatcher, hook: Webhook, client: httpx.AsyncClient,
                 signer: Any) -> None:
        self.engine = dispatcher.engine
        self.owner = dispatcher.owner
        self.lease = dispatcher.lease
        self.lease_us = round(dispatcher.lease * 1_000_000)
        self.on_outcome = dispatcher.on_outcome
        self.hook = hook
        self.client = client
        self.signer = signer
        self.poll = max(MIN_LEASE_SECONDS, min(1.0, dispatcher.lease / 4))
        """How often a worker without the lease looks whether it may take it."""
        self.fence = 0
        self.position = 0
        self.valid_until = 0.0
        """By this process's clock: past it, the lease may have expired (renewals failed)."""
        self.slept = False
        self.woken: Watch | None = None

    async def run(self) -> None:
        pause = STORE_PAUSE_SECONDS[0]
        with self.engine.feed.watching() as woken:
            self.woken = woken
            while not self.engine.closed:
                try:
                    started = time.monotonic()
                    got = await run_work(self.engine, _webhooks.claim(
                        self.hook.name, self.owner, self.lease_us))
                    if isinstance(got, _webhooks.Busy):
                        await self._sleep(min(max(got.seconds_left, 0.001), self.poll))
                        continue
                    self.fence, self.position = got.fence, got.position
                    self.valid_until = started + self.lease * 0.9
                    log.info("webhook %s: delivering from %s (worker %s)", self.hook.name,
                             _changes.cursor_of(got.position), self.owner)
                    await self._hold()
                    pause = STORE_PAUSE_SECONDS[0]
                except StoreClosedError:
                    return
                except SessionError as exc:
                    log.warning("webhook %s: %s; trying again in %.1fs", self.hook.name, exc,
                                pause)
                    await self._sleep(pause)
                    pause = min(pause * 2, STORE_PAUSE_SECONDS[1])
                except Exception:  # a bug must not end delivery for the life of the process
                    log.exception("webhook %s: delivery failed; trying again in %.1fs",
                                  self.hook.name, pause)
                    await self._sleep(pause)
                    pause = min(pause * 2, STORE_PAUSE_SECONDS[1])

    async def _hold(self) -> None:
        """Deliver while the lease is held; give it up when stopping."""
        renewing = asyncio.create_task(self._renew())
        delivering = asyncio.create_task(self._deliver_all())
        lost = False
        try:
            done, _ = await asyncio.wait((renewing, delivering),
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        except _LeaseLostError:
            lost = True
            log.info("webhook %s: worker %s lost the lease", self.hook.name, self.owner)
        finally:
            for task in (renewing, delivering):
                task.cancel()
            await asyncio.gather(renewing, delivering, return_exceptions=True)
            if not lost and not self.engine.closed:
                with suppress(SessionError):
                    await run_work(self.engine, _webhooks.release(
                        self.hook.name, self.fence, self.position))

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            while True:
                started = time.monotonic()
                try:
                    held = await run_work(self.engine, _webhooks.renew(
                        self.hook.name, self.fence, self.lease_us, self.position))
                except StoreClosedError:
                    raise
                except SessionError as exc:
                    if time.monotonic() >= self.valid_until:
                        raise _LeaseLostError from exc
                    await asyncio.sleep(min(self.lease / 10, 1.0))
                    continue
                if not held:
                    raise _LeaseLostError
                self.valid_until = started + self.lease * 0.9
                break

    async def _deliver_all(self) -> None:
        hook = self.hook
        agent = hook.agents[0] if len(hook.agents) == 1 else None
        cursor = _changes.cursor_of(self.position)
        while not self.engine.closed:
            self.slept = False
            try:
                page = await run_work(self.engine, _changes.changes(cursor, agent, PAGE))
            except CursorExpiredError:
                moved = await run_work(self.engine,
                                       _webhooks.skip_pruned(hook.name, self.fence))
                if moved is None:
                    raise _LeaseLostError from None
                log.warning("webhook %s: the feed pruned entries %s to %s before they were "
                            "delivered; going on after them", hook.name,
                            _changes.cursor_of(self.position), _changes.cursor_of(moved))
                self.position, cursor = moved, _changes.cursor_of(moved)
                continue
            for change in page:
                if hook.matches(change):
                    await self._deliver(change)
                self.position = _changes.position_of(change.cursor)
            cursor = page.next_cursor
            self.position = max(self.position, _changes.position_of(cursor))
            if len(page) < PAGE and not self.slept and not self.engine.closed:
                assert self.woken is not None
                await self.woken.wait_async(WATCH_POLL_SECONDS)

    async def _deliver(self, change: Change) -> None:
        """Try ``change`` until it is delivered or out of tries, logging each outcome."""
        body = payload(change)
        message_id = f"{self.hook.name}_{change.cursor}"
        row_id: int | None = None
        first_us = _time.to_us(_time.utc_now())
        attempts = 0
        failure: str | None = None  # why the last failed try failed: kept once delivered
        while True:
            if time.monotonic() >= self.valid_until:
                raise _LeaseLostError
            attempts += 1
            at_us = _time.to_us(_time.utc_now())
            started = time.monotonic()
            http_status, error, retry_after = await self._post(message_id, body)
            duration_us = round((time.monotonic() - started) * 1_000_000)
            if after_answer is not None:
                after_answer(self.owner, change.cursor)
            failure = error or failure
            if error is None:
                outcome = WebhookDeliveryStatus.DELIVERED
            elif attempts >= self.hook.max_attempts:
                outcome = WebhookDeliveryStatus.FAILED
            else:
                outcome = WebhookDeliveryStatus.RETRYING
            logged = await run_work(self.engine, _webhooks.log(
                self.hook.name, self.fence, row_id, _webhooks.Attempt(
                    change.cursor, change.kind, change.agent_id, change.session_id, outcome,
                    attempts, http_status, failure, self.owner, first_us, at_us, duration_us)))
            row_id = logged.delivery.id
            self._report(logged.delivery)
            if not logged.held:
                raise _LeaseLostError
            if outcome is not WebhookDeliveryStatus.RETRYING:
                if outcome is WebhookDeliveryStatus.FAILED:
                    log.warning("webhook %s: giving up on %s after %d tries: %s",
                                self.hook.name, change.cursor, attempts, error)
                return
            await self._sleep(self._backoff(attempts, retry_after))

    def _backoff(self, attempts: int, retry_after: float | None) -> float:
        hook = self.hook
        delay = hook.backoff_seconds * float(2 ** min(attempts - 1, 60))
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, hook.max_backoff_seconds)

    async def _post(self, message_id: str, body: bytes
                    ) -> tuple[int | None, str | None, float | None]:
        """One try: (the answer's status, why it failed or None, a Retry-After in seconds)."""
        import httpx

        now = _time.utc_now()
        headers = {
            "Content-Type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(math.floor(now.timestamp())),
            "webhook-signature": self.signer.sign(message_id, now, body),
        }
        hook = self.hook
        try:
            async with asyncio.timeout(hook.timeout_seconds):
                async with self.client.stream("POST", hook.url, content=body, headers=headers,
                                              timeout=hook.timeout_seconds) as response:
                    read = 0
                    async for chunk in response.aiter_raw():
                        read += len(chunk)
                        if read > MAX_ANSWER_BYTES:
                            break
        except TimeoutError:
            return None, f"no answer within {hook.timeout_seconds:g}s", None
        except httpx.HTTPError as exc:
            return None, self._error(exc), None
        code = response.status_code
        if 200 <= code < 300:
            return code, None, None
        error = f"HTTP {code}" + (" (redirects are not followed)" if 300 <= code < 400 else "")
        return code, error, _retry_after(response.headers.get("retry-after"))

    def _error(self, exc: Exception) -> str:
        """A short reason for the log, without the URL (which may carry a token)."""
        text = f"{type(exc).__name__}: {exc}".replace(self.hook.url, "<url>")
        return text[:MAX_ERROR_CHARS]

    def _report(self, delivery: WebhookDelivery) -> None:
        if self.on_outcome is None:
            return
        try:
            self.on_outcome(delivery)
        except Exception:
            log.exception("webhook %s: on_outcome failed", self.hook.name)

    async def _sleep(self, seconds: float) -> None:
        """Pause ``seconds``, or until the store closes."""
        self.slept = True
        assert self.woken is not None
        deadline = time.monotonic() + seconds
        while not self.engine.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await self.woken.wait_async(left)


def payload(change: Change) -> bytes:
    """The body POSTed for ``change``: ``{"type", "timestamp", "data"}`` as Standard Webhooks
    describes, ``data`` being the change as the feed gives it."""
    data = change.model_dump(mode="json")
    return json.dumps({"type": change.kind.value, "timestamp": data["at"], "data": data},
                      ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _retry_after(value: str | None) -> float | None:
    if value is None or not value.strip().isdigit():
        return None
    return float(min(int(value.strip()), 86_400))
