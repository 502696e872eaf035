"""Compaction strategies and the pure planning step every backend shares.

Compaction never deletes: messages it takes out of the live history are flagged ``compacted`` and
stay in the transcript (``HistoryQuery(include_compacted=True)``) until a retention purge.
A planner looks at the live history and says which messages leave it and which new ones
(a summary, a truncated copy) take their place; the store applies the plan in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictInt, StrictStr

from aisopod_session import _json
from aisopod_session.base import Model
from aisopod_session.models import Role, StoredMessage, UtcDatetime

__all__ = [
    "CompactionPlan",
    "CompactionRecord",
    "CompactionStrategy",
    "LiveMessage",
    "SlidingWindow",
    "Summarize",
    "TruncateToolResults",
    "plan_compaction",
]

MIN_TRUNCATE_CHARS = 64
"""``TruncateToolResults`` needs room for its marker and some of the original text."""


class CompactionRecord(Model):
    """A session's compaction state."""

    compaction_count: Annotated[StrictInt, Field(ge=0)] = 0
    last_compacted_at: UtcDatetime | None = None
    summary: str | None = None


class SlidingWindow(Model):
    """Keep the newest ``max_messages`` messages.

    A tool result is never kept without the assistant message that called the tool: the window
    widens backwards to the message that started the tool-call group, so it may hold a few more
    than ``max_messages`` rather than an orphan ``tool`` message that every LLM API refuses.
    """

    kind: Literal["sliding_window"] = "sliding_window"
    max_messages: Annotated[StrictInt, Field(ge=1)]


def _no_nul(text: str) -> str:
    # The summary is also kept as plain text (``last_compaction_summary``), and PostgreSQL text
    # cannot hold U+0000.
    if "\x00" in text:
        raise ValueError("must not contain U+0000 (NUL)")
    return text


class Summarize(Model):
    """Replace all but the newest ``keep_recent`` messages by one ``system`` message."""

    kind: Literal["summarize"] = "summarize"
    summary: Annotated[
        StrictStr, Field(min_length=1, max_length=1_000_000), AfterValidator(_no_nul)
    ]
    keep_recent: Annotated[StrictInt, Field(ge=0)] = 0


class TruncateToolResults(Model):
    """Shorten ``tool`` results longer than ``max_chars`` to at most ``max_chars``, marker included.

    String content is measured and cut as text. Structured content (``{"tool_call_id": ...,
    "output": "..."}``) is measured as serialised JSON and its longest strings are cut, so its
    shape and ids survive; only if that cannot fit does it become a string of its JSON's start.
    """

    kind: Literal["truncate_tool_results"] = "truncate_tool_results"
    max_chars: Annotated[StrictInt, Field(ge=MIN_TRUNCATE_CHARS)]


CompactionStrategy = Annotated[
    SlidingWindow | Summarize | TruncateToolResults, Field(discriminator="kind")
]


@dataclass(frozen=True, slots=True)
class LiveMessage:
    """What the planner needs of a live message; the full message is only loaded for tools."""

    id: int
    seq: int
    role: Role
    message: StoredMessage | None = None


@dataclass(slots=True)
class CompactionPlan:
    remove: list[int] = field(default_factory=list)
    """Ids of the messages leaving the live history."""
    insert: list[tuple[int, StoredMessage]] = field(default_factory=list)
    """New live messages and the history position (seq) each takes."""
    summary: str | None = None

    @property
    def changes_anything(self) -> bool:
        return bool(self.remove or self.insert)


def first_kept(roles: list[Role], keep: int) -> int:
    """Index of the first message kept when keeping the newest ``keep`` (widened for tool calls)."""
    index = max(0, len(roles) - keep) if keep > 0 else len(roles)
    while 0 < index < len(roles) and roles[index] is Role.TOOL:
        index -= 1
    return index


def truncation_marker(cut: int, total: int) -> str:
    return f"\n…[truncated {cut} of {total} characters]"


def truncate_text(text: str, max_chars: int) -> str | None:
    """``text`` cut to fit ``max_chars`` with its marker, or None when it already fits."""
    if len(text) <= max_chars:
        return None
    keep = max_chars
    while True:
        marker = truncation_marker(len(text) - keep, len(text))
        if keep + len(marker) <= max_chars:
            return text[:keep] + marker
        if len(marker) >= max_chars:  # no room for any text: never slice from the end
            return marker[:max_chars]
        keep = max_chars - len(marker)


def plan_compaction(
    strategy: SlidingWindow | Summarize | TruncateToolResults,
    live: list[LiveMessage],
    now: datetime,
) -> CompactionPlan:
    roles = [message.role for message in live]
    if isinstance(strategy, SlidingWindow):
        cut = first_kept(roles, strategy.max_messages)
        return CompactionPlan(remove=[m.id for m in live[:cut]])
    if isinstance(strategy, Summarize):
        cut = first_kept(roles, strategy.keep_recent)
        if cut == 0:
            return CompactionPlan()
        summary = StoredMessage.system(strategy.summary, created_at=now)
        # The summary takes the place of the last message it replaces, so it reads before the
        # messages that were kept.
        return CompactionPlan(
            remove=[m.id for m in live[:cut]],
            insert=[(live[cut - 1].seq, summary)],
            summary=strategy.summary,
        )
    plan = CompactionPlan()
    for entry in live:
        if entry.role is not Role.TOOL or entry.message is None:
            continue
        shortened = truncate_content(entry.message.content, strategy.max_chars)
        if shortened is not None:
            plan.remove.append(entry.id)
            # The copy is the same message, shorter; the external id stays with the original so
            # that a redelivery still finds it.
            copy = entry.message.model_copy(
                update={"id": None, "content": shortened, "external_id": None, "token_count": None}
            )
            plan.insert.append((entry.seq, copy))
    return plan


def truncate_content(content: Any, max_chars: int) -> Any:
    """``content`` shortened to ``max_chars`` (see TruncateToolResults), or None if it fits."""
    if isinstance(content, str):
        return truncate_text(content, max_chars)
    if len(_json.dumps(content)) <= max_chars:
        return None
    shrunk = _copy_json(content)
    for _ in range(16):
        excess = len(_json.dumps(shrunk)) - max_chars
        if excess <= 0:
            return shrunk
        holder, slot, text = _longest_string(shrunk)
        if holder is None or len(text) <= MIN_TRUNCATE_CHARS:
            break
        target = max(MIN_TRUNCATE_CHARS // 2, len(text) - excess - 1)
        holder[slot] = truncate_text(text, target) or text
    return truncate_text(_json.dumps(content), max_chars)


def _copy_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_json(item) for item in value]
    return value


def _longest_string(value: Any) -> tuple[Any, Any, str]:
    """The container, slot and text of the longest string leaf inside ``value``."""
    best: tuple[Any, Any, str] = (None, None, "")
    stack = [value]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for slot, item in items:
            if isinstance(item, str):
                if len(item) > len(best[2]):
                    best = (node, slot, item)
            elif isinstance(item, dict | list):
                stack.append(item)
    return best
