"""What a calling session may see and send into: :class:`ToolPolicy`, and the pure decisions made
from it (no I/O here: the two I/O layers ask these functions, so both flavours decide alike).

Every refusal is a :class:`Denied` naming the rule that refused, so that an agent (and whoever
reads its transcript) learns why, not only that.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr

from aisopod_session.base import Model
from aisopod_session.models import PeerKind, Session, SessionKey

Visibility = Literal["self", "tree", "agent", "all"]
ToolName = Literal["sessions_list", "sessions_history", "sessions_search", "session_status",
                   "sessions_send"]
TOOL_NAMES: tuple[ToolName, ...] = ("sessions_list", "sessions_history", "sessions_search",
                                    "session_status", "sessions_send")

PROVENANCE = "session_tools"
"""The metadata entry ``sessions_send`` writes into a session it creates: ``started_by`` (the
sender's canonical key) and ``started_by_agent``; ``tree`` visibility reads it."""


class Denied(Exception):  # noqa: N818 - a decision, not a bug: the tools answer it as data
    """A policy refusal: ``rule`` names what refused (``visibility``, ``agent_to_agent``,
    ``send_policy.deny[0]``, ``tools.sessions_send``…)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


class AgentToAgent(Model):
    """Access to another agent's sessions: off unless ``enabled``, and then only between two
    agents that both match ``allow`` (shell-style globs, case-insensitive)."""

    enabled: StrictBool = False
    allow: list[StrictStr] = Field(default_factory=list)


class SendRule(Model):
    """One rule of the send policy: it matches a target session when every condition given
    matches (none given: every session). ``channel`` and ``key_prefix`` are globs / prefixes of
    the target's channel and canonical key; ``peer_kind`` is dm, group or thread."""

    channel: StrictStr | None = None
    peer_kind: PeerKind | None = None
    key_prefix: StrictStr | None = None

    def matches(self, key: SessionKey) -> bool:
        if self.channel is not None and not fnmatchcase(key.channel, self.channel.lower()):
            return False
        if self.peer_kind is not None and key.peer_kind is not self.peer_kind:
            return False
        return self.key_prefix is None or key.canonical().startswith(self.key_prefix)


class SendPolicy(Model):
    """Which sessions ``sessions_send`` may write into: the first ``deny`` rule that matches
    refuses; then, when ``allow`` has rules, one of them must match."""

    allow: list[SendRule] = Field(default_factory=list)
    deny: list[SendRule] = Field(default_factory=list)


PositiveInt = Annotated[StrictInt, Field(ge=1)]


class ToolPolicy(Model):
    """What the session tools let a calling session do. The defaults are the cautious ones.

    - ``visibility``: ``self`` (the calling session only), ``tree`` (it, its threads, and the
      sessions it started with ``sessions_send``), ``agent`` (every session of its agent),
      ``all`` (every session, other agents' only as ``agent_to_agent`` allows).
    - ``agent_to_agent``: off by default (see :class:`AgentToAgent`).
    - ``send``: allow/deny rules for ``sessions_send`` (see :class:`SendPolicy`).
    - ``tools``: per tool, False turns it off (absent: on).
    - Bounds: ``max_list`` sessions per list, ``max_history_messages`` per history page,
      ``max_message_chars`` per text, ``max_answer_bytes`` per answer (UTF-8 JSON),
      ``max_search_hits``, ``max_wait_seconds`` for a send's reply, ``max_send_chars``.
    """

    visibility: Visibility = "tree"
    agent_to_agent: AgentToAgent = Field(default_factory=AgentToAgent)
    send: SendPolicy = Field(default_factory=SendPolicy)
    tools: dict[ToolName, StrictBool] = Field(default_factory=dict)
    max_list: PositiveInt = 50
    max_history_messages: PositiveInt = 100
    max_message_chars: PositiveInt = 4_000
    max_answer_bytes: Annotated[StrictInt, Field(ge=4_096)] = 80 * 1024
    max_search_hits: PositiveInt = 25
    max_wait_seconds: Annotated[StrictInt, Field(ge=0, le=600)] = 60
    max_send_chars: PositiveInt = 16_000

    def enabled(self, tool: str) -> bool:
        return all(on for name, on in self.tools.items() if name == tool)


def check_enabled(policy: ToolPolicy, tool: str) -> None:
    if not policy.enabled(tool):
        raise Denied(f"tools.{tool}", f"the tool {tool} is turned off for this session")


def _matches(agent_id: str, patterns: list[str]) -> bool:
    return any(fnmatchcase(agent_id.lower(), pattern.lower()) for pattern in patterns)


def check_agent(policy: ToolPolicy, caller: SessionKey, agent_id: str) -> None:
    """May the caller reach ``agent_id``'s sessions at all?"""
    if agent_id == caller.agent_id:
        return
    if policy.visibility != "all":
        raise Denied("visibility", f"visibility {policy.visibility!r} covers only agent "
                     f"{caller.agent_id!r}'s sessions, not agent {agent_id!r}'s")
    a2a = policy.agent_to_agent
    if not a2a.enabled:
        raise Denied("agent_to_agent.enabled", "agent-to-agent access is off: agent "
                     f"{caller.agent_id!r} may not reach agent {agent_id!r}")
    for who in (caller.agent_id, agent_id):
        if not _matches(who, a2a.allow):
            raise Denied("agent_to_agent.allow", f"agent {who!r} is not in the agent-to-agent "
                         "allowlist")


def started_by(session: Session | None) -> str | None:
    """The canonical key of the session that started ``session`` with ``sessions_send``."""
    if session is None:
        return None
    entry: Any = session.metadata.get(PROVENANCE)
    found = entry.get("started_by") if isinstance(entry, dict) else None
    return found if isinstance(found, str) else None


def in_tree(caller: SessionKey, target: SessionKey, session: Session | None) -> bool:
    """The caller's tree: itself, its threads (a group's ``for_thread`` keys), and the sessions
    its ``sessions_send`` started (their metadata's ``session_tools.started_by``)."""
    return (target == caller or target.parent() == caller
            or started_by(session) == caller.canonical())


def check_visible(policy: ToolPolicy, caller: SessionKey, target: SessionKey,
                  session: Session | None) -> None:
    """May the caller see ``target`` (``session`` is its live session, or None if there is
    none: only the caller itself is in its tree then)?"""
    check_agent(policy, caller, target.agent_id)
    if policy.visibility == "self" and target != caller:
        raise Denied("visibility", "visibility 'self' covers only the calling session")
    if policy.visibility == "tree" and not in_tree(caller, target, session):
        raise Denied("visibility", "visibility 'tree' covers the calling session, its threads "
                     "and the sessions it started; this session is none of them")


def visible(policy: ToolPolicy, caller: SessionKey, target: SessionKey,
            session: Session | None) -> bool:
    try:
        check_visible(policy, caller, target, session)
    except Denied:
        return False
    return True


def check_send(policy: ToolPolicy, caller: SessionKey, target: SessionKey,
               session: Session | None) -> None:
    """May the caller send into ``target``? Visible (a session that does not exist yet counts
    as one the caller starts: its tree), not the caller itself, and the send policy's rules."""
    if target == caller:
        raise Denied("send.self", "a session cannot send into itself")
    if session is None:
        check_agent(policy, caller, target.agent_id)
        if policy.visibility == "self":
            raise Denied("visibility", "visibility 'self' covers only the calling session")
    else:
        check_visible(policy, caller, target, session)
    for index, rule in enumerate(policy.send.deny):
        if rule.matches(target):
            raise Denied(f"send.deny[{index}]", f"the send policy's deny rule {index} matches "
                         f"{target}")
    if policy.send.allow and not any(rule.matches(target) for rule in policy.send.allow):
        raise Denied("send.allow", f"no allow rule of the send policy matches {target}")
