"""sessions_send: provenance in the queued message and in a session it starts (which joins the
caller's tree), waiting for the reply through the change feed (asyncio: watch; blocking: feed
pages), a timeout, and the audit log of who looked at or sent into which session."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from aisopod_session import AsyncSessionStore, SessionKey, SessionStore, StoredMessage
from aisopod_session.tools import PROVENANCE, AsyncSessionTools, SessionTools, ToolPolicy

CALLER = SessionKey("bot", "web", "main", "dm", "boss")
WORKER = SessionKey("bot", "web", "main", "dm", "worker")
SEND = {"session_key": str(WORKER), "message": "summarise the invoice", "timeout_seconds": None}


def _answer_inbox(store: SessionStore, text: str) -> None:
    """The worker's run: takes the inbox and appends its reply (as an agent runner would)."""
    agent = store.for_agent("bot")
    while not agent.inbox(WORKER):
        threading.Event().wait(0.02)
    run = agent.start_run(WORKER, "worker")
    taken = agent.take_inbox(run)
    assert taken[0].content["from_session"] == str(CALLER)
    agent.append_messages(WORKER, [StoredMessage.assistant(text)], run=run)
    agent.finish_run(run)


def test_send_starts_a_session_in_the_callers_tree_with_provenance(tmp_path: Path) -> None:
    with SessionStore.open(str(tmp_path / "send.db")) as store:
        tools = SessionTools(store, CALLER)  # default visibility: tree
        before = tools.call("session_status", {"session_key": str(WORKER)})
        assert before["error"]["type"] == "not_found" or before["error"]["rule"] == "visibility"
        sent = tools.call("sessions_send", SEND)
        assert sent["status"] == "accepted" and sent["started"] is True
        queued = store.for_agent("bot").inbox(WORKER)
        assert queued[0].message.content == {
            "type": "inter_session", "text": "summarise the invoice", "from_agent": "bot",
            "from_session": str(CALLER), "from_person": False}
        session = store.for_agent("bot").get(WORKER)
        assert session.metadata[PROVENANCE]["started_by"] == str(CALLER)
        status = tools.call("session_status", {"session_key": str(WORKER)})
        assert status["inbox_size"] == 1 and status["started_by"] == str(CALLER)
        # another session of the agent does not see it under tree
        stranger = SessionTools(store, SessionKey("bot", "web", "main", "dm", "x"))
        refused = stranger.call("session_status", {"session_key": str(WORKER)})
        assert refused["error"]["rule"] == "visibility"
        audit = [(r.actor, r.action) for r in store.audit_log(20)]
        assert ("agent:bot", "tool.sessions_send") in audit
        assert ("agent:bot", "tool.session_status_denied") in audit


def test_blocking_send_waits_for_the_reply(tmp_path: Path) -> None:
    with SessionStore.open(str(tmp_path / "wait.db")) as store:
        worker = threading.Thread(target=_answer_inbox, args=(store, "total: 42 EUR"))
        worker.start()
        answer = SessionTools(store, CALLER).call("sessions_send",
                                                  {**SEND, "timeout_seconds": 30})
        worker.join()
        assert answer["status"] == "ok"
        assert answer["reply"]["text"] == "total: 42 EUR"


def test_asyncio_send_waits_for_the_reply_through_watch(tmp_path: Path) -> None:
    db = str(tmp_path / "await.db")

    async def main() -> dict[str, Any]:
        store = await AsyncSessionStore.open(db)
        try:
            with SessionStore.open(db) as blocking:
                worker = threading.Thread(target=_answer_inbox, args=(blocking, "done"))
                worker.start()
                answer = await AsyncSessionTools(store, CALLER).call(
                    "sessions_send", {**SEND, "timeout_seconds": 30})
                await asyncio.to_thread(worker.join)
            return answer
        finally:
            await store.close()

    answer = asyncio.run(main())
    assert answer["status"] == "ok" and answer["reply"]["text"] == "done"


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_send_times_out_without_a_reply(tmp_path: Path, flavour: str) -> None:
    db = str(tmp_path / "quiet.db")
    args = {**SEND, "timeout_seconds": 1}
    if flavour == "sync":
        with SessionStore.open(db) as store:
            answer = SessionTools(store, CALLER).call("sessions_send", args)
    else:
        async def main() -> dict[str, Any]:
            async with await AsyncSessionStore.open(db) as store:
                return await AsyncSessionTools(store, CALLER).call("sessions_send", args)

        answer = asyncio.run(main())
    assert answer["status"] == "timeout" and answer["reply"] is None


def test_send_bounds_and_bad_arguments(tmp_path: Path) -> None:
    with SessionStore.open(str(tmp_path / "bad.db")) as store:
        tools = SessionTools(store, CALLER, ToolPolicy(max_send_chars=10, max_wait_seconds=5))
        too_long = tools.call("sessions_send", {**SEND, "message": "x" * 11})
        assert too_long["error"]["type"] == "invalid_arguments"
        too_patient = tools.call("sessions_send", {**SEND, "timeout_seconds": 6})
        assert "at most 5" in too_patient["error"]["message"]
        not_a_key = tools.call("sessions_send", {**SEND, "session_key": "bob"})
        assert not_a_key["error"]["type"] == "invalid_arguments"
        missing = tools.call("sessions_send", {"message": "hi"})
        assert "session_key" in missing["error"]["message"]
        as_text = tools.call("session_status", '{"session_key": null}')
        assert as_text == {"session_key": str(CALLER), "exists": False}
        not_json = tools.call("session_status", "{oops")
        assert not_json["error"]["type"] == "invalid_arguments"


def test_record_audit_is_the_agent_s_own_and_only_for_tools(tmp_path: Path) -> None:
    from aisopod_session import InvalidInputError

    with SessionStore.open(str(tmp_path / "audit.db")) as store:
        agent = store.for_agent("bot")
        agent.record_audit("tool.sessions_history", "session 1 from session 2", sessions=1,
                           messages=3)
        (record,) = store.audit_log(1)
        assert (record.actor, record.action, record.subject, record.sessions,
                record.messages) == ("agent:bot", "tool.sessions_history",
                                     "session 1 from session 2", 1, 3)
        for bad in ("forget_peer", "tool.", "tool.x y"):
            with pytest.raises(InvalidInputError, match="action"):
                agent.record_audit(bad)
        with pytest.raises(InvalidInputError, match="messages"):
            agent.record_audit("tool.x", messages=-1)


def test_record_audit_over_http(served: Any) -> None:
    import httpx

    from tests.tools.conftest import ADMIN_TOKEN, BOT_TOKEN

    with SessionStore.open(served.url, token=BOT_TOKEN) as store:
        store.for_agent("bot").record_audit("tool.session_status", "session 9", sessions=1)
    with SessionStore.open(served.url, token=ADMIN_TOKEN) as admin:
        (record,) = admin.audit_log(1)
    assert (record.actor, record.action, record.subject) == (
        "agent:bot", "tool.session_status", "session 9")
    # bot's token may not write as another agent, and the service checks the action too
    refused = httpx.post(served.url + "/v1/agents/other/audit", json={"action": "tool.x"},
                         headers={"Authorization": f"Bearer {BOT_TOKEN}"})
    assert refused.status_code == 403
    invalid = httpx.post(served.url + "/v1/agents/bot/audit", json={"action": "forget_peer"},
                         headers={"Authorization": f"Bearer {BOT_TOKEN}"})
    assert invalid.status_code == 422


def test_remote_send_waits_for_the_reply(served: Any) -> None:
    from tests.tools.conftest import ADMIN_TOKEN, BOT_TOKEN

    with SessionStore.open(served.url, token=BOT_TOKEN) as store, \
            SessionStore.open(served.url, token=ADMIN_TOKEN) as worker_store:
        worker = threading.Thread(target=_answer_inbox, args=(worker_store, "over HTTP"))
        worker.start()
        answer = SessionTools(store, CALLER).call("sessions_send",
                                                  {**SEND, "timeout_seconds": 30})
        worker.join()
    assert answer["status"] == "ok" and answer["reply"]["text"] == "over HTTP"


def test_remote_asyncio_send_waits_through_the_feed_stream(served: Any) -> None:
    from tests.tools.conftest import ADMIN_TOKEN, BOT_TOKEN

    async def main() -> dict[str, Any]:
        async with await AsyncSessionStore.open(served.url, token=BOT_TOKEN) as store:
            with SessionStore.open(served.url, token=ADMIN_TOKEN) as worker_store:
                worker = threading.Thread(target=_answer_inbox, args=(worker_store, "streamed"))
                worker.start()
                answer = await AsyncSessionTools(store, CALLER).call(
                    "sessions_send", {**SEND, "timeout_seconds": 30})
                await asyncio.to_thread(worker.join)
                quiet = await AsyncSessionTools(store, CALLER).call(
                    "sessions_send", {**SEND, "timeout_seconds": 1})
            assert quiet["status"] == "timeout"
            return answer

    answer = asyncio.run(main())
    assert answer["status"] == "ok" and answer["reply"]["text"] == "streamed"
