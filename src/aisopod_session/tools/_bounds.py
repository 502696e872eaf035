"""What the tools answer, kept small and safe: message texts, credentials redacted, texts cut to
a budget, history pages cut to a byte budget, and the answers' JSON shapes (pure functions).

Redaction runs on a whole text before it is cut, so that a cut never leaves the start of a
secret behind; it is a safety net for what an agent passes on, not a guarantee (a secret in a
format none of the patterns know stays).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aisopod_session.models import Role, Session, SessionKey, SessionSummary, StoredMessage

REDACTED = "[REDACTED]"
_SECRETS: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM private keys (a missing END line: up to the end of the text)
    (re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:.*?-----END [A-Z0-9 ]*PRIVATE "
                r"KEY-----|.*\Z)", re.DOTALL), "[REDACTED PRIVATE KEY]"),
    # a password in a URL: scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]*):[^\s@/]+@"), rf"\1:{REDACTED}@"),
    # bearer tokens (an Authorization header, or the word followed by a token)
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"), rf"\1{REDACTED}"),
    # API keys by their well-known prefixes: OpenAI/Anthropic, AWS, GitHub, Slack
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), REDACTED),
    (re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Z0-9])"), REDACTED),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), REDACTED),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"), REDACTED),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), REDACTED),
)


def redact(text: str) -> tuple[str, int]:
    """``text`` with credentials replaced, and how many were."""
    count = 0
    for pattern, replacement in _SECRETS:
        text, found = pattern.subn(replacement, text)
        count += found
    return text, count


def message_text(content: Any) -> str:
    """What a reader sees of a message's content: a string as is; the text of an item (an
    Agents SDK item's ``content``, a list of parts' ``text``); anything else as JSON."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        inner = content.get("content", content.get("text"))
        if isinstance(inner, str):
            return inner
        if isinstance(inner, list):
            content = inner
    if isinstance(content, list):
        parts = [part.get("text") for part in content if isinstance(part, dict)]
        if parts and all(isinstance(part, str) for part in parts):
            return "\n".join(str(part) for part in parts)
    return json.dumps(content, ensure_ascii=False, separators=(",", ":"))


def is_tool(message: StoredMessage) -> bool:
    """A tool result, or a message that is only tool calls (no text of its own)."""
    if message.role is Role.TOOL:
        return True
    content = message.content
    kind = content.get("type") if isinstance(content, dict) else None
    return kind in ("function_call", "function_call_output")


INTER_SESSION = "inter_session"
"""The ``type`` of a message's content that ``sessions_send`` put into an inbox."""


def sent_message(text: str, sender: SessionKey) -> StoredMessage:
    """What ``sessions_send`` enqueues: a user-role message whose content says who sent it (an
    agent's session, not a person), so that the receiving agent and its transcript can tell."""
    return StoredMessage.user({"type": INTER_SESSION, "text": text,
                               "from_agent": sender.agent_id,
                               "from_session": sender.canonical(), "from_person": False})


@dataclass
class Bounded:
    """One text ready to answer: redacted, cut, and what was done to it."""

    text: str
    redactions: int
    truncated: bool


REDACTION_MARGIN = 8_192
"""Characters past a text's budget that are still redacted before the cut: enough for a secret
that starts inside the budget and ends after it (a PEM key is the longest); a text is never
scanned whole, however large."""


def bounded(text: str, most: int) -> Bounded:
    window = text[: most + REDACTION_MARGIN]
    clean, redactions = redact(window)
    beyond = len(text) - len(window)
    if len(clean) <= most and not beyond:
        return Bounded(clean, redactions, False)
    more = max(len(clean) - most, 0) + beyond
    return Bounded(clean[:most] + f"… [cut: {more} more characters]", redactions, True)


def json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def message_view(message: StoredMessage, most: int, include_tools: bool) -> tuple[dict[str, Any],
                                                                                    int]:
    """A message as the history tool shows it, and how many credentials were redacted."""
    body = bounded(message_text(message.content), most)
    view: dict[str, Any] = {"id": message.id, "role": message.role.value,
                            "created_at": message.created_at.isoformat(), "text": body.text}
    redactions = body.redactions
    if body.truncated:
        view["truncated"] = True
    if include_tools and message.tool_calls is not None:
        calls = bounded(json.dumps(message.tool_calls, ensure_ascii=False), most)
        view["tool_calls"] = calls.text
        redactions += calls.redactions
        if calls.truncated:
            view["truncated"] = True
    if redactions:
        view["redacted"] = True
    content = message.content
    if isinstance(content, dict) and content.get("type") == INTER_SESSION:
        view["from_session"] = content.get("from_session")
        view["from_person"] = False
    return view, redactions


def history_answer(session: Session, messages: Sequence[StoredMessage], *, offset: int,
                   most_chars: int, most_bytes: int,
                   include_tools: bool) -> dict[str, Any]:
    """A page of history within ``most_bytes`` of UTF-8 JSON: the newest messages of the page
    are kept, older ones that do not fit are dropped (``dropped_messages``) and come first on
    the next page (``next_offset``; tool messages left out count as read)."""
    answer: dict[str, Any] = {"session_key": session.key.canonical(),
                              "message_count": session.message_count, "messages": [],
                              "truncated": False, "dropped_messages": 0,
                              "content_redacted": False, "redactions": 0,
                              "next_offset": 2**62}  # a placeholder as large as any offset
    budget = most_bytes - json_size(answer)
    kept: list[dict[str, Any]] = []
    covered = 0  # stored messages, newest first, that this answer accounts for
    redactions = 0
    newest_first = list(reversed(messages))
    for position, message in enumerate(newest_first):
        if not include_tools and is_tool(message):
            covered = position + 1
            continue
        view, found = message_view(message, most_chars, include_tools)
        size = json_size(view) + 1  # and its comma
        if size > budget:
            break
        budget -= size
        kept.append(view)
        redactions += found
        covered = position + 1
        if view.get("truncated"):
            answer["truncated"] = True
    dropped = sum(1 for message in newest_first[covered:]
                  if include_tools or not is_tool(message))
    kept.reverse()
    answer["messages"] = kept
    answer["dropped_messages"] = dropped
    answer["truncated"] = bool(answer["truncated"] or dropped)
    answer["redactions"] = redactions
    answer["content_redacted"] = redactions > 0
    following = offset + covered
    answer["next_offset"] = following if following < session.message_count else None
    return answer


def session_row(summary: SessionSummary | Session) -> dict[str, Any]:
    key = summary.key
    return {"session_key": key.canonical(), "agent_id": key.agent_id, "channel": key.channel,
            "kind": key.peer_kind.value, "status": summary.status.value,
            "message_count": summary.message_count, "token_usage": summary.token_usage,
            "updated_at": summary.updated_at.isoformat(),
            "run_active": summary.run_owner is not None}


def error(kind: str, message: str, rule: str | None = None) -> dict[str, Any]:
    """A tool error as data: the agent loop goes on, and the model reads why."""
    return {"error": {"type": kind, "message": message, "rule": rule}}
