"""The change feed over HTTP: pages and latest for agent and admin tokens, isolation, the
problems a bad or expired cursor answers (pages and streams alike), and the Server-Sent Events
streams on a real server: event fields, resuming with Last-Event-ID, keep-alive comments, the
end of every stream at shutdown, and two replicas over one PostgreSQL database.

Streams are read on a thread of their own (:class:`Stream`) into a queue read with timeouts, so a
stream that never delivers fails the test instead of hanging it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from aisopod_session import Change, SessionStore, StoredMessage
from aisopod_session._time import utc_now
from aisopod_session.service.server import GRACEFUL_SHUTDOWN_SECONDS, BackgroundService
from tests.conformance._support import key
from tests.conftest import PG_URL
from tests.service.conftest import (
    ADMIN,
    ADMIN_TOKEN,
    BOT,
    OTHER,
    Api,
    assert_problem,
    message,
    service_config,
)

PREFIX = "tag:aisopod-session,2026:problem/"
ZERO = "0" * 16
SECRET = "s3cret-content-never-in-the-feed"
WAIT = 10.0  # seconds: a guard against a hang, never a speed assertion
AGENT_CHANGES = "/v1/agents/{agent}/changes"
ADMIN_CHANGES = "/v1/admin/changes"


def as_changes(body: dict[str, Any]) -> list[Change]:
    assert set(body) == {"changes", "next_cursor"}
    return [Change.model_validate(item) for item in body["changes"]]


# --- pages and latest (httpx over ASGI) --------------------------------------------------------


async def write_some(api: Api) -> None:
    """Changes of two agents, message content all SECRET."""
    await api.put_session(agent="bot", peer="alice")
    await api.put_session(agent="other", peer="carol")
    await api.append([message(SECRET), message(SECRET, role="assistant")], agent="bot",
                     peer="alice")
    await api.append([message(SECRET)], agent="other", peer="carol")
    await api.put_session(agent="bot", peer="bob")


async def page(api: Api, path: str, headers: dict[str, str] | None = None,
               **params: Any) -> dict[str, Any]:
    response = await api.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    assert SECRET not in response.text
    body: dict[str, Any] = response.json()
    return body


async def walk(api: Api, path: str, headers: dict[str, str] | None = None, limit: int = 2,
               **params: Any) -> list[Change]:
    found: list[Change] = []
    cursor = None
    while True:
        extra = {} if cursor is None else {"since": cursor}
        body = await page(api, path, headers, limit=limit, **params, **extra)
        items = as_changes(body)
        found.extend(items)
        if not items:
            return found
        cursor = body["next_cursor"]


@pytest.mark.anyio
async def test_pages_and_latest_for_agent_and_admin_tokens(api: Api) -> None:
    empty = await page(api, ADMIN_CHANGES)
    assert empty == {"changes": [], "next_cursor": ZERO}
    assert (await page(api, ADMIN_CHANGES + "/latest")) == {"cursor": ZERO}
    await write_some(api)

    body = await page(api, ADMIN_CHANGES)
    everything = as_changes(body)
    assert [(c.kind.value, c.agent_id) for c in everything] == [
        ("session.created", "bot"), ("session.created", "other"), ("messages.appended", "bot"),
        ("messages.appended", "other"), ("session.created", "bot")]
    assert body["next_cursor"] == everything[-1].cursor
    first = body["changes"][0]
    assert set(first) == {"cursor", "kind", "at", "agent_id", "session_id", "key", "data"}
    assert first["key"] == {"agent_id": "bot", "channel": "discord", "account_id": "acct",
                            "peer_kind": "dm", "peer_id": "alice"}
    assert await walk(api, ADMIN_CHANGES, limit=1) == everything
    latest = everything[-1].cursor
    bot_path, other_path = AGENT_CHANGES.format(agent="bot"), AGENT_CHANGES.format(agent="other")
    for path, headers in ((ADMIN_CHANGES, ADMIN), (bot_path, BOT), (other_path, OTHER)):
        assert await page(api, path + "/latest", headers) == {"cursor": latest}  # any agent's

    bots = [c for c in everything if c.agent_id == "bot"]
    others = [c for c in everything if c.agent_id == "other"]
    assert await walk(api, bot_path, BOT) == bots
    assert await walk(api, bot_path, ADMIN) == bots  # an admin token may read any agent's
    assert await walk(api, other_path, OTHER, limit=1) == others
    assert await walk(api, ADMIN_CHANGES, agent_id="other") == others
    # A short page goes on from the newest entry, past the other agent's.
    assert (await page(api, bot_path, BOT, since=bots[-1].cursor)) == {
        "changes": [], "next_cursor": latest}
    assert (await page(api, other_path, OTHER, since=others[0].cursor))["next_cursor"] == latest
    # An empty page gives back where the next change will appear.
    assert (await page(api, ADMIN_CHANGES, since=latest)) == {"changes": [],
                                                               "next_cursor": latest}
    await api.put_session(agent="other", peer="dave")
    after = as_changes(await page(api, ADMIN_CHANGES, since=latest))
    assert [(c.kind.value, c.agent_id, c.key and c.key.peer_id) for c in after] == [
        ("session.created", "other", "dave")]


@pytest.mark.anyio
async def test_an_agent_token_never_reads_another_agents_changes(api: Api) -> None:
    await write_some(api)
    for path in (AGENT_CHANGES.format(agent="other"), ADMIN_CHANGES):
        for suffix in ("", "/latest", "/stream"):
            assert_problem(await api.get(path + suffix, headers=BOT), 403)
            assert_problem(await api.get(path + suffix, headers={"Authorization": ""}), 401)
    # The agent path takes no agent filter: it cannot be widened (or narrowed to another).
    for suffix in ("", "/stream"):
        refused = await api.get(AGENT_CHANGES.format(agent="bot") + suffix,
                                params={"agent_id": "other"}, headers=BOT)
        assert assert_problem(refused, 422)["type"] == PREFIX + "invalid-input"
    mine = as_changes(await page(api, AGENT_CHANGES.format(agent="bot"), BOT))
    assert mine and {c.agent_id for c in mine} == {"bot"}


def expired_or_bad(status: int, response: httpx.Response, kind: str) -> None:
    body = assert_problem(response, status)
    assert body["type"] == PREFIX + kind, body


@pytest.mark.anyio
async def test_bad_and_expired_cursors_answer_problems_on_pages_and_streams(api: Api) -> None:
    await write_some(api)
    latest = (await page(api, ADMIN_CHANGES + "/latest"))["cursor"]
    ahead = f"{int(latest, 16) + 1:016x}"
    reads = [(AGENT_CHANGES.format(agent="bot"), BOT), (ADMIN_CHANGES, ADMIN)]
    for path, headers in reads:
        for suffix in ("", "/stream"):
            for bad in ("garbage", "ABCDEF0123456789", "0" * 15, ahead, "x" * 2000):
                response = await api.get(path + suffix, params={"since": bad}, headers=headers)
                expired_or_bad(422, response, "invalid-input")
        for bad in ("garbage", ahead):
            response = await api.get(path + "/stream", headers={**headers, "Last-Event-ID": bad})
            expired_or_bad(422, response, "invalid-input")
        for limit in ("0", "1001", "ten"):
            response = await api.get(path, params={"limit": limit}, headers=headers)
            expired_or_bad(422, response, "invalid-input")

    purged = await api.post("/v1/admin/purge",
                            params={"now": (utc_now() + timedelta(days=30)).isoformat()})
    assert purged.status_code == 200, purged.text
    assert purged.json()["changes"] == 5
    for path, headers in reads:
        for suffix in ("", "/stream"):
            response = await api.get(path + suffix, params={"since": ZERO}, headers=headers)
            expired_or_bad(410, response, "cursor-expired")
        response = await api.get(path + "/stream",
                                 headers={**headers, "Last-Event-ID": ZERO})
        expired_or_bad(410, response, "cursor-expired")
        # Last-Event-ID wins over since: a good since does not save an expired event id.
        response = await api.get(path + "/stream", params={"since": latest},
                                 headers={**headers, "Last-Event-ID": ZERO})
        expired_or_bad(410, response, "cursor-expired")
        # the boundary still reads, and since= omitted starts at the oldest kept
        assert await page(api, path, headers, since=latest) == {"changes": [],
                                                                "next_cursor": latest}
        assert await page(api, path, headers) == {"changes": [], "next_cursor": latest}


# --- streams on a real server ------------------------------------------------------------------

END = object()


class Stream:
    """One Server-Sent Events request read on its own thread: events (dicts of id, event and
    data) and comments (strings) go into a queue; after ``stop_after`` events the client drops
    the connection."""

    def __init__(self, url: str, path: str, headers: dict[str, str], *,
                 params: dict[str, str] | None = None, stop_after: int | None = None) -> None:
        self.items: queue.Queue[Any] = queue.Queue()
        self.opened = threading.Event()
        self.status: int | None = None
        self.content_type = ""
        self._args = (url, path, headers, params or {}, stop_after)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self.opened.wait(WAIT), "the stream did not open"

    def _run(self) -> None:
        url, path, headers, params, stop_after = self._args
        events = 0
        try:
            with httpx.Client(base_url=url, timeout=httpx.Timeout(WAIT, read=60)) as client, \
                    client.stream("GET", path, params=params, headers=headers) as response:
                self.status = response.status_code
                self.content_type = response.headers.get("content-type", "")
                self.opened.set()
                if response.status_code != 200:
                    response.read()
                    return
                event: dict[str, str] = {}
                for line in response.iter_lines():
                    if line.startswith(":"):
                        self.items.put(line[1:].strip())
                    elif line:
                        name, _, value = line.partition(":")
                        value = value.removeprefix(" ")
                        event[name] = event[name] + "\n" + value if name in event else value
                    elif event:
                        self.items.put(event)
                        event = {}
                        events += 1
                        if stop_after is not None and events == stop_after:
                            return  # the client drops the connection
        except Exception as exc:
            self.items.put(exc)
        finally:
            self.opened.set()
            self.items.put(END)

    def next(self, timeout: float = WAIT) -> Any:
        try:
            item = self.items.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"the stream sent nothing in {timeout} s")
        if isinstance(item, BaseException):
            raise item
        return item

    def events(self, count: int) -> list[dict[str, str]]:
        got: list[dict[str, str]] = []
        while len(got) < count:
            item = self.next()
            assert item is not END, f"the stream ended after {got}"
            if isinstance(item, dict):
                got.append(item)
        return got

    def ended(self, timeout: float = WAIT) -> None:
        while True:
            item = self.next(timeout)
            if item is END:
                return
            assert not isinstance(item, dict), f"an event more: {item}"

    def quiet(self, seconds: float = 0.3) -> None:
        time.sleep(seconds)
        while not self.items.empty():
            item = self.items.get()
            assert isinstance(item, str), f"an event more: {item}"  # comments only


def assert_events(events: list[dict[str, str]], changes: list[Change]) -> None:
    """Each event is its change: id the cursor, event the kind, data the change as JSON."""
    assert [e["id"] for e in events] == [c.cursor for c in changes]
    assert [e["event"] for e in events] == [c.kind.value for c in changes]
    assert [Change.model_validate_json(e["data"]) for e in events] == changes
    assert all(SECRET not in e["data"] for e in events)


BOT_STREAM = AGENT_CHANGES.format(agent="bot") + "/stream"
ADMIN_STREAM = ADMIN_CHANGES + "/stream"
ALICE, CAROL = key("alice"), key("carol", agent="other")


def say(store: Any, *who: str) -> None:
    """One messages.appended entry each: "bot" to alice, "other" to carol."""
    for agent in who:
        handle = store.for_agent(agent)
        handle.append_messages(ALICE if agent == "bot" else CAROL, [StoredMessage.user(SECRET)])


def started(service: BackgroundService) -> Any:
    """An admin remote store of the service, with alice's and carol's sessions."""
    store = SessionStore.open(service.url, token=ADMIN_TOKEN)
    store.for_agent("bot").get_or_create(ALICE)
    store.for_agent("other").get_or_create(CAROL)
    return store


@pytest.fixture
def served(backend_url: tuple[str, dict[str, Any]]) -> Iterator[tuple[BackgroundService, Any]]:
    """A real server over a fresh database of each backend, and an admin remote store of it."""
    url, options = backend_url
    with BackgroundService(service_config(url, options)) as service, started(service) as store:
        yield service, store


def test_stream_events_carry_the_cursor_the_kind_and_the_change(
        served: tuple[BackgroundService, Any]) -> None:
    service, store = served
    say(store, "bot")  # before the streams start (from now on): never sent
    mark = store.latest_cursor()
    everyone = Stream(service.url, ADMIN_STREAM, ADMIN)
    mine = Stream(service.url, BOT_STREAM, BOT)
    theirs = Stream(service.url, ADMIN_STREAM, ADMIN, params={"agent_id": "other"})
    for stream in (everyone, mine, theirs):
        assert stream.status == 200
        assert stream.content_type.startswith("text/event-stream")

    say(store, "bot", "other", "other", "bot", "other")
    expected = list(store.changes(mark))
    assert len(expected) == 5
    assert_events(everyone.events(5), expected)
    assert_events(mine.events(2), [c for c in expected if c.agent_id == "bot"])
    assert_events(theirs.events(3), [c for c in expected if c.agent_id == "other"])
    for stream in (everyone, mine, theirs):  # nothing more: the agent's never had other's
        stream.quiet(0.2)


def test_a_client_that_reconnects_with_last_event_id_gets_every_later_change_once(
        served: tuple[BackgroundService, Any]) -> None:
    service, store = served
    mark = store.latest_cursor()
    say(store, "bot", "other", "bot", "other")
    for path, headers, agent in ((ADMIN_STREAM, ADMIN, None), (BOT_STREAM, BOT, "bot")):
        first = Stream(service.url, path, headers, params={"since": mark}, stop_after=1)
        got = first.events(1)
        first.ended()  # the client dropped the connection
        say(store, "other", "bot")  # while it is away
        # Last-Event-ID wins over since (a browser's EventSource repeats the URL it opened)
        again = Stream(service.url, path, {**headers, "Last-Event-ID": got[-1]["id"]},
                       params={"since": mark})
        expected = [c for c in store.changes(mark) if agent in (None, c.agent_id)]
        got += again.events(len(expected) - 1)
        say(store, "bot", "other")  # live, after the reconnection
        expected = [c for c in store.changes(mark) if agent in (None, c.agent_id)]
        got += again.events(2 if agent is None else 1)
        again.quiet()
        assert_events(got, expected)  # every change once, in commit order


def test_an_idle_stream_carries_keep_alive_comments(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import fastapi.routing

    assert fastapi.routing._PING_INTERVAL == 15.0  # what the routes' docstring promises
    monkeypatch.setattr(fastapi.routing, "_PING_INTERVAL", 0.2)
    with BackgroundService(service_config(sqlite_url, {})) as service, \
            started(service) as store:
        stream = Stream(service.url, BOT_STREAM, BOT)
        assert stream.next(timeout=5) == "ping"
        assert stream.next(timeout=5) == "ping"
        say(store, "bot")
        event = stream.events(1)[0]  # events still flow between the pings
        assert event["event"] == "messages.appended"


def test_shutting_down_ends_open_streams_promptly(backend_url: tuple[str, dict[str, Any]]
                                                  ) -> None:
    url, options = backend_url
    service = BackgroundService(service_config(url, options))
    try:
        with started(service) as store:
            mark = store.latest_cursor()
        streams = [Stream(service.url, ADMIN_STREAM, ADMIN),
                   Stream(service.url, BOT_STREAM, BOT, params={"since": mark}),
                   Stream(service.url, ADMIN_STREAM, ADMIN, params={"agent_id": "other"})]
        assert all(stream.status == 200 for stream in streams)
        began = time.monotonic()
        service.close()
        took = time.monotonic() - began
        for stream in streams:
            stream.ended(timeout=5)
        print(f"\nshutdown with {len(streams)} open streams took {took:.3f} s")
        assert took < min(5.0, GRACEFUL_SHUTDOWN_SECONDS / 3)
    finally:
        service.close()


def test_a_change_through_one_replica_reaches_a_stream_of_another_within_a_second(
        pg_schema: str) -> None:
    config = service_config(PG_URL, {"schema": pg_schema, "pool_size": 2})
    with BackgroundService(config) as replica_a, BackgroundService(config) as replica_b, \
            started(replica_a) as via_a:
        stream = Stream(replica_b.url, ADMIN_STREAM, ADMIN)
        latencies = []
        for _ in range(3):
            began = time.perf_counter()
            say(via_a, "bot")
            event = stream.events(1)[0]
            latencies.append(time.perf_counter() - began)
            assert event["id"] == via_a.latest_cursor()
        print("\nreplica A write -> SSE event on replica B: "
              + ", ".join(f"{s * 1000:.1f} ms" for s in latencies))
        assert max(latencies) < 1.0, latencies


def test_a_client_that_leaves_leaves_no_watch_behind(sqlite_url: str) -> None:
    with BackgroundService(service_config(sqlite_url, {})) as service, \
            started(service) as store:
        feed = service._server.config.app.state.store._engine.feed
        for path, headers in ((BOT_STREAM, BOT), (ADMIN_STREAM, ADMIN)):
            stream = Stream(service.url, path, headers, stop_after=1)
            say(store, "bot")
            stream.events(1)
            stream.ended()  # the client left
        for _ in range(30):
            if not feed.watched:
                break
            time.sleep(0.05)
        assert not feed.watched, "the server still runs the watches of streams nobody reads"


def test_an_empty_since_is_refused_by_streams_as_by_pages(sqlite_url: str) -> None:
    with BackgroundService(service_config(sqlite_url, {})) as service, \
            httpx.Client(base_url=service.url, timeout=WAIT) as client:
        for path, headers in ((AGENT_CHANGES.format(agent="bot"), BOT), (ADMIN_CHANGES, ADMIN)):
            page = client.get(path, params={"since": ""}, headers=headers)
            expired_or_bad(422, page, "invalid-input")
            # (a stream that starts sends its headers at once: leave before its events)
            with client.stream("GET", path + "/stream", params={"since": ""},
                               headers=headers) as stream:
                if stream.status_code != 200:
                    stream.read()
                status = stream.status_code
            assert status == 422
