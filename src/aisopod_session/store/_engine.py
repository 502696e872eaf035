"""The engine interface both backends implement: reads, writes through group commit, and
what a failure inside a batch means.

A batch of write jobs runs in one transaction and commits once; should one job fail, the batch is
rolled back and runs again with each job inside its own savepoint. So concurrent writers share
one fsync, while each caller still gets all-or-nothing for its own job and its answer only after
the commit that made it durable.
"""

from __future__ import annotations

import asyncio
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal, TypeVar, cast

from aisopod_session.errors import SessionError, StoreClosedError, StoreUnavailableError
from aisopod_session.store._changes import write_recorded
from aisopod_session.store._group_commit import GroupCommitter, Job
from aisopod_session.store._search_index import index_recorded
from aisopod_session.store._tx import Dialect, LockKey, OneStatement, Pending, Tx
from aisopod_session.store._wakeups import FeedWatchers, RunEnds

T = TypeVar("T")

Durability = Literal["full", "normal"]
DURABILITIES: tuple[Durability, ...] = ("full", "normal")


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
    cursor_key: bytes
    """The database's key for signing list cursors, read once when the store is opened."""

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
        self.memo: dict[str, Any] = {}
        """Given to every transaction (``Tx.memo``): what operations may reuse between them."""
        self.run_ends = RunEnds()
        self.feed = FeedWatchers()

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

    def _announce_changes(self) -> None:  # noqa: B027 - a hook: most backends have nothing to do
        """Tell other processes that a commit wrote change-feed entries (after the commit, off
        the write's path); only this process's watchers are told where that is not possible."""

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

    def write(self, fn: Callable[[Tx], T | Pending[T]], lock_key: LockKey | None = None) -> T:
        """Run ``fn`` in a batch and answer its result once committed (a :class:`Pending`
        result finished: see ``_run_jobs``)."""
        self._check_open()
        return cast(T, self._committer.run(fn, lock_key))

    async def write_async(self, fn: Callable[[Tx], T | Pending[T]],
                          lock_key: LockKey | None = None) -> T:
        self._check_open()
        return cast(T, await self._committer.run_async(fn, lock_key))

    def close(self) -> None:
        """Refuse new work, finish the writes and reads already started, then disconnect."""
        with self._read_state:
            if self._closed:
                return
            self._closed = True
        self._committer.close()
        self.feed.close()  # a watcher ends once it has read what was committed
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

    def _run_batch_with_retries(self, jobs: list[Job]) -> None:
        error: SessionError
        delays: Iterator[float] | None = None  # started only once a batch fails
        while True:
            try:
                self._run_batch(jobs)
                return
            except _CommitLostError as lost:
                error = self._unavailable(lost.cause, maybe_committed=True)
                break
            except JobAbortedError as aborted:
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

    def _run_batch(self, jobs: list[Job]) -> None:
        # A savepoint per job costs two statements per job, and jobs rarely fail: a batch runs
        # without them first. If one of its jobs fails, the transaction is rolled back whole and
        # the batch runs again with each job in its own savepoint, so only that job fails. (One
        # job alone needs no savepoint: its transaction is its own.)
        if not self._run_jobs(jobs, isolated=False) and len(jobs) > 1:
            self._run_jobs(jobs, isolated=True)

    def _run_jobs(self, jobs: list[Job], *, isolated: bool) -> bool:
        """Run the jobs in one transaction and commit it; False if, not ``isolated``, a job
        failed (its ``error`` is set and the transaction was rolled back)."""
        for job in jobs:
            job.result = job.error = None
        committed = fed = False
        try:
            with self._write_tx() as tx:
                self._run_in(tx, jobs, isolated=isolated)
                if tx.to_index:
                    index_recorded(tx)
                fed = bool(tx.changes)
                if fed:
                    write_recorded(tx, tx.changes)
                committed = True  # leaving the block commits
        except JobFailedError:
            return False
        except CommitRefusedError as refused:
            raise refused.cause from None
        except Exception as exc:
            if committed:
                raise _CommitLostError(exc) from exc
            raise
        if fed:
            self.feed.changed()
            self._announce_changes()
        return True

    def _run_in(self, tx: Tx, jobs: list[Job], *, isolated: bool) -> None:
        """Run the jobs in ``tx``: each in a savepoint of its own if ``isolated``, else the
        first failure rolls the batch back (JobFailedError)."""
        pending: list[tuple[Job, Pending[Any], int]] = []  # and where its feed entries go
        for job in jobs:
            if isolated and tx.to_index:
                # Written outside the next job's savepoint: a job that fails takes only its
                # own entries with it (entries are written in chunks as they are recorded).
                index_recorded(tx)
            recorded, to_index = len(tx.changes), len(tx.to_index)
            if isolated:
                tx.send("SAVEPOINT job")
            try:
                result = job.fn(tx)
                if type(result) is Pending:
                    if isolated:  # its answers now: a failure is its savepoint's
                        result = result.finish(True)
                    else:  # with the other jobs' answers, in one round trip
                        pending.append((job, result, recorded))
                job.result = result
                tx.answer_sent()
            except Exception as exc:
                self._fail_job(job, exc, isolated)
                tx.settle()
                tx.send("ROLLBACK TO SAVEPOINT job")
                # the job's feed and index entries went with its changes
                del tx.changes[recorded:], tx.to_index[to_index:]
            except BaseException as exc:
                raise JobAbortedError(job, exc) from exc
            if isolated:
                tx.send("RELEASE SAVEPOINT job")
        moved = 0  # entries put back before later jobs' so far
        for job, waiting, slot in pending:
            before = len(tx.changes)
            try:
                job.result = waiting.finish(job is jobs[-1])
            except Exception as exc:
                self._fail_job(job, exc, isolated)  # raises: not isolated
            except BaseException as exc:
                raise JobAbortedError(job, exc) from exc
            # Its statements ran in its turn: so go its feed entries, before later jobs'.
            entries = tx.changes[before:]
            del tx.changes[before:]
            tx.changes[slot + moved:slot + moved] = entries
            moved += len(entries)

    def _fail_job(self, job: Job, exc: Exception, isolated: bool) -> None:
        """A job raised ``exc``: if it is the job's own failure, record it, and without
        savepoints roll the batch back (JobFailedError); else raise ``exc``, which fails the
        batch."""
        if not (isinstance(exc, SessionError) or self.classify(exc) is Failure.JOB):
            raise exc
        job.error = exc
        if not isolated:
            raise JobFailedError from exc


class JobFailedError(Exception):
    """A job of a batch run without savepoints failed: roll the whole batch back."""


class JobAbortedError(Exception):
    """A job raised a BaseException that is not an Exception: roll the batch back."""

    def __init__(self, job: Job, cause: BaseException) -> None:
        super().__init__(repr(cause))
        self.job = job
        self.cause = cause


class _CommitLostError(Exception):
    """The connection failed during COMMIT: the outcome is unknown, so nothing is retried."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause
