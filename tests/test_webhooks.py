"""Webhooks: the change feed POSTed to a local receiver that verifies every signature with the
``standardwebhooks`` package; every entry arrives, in commit order, also when the receiver fails
the first tries (errors and timeouts); an entry that keeps failing is logged ``failed`` and
delivery goes on; filters; two replicas deliver each entry once, and a duplicate comes only after
a failure (a replica frozen past its lease) and is counted; a stopped replica is taken over; the
service delivers its config's webhooks and shows them (HTTP, remote store, CLI, console).

Replicas are stores of their own (engines, connections) on one database, each running
``deliver_webhooks``: the blocking twin on a thread, or the asyncio one as a task. Figures the
tests measure are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import standardwebhooks

from aisopod_session import (
    AsyncSessionStore,
    Change,
    ChangeKind,
    InvalidInputError,
    Policies,
    RetentionPolicy,
    SessionFilter,
    SessionKey,
    SessionStore,
    StoredMessage,
    Webhook,
    WebhookDelivery,
    WebhookDeliveryStatus,
)
from aisopod_session.service import BackgroundService, load_config
from aisopod_session.service.config import ServiceConfig
from aisopod_session.store import _webhook_dispatch
from tests.test_cli import fails, ok

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
ADMIN_TOKEN = "webhook-admin-token-0123456789"
BOT_TOKEN = "webhook-bot-token-0123456789"
DELIVERED = WebhookDeliveryStatus.DELIVERED


# --- a receiver ----------------------------------------------------------------------------------


class Receiver:
    """An HTTP receiver on a thread. It verifies every request's signature (a bad one is kept in
    ``bad`` and answered 400), counts the tries of each ``webhook-id``, and answers what
    ``plan(path, webhook_id, try_number)`` says: None accepts (204, the delivery is kept in
    ``accepted``), a number is that status, ``"timeout"`` answers too late."""

    STALL_SECONDS = 1.0

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accepted: list[tuple[str, str, dict[str, Any]]] = []
        self.times: list[float] = []  # when each was accepted (time.monotonic)
        self.tries: Counter[str] = Counter()
        self.bad: list[str] = []
        self.plan: Callable[[str, str, int], int | str | None] = lambda *_: None
        verifier = standardwebhooks.Webhook(SECRET)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    payload = verifier.verify(body, dict(self.headers))
                except standardwebhooks.WebhookVerificationError as exc:
                    with receiver.lock:
                        receiver.bad.append(str(exc))
                    self._answer(400)
                    return
                webhook_id = self.headers["webhook-id"]
                with receiver.lock:
                    receiver.tries[webhook_id] += 1
                    attempt = receiver.tries[webhook_id]
                answer = receiver.plan(self.path, webhook_id, attempt)
                if answer == "timeout":
                    time.sleep(Receiver.STALL_SECONDS)
                    self._answer(204)
                    return
                if answer is None:
                    with receiver.lock:
                        receiver.accepted.append((self.path, webhook_id, payload))
                        receiver.times.append(time.monotonic())
                    self._answer(204)
                    return
                assert isinstance(answer, int)
                self._answer(answer)

            def _answer(self, status: int) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the sender gave up (a timeout)
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def cursors(self, path: str) -> list[str]:
        with self.lock:
            return [payload["data"]["cursor"] for where, _, payload in self.accepted
                    if where == path]

    def ids(self, path: str) -> list[str]:
        with self.lock:
            return [webhook_id for where, webhook_id, _ in self.accepted if where == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()
    assert found.bad == []  # every request carried a valid signature


def hook(receiver: Receiver, name: str = "main", **options: Any) -> Webhook:
    options = {"backoff_seconds": 0.01, "max_backoff_seconds": 0.05, "timeout_seconds": 2.0,
               **options}
    return Webhook(name=name, url=receiver.url(f"/{name}"), secret=SECRET, **options)


# --- replicas and writes -------------------------------------------------------------------------


class Replica:
    """A store of its own delivering ``hooks`` on a thread (the blocking ``deliver_webhooks``)
    until :meth:`stop` closes the store."""

    def __init__(self, url: str, options: dict[str, Any], hooks: list[Webhook], owner: str,
                 lease: float = 2.0, on_outcome: Callable[[WebhookDelivery], None] | None = None
                 ) -> None:
        self.store = SessionStore.open(url, **options)
        self.owner = owner
        self.thread = threading.Thread(
            target=self.store.deliver_webhooks, args=(hooks,), daemon=True,
            kwargs={"owner": owner, "lease_seconds": lease, "on_outcome": on_outcome})
        self.thread.start()

    def stop(self) -> None:
        self.store.close()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


def wait_until(check: Callable[[], bool], seconds: float = 15.0) -> float:
    """Wait for ``check``; how long it took."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, "timed out"
        time.sleep(0.005)
    return time.monotonic() - started


