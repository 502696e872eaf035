"""Export and import stream: memory stays flat as the data grows (issue 7).

Peak traced memory of exporting (and importing) a store four times as large must stay within a
small margin of the smaller one's: a copy held in memory would grow fourfold.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from aisopod_session import SessionKey, SessionStore, StoredMessage


def _fill(store: SessionStore, sessions: int, messages: int) -> None:
    agent = store.for_agent("bot")
    text = "x" * 400
    for s in range(sessions):
        key = SessionKey("bot", "slack", "acct", "dm", f"user{s}")
        agent.get_or_create(key)
        agent.append_messages(key, [StoredMessage.user(f"{s}-{i}-{text}") for i in range(messages)])


def _peak(work: Callable[[], Any]) -> int:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _drain(lines: Iterator[str]) -> int:
    count = 0
    for _ in lines:
        count += 1
    return count


@pytest.mark.slow
def test_export_and_import_memory_is_flat(backend_url: tuple[str, dict[str, Any]],
                                          tmp_path: Any) -> None:
    url, options = backend_url
    peaks: dict[str, list[int]] = {"export": [], "import": []}
    for sessions in (6, 24):  # 600 and 2,400 sessions' worth of messages, 4x the data
        schema = options.get("schema")
        opts = {**options, "schema": f"{schema}_{sessions}"} if schema else options
        target = url if schema else str(tmp_path / f"src{sessions}.db")
        with SessionStore.open(target, **opts) as store:
            _fill(store, sessions, 400)
            exported = tmp_path / f"export{sessions}.jsonl"
            with exported.open("w", encoding="utf-8") as out:
                for line in store.export_jsonl():
                    out.write(line + "\n")
            peaks["export"].append(_peak(lambda s=store: _drain(s.export_jsonl())))
            if schema:
                store._engine.drop_schema()  # type: ignore[attr-defined]
        import_opts = {**options, "schema": f"{schema}_in{sessions}"} if schema else options
        import_target = url if schema else str(tmp_path / f"dst{sessions}.db")
        with SessionStore.open(import_target, **import_opts) as store:

            def stream(path: Any = exported) -> Iterator[str]:
                with path.open(encoding="utf-8") as lines:
                    yield from lines

            peaks["import"].append(_peak(lambda s=store: s.import_jsonl(stream())))
            assert _live_messages(store) == sessions * 400
            if schema:
                store._engine.drop_schema()  # type: ignore[attr-defined]
    for name, (small, large) in peaks.items():
        print(f"{name}: peak {small / 1e6:.2f} MB for 1x, {large / 1e6:.2f} MB for 4x")
        assert large < small * 1.5 + 1_000_000, (name, small, large)


def _live_messages(store: SessionStore) -> int:
    return store.stats().messages_live
