"""The measurements quoted in docs/integrations/*.md (run: python docs/integrations/measure.py).

Each compares an integration with the framework's own store on the same machine, SQLite files in
a temporary folder (``--pg URL`` adds the aisopod-session PostgreSQL numbers). Small on purpose:
it takes well under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")

from agents import SQLiteSession
from google.adk.events import Event, EventActions
from google.adk.sessions.base_session_service import GetSessionConfig
from google.adk.sessions.sqlite_session_service import SqliteSessionService
from google.genai import types
from langchain_core.messages import AIMessage, HumanMessage

from aisopod_session import SessionStore
from aisopod_session.integrations.adk import AisopodSessionService
from aisopod_session.integrations.langchain import AisopodChatMessageHistory
from aisopod_session.integrations.openai_agents import PAIRING, AisopodSession


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def median_time(fn: Callable[[], Any], repeat: int = 20) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --- OpenAI Agents SDK --------------------------------------------------------------------------


def sdk_turns(turns: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for t in range(turns):
        items.append({"role": "user", "content": f"question {t}"})
        for c in ("a", "b"):
            items.append({"type": "function_call", "call_id": f"{c}{t}", "name": "f",
                          "arguments": "{}"})
        for c in ("a", "b"):
            items.append({"type": "function_call_output", "call_id": f"{c}{t}", "output": "ok"})
        items.append({"type": "message", "role": "assistant", "content": [
            {"type": "output_text", "text": f"answer {t}", "annotations": []}]})
    return items


def orphans(items: list[Any]) -> bool:
    made = {i for item in items for i in PAIRING.calls(item)}
    return any(PAIRING.answers(item) not in made for item in items if PAIRING.answers(item))


def openai_agents(folder: Path, pg: str | None) -> None:
    print("## OpenAI Agents SDK: SQLiteSession vs AisopodSession")
    history = sdk_turns(40)  # 240 items
    theirs = SQLiteSession("s", str(folder / "sdk.db"))
    asyncio.run(theirs.add_items(history))
    store = SessionStore.open(str(folder / "aisopod-oa.db"))
    ours = AisopodSession("s", store)
    asyncio.run(ours.add_items(history))
    paired = AisopodSession("s", store, pair_safe=True)
    limits = range(1, 61)
    bad_theirs = sum(orphans(asyncio.run(theirs.get_items(limit=n))) for n in limits)
    bad_ours = sum(orphans(asyncio.run(ours.get_items(limit=n))) for n in limits)
    bad_paired = sum(orphans(asyncio.run(paired.get_items(limit=n))) for n in limits)
    print(f"get_items(limit=1..60) returning a tool output without its call: "
          f"SQLiteSession {bad_theirs}/60, AisopodSession {bad_ours}/60 (exactly n, as the "
          f"protocol says), AisopodSession(pair_safe=True) {bad_paired}/60")

    big = sdk_turns(2000)  # 12,000 items
    theirs_big = SQLiteSession("big", str(folder / "sdk.db"))
    ours_big = AisopodSession("big", store)
    for start in range(0, len(big), 1000):
        asyncio.run(theirs_big.add_items(big[start:start + 1000]))
        asyncio.run(ours_big.add_items(big[start:start + 1000]))
    print("get_items(limit=20) on 12,000 items, median: SQLiteSession "
          f"{ms(median_time(lambda: asyncio.run(theirs_big.get_items(limit=20))))}, "
          f"AisopodSession {ms(median_time(lambda: asyncio.run(ours_big.get_items(limit=20))))}")

    def writers(make: Callable[[str], Any], threads: int = 8, turns: int = 25) -> float:
        sessions = [make(f"w-{uuid.uuid4().hex[:8]}-{i}") for i in range(threads)]

        def work(session: Any) -> None:
            async def go() -> None:
                for t in range(turns):
                    await session.add_items([{"role": "user", "content": f"q{t}"},
                                             {"role": "assistant", "content": f"a{t}"}])
            asyncio.run(go())

        start = time.perf_counter()
        pool = [threading.Thread(target=work, args=(s,)) for s in sessions]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        return threads * turns / (time.perf_counter() - start)

    sdk_file = str(folder / "sdk-writers.db")
    print("8 threads x 25 add_items (own session each), durable commits, turns/s: "
          f"SQLiteSession {writers(lambda sid: SQLiteSession(sid, sdk_file)):.0f}, "
          f"AisopodSession on SQLite {writers(lambda sid: AisopodSession(sid, store)):.0f}",
          end="")
    if pg:
        with SessionStore.open(pg, schema=f"m_{uuid.uuid4().hex[:8]}") as pg_store:
            print(f", on PostgreSQL {writers(lambda sid: AisopodSession(sid, pg_store)):.0f}")
    else:
        print()
    theirs.close()
    theirs_big.close()
    store.close()


# --- Google ADK ---------------------------------------------------------------------------------


def adk_event(text: str, at: float) -> Event:
    return Event(author="user", invocation_id="i", timestamp=at,
                 content=types.Content(role="user", parts=[types.Part(text=text)]),
                 actions=EventActions(state_delta={"n": text}))


async def skew_trial(service: Any, skew: float, trial: int) -> bool:
    """Two replicas load a session; B (clock ``skew`` s off) appends, then A appends from its
    stale copy. True when A's stale write is refused."""
    sid = f"skew-{trial}"
    await service.create_session(app_name="app", user_id="u", session_id=sid)
    copy_a = await service.get_session(app_name="app", user_id="u", session_id=sid)
    copy_b = await service.get_session(app_name="app", user_id="u", session_id=sid)
    now = time.time()
    await service.append_event(copy_b, adk_event("from B", now + skew))
    try:
        await service.append_event(copy_a, adk_event("from A", now + 0.001))
    except ValueError:  # StaleSessionError
        return True
    return False


