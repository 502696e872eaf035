"""The README's curl session, run as written against a real server started like `./scripts/run`."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text("utf-8")


def _curl_commands() -> list[list[str]]:
    block = re.search(r"```sh\n# curl-session\n(.*?)```", README, flags=re.DOTALL)
    assert block, "the README has no curl session"
    joined = block.group(1).replace("\\\n", " ")
    return [shlex.split(line) for line in joined.splitlines() if line.strip()]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[int]:
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("AISOPOD_DATABASE_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "aisopod_session", "serve", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            process.kill()
            pytest.fail(f"server did not start: {process.communicate()[0][-3000:]}")
        yield port
    finally:
        process.terminate()
        output = process.communicate(timeout=60)[0]
    # uvicorn finishes in-flight requests, closes the app, then re-raises SIGTERM
    assert process.returncode in (0, -signal.SIGTERM), output[-3000:]
    assert "Application shutdown complete" in output
    assert "loopback" in output or "127.0.0.1" in output
    assert (tmp_path / "data" / "sessions.db").exists()


def test_readme_curl_session(server: int) -> None:
    """Run as written, twice against the same server: the same results (issue 19)."""
    runs = []
    for _ in range(2):
        outputs = []
        for written in _curl_commands():
            command = [part.replace("8787", str(server)) for part in written]
            result = subprocess.run(command, capture_output=True, text=True, timeout=30,
                                    check=True)
            outputs.append(json.loads(result.stdout))
        created, appended, patched, compacted, history, listing = outputs
        assert created["key"]["peer_id"] == "alice"
        assert [m["content"] for m in appended] == ["hello", "hi!"]
        assert (patched["token_usage"], patched["metadata"]) == (12, {"topic": "billing"})
        assert compacted["compaction_count"] == 0
        assert [m["content"] for m in history] == ["hello", "hi!"]
        assert [(s["message_count"], s["token_usage"]) for s in listing["items"]] == [(2, 12)]
        runs.append((appended, history, [m["id"] for m in history]))
    assert runs[0] == runs[1]
