"""Errors are RFC 9457 problems with the right status, say nothing about the internals, and no
input makes the server answer 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from aisopod_session.service.app import create_app
from aisopod_session.service.config import ServiceConfig
from tests.service.conftest import (
    Api,
    assert_no_internals,
    assert_problem,
    message,
    serving,
    session_path,
)

pytestmark = pytest.mark.anyio

JSON = {"content-type": "application/json"}


@pytest.mark.parametrize("body", [
    b"{", b'{"messages": [}', b"\xff\xfe", b'{"messages": []} trailing', b"[" * 5000,
])
async def test_malformed_json_is_400(shared_api: Api, body: bytes) -> None:
    api = shared_api
    await api.put_session()
    problem = assert_problem(
        await api.post(session_path(suffix="/messages"), content=body, headers=JSON), 400)
    assert "JSON" in problem["detail"] or "pars" in problem["detail"]
    assert_problem(await api.patch(session_path(), content=body, headers=JSON), 400)


async def test_not_found_and_method_not_allowed(api: Api) -> None:
    problem = assert_problem(await api.get(session_path(peer="ghost")), 404)
    assert "ghost" in problem["detail"]
    assert_problem(await api.get("/v1/nothing/here"), 404)
    assert_problem(await api.get("/v1/agents/bot/sessions/too/few"), 404)
    response = await api.post("/v1/admin/stats")
    not_allowed = assert_problem(response, 405)
    assert not_allowed["title"] == "Method not allowed"
    assert response.headers["allow"] == "GET"


@pytest.fixture
def small_body_config(config: ServiceConfig) -> ServiceConfig:
    return config.model_copy(update={"server": config.server.model_copy(
        update={"max_body_bytes": 2048})})


async def test_body_over_the_limit_is_413(small_body_config: ServiceConfig) -> None:
    async with serving(create_app(small_body_config)) as api:
        await api.put_session()
        url = session_path(suffix="/messages")
        fits = await api.post(url, json={"messages": [message("x" * 1500)]})
        assert fits.status_code == 200, fits.text
        big = {"messages": [message("x" * 3000)]}
        problem = assert_problem(await api.post(url, json=big), 413)
        assert "2048" in problem["detail"]

        async def streamed() -> AsyncIterator[bytes]:  # no content-length: counted as it comes
            yield b'{"messages": [{"role": "user", "content": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'"}]}'

        assert_problem(await api.post(url, content=streamed(), headers=JSON), 413)
        assert_problem(await api.patch(session_path(),
                                       json={"metadata": {"k": "v" * 4000}}), 413)
        history = (await api.get(url)).json()
        assert [len(m["content"]) for m in history] == [1500]
        # Imports stream line by line and are not bound by the request limit.
        export = (await api.get("/v1/admin/export")).content
        assert len(export) > 2048
        await api.delete("/v1/admin/sessions", params={"confirm": "true"})
        imported = await api.post("/v1/admin/import", content=export)
        assert imported.status_code == 200, imported.text


INVALID: list[Any] = [
    pytest.param("PUT", session_path(peer="a\nb"), None, "peer_id", id="control-char-in-key"),
    pytest.param("PUT", session_path(peer="   "), None, "peer_id", id="blank-peer"),
    pytest.param("PUT", session_path(kind="channel"), None, "peer_kind", id="bad-peer-kind"),
    pytest.param("PUT", session_path(kind="thread", peer="no-slash"), None, "peer_id",
                 id="thread-without-group"),
    pytest.param("PUT", session_path(peer="x" * 300), None, "peer_id", id="long-peer"),
    pytest.param("PUT", "/v1/agents/bot/sessions/discord/acct/dm/%FF", None, "peer_id",
                 id="not-utf8"),
    pytest.param("GET", "/v1/agents/%C3/sessions", None, "agent_id", id="not-utf8-agent"),
    pytest.param("POST", session_path(suffix="/messages"),
                 {"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role",
                 id="bad-role"),
    pytest.param("POST", session_path(suffix="/messages"),
                 {"messages": [{"role": "user"}]}, "messages.0.content", id="no-content"),
    pytest.param("POST", session_path(suffix="/messages"),
                 {"messages": [message("x", created_at="2024-01-01T00:00:00")]},
                 "messages", id="naive-created-at"),
    pytest.param("POST", session_path(suffix="/messages"),
                 {"messages": [message("x", created_at="589")]}, "messages",
                 id="numeric-created-at"),
    pytest.param("POST", session_path(suffix="/messages"),
                 {"messages": [message("x", token_count=-1)]}, "messages.0.token_count",
                 id="negative-tokens"),
    pytest.param("POST", session_path(suffix="/messages"),
                 {"messages": [message("x", token_count=10**30)]}, "messages.0.token_count",
                 id="huge-tokens"),
    pytest.param("POST", session_path(suffix="/messages"), {"messages": "hi"}, "messages",
                 id="messages-not-a-list"),
    pytest.param("POST", session_path(suffix="/messages"),
                 {"messages": [message("x", id=7)]}, "messages.0.id", id="client-sets-id"),
    pytest.param("POST", session_path(suffix="/messages"),
                 {"messages": [message("x", compacted=False)]}, "messages.0.compacted",
                 id="client-sets-compacted"),
    pytest.param("POST", session_path(suffix="/messages"), {"messages": [], "extra": 1},
                 "extra", id="unknown-field"),
    pytest.param("POST", session_path(suffix="/messages"), [], "body", id="body-not-object"),
    pytest.param("PATCH", session_path(), {"token_usage": 1, "add_tokens": 1}, "add_tokens",
                 id="two-token-changes"),
    pytest.param("PATCH", session_path(), {"status": "deleted"}, "status", id="bad-status"),
    pytest.param("PATCH", session_path(), {"metadata": {"": 1}}, "metadata",
                 id="empty-metadata-key"),
    pytest.param("POST", session_path(suffix="/compact"), {"kind": "shrink"}, "body",
                 id="unknown-strategy"),
    pytest.param("GET", session_path(suffix="/messages?limit=0"), None, "limit", id="limit-0"),
    pytest.param("GET", session_path(suffix="/messages?offset=-1"), None, "offset",
                 id="negative-offset"),
    pytest.param("GET", session_path(suffix="/messages?tail=maybe"), None, "tail",
                 id="bad-bool"),
    pytest.param("GET", session_path(suffix="/messages?after=yesterday"), None, "after",
                 id="bad-datetime"),
    pytest.param("GET", session_path(suffix="/messages?after=589"), None, "after",
                 id="numeric-datetime"),
    pytest.param("GET", session_path(suffix="/messages?before=2024-01-01T00:00:00"), None,
                 "before", id="naive-datetime"),
    pytest.param("GET", "/v1/agents/bot/sessions?limit=1001", None, "limit", id="page-too-big"),
    pytest.param("GET", "/v1/agents/bot/sessions?status=gone", None, "status.0",
                 id="bad-status-filter"),
    pytest.param("GET", "/v1/agents/bot/sessions?cursor=abc", None, "cursor",
                 id="bad-cursor"),
    pytest.param("GET", "/v1/agents/bot/sessions?chanel=slack", None, "chanel",
                 id="unknown-query-parameter"),
    pytest.param("GET", "/v1/agents/bot/sessions?limit=1&limit=2", None, "limit",
                 id="repeated-query-parameter"),
    pytest.param("GET", "/v1/agents/bot/sessions?created_after=10000-01-01T00:00:00Z", None,
                 "created_after", id="year-10000"),
    pytest.param("GET", "/v1/admin/sessions?agent_id=%01", None, "agent_id",
                 id="control-char-in-filter"),
    pytest.param("GET", "/v1/admin/export?agent_id=%20", None, "agent_id", id="blank-agent"),
    pytest.param("GET", "/v1/admin/sessions/99999999999999999999", None, "session_id",
                 id="id-out-of-range"),
]


@pytest.mark.parametrize(("method", "url", "body", "field"), INVALID)
async def test_bad_input_is_422_naming_the_field(shared_api: Api, method: str, url: str, body: Any,
                                                  field: str) -> None:
    api = shared_api
    await api.put_session()
    response = await api.request(method, url, json=body)
    problem = assert_problem(response, 422)
    fields = [error["field"] for error in problem["errors"]]
    assert field in fields or any(f.startswith(field) for f in fields), problem
    assert problem["detail"]


WEIRD: list[Any] = [
    ("POST", "/messages", b'{"messages": [{"role": "user", "content": NaN}]}'),
    ("POST", "/messages", b'{"messages": [{"role": "user", "content": 1e999}]}'),
    ("POST", "/messages", b'{"messages": [{"role": "user", "content": "\\ud800"}]}'),
    ("POST", "/messages", b'{"messages": [{"role": "user", "content": "a\\u0000b"}]}'),
    ("POST", "/messages", b'{"messages": [{"role": "user", "content": {"\\u0000": 1}}]}'),
    ("POST", "/messages",
     b'{"messages": [{"role": "user", "content": 123456789012345678901234567890}]}'),
    ("POST", "/messages", b'{"messages": [{"role": "user", "content": "x", '
                          b'"created_at": "9999-12-31T23:59:59-23:59"}]}'),
    ("POST", "/messages", b'{"messages": [{"role": "user", "content": "x", '
                          b'"external_id": "' + b"e" * 5000 + b'"}]}'),
    ("POST", "/messages", b'{"messages": [{"role": "user", "content": "x", "id": 0}]}'),
    ("POST", "/messages", b'{"messages": [{"role": "user", "content": "x", '
                          b'"compacted": "yes"}]}'),
    ("POST", "/messages", b"null"),
    ("POST", "/messages", b'"messages"'),
    ("POST", "/messages", b""),
    ("POST", "/messages", b"\xef\xbb\xbf{}"),
    ("PATCH", "", b'{"token_usage": 9223372036854775807}'),
    ("PATCH", "", b'{"add_tokens": 9223372036854775807}'),
    ("PATCH", "", b'{"metadata": {"k": "\\u0000"}}'),
    ("PATCH", "", b'{"metadata": {"' + b"k" * 300 + b'": 1}}'),
    ("PATCH", "", b'{"metadata": []}'),
    ("PATCH", "", b'{"replace_metadata": 1}'),
    ("POST", "/compact", b'{"kind": "summarize", "summary": "\\u0000"}'),
    ("POST", "/compact", b'{"kind": "summarize", "summary": "s", "keep_recent": -1}'),
    ("POST", "/compact", b'{"kind": "truncate_tool_results", "max_chars": 1}'),
    ("POST", "/compact", b'{"kind": "sliding_window", "max_messages": 99999999999999999999}'),
    ("GET", "/messages?limit=99999999999999999999", None),
    ("GET", "/messages?offset=9999999999", None),
    ("GET", "/messages?after=0001-01-01T00:00:00%2B01:00", None),
    ("GET", "/messages?include_compacted=%00", None),
]


@pytest.mark.parametrize(("method", "suffix", "body"), WEIRD)
async def test_hostile_input_is_never_a_500(shared_api: Api, method: str, suffix: str,
                                            body: bytes | None) -> None:
    api = shared_api
    await api.put_session()
    await api.append([message("x", role="tool")])
    response = await api.request(method, session_path(suffix=suffix), content=body,
                                 headers=JSON)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert_problem(response, response.status_code)
    else:
        assert_no_internals(response.text)
    # The session is still readable afterwards.
    assert (await api.get(session_path(suffix="/messages"))).status_code == 200


@pytest.mark.parametrize("url", [
    "/v1/agents/bot/sessions/%2e%2e/%2e%2e/dm/x",
    "/v1/agents/bot/sessions/a/b/dm/" + "%F0%9F%98%80" * 300,
    "/v1/agents/bot/sessions/a/b/dm/%ED%A0%80",  # an encoded lone surrogate
    "/v1/agents/bot/sessions/a/b/dm/%C0%AF",  # an overlong "/"
    "/v1/agents/" + "a" * 5000 + "/sessions",
    "/v1/agents/bot/sessions?status=active&status=active&status=idle",
    "/v1/admin/sessions?peer_kind=thread&peer_id=%2F",
    "/v1/admin/sessions/1/messages?tail=true&offset=10000000&limit=100000",
    "/v1/agents/bot/sessions/a/b/dm/%2F%2F%2F",
    "/v1/agents/bot/sessions/a/b/dm/x%2F/messages",
    "/%2F%2F",
])
async def test_hostile_urls_are_never_a_500(shared_api: Api, url: str) -> None:
    response = await shared_api.get(url)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert_problem(response, response.status_code)


async def test_unexpected_failure_is_a_bare_500(config: ServiceConfig) -> None:
    """Whatever breaks inside, the client learns nothing about the internals."""
    app = create_app(config)
    async with serving(app) as api:
        await api.put_session()

        class Broken:
            def __getattr__(self, name: str) -> Any:
                raise RuntimeError("secret internals: /srv/db password=hunter2")

        app.state.store = Broken()
        problem = assert_problem(await api.get("/v1/admin/stats"), 500)
        assert "hunter2" not in str(problem)
        assert problem["title"] == "Internal server error"


@pytest.mark.parametrize("maybe_committed", [True, False])
async def test_a_database_failure_answers_503_without_the_database_s_address(
        api: Api, monkeypatch: pytest.MonkeyPatch, maybe_committed: bool) -> None:
    """The store's error names the database (user, host, port, schema, file path): an answer
    never does. A write whose COMMIT failed says it may have been stored, with its own type."""
    from aisopod_session.errors import StoreUnavailableError
    from aisopod_session.store import AsyncAgentSessions

    await api.put_session()

    async def failing(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError(
            "PostgreSQL postgresql://gateway:***@db.internal:5432/sessions (schema tenant_7): "
            "OperationalError: server closed the connection unexpectedly",
            maybe_committed=maybe_committed)

    monkeypatch.setattr(AsyncAgentSessions, "append_messages", failing)
    response = await api.post(session_path(suffix="/messages"),
                              json={"messages": [message("hi")]})
    problem = assert_problem(response, 503)
    assert response.headers["retry-after"] == "1"
    assert problem["maybe_committed"] is maybe_committed
    for leak in ("db.internal", "5432", "gateway", "tenant_7", "postgresql", "OperationalError"):
        assert leak not in response.text
    if maybe_committed:
        assert problem["type"].endswith("/maybe-committed")
        assert "may or may not have been stored" in problem["detail"]
        assert "external_id" in problem["detail"]
    else:
        assert problem["type"].endswith("/store-unavailable")
        assert "nothing was stored" in problem["detail"]
