"""Runs under stress, across processes, on SQLite and PostgreSQL.

* Mutual exclusion: 4 processes x 4 threads start runs on 5 shared keys for a few seconds. Every
  run writes ``start F`` and ``end F`` with ``run=`` (a fenced write, itself a check), so each
  key's history must be strictly alternating start/end pairs with increasing fences; the
  wall-clock intervals the workers report never overlap per key, and fences are never reused.
* Expiry with fencing: a holder paused with SIGSTOP past its lease is taken over; once resumed,
  every fenced write of its run is refused with RunLostError and stores nothing. A holder killed
  with SIGKILL is taken over after its lease (a start with ``wait`` > ttl succeeds).
* The inbox: 4 producer processes enqueue (with retries) while 2 consumer processes take in runs;
  every message ends up in the history exactly once, each producer's in its own order. A run
  killed right after take_inbox loses nothing.

The workers live in ``tests/_runs_worker.py`` (run as ``python -m tests._runs_worker``); they
report JSON lines on stdout, including every exception that is not a typed one a mode expects.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pytest

from aisopod_session import RunLostError, SessionBusyError, SessionKey, SessionStore, StoredMessage

ROOT = Path(__file__).resolve().parent.parent
LINE_SECONDS = 60  # only a guard against a hang: how long to wait for one line of a worker
EXIT_SECONDS = 90  # and for a worker to exit

Backend = tuple[str, dict[str, Any]]


def key(index: int | str) -> SessionKey:
    return SessionKey("bot", "cli", "acct", "dm", f"peer{index}")


class Worker:
    """A ``tests._runs_worker`` subprocess; its stdout JSON lines are read on a thread."""

    def __init__(self, tmp_path: Path, name: str, mode: str, backend: Backend,
                 **args: Any) -> None:
        url, options = backend
        self.name = name
        self._stderr_path = tmp_path / f"{name}.stderr"
        self._stderr: IO[str] = self._stderr_path.open("w")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests._runs_worker", mode,
             json.dumps({"url": url, "options": options, **args})],
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

    def line(self) -> dict[str, Any]:
        """The next line (fails the test if the worker exits or hangs first)."""
        try:
            item = self._lines.get(timeout=LINE_SECONDS)
        except queue.Empty:
            pytest.fail(f"{self.name}: no line in {LINE_SECONDS} s")
        if item is None:
            self.proc.wait(timeout=EXIT_SECONDS)
            pytest.fail(f"{self.name} exited ({self.proc.returncode}) early: {self.stderr()}")
        if "error" in item:
            pytest.fail(f"{self.name}: {item['error']}")
        return item

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def finish(self, timeout: float = EXIT_SECONDS) -> list[dict[str, Any]]:
        """Wait for the worker to exit; every line it wrote that was not read yet."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.name} hung: {self.stderr()}")
        self._reader.join(timeout=LINE_SECONDS)
        lines: list[dict[str, Any]] = []
        while (item := self._lines.get_nowait()) is not None:
            lines.append(item)
        return lines

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=EXIT_SECONDS)

    def close(self) -> None:
        self.kill()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self._reader.join(timeout=LINE_SECONDS)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()


class Workers(list[Worker]):
    def close(self) -> None:
        for worker in self:
            worker.close()


def start_together(workers: list[Worker]) -> None:
    """Wait until every worker has opened its store, then release them all at once."""
    for worker in workers:
        assert worker.line() == {"ready": True}
    for worker in workers:
        worker.send("go")


def finish_cleanly(worker: Worker, timeout: float = EXIT_SECONDS) -> list[dict[str, Any]]:
    lines = worker.finish(timeout)
    errors = [line["error"] for line in lines if "error" in line]
    assert errors == [], f"{worker.name}: {errors}\n{worker.stderr()}"
    assert worker.proc.returncode == 0, f"{worker.name}: {worker.stderr()}"
    assert "done" in lines[-1], f"{worker.name} did not finish: {lines[-3:]}"
    return lines


def texts(messages: list[StoredMessage]) -> list[Any]:
    return [m.content for m in messages]


def lease_left(expires_at: datetime) -> float:
    """Seconds until a lease expires (lease times are the database's clock; the database runs
    on this machine, so it is this machine's clock too)."""
    return (expires_at - datetime.now(UTC)).total_seconds()


# --- 1. mutual exclusion --------------------------------------------------------------------------

PROCESSES, THREADS, KEYS = 4, 4, 5
STRESS_SECONDS = 3.5