def started(store: SessionStore, *names: str) -> str:
    """Wait until every named webhook was claimed; the feed position they start after."""
    wait_until(lambda: {s.name for s in store.webhook_states()} >= set(names))
    return store.latest_cursor()


def write(store: SessionStore, count: int, agent: str = "bot", peers: int = 3) -> None:
    """``count`` feed entries of ``agent``: a session per peer that has none, then appends."""
    handle = store.for_agent(agent)
    keys = [SessionKey(agent, "discord", "acct", "dm", f"peer-{n}") for n in range(peers)]
    made = 0
    for key in keys:
        if made < count and not handle.list(SessionFilter(peer_id=key.peer_id)):
            handle.get_or_create(key)
            made += 1
    for n in range(count - made):
        handle.append_messages(keys[n % peers], [StoredMessage.user(f"message {n}")])


def one_more(store: SessionStore) -> None:
    """One more feed entry (an append to the first session :func:`write` made)."""
    key = SessionKey("bot", "discord", "acct", "dm", "peer-0")
    store.for_agent("bot").append_messages(key, [StoredMessage.user("one more")])


def feed(store: SessionStore, since: str) -> list[Change]:
    return list(store.changes(since, limit=1000))


def backend(url: str) -> str:
    return "postgres" if url.startswith("postgresql") else "sqlite"


# --- delivery ------------------------------------------------------------------------------------


def test_every_entry_arrives_in_commit_order_signed_and_logged(
        backend_url: tuple[str, dict[str, Any]], receiver: Receiver) -> None:
    """Entries written while the worker ran arrive as they commit; a backlog written while it was
    stopped arrives when it starts again (it goes on after the last entry it logged)."""
    url, options = backend_url
    replica = Replica(url, options, [hook(receiver)], "replica-a")
    start = started(replica.store, "main")
    write(replica.store, 40)
    wait_until(lambda: replica.store.webhook_states()[0].behind == 0)  # all 40 logged
    replica.stop()
    with SessionStore.open(url, **options) as writer:
        write(writer, 300)
    restarted = time.monotonic()  # the same owner: its lease is its own at once
    replica = Replica(url, options, [hook(receiver)], "replica-a")
    store = replica.store
    try:
        backlog = wait_until(lambda: len(receiver.accepted) == 340)
        latencies = []
        for _ in range(20):
            before = len(receiver.accepted)
            one_more(store)
            committed = time.monotonic()
            wait_until(lambda before=before: len(receiver.accepted) > before)
            latencies.append(receiver.times[-1] - committed)
        latencies.sort()
        print(f"\n{backend(url)}: a backlog of 300 entries delivered in {backlog:.2f}s "
              f"after the restart ({300 / (receiver.times[339] - restarted):.0f}/s "
              f"one at a time); from commit to receipt: median "
              f"{latencies[10] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")
        changes = feed(store, start)
        assert len(changes) == 360
        assert receiver.cursors("/main") == [c.cursor for c in changes]
        for (_, webhook_id, payload), change in zip(receiver.accepted, changes, strict=True):
            assert webhook_id == f"main_{change.cursor}"
            assert payload == {"type": change.kind.value,
                               "timestamp": change.model_dump(mode="json")["at"],
                               "data": change.model_dump(mode="json")}
        assert set(receiver.tries.values()) == {1}
        wait_until(lambda: store.webhook_states()[0].behind == 0)
        log = store.webhook_deliveries("main", limit=1000)
        assert [d.cursor for d in reversed(log)] == [c.cursor for c in changes]
        assert {(d.status, d.attempts, d.http_status, d.error, d.lease_lost, d.delivered_by)
                for d in log} == {(DELIVERED, 1, 204, None, False, "replica-a")}
        state = store.webhook_states()[0]
        assert (state.delivered, state.failed, state.duplicates, state.holder) == (
            len(changes), 0, 0, "replica-a")
    finally:
        replica.stop()


