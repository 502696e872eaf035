"""Subprocess entry point for tests/test_changes_stress.py:
``python -m tests._changes_worker ARGS``.

``ARGS`` is one JSON object: ``url`` and ``options`` open the store; ``proc`` (this process's
number), ``threads``, ``seconds``, ``agents`` (agent ids), ``shared`` (shared peers per agent),
``own`` (own keys per thread) and ``before_commit_seconds`` (set on
``aisopod_session.store._changes`` before the store opens: the late-commit case when not 0).

The worker prints ``{"ready": true}`` once its store is open and waits for ``go`` on stdin. Then
every thread loops until ``seconds`` have passed, on a random key (one of every agent's shared
keys, which every thread of every process writes, or one of the thread's own keys):

* append (most often): ``get_or_create`` the key, then ``append_messages`` 1 to 3 messages. A
  delete between the two makes the append raise SessionNotFoundError: counted, not an error.
* reset: ``reset`` the key (archives the live session, if any, and starts a new one).
* delete: ``delete`` the key (every generation).

For every call that returned, one JSON line says what it did, with the key as ``[agent, peer]``:
``{"s": [agent, peer, id]}`` for the session a get_or_create returned, ``{"a": [agent, peer,
[message ids]]}`` for an append, ``{"r": [agent, peer, new id]}`` for a reset and ``{"d": [agent,
peer, deleted]}`` for a delete. Any other exception is an ``{"error": ...}`` line; the worker ends
with ``{"done": {counts}}``.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
import traceback
from typing import Any

from aisopod_session import SessionKey, SessionNotFoundError, SessionStore, StoredMessage
from aisopod_session.store import _changes

_out = threading.Lock()


def say(**fields: Any) -> None:
    with _out:
        sys.stdout.write(json.dumps(fields, separators=(",", ":")) + "\n")
        sys.stdout.flush()


def report(where: str, exc: BaseException) -> None:
    say(error={"where": where, "type": type(exc).__name__,
               "traceback": "".join(traceback.format_exception(exc))})


def key(agent: str, peer: str) -> SessionKey:
    return SessionKey(agent, "cli", "acct", "dm", peer)


def shared_peer(index: int) -> str:
    return f"shared{index}"


def own_peer(proc: int, thread: int, index: int) -> str:
    return f"p{proc}t{thread}k{index}"


def write(store: SessionStore, args: dict[str, Any]) -> None:
    proc, threads, agents = args["proc"], args["threads"], args["agents"]
    counts = {"append": 0, "reset": 0, "delete": 0, "deleted": 0, "gone": 0}
    tallies = [dict.fromkeys(counts, 0) for _ in range(threads)]
    say(ready=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("the parent did not say go")
    started = time.monotonic()
    deadline = started + args["seconds"]

    def body(thread: int) -> None:
        rng = random.Random(proc * 1000 + thread)
        mine = [(agents[(proc + thread + j) % len(agents)], own_peer(proc, thread, j))
                for j in range(args["own"])]
        shared = [(agent, shared_peer(i)) for agent in agents for i in range(args["shared"])]
        tally = tallies[thread]
        n = 0
        while time.monotonic() < deadline:
            agent_id, peer = rng.choice(shared if rng.random() < 0.5 else mine)
            target, agent = key(agent_id, peer), store.for_agent(agent_id)
            roll = rng.random()
            if roll < 0.7:
                session = agent.get_or_create(target)
                say(s=[agent_id, peer, session.id])
                batch = [StoredMessage.user(f"p{proc}t{thread} {n + i}")
                         for i in range(rng.randint(1, 3))]
                n += len(batch)
                try:
                    stored = agent.append_messages(target, batch)
                except SessionNotFoundError:  # deleted since the get_or_create
                    tally["gone"] += 1
                    continue
                say(a=[agent_id, peer, [m.id for m in stored]])
                tally["append"] += 1
            elif roll < 0.85:
                say(r=[agent_id, peer, agent.reset(target).id])
                tally["reset"] += 1
            else:
                deleted = agent.delete(target)
                say(d=[agent_id, peer, deleted])
                tally["delete"] += 1
                tally["deleted"] += deleted

    def guarded(thread: int) -> None:
        try:
            body(thread)
        except BaseException as exc:
            report(f"p{proc}t{thread}", exc)

    workers = [threading.Thread(target=guarded, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=args["seconds"] + 60)
        if worker.is_alive():
            say(error={"where": f"p{proc}", "type": "Hung", "traceback": worker.name})
    for tally in tallies:
        for name, value in tally.items():
            counts[name] += value
    say(done={**counts, "seconds": time.monotonic() - started})


def main() -> None:
    args = json.loads(sys.argv[1])
    _changes.before_commit_seconds = args["before_commit_seconds"]
    try:
        with SessionStore.open(args["url"], **args["options"]) as store:
            write(store, args)
    except SystemExit:
        raise
    except BaseException as exc:
        report("write", exc)
        raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
