"""Bad input: every argument, wrong in every way we can think of, raises a typed error and leaves
the database exactly as it was (compared through the admin API, archived generations and
compacted originals included)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from aisopod_session import (
    CompactionRecord,
    HistoryQuery,
    InvalidInputError,
    SessionError,
    SessionFilter,
    SessionKey,
    SessionPatch,
    SlidingWindow,
    StoredMessage,
    Summarize,
    TruncateToolResults,
)

from ._support import key, populate, snapshot

Case = Callable[[dict[str, Any]], Any]

NAIVE = datetime(2024, 1, 1, 12, 0)  # deliberately without a timezone
AWARE = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
HUGE = 2**70
TOO_LONG = "x" * 257
NOT_JSON: list[Any] = [
    {1, 2},
    float("nan"),
    float("inf"),
    (1, 2),
    b"bytes",
    {1: "int key"},
    {"a": object()},
    [AWARE],
    "lone \ud800 surrogate",
]


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unvalidated(**changes: Any) -> StoredMessage:
    """A message whose fields skipped validation (``model_copy`` does not validate)."""
    return StoredMessage.user("fine").model_copy(update=changes)


def _check(world: dict[str, Any], store: Any, cases: dict[str, Case]) -> None:
    before = snapshot(store)
    for label, case in cases.items():
        with pytest.raises(InvalidInputError) as raised:
            case(world)
        assert isinstance(raised.value, SessionError), label
        assert str(raised.value), label
        for error in raised.value.errors:
            assert set(error) >= {"field", "message"}, label
    assert snapshot(store) == before


def _each(values: list[Any], make: Callable[[Any], Case], prefix: str) -> dict[str, Case]:
    return {f"{prefix}[{index}]={value!r:.40}": make(value) for index, value in enumerate(values)}


def test_bad_agent_ids_and_key_parts(store: Any) -> None:
    world = populate(store)
    bad_names: list[Any] = [None, 5, "", "   ", TOO_LONG, "tab\there", "nul\x00", "\ud800", b"b"]
    cases: dict[str, Case] = {}
    cases |= _each(bad_names, lambda v: lambda w: store.for_agent(v), "for_agent")
    for part in range(4):
        def make(value: Any, part: int = part) -> Case:
            parts: list[Any] = ["bot", "discord", "acct", "alice"]
            parts[part] = value
            return lambda w: SessionKey(parts[0], parts[1], parts[2], "dm", parts[3])
        cases |= _each(bad_names, make, f"key part {part}")
    cases |= _each(
        [None, "", "channel", "DM ", 1], lambda v: lambda w: SessionKey("bot", "d", "a", v, "p"),
        "peer_kind",
    )
    cases["thread without group"] = lambda w: SessionKey("bot", "d", "a", "thread", "t1")
    cases["thread with empty part"] = lambda w: SessionKey("bot", "d", "a", "thread", "/t1")
    cases |= _each(
        ["", "agent:bot", "agent:bot:d:a:dm:p:extra", "user:bot:d:a:dm:p", "agent:bot:d:a:dm:%zz",
         "agent:bot:d:a:dm:%FF", 5],
        lambda v: lambda w: SessionKey.parse(v), "parse",
    )
    _check(world, store, cases)


def test_keys_that_are_not_session_keys(store: Any) -> None:
    world = populate(store)
    bad_keys: list[Any] = [
        None,
        "agent:bot:discord:acct:dm:alice",
        {"agent_id": "bot", "channel": "discord", "account_id": "acct", "peer_kind": "dm",
         "peer_id": "alice"},
        ("bot", "discord", "acct", "dm", "alice"),
        5,
    ]
    calls: dict[str, Callable[[Any, Any], Any]] = {
        "get": lambda h, k: h.get(k),
        "get_or_create": lambda h, k: h.get_or_create(k),
        "get_history": lambda h, k: h.get_history(k),
        "patch": lambda h, k: h.patch(k, SessionPatch(add_tokens=1)),
        "append": lambda h, k: h.append_messages(k, [StoredMessage.user("x")]),
        "compact": lambda h, k: h.compact(k, SlidingWindow(max_messages=1)),
        "record": lambda h, k: h.get_compaction_record(k),
        "reset": lambda h, k: h.reset(k),
        "delete": lambda h, k: h.delete(k),
    }
    # keys whose parts skipped validation (``model_construct`` does not validate)
    bad_keys += [
        SessionKey.model_construct(agent_id="bot", channel="discord", account_id="acct",
                                   peer_kind="dm", peer_id=peer)
        for peer in ("nul\x00", "", TOO_LONG, "\ud800")
    ]
    bad_keys.append(key("alice").model_copy(update={"peer_kind": "dms"}))
    bad_keys.append(key("alice").model_copy(update={"channel": None}))
    cases: dict[str, Case] = {}
    for name, call in calls.items():
        cases |= _each(bad_keys, lambda v, call=call: lambda w: call(w["bot"], v), name)
    _check(world, store, cases)


def test_bad_messages(store: Any) -> None:
    world = populate(store)
    alice = world["alice"]

    def append(messages: Any) -> Case:
        return lambda w: w["bot"].append_messages(alice, messages)

    ok = StoredMessage.user("ok")
    too_big = "x" * (1_048_576 + 1)
    cases: dict[str, Case] = {
        "a single message": append(ok),
        "None": append(None),
        "a string": append("hello"),
        "a dict": append({"role": "user", "content": "hi"}),
        "a generator": append(m for m in [ok]),
        "a dict in the list": append([ok, {"role": "user", "content": "hi"}]),
        "None in the list": append([ok, None]),
        "an id already set": append([ok, StoredMessage.user("x", id=7)]),
        "content too large": append([ok, ok, StoredMessage.tool(too_big)]),
        "tool_calls too large": append([StoredMessage.assistant("", tool_calls=[too_big])]),
        "content + tool_calls too large": append(
            [StoredMessage.assistant("y" * 600_000, tool_calls=["z" * 600_000])]
        ),
        "too many messages": append([ok] * 10_001),
        "tokens overflow the batch": append(
            [StoredMessage.user("a", token_count=2**62), StoredMessage.user("b", token_count=1)]
        ),
        "tokens overflow the session": lambda w: (
            w["bot"].append_messages(alice, [StoredMessage.user("a", token_count=2**62 - 1)])
        ),
        "unvalidated role": append([ok, _unvalidated(role="user")]),
        "unvalidated created_at": append([ok, _unvalidated(created_at=NAIVE)]),
        "unvalidated token_count": append([ok, _unvalidated(token_count=-1)]),
        "unvalidated huge token_count": append([ok, _unvalidated(token_count=HUGE)]),
        "unvalidated external_id": append([ok, _unvalidated(external_id=5)]),
    }
    cases |= _each(NOT_JSON, lambda v: append([ok, _unvalidated(content=v)]), "content")
    cases |= _each(NOT_JSON, lambda v: append([ok, _unvalidated(tool_calls=v)]), "tool_calls")
    # the models refuse the same things when built normally
    cases |= _each(NOT_JSON, lambda v: lambda w: StoredMessage.user(v), "StoredMessage content")
    cases |= _each(
        NOT_JSON, lambda v: lambda w: StoredMessage.assistant("", tool_calls=v), "tool_calls arg"
    )
    for label, fields in {
        "role": {"role": "robot", "content": "x"},
        "no role": {"content": "x"},
        "no content": {"role": "user"},
        "naive created_at": {"role": "user", "content": "x", "created_at": NAIVE},
        "created_at text": {"role": "user", "content": "x", "created_at": "yesterday"},
        "created_at beyond UTC": {
            "role": "user", "content": "x",
            "created_at": datetime.max.replace(tzinfo=timezone(timedelta(hours=-5))),
        },
        "negative tokens": {"role": "user", "content": "x", "token_count": -1},
        "huge tokens": {"role": "user", "content": "x", "token_count": HUGE},
        "token text": {"role": "user", "content": "x", "token_count": "5"},
        "empty external id": {"role": "user", "content": "x", "external_id": ""},
        "long external id": {"role": "user", "content": "x", "external_id": TOO_LONG},
        "control external id": {"role": "user", "content": "x", "external_id": "a\nb"},
        "int external id": {"role": "user", "content": "x", "external_id": 5},
        "unknown field": {"role": "user", "content": "x", "sender": "alice"},
    }.items():
        cases[f"StoredMessage {label}"] = lambda w, fields=fields: StoredMessage(**fields)
    _check(world, store, cases)


def test_bad_patches(store: Any) -> None:
    world = populate(store)
    alice = world["alice"]

    def patch(change: Any) -> Case:
        return lambda w: w["bot"].patch(alice, change)

    big = {"blob": "x" * 40_000}
    world["bot"].patch(alice, SessionPatch(metadata=big))
    cases: dict[str, Case] = {
        "None": patch(None),
        "a dict": patch({"add_tokens": 1}),
        "metadata too large": patch(SessionPatch(metadata={"blob": "y" * 70_000})),
        "replacement too large": patch(
            SessionPatch(metadata={"blob": "y" * 70_000}, replace_metadata=True)
        ),
        "merge grows too large": patch(SessionPatch(metadata={"more": "y" * 30_000})),
        "unvalidated metadata": patch(SessionPatch.model_construct(metadata={"k": {1, 2}})),
        "unvalidated metadata key": patch(SessionPatch.model_construct(metadata={"": 1})),
        "unvalidated tokens": patch(SessionPatch.model_construct(token_usage=-1)),
        "unvalidated status": patch(SessionPatch().model_copy(update={"status": "gone"})),
        "token_usage above the limit": patch(SessionPatch(token_usage=2**63 - 1)),
        "add_tokens past the limit": patch(SessionPatch(add_tokens=2**62)),
    }
    for label, fields in {
        "negative token_usage": {"token_usage": -1},
        "huge token_usage": {"token_usage": HUGE},
        "token_usage text": {"token_usage": "5"},
        "negative add_tokens": {"add_tokens": -5},
        "both token changes": {"token_usage": 1, "add_tokens": 1},
        "status": {"status": "deleted"},
        "metadata list": {"metadata": [1, 2]},
        "metadata text": {"metadata": "{}"},
        "metadata empty key": {"metadata": {"": 1}},
        "metadata blank key": {"metadata": {"  ": 1}},
        "metadata long key": {"metadata": {TOO_LONG: 1}},
        "metadata int key": {"metadata": {1: 1}},
        "replace_metadata text": {"replace_metadata": "yes"},
        "unknown field": {"message_count": 0},
    }.items():
        cases[f"SessionPatch {label}"] = lambda w, fields=fields: SessionPatch(**fields)
    cases |= _each(
        NOT_JSON, lambda v: lambda w: SessionPatch(metadata={"k": v}), "metadata value"
    )
    _check(world, store, cases)


def test_bad_history_queries(store: Any) -> None:
    world = populate(store)
    alice = world["alice"]
    session_id = world["bot"].get(alice).id
    cases: dict[str, Case] = {}
    for bad in ("everything", 5, {"limit": 1}, HistoryQuery):
        cases[f"agent {bad!r:.30}"] = lambda w, bad=bad: w["bot"].get_history(alice, bad)
        cases[f"admin {bad!r:.30}"] = lambda w, bad=bad: store.get_history_by_id(session_id, bad)
    huge: dict[str, dict[str, Any]] = {
        "limit": {"limit": HUGE}, "offset": {"offset": HUGE}, "tail": {"limit": HUGE, "tail": True}
    }
    for label, fields in huge.items():
        # refused by the model or by the store, whichever comes first
        cases[f"huge {label}"] = lambda w, f=fields: w["bot"].get_history(alice, HistoryQuery(**f))
        cases[f"admin huge {label}"] = (
            lambda w, f=fields: store.get_history_by_id(session_id, HistoryQuery(**f))
        )
        # ... and by the store when the model was built without validation
        cases[f"unvalidated huge {label}"] = (
            lambda w, f=fields: w["bot"].get_history(alice, HistoryQuery.model_construct(**f))
        )
    for label, fields in {
        "zero limit": {"limit": 0},
        "negative limit": {"limit": -1},
        "limit text": {"limit": "5"},
        "float limit": {"limit": 2.0},
        "negative offset": {"offset": -1},
        "naive before": {"before": NAIVE},
        "naive after": {"after": NAIVE},
        "after text": {"after": "today"},
        "tail text": {"tail": "yes"},
        "include_compacted int": {"include_compacted": 2},
        "unknown field": {"role": "user"},
    }.items():
        cases[f"HistoryQuery {label}"] = lambda w, fields=fields: HistoryQuery(**fields)
    _check(world, store, cases)


def test_bad_filters_and_cursors(store: Any) -> None:
    world = populate(store)
    bad_cursors = [
        "not a cursor!",
        "%%%%",
        _cursor("1.2.3"),
        _cursor("abc.def"),
        _cursor("123"),
        _cursor(f"{HUGE}.1"),
        _cursor(f"1.{HUGE}"),
        _cursor("1.-5"),
        _cursor("1.0"),
        base64.urlsafe_b64encode("é.1".encode()).decode(),
        base64.urlsafe_b64encode(b"\xff\xfe.1").decode(),
    ]
    cases: dict[str, Case] = {}
    for index, cursor in enumerate(bad_cursors):
        cases[f"agent cursor {index}"] = (
            lambda w, c=cursor: w["bot"].list(SessionFilter(cursor=c))
        )
        cases[f"admin cursor {index}"] = (
            lambda w, c=cursor: store.list_all_sessions(SessionFilter(cursor=c, limit=2))
        )
    unvalidated = {
        "limit": SessionFilter.model_construct(limit=HUGE),
        "zero limit": SessionFilter().model_copy(update={"limit": 0}),
        "status": SessionFilter().model_copy(update={"status": ("gone",)}),
        "channel": SessionFilter().model_copy(update={"channel": "nul\x00"}),
        "bound": SessionFilter().model_copy(update={"created_after": NAIVE}),
    }
    for label, bad_filter in unvalidated.items():
        cases[f"agent unvalidated {label}"] = lambda w, f=bad_filter: w["bot"].list(f)
        cases[f"admin unvalidated {label}"] = lambda w, f=bad_filter: store.list_all_sessions(f)
    for bad in ("all", {"limit": 1}, 5, SessionFilter):
        cases[f"agent filter {bad!r:.30}"] = lambda w, bad=bad: w["bot"].list(bad)
        cases[f"admin filter {bad!r:.30}"] = lambda w, bad=bad: store.list_all_sessions(bad)
    for label, fields in {
        "zero limit": {"limit": 0},
        "limit above the page size": {"limit": 1001},
        "limit text": {"limit": "10"},
        "status": {"status": "deleted"},
        "no statuses": {"status": []},
        "status list with junk": {"status": ["active", "junk"]},
        "empty cursor": {"cursor": ""},
        "long cursor": {"cursor": "A" * 2000},
        "int cursor": {"cursor": 5},
        "naive bound": {"created_after": NAIVE},
        "bound text": {"updated_before": "now"},
        "blank channel": {"channel": " "},
        "long peer id": {"peer_id": TOO_LONG},
        "peer kind": {"peer_kind": "channel"},
        "agent id": {"agent_id": ""},
        "unknown field": {"order": "asc"},
    }.items():
        cases[f"SessionFilter {label}"] = lambda w, fields=fields: SessionFilter(**fields)
    _check(world, store, cases)


def test_bad_strategies(store: Any) -> None:
    world = populate(store)
    alice = world["alice"]

    def compact(strategy: Any) -> Case:
        return lambda w: w["bot"].compact(alice, strategy)

    cases: dict[str, Case] = {
        "None": compact(None),
        "a name": compact("sliding_window"),
        "a number": compact(3),
        "a record": compact(CompactionRecord()),
        "the class": compact(SlidingWindow),
        "unknown kind": compact({"kind": "forget_everything"}),
        "no kind": compact({"max_messages": 3}),
        "missing field": compact({"kind": "sliding_window"}),
        "wrong field type": compact({"kind": "sliding_window", "max_messages": "3"}),
        "extra field": compact({"kind": "sliding_window", "max_messages": 3, "x": 1}),
        "summary too short": compact({"kind": "summarize", "summary": ""}),
        "unvalidated window": compact(SlidingWindow.model_construct(max_messages=0)),
        "unvalidated copy": compact(SlidingWindow(max_messages=2).model_copy(
            update={"max_messages": -1})),
        "unvalidated truncate": compact(TruncateToolResults.model_construct(max_chars=1)),
        "unvalidated summary": compact(Summarize.model_construct(summary=5, keep_recent=0)),
    }
    for label, build in {
        "window zero": lambda: SlidingWindow(max_messages=0),
        "window text": lambda: SlidingWindow(max_messages="5"),
        "window float": lambda: SlidingWindow(max_messages=5.0),
        "summary empty": lambda: Summarize(summary=""),
        "summary not text": lambda: Summarize(summary=["a"]),
        "summary with NUL": lambda: Summarize(summary="a\x00b"),
        "summary surrogate": lambda: Summarize(summary="\ud800"),
        "summary too long": lambda: Summarize(summary="s" * 1_000_001),
        "negative keep_recent": lambda: Summarize(summary="s", keep_recent=-1),
        "truncate too small": lambda: TruncateToolResults(max_chars=63),
        "truncate text": lambda: TruncateToolResults(max_chars="100"),
    }.items():
        cases[f"build {label}"] = lambda w, build=build: build()
    _check(world, store, cases)


def test_bad_admin_arguments(store: Any) -> None:
    world = populate(store)
    bad_ids: list[Any] = [None, "1", 0, -1, 1.0, True, HUGE, [1]]
    cases: dict[str, Case] = {}
    cases |= _each(bad_ids, lambda v: lambda w: store.get_session_by_id(v), "session id")
    cases |= _each(bad_ids, lambda v: lambda w: store.get_history_by_id(v), "history id")
    cases |= _each(
        ["yesterday", 5, NAIVE, AWARE.date(), timedelta(days=1)],
        lambda v: lambda w: store.purge_compacted(v),
        "purge",
    )
    _check(world, store, cases)
    # a well-formed id that names nothing is "not found", also without changing anything
    before = snapshot(store)
    from aisopod_session import SessionNotFoundError

    for session_id in (2**63 - 1, 10_000):
        with pytest.raises(SessionNotFoundError):
            store.get_session_by_id(session_id)
        with pytest.raises(SessionNotFoundError):
            store.get_history_by_id(session_id)
    assert snapshot(store) == before


def test_far_timestamps_are_exact_or_refused(store: Any) -> None:
    """Extreme but valid datetimes are stored exactly; the library never crashes on them."""
    bot = store.for_agent("bot")
    k = key("alice")
    bot.get_or_create(k)
    extremes = [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=-11, minutes=-30))),
    ]
    stored = bot.append_messages(k, [StoredMessage.user(str(t), created_at=t) for t in extremes])
    assert [m.created_at for m in bot.get_history(k)] == extremes
    assert bot.get_history(k) == stored
    assert [m.created_at for m in bot.get_history(k, HistoryQuery(after=extremes[0]))] == [
        extremes[1], extremes[2],
    ]