def test_a_receiver_that_fails_the_first_tries_still_gets_every_entry(
        tmp_path: Path, receiver: Receiver) -> None:
    """Every third entry fails twice (a 500, then no answer in time) before it is taken."""
    outcomes: list[WebhookDelivery] = []
    replica = Replica(str(tmp_path / "s.db"), {}, [hook(receiver, timeout_seconds=0.3)],
                      "replica-a", on_outcome=outcomes.append)
    store = replica.store
    order: list[str] = []

    def plan(path: str, webhook_id: str, attempt: int) -> int | str | None:
        if webhook_id not in order:
            order.append(webhook_id)
        if order.index(webhook_id) % 3 == 0 and attempt <= 2:
            return 500 if attempt == 1 else "timeout"
        return None

    receiver.plan = plan
    try:
        start = started(store, "main")
        write(store, 12)
        changes = feed(store, start)
        wait_until(lambda: len(receiver.accepted) >= len(changes))
        assert receiver.cursors("/main") == [c.cursor for c in changes]  # in order, once each
        wait_until(lambda: store.webhook_states()[0].behind == 0)  # the last one logged too
        log = {d.cursor: d for d in store.webhook_deliveries("main", limit=100)}
        for index, change in enumerate(changes):
            delivery = log[change.cursor]
            assert delivery.status is DELIVERED and delivery.http_status == 204
            if index % 3 == 0:
                assert delivery.attempts == 3
                assert delivery.error == "no answer within 0.3s"  # the last failed try's
                assert [o.status.value for o in outcomes if o.cursor == change.cursor] == [
                    "retrying", "retrying", "delivered"]
                assert receiver.tries[f"main_{change.cursor}"] == 3
            else:
                assert (delivery.attempts, delivery.error) == (1, None)
        assert store.webhook_states()[0].failed == 0
    finally:
        replica.stop()


def test_an_entry_that_keeps_failing_is_logged_failed_and_delivery_goes_on(
        tmp_path: Path, receiver: Receiver) -> None:
    replica = Replica(str(tmp_path / "s.db"), {}, [hook(receiver, max_attempts=3)], "replica-a")
    store = replica.store
    try:
        start = started(store, "main")
        order: list[str] = []

        def plan(path: str, webhook_id: str, attempt: int) -> int | None:
            if webhook_id not in order:
                order.append(webhook_id)
            return 503 if order.index(webhook_id) == 2 else None  # the third entry, always

        receiver.plan = plan
        write(store, 8)
        changes = feed(store, start)
        poison = changes[2].cursor
        wait_until(lambda: len(receiver.accepted) >= len(changes) - 1)
        assert receiver.cursors("/main") == [c.cursor for c in changes if c.cursor != poison]
        assert receiver.tries[f"main_{poison}"] == 3
        [failed] = store.webhook_deliveries(status="failed")
        assert (failed.cursor, failed.attempts, failed.http_status, failed.error) == (
            poison, 3, 503, "HTTP 503")
        wait_until(lambda: store.webhook_states()[0].behind == 0)
        state = store.webhook_states()[0]
        assert (state.delivered, state.failed) == (len(changes) - 1, 1)
        assert len(store.webhook_deliveries(status=DELIVERED, limit=100)) == len(changes) - 1
    finally:
        replica.stop()


