"""The store over HTTP, beyond the conformance suite (which runs every store test on it): what only
a remote store has — tokens, the refusals made before any request, the errors of a network."""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aisopod_session import (
    AccessDeniedError,
    AgentSessions,
    AsyncAgentSessions,
    AsyncSessionStore,
    ConflictError,
    InvalidInputError,
    SchemaVersionError,
    SessionKey,
    SessionNotFoundError,
    SessionStore,
    StoredMessage,
    StoreUnavailableError,
)
from aisopod_session.errors import PROBLEM_TYPES
from aisopod_session.service import BackgroundService, ServiceConfig
from aisopod_session.store import _http
from aisopod_session.store._remote_async import AsyncRemoteAgentSessions, AsyncRemoteSessionStore
from aisopod_session.store._remote_sync import RemoteAgentSessions, RemoteSessionStore

ADMIN_TOKEN = "remote-admin-token-0123456789"
BOT_TOKEN = "remote-bot-token-0123456789"
KEY = SessionKey("bot", "discord", "acct", "dm", "alice")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[BackgroundService]:
    config = ServiceConfig.model_validate({
        "database": {"url": f"sqlite:///{tmp_path / 'sessions.db'}"},
        "tokens": [{"token": ADMIN_TOKEN, "role": "admin"},
                   {"token": BOT_TOKEN, "role": "agent", "agent": "bot"}],
    })
    with BackgroundService(config) as running:
        yield running


# --- the same API ------------------------------------------------------------------------------

PAIRS = [(SessionStore, RemoteSessionStore), (AgentSessions, RemoteAgentSessions),
         (AsyncSessionStore, AsyncRemoteSessionStore),
         (AsyncAgentSessions, AsyncRemoteAgentSessions)]
INHERITED = {"open"}  # the one way in, for every URL


@pytest.mark.parametrize(("local", "remote"), PAIRS, ids=lambda c: c.__name__)
def test_remote_classes_implement_every_public_operation(local: type, remote: type) -> None:
    """A public method the remote class did not define would run the local implementation,
    which has no engine here: every one is overridden, with the same parameters."""
    assert issubclass(remote, local)
    public = {name for name in dir(local) if not name.startswith("_")} - INHERITED
    missing = {name for name in public if name not in vars(remote)}
    assert missing == set()
    for name in public:
        mine, theirs = getattr(local, name), getattr(remote, name)
        if callable(mine):
            assert (list(inspect.signature(mine).parameters)
                    == list(inspect.signature(theirs).parameters)), name


def test_the_remote_store_is_what_open_returns_for_an_http_url(
        service: BackgroundService) -> None:
    with SessionStore.open(service.url, token=ADMIN_TOKEN) as store:
        assert isinstance(store, SessionStore) and isinstance(store, RemoteSessionStore)
        assert store.backend == "http+sqlite"
        assert store.durability == "full"
        agent = store.for_agent("bot")
        agent.get_or_create(KEY)
        stored = agent.append_messages(KEY, [StoredMessage.user("hello", external_id="m1")])
        assert agent.get_history(KEY) == stored
        assert store.get_session_by_id(agent.get(KEY).id).message_count == 1


# --- tokens ------------------------------------------------------------------------------------


def test_an_agent_token_gives_its_agent_only_refused_before_any_request(
        service: BackgroundService, tmp_path: Path) -> None:
    store = SessionStore.open(service.url, token=BOT_TOKEN)
    bot = store.for_agent("BOT")  # names are normalised as everywhere
    bot.get_or_create(KEY)
    assert bot.get(KEY).key == KEY
    service.close()  # from here on, a request would fail with StoreUnavailableError
    with pytest.raises(AccessDeniedError):
        store.for_agent("other")
    for admin_call in (store.stats, store.audit_log, lambda: store.get_session_by_id(1),
                       lambda: list(store.export_jsonl()), lambda: store.import_jsonl([]),
                       store.sweep, lambda: store.forget_peer("discord", "alice")):
        with pytest.raises(AccessDeniedError):
            admin_call()
    with pytest.raises(StoreUnavailableError):
        bot.get(KEY)
    store.close()


