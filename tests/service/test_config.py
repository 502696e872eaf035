"""load_config: a TOML file, the environment and overrides; mistakes name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from aisopod_session.errors import InvalidInputError
from aisopod_session.service.config import DEFAULT_DB_URL, DEFAULT_PORT, load_config
from aisopod_session.tools import AgentToAgent, SendPolicy, SendRule, ToolPolicy

GOOD = """
[database]
url = "postgresql://app@db.internal/sessions"
durability = "normal"
pool_size = 8
schema = "tenant_a"

[server]
host = "0.0.0.0"
port = 9000
max_body_bytes = 65536

[[tokens]]
token = "an-admin-token-of-some-length"
role = "admin"

[[tokens]]
token = "a-support-bot-token-0123"
agent = " Support-Bot "
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "service.toml"
    path.write_text(text, "utf-8")
    return path


def test_defaults() -> None:
    config = load_config(env={})
    assert config.database.url == DEFAULT_DB_URL
    assert config.database.durability == "full"
    assert (config.server.host, config.server.port) == ("127.0.0.1", DEFAULT_PORT)
    assert config.tokens == []
    assert not config.auth_enabled


def test_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), env={})
    assert config.database.url == "postgresql://app@db.internal/sessions"
    assert (config.database.durability, config.database.pool_size) == ("normal", 8)
    assert config.database.db_schema == "tenant_a"
    assert (config.server.host, config.server.port) == ("0.0.0.0", 9000)
    assert config.server.max_body_bytes == 65536
    assert [(t.role, t.agent) for t in config.tokens] == [("admin", None),
                                                          ("agent", "support-bot")]
    config.check_bind_address()  # tokens configured: any address


def test_environment_and_overrides_win(tmp_path: Path) -> None:
    env = {
        "AISOPOD_DATABASE_URL": "sqlite:///elsewhere.db",
        "AISOPOD_ADMIN_TOKEN": "env-admin-token-0123456789",
        "AISOPOD_AGENT_TOKENS": "alpha=alpha-token-0123456789, beta=beta-token-0123456789",
    }
    config = load_config(write(tmp_path, GOOD), env=env, port=7000)
    assert config.database.url == "sqlite:///elsewhere.db"
    assert config.server.port == 7000
    assert config.server.host == "0.0.0.0"
    assert [(t.role, t.agent) for t in config.tokens] == [
        ("admin", None), ("agent", "support-bot"), ("admin", None), ("agent", "alpha"),
        ("agent", "beta")]
    overridden = load_config(write(tmp_path, GOOD), env=env, db_url="sqlite:///cli.db",
                             host="127.0.0.1")
    assert (overridden.database.url, overridden.server.host) == ("sqlite:///cli.db",
                                                                 "127.0.0.1")