def test_filters_by_agent_and_kind(tmp_path: Path, receiver: Receiver) -> None:
    hooks = [hook(receiver, "all"), hook(receiver, "bot", agents=("BOT",)),
             hook(receiver, "created", kinds=(ChangeKind.SESSION_CREATED,)),
             hook(receiver, "two", agents=("bot", "helper"),
                  kinds=(ChangeKind.MESSAGES_APPENDED,))]
    replica = Replica(str(tmp_path / "s.db"), {}, hooks, "replica-a", lease=0.3)
    store = replica.store
    try:
        start = started(store, *(h.name for h in hooks))
        for agent in ("bot", "helper", "other"):
            write(store, 5, agent=agent, peers=2)
        changes = feed(store, start)
        for each in hooks:
            wanted = [c.cursor for c in changes if each.matches(c)]
            wait_until(lambda each=each, wanted=wanted: len(receiver.cursors(f"/{each.name}"))
                       >= len(wanted))
            assert receiver.cursors(f"/{each.name}") == wanted, each.name
        assert len(receiver.cursors("/all")) == 15 and len(receiver.cursors("/bot")) == 5
        assert len(receiver.cursors("/created")) == 6 and len(receiver.cursors("/two")) == 6
        # the filtered webhooks' positions move past what they skip (saved by their renewals)
        wait_until(lambda: {s.behind for s in store.webhook_states()} == {0})
    finally:
        replica.stop()


def test_a_webhook_behind_the_feed_s_retention_skips_and_counts_what_was_pruned(
        tmp_path: Path, receiver: Receiver) -> None:
    path = str(tmp_path / "s.db")
    replica = Replica(path, {}, [hook(receiver)], "replica-a")
    started(replica.store, "main")
    replica.stop()
    with SessionStore.open(path, policies=Policies(
            retention=RetentionPolicy(changes=timedelta(days=1)))) as store:
        write(store, 5)
        assert store.purge(datetime.now(UTC) + timedelta(days=2)).changes == 5
    replica = Replica(path, {}, [hook(receiver)], "replica-b")
    try:
        wait_until(lambda: replica.store.webhook_states()[0].skipped == 5)
        write(replica.store, 2)
        wait_until(lambda: len(receiver.accepted) == 2)
    finally:
        replica.stop()


def test_bad_arguments_are_refused_before_anything_runs(tmp_path: Path) -> None:
    with SessionStore.open(str(tmp_path / "s.db")) as store:
        receiver_url = "http://127.0.0.1:9/x"
        one = Webhook(name="a", url=receiver_url, secret=SECRET)
        for webhooks, options in (([one, one], {}), ([one], {"lease_seconds": 0}),
                                  ("a", {}), ([{"name": "a"}], {}), ([one], {"owner": ""})):
            with pytest.raises(InvalidInputError):
                store.deliver_webhooks(webhooks, **options)  # type: ignore[arg-type]
        store.deliver_webhooks([])  # nothing to deliver: returns at once
        for bad in ({"webhook": "Not A Name"}, {"status": "gone"}, {"limit": 0}):
            with pytest.raises(InvalidInputError):
                store.webhook_deliveries(**bad)
    for field, value in (("secret", "whsec_short"), ("secret", "not-whsec"),
                         ("url", "ftp://example.com"), ("url", "https://user:pw@example.com/"),
                         ("name", "Has Spaces"), ("kinds", ["no.such.kind"]),
                         ("max_attempts", 0)):
        with pytest.raises(InvalidInputError) as raised:
            Webhook(**{"name": "a", "url": "https://example.com/", "secret": SECRET,
                       field: value})
        assert raised.value.errors[0]["field"].startswith(field)
        assert SECRET not in str(raised.value)


# --- replicas ------------------------------------------------------------------------------------


