"""What the store decides during an import: a session it refuses fails alone (the rest of its
batch is stored), and an import into a running service through the remote store."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agents import SQLiteSession

from aisopod_session import SessionStore
from aisopod_session.service import BackgroundService, ServiceConfig
from tests.importers.conftest import contents, run_import

ADMIN = "an-admin-token-0123456789"


def write(path: Path, sessions: dict[str, list[dict[str, object]]]) -> None:
    async def run() -> None:
        for session_id, items in sessions.items():
            session = SQLiteSession(session_id, str(path))
            await session.add_items(items)  # type: ignore[arg-type]
            session.close()

    asyncio.run(run())


def test_a_session_the_store_refuses_fails_alone(tmp_path: Path, target: SessionStore) -> None:
    source = tmp_path / "sdk.db"
    huge = {"role": "user", "content": "x" * (1024 * 1024 + 10)}
    write(source, {"a": [{"role": "user", "content": "fine"}],
                   "b": [{"role": "user", "content": "ok"}, huge],
                   "c": [{"role": "assistant", "content": "also fine"}]})
    report = run_import(target, "openai-agents", str(source))
    outcomes = {s.source_id: s for s in report.sessions}
    assert [outcomes[n].outcome for n in "abc"] == ["imported", "failed", "imported"]
    assert outcomes["b"].imported == 0
    assert "nothing of this session was imported: message 2" in (outcomes["b"].reason or "")
    assert sorted(s.key.peer_id for s in target.list_all_sessions()) == ["a", "c"]
    assert report.failed


def test_import_into_a_running_service(tmp_path: Path) -> None:
    source = tmp_path / "sdk.db"
    write(source, {"u1": [{"role": "user", "content": "hi"},
                          {"role": "assistant", "content": "hello"}]})
    config = ServiceConfig.model_validate({
        "database": {"url": f"sqlite:///{tmp_path / 'served.db'}"},
        "tokens": [{"token": ADMIN, "role": "admin"}]})
    with BackgroundService(config) as service, \
            SessionStore.open(service.url, token=ADMIN) as remote:
        first = run_import(remote, "openai-agents", str(source))
        assert first.count("imported") == 1 and first.messages_imported == 2
        stored = contents(remote)
        assert run_import(remote, "openai-agents", str(source)).count("already-imported") == 1
        assert contents(remote) == stored
