"""The service's configuration: a TOML file, environment variables, and command-line flags.

Precedence, lowest first: defaults, the config file, the environment, the command line. The file
is validated at start-up; a mistake stops the server with a message naming the setting.

```toml
[database]
url = "sqlite:///data/sessions.db"   # or postgresql://...
durability = "full"                 # or "normal"

[server]
host = "127.0.0.1"
port = 8787
max_body_bytes = 4194304
limit_concurrency = 1000            # connections + tasks at once; more are answered 503
timeout_keep_alive = 5              # seconds an idle keep-alive connection is kept
max_incomplete_event_size = 65536   # bytes of request line + headers (h11); more: 400
header_timeout = 10                 # seconds to send a request's headers, then it is closed

[auth]                              # failed bearer tokens and console sign-ins: 429 after
failures_per_client = 10            # this many failures from one client IP in the window,
failures_global = 1000              # or (for clients that failed too) this many from all
window_seconds = 60

[lifecycle]                         # store.sweep(): ISO 8601 durations
idle_after = "PT6H"
archive_after = "P30D"

[reset.default]                     # agent.resolve(): daily at 04:00 local, or idle minutes
mode = "daily"
at_hour = 4
timezone = "Europe/Berlin"

[reset.channels.slack]
mode = "idle"
idle_minutes = 120

[retention]                         # store.purge()
compacted_messages = "P90D"
archived_sessions = "P365D"

[maintenance]
interval_seconds = 300              # how often the service sweeps and purges; 0: never

[[tokens]]
token = "a-long-random-admin-token"
role = "admin"

[[tokens]]
token = "a-long-random-agent-token"
agent = "support-bot"

[tools]                             # the session tools' ToolPolicy at /mcp (see README)
visibility = "all"                  # self, tree (the default), agent or all
max_search_hits = 10                # and the other bounds: max_list, max_history_messages, ...
tools = { sessions_search = false } # per tool: false turns it off (absent: on)

[tools.agent_to_agent]              # other agents' sessions: only with visibility = "all"
enabled = true
allow = ["support-*", "billing-bot"]  # both agents must match (globs)

[[tools.send.deny]]                 # sessions_send: the first matching deny rule refuses,
channel = "whatsapp"                # then one allow rule (if any) must match
[[tools.send.allow]]
key_prefix = "agent:support-bot:"

[[webhooks]]                        # the change feed POSTed as Standard Webhooks (see README)
name = "crm"                        # unique: the delivery position and log are kept by it
url = "https://crm.example.com/hooks/aisopod"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # base64 of 24-64 random bytes
agents = ["support-bot"]            # optional: only these agents' changes
kinds = ["session.created", "messages.appended"]  # optional: only these kinds
max_attempts = 8                    # tries per change, then it is logged as failed
timeout_seconds = 10
```

Environment: ``AISOPOD_DATABASE_URL``, ``AISOPOD_ADMIN_TOKEN`` (one admin token) and
``AISOPOD_AGENT_TOKENS`` (``agent=token,agent2=token2``).
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from aisopod_session.base import invalid_input_from
from aisopod_session.errors import InvalidInputError
from aisopod_session.lifecycle import (
    LifecyclePolicy,
    Policies,
    ResetPolicies,
    RetentionPolicy,
)
from aisopod_session.models import normalize_name
from aisopod_session.results import Webhook
from aisopod_session.tools import ToolPolicy

DEFAULT_DB_URL = "sqlite:///data/sessions.db"
DEFAULT_PORT = 8787
MIN_TOKEN_LENGTH = 16


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatabaseSettings(_Section):
    url: str = DEFAULT_DB_URL
    durability: Literal["full", "normal"] = "full"
    pool_size: Annotated[int, Field(ge=1, le=100)] | None = None
    db_schema: str | None = Field(default=None, alias="schema")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = DEFAULT_PORT
    max_body_bytes: Annotated[int, Field(ge=1024, le=256 * 1024 * 1024)] = 4 * 1024 * 1024
    limit_concurrency: Annotated[int, Field(ge=1, le=1_000_000)] | None = 1000
    """Connections plus running tasks at once (uvicorn); beyond it new requests get 503.
    ``None``: unlimited."""
    timeout_keep_alive: Annotated[int, Field(ge=1, le=3600)] = 5
    """Seconds an idle keep-alive connection stays open waiting for its next request."""
    max_incomplete_event_size: Annotated[int, Field(ge=1024, le=1024 * 1024)] = 64 * 1024
    """Bytes of a request line and headers (h11); a request whose head is larger gets 400."""
    header_timeout: Annotated[float, Field(gt=0, le=3600)] = 10.0
    """Seconds a connection has to send a request's line and headers (from its opening or its
    previous response); then it is closed (uvicorn has no such limit: see server.py)."""


class AuthSettings(_Section):
    """Throttling of failed authentication (bearer tokens, console sign-ins), per replica."""

    failures_per_client: Annotated[int, Field(ge=1, le=1_000_000)] = 10
    """Failures one client IP may make in the window; then it is answered 429."""
    failures_global: Annotated[int, Field(ge=1, le=100_000_000)] = 1000
    """Failures from every client in the window; beyond it, clients that failed too get 429."""
    window_seconds: Annotated[int, Field(ge=1, le=86_400)] = 60


class TokenSettings(_Section):
    token: Annotated[str, Field(min_length=MIN_TOKEN_LENGTH, max_length=512)]
    role: Literal["admin", "agent"] = "agent"
    agent: str | None = None

    @model_validator(mode="after")
    def _agent_matches_role(self) -> TokenSettings:
        if self.role == "agent":
            if not self.agent:
                raise ValueError("an agent token needs 'agent' (the agent id it may use)")
            self.agent = normalize_name(self.agent)
        elif self.agent is not None:
            raise ValueError("an admin token is not bound to an agent; drop 'agent'")
        return self


class MaintenanceSettings(_Section):
    interval_seconds: Annotated[int, Field(ge=0, le=86_400)] = 300
    """How often the service sweeps (lifecycle) and purges (retention); 0 turns it off."""


class ServiceConfig(_Section):
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    tokens: list[TokenSettings] = Field(default_factory=list)
    lifecycle: LifecyclePolicy = Field(default_factory=LifecyclePolicy)
    reset: ResetPolicies = Field(default_factory=ResetPolicies)
    retention: RetentionPolicy = Field(default_factory=RetentionPolicy)
    maintenance: MaintenanceSettings = Field(default_factory=MaintenanceSettings)
    webhooks: list[Webhook] = Field(default_factory=list)
    tools: ToolPolicy = Field(default_factory=ToolPolicy)
    """The session tools' policy at ``/mcp``: the fields of :class:`ToolPolicy`."""

    @property
    def policies(self) -> Policies:
        return Policies(lifecycle=self.lifecycle, reset=self.reset, retention=self.retention)

    @field_validator("tokens")
    @classmethod
    def _tokens_unique(cls, tokens: list[TokenSettings]) -> list[TokenSettings]:
        seen = set()
        for entry in tokens:
            if entry.token in seen:
                raise ValueError("the same token is configured twice")
            seen.add(entry.token)
        return tokens

    @field_validator("webhooks")
    @classmethod
    def _webhook_names_unique(cls, webhooks: list[Webhook]) -> list[Webhook]:
        names = [hook.name for hook in webhooks]
        if len(set(names)) != len(names):
            raise ValueError("two webhooks have the same name")
        return webhooks

    @field_validator("tools")
    @classmethod
    def _agent_to_agent_reachable(cls, policy: ToolPolicy) -> ToolPolicy:
        """Refuse an agent-to-agent setting that could never take effect (the operator meant
        something else)."""
        a2a = policy.agent_to_agent
        if a2a.enabled and policy.visibility != "all":
            raise ValueError(f"agent_to_agent.enabled needs visibility = \"all\" (it is "
                             f"{policy.visibility!r}: other agents' sessions are never visible)")
        if a2a.enabled and not a2a.allow:
            raise ValueError("agent_to_agent.enabled with an empty agent_to_agent.allow lets no "
                             "agent through: list the agents (globs) in allow")
        return policy

    @property
    def auth_enabled(self) -> bool:
        return bool(self.tokens)

    def check_bind_address(self) -> None:
        """Without tokens the API is open: refuse anything but a loopback address."""
        if self.auth_enabled:
            return
        if not is_loopback(self.server.host):
            raise InvalidInputError.for_field(
                "server.host",
                f"refusing to listen on {self.server.host!r} without tokens: anyone who can "
                "reach it could read every conversation. Configure tokens or bind to 127.0.0.1",
            )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None,
                **overrides: Any) -> ServiceConfig:
    """Build the configuration from a file, the environment and explicit overrides."""
    env = dict(os.environ) if env is None else env
    data: dict[str, Any] = {}
    where = "configuration"
    if path is not None:
        where = str(path)
        try:
            data = tomllib.loads(Path(path).read_text("utf-8"))
        except FileNotFoundError:
            raise InvalidInputError.for_field("config", f"{path}: no such file") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInputError.for_field("config", f"{path}: not valid TOML: {exc}") from None
    database = data.setdefault("database", {})
    server = data.setdefault("server", {})
    tokens = data.setdefault("tokens", [])
    if not (isinstance(database, dict) and isinstance(server, dict) and isinstance(tokens, list)):
        raise InvalidInputError.for_field("config", f"{where}: [database] and [server] are tables, "
                                          "[[tokens]] an array of tables")
    if env.get("AISOPOD_DATABASE_URL"):
        database["url"] = env["AISOPOD_DATABASE_URL"]
    if env.get("AISOPOD_ADMIN_TOKEN"):
        tokens.append({"token": env["AISOPOD_ADMIN_TOKEN"], "role": "admin"})
    for pair in filter(None, (p.strip() for p in env.get("AISOPOD_AGENT_TOKENS", "").split(","))):
        agent, sep, token = pair.partition("=")
        if not sep:
            raise InvalidInputError.for_field("AISOPOD_AGENT_TOKENS", "expected agent=token,...")
        tokens.append({"token": token, "role": "agent", "agent": agent})
    for name, value in overrides.items():
        if value is None:
            continue
        if name == "db_url":
            database["url"] = value
        elif name in ("host", "port"):
            server[name] = value
        else:
            raise TypeError(f"unknown override {name}")
    try:
        return ServiceConfig.model_validate(data)
    except ValidationError as exc:
        raise invalid_input_from(exc, where) from None
