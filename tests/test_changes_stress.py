"""The change feed under stress, across processes, on SQLite and PostgreSQL: the gap test.

4 writer processes x 8 threads append messages to, reset and delete sessions (every agent's
shared keys, which all threads write, and each thread's own keys; three agents) for a few
seconds. Meanwhile, in this process, from a cursor taken before they start:

* an admin consumer pages with ``changes(since=next_cursor)``,
* another follows ``watch(since=...)`` (the blocking generator, on a thread),
* one consumer per agent pages with ``for_agent(a).changes(...)``.

The workers (``tests/_changes_worker.py``) report every write that returned: the session a
``get_or_create`` gave, the message ids of an append, the new session of a reset, whether a
delete deleted. Once they stop and the consumers have read up to ``latest_cursor()``:

* positions are exactly the integers after the start cursor up to the latest (none missing,
  none twice: the feed has no gaps), and both admin consumers read the identical sequence;
* replaying the feed per key accounts for every entry and every reported write: each append is
  one ``messages.appended`` entry with exactly its message ids (each id in exactly one entry),
  for the key's live session at that point of the feed; each reset is a ``session.reset`` of the
  live session (if there was one) right before the ``session.created`` of the new one; each
  delete that deleted is one run of ``session.deleted`` entries, every generation of the key;
* per session, entries are in commit order: ``session.created`` first, ``session.deleted`` last,
  appended message ids increasing, seq ranges contiguous (``first_seq`` = previous ``last_seq``
  + 1);
* each agent consumer read exactly the admin feed filtered to its agent;
* the database agrees with the replay: each key's live session, each remaining session's
  history.

It runs again with the late-commit case injected: the workers pause
``_changes.before_commit_seconds`` between taking positions and committing.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import IO, Any

import pytest

from aisopod_session import (
    AgentSessions,
    Change,
    ChangeKind,
    ChangePage,
    SessionKey,
    SessionNotFoundError,
    SessionStore,
    StoredMessage,
)

ROOT = Path(__file__).resolve().parent.parent
LINE_SECONDS = 60  # only guards against a hang
EXIT_SECONDS = 90

PROCESSES, THREADS = 4, 8
AGENTS = ["alpha", "beta", "gamma"]
SHARED, OWN = 3, 2  # shared keys per agent; own keys per thread
STRESS_SECONDS = 3.0
LATE_COMMIT_SECONDS = 0.002
PAGE = 37  # the admin pager's page size: pages end mid-transaction
AGENT_PAGE = 50
SETUP_MESSAGES = 2

Backend = tuple[str, dict[str, Any]]
KeyName = tuple[str, str]  # (agent, peer)
Signature = tuple[Any, ...]


def key(agent: str, peer: str) -> SessionKey:
    return SessionKey(agent, "cli", "acct", "dm", peer)


def position(cursor: str) -> int:
    return int(cursor, 16)


def signature(change: Change) -> Signature:
    """What two reads of one entry must agree on (``key`` is read from the session when the feed
    is read: it becomes None once the session is deleted)."""
    return (change.cursor, change.kind, change.at, change.agent_id, change.session_id,
            json.dumps(change.data, sort_keys=True))


# --- the writer processes -------------------------------------------------------------------


class Writer:
    """A ``tests._changes_worker`` subprocess; its stdout JSON lines are read on a thread."""

    def __init__(self, tmp_path: Path, proc: int, backend: Backend, late: bool) -> None:
        url, options = backend
        self.name = f"writer{proc}"
        self._stderr_path = tmp_path / f"{self.name}.stderr"
        self._stderr: IO[str] = self._stderr_path.open("w")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
        args = {"url": url, "options": options, "proc": proc, "threads": THREADS,
                "seconds": STRESS_SECONDS, "agents": AGENTS, "shared": SHARED, "own": OWN,
                "before_commit_seconds": LATE_COMMIT_SECONDS if late else 0.0}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests._changes_worker", json.dumps(args)],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._stderr, text=True)
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(json.loads(line))
        self._lines.put(None)

    def stderr(self) -> str:
        self._stderr.flush()
        return self._stderr_path.read_text()

    def ready(self) -> None:
        try:
            item = self._lines.get(timeout=LINE_SECONDS)
        except queue.Empty:
            pytest.fail(f"{self.name}: not ready in {LINE_SECONDS} s")
        assert item == {"ready": True}, f"{self.name}: {item} {self.stderr()}"

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self) -> list[dict[str, Any]]:
        """Wait for the worker to exit cleanly; every line it wrote after ``ready``."""
        try:
            self.proc.wait(timeout=STRESS_SECONDS + EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} hung: {self.stderr()}")
        self._reader.join(timeout=LINE_SECONDS)
        lines: list[dict[str, Any]] = []
        while (item := self._lines.get_nowait()) is not None:
            lines.append(item)
        errors = [line["error"] for line in lines if "error" in line]
        assert errors == [], f"{self.name}: {errors[:3]}\n{self.stderr()}"
        assert self.proc.returncode == 0, f"{self.name}: {self.stderr()}"
        assert lines and "done" in lines[-1], f"{self.name} did not finish: {lines[-3:]}"
        return lines

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=EXIT_SECONDS)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self._reader.join(timeout=LINE_SECONDS)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()


# --- the consumers --------------------------------------------------------------------------


class Consumer(threading.Thread):
    """Reads the feed on a thread until told where it ends (``stop_after``)."""

    def __init__(self, name: str, since: str) -> None:
        super().__init__(name=name, daemon=True)
        self.since = since
        self.seen: list[Change] = []
        self.problems: list[str] = []
        self.error: BaseException | None = None
        self.stop_after: int | None = None
        """The last position to read (set once the writers stopped)."""

    def run(self) -> None:
        try:
            self.consume()
        except BaseException as exc:
            self.error = exc

    def consume(self) -> None:
        raise NotImplementedError


class Pager(Consumer):
    """Pages with ``changes(since=next_cursor)``, checking each page as it comes."""

    def __init__(self, name: str, since: str, read: Callable[[str], ChangePage],
                 limit: int) -> None:
        super().__init__(name, since)
        self.read = read
        self.limit = limit
        self.pages = 0

    def consume(self) -> None:
        cursor = self.since
        while True:
            stop_after = self.stop_after  # read before the page: it then reads up to there
            page = self.read(cursor)
            self.pages += 1
            positions = [position(change.cursor) for change in page]
            if positions != sorted(set(positions)) or (positions and positions[0]
                                                       <= position(cursor)):
                self.problems.append(f"page after {cursor}: positions {positions[:50]}")
            if len(page) > self.limit:
                self.problems.append(f"page of {len(page)} > limit {self.limit}")
            end = position(page.next_cursor)
            if end < position(cursor) or (positions and end < positions[-1]):
                self.problems.append(f"page after {cursor} with {positions[-3:]}: next_cursor "
                                     f"{page.next_cursor} goes back")
            self.seen.extend(page)
            cursor = page.next_cursor
            if stop_after is not None and end >= stop_after:
                return
            if len(page) < self.limit:
                time.sleep(0.002)


class Watcher(Consumer):
    """Follows the blocking ``watch(since=...)``; leaves at the first entry after
    ``stop_after`` (the test writes one once the others have drained)."""

    def __init__(self, name: str, since: str, store: SessionStore) -> None:
        super().__init__(name, since)
        self.store = store

    def consume(self) -> None:
        watched: Iterator[Change] = self.store.watch(since=self.since)
        for change in watched:
            if self.stop_after is not None and position(change.cursor) > self.stop_after:
                return
            self.seen.append(change)
        self.problems.append("the watch ended before the sentinel entry")


def agent_changes(agent: AgentSessions, since: str) -> ChangePage:
    return agent.changes(since, limit=AGENT_PAGE)


def join(consumer: Consumer) -> None:
    consumer.join(timeout=LINE_SECONDS)
    assert not consumer.is_alive(), (
        f"{consumer.name} did not reach the end of the feed in {LINE_SECONDS} s (it read "
        f"{len(consumer.seen)} entries, the last {consumer.seen[-1:]})")
    assert consumer.error is None, f"{consumer.name}: {consumer.error!r}"
    assert consumer.problems == [], f"{consumer.name}: {consumer.problems[:10]}"


# --- what the workers reported, and the replay of the feed ----------------------------------


class Reports:
    """Every write the workers reported, indexed for the replay."""

    def __init__(self, lines: list[dict[str, Any]], setup: dict[int, KeyName]) -> None:
        self.owner: dict[int, KeyName] = dict(setup)
        self.problems: list[str] = []
        self.sessions: set[int] = set()  # returned by a get_or_create or a reset
        self.reset_new: dict[int, KeyName] = {}
        self.coalesced_resets = 0  # PostgreSQL: a reset that found another's new session
        self.appends: list[tuple[KeyName, list[int]]] = []
        self.deletes: Counter[KeyName] = Counter()
        self.deletes_of_nothing = 0
        self.done: list[dict[str, Any]] = []
        for line in lines:
            if "s" in line:
                agent, peer, session_id = line["s"]
                self._own(session_id, (agent, peer))
                self.sessions.add(session_id)
            elif "a" in line:
                agent, peer, ids = line["a"]
                self.appends.append(((agent, peer), ids))
            elif "r" in line:
                agent, peer, session_id = line["r"]
                self._own(session_id, (agent, peer))
                self.sessions.add(session_id)
                if session_id in self.reset_new:  # see the note at the end of the module
                    self.coalesced_resets += 1
                self.reset_new[session_id] = (agent, peer)
            elif "d" in line:
                agent, peer, deleted = line["d"]
                if deleted:
                    self.deletes[agent, peer] += 1
                else:
                    self.deletes_of_nothing += 1
            elif "done" in line:
                self.done.append(line["done"])
            else:
                self.problems.append(f"unknown report {line}")

    def _own(self, session_id: int, name: KeyName) -> None:
        if self.owner.setdefault(session_id, name) != name:
            self.problems.append(f"session {session_id} returned for {name} and for "
                                 f"{self.owner[session_id]}")


class Replay:
    """The feed replayed key by key: what each key's sessions were at each point."""

    def __init__(self, feed: list[Change], reports: Reports, setup: dict[int, KeyName],
                 setup_ids: dict[int, list[int]], *, postgres: bool) -> None:
        self.postgres = postgres
        self.problems: list[str] = []
        self.partial_deletes: list[str] = []
        """PostgreSQL: deletes that left a session created while they ran (see the note at the
        end of the module)."""
        self.created_at: dict[int, int] = dict.fromkeys(setup, -1)  # the entry's index
        self.run_deleted: list[int] = []  # the sessions of the delete being replayed
        self.live: dict[KeyName, int | None] = {name: s for s, name in setup.items()}
        self.existing: dict[KeyName, set[int]] = defaultdict(set)
        for session_id, name in setup.items():
            self.existing[name].add(session_id)
        self.history: dict[int, list[int]] = {s: list(ids) for s, ids in setup_ids.items()}
        self.last_seq = {s: len(ids) for s, ids in setup_ids.items()}
        self.created: set[int] = set()
        self.deleted: set[int] = set()
        self.appended: Counter[tuple[KeyName, tuple[int, ...]]] = Counter()
        self.holder: dict[int, int] = {i: s for s, ids in setup_ids.items() for i in ids}
        """The session each message id was appended to (the last one, if it was reused)."""
        self.reused_ids = 0
        self.delete_runs: dict[KeyName, list[list[int]]] = defaultdict(list)
        """Per key, the sessions of each delete transaction's run of session.deleted entries."""
        self.resets = 0
        owner = reports.owner
        for index, change in enumerate(feed):
            self._one(index, change, feed, owner, reports, setup)

    def problem(self, change: Change, text: str) -> None:
        self.problems.append(f"{change.cursor} {change.kind.value} session {change.session_id} "
                             f"({change.agent_id}): {text}")

    def _one(self, index: int, change: Change, feed: list[Change],
             owner: dict[int, KeyName], reports: Reports, setup: dict[int, KeyName]) -> None:
        session_id = change.session_id
        if session_id is None or session_id not in owner:
            self.problem(change, "a session no writer reported")
            return
        name = owner[session_id]
        if change.agent_id != name[0]:
            self.problem(change, f"the session is {name}'s")
        if change.key is not None and (change.key.agent_id, change.key.peer_id) != name:
            self.problem(change, f"key {change.key} but the session is {name}'s")
        if session_id in self.deleted:
            self.problem(change, "an entry after the session's session.deleted")
        if (session_id not in self.created and session_id not in setup
                and change.kind is not ChangeKind.SESSION_CREATED):
            self.problem(change, "an entry before the session's session.created")
        live = self.live.get(name)
        following = feed[index + 1] if index + 1 < len(feed) else None
        previous = feed[index - 1] if index > 0 else None

        if change.kind is ChangeKind.SESSION_CREATED:
            if session_id in self.created or session_id in setup:
                self.problem(change, "created twice")
            if live is not None:
                self.problem(change, f"created while session {live} of {name} was live")
            self.live[name] = session_id
            self.existing[name].add(session_id)
            self.created.add(session_id)
            self.created_at[session_id] = index
            self.history[session_id] = []
            self.last_seq[session_id] = 0
        elif change.kind is ChangeKind.SESSION_RESET:
            self.resets += 1
            if live != session_id:
                self.problem(change, f"reset, but the live session of {name} was {live}")
            if (following is None or following.kind is not ChangeKind.SESSION_CREATED
                    or following.session_id not in reports.reset_new
                    or owner.get(following.session_id) != name):
                self.problem(change, f"not followed by the session.created of a reset of "
                                     f"{name}: {following}")
            self.live[name] = None
        elif change.kind is ChangeKind.MESSAGES_APPENDED:
            self._appended(change, session_id, name, live)
        elif change.kind is ChangeKind.SESSION_DELETED:
            if session_id not in self.existing[name]:
                self.problem(change, f"deleted, but not a session of {name}")
            self.existing[name].discard(session_id)
            self.deleted.add(session_id)
            if live == session_id:
                self.live[name] = None

            def same_delete(other: Change | None) -> bool:
                """Whether ``other`` is an entry of the same delete: of this key, and of the same
                transaction (its entries share ``at``; on PostgreSQL two deletes of one key can
                follow each other, see the note at the end)."""
                return (other is not None and other.kind is ChangeKind.SESSION_DELETED
                        and other.at == change.at and other.session_id is not None
                        and owner.get(other.session_id) == name)

            if not same_delete(previous):
                self.run_deleted = []
                self.delete_runs[name].append(self.run_deleted)
            self.run_deleted.append(session_id)
            left = sorted(self.existing[name])
            if not same_delete(following) and left:
                text = (f"a delete of {name} (sessions {self.run_deleted}) left sessions {left} "
                        f"(created at entries {[self.created_at.get(s) for s in left]})")
                # PostgreSQL (READ COMMITTED): a delete removes the generations its statements
                # see. One that waited for a concurrent reset sees the session that reset started
                # (a second statement, see _sessions.delete); a session created by a transaction
                # that committed after the delete's last statement began, but before the delete
                # committed, survives it, and the feed says so (created before the delete's
                # entries, not among them). Only such a newer session may be left; SQLite never.
                newest = max(self.created_at.get(s, -1) for s in self.run_deleted)
                if self.postgres and all(self.created_at.get(s, -1) > newest for s in left):
                    self.partial_deletes.append(f"{change.cursor}: {text}")
                else:
                    self.problem(change, text)
        else:
            self.problem(change, "a kind no writer causes")

    def _appended(self, change: Change, session_id: int, name: KeyName, live: int | None) -> None:
        data = change.data
        ids: list[int] = data.get("message_ids", [])
        if live != session_id:
            self.problem(change, f"appended while the live session of {name} was {live}")
        if not ids or ids != sorted(set(ids)):
            self.problem(change, f"message ids {ids} not increasing")
        before = self.history.get(session_id, [])
        if ids and before and ids[0] <= before[-1]:
            self.problem(change, f"message ids {ids} after {before[-3:]}")
        first, last = data.get("first_seq"), data.get("last_seq")
        expected_first = self.last_seq.get(session_id, 0) + 1
        if first != expected_first or last != expected_first + len(ids) - 1 or data.get(
                "count") != len(ids):
            self.problem(change, f"seq {first}..{last} (count {data.get('count')}, {len(ids)} "
                                 f"ids) does not follow {expected_first - 1}")
        for message_id in ids:
            holder = self.holder.get(message_id)
            if holder is not None:
                self.reused_ids += 1
                if holder not in self.deleted:
                    self.problem(change, f"message {message_id} is also in session {holder}, "
                                         "which was not deleted")
            self.holder[message_id] = session_id
        self.appended[name, tuple(ids)] += 1
        self.history[session_id] = [*before, *ids]
        self.last_seq[session_id] = last if isinstance(last, int) else expected_first


