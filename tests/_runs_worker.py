"""Subprocess entry point for tests/test_runs_stress.py: ``python -m tests._runs_worker MODE ARGS``.

``ARGS`` is one JSON object (``url`` and ``options`` open the store, the rest depends on the mode).
The worker talks to the parent in JSON lines on stdout (one object a line, flushed at once) and
reads commands from stdin where a mode waits for the parent. Every exception other than the typed
ones a mode expects is reported as an ``{"error": ...}`` line with its class name and traceback,
never swallowed; a mode ends with a ``{"done": ...}`` line.

Modes:

``mutex``
    ``threads`` threads each loop until ``seconds`` have passed: start a run on one of ``keys``
    keys (``wait``/``ttl``), append ``start F`` with ``run=``, renew, append ``end F`` with
    ``run=``, finish. One ``{"run": ...}`` line per run (key, fence, wall-clock t0 after the start
    returned and t1 before the finish). A start that gives up with SessionBusyError is counted.
``hold``
    Start a run (``ttl``), append ``holder before`` with ``run=``, print ``{"ready": fence}``,
    then wait for a line on stdin and try the late writes, reporting each outcome's class name.
``produce``
    Enqueue ``count`` messages ``p{producer}-{n}`` (external_id the same) in small batches; every
    few batches the same batch is sent again (a retry the inbox de-duplicates).
``consume``
    Loop: start a run (``wait``), take_inbox(limit=random 1..5), finish; one ``{"take": ...}``
    line per run. Once the file ``stop`` exists, it leaves when a run took nothing and its finish
    said no message waits.
``take_and_die``
    Start a run (``ttl``), take_inbox(limit=``limit``), print what it took, then wait forever
    (the parent kills it with SIGKILL before it finishes).
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
import traceback
from typing import Any

from aisopod_session import (
    SessionBusyError,
    SessionKey,
    SessionStore,
    StoredMessage,
)

_out = threading.Lock()


def key(index: int | str) -> SessionKey:
    return SessionKey("bot", "cli", "acct", "dm", f"peer{index}")


def say(**fields: Any) -> None:
    with _out:
        sys.stdout.write(json.dumps(fields) + "\n")
        sys.stdout.flush()


def report(where: str, exc: BaseException) -> None:
    say(error={"where": where, "type": type(exc).__name__,
               "traceback": "".join(traceback.format_exception(exc))})


def ready_then_wait_for_go() -> None:
    """Tell the parent this process has imported and opened its store; wait for its go."""
    say(ready=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("the parent did not say go")


def outcome(call: Any) -> str:
    """The class name of what ``call()`` raised, or "ok"."""
    try:
        call()
    except Exception as exc:
        return type(exc).__name__
    return "ok"


# --- modes ----------------------------------------------------------------------------------------


def mutex(store: SessionStore, args: dict[str, Any]) -> None:
    agent = store.for_agent("bot")
    proc, threads, keys = args["proc"], args["threads"], args["keys"]
    busy = [0] * threads
    runs = [0] * threads
    ready_then_wait_for_go()
    deadline = time.monotonic() + args["seconds"]

    def body(thread: int) -> None:
        rng = random.Random(proc * 1000 + thread)
        owner = f"p{proc}t{thread}"
        while time.monotonic() < deadline:
            target = key(rng.randrange(keys))
            try:
                run = agent.start_run(target, owner, ttl=args["ttl"], wait=args["wait"])
            except SessionBusyError:
                busy[thread] += 1
                continue
            t0 = time.time()
            agent.append_messages(target, [StoredMessage.user(f"start {run.fence}")], run=run)
            time.sleep(rng.uniform(0, 0.005))
            renewed = agent.renew_run(run)
            if renewed.fence != run.fence:
                raise AssertionError(f"renewal changed the fence: {run} -> {renewed}")
            agent.append_messages(target, [StoredMessage.assistant(f"end {run.fence}")], run=run)
            t1 = time.time()
            agent.finish_run(run)
            runs[thread] += 1
            say(run={"key": target.peer_id, "fence": run.fence, "owner": owner,
                     "t0": t0, "t1": t1})

    def guarded(thread: int) -> None:
        try:
            body(thread)
        except BaseException as exc:
            report(f"p{proc}t{thread}", exc)

    workers = [threading.Thread(target=guarded, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=args["seconds"] + args["wait"] + 60)
        if worker.is_alive():
            say(error={"where": f"p{proc}", "type": "Hung", "traceback": worker.name})
    say(done={"busy": sum(busy), "runs": sum(runs)})


def hold(store: SessionStore, args: dict[str, Any]) -> None:
    agent = store.for_agent("bot")
    target = key(args["key"])
    run = agent.start_run(target, "holder", ttl=args["ttl"])
    agent.append_messages(target, [StoredMessage.user("holder before")], run=run)
    say(ready=run.fence)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("the parent did not say go")
    late = outcome(lambda: agent.append_messages(
        target, [StoredMessage.user("holder late")], run=run))
    renew = outcome(lambda: agent.renew_run(run))
    take = outcome(lambda: agent.take_inbox(run))
    finish = outcome(lambda: agent.finish_run(run))
    say(done={"append": late, "renew": renew, "take_inbox": take, "finish": finish})


def produce(store: SessionStore, args: dict[str, Any]) -> None:
    agent = store.for_agent("bot")
    target, producer, count = key(args["key"]), args["producer"], args["count"]
    rng = random.Random(producer)
    ready_then_wait_for_go()
    n = batches = retries = 0
    while n < count:
        size = min(rng.randint(1, 3), count - n)
        names = [f"p{producer}-{i}" for i in range(n, n + size)]
        batch = [StoredMessage.user(name, external_id=name) for name in names]
        queued = agent.enqueue(target, batch)
        if [q.message.external_id for q in queued] != names:  # new: each one queued, in order
            raise AssertionError(f"enqueue of {names} returned {queued}")
        batches += 1
        if batches % 4 == 0:  # the same batch again, as a client that lost the answer would
            # Each one still waiting is returned as it waits; one a run took is left out.
            first = {q.message.external_id: q.id for q in queued}
            again = {q.message.external_id: q.id for q in agent.enqueue(target, batch)}
            if list(again) != [name for name in names if name in again] or any(
                    first[name] != queue_id for name, queue_id in again.items()):
                raise AssertionError(f"retry of {names}: first {first}, again {again}")
            retries += 1
        n += size
        time.sleep(rng.uniform(0, 0.004))
    say(done={"sent": n, "retries": retries})


def consume(store: SessionStore, args: dict[str, Any]) -> None:
    agent = store.for_agent("bot")
    target, name = key(args["key"]), args["owner"]
    rng = random.Random(name)
    ready_then_wait_for_go()
    runs = busy = 0
    deadline = time.monotonic() + args["max_seconds"]
    while time.monotonic() < deadline:
        stopping = os.path.exists(args["stop"])  # read before the run: producers were done
        try:
            run = agent.start_run(target, name, ttl=args["ttl"], wait=args["wait"])
        except SessionBusyError:
            busy += 1
            continue
        taken = agent.take_inbox(run, limit=rng.randint(1, 5))
        waiting = agent.finish_run(run)
        runs += 1
        say(take={"fence": run.fence, "ids": [m.external_id for m in taken],
                  "contents": [m.content for m in taken], "waiting": waiting})
        if stopping and not taken and waiting == 0:
            break
        if not taken:
            time.sleep(0.005)
    else:
        say(error={"where": name, "type": "Timeout", "traceback": "did not drain in time"})
    say(done={"runs": runs, "busy": busy})


def take_and_die(store: SessionStore, args: dict[str, Any]) -> None:
    agent = store.for_agent("bot")
    target = key(args["key"])
    run = agent.start_run(target, "doomed", ttl=args["ttl"])
    taken = agent.take_inbox(run, limit=args["limit"])
    say(taken={"fence": run.fence, "ids": [m.external_id for m in taken]})
    threading.Event().wait()  # killed here, holding the run


MODES = {"mutex": mutex, "hold": hold, "produce": produce, "consume": consume,
         "take_and_die": take_and_die}


def main() -> None:
    mode, args = sys.argv[1], json.loads(sys.argv[2])
    try:
        with SessionStore.open(args["url"], **args["options"]) as store:
            MODES[mode](store, args)
    except SystemExit:
        raise
    except BaseException as exc:
        report(mode, exc)
        raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
