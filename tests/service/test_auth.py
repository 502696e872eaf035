"""Who may call what: the bearer-token matrix over every route, and open access (no tokens)
which is only allowed on loopback."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from aisopod_session.errors import InvalidInputError
from aisopod_session.service.app import create_app
from aisopod_session.service.config import ServiceConfig, load_config
from aisopod_session.service.server import serve
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


def agent_routes(agent: str) -> list[tuple[str, str, Any]]:
    key = session_path(agent=agent)
    return [
        ("GET", f"/v1/agents/{agent}/sessions", None),
        ("PUT", key, None),
        ("GET", key, None),
        ("PATCH", key, {"add_tokens": 1}),
        ("POST", key + "/messages", {"messages": [message("hi")]}),
        ("GET", key + "/messages", None),
        ("POST", key + "/compact", {"kind": "sliding_window", "max_messages": 5}),
        ("GET", key + "/compaction", None),
        ("POST", key + "/reset", None),
        ("DELETE", key, None),
    ]


def admin_routes(session_id: int) -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/v1/admin/sessions", None),
        ("GET", f"/v1/admin/sessions/{session_id}", None),
        ("GET", f"/v1/admin/sessions/{session_id}/messages", None),
        ("GET", "/v1/admin/stats", None),
        ("GET", "/v1/admin/export", None),
        ("POST", "/v1/admin/import", b'{"kind": "aisopod-session-export", "version": 1}\n'),
        ("GET", "/metrics", None),
        ("DELETE", "/v1/admin/sessions?confirm=true&agent_id=nobody", None),
    ]


async def call(api: Api, method: str, url: str, body: Any,
               headers: dict[str, str]) -> httpx.Response:
    if isinstance(body, bytes):
        return await api.request(method, url, content=body, headers=headers)
    return await api.request(method, url, json=body, headers=headers)


async def test_token_matrix(api: Api) -> None:
    await api.put_session(agent="bot")
    await api.put_session(agent="other")
    session_id = (await api.put_session(agent="bot", peer="by-id"))["id"]
    del api.headers["Authorization"]  # from here on each request says which token it sends
    wrong = {"Authorization": "Bearer not-a-token-0123456789abcdef"}
    routes = agent_routes("bot") + agent_routes("other") + admin_routes(session_id)
    for method, url, body in routes:
        label = f"{method} {url}"
        missing = await call(api, method, url, body, {})
        assert "authorization" not in missing.request.headers
        assert_problem(missing, 401)
        assert missing.headers["www-authenticate"].startswith("Bearer"), label
        for headers in (wrong, {"Authorization": "Basic YWRtaW46YWRtaW4="},
                        {"Authorization": "Bearer"}, {"Authorization": ""}):
            refused = await call(api, method, url, body, headers)
            assert_problem(refused, 401)
            assert refused.headers["www-authenticate"].startswith("Bearer"), label

        own_agent = "/v1/agents/bot/" in url
        other_agent = "/v1/agents/other/" in url
        for token, allowed in ((BOT, own_agent), (OTHER, other_agent), (ADMIN, True)):
            response = await call(api, method, url, body, token)
            if allowed:
                assert response.status_code == 200, (label, response.text)
            else:
                problem = assert_problem(response, 403)
                assert "token" in problem["detail"]


async def test_agent_token_cannot_reach_another_agent_through_the_key(api: Api) -> None:
    """The agent id of the path is the one checked, however it is spelt or encoded."""
    for agent in ("OTHER", " other", "oth%65r"):
        url = f"/v1/agents/{agent}/sessions/discord/acct/dm/alice"
        assert_problem(await api.put(url, headers=BOT), 403)
    assert (await api.get("/v1/admin/stats")).json()["agents"] == 0


async def test_probes_need_no_token(api: Api) -> None:
    del api.headers["Authorization"]
    for url in ("/healthz", "/readyz", "/openapi.json"):
        response = await api.get(url)
        assert response.status_code == 200, url


async def test_no_tokens_means_open_access(sqlite_url: str) -> None:
    config = service_config(sqlite_url, {}, tokens=False)
    assert not config.auth_enabled
    async with serving(create_app(config), headers={}) as api:
        created = await api.put_session(agent="anyone")
        assert created["key"]["agent_id"] == "anyone"
        assert (await api.get("/v1/admin/stats")).json()["agents"] == 1
        assert (await api.get("/metrics")).status_code == 200
        # A token sent to an open server is not checked either.
        assert (await api.get("/v1/admin/stats", headers=BOT)).status_code == 200


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]", "127.8.9.10"])
def test_open_access_binds_to_loopback(host: str) -> None:
    config = ServiceConfig.model_validate({"server": {"host": host}})
    config.check_bind_address()  # does not raise
    assert load_config(env={}, host=host).server.host == host


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.org", ""])
def test_open_access_refuses_other_addresses(host: str) -> None:
    config = load_config(env={}, host=host)
    with pytest.raises(InvalidInputError) as caught:
        config.check_bind_address()
    assert caught.value.errors[0]["field"] == "server.host"
    assert "token" in str(caught.value)
    # serve() checks before it opens anything or binds.
    with pytest.raises(InvalidInputError):
        serve(config)
    # With tokens any address is allowed.
    secured = load_config(env={"AISOPOD_ADMIN_TOKEN": "x" * 32}, host=host)
    secured.check_bind_address()


async def test_another_agents_token_is_refused_before_the_key_is_checked(api: Api) -> None:
    """403 first: a token for another agent learns nothing about which keys are well formed
    (a bad peer kind or an over-long part would otherwise answer 422)."""
    bad_keys = ("discord/acct/not-a-kind/alice", "discord/acct/dm/" + "x" * 300,
                "discord/" + "a" * 300 + "/dm/alice")
    for key in bad_keys:
        for method, suffix in (("PUT", ""), ("GET", "/messages"), ("DELETE", "")):
            url = f"/v1/agents/other/sessions/{key}{suffix}"
            assert_problem(await api.request(method, url, headers=BOT), 403)
            assert_problem(await api.request(method, url, headers=OTHER), 422)
