"""/healthz, /readyz and /metrics."""

from __future__ import annotations

import re

import pytest

from aisopod_session.store import AsyncSessionStore
from tests.service.conftest import BOT, Api, assert_problem, message, session_path

pytestmark = pytest.mark.anyio


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample (labels matched exactly, in any order)."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if match is None or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if found == labels:
            return float(match.group(3))
    raise AssertionError(f"no sample {name}{labels}")


async def test_healthz_and_readyz(api: Api) -> None:
    health = await api.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = await api.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})


async def test_readyz_is_503_when_the_database_is_gone(api: Api) -> None:
    store: AsyncSessionStore = api.app.state.store
    await store.close()
    problem = assert_problem(await api.get("/readyz"), 503)
    assert problem["detail"]
    # Liveness is not readiness: the process still answers.
    assert (await api.get("/healthz")).status_code == 200
    # Every route that needs the database says 503 too, as a problem, never a 500.
    assert_problem(await api.get(session_path()), 503)
    assert_problem(await api.get("/v1/admin/export"), 503)
    assert_problem(await api.get("/metrics"), 503)


async def test_metrics(api: Api) -> None:
    await api.put_session(peer="a")
    await api.put_session(peer="b")
    await api.patch(session_path(peer="b"), json={"status": "idle"})
    await api.post(session_path(peer="b", suffix="/reset"))
    await api.append([message("one"), message("two"), message("three")], peer="a")
    await api.get(session_path(peer="ghost"))
    assert (await api.get("/metrics", headers=BOT)).status_code == 403

    response = await api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    session_route = "/v1/agents/{agent_id}/sessions/{channel}/{account_id}/{peer_kind}/{peer_id}"
    assert sample(text, "aisopod_http_requests_total", method="PUT", route=session_route,
                  status="200") == 2
    assert sample(text, "aisopod_http_requests_total", method="GET", route=session_route,
                  status="404") == 1
    assert sample(text, "aisopod_http_requests_total", method="GET", route="/metrics",
                  status="403") == 1
    assert sample(text, "aisopod_http_requests_total", method="POST",
                  route=session_route + "/messages", status="200") == 1
    # Latencies: a histogram per route, whose count matches the requests.
    assert sample(text, "aisopod_http_request_duration_seconds_count", method="PUT",
                  route=session_route) == 2
    assert sample(text, "aisopod_http_request_duration_seconds_bucket", method="PUT",
                  route=session_route, le="+Inf") == 2
    assert sample(text, "aisopod_http_request_duration_seconds_sum", method="PUT",
                  route=session_route) > 0
    assert sample(text, "aisopod_messages_appended_total") == 3
    assert sample(text, "aisopod_sessions", status="active") == 2
    assert sample(text, "aisopod_sessions", status="archived") == 1
    assert sample(text, "aisopod_sessions", status="idle") == 0
    assert sample(text, "aisopod_sessions", status="compacted") == 0
    # Raw paths never become labels (ids would explode the series count).
    assert "ghost" not in text

    # Counts move with later requests.
    await api.append([message("four")], peer="a")
    again = (await api.get("/metrics")).text
    assert sample(again, "aisopod_messages_appended_total") == 4
    assert sample(again, "aisopod_http_requests_total", method="GET", route="/metrics",
                  status="200") == 1


async def test_unmatched_paths_share_one_label(api: Api) -> None:
    for path in ("/nope/1", "/nope/2", "/nope/3"):
        assert (await api.get(path)).status_code == 404
    text = (await api.get("/metrics")).text
    assert sample(text, "aisopod_http_requests_total", method="GET", route="unmatched",
                  status="404") == 3
    assert "/nope" not in text
