"""Failed bearer tokens are throttled per client and globally; the server bounds slow headers
and connections (issue 19)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from fastapi.testclient import TestClient

from aisopod_session.service.app import create_app
from aisopod_session.service.config import ServiceConfig
from aisopod_session.service.server import BackgroundService, connection_limits

ADMIN = "admin-token-0123456789abcdef"
WRONG = {"Authorization": "Bearer wrong-token-0123456789"}
RIGHT = {"Authorization": f"Bearer {ADMIN}"}


def _config(tmp_path: Path, **auth: int) -> ServiceConfig:
    return ServiceConfig.model_validate({
        "database": {"url": str(tmp_path / "s.db")},
        "tokens": [{"token": ADMIN, "role": "admin"}], "auth": auth})


def test_failed_bearer_tokens_get_429_with_retry_after_per_client(tmp_path: Path) -> None:
    app = create_app(_config(tmp_path, failures_per_client=5, window_seconds=30))
    with TestClient(app, client=("10.0.0.1", 1)) as attacker, \
            TestClient(app, client=("10.0.0.2", 1)) as other:
        for _ in range(50):  # successes are never counted
            assert attacker.get("/v1/admin/stats", headers=RIGHT).status_code == 200
        for _ in range(5):
            assert attacker.get("/v1/admin/stats", headers=WRONG).status_code == 401
        response = attacker.get("/v1/admin/stats", headers=WRONG)
        assert response.status_code == 429
        assert 1 <= int(response.headers["retry-after"]) <= 30
        assert response.headers["content-type"].startswith("application/problem+json")
        assert attacker.get("/v1/admin/stats", headers=RIGHT).status_code == 429  # locked out
        # another client is not affected
        assert other.get("/v1/admin/stats", headers=RIGHT).status_code == 200
        assert other.get("/v1/admin/stats", headers=WRONG).status_code == 401
        metrics = other.get("/metrics", headers=RIGHT).text
        assert 'aisopod_auth_throttled_total{surface="api"} 2.0' in metrics


def test_the_global_ceiling_refuses_failing_clients_only(tmp_path: Path) -> None:
    app = create_app(_config(tmp_path, failures_per_client=100, failures_global=6))
    clients = [TestClient(app, client=(f"10.0.1.{n}", 1)) for n in range(4)]
    with clients[0], clients[1], clients[2], clients[3]:
        for client in clients[:3]:  # 6 failures from three addresses
            for _ in range(2):
                assert client.get("/v1/admin/stats", headers=WRONG).status_code == 401
        for client in clients[:3]:
            response = client.get("/v1/admin/stats", headers=WRONG)
            assert response.status_code == 429
            assert int(response.headers["retry-after"]) >= 1
        # a client that never failed is served
        assert clients[3].get("/v1/admin/stats", headers=RIGHT).status_code == 200


def test_server_options_come_from_the_config() -> None:
    config = ServiceConfig.model_validate({"server": {
        "limit_concurrency": 7, "timeout_keep_alive": 3, "max_incomplete_event_size": 4096,
        "header_timeout": 2.5}})
    options = connection_limits(config.server)
    assert options["limit_concurrency"] == 7
    assert options["timeout_keep_alive"] == 3
    assert options["h11_max_incomplete_event_size"] == 4096
    assert ServiceConfig().server.limit_concurrency == 1000


def _open(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _response(sock: socket.socket) -> bytes:
    """One whole response (head and a Content-Length body), however the packets split it."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        body += sock.recv(4096)
    return head + b"\r\n\r\n" + body


def test_a_connection_that_never_finishes_its_headers_is_closed(tmp_path: Path) -> None:
    config = ServiceConfig.model_validate({
        "database": {"url": str(tmp_path / "s.db")}, "server": {"header_timeout": 0.5}})
    with BackgroundService(config) as service:
        slow = _open(service.url)
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        silent = _open(service.url)  # sends nothing at all
        started = time.monotonic()
        assert slow.recv(1024) == b""  # closed by the server
        assert silent.recv(1024) == b""
        assert time.monotonic() - started < 5
        # a prompt request on a kept-alive connection is served, twice
        prompt = _open(service.url)
        for _ in range(2):
            prompt.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _response(prompt).startswith(b"HTTP/1.1 200")
        for sock in (slow, silent, prompt):
            sock.close()


def test_oversized_headers_are_refused(tmp_path: Path) -> None:
    config = ServiceConfig.model_validate({
        "database": {"url": str(tmp_path / "s.db")}, "server": {"max_incomplete_event_size": 2048}})
    with BackgroundService(config) as service:
        sock = _open(service.url)
        # a head still growing past the limit (one complete in a single packet is parsed whole)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8192)
        assert sock.recv(4096).startswith((b"HTTP/1.1 400", b"HTTP/1.1 431"))
        sock.close()