@pytest.mark.slow
def test_runs_exclude_each_other_under_stress(backend_url: Backend, tmp_path: Path) -> None:
    workers = Workers(
        Worker(tmp_path, f"mutex{p}", "mutex", backend_url, proc=p, threads=THREADS, keys=KEYS,
               seconds=STRESS_SECONDS, ttl=5.0, wait=10.0)
        for p in range(PROCESSES))
    with closing(workers):
        start_together(workers)
        lines = [line for worker in workers for line in finish_cleanly(worker)]
    runs = [line["run"] for line in lines if "run" in line]
    busy = sum(line["done"]["busy"] for line in lines if "done" in line)
    assert sum(line["done"]["runs"] for line in lines if "done" in line) == len(runs)
    assert len(runs) >= 4 * KEYS, f"too little progress: {len(runs)} runs ({busy} busy)"

    fences = [run["fence"] for run in runs]
    assert len(fences) == len(set(fences)), "a fence was handed out twice"
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        by_key[run["key"]].append(run)
    url, options = backend_url
    with SessionStore.open(url, **options) as store:
        agent = store.for_agent("bot")
        for index in range(KEYS):
            peer = f"peer{index}"
            ordered = sorted(by_key[peer], key=lambda run: run["fence"])
            for before, after in itertools.pairwise(ordered):
                assert before["t1"] < after["t0"], (
                    f"{peer}: run {after['fence']} of {after['owner']} started at {after['t0']} "
                    f"while run {before['fence']} of {before['owner']} was still writing "
                    f"(until {before['t1']})")
            history = texts(agent.get_history(key(index)))
            expected = [f"{edge} {run['fence']}" for run in ordered for edge in ("start", "end")]
            assert history == expected, (
                f"{peer}: the history is not strictly alternating start/end pairs with "
                f"increasing fences")
            assert agent.current_run(key(index)) is None
    print(f"\n{len(runs)} runs, {busy} starts gave up busy, "
          f"per key {sorted(Counter(run['key'] for run in runs).values())}")


# --- 2. expiry with fencing -----------------------------------------------------------------------


@pytest.mark.slow
def test_a_paused_holder_is_taken_over_and_fenced_out(backend_url: Backend,
                                                       tmp_path: Path) -> None:
    url, options = backend_url
    with SessionStore.open(url, **options) as store, closing(Workers()) as workers:
        agent = store.for_agent("bot")
        holder = Worker(tmp_path, "holder", "hold", backend_url, key="paused", ttl=0.5)
        workers.append(holder)
        fence = holder.line()["ready"]
        holder.signal(signal.SIGSTOP)
        held = agent.current_run(key("paused"))
        assert held is not None and (held.fence, held.owner) == (fence, "holder")
        if lease_left(held.expires_at) > 0.1:  # not expired yet: the lease is honoured
            with pytest.raises(SessionBusyError) as busy:
                agent.start_run(key("paused"), "successor")
            assert busy.value.holder == "holder"
        time.sleep(max(0.0, lease_left(held.expires_at)) + 0.2)  # the holder stays stopped

        successor = agent.start_run(key("paused"), "successor", ttl=30, wait=5)
        assert successor.fence > fence
        agent.append_messages(key("paused"), [StoredMessage.assistant("successor 1"),
                                              StoredMessage.assistant("successor 2")],
                              run=successor)
        holder.send("go")  # waits in the pipe: the holder's next step once it runs again
        holder.signal(signal.SIGCONT)
        outcomes = holder.line()["done"]
        assert outcomes == {"append": RunLostError.__name__, "renew": RunLostError.__name__,
                            "take_inbox": RunLostError.__name__,
                            "finish": RunLostError.__name__}
        assert holder.finish() == []
        assert holder.proc.returncode == 0, holder.stderr()

        assert texts(agent.get_history(key("paused"))) == [
            "holder before", "successor 1", "successor 2"]
        assert agent.current_run(key("paused")) == successor
        assert agent.finish_run(successor) == 0


@pytest.mark.slow
def test_a_killed_holder_is_taken_over_after_its_lease(backend_url: Backend,
                                                        tmp_path: Path) -> None:
    url, options = backend_url
    ttl = 1.5
    with SessionStore.open(url, **options) as store, closing(Workers()) as workers:
        agent = store.for_agent("bot")
        holder = Worker(tmp_path, "holder", "hold", backend_url, key="killed", ttl=ttl)
        workers.append(holder)
        fence = holder.line()["ready"]
        holder.signal(signal.SIGKILL)
        holder.proc.wait(timeout=EXIT_SECONDS)
        assert holder.proc.returncode == -signal.SIGKILL
        held = agent.current_run(key("killed"))
        assert held is not None and (held.fence, held.owner) == (fence, "holder")
        if lease_left(held.expires_at) > 0.1:
            with pytest.raises(SessionBusyError) as busy:
                agent.start_run(key("killed"), "successor", wait=0.05)
            assert busy.value.holder == "holder"
            assert busy.value.expires_at == held.expires_at

        started = time.monotonic()
        successor = agent.start_run(key("killed"), "successor", ttl=30, wait=ttl + 5)
        waited = time.monotonic() - started
        assert successor.fence > fence
        assert lease_left(held.expires_at) <= 0, "taken over before the lease expired"
        assert waited < ttl + 5
        agent.append_messages(key("killed"), [StoredMessage.assistant("successor")],
                              run=successor)
        assert texts(agent.get_history(key("killed"))) == ["holder before", "successor"]
        assert agent.finish_run(successor) == 0


