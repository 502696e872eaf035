"""Runs over HTTP: the problem types a client switches on, Retry-After, and the fenced writes'
query (the remote store uses them; the conformance suite covers the behaviour)."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.service.conftest import OTHER, Api, assert_problem, message, session_path

pytestmark = pytest.mark.anyio

PREFIX = "tag:aisopod-session,2026:problem/"


async def test_a_busy_session_answers_409_with_the_holder_and_retry_after(api: Api) -> None:
    runs = session_path(peer="alice", suffix="/runs")
    started = await api.post(runs, params={"owner": "replica-1", "ttl": "120"})
    assert started.status_code == 200, started.text
    run = started.json()
    assert run["owner"] == "replica-1" and run["fence"] >= 1 and run["took_over"] is False
    busy = await api.post(runs, params={"owner": "replica-2"})
    body = assert_problem(busy, 409)
    assert body["type"] == PREFIX + "session-busy"
    assert body["holder"] == "replica-1"
    assert datetime.fromisoformat(body["expires_at"]) == datetime.fromisoformat(
        run["expires_at"])
    assert 100 <= int(busy.headers["retry-after"]) <= 121
    current = await api.get(session_path(peer="alice", suffix="/runs/current"))
    assert current.json() == run
    assert (await api.post(session_path(peer="alice", suffix="/runs/finish"),
                           json=run)).json() == {"waiting": 0}
    assert (await api.get(session_path(peer="alice", suffix="/runs/current"))).json() is None


async def test_a_write_of_a_lost_run_answers_409_run_lost_and_stores_nothing(api: Api) -> None:
    runs = session_path(peer="alice", suffix="/runs")
    run = (await api.post(runs, params={"owner": "w"})).json()
    messages = session_path(peer="alice", suffix="/messages")
    fenced = await api.post(messages, params={"fence": str(run["fence"]), "owner": "w"},
                            json={"messages": [message("mine")]})
    assert fenced.status_code == 200, fenced.text
    stale = await api.post(messages, params={"fence": str(run["fence"] + 99)},
                           json={"messages": [message("not mine")]})
    assert assert_problem(stale, 409)["type"] == PREFIX + "run-lost"
    history = (await api.get(messages)).json()
    assert [m["content"] for m in history] == ["mine"]
    renewed = await api.post(session_path(peer="alice", suffix="/runs/renew"),
                             json={"run": {**run, "fence": run["fence"] + 99}})
    assert assert_problem(renewed, 409)["type"] == PREFIX + "run-lost"


async def test_runs_of_another_agent_are_forbidden(api: Api) -> None:
    started = await api.post(session_path(peer="alice", suffix="/runs"), params={"owner": "w"},
                             headers=OTHER)
    assert_problem(started, 403)
    bad = await api.post(session_path(peer="alice", suffix="/runs"),
                         params={"owner": "w", "ttl": "-1"})
    assert_problem(bad, 422)


async def test_a_commit_naming_a_shared_session_twice_is_refused(api: Api) -> None:
    await api.put_session(peer="alice")
    body = {"shared": [{"key": "agent:bot:discord:acct:dm:u2", "merge": {"a": {"x": 1}}},
                       {"key": "agent:BOT:discord:acct:dm:u2", "merge": {"a": {"y": 2}}}]}
    answer = await api.post(session_path(peer="alice", suffix="/commit"), json=body)
    assert assert_problem(answer, 422)["errors"][0]["field"] == "shared"