def test_two_replicas_deliver_each_entry_once(backend_url: tuple[str, dict[str, Any]],
                                              receiver: Receiver) -> None:
    url, options = backend_url
    hooks = [hook(receiver, name) for name in ("a", "b", "c")]
    replicas = [Replica(url, options, hooks, f"replica-{n}") for n in (1, 2)]
    try:
        start = started(replicas[0].store, "a", "b", "c")
        writers = [threading.Thread(target=write, args=(r.store, 40), kwargs={"agent": agent})
                   for r, agent in zip(replicas, ("bot", "helper"), strict=True)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        changes = feed(replicas[0].store, start)
        assert len(changes) == 80
        wait_until(lambda: len(receiver.accepted) >= 3 * len(changes))
        wait_until(lambda: {s.behind for s in replicas[0].store.webhook_states()} == {0})
        time.sleep(0.1)  # nothing more arrives
        ids = Counter(webhook_id for _, webhook_id, _ in receiver.accepted)
        assert set(ids.values()) == {1} and len(ids) == 3 * len(changes)
        for each in hooks:
            assert receiver.cursors(f"/{each.name}") == [c.cursor for c in changes]
        log = replicas[0].store.webhook_deliveries(limit=1000)
        by = Counter((d.webhook, d.delivered_by) for d in log)
        print(f"\n{backend(url)}: {len(changes)} entries x 3 webhooks, 2 replicas: "
              f"{sum(ids.values())} deliveries, 0 duplicates; by worker: {dict(by)}")
        assert all(s.duplicates == 0 for s in replicas[0].store.webhook_states())
    finally:
        for replica in replicas:
            replica.stop()


def test_a_duplicate_comes_only_after_a_failure_and_is_counted(
        backend_url: tuple[str, dict[str, Any]], receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Replica A freezes (its thread, so its event loop and its renewals) after the receiver
    took its fifth entry and before A logged it: B takes the lease over and delivers that entry
    again. A's late log is kept, marked lease_lost, and counted; it moves nothing."""
    url, options = backend_url
    lease = 0.4
    frozen: list[str] = []

    def freeze(owner: str, cursor: str) -> None:
        if owner == "replica-a" and not frozen and len(receiver.accepted) == 5:
            frozen.append(cursor)
            time.sleep(lease * 3)

    monkeypatch.setattr(_webhook_dispatch, "after_answer", freeze)
    a = Replica(url, options, [hook(receiver)], "replica-a", lease=lease)
    try:
        start = started(a.store, "main")
        b = Replica(url, options, [hook(receiver)], "replica-b", lease=lease)
        try:
            write(a.store, 20)
            changes = feed(a.store, start)
            wait_until(lambda: len(receiver.accepted) >= len(changes) + 1)
            wait_until(lambda: a.store.webhook_states()[0].behind == 0)
            wait_until(lambda: a.store.webhook_states()[0].duplicates == 1)  # A's late log
            time.sleep(0.1)
            ids = Counter(webhook_id for _, webhook_id, _ in receiver.accepted)
            duplicated = {webhook_id: n for webhook_id, n in ids.items() if n > 1}
            assert duplicated == {f"main_{frozen[0]}": 2}
            assert set(ids) == {f"main_{c.cursor}" for c in changes}
            log = a.store.webhook_deliveries(limit=1000)
            lost = [d for d in log if d.lease_lost]
            assert [(d.cursor, d.delivered_by, d.status) for d in lost] == [
                (frozen[0], "replica-a", DELIVERED)]
            assert {d.delivered_by for d in log if d.cursor == frozen[0]} == {
                "replica-a", "replica-b"}
            state = a.store.webhook_states()[0]
            assert (state.delivered, state.duplicates) == (len(changes), 1)
            print(f"\n{backend(url)}: {len(changes)} entries, replica A frozen "
                  f"{lease * 3:.1f}s (lease {lease}s) after a send: {len(duplicated)} duplicate "
                  f"({frozen[0]}), counted in the log and the state")
        finally:
            b.stop()
    finally:
        a.stop()


def test_a_stopped_replica_is_taken_over(tmp_path: Path, receiver: Receiver) -> None:
    """A replica that stops cleanly gives its lease up: the other takes over within its poll.
    One whose store just closes (as a crash would) is taken over when its lease expires."""
    path = str(tmp_path / "s.db")

    async def clean_stop() -> float:
        a = await AsyncSessionStore.open(path)
        b = await AsyncSessionStore.open(path)
        first = asyncio.create_task(a.deliver_webhooks([hook(receiver)], owner="a",
                                                       lease_seconds=2.0))
        while not await a.webhook_states():
            await asyncio.sleep(0.01)
        second = asyncio.create_task(b.deliver_webhooks([hook(receiver)], owner="b",
                                                        lease_seconds=2.0))
        await asyncio.sleep(0.1)
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        stopped = time.monotonic()
        agent = a.for_agent("bot")
        await agent.get_or_create(SessionKey("bot", "discord", "acct", "dm", "x"))
        while len(receiver.accepted) < 1:
            await asyncio.sleep(0.002)
        took = time.monotonic() - stopped
        while not await b.webhook_deliveries():  # logged just after the answer
            await asyncio.sleep(0.002)
        assert (await b.webhook_deliveries())[0].delivered_by == "b"
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)
        assert (await a.webhook_states())[0].holder is None  # given up at the end
        await a.close()
        await b.close()
        return took

    clean = asyncio.run(clean_stop())
    lease = 0.5
    a = Replica(path, {}, [hook(receiver)], "crash-a", lease=lease)
    wait_until(lambda: a.store.webhook_states()[0].holder == "crash-a")
    b = Replica(path, {}, [hook(receiver)], "crash-b", lease=lease)
    try:
        time.sleep(0.1)
        a.stop()  # the store closes under it: the lease stays until it expires
        stopped = time.monotonic()
        write(b.store, 1, peers=1)
        crash = wait_until(lambda: len(receiver.accepted) == 2)
        wait_until(lambda: len(b.store.webhook_deliveries()) == 2)
        assert b.store.webhook_deliveries()[0].delivered_by == "crash-b"
    finally:
        b.stop()
    print(f"\ntakeover: {clean * 1000:.0f} ms after a clean stop (lease 2 s), "
          f"{crash * 1000:.0f} ms after a crash (lease {lease} s)")
    assert clean < 1.5  # well inside the 2 s lease: it was given up
    assert lease * 0.5 < crash < lease + 2.0
    assert time.monotonic() > stopped


# --- the service ---------------------------------------------------------------------------------


def service_config(path: Path, receiver: Receiver) -> ServiceConfig:
    return ServiceConfig.model_validate({
        "database": {"url": str(path)},
        "tokens": [{"token": ADMIN_TOKEN, "role": "admin"},
                   {"token": BOT_TOKEN, "role": "agent", "agent": "bot"}],
        "webhooks": [{"name": "main", "url": receiver.url("/main"), "secret": SECRET,
                      "agents": ["bot"], "backoff_seconds": 0.01}],
    })


def test_the_service_delivers_its_webhooks_and_shows_them(tmp_path: Path,
                                                          receiver: Receiver) -> None:
    path = tmp_path / "s.db"
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with BackgroundService(service_config(path, receiver)) as service, \
            SessionStore.open(service.url, token=ADMIN_TOKEN) as remote:
        wait_until(lambda: bool(remote.webhook_states()))
        write(remote, 6)
        wait_until(lambda: len(receiver.accepted) == 6)
        wait_until(lambda: remote.webhook_states()[0].behind == 0)
        # the remote store reads the log and the state; it never delivers
        assert [d.status for d in remote.webhook_deliveries("main", limit=3)] == [DELIVERED] * 3
        assert remote.webhook_deliveries(status="failed") == []
        assert remote.webhook_states()[0].delivered == 6
        with pytest.raises(InvalidInputError, match="delivered by the service"):
            remote.deliver_webhooks([hook(receiver)])
        with httpx.Client(base_url=service.url, headers=admin) as client:
            listed = client.get("/v1/admin/webhooks")
            assert listed.status_code == 200
            assert SECRET not in listed.text and "secret" not in listed.text
            [main] = listed.json()
            assert (main["name"], main["url"], main["agents"]) == (
                "main", receiver.url("/main"), ["bot"])
            assert main["state"]["delivered"] == 6 and main["state"]["holder"]
            page = client.get("/v1/admin/webhooks/deliveries",
                              params={"webhook": "main", "status": "delivered", "limit": 2})
            assert [d["attempts"] for d in page.json()] == [1, 1]
            for bad in ({"status": "gone"}, {"webhook": "Bad Name"}, {"limit": 0},
                        {"hook": "main"}):
                assert client.get("/v1/admin/webhooks/deliveries",
                                  params=bad).status_code == 422, bad
            assert client.get("/v1/admin/webhooks/deliveries?status=failed&status=delivered"
                              ).status_code == 422
            assert client.get("/v1/admin/webhooks", headers={
                "Authorization": f"Bearer {BOT_TOKEN}"}).status_code == 403
            metrics = client.get("/metrics").text
            assert 'aisopod_webhook_outcomes_total{status="delivered",webhook="main"} 6.0' \
                in metrics
            # the console's page, for admins
            console = httpx.Client(base_url=service.url)
            console.post("/console/login", data={"token": ADMIN_TOKEN, "next": "/console/"})
            html = console.get("/console/webhooks")
            assert html.status_code == 200 and "main" in html.text
            assert SECRET not in html.text and "No delivery ran out of tries." in html.text
            console.cookies.clear()
            console.post("/console/login", data={"token": BOT_TOKEN, "next": "/console/"})
            assert console.get("/console/webhooks").status_code == 403
            console.close()
        # the CLI, through the server
        shown = json.loads(ok(["--server", service.url, "--token", ADMIN_TOKEN, "webhooks",
                               "deliveries", "--webhook", "main", "--limit", "4",
                               "--json"]).stdout)
        assert len(shown) == 4 and {d["status"] for d in shown} == {"delivered"}
        table = ok(["--server", service.url, "--token", ADMIN_TOKEN, "webhooks", "status"])
        assert "main" in table.stdout
        assert "admin" in fails(["--server", service.url, "--token", BOT_TOKEN, "webhooks",
                                 "deliveries"])
    # the service gave its lease up when it stopped
    with SessionStore.open(str(path)) as store:
        assert store.webhook_states()[0].holder is None


def test_the_cli_reads_the_log_of_a_database(tmp_path: Path, receiver: Receiver) -> None:
    path = tmp_path / "s.db"
    replica = Replica(str(path), {}, [hook(receiver, max_attempts=1)], "replica-a")
    try:
        started(replica.store, "main")
        receiver.plan = lambda path, webhook_id, attempt: 500
        write(replica.store, 2, peers=2)
        wait_until(lambda: replica.store.webhook_states()[0].failed == 2)
    finally:
        replica.stop()
    failed = json.loads(ok(["--db", str(path), "webhooks", "deliveries", "--status", "failed",
                            "--json"]).stdout)
    assert [(d["status"], d["http_status"], d["error"]) for d in failed] == [
        ("failed", 500, "HTTP 500")] * 2
    assert "HTTP 500" in ok(["--db", str(path), "webhooks", "deliveries"]).stdout
    assert json.loads(ok(["--db", str(path), "webhooks", "deliveries", "--status", "delivered",
                          "--json"]).stdout) == []
    assert "bogus" in fails(["--db", str(path), "webhooks", "deliveries", "--status", "bogus"],
                            code=2)


def test_the_config_file_takes_webhooks(tmp_path: Path) -> None:
    config = tmp_path / "service.toml"
    config.write_text(f'''
[[webhooks]]
name = "crm"
url = "https://crm.example.com/hooks"
secret = "{SECRET}"
agents = ["Support-Bot"]
kinds = ["session.created", "messages.appended"]
max_attempts = 5
''', "utf-8")
    [crm] = load_config(config, env={}).webhooks
    assert (crm.name, crm.agents, crm.max_attempts) == ("crm", ("support-bot",), 5)
    assert crm.kinds == (ChangeKind.SESSION_CREATED, ChangeKind.MESSAGES_APPENDED)
    config.write_text(f'[[webhooks]]\nname = "crm"\nurl = "https://x/"\nsecret = "{SECRET}"\n'
                      f'[[webhooks]]\nname = "crm"\nurl = "https://y/"\nsecret = "{SECRET}"\n',
                      "utf-8")
    with pytest.raises(InvalidInputError, match="same name"):
        load_config(config, env={})
    config.write_text('[[webhooks]]\nname = "crm"\nurl = "https://x/"\nsecret = "whsec_abc"\n',
                      "utf-8")
    with pytest.raises(InvalidInputError, match=r"webhooks\.0\.secret") as raised:
        load_config(config, env={})
    assert "whsec_abc" not in str(raised.value)
