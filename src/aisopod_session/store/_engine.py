"""What both backends share: the transaction wrapper, group commit, and the engine interface.

Every write is a *job*: a function that runs inside a transaction and returns a value. Jobs that
arrive while another batch is committing wait in a queue; the next batch runs all of them in one
transaction, each inside its own savepoint, and commits once. So concurrent writers share one
fsync, while each caller still gets all-or-nothing for its own job and its answer only after the
commit that made it durable.

Nobody owns a writer thread while the store is quiet: the first blocking caller to find the queue
idle leads (runs batches on its own thread) and hands leadership to a waiting caller or to a
background thread when its own job is done. Asyncio callers never block the loop: they queue
their job and await a future that the leader resolves.
"""

from __future__ import annotations

import asyncio
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal, Protocol, TypeVar

from aisopod_session.errors import SessionError, StoreClosedError, StoreUnavailableError

T = TypeVar("T")

Durability = Literal["full", "normal"]
DURABILITIES: tuple[Durability, ...] = ("full", "normal")

MAX_BATCH_JOBS = 512


class Cursor(Protocol):
    """The part of a DB-API cursor the store uses (sqlite3 and psycopg both fit)."""

    rowcount: int

    def execute(self, sql: Any, params: Any = ..., /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Dialect:
    """The few differences between the SQL the backends accept."""

    def __init__(self, name: str, placeholder: str, for_update: str, unlimited: str) -> None:
        self.name = name
        self.for_update = for_update
        self.unlimited = unlimited  # a LIMIT that means "no limit" (needed before OFFSET)
        self._placeholder = placeholder
        self._translated: dict[str, str] = {}

    def sql(self, text: str) -> str:
        """Statements are written with ``?`` placeholders; psycopg wants ``%s``."""
        translated = self._translated.get(text)
        if translated is None:
            translated = text if self._placeholder == "?" else text.replace("?", self._placeholder)
            self._translated[text] = translated
        return translated


class Tx:
    """One connection inside one transaction (or one read), with the dialect applied."""

    __slots__ = ("_cursor", "_sql", "dialect")

    def __init__(self, cursor: Cursor, dialect: Dialect) -> None:
        self._cursor = cursor
        self._sql = dialect.sql
        self.dialect = dialect

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        self._cursor.execute(self._sql(sql), params)
        return self._cursor.fetchall()

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self._cursor.execute(self._sql(sql), params)
        return self._cursor.fetchone()

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        self._cursor.execute(self._sql(sql), params)
        return self._cursor.rowcount


class Failure(Enum):
    """What an exception raised inside a batch means for the batch."""

    JOB = "job"  # the job's own error: roll back its savepoint, the rest of the batch goes on
    RETRY = "retry"  # the transaction is lost but nothing was committed: run the batch again
    FATAL = "fatal"  # the transaction is lost: every job in it fails


class _Job:
    __slots__ = ("error", "event", "fn", "future", "loop", "promoted", "result", "settled")

    def __init__(
        self,
        fn: Callable[[Tx], Any],
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[None] | None = None,
    ) -> None:
        self.fn = fn
        self.loop = loop
        self.future = future
        self.event: threading.Event | None = None if loop is not None else threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.settled = False
        self.promoted = False

    def settle(self) -> None:
        self.settled = True
        if self.event is not None:
            self.event.set()
        elif self.loop is not None and self.future is not None:
            future = self.future
            try:
                self.loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # the caller's loop is closed; nobody is waiting any more
                pass

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class GroupCommitter:
    """Queues write jobs and runs them in batches, one transaction (one commit) per batch."""

    def __init__(self, run_batch: Callable[[list[_Job]], None], max_batch: int = MAX_BATCH_JOBS):
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._mutex = threading.Lock()
        self._queue: deque[_Job] = deque()
        self._leading = False
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aisopod-commit")

    def run(self, fn: Callable[[Tx], T]) -> T:
        job = _Job(fn)
        with self._mutex:
            self._queue.append(job)
            lead = not self._leading
            self._leading = True
        if lead:
            self._serve(job)
        else:
            assert job.event is not None
            job.event.wait()
            if not job.settled:  # promoted: it is this thread's turn to lead
                self._serve(job)
        result: T = job.outcome()
        return result

    async def run_async(self, fn: Callable[[Tx], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        job = _Job(fn, loop, future)
        with self._mutex:
            self._queue.append(job)
            start = not self._leading
            self._leading = True
        if start:
            self._background.submit(self._serve, None)
        await future
        result: T = job.outcome()
        return result

    def _serve(self, own: _Job | None) -> None:
        """Run batches until ``own`` is settled (a background leader: until the queue is empty)."""
        while True:
            with self._mutex:
                if not self._queue:
                    self._leading = False
                    return
                if own is not None and own.settled:
                    self._hand_over()
                    return
                count = min(len(self._queue), self._max_batch)
                batch = [self._queue.popleft() for _ in range(count)]
            try:
                self._run_batch(batch)
            except BaseException as exc:  # never leave a caller waiting forever
                for job in batch:
                    if job.error is None:
                        job.error = exc
            for job in batch:
                job.settle()

    def _hand_over(self) -> None:
        """Called with the mutex held and the queue not empty: pass leadership on."""
        for job in self._queue:
            if job.event is not None:
                job.promoted = True
                job.event.set()
                return
        self._background.submit(self._serve, None)

    def close(self) -> None:
        self._background.shutdown(wait=True)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    first_delay: float = 0.02
    max_delay: float = 1.0
    window: float = 15.0
    """Seconds during which a lost connection is retried (e.g. a database restart)."""

    def delays(self) -> Iterator[float]:
        delay = self.first_delay
        deadline = time.monotonic() + self.window
        for _ in range(self.attempts - 1):
            if time.monotonic() >= deadline:
                return
            yield delay
            delay = min(delay * 2, self.max_delay)


class Engine(ABC):
    """A backend: reads on the caller's thread, writes through the group committer."""

    dialect: Dialect
    durability: Durability

    def __init__(self, read_threads: int) -> None:
        self._committer = GroupCommitter(self._run_batch_with_retries)
        self._readers = ThreadPoolExecutor(
            max_workers=read_threads, thread_name_prefix="aisopod-read"
        )
        self._closed = False
        self.retry = RetryPolicy()

    # --- what a backend provides ----------------------------------------------------------

    @abstractmethod
    def _read_tx(self) -> AbstractContextManager[Tx]:
        """A connection for one consistent read (a transaction or a snapshot)."""

    @abstractmethod
    def _write_tx(self) -> AbstractContextManager[Tx]:
        """The connection for one batch, inside an open write transaction.

        Leaving the context without an error commits; with an error, rolls back.
        """

    @abstractmethod
    def classify(self, exc: BaseException) -> Failure:
        """What an exception raised by the driver means for the batch it happened in."""

    @abstractmethod
    def _close_connections(self) -> None: ...

    @abstractmethod
    def describe(self) -> str:
        """Where the data lives, for messages (no password)."""

    # --- running work ---------------------------------------------------------------------

    def read(self, fn: Callable[[Tx], T]) -> T:
        self._check_open()
        for delay in (*self.retry.delays(), None):
            try:
                with self._read_tx() as tx:
                    return fn(tx)
            except SessionError:
                raise
            except Exception as exc:
                if self.classify(exc) is not Failure.RETRY or delay is None:
                    raise self._unavailable(exc) from exc
                time.sleep(delay)
        raise AssertionError("unreachable")

    async def read_async(self, fn: Callable[[Tx], T]) -> T:
        self._check_open()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self.read, fn)

    def write(self, fn: Callable[[Tx], T]) -> T:
        self._check_open()
        return self._committer.run(fn)

    async def write_async(self, fn: Callable[[Tx], T]) -> T:
        self._check_open()
        return await self._committer.run_async(fn)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._committer.close()
        self._readers.shutdown(wait=True)
        self._close_connections()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("the session store is closed")

    def _unavailable(self, exc: BaseException, *, maybe_committed: bool = False) -> SessionError:
        if isinstance(exc, SessionError):
            return exc
        return StoreUnavailableError(
            f"{self.describe()}: {type(exc).__name__}: {exc}".strip(),
            maybe_committed=maybe_committed,
        )

    # --- batches --------------------------------------------------------------------------

    def _run_batch_with_retries(self, jobs: list[_Job]) -> None:
        for delay in (*self.retry.delays(), None):
            try:
                self._run_batch(jobs)
                return
            except _CommitLost as lost:
                error = self._unavailable(lost.cause, maybe_committed=True)
                break
            except Exception as exc:
                failure = self.classify(exc)
                if failure is Failure.RETRY and delay is not None:
                    time.sleep(delay)
                    continue
                error = self._unavailable(exc)
                break
        for job in jobs:
            job.error = error

    def _run_batch(self, jobs: list[_Job]) -> None:
        for job in jobs:
            job.result = job.error = None
        isolated = len(jobs) > 1  # one job alone needs no savepoint: its transaction is its own
        committed = False
        try:
            with self._write_tx() as tx:
                for job in jobs:
                    if isolated:
                        tx.run("SAVEPOINT job")
                    try:
                        job.result = job.fn(tx)
                    except Exception as exc:
                        if not isinstance(exc, SessionError) and self.classify(exc) is not Failure.JOB:
                            raise
                        job.error = exc
                        if not isolated:
                            raise _JobFailed from exc
                        tx.run("ROLLBACK TO SAVEPOINT job")
                    if isolated:
                        tx.run("RELEASE SAVEPOINT job")
                committed = True  # leaving the block commits
        except _JobFailed:
            return
        except Exception as exc:
            if committed:
                raise _CommitLost(exc) from exc
            raise


class _JobFailed(Exception):
    """The only job of a batch failed: roll back and report its own error."""


class _CommitLost(Exception):
    """The connection failed during COMMIT: the outcome is unknown, so nothing is retried."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause
