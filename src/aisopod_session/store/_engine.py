"""What both backends share: the transaction wrapper, group commit, and the engine interface.

Every write is a *job*: a function that runs inside a transaction and returns a value. Jobs that
arrive while another batch is committing wait in a queue; the next batch runs all of them in one
transaction and commits once (should one of them fail, the batch is rolled back and runs again
with each job inside its own savepoint). So concurrent writers share one fsync, while each caller
still gets all-or-nothing for its own job and its answer only after the commit that made it
durable.

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
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, Literal, Protocol, TypeVar, cast

from aisopod_session.errors import SessionError, StoreClosedError, StoreUnavailableError

T = TypeVar("T")

Durability = Literal["full", "normal"]
LockKey = tuple[str, ...]
"""What a write locks, compared to order a batch (the parts of a session key)."""
DURABILITIES: tuple[Durability, ...] = ("full", "normal")

MAX_BATCH_JOBS = 512


class Cursor(Protocol):
    """The part of a DB-API cursor the store uses (sqlite3 and psycopg both fit)."""

    @property
    def rowcount(self) -> int: ...

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


class OneStatement(Generic[T]):
    """A read that needs one SQL statement, so no transaction around it.

    A single statement reads one consistent snapshot on every backend (SQLite's autocommit
    statement, PostgreSQL's per-statement snapshot), so BEGIN and COMMIT would only add two round
    trips to the hottest reads. When ``run`` returns None and there is a ``fallback`` (a read of
    several statements), the fallback runs inside a read transaction, as any other read: e.g. a
    history read whose one statement found nothing, where telling a missing session from an
    empty history takes a second statement that must see the same snapshot.

    Called directly (inside another read's transaction) it runs ``run``, then the fallback
    if that found nothing: the same answer, in the caller's snapshot.
    """

    __slots__ = ("fallback", "run")

    def __init__(
        self, run: Callable[[Tx], T | None], fallback: Callable[[Tx], T] | None = None
    ) -> None:
        self.run = run
        self.fallback = fallback

    def __call__(self, tx: Tx) -> T | None:
        found = self.run(tx)
        if found is None and self.fallback is not None:
            return self.fallback(tx)
        return found


class Failure(Enum):
    """What an exception raised inside a batch means for the batch."""

    JOB = "job"  # the job's own error: roll back its savepoint, the rest of the batch goes on
    RETRY = "retry"  # the transaction is lost but nothing was committed: run the batch again
    FATAL = "fatal"  # the transaction is lost; a batch of several jobs is run again one job at
    # a time, so that only the job that caused it fails


class CommitRefusedError(Exception):
    """Raised by a backend's ``_write_tx`` when COMMIT failed and the transaction is known to be
    rolled back: nothing was committed, so the batch may be handled like any failed batch."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


# SQLSTATEs of a transaction that lost a lock conflict (deadlock, serialization failure).
_CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})


class _Job:
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


def _settle(batch: list[_Job]) -> None:
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

    def __init__(self, run_batch: Callable[[list[_Job]], None], max_batch: int = MAX_BATCH_JOBS):
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._mutex = threading.Lock()
        self._idle = threading.Condition(self._mutex)
        self._queue: deque[_Job] = deque()
        self._leading = False
        self._closing = False
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aisopod-commit")

    def _enqueue(self, job: _Job) -> bool:
        """With the mutex held: queue ``job``; True if its caller must start leading."""
        if self._closing:
            raise StoreClosedError("the session store is closed")
        self._queue.append(job)
        lead = not self._leading
        self._leading = True
        return lead

    def run(self, fn: Callable[[Tx], T], lock_key: LockKey | None = None) -> T:
        job = _Job(fn, lock_key)
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

    def _wait(self, job: _Job) -> None:
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
        job = _Job(fn, lock_key, loop, future)
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

    def _serve(self, own: _Job | None) -> None:
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

    def _execute(self, batch: list[_Job]) -> None:
        try:
            self._run_batch(batch)
        except BaseException as exc:  # never leave a caller waiting forever
            error = exc if isinstance(exc, Exception) else _interrupted(exc)
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


def _in_lock_order(batch: list[_Job]) -> list[_Job]:
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