def test_the_token_comes_from_the_environment(service: BackgroundService,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AISOPOD_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("AISOPOD_DATABASE_URL", service.url)
    with SessionStore.open() as store:
        assert store.for_agent("bot").get_or_create(KEY).key == KEY
        with pytest.raises(AccessDeniedError):
            store.stats()


def test_a_wrong_or_missing_token_is_access_denied(service: BackgroundService) -> None:
    for token in ("not-a-token-of-this-server", None):
        with pytest.raises(AccessDeniedError):
            SessionStore.open(service.url, token=token)


def test_database_options_belong_to_the_server(service: BackgroundService) -> None:
    for option in ({"durability": "normal"}, {"pool_size": 3}, {"schema": "x"}):
        with pytest.raises(InvalidInputError) as refused:
            SessionStore.open(service.url, token=ADMIN_TOKEN, **option)
        assert refused.value.errors[0]["field"] == next(iter(option))
    for option in ({"token": "t"}, {"timeout": 5}):
        with pytest.raises(InvalidInputError):
            SessionStore.open(":memory:", **option)
    with pytest.raises(InvalidInputError):
        SessionStore.open(service.url, token=ADMIN_TOKEN, timeout=0)


# --- a network's failures ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_an_unreachable_server_is_unavailable_and_nothing_was_committed() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(StoreUnavailableError) as failed:
        SessionStore.open(url, token=ADMIN_TOKEN)
    assert failed.value.maybe_committed is False

    async def asyncio_flavour() -> None:
        with pytest.raises(StoreUnavailableError):
            await AsyncSessionStore.open(url, token=ADMIN_TOKEN)

    asyncio.run(asyncio_flavour())


def test_a_server_that_stops_answers_unavailable(service: BackgroundService) -> None:
    store = SessionStore.open(service.url, token=ADMIN_TOKEN)
    store.for_agent("bot").get_or_create(KEY)
    service.close()
    with pytest.raises(StoreUnavailableError) as failed:
        store.for_agent("bot").append_messages(KEY, [StoredMessage.user("lost?")])
    assert failed.value.maybe_committed is False  # the connection was refused: never sent
    store.close()


def _response(status: int, body: Any, method: str = "POST") -> httpx.Response:
    request = httpx.Request(method, "http://server/v1/agents/bot/sessions/x/y/dm/z/messages")
    if isinstance(body, dict):
        return httpx.Response(status, json=body, request=request)
    return httpx.Response(status, text=str(body), request=request)


@pytest.mark.parametrize(("kind", "error"), sorted(PROBLEM_TYPES.items()))
def test_every_problem_type_of_the_service_is_raised_as_its_exception(
        kind: str, error: type[Exception]) -> None:
    raised = _http.error_of(_response(400, {"type": kind, "status": 400, "title": "t",
                                            "detail": "what happened"}), write=True)
    assert type(raised) is error
    assert str(raised) == "what happened"


def test_problem_details_carry_fields_and_maybe_committed() -> None:
    invalid = _http.error_of(_response(422, {
        "type": next(k for k, v in PROBLEM_TYPES.items() if v is InvalidInputError),
        "detail": "messages[0].content: bad", "errors": [
            {"field": "messages[0].content", "message": "bad"}]}), write=True)
    assert isinstance(invalid, InvalidInputError)
    assert invalid.errors == [{"field": "messages[0].content", "message": "bad"}]
    lost = _http.error_of(_response(503, {
        "type": next(k for k, v in PROBLEM_TYPES.items() if v is StoreUnavailableError),
        "detail": "commit lost", "maybe_committed": True}), write=True)
    assert isinstance(lost, StoreUnavailableError) and lost.maybe_committed is True


def test_answers_without_a_problem_type_map_by_status() -> None:
    assert isinstance(_http.error_of(_response(409, {}), write=True), ConflictError)
    assert isinstance(_http.error_of(_response(401, {}), write=True), AccessDeniedError)
    assert isinstance(_http.error_of(_response(413, "too big"), write=True), InvalidInputError)
    crashed = _http.error_of(_response(502, "<html>bad gateway</html>"), write=True)
    assert isinstance(crashed, StoreUnavailableError) and crashed.maybe_committed is True
    read = _http.error_of(_response(500, "oops", method="GET"), write=False)
    assert isinstance(read, StoreUnavailableError) and read.maybe_committed is False
    unknown = _http.error_of(_response(404, "no such route"), write=False)
    assert type(unknown) is StoreUnavailableError  # not a missing session: a wrong server
    assert not isinstance(unknown, SessionNotFoundError | SchemaVersionError)


def test_an_answer_that_is_not_json_is_not_an_aisopod_server() -> None:
    with pytest.raises(StoreUnavailableError, match="did not answer JSON"):
        _http.answer(_response(200, "<html>hello</html>"), write=False)


@pytest.mark.parametrize("url", ["http://127.0.0.1:abc", "http://", "https://"])
def test_an_unusable_url_is_invalid_input(url: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        SessionStore.open(url, token=ADMIN_TOKEN)
    assert refused.value.errors[0]["field"] == "url"


def test_a_token_that_is_not_ascii_is_invalid_input(service: BackgroundService) -> None:
    with pytest.raises(InvalidInputError) as refused:
        SessionStore.open(service.url, token="tök-0123456789")
    assert refused.value.errors[0]["field"] == "token"