def test_the_process_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AISOPOD_DATABASE_URL", "sqlite:///from-env.db")
    monkeypatch.delenv("AISOPOD_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("AISOPOD_AGENT_TOKENS", raising=False)
    assert load_config().database.url == "sqlite:///from-env.db"


BAD_FILES = [
    pytest.param("[database]\nurl = 'x'\nusername = 'bob'\n", "database.username",
                 id="unknown-key"),
    pytest.param("[databse]\nurl = 'x'\n", "databse", id="unknown-section"),
    pytest.param("[[tokens]]\ntoken = 'short'\nrole = 'admin'\n", "tokens.0.token",
                 id="short-token"),
    pytest.param("[[tokens]]\ntoken = 'a-long-enough-agent-token'\n", "tokens.0",
                 id="agent-token-without-agent"),
    pytest.param("[[tokens]]\ntoken = 'a-long-enough-admin-token'\nrole = 'admin'\n"
                 "agent = 'bot'\n", "tokens.0", id="admin-token-with-agent"),
    pytest.param("[[tokens]]\ntoken = 'a-long-enough-agent-token'\nrole = 'root'\n",
                 "tokens.0.role", id="unknown-role"),
    pytest.param("[[tokens]]\ntoken = 'a-long-enough-agent-token'\nagent = ' '\n", "tokens.0",
                 id="blank-agent"),
    pytest.param("[[tokens]]\ntoken = 'the-same-token-twice'\nrole = 'admin'\n"
                 "[[tokens]]\ntoken = 'the-same-token-twice'\nagent = 'bot'\n", "tokens",
                 id="duplicate-token"),
    pytest.param("[server]\nport = 70000\n", "server.port", id="port-out-of-range"),
    pytest.param("[server]\nport = 'http'\n", "server.port", id="port-not-a-number"),
    pytest.param("[server]\nmax_body_bytes = 10\n", "server.max_body_bytes",
                 id="body-limit-too-small"),
    pytest.param("[database]\ndurability = 'sometimes'\n", "database.durability",
                 id="bad-durability"),
    pytest.param("[database]\npool_size = 0\n", "database.pool_size", id="bad-pool-size"),
    pytest.param("[tools]\nvisibility = 'everyone'\n", "tools.visibility",
                 id="tools-bad-visibility"),
    pytest.param("[tools]\nvisibilty = 'agent'\n", "tools.visibilty", id="tools-unknown-key"),
    pytest.param("[tools]\ntools = { sessions_sned = false }\n", "tools.tools",
                 id="tools-unknown-tool"),
    pytest.param("[tools]\ntools = { sessions_send = 'no' }\n", "tools.tools.sessions_send",
                 id="tools-enable-not-a-bool"),
    pytest.param("[tools]\nmax_list = 0\n", "tools.max_list", id="tools-bound-too-small"),
    pytest.param("[tools]\nmax_wait_seconds = 601\n", "tools.max_wait_seconds",
                 id="tools-bound-too-large"),
    pytest.param("[tools.agent_to_agent]\nenabled = 'yes'\n", "tools.agent_to_agent.enabled",
                 id="tools-a2a-not-a-bool"),
    pytest.param("[tools.agent_to_agent]\nallow = 'bot'\n", "tools.agent_to_agent.allow",
                 id="tools-a2a-allow-not-a-list"),
    pytest.param("[[tools.send.deny]]\nchanel = 'x'\n", "tools.send.deny.0.chanel",
                 id="tools-send-rule-unknown-key"),
    pytest.param("[[tools.send.allow]]\npeer_kind = 'room'\n", "tools.send.allow.0.peer_kind",
                 id="tools-send-rule-bad-kind"),
    pytest.param("tools = 'all'\n", "tools", id="tools-not-a-table"),
    pytest.param("database = 5\n", "config", id="section-not-a-table"),
    pytest.param("tokens = 'abc'\n", "config", id="tokens-not-an-array"),
    pytest.param("[server\nhost = 1\n", "config", id="invalid-toml"),
    pytest.param("[server]\nhost = \"unterminated\n", "config", id="invalid-toml-string"),
]


@pytest.mark.parametrize(("text", "field"), BAD_FILES)
def test_bad_file_names_the_setting(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        load_config(write(tmp_path, text), env={})
    fields = [error["field"] for error in caught.value.errors]
    assert field in fields, (fields, str(caught.value))
    assert field in str(caught.value)


TOOLS = """
[tools]
visibility = "all"
max_search_hits = 10
tools = { sessions_send = false }

[tools.agent_to_agent]
enabled = true
allow = ["support-*", "billing-bot"]

[[tools.send.deny]]
channel = "whatsapp"

[[tools.send.allow]]
key_prefix = "agent:support-bot:"
peer_kind = "group"
"""


def test_tools_section_is_the_tool_policy(tmp_path: Path) -> None:
    policy = load_config(write(tmp_path, TOOLS), env={}).tools
    assert policy == ToolPolicy(
        visibility="all", max_search_hits=10, tools={"sessions_send": False},
        agent_to_agent=AgentToAgent(enabled=True, allow=["support-*", "billing-bot"]),
        send=SendPolicy(deny=[SendRule(channel="whatsapp")],
                        allow=[SendRule(key_prefix="agent:support-bot:", peer_kind="group")]))
    assert load_config(env={}).tools == ToolPolicy()  # no section: the cautious defaults


@pytest.mark.parametrize(("text", "words"), [
    ("[tools.agent_to_agent]\nenabled = true\nallow = ['*']\n",
     'agent_to_agent.enabled needs visibility = "all"'),
    ("[tools]\nvisibility = 'all'\n[tools.agent_to_agent]\nenabled = true\n",
     "empty agent_to_agent.allow lets no agent through"),
])
def test_agent_to_agent_that_could_never_apply_is_refused(tmp_path: Path, text: str,
                                                          words: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        load_config(write(tmp_path, text), env={})
    assert [error["field"] for error in caught.value.errors] == ["tools"]
    assert words in str(caught.value)


def test_bad_file_errors_never_echo_tokens(tmp_path: Path) -> None:
    secret = "short-secret"
    with pytest.raises(InvalidInputError) as caught:
        load_config(write(tmp_path, f"[[tokens]]\ntoken = '{secret}'\nrole = 'admin'\n"),
                    env={})
    assert secret not in str(caught.value)
    assert secret not in repr(caught.value.errors)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as caught:
        load_config(tmp_path / "nope.toml", env={})
    assert caught.value.errors[0]["field"] == "config"
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InvalidInputError) as caught:
        load_config(binary, env={})
    assert caught.value.errors[0]["field"] == "config"


@pytest.mark.parametrize(("env", "field"), [
    ({"AISOPOD_ADMIN_TOKEN": "short"}, "tokens.0.token"),
    ({"AISOPOD_AGENT_TOKENS": "no-equals-sign"}, "AISOPOD_AGENT_TOKENS"),
    ({"AISOPOD_AGENT_TOKENS": "=a-token-without-an-agent"}, "tokens.0"),
    ({"AISOPOD_AGENT_TOKENS": "bot=short"}, "tokens.0.token"),
])
def test_bad_environment_names_the_setting(env: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        load_config(env=env)
    assert field in [error["field"] for error in caught.value.errors], caught.value


def test_unknown_override_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        load_config(env={}, colour="blue")
