"""Full-text search over HTTP on every backend: agent tokens see their own agent's hits only
(and no admin search), every filter as query parameters, paging in both orders, a malformed query
as a 422 naming ``q``, a store with search off as 409 ``…/search-disabled``, and the index's
status and bounded build. The query language itself is the conformance suite's
(tests/conformance/test_search.py, which runs over HTTP too)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aisopod_session import AsyncSessionStore, SearchPage, StoredMessage
from aisopod_session.errors import PROBLEM_TYPES, SearchDisabledError
from aisopod_session.limits import (
    MAX_SEARCH_BUILD_BATCH,
    MAX_SEARCH_BUILD_BATCHES_PER_REQUEST,
    MAX_SEARCH_QUERY_CHARS,
)
from aisopod_session.service.app import create_app
from tests.conformance._support import key
from tests.service.conftest import (
    ADMIN,
    BOT,
    OTHER,
    Api,
    assert_problem,
    message,
    service_config,
    serving,
    session_path,
)

pytestmark = pytest.mark.anyio

PREFIX = "tag:aisopod-session,2026:problem/"
AGENT_SEARCH = "/v1/agents/{agent}/search"
ADMIN_SEARCH = "/v1/admin/search"
INDEX = "/v1/admin/search/index"
BUILD = "/v1/admin/search/index/build"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def search(api: Api, path: str, headers: dict[str, str] | None = None,
                 **params: Any) -> SearchPage:
    response = await api.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return SearchPage.model_validate(response.json())


def texts(page: SearchPage) -> list[str]:
    return sorted("".join(segment.text for segment in hit.snippet) for hit in page.hits)


async def say(api: Api, *texts: str, role: str = "user", at: datetime | None = None,
              **parts: Any) -> None:
    await api.put_session(**parts)
    await api.append([message(text, role, **({} if at is None else {
        "created_at": (at + timedelta(seconds=i)).isoformat()})) for i, text in enumerate(texts)],
        **parts)


async def test_an_agent_token_sees_its_own_agents_hits_only(api: Api) -> None:
    await say(api, "shared word from bot", agent="bot", peer="alice")
    await say(api, "shared word from other", "other secret", agent="other", peer="carol")
    bot, other = AGENT_SEARCH.format(agent="bot"), AGENT_SEARCH.format(agent="other")

    for order in ("best", "newest"):
        assert texts(await search(api, bot, BOT, q="shared", order=order)) == [
            "shared word from bot"]
    assert (await search(api, bot, BOT, q="secret")).hits == []
    assert texts(await search(api, other, OTHER, q="shared word")) == ["shared word from other"]
    assert texts(await search(api, other, ADMIN, q="secret")) == ["other secret"]  # admin: any
    hit = (await search(api, bot, BOT, q="shared")).hits[0]
    assert hit.key == key("alice") and hit.role.value == "user" and hit.seq == 1

    # another agent's path, the admin routes, no token, a filter that would widen the scope
    for path in (other, ADMIN_SEARCH):
        assert_problem(await api.get(path, params={"q": "secret"}, headers=BOT), 403)
        assert_problem(await api.get(path, params={"q": "secret"}, headers={
            "Authorization": ""}), 401)
    assert_problem(await api.get(INDEX, headers=BOT), 403)
    assert_problem(await api.post(BUILD, headers=BOT), 403)
    widened = await api.get(bot, params={"q": "secret", "agent_id": "other"}, headers=BOT)
    assert assert_problem(widened, 422)["errors"][0]["field"] == "agent_id"

    assert texts(await search(api, ADMIN_SEARCH, q="shared")) == [
        "shared word from bot", "shared word from other"]
    assert texts(await search(api, ADMIN_SEARCH, q="shared", agent_id="OTHER")) == [
        "shared word from other"]
    # a cursor belongs to its scope: an agent's cursor is refused by the admin search
    await say(api, "shared again", "shared thrice", agent="bot", peer="alice")
    cursor = (await search(api, bot, BOT, q="shared", limit=1)).next_cursor
    assert cursor is not None
    refused = await api.get(ADMIN_SEARCH, params={"q": "shared", "limit": 1, "cursor": cursor})
    assert assert_problem(refused, 422)["errors"][0]["field"] == "cursor"


async def test_every_filter_and_paging_in_both_orders(api: Api) -> None:
    await say(api, "parcel one", agent="bot", peer="alice", at=T0)
    await say(api, "parcel two", role="assistant", agent="bot", peer="alice",
              at=T0 + timedelta(days=2))
    await say(api, "parcel three", agent="bot", channel="slack", account="work", kind="group",
              peer="team", at=T0 + timedelta(days=4))
    bot = AGENT_SEARCH.format(agent="bot")

    async def where(**params: Any) -> list[str]:
        return texts(await search(api, bot, BOT, q="parcel", **params))

    assert await where() == ["parcel one", "parcel three", "parcel two"]
    assert await where(channel="SLACK") == ["parcel three"]  # names are case-insensitive
    assert await where(account_id="acct") == ["parcel one", "parcel two"]
    assert await where(peer_kind="group") == ["parcel three"]
    assert await where(peer_id="alice") == ["parcel one", "parcel two"]
    assert await where(role="assistant") == ["parcel two"]
    assert await where(role=["user", "system"]) == ["parcel one", "parcel three"]
    assert await where(after=(T0 + timedelta(days=1)).isoformat()) == [
        "parcel three", "parcel two"]
    assert await where(before="2026-03-02T12:00:00+00:00") == ["parcel one"]
    assert await where(after=T0.isoformat(), before=(T0 + timedelta(days=3)).isoformat()) == [
        "parcel two"]
    patched = await api.patch(session_path(channel="slack", account="work", kind="group",
                                           peer="team"), json={"status": "idle"})
    assert patched.status_code == 200, patched.text
    assert await where(status="idle") == ["parcel three"]
    assert await where(status=["active", "idle"]) == [
        "parcel one", "parcel three", "parcel two"]

    # compacted originals and archived generations on request
    compacted = await api.post(session_path(suffix="/compact"),
                               json={"kind": "sliding_window", "max_messages": 1})
    assert compacted.status_code == 200, compacted.text
    assert await where(peer_id="alice") == ["parcel two"]
    assert await where(peer_id="alice", include_compacted="true") == ["parcel one", "parcel two"]
    assert (await api.post(session_path(suffix="/reset"))).status_code == 200
    assert await where(peer_id="alice") == []
    assert await where(peer_id="alice", include_archived="true") == ["parcel two"]
    assert await where(peer_id="alice", status="archived") == ["parcel two"]

    # paging: every hit once, in order, in both orders; the filter goes with the cursor
    await say(api, *[f"comet {'comet ' * (i % 3)}number {i}" for i in range(7)], agent="bot",
              peer="bob")
    for order in ("best", "newest"):
        seen: list[Any] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"q": "comet", "limit": 3, "order": order,
                                      "peer_id": "bob", "role": ["user", "tool"]}
            if cursor is not None:
                params["cursor"] = cursor
            page = await search(api, bot, BOT, **params)
            seen.extend(page.hits)
            cursor = page.next_cursor
            if cursor is None:
                break
            changed = await api.get(bot, params={**params, "cursor": cursor, "role": "user"},
                                    headers=BOT)
            assert assert_problem(changed, 422)["errors"][0]["field"] == "cursor"
        assert len(seen) == 7 and len({hit.message_id for hit in seen}) == 7
        whole = await search(api, bot, BOT, q="comet", limit=10, order=order)
        assert [hit.message_id for hit in whole.hits] == [hit.message_id for hit in seen]
        assert whole.complete and not whole.partial_ranking


@pytest.mark.parametrize(("q", "problem"), [
    ('"unbalanced phrase', "unbalanced quote"),
    ("-refund", "only exclusions"),
    ("", "empty"),
    ("!!! ???", "no word"),
    ("x" * (MAX_SEARCH_QUERY_CHARS + 1), "at most"),
    (None, "required"),
])
async def test_a_malformed_query_is_a_422_naming_q(api: Api, q: str | None, problem: str
                                                    ) -> None:
    await say(api, "refund", agent="bot", peer="alice")
    for path, headers in ((AGENT_SEARCH.format(agent="bot"), BOT), (ADMIN_SEARCH, ADMIN)):
        response = await api.get(path, params={} if q is None else {"q": q}, headers=headers)
        body = assert_problem(response, 422)
        assert body["type"] == PREFIX + "invalid-input"
        assert [error["field"] for error in body["errors"]] == ["q"], body
        assert problem in body["errors"][0]["message"], body
        assert body["detail"].startswith("q: "), body


@pytest.mark.parametrize(("params", "field"), [
    ({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"order": "worst"}, "order"),
    ({"cursor": "not-a-cursor"}, "cursor"), ({"role": "robot"}, "role"),
    ({"status": "gone"}, "status"), ({"peer_kind": "crowd"}, "peer_kind"),
    ({"channel": " "}, "channel"), ({"after": "yesterday"}, "after"),
    ({"before": "1700000000"}, "before"), ({"include_archived": "maybe"}, "include_archived"),
    ({"channel": ["a", "b"]}, "channel"), ({"q": ["a", "b"]}, "q"), ({"sort": "best"}, "sort"),
])
async def test_bad_options_are_a_422_naming_the_parameter(api: Api, params: dict[str, Any],
                                                          field: str) -> None:
    response = await api.get(AGENT_SEARCH.format(agent="bot"),
                             params={"q": "refund", **params}, headers=BOT)
    body = assert_problem(response, 422)
    assert field in [error["field"].split(".")[0] for error in body["errors"]], body


async def test_a_store_with_search_off_answers_409_search_disabled(sqlite_url: str) -> None:
    store = await AsyncSessionStore.open(sqlite_url, search=False)
    try:
        async with serving(create_app(service_config(sqlite_url, {}), store)) as api:
            await say(api, "beacon", agent="bot", peer="alice")  # writing goes on
            for path, headers in ((AGENT_SEARCH.format(agent="bot"), BOT),
                                  (ADMIN_SEARCH, ADMIN)):
                body = assert_problem(await api.get(path, params={"q": "beacon"},
                                                    headers=headers), 409)
                assert body["type"] == PREFIX + "search-disabled"
                assert PROBLEM_TYPES[body["type"]] is SearchDisabledError
                assert "search=False" in body["detail"]
            status = await api.get(INDEX)
            assert status.status_code == 200 and status.json() == {"enabled": False,
                                                                   "pending": 0}
            built = await api.post(BUILD, json={})
            assert built.status_code == 200 and built.json() == {"enabled": False, "pending": 0}
    finally:
        await store.close()


@asynccontextmanager
async def served_with_backlog(backend_url: tuple[str, dict[str, Any]], count: int
                              ) -> AsyncIterator[Api]:
    """A service over a database holding ``count`` messages stored while search was off."""
    url, options = backend_url
    off = await AsyncSessionStore.open(url, search=False, **options)
    try:
        agent = off.for_agent("bot")
        await agent.get_or_create(key("alice"))
        await agent.append_messages(key("alice"), [StoredMessage.user(f"lantern {i}")
                                                   for i in range(count)])
    finally:
        await off.close()
    store = await AsyncSessionStore.open(url, search=True, **options)
    try:
        async with serving(create_app(service_config(url, options), store)) as api:
            yield api
    finally:
        await store.close()


async def test_index_status_and_a_bounded_build(backend_url: tuple[str, dict[str, Any]]
                                                ) -> None:
    async with served_with_backlog(backend_url, 25) as api:
        assert (await api.get(INDEX)).json() == {"enabled": True, "pending": 25}
        page = await search(api, ADMIN_SEARCH, q="lantern")
        assert page.hits == [] and not page.complete

        built = await api.post(BUILD, json={"batch_size": 4, "max_batches": 2})
        assert built.status_code == 200, built.text
        assert built.json() == {"enabled": True, "pending": 17}  # 2 batches of 4, no more
        assert len((await search(api, ADMIN_SEARCH, q="lantern", limit=20)).hits) == 8

        for bad, field in (({"batch_size": 0}, "batch_size"),
                           ({"batch_size": MAX_SEARCH_BUILD_BATCH + 1}, "batch_size"),
                           ({"max_batches": MAX_SEARCH_BUILD_BATCHES_PER_REQUEST + 1},
                            "max_batches"),
                           ({"max_batches": True}, "max_batches"),
                           ({"batch_size": 2, "forever": True}, "forever")):
            body = assert_problem(await api.post(BUILD, json=bad), 422)
            assert field in body["errors"][0]["field"], body
        assert (await api.get(INDEX)).json()["pending"] == 17  # nothing was built

        built = await api.post(BUILD)  # no body: the defaults (10 batches of 1,000)
        assert built.status_code == 200 and built.json() == {"enabled": True, "pending": 0}
        page = await search(api, ADMIN_SEARCH, q="lantern", limit=30, order="newest")
        assert page.complete and len(page.hits) == 25
        # the largest batch the route documents is one the store takes (it checks it first)
        largest = await api.post(BUILD, json={"batch_size": MAX_SEARCH_BUILD_BATCH,
                                               "max_batches": 1})
        assert largest.status_code == 200, largest.text
