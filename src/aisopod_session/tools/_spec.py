"""The tools as a model sees them: their JSON Schema specifications (:func:`definitions`), and
the checking of the arguments a model sends against them (:func:`parse_arguments`).

The schemas fit OpenAI's function-calling strict mode: every property required, no extra
properties, an optional argument written as a type union with ``null`` (null: the default), and
only the keywords strict mode supports (``minimum``/``maximum``, ``enum``, ``maxItems``). Limits
on text lengths are checked here and said in the descriptions.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from aisopod_session.tools._policy import TOOL_NAMES, ToolPolicy

MAX_QUERY_CHARS = 4_096
MAX_KEY_CHARS = 1_600


def _nullable(kind: str, description: str, **rules: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], "description": description, **rules}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


SESSION_KEY_TEXT = ("A session's canonical key, agent:<agent>:<channel>:<account>:<kind>:<peer> "
                    "(as sessions_list gives it)")


def _specs(policy: ToolPolicy) -> dict[str, dict[str, Any]]:
    return {
        "sessions_list": {
            "description": "List the sessions you may see, most recently active first: key, "
                           "kind, channel, status, message count, token usage, run state and "
                           "optionally a preview of the last message.",
            "parameters": _object({
                "kinds": {"type": ["array", "null"], "maxItems": 3,
                          "items": {"type": "string", "enum": ["dm", "group", "thread"]},
                          "description": "Only these peer kinds (null: all)"},
                "channel": _nullable("string", "Only this channel (null: all)"),
                "agent_id": _nullable("string", "Only this agent's sessions (null: every agent "
                                      "you may see)"),
                "active_minutes": _nullable("integer", "Only sessions updated in the last N "
                                            "minutes (null: any time)", minimum=1,
                                            maximum=525_600),
                "limit": _nullable("integer", f"How many (null: 20; at most {policy.max_list})",
                                   minimum=1, maximum=policy.max_list),
                "include_preview": _nullable("boolean", "Add the last message's first 200 "
                                             "characters (null: false)"),
            }),
        },
        "sessions_history": {
            "description": "Read one session's messages, newest page first, oldest first "
                           "within the page. Long texts are cut, the answer is bounded, "
                           "credentials are redacted; page back with next_offset.",
            "parameters": _object({
                "session_key": _nullable("string", SESSION_KEY_TEXT + " (null: your own "
                                         "session)"),
                "limit": _nullable("integer", "Messages per page (null: 20; at most "
                                   f"{policy.max_history_messages})", minimum=1,
                                   maximum=policy.max_history_messages),
                "offset": _nullable("integer", "Skip this many of the newest messages (null: "
                                    "0); pass the answer's next_offset to read older ones",
                                    minimum=0),
                "include_tools": _nullable("boolean", "Include tool messages and tool calls "
                                           "(null: false)"),
            }),
        },
        "sessions_search": {
            "description": "Search the messages of the sessions you may see (words, \"a "
                           "phrase\", prefix*, -excluded); hits with session key, role, time "
                           "and a short snippet, best first.",
            "parameters": _object({
                "query": {"type": "string", "description": "What to look for (at most "
                          f"{MAX_QUERY_CHARS} characters)"},
                "session_key": _nullable("string", "Only this session (null: every session "
                                         "you may see)"),
                "limit": _nullable("integer", f"How many hits (null: 10; at most "
                                   f"{policy.max_search_hits})", minimum=1,
                                   maximum=policy.max_search_hits),
            }),
        },
        "session_status": {
            "description": "A session's status, message count, token usage, run state and "
                           "inbox size.",
            "parameters": _object({
                "session_key": _nullable("string", SESSION_KEY_TEXT + " (null: your own "
                                         "session)"),
            }),
        },
        "sessions_send": {
            "description": "Put a message into another session's inbox, marked as sent by you "
                           "(an agent, not a person); optionally wait for that session's next "
                           "reply. A session that does not exist yet is started (and becomes "
                           "yours to see).",
            "parameters": _object({
                "session_key": {"type": "string", "description": SESSION_KEY_TEXT},
                "message": {"type": "string", "description": "The text to send (at most "
                            f"{policy.max_send_chars} characters)"},
                "timeout_seconds": _nullable("integer", "Wait up to this long for the "
                                             "session's next assistant message (null or 0: do "
                                             f"not wait; at most {policy.max_wait_seconds})",
                                             minimum=0, maximum=policy.max_wait_seconds),
            }),
        },
    }


def definitions(policy: ToolPolicy | None = None) -> list[dict[str, Any]]:
    """The enabled tools' specifications: ``{"type": "function", "name", "description",
    "parameters", "strict": true}`` (OpenAI's function tools; ``parameters`` is also an MCP
    tool's ``inputSchema``)."""
    policy = policy or ToolPolicy()
    specs = _specs(policy)
    return [{"type": "function", "name": name, **specs[name], "strict": True}
            for name in TOOL_NAMES if policy.enabled(name)]


# --- arguments -----------------------------------------------------------------------------


class _Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Count = Annotated[StrictInt, Field(ge=1)]
Key = Annotated[StrictStr, Field(min_length=1, max_length=MAX_KEY_CHARS)]


class ListArguments(_Arguments):
    kinds: list[Literal["dm", "group", "thread"]] | None = None
    channel: Annotated[StrictStr, Field(min_length=1, max_length=256)] | None = None
    agent_id: Annotated[StrictStr, Field(min_length=1, max_length=256)] | None = None
    active_minutes: Annotated[StrictInt, Field(ge=1, le=525_600)] | None = None
    limit: Count | None = None
    include_preview: StrictBool | None = None


class HistoryArguments(_Arguments):
    session_key: Key | None = None
    limit: Count | None = None
    offset: Annotated[StrictInt, Field(ge=0, le=2**62)] | None = None
    include_tools: StrictBool | None = None


class SearchArguments(_Arguments):
    query: Annotated[StrictStr, Field(min_length=1, max_length=MAX_QUERY_CHARS)]
    session_key: Key | None = None
    limit: Count | None = None


class StatusArguments(_Arguments):
    session_key: Key | None = None


class SendArguments(_Arguments):
    session_key: Key
    message: Annotated[StrictStr, Field(min_length=1)]
    timeout_seconds: Annotated[StrictInt, Field(ge=0)] | None = None


ARGUMENTS: dict[str, type[_Arguments]] = {
    "sessions_list": ListArguments, "sessions_history": HistoryArguments,
    "sessions_search": SearchArguments, "session_status": StatusArguments,
    "sessions_send": SendArguments,
}


class BadArguments(Exception):  # noqa: N818 - answered to the model as data, like Denied
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parse_arguments(name: str, arguments: Any, policy: ToolPolicy) -> Any:
    """The checked arguments of tool ``name``: a JSON object (or its text), each field as the
    specification says, and within the policy's bounds. BadArguments says what is wrong."""
    if isinstance(arguments, str | bytes):
        import json

        try:
            arguments = json.loads(arguments or "{}")
        except ValueError as exc:
            raise BadArguments(f"arguments are not JSON: {exc}") from None
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise BadArguments(f"arguments must be a JSON object, got {type(arguments).__name__}")
    try:
        parsed = ARGUMENTS[name].model_validate(arguments)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'arguments'}: {error['msg']}"
            for error in exc.errors(include_url=False))
        raise BadArguments(problems) from None
    _check_bounds(parsed, policy)
    return parsed


def _check_bounds(parsed: _Arguments, policy: ToolPolicy) -> None:
    bounds = {ListArguments: ("limit", policy.max_list),
              HistoryArguments: ("limit", policy.max_history_messages),
              SearchArguments: ("limit", policy.max_search_hits),
              SendArguments: ("timeout_seconds", policy.max_wait_seconds)}
    found = bounds.get(type(parsed))
    if found is not None:
        field, most = found
        value = getattr(parsed, field)
        if value is not None and value > most:
            raise BadArguments(f"{field}: at most {most}, got {value}")
    if isinstance(parsed, SendArguments) and len(parsed.message) > policy.max_send_chars:
        raise BadArguments(f"message: at most {policy.max_send_chars} characters, got "
                           f"{len(parsed.message)}")