def fail_on(problems: list[str], what: str, summary: str) -> None:
    assert problems == [], f"{what} ({len(problems)} problems; {summary}):\n" + "\n".join(
        problems[:15])


# --- the test ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("late", [False, True], ids=["prompt", "late-commit"])
def test_every_committed_change_is_seen_once_in_commit_order(
        backend_url: Backend, tmp_path: Path, late: bool) -> None:
    url, options = backend_url
    if "pool_size" in options:
        options = {**options, "pool_size": 4}  # five consumers read at once here
    with SessionStore.open(url, **options) as store:
        # Sessions from before the start cursor: entries the consumers must not see.
        setup: dict[int, KeyName] = {}
        setup_ids: dict[int, list[int]] = {}
        for agent_id in AGENTS:
            agent = store.for_agent(agent_id)
            for index in range(SHARED):
                peer = f"shared{index}"
                session = agent.get_or_create(key(agent_id, peer))
                stored = agent.append_messages(key(agent_id, peer), [
                    StoredMessage.user(f"setup {n}") for n in range(SETUP_MESSAGES)])
                setup[session.id] = (agent_id, peer)
                setup_ids[session.id] = [m.id for m in stored if m.id is not None]
        start = store.latest_cursor()
        assert position(start) >= len(setup) * 2

        pager = Pager("admin pager", start, lambda since: store.changes(since, limit=PAGE), PAGE)
        watcher = Watcher("watcher", start, store)
        agent_pagers = {
            agent_id: Pager(f"{agent_id} pager", start,
                            partial(agent_changes, store.for_agent(agent_id)), AGENT_PAGE)
            for agent_id in AGENTS}
        pagers = [pager, *agent_pagers.values()]
        for consumer in [*pagers, watcher]:
            consumer.start()

        writers = [Writer(tmp_path, proc, backend_url, late) for proc in range(PROCESSES)]
        try:
            for writer in writers:
                writer.ready()
            for writer in writers:
                writer.go()
            lines = [line for writer in writers for line in writer.finish()]
        finally:
            for writer in writers:
                writer.close()

        latest = store.latest_cursor()
        for consumer in pagers:
            consumer.stop_after = position(latest)
        for consumer in pagers:
            join(consumer)
        watcher.stop_after = position(latest)
        store.for_agent("sentinel").get_or_create(key("sentinel", "end"))  # wakes the watcher
        join(watcher)

        feed = pager.seen
        reports = Reports(lines, setup)
        done = reports.done
        seconds = max(d["seconds"] for d in done)
        writes = sum(d["append"] + d["reset"] + d["delete"] for d in done)
        kinds = Counter(change.kind.value for change in feed)
        summary = (f"{store.backend}{' late-commit' if late else ''}: {len(feed)} changes in "
                   f"{seconds:.1f} s ({len(feed) / seconds:.0f}/s; "
                   f"{', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}); "
                   f"{writes} writes ({writes / seconds:.0f}/s): "
                   f"{sum(d['append'] for d in done)} appends, "
                   f"{sum(d['reset'] for d in done)} resets, {sum(d['delete'] for d in done)} "
                   f"deletes ({sum(d['deleted'] for d in done)} deleted, "
                   f"{sum(d['gone'] for d in done)} appends found the session deleted); "
                   f"admin pager {pager.pages} pages, watcher {len(watcher.seen)} entries")

        # Not vacuous: every operation happened a lot, with the consumers reading meanwhile.
        assert sum(d["append"] for d in done) >= 300, summary
        assert sum(d["reset"] for d in done) >= 60, summary
        assert sum(d["deleted"] for d in done) >= 40, summary
        assert reports.deletes_of_nothing > 0, summary
        assert pager.pages > 20 and len(feed) >= 600, summary
        fail_on(reports.problems, "the workers' reports disagree", summary)
        if store.backend == "sqlite":  # one writer at a time: a reset always finds its session
            assert reports.coalesced_resets == 0, summary

        # No gaps, no duplicates: positions are exactly those after the start up to the latest.
        positions = [position(change.cursor) for change in feed]
        expected = list(range(position(start) + 1, position(latest) + 1))
        if positions != expected:
            missing = sorted(set(expected) - set(positions))
            twice = sorted(p for p, n in Counter(positions).items() if n > 1)
            out_of_order = [(a, b) for a, b in itertools.pairwise(positions) if a >= b]
            pytest.fail(f"admin pager: {len(positions)} entries, expected {len(expected)}: "
                        f"missing {missing[:10]}, twice {twice[:10]}, out of order "
                        f"{out_of_order[:10]} ({summary})")
        feed_signatures = [signature(change) for change in feed]
        watched = [signature(change) for change in watcher.seen]
        if watched != feed_signatures:
            first = next((i for i, (a, b) in enumerate(zip(watched, feed_signatures,
                                                           strict=False)) if a != b),
                         min(len(watched), len(feed_signatures)))
            pytest.fail(f"the watcher read {len(watched)} entries, the pager {len(feed)}; they "
                        f"differ from index {first}: watcher {watched[first:first + 2]}, pager "
                        f"{feed_signatures[first:first + 2]} ({summary})")
        for agent_id, agent_pager in agent_pagers.items():
            others = [c.cursor for c in agent_pager.seen if c.agent_id != agent_id]
            assert others == [], f"{agent_id}'s consumer read other agents' entries {others[:5]}"
            mine = [s for s, c in zip(feed_signatures, feed, strict=True)
                    if c.agent_id == agent_id]
            assert [signature(c) for c in agent_pager.seen] == mine, (
                f"{agent_id}'s consumer read {len(agent_pager.seen)} entries, the admin feed "
                f"has {len(mine)} of {agent_id} ({summary})")
            assert len(mine) > len(feed) // (2 * len(AGENTS)), summary

        # Every entry is explained by a reported write, in commit order per key and session.
        replay = Replay(feed, reports, setup, setup_ids, postgres=store.backend == "postgres")
        problems = list(replay.problems)
        reported = Counter((name, tuple(ids)) for name, ids in reports.appends)
        problems += [f"append of {list(ids)} to {name} reported {n} times, "
                     f"{replay.appended[name, ids]} messages.appended entries of {name} have them"
                     for (name, ids), n in (reported - replay.appended).items()]
        problems += [f"{n} messages.appended entries of {name} with {list(ids)} not reported"
                     for (name, ids), n in (replay.appended - reported).items()]
        if store.backend == "postgres" and replay.reused_ids:
            problems.append(f"{replay.reused_ids} message ids appended twice")
        problems += [f"reset to session {s} of {name}: no session.created"
                     for s, name in reports.reset_new.items() if s not in replay.created]
        problems += [f"session {s} of {reports.owner[s]} returned but never created"
                     for s in reports.sessions if s not in replay.created and s not in setup]
        merged_deletes: list[str] = []  # PostgreSQL: two deletes in one batch, see the note
        for name in sorted({*replay.delete_runs, *reports.deletes}):
            runs, deletes = replay.delete_runs.get(name, []), reports.deletes[name]
            if len(runs) == deletes:
                continue
            text = f"{name}: {deletes} deletes deleted, the feed has {len(runs)} ({runs})"
            if replay.postgres and len(runs) < deletes <= sum(map(len, runs)):
                merged_deletes.append(text)
            else:
                problems.append(text)
        if replay.resets > len(reports.reset_new):
            problems.append(f"{replay.resets} session.reset entries, {len(reports.reset_new)} "
                            f"resets")
        fail_on(problems, "the feed does not account for the writes", summary)
        assert kinds[ChangeKind.MESSAGES_APPENDED.value] == len(reports.appends), summary
        assert kinds[ChangeKind.SESSION_RESET.value] >= 40, summary
        assert kinds[ChangeKind.SESSION_DELETED.value] >= 40, summary

        # The database is what the replay says.
        problems = []
        for name, live in replay.live.items():
            agent = store.for_agent(name[0])
            try:
                found_id: int | None = agent.get(key(*name)).id
            except SessionNotFoundError:
                found_id = None
            if found_id != live:
                problems.append(f"{name}: the live session is {found_id}, the feed says {live}")
        for name, sessions in replay.existing.items():
            for session_id in sessions:
                try:
                    history = [m.id for m in store.get_history_by_id(session_id)]
                except SessionNotFoundError:
                    problems.append(f"session {session_id} of {name}: not found, the feed never "
                                    "said it was deleted")
                    continue
                if history != replay.history[session_id]:
                    problems.append(f"session {session_id} of {name}: history {history[-5:]} "
                                    f"({len(history)}), the feed says "
                                    f"{replay.history[session_id][-5:]} "
                                    f"({len(replay.history[session_id])})")
        fail_on(problems, "the database disagrees with the feed", summary)
        print(f"\n{summary}; {sum(map(len, replay.existing.values()))} sessions left, "
              f"{reports.coalesced_resets} resets returned another reset's session, "
              f"{replay.reused_ids} message ids reused after a delete, "
              f"{len(replay.partial_deletes)} deletes left a session created meanwhile, "
              f"{len(merged_deletes)} keys with deletes merged in one transaction"
              + "".join(f"\n  {text}" for text in [*replay.partial_deletes[:2],
                                                    *merged_deletes[:2]]))


