"""``aisopod-session mcp``: a caller that does not add up is one error line, before serving."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from aisopod_session.cli import app


@pytest.mark.parametrize(("extra", "message"), [
    (["--agent", "other"], "is agent 'bot''s, not 'other''s"),
    (["--agent", "bot", "--disable", "sessions_delete"], "--disable sessions_delete: no such tool"),
    (["--agent", "bot", "--visibility", "everyone"], "the tool policy: "),
])
def test_mcp_refuses_what_does_not_add_up(tmp_path: Path, extra: list[str],
                                          message: str) -> None:
    result = CliRunner().invoke(app, ["--db", str(tmp_path / "x.db"), "mcp", "--session",
                                      "agent:bot:web:main:dm:me", *extra])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: ") and message in result.output
    assert "Traceback" not in result.output


def test_mcp_policy_file(tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text("[1, 2]")
    result = CliRunner().invoke(app, ["--db", str(tmp_path / "x.db"), "mcp", "--agent", "bot",
                                      "--session", "agent:bot:web:main:dm:me", "--policy",
                                      str(policy)])
    assert result.exit_code == 1 and "must be a JSON object" in result.output