# --- 3. the inbox ---------------------------------------------------------------------------------

PRODUCERS, PER_PRODUCER, CONSUMERS = 4, 40, 2


@pytest.mark.slow
def test_every_enqueued_message_is_taken_exactly_once(backend_url: Backend,
                                                      tmp_path: Path) -> None:
    stop = tmp_path / "producers-done"
    producers = [
        Worker(tmp_path, f"producer{p}", "produce", backend_url, key="inbox", producer=p,
               count=PER_PRODUCER)
        for p in range(PRODUCERS)]
    consumers = [
        Worker(tmp_path, f"consumer{c}", "consume", backend_url, key="inbox",
               owner=f"consumer{c}", ttl=5.0, wait=10.0, stop=str(stop), max_seconds=60)
        for c in range(CONSUMERS)]
    with closing(Workers([*producers, *consumers])) as workers:
        start_together(workers)
        produced = [finish_cleanly(p)[-1]["done"] for p in producers]
        stop.touch()
        lines = [line for c in consumers for line in finish_cleanly(c)]
    assert [p["sent"] for p in produced] == [PER_PRODUCER] * PRODUCERS
    assert all(p["retries"] > 0 for p in produced)

    takes = sorted((line["take"] for line in lines if "take" in line), key=lambda t: t["fence"])
    fences = [take["fence"] for take in takes]
    assert len(fences) == len(set(fences)), "two consumer runs had the same fence"
    assert all(len(take["ids"]) <= 5 for take in takes)
    taken = [external_id for take in takes for external_id in take["ids"]]
    duplicated = [name for name, n in Counter(taken).items() if n > 1]
    assert duplicated == [], f"taken more than once: {duplicated[:10]}"

    url, options = backend_url
    with SessionStore.open(url, **options) as store:
        agent = store.for_agent("bot")
        history = agent.get_history(key("inbox"))
        assert agent.inbox(key("inbox")) == []
        assert agent.current_run(key("inbox")) is None
    stored = [str(m.external_id) for m in history]
    assert None not in [m.external_id for m in history]
    assert [m.content for m in history] == stored, "each message kept its content"
    expected = {f"p{p}-{n}" for p in range(PRODUCERS) for n in range(PER_PRODUCER)}
    duplicated = [name for name, n in Counter(stored).items() if n > 1]
    assert duplicated == [], f"stored more than once: {duplicated[:10]}"
    assert set(stored) == expected, (
        f"missing {sorted(expected - set(stored))[:10]}, unexpected "
        f"{sorted(set(stored) - expected)[:10]}")
    assert stored == taken, "the history is the takes of the runs, in fence order"
    print(f"\n{len(takes)} consumer runs, {sum(1 for t in takes if t['ids'])} took messages, "
          f"{sum(p['retries'] for p in produced)} retried batches")
    for p in range(PRODUCERS):
        mine = [int(name.split("-")[1]) for name in stored if name.startswith(f"p{p}-")]
        assert mine == list(range(PER_PRODUCER)), f"producer {p}'s messages out of order"


@pytest.mark.slow
def test_a_run_killed_after_taking_loses_nothing(backend_url: Backend, tmp_path: Path) -> None:
    url, options = backend_url
    ttl = 1.0
    names = [f"m{n}" for n in range(10)]
    with SessionStore.open(url, **options) as store, closing(Workers()) as workers:
        agent = store.for_agent("bot")
        agent.enqueue(key("doomed"), [StoredMessage.user(n, external_id=n) for n in names])
        doomed = Worker(tmp_path, "doomed", "take_and_die", backend_url, key="doomed", ttl=ttl,
                        limit=3)
        workers.append(doomed)
        report = doomed.line()["taken"]
        doomed.signal(signal.SIGKILL)
        doomed.proc.wait(timeout=EXIT_SECONDS)
        assert doomed.proc.returncode == -signal.SIGKILL
        assert report["ids"] == names[:3]

        assert texts(agent.get_history(key("doomed"))) == names[:3]
        assert [q.message.external_id for q in agent.inbox(key("doomed"))] == names[3:]
        held = agent.current_run(key("doomed"))
        assert held is not None and (held.fence, held.owner) == (report["fence"], "doomed")
        if lease_left(held.expires_at) > 0.1:
            with pytest.raises(SessionBusyError):
                agent.start_run(key("doomed"), "next")
        assert agent.enqueue(key("doomed"), [StoredMessage.user("m0", external_id="m0")]) == [], (
            "a message a run took is not queued again")

        following = agent.start_run(key("doomed"), "next", ttl=30, wait=ttl + 5)
        assert following.fence > report["fence"]
        assert texts(agent.take_inbox(following)) == names[3:]
        assert agent.finish_run(following) == 0
        history = agent.get_history(key("doomed"))
        assert texts(history) == names
        assert [m.external_id for m in history] == names
        assert agent.inbox(key("doomed")) == []
