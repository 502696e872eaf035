"""Group commit: concurrent writers share one transaction and one commit.

Every write is a *job*: a function that runs inside a transaction and returns a value. Jobs that
arrive while another batch is committing wait in a queue; the next batch runs all of them in one
transaction and commits once (the engine decides what a failure inside a batch means).

Nobody owns a writer thread while the store is quiet: the first blocking caller to find the queue
idle leads (runs batches on its own thread) and hands leadership to a waiting caller or to a
background thread when its own job is done. Asyncio callers never block the loop: they queue
their job and await a future that the leader resolves.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Any, TypeVar

from aisopod_session.errors import StoreClosedError, StoreUnavailableError
from aisopod_session.store._tx import LockKey, Tx

T = TypeVar("T")

MAX_BATCH_JOBS = 512
"""Most jobs in one batch (one transaction)."""


class Job:
    __slots__ = (
        "abandoned", "error", "event", "fn", "future", "lock_key", "loop", "promoted", "result",
        "settled",
    )

    def __init__(
        self,
        fn: Callable[[Tx], Any],
        lock_key: LockKey | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[None] | None = None,
    ) -> None:
        self.fn = fn
        self.lock_key = lock_key
        self.loop = loop
        self.future = future
        # Set by GroupCommitter.run for a blocking caller that waits; a caller that leads runs
        # its own job and needs none.
        self.event: threading.Event | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.settled = False
        self.promoted = False
        self.abandoned = False  # its thread stopped waiting: it runs, but never leads

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


def _settle(batch: list[Job]) -> None:
    """Wake the callers of a finished batch: a blocking caller's event, and each asyncio loop
    once for all of its jobs (a wake-up of a loop from another thread is a system call; a batch
    of 64 writers on one loop needs one, not 64)."""
    waiting: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for job in batch:
        job.settled = True
        if job.event is not None:
            job.event.set()
        elif job.loop is not None and job.future is not None:
            waiting.setdefault(job.loop, []).append(job.future)
    for loop, futures in waiting.items():
        # RuntimeError: the caller's loop is closed; nobody is waiting any more.
        with suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve, futures)


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():  # cancelled: its caller stopped waiting
            future.set_result(None)


# How long a background leader started by an asyncio caller waits for that caller's event loop
# to finish its turn (see ``GroupCommitter.run_async``) if the loop never gets there.
GATHER_WAIT_SECONDS = 0.002


class GroupCommitter:
    """Queues write jobs and runs them in batches, one transaction (one commit) per batch."""

    def __init__(self, run_batch: Callable[[list[Job]], None], max_batch: int = MAX_BATCH_JOBS):
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._mutex = threading.Lock()
        self._idle = threading.Condition(self._mutex)
        self._queue: deque[Job] = deque()
        self._leading = False
        self._closing = False
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aisopod-commit")

    def _enqueue(self, job: Job) -> bool:
        """With the mutex held: queue ``job``; True if its caller must start leading."""
        if self._closing:
            raise StoreClosedError("the session store is closed")
        self._queue.append(job)
        lead = not self._leading
        self._leading = True
        return lead

    def run(self, fn: Callable[[Tx], T], lock_key: LockKey | None = None) -> T:
        job = Job(fn, lock_key)
        with self._mutex:
            lead = self._enqueue(job)
            if not lead:  # before the mutex is released: a leader may settle it at once
                job.event = threading.Event()
        if not lead:
            self._wait(job)
            lead = not job.settled  # promoted: it is this thread's turn to lead
        if lead:
            self._serve(job)
        result: T = job.outcome()
        return result

    def _wait(self, job: Job) -> None:
        assert job.event is not None
        try:
            job.event.wait()
        except BaseException:
            # Interrupted (KeyboardInterrupt): the job still runs, but this thread must not be
            # the one that leads next, or every other caller would wait forever.
            with self._mutex:
                job.abandoned = True
                if job.promoted and not job.settled:
                    self._hand_over()
            raise

    async def run_async(self, fn: Callable[[Tx], T], lock_key: LockKey | None = None) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        job = Job(fn, lock_key, loop, future)
        with self._mutex:
            start = self._enqueue(job)
        if start:
            # The other tasks this turn of the event loop wakes (e.g. after the last batch was
            # settled) are about to queue their writes: the leader starts once the turn is over,
            # so they all share one batch and one commit.
            turn_over = threading.Event()
            self._background.submit(self._serve_after, turn_over)
            loop.call_soon(turn_over.set)
        await future
        result: T = job.outcome()
        return result

    def _serve_after(self, turn_over: threading.Event) -> None:
        # Bounded: a loop stopped before its next turn must not leave the queue unserved.
        turn_over.wait(GATHER_WAIT_SECONDS)
        self._serve(None)

    def _serve(self, own: Job | None) -> None:
        """Run batches until ``own`` is settled (a background leader: until the queue is empty)."""
        try:
            while True:
                with self._mutex:
                    if not self._queue or (own is not None and own.settled):
                        self._step_down()
                        return
                    count = min(len(self._queue), self._max_batch)
                    batch = [self._queue.popleft() for _ in range(count)]
                self._execute(_in_lock_order(batch))
        except BaseException:  # e.g. KeyboardInterrupt on this thread: leave nobody stranded
            with self._mutex:
                if self._leading:
                    self._step_down()
            raise

    def _execute(self, batch: list[Job]) -> None:
        try:
            self._run_batch(batch)
        except BaseException as exc:  # never leave a caller waiting forever
            error = exc if isinstance(exc, Exception) else interrupted(exc)
            for job in batch:
                if job.error is None:
                    job.error = error
            if not isinstance(exc, Exception):
                raise
        finally:
            _settle(batch)

    def _step_down(self) -> None:
        """With the mutex held: stop leading, passing leadership on if jobs are waiting."""
        if self._queue:
            self._hand_over()
        else:
            self._leading = False
            self._idle.notify_all()

    def _hand_over(self) -> None:
        """Called with the mutex held and the queue not empty: pass leadership on."""
        for job in self._queue:
            if job.event is not None and not job.abandoned:
                job.promoted = True
                job.event.set()
                return
        self._background.submit(self._serve, None)

    def close(self) -> None:
        """Refuse new jobs, let the queued ones finish, then stop the background thread."""
        with self._mutex:
            self._closing = True
            while self._leading:
                self._idle.wait()
        self._background.shutdown(wait=True)


def _in_lock_order(batch: list[Job]) -> list[Job]:
    """The batch sorted by the jobs' ``lock_key``, if every job has one (a stable sort: jobs on
    one key keep their order).

    A write that locks the rows of one key (a session) names it in ``lock_key``. Batches of every
    process then take their locks in the same order, so two processes' batches cannot deadlock
    on each other's sessions.
    """
    keys = [job.lock_key for job in batch]
    if len(batch) < 2 or any(key is None for key in keys):
        return batch
    order = sorted(range(len(batch)), key=lambda index: keys[index] or ())
    return [batch[index] for index in order]


def interrupted(exc: BaseException) -> StoreUnavailableError:
    return StoreUnavailableError(
        f"the write was interrupted ({type(exc).__name__}) and may or may not have been committed",
        maybe_committed=True,
    )