# --- note: what the replay tolerates, and why ---------------------------------------------------
#
# Found by this test (library behaviour, not the feed's: the feed records exactly what each
# transaction did, in commit order):
#
# * PostgreSQL, ``delete`` racing a ``reset`` of the same key in another process (or store): the
#   DELETE waits for the reset's lock on the old row, then deletes only the rows of its snapshot,
#   so the session the reset created would survive. This test found it; ``delete`` now runs a
#   second statement, which sees that session. A session created by a transaction that commits
#   after that second statement began (and before the delete commits) still survives: the
#   replay accepts it on PostgreSQL only if it was created after every session the delete
#   deleted (``partial_deletes``, rare now); on SQLite never. A second delete can follow at once
#   (its ``session.deleted`` entries right after the first's), so
#   the replay tells one delete's entries from the next by their transaction's ``at``. Two deletes
#   of one key can even share a transaction (a group-commit batch, jobs sorted by key) and both
#   delete something, when another process creates a session between their two statements (each
#   statement has its own snapshot): their entries are one run, so on PostgreSQL a key's runs
#   may be fewer than its deletes that deleted, never more, and never more deletes than entries
#   (``merged_deletes``).
# * PostgreSQL, two ``reset`` calls racing the same way: this test found that the second
#   archived nothing and returned the first one's new session. ``archive_live`` now looks again
#   (``twice``), so the second archives the session the first started. Two resets of a key with
#   no live session still start one session between them (both INSERT ... ON CONFLICT DO
#   NOTHING; the second returns the first's), so ``coalesced_resets`` is counted on PostgreSQL
#   (on SQLite it must be 0).
# * SQLite: ``messages.id`` is a rowid without AUTOINCREMENT, so once the newest messages are
#   deleted with their session their ids are handed out again, and one message id can appear in
#   two ``messages.appended`` entries (of different sessions; the first one deleted by then). The
#   replay accepts a repeated id only if its earlier session was deleted (``reused_ids``; on
#   PostgreSQL it must be 0).