def _interrupted(exc: BaseException) -> StoreUnavailableError:
    return StoreUnavailableError(
        f"the write was interrupted ({type(exc).__name__}) and may or may not have been committed",
        maybe_committed=True,
    )


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
        self._reading = 0  # reads in progress; close() waits for them
        # A plain lock under the condition: entered twice per read, so its C context manager
        # (not Condition's Python one) is what the hot path uses.
        self._read_lock = threading.Lock()
        self._read_state = threading.Condition(self._read_lock)
        self.retry = RetryPolicy()

    # --- what a backend provides ----------------------------------------------------------

    @abstractmethod
    def _read_tx(self) -> AbstractContextManager[Tx]:
        """A connection for one consistent read (a transaction or a snapshot)."""

    def _read_statement(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn``, which runs one statement, without a transaction around it.

        Backends override this; running it in a read transaction is always correct.
        """
        with self._read_tx() as tx:
            return fn(tx)

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
        with self._read_lock:
            if self._closed:
                raise StoreClosedError("the session store is closed")
            self._reading += 1
        try:
            if type(fn) is OneStatement:
                statement: OneStatement[T] = fn
                found = self._read(statement.run, one_statement=True)
                if found is None and statement.fallback is not None:
                    return self._read(statement.fallback)
                # None here is what the read itself returned (get_or_create: "not found").
                return cast(T, found)
            return self._read(fn)
        finally:
            with self._read_lock:
                self._reading -= 1
                if self._closed and not self._reading:
                    self._read_state.notify_all()

    def _read(self, fn: Callable[[Tx], T], *, one_statement: bool = False) -> T:
        delays: Iterator[float] | None = None  # started only once the database fails
        while True:
            try:
                if one_statement:
                    return self._read_statement(fn)
                with self._read_tx() as tx:
                    return fn(tx)
            except SessionError:
                raise
            except Exception as exc:
                if self.classify(exc) is not Failure.RETRY:
                    raise self._unavailable(exc) from exc
                delays = delays or self.retry.delays()
                delay = next(delays, None)
                if delay is None:
                    raise self._unavailable(exc) from exc
                time.sleep(delay)

    async def read_async(self, fn: Callable[[Tx], T]) -> T:
        self._check_open()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._readers, self.read, fn)
        except RuntimeError:  # "cannot schedule new futures after shutdown"
            self._check_open()
            raise

    def write(self, fn: Callable[[Tx], T], lock_key: LockKey | None = None) -> T:
        self._check_open()
        return self._committer.run(fn, lock_key)

    async def write_async(self, fn: Callable[[Tx], T], lock_key: LockKey | None = None) -> T:
        self._check_open()
        return await self._committer.run_async(fn, lock_key)

    def close(self) -> None:
        """Refuse new work, finish the writes and reads already started, then disconnect."""
        with self._read_state:
            if self._closed:
                return
            self._closed = True
        self._committer.close()
        with self._read_state:
            while self._reading:
                self._read_state.wait()
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

    def _is_conflict(self, exc: BaseException) -> bool:
        """Whether the batch lost a lock conflict with another transaction (e.g. a deadlock)."""
        return getattr(exc, "sqlstate", None) in _CONFLICT_SQLSTATES

    def _run_batch_with_retries(self, jobs: list[_Job]) -> None:
        error: SessionError
        delays: Iterator[float] | None = None  # started only once a batch fails
        while True:
            try:
                self._run_batch(jobs)
                return
            except _CommitLostError as lost:
                error = self._unavailable(lost.cause, maybe_committed=True)
                break
            except _JobAbortedError as aborted:
                # That job raised something that is not an Exception: it alone fails with it.
                # The others were rolled back along with it, so they run again.
                others = [job for job in jobs if job is not aborted.job]
                if others:
                    self._run_batch_with_retries(others)
                aborted.job.result, aborted.job.error = None, aborted.cause
                return
            except Exception as exc:
                failure = self.classify(exc)
                if len(jobs) > 1 and (failure is not Failure.RETRY or self._is_conflict(exc)):
                    # The whole batch was rolled back for a reason one of its jobs may have
                    # caused (an error it cannot recover from, a refused commit, a deadlock
                    # with another process): run them one by one, so that only that job fails
                    # and lock conflicts between the jobs' rows cannot recur.
                    for job in jobs:
                        self._run_batch_with_retries([job])
                    return
                if failure is Failure.RETRY:
                    # All the delays up front, as a whole batch's retries always had.
                    delays = delays or iter(tuple(self.retry.delays()))
                    delay = next(delays, None)
                    if delay is not None:
                        time.sleep(delay)
                        continue
                error = self._unavailable(exc)
                break
        for job in jobs:
            job.result, job.error = None, error

    def _run_batch(self, jobs: list[_Job]) -> None:
        # A savepoint per job costs two statements per job, and jobs rarely fail: a batch runs
        # without them first. If one of its jobs fails, the transaction is rolled back whole and
        # the batch runs again with each job in its own savepoint, so only that job fails. (One
        # job alone needs no savepoint: its transaction is its own.)
        if not self._run_jobs(jobs, isolated=False) and len(jobs) > 1:
            self._run_jobs(jobs, isolated=True)

    def _run_jobs(self, jobs: list[_Job], *, isolated: bool) -> bool:
        """Run the jobs in one transaction and commit it; False if, not ``isolated``, a job
        failed (its ``error`` is set and the transaction was rolled back)."""
        for job in jobs:
            job.result = job.error = None
        committed = False
        try:
            with self._write_tx() as tx:
                for job in jobs:
                    if isolated:
                        tx.run("SAVEPOINT job")
                    try:
                        job.result = job.fn(tx)
                    except Exception as exc:
                        own = isinstance(exc, SessionError) or self.classify(exc) is Failure.JOB
                        if not own:
                            raise
                        job.error = exc
                        if not isolated:
                            raise _JobFailedError from exc
                        tx.run("ROLLBACK TO SAVEPOINT job")
                    except BaseException as exc:
                        raise _JobAbortedError(job, exc) from exc
                    if isolated:
                        tx.run("RELEASE SAVEPOINT job")
                committed = True  # leaving the block commits
        except _JobFailedError:
            return False
        except CommitRefusedError as refused:
            raise refused.cause from None
        except Exception as exc:
            if committed:
                raise _CommitLostError(exc) from exc
            raise
        return True


class _JobFailedError(Exception):
    """A job of a batch run without savepoints failed: roll the whole batch back."""


class _JobAbortedError(Exception):
    """A job raised a BaseException that is not an Exception: roll the batch back."""

    def __init__(self, job: _Job, cause: BaseException) -> None:
        super().__init__(repr(cause))
        self.job = job
        self.cause = cause


class _CommitLostError(Exception):
    """The connection failed during COMMIT: the outcome is unknown, so nothing is retried."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause
