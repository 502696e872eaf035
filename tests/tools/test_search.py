"""sessions_search: the store's search (issue 20) over the sessions the caller may see only,
bounded and redacted, on a database and over HTTP alike."""

from __future__ import annotations

from pathlib import Path

from aisopod_session import SessionKey, SessionStore, StoredMessage
from aisopod_session.tools import SessionTools, ToolPolicy

CALLER = SessionKey("bot", "web", "main", "group", "team")
THREAD = SessionKey.for_thread("bot", "web", "main", "team", "t")
OTHER = SessionKey("bot", "web", "main", "dm", "other")


def test_search_finds_only_visible_sessions_and_redacts(tmp_path: Path) -> None:
    with SessionStore.open(str(tmp_path / "search.db")) as store:
        agent = store.for_agent("bot")
        for key in (CALLER, THREAD, OTHER):
            agent.get_or_create(key)
            agent.append_messages(key, [StoredMessage.user(
                f"the invoice key is sk-abcdefghijklmnopqrstuvwx for {key.peer_id}")])
        args = {"query": "invoice", "session_key": None, "limit": None}
        tree = SessionTools(store, CALLER).call("sessions_search", args)
        assert {hit["session_key"] for hit in tree["hits"]} == {str(CALLER), str(THREAD)}
        assert all("sk-abcdef" not in hit["snippet"] for hit in tree["hits"])
        everyone = SessionTools(store, CALLER, ToolPolicy(visibility="agent")).call(
            "sessions_search", {**args, "limit": 2})
        assert everyone["count"] == 2
        assert len(SessionTools(store, CALLER, ToolPolicy(visibility="agent")).call(
            "sessions_search", args)["hits"]) == 3
        refused = SessionTools(store, CALLER).call("sessions_search",
                                                   {**args, "session_key": str(OTHER)})
        assert refused["error"]["rule"] == "visibility"
        too_many = SessionTools(store, CALLER).call("sessions_search", {**args, "limit": 26})
        assert too_many["error"]["type"] == "invalid_arguments"


def test_search_over_http_sees_the_tree_only(served: object) -> None:
    from tests.tools.conftest import BOT_TOKEN
    from tests.tools.conftest import CALLER as SERVED_CALLER
    from tests.tools.conftest import THREAD as SERVED_THREAD

    with SessionStore.open(served.url, token=BOT_TOKEN) as store:  # type: ignore[attr-defined]
        answer = SessionTools(store, SERVED_CALLER).call(
            "sessions_search", {"query": "hello", "session_key": None, "limit": None})
    assert {hit["session_key"] for hit in answer["hits"]} == {str(SERVED_CALLER),
                                                              str(SERVED_THREAD)}