def adk(folder: Path) -> None:
    print("## Google ADK: SqliteSessionService vs AisopodSessionService")
    theirs = SqliteSessionService(str(folder / "adk.db"))
    store = SessionStore.open(str(folder / "aisopod-adk.db"))
    ours = AisopodSessionService(store)
    skews = [-1.0 + 2.0 * i / 19 for i in range(20)]  # replica B's clock from 1 s behind to ahead

    async def trials(service: Any) -> int:
        return sum([await skew_trial(service, s, i) for i, s in enumerate(skews)])

    print(f"stale writes refused, 20 trials with replica clock skew -1..+1 s: "
          f"SqliteSessionService {asyncio.run(trials(theirs))}/20, "
          f"AisopodSessionService {asyncio.run(trials(ours))}/20")

    async def load(service: Any, count: int) -> float:
        session = await service.create_session(app_name="app", user_id="u", session_id="big")
        start = time.perf_counter()
        for i in range(count):
            await service.append_event(session, adk_event(f"m{i}", time.time()))
        return (time.perf_counter() - start) / count

    for name, service in (("SqliteSessionService", theirs), ("AisopodSessionService", ours)):
        per_append = asyncio.run(load(service, 2000))
        recent = median_time(lambda s=service: asyncio.run(s.get_session(
            app_name="app", user_id="u", session_id="big",
            config=GetSessionConfig(num_recent_events=20))))
        print(f"{name}: append_event (durable) {ms(per_append)}; get_session(num_recent_events"
              f"=20) of 2,000 events {ms(recent)}")
    store.close()


# --- LangChain ----------------------------------------------------------------------------------


def langchain(folder: Path) -> None:
    print("## LangChain: reading a long history")
    store = SessionStore.open(str(folder / "aisopod-lc.db"))
    history = AisopodChatMessageHistory("long", store)
    batch: list[Any] = []
    for i in range(10_000):
        batch += [HumanMessage(f"question {i}"), AIMessage(f"answer {i}", id=f"ai-{i}")]
    for start in range(0, len(batch), 5000):
        history.add_messages(batch[start:start + 5000])
    bounded = AisopodChatMessageHistory("long", store, max_messages=20)
    print(f"20,000 messages: messages (all) {ms(median_time(lambda: history.messages, 5))}; "
          f"messages with max_messages=20 {ms(median_time(lambda: bounded.messages, 20))}")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", help="a PostgreSQL URL for the aisopod-session PostgreSQL numbers")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        openai_agents(folder, args.pg)
        adk(folder)
        langchain(folder)


if __name__ == "__main__":
    main()
