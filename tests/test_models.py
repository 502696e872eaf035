"""The core types: keys, sessions, messages, filters, patches and their validation."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

import aisopod_session
from aisopod_session import (
    ChannelContext,
    HistoryQuery,
    InvalidInputError,
    PeerKind,
    Role,
    Session,
    SessionError,
    SessionFilter,
    SessionKey,
    SessionPatch,
    SessionStatus,
    SessionSummary,
    StoredMessage,
    _json,
)
from aisopod_session.models import MAX_ID_LENGTH, MAX_KEY_BYTES

NOW = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
KEY = SessionKey("bot", "discord", "acct", "dm", "alice")


def key_fields(**changes: Any) -> dict[str, Any]:
    fields = {
        "agent_id": "bot",
        "channel": "discord",
        "account_id": "acct",
        "peer_kind": "dm",
        "peer_id": "alice",
    }
    return {**fields, **changes}


# --- public names ----------------------------------------------------------------------------


def test_every_public_name_exists() -> None:
    assert aisopod_session.__all__
    missing = [name for name in aisopod_session.__all__ if not hasattr(aisopod_session, name)]
    assert missing == []
    assert len(set(aisopod_session.__all__)) == len(aisopod_session.__all__)


@pytest.mark.parametrize("module", ["models", "routing", "errors", "_json"])
def test_every_name_of_each_module_exists(module: str) -> None:
    mod = getattr(aisopod_session, module)
    assert [name for name in mod.__all__ if not hasattr(mod, name)] == []


def test_invalid_input_error_is_a_value_error_and_a_session_error() -> None:
    assert issubclass(InvalidInputError, ValueError)
    assert issubclass(InvalidInputError, SessionError)
    error = InvalidInputError.for_field("limit", "must be positive")
    assert str(error) == "limit: must be positive"
    assert error.errors == [{"field": "limit", "message": "must be positive"}]
    assert InvalidInputError("plain").errors == []


# --- SessionKey --------------------------------------------------------------------------------


def test_key_is_immutable() -> None:
    key = SessionKey("bot", "discord", "acct", "dm", "alice")
    with pytest.raises(ValidationError):
        key.peer_id = "mallory"  # type: ignore[misc]
    assert key.peer_id == "alice"


def test_key_is_compared_and_hashed_by_value() -> None:
    a = SessionKey("bot", "discord", "acct", "dm", "alice")
    b = SessionKey("bot", "discord", "acct", PeerKind.DM, "alice")
    c = SessionKey("bot", "discord", "acct", "dm", "bob")
    assert a == b
    assert a is not b
    assert hash(a) == hash(b)
    assert a != c
    assert {a, b, c} == {a, c}
    assert {a: 1}[b] == 1


def test_key_accepts_keywords() -> None:
    assert SessionKey(**key_fields()) == KEY


def test_key_json_round_trip() -> None:
    key = SessionKey("bot", "matrix", "main", "dm", "@alice:matrix.org")
    text = key.model_dump_json()
    assert json.loads(text) == {
        "agent_id": "bot",
        "channel": "matrix",
        "account_id": "main",
        "peer_kind": "dm",
        "peer_id": "@alice:matrix.org",
    }
    assert SessionKey.model_validate_json(text) == key
    assert SessionKey.model_validate(json.loads(text)) == key


@pytest.mark.parametrize(
    ("key", "canonical"),
    [
        (SessionKey("bot", "discord", "acct", "dm", "123"), "agent:bot:discord:acct:dm:123"),
        (
            SessionKey("bot", "matrix", "main", "dm", "@alice:matrix.org"),
            "agent:bot:matrix:main:dm:@alice%3Amatrix.org",
        ),
        (SessionKey("bot", "irc", "libera", "group", "#rust"), "agent:bot:irc:libera:group:#rust"),
        (
            SessionKey("bot", "email", "support", "dm", "bob@example.com"),
            "agent:bot:email:support:dm:bob@example.com",
        ),
        (SessionKey("bot", "x", "y", "dm", "100%"), "agent:bot:x:y:dm:100%25"),
        (SessionKey("bot", "x", "y", "dm", "a b"), "agent:bot:x:y:dm:a%20b"),
        (SessionKey("bot", "x", "y", "dm", "a/b"), "agent:bot:x:y:dm:a/b"),
        (SessionKey("bot", "x", "y", "dm", "ünï"), "agent:bot:x:y:dm:ünï"),
        (SessionKey("bot", "x", "y", "dm", "a\u3000b"), "agent:bot:x:y:dm:a%E3%80%80b"),
        (SessionKey("bot", "x", "y", "dm", "a\u2028b"), "agent:bot:x:y:dm:a%E2%80%A8b"),
        (SessionKey("b:t", "x", "y", "dm", "z"), "agent:b%3At:x:y:dm:z"),
        (
            SessionKey.for_thread("bot", "slack", "ws", "C01", "1700000000.000100"),
            "agent:bot:slack:ws:thread:C01/1700000000.000100",
        ),
    ],
    ids=["plain", "matrix", "irc", "email", "percent", "space", "slash", "non-ascii",
         "ideographic-space", "line-separator", "colon-in-agent", "thread"],
)
def test_canonical_and_parse(key: SessionKey, canonical: str) -> None:
    assert key.canonical() == canonical
    assert str(key) == canonical
    assert SessionKey.parse(canonical) == key
    assert "\n" not in canonical


def test_parse_accepts_lower_case_escapes() -> None:
    assert SessionKey.parse("agent:bot:matrix:main:dm:@alice%3amatrix.org").peer_id == (
        "@alice:matrix.org"
    )


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("bot:discord:acct:dm:alice", "key"),
        ("agent:bot:discord:acct:dm", "key"),
        ("agent:bot:discord:acct:dm:alice:extra", "key"),
        ("key:bot:discord:acct:dm:alice", "key"),
        ("AGENT:bot:discord:acct:dm:alice", "key"),
        ("", "key"),
        ("agent:bot:discord:acct:dm:a%zz", "key"),
        ("agent:bot:discord:acct:dm:a%2", "key"),
        ("agent:bot:discord:acct:dm:%FF", "key"),
        ("agent:bot:discord:acct:dm:%ED%A0%80", "key"),
        ("agent::discord:acct:dm:alice", "agent_id"),
        ("agent:bot::acct:dm:alice", "channel"),
        ("agent:bot:discord::dm:alice", "account_id"),
        ("agent:bot:discord:acct:dm:", "peer_id"),
        ("agent:bot:discord:acct:dm:%20", "peer_id"),
        ("agent:bot:discord:acct:dm:a%0Ab", "peer_id"),
        ("agent:bot:discord:acct:dm:a%00", "peer_id"),
        ("agent:bot:discord:acct:channel:alice", "peer_kind"),
        ("agent:bot:discord:acct:thread:alice", "peer_id"),
    ],
)
def test_parse_rejects_malformed_keys(text: str, field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        SessionKey.parse(text)
    assert field in str(info.value)
    assert info.value.errors[0]["field"] == field


@pytest.mark.parametrize("value", [None, 5, b"agent:bot:discord:acct:dm:alice", KEY])
def test_parse_rejects_non_strings(value: Any) -> None:
    with pytest.raises(InvalidInputError, match="key: expected a string"):
        SessionKey.parse(value)


def test_key_normalisation() -> None:
    key = SessionKey("  Bot ", " DISCORD", "Acct ", "dm", "  Alice ")
    assert key == SessionKey("bot", "discord", "acct", "dm", "Alice")
    assert key != SessionKey("bot", "discord", "acct", "dm", "alice")
    # NFC: a decomposed "ü" is the same id as the precomposed one
    assert SessionKey("bot", "x", "y", "dm", "u\u0308") == SessionKey("bot", "x", "y", "dm", "ü")
    assert SessionKey("B\u00d6T", "x", "y", "dm", "z").agent_id == "b\u00f6t"


def test_longest_part_is_accepted_after_trimming() -> None:
    longest = "x" * MAX_ID_LENGTH
    key = SessionKey(longest, longest, longest, "dm", f"  {longest}  ")
    assert key.peer_id == longest
    assert SessionKey.parse(key.canonical()) == key


def test_key_must_fit_a_database_index() -> None:
    # 256 four-byte characters in every part is 4 KiB: more than PostgreSQL can index
    wide = "\U00020000" * MAX_ID_LENGTH
    with pytest.raises(InvalidInputError, match=f"bytes of UTF-8; at most {MAX_KEY_BYTES}"):
        SessionKey(wide, wide, wide, "dm", wide)
    # the limit is on the parts together; one wide part is fine
    assert SessionKey("bot", "x", "y", "dm", wide).peer_id == wide
    under = "\u00e9" * (MAX_KEY_BYTES // 8)  # 2-byte characters, exactly at the limit
    assert SessionKey(under, under, under, "dm", under).agent_id == under


def test_missing_fields_in_a_dict_are_invalid_input() -> None:
    with pytest.raises(InvalidInputError) as info:
        SessionKey.model_validate({"agent_id": "bot"})
    assert {e["field"] for e in info.value.errors} == {
        "channel", "account_id", "peer_kind", "peer_id"
    }
    with pytest.raises(InvalidInputError, match="peer_id"):
        SessionKey.model_validate_json('{"agent_id":"a","channel":"b","account_id":"c",'
                                       '"peer_kind":"dm"}')
    with pytest.raises(InvalidInputError, match="unknown"):
        SessionKey.model_validate({**key_fields(), "unknown": 1})


# --- threads ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "thread"),
    [
        ("C01", "1700000000.000100"),
        ("!room:matrix.org", "$event"),
        ("#rust", "a/b/c"),
        ("teams/general", "t1"),
        ("100%", "t"),
        ("%2F", "%25"),
        ("a/%/b%2F", "x y"),
        ("ünï", "スレッド"),
    ],
)
def test_thread_key_parent_is_the_group(group: str, thread: str) -> None:
    key = SessionKey.for_thread("Bot", "Slack", "WS", group, thread)
    assert key.peer_kind is PeerKind.THREAD
    parent = key.parent()
    assert parent == SessionKey("bot", "slack", "ws", "group", group)
    assert parent is not None
    assert parent.peer_id == group
    assert parent.parent() is None
    assert key != parent
    assert SessionKey.parse(key.canonical()) == key
    assert SessionKey.parse(key.canonical()).parent() == parent


def test_threads_of_different_groups_are_different_keys() -> None:
    # without escaping, group "a/b" + thread "c" and group "a" + thread "b/c" would collide
    one = SessionKey.for_thread("bot", "x", "y", "a/b", "c")
    two = SessionKey.for_thread("bot", "x", "y", "a", "b/c")
    assert one != two
    assert one.canonical() != two.canonical()
    assert one.parent() != two.parent()


def test_thread_ids_are_normalised_like_peer_ids() -> None:
    assert SessionKey.for_thread("bot", "x", "y", " G ", " T ") == SessionKey.for_thread(
        "bot", "x", "y", "G", "T"
    )
    assert SessionKey.for_thread("bot", "x", "y", "G", "T") != SessionKey.for_thread(
        "bot", "x", "y", "g", "t"
    )


def test_dm_and_group_keys_have_no_parent() -> None:
    assert KEY.parent() is None
    assert SessionKey("bot", "discord", "acct", "group", "a/b").parent() is None


@pytest.mark.parametrize(
    "peer_id",
    ["no-separator", "/thread", "group/", "a%zz/b", "a%/b", "a%2f/b", "a /b", "a/ b"],
)
def test_hand_built_thread_keys_must_be_what_for_thread_builds(peer_id: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        SessionKey("bot", "x", "y", "thread", peer_id)
    assert "peer_id" in str(info.value)
    assert "for_thread" in str(info.value)


@pytest.mark.parametrize(
    ("group", "thread", "field"),
    [
        ("", "t", "group_id"),
        ("   ", "t", "group_id"),
        ("g\n", "t", "group_id"),
        (5, "t", "group_id"),
        ("g", "", "thread_id"),
        ("g", "t\x00", "thread_id"),
        ("g", None, "thread_id"),
        ("g", "t" * 257, "thread_id"),
        ("g" * 200, "t" * 60, "thread_id"),
    ],
)
def test_for_thread_rejects_bad_ids(group: Any, thread: Any, field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        SessionKey.for_thread("bot", "x", "y", group, thread)
    assert field in str(info.value)


# --- bad input, field by field ----------------------------------------------------------------

TEXT_BAD: list[tuple[str, Any]] = [
    ("int", 5),
    ("bytes", b"alice"),
    ("list", ["alice"]),
    ("empty", ""),
    ("whitespace", "   "),
    ("nul", "a\x00b"),
    ("newline", "a\nb"),
    ("trailing-newline", "alice\n"),
    ("tab", "\talice"),
    ("unit-separator", "alice\x1f"),
    ("del", "a\x7fb"),
    ("oversized", "x" * (MAX_ID_LENGTH + 1)),
    ("lone-surrogate", "a\ud800"),
]
REQUIRED_TEXT_BAD = [*TEXT_BAD, ("none", None)]
INT_BAD: list[tuple[str, Any]] = [
    ("negative", -1),
    ("str", "5"),
    ("float", 5.0),
    ("bool", True),
    ("too-big", 2**63),
]
ID_BAD: list[tuple[str, Any]] = [
    ("zero", 0), ("negative", -3), ("str", "1"), ("float", 1.0), ("bool", True),
]
DATETIME_BAD: list[tuple[str, Any]] = [
    ("naive", datetime(2024, 1, 1, 12, 0)),
    ("naive-iso", "2024-01-01T12:00:00"),
    ("garbage-str", "yesterday"),
    ("int", 1_700_000_000),
    ("float", 1.5),
    ("bool", True),
    ("date", date(2024, 1, 1)),
    ("out-of-range", datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))),
]
BOOL_BAD: list[tuple[str, Any]] = [("int", 1), ("str", "true"), ("none", None)]
JSON_BAD: list[tuple[str, Any]] = [
    ("bytes", b"x"),
    ("set", {1, 2}),
    ("nan", math.nan),
    ("infinity", math.inf),
    ("minus-infinity", -math.inf),
    ("tuple", (1, 2)),
    ("object", object()),
    ("int-key", {1: "x"}),
    ("nested-bytes", {"a": [1, {"b": b"x"}]}),
    ("nested-nan", [[math.nan]]),
    ("lone-surrogate", {"a": "\ud800"}),
    ("too-deep", json.loads("[" * 100 + "]" * 100)),
]
METADATA_BAD: list[tuple[str, Any]] = [
    ("list", [1]),
    ("str", "x"),
    ("bytes-value", {"a": b"x"}),
    ("set-value", {"a": {1}}),
    ("nan-value", {"a": math.nan}),
    ("infinity-value", {"a": math.inf}),
    ("tuple-value", {"a": (1,)}),
    ("object-value", {"a": object()}),
    ("int-key", {1: "x"}),
    ("none-key", {None: "x"}),
    ("tuple-key", {("a",): "x"}),
    ("empty-key", {"": 1}),
    ("control-key", {"a\nb": 1}),
    ("oversized-key", {"k" * (MAX_ID_LENGTH + 1): 1}),
    ("nested-int-key", {"a": {1: 2}}),
]


def enum_bad(*extra: tuple[str, Any]) -> list[tuple[str, Any]]:
    return [("unknown", "bogus"), ("int", 1), ("upper-case", "ACTIVE_"), *extra]


KEY_BAD: list[tuple[str, Any]] = [
    ("str", "agent:bot:discord:acct:dm:alice"),
    ("int", 5),
    ("none", None),
    ("missing-part", {"agent_id": "bot"}),
    ("bad-part", key_fields(peer_id="")),
]

VALID: dict[type[BaseModel], dict[str, Any]] = {
    SessionKey: key_fields(),
    Session: {"id": 1, "key": KEY, "created_at": NOW, "updated_at": NOW},
    SessionSummary: {
        "id": 1, "key": KEY, "status": "active", "message_count": 0, "token_usage": 0,
        "created_at": NOW, "updated_at": NOW,
    },
    SessionFilter: {},
    SessionPatch: {},
    StoredMessage: {"role": "user", "content": "hi"},
    HistoryQuery: {},
    ChannelContext: {"channel": "discord", "account_id": "acct", "peer_kind": "dm",
                     "peer_id": "alice"},
}

FIELD_BAD: dict[type[BaseModel], dict[str, list[tuple[str, Any]]]] = {
    SessionKey: {
        "agent_id": REQUIRED_TEXT_BAD,
        "channel": REQUIRED_TEXT_BAD,
        "account_id": REQUIRED_TEXT_BAD,
        "peer_kind": enum_bad(("none", None), ("upper", "DM")),
        "peer_id": REQUIRED_TEXT_BAD,
    },
    Session: {
        "id": [*ID_BAD, ("none", None)],
        "key": KEY_BAD,
        "created_at": [*DATETIME_BAD, ("none", None)],
        "updated_at": [*DATETIME_BAD, ("none", None)],
        "message_count": INT_BAD,
        "token_usage": INT_BAD,
        "metadata": [*METADATA_BAD, ("none", None)],
        "status": enum_bad(("upper", "ACTIVE")),
        "compaction_count": INT_BAD,
        "last_compacted_at": DATETIME_BAD,
        "last_compaction_summary": [("int", 5), ("bytes", b"summary")],
    },
    SessionSummary: {
        "id": ID_BAD,
        "key": KEY_BAD,
        "status": enum_bad(("none", None)),
        "message_count": INT_BAD,
        "token_usage": INT_BAD,
        "created_at": DATETIME_BAD,
        "updated_at": DATETIME_BAD,
    },
    SessionFilter: {
        "agent_id": TEXT_BAD,
        "channel": TEXT_BAD,
        "account_id": TEXT_BAD,
        "peer_kind": enum_bad(),
        "peer_id": TEXT_BAD,
        "status": enum_bad(("empty-list", []), ("bad-in-list", ["active", "bogus"]),
                           ("dict", {"active": 1}), ("bytes", b"active")),
        "created_after": DATETIME_BAD,
        "created_before": DATETIME_BAD,
        "updated_after": DATETIME_BAD,
        "updated_before": DATETIME_BAD,
        "limit": [("zero", 0), ("over-page", 1001), ("str", "5"), ("bool", True),
                  ("float", 2.0), ("none", None)],
        "cursor": [("empty", ""), ("oversized", "c" * 1025), ("int", 5)],
    },
    SessionPatch: {
        "status": enum_bad(),
        "token_usage": INT_BAD,
        "add_tokens": INT_BAD,
        "metadata": METADATA_BAD,
        "replace_metadata": BOOL_BAD,
    },
    StoredMessage: {
        "id": ID_BAD,
        "role": enum_bad(("none", None), ("upper", "USER"), ("other", "function")),
        "content": JSON_BAD,
        "tool_calls": JSON_BAD,
        "created_at": [*DATETIME_BAD, ("none", None)],
        "token_count": INT_BAD,
        "external_id": TEXT_BAD,
        "compacted": BOOL_BAD,
    },
    HistoryQuery: {
        "limit": [("zero", 0), ("negative", -1), ("str", "5"), ("bool", True), ("float", 5.0),
                  ("too-big", 2**63)],
        "offset": [*INT_BAD, ("none", None)],
        "before": DATETIME_BAD,
        "after": DATETIME_BAD,
        "tail": BOOL_BAD,
        "include_compacted": BOOL_BAD,
    },
    ChannelContext: {
        "channel": [*REQUIRED_TEXT_BAD, ("reserved", "*")],
        "account_id": [*REQUIRED_TEXT_BAD, ("reserved", " * ")],
        "peer_kind": enum_bad(("none", None)),
        "peer_id": REQUIRED_TEXT_BAD,
        "thread_id": TEXT_BAD,
    },
}

BAD_CASES = [
    pytest.param(model, field, value, id=f"{model.__name__}.{field}-{label}")
    for model, fields in FIELD_BAD.items()
    for field, cases in fields.items()
    for label, value in cases
]


@pytest.mark.parametrize(("model", "field", "value"), BAD_CASES)
def test_bad_input_names_the_field(model: type[BaseModel], field: str, value: Any) -> None:
    with pytest.raises(InvalidInputError) as info:
        model(**{**VALID[model], field: value})
    error = info.value
    assert isinstance(error, ValueError)
    assert f"{field}:" in str(error) or f"{field}." in str(error)
    assert field in {e["field"].split(".")[0] for e in error.errors}


@pytest.mark.parametrize(("model", "field", "value"), BAD_CASES)
def test_bad_input_is_refused_by_model_validate_too(
    model: type[BaseModel], field: str, value: Any
) -> None:
    with pytest.raises(InvalidInputError) as info:
        model.model_validate({**VALID[model], field: value})
    assert field in str(info.value)


@pytest.mark.parametrize("model", list(VALID))
def test_valid_base_input_is_accepted(model: type[BaseModel]) -> None:
    # the bad-input cases above differ from this input in one field only
    instance = model(**VALID[model])
    assert model.model_validate_json(instance.model_dump_json()) == instance


@pytest.mark.parametrize("model", list(VALID))
def test_unknown_fields_are_rejected(model: type[BaseModel]) -> None:
    with pytest.raises(InvalidInputError, match="surprise"):
        model.model_validate({**VALID[model], "surprise": 1})


def test_all_bad_fields_are_reported_at_once() -> None:
    with pytest.raises(InvalidInputError) as info:
        StoredMessage(role="robot", content=b"x", token_count=-1)
    assert [e["field"] for e in info.value.errors] == ["role", "content", "token_count"]
    assert str(info.value).startswith("invalid StoredMessage: ")


# --- JSON schema -----------------------------------------------------------------------------


@pytest.mark.parametrize("model", list(VALID))
def test_every_model_has_a_json_schema(model: type[BaseModel]) -> None:
    schema = model.model_json_schema()
    assert schema["type"] == "object"
    assert set(schema["properties"]) == set(model.model_fields)
    json.dumps(schema)


def test_schema_marks_required_fields() -> None:
    assert set(SessionKey.model_json_schema()["required"]) == {
        "agent_id", "channel", "account_id", "peer_kind", "peer_id"
    }
    assert set(StoredMessage.model_json_schema()["required"]) == {"role", "content"}
    assert "required" not in SessionFilter.model_json_schema()


# --- enums -------------------------------------------------------------------------------------


def test_enum_values() -> None:
    assert [s.value for s in SessionStatus] == ["active", "idle", "compacted", "archived"]
    assert [k.value for k in PeerKind] == ["dm", "group", "thread"]
    assert [r.value for r in Role] == ["user", "assistant", "system", "tool"]
    assert SessionStatus("idle") is SessionStatus.IDLE


# --- Session and SessionSummary ----------------------------------------------------------------


def test_session_defaults_and_summary() -> None:
    session = Session(id=7, key=KEY, created_at=NOW, updated_at=NOW)
    assert session.status is SessionStatus.ACTIVE
    assert (session.message_count, session.token_usage, session.compaction_count) == (0, 0, 0)
    assert session.metadata == {}
    assert session.last_compacted_at is None
    assert session.last_compaction_summary is None
    summary = session.summary()
    assert summary == SessionSummary(
        id=7, key=KEY, status="active", message_count=0, token_usage=0,
        created_at=NOW, updated_at=NOW,
    )


def test_session_json_round_trip() -> None:
    session = Session(
        id=3,
        key={"agent_id": "Bot", "channel": "x", "account_id": "y", "peer_kind": "group",
             "peer_id": "#g"},
        created_at=NOW,
        updated_at=NOW + timedelta(seconds=1),
        message_count=2,
        token_usage=100,
        metadata={"topic": "ünï", "n": [1, 2.5, None, True, {"deep": "x"}], "big": 2**70},
        status="compacted",
        compaction_count=1,
        last_compacted_at=NOW,
        last_compaction_summary="they talked",
    )
    assert session.key == SessionKey("bot", "x", "y", "group", "#g")
    assert Session.model_validate_json(session.model_dump_json()) == session
    assert Session.model_validate(session.model_dump()) == session


def test_session_is_immutable() -> None:
    session = Session(id=1, key=KEY, created_at=NOW, updated_at=NOW)
    with pytest.raises(ValidationError):
        session.status = SessionStatus.IDLE  # type: ignore[misc]


def test_largest_counters_are_accepted() -> None:
    big = 2**63 - 1
    session = Session(id=big, key=KEY, created_at=NOW, updated_at=NOW, token_usage=big)
    assert session.token_usage == big


def test_session_datetimes_are_converted_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    session = Session(
        id=1, key=KEY, created_at=datetime(2024, 5, 1, 14, 30, tzinfo=plus_two),
        updated_at="2024-05-01T12:30:00Z",
    )
    assert session.created_at == NOW
    assert session.created_at.tzinfo is UTC
    assert session.updated_at == NOW
    assert session.updated_at.tzinfo is UTC


# --- metadata ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"a": 1},
        {"nested": {"list": [1, "two", None, False, 0.5, {"x": []}]}},
        {"unicode": "ünï ✓", "ключ": "значение"},
        {"k" * MAX_ID_LENGTH: "longest key"},
        {"negative-zero": -0.0, "big": 10**30},
    ],
)
def test_metadata_accepts_json(metadata: dict[str, Any]) -> None:
    session = Session(id=1, key=KEY, created_at=NOW, updated_at=NOW, metadata=metadata)
    assert session.metadata == metadata
    assert Session.model_validate_json(session.model_dump_json()).metadata == metadata
    assert SessionPatch(metadata=metadata).metadata == metadata


def test_metadata_error_points_into_the_value() -> None:
    with pytest.raises(InvalidInputError) as info:
        Session(id=1, key=KEY, created_at=NOW, updated_at=NOW,
                metadata={"a": [0, {"b": b"x"}]})
    assert "metadata" in str(info.value)
    assert "a[1].b" in str(info.value)
    assert "bytes" in str(info.value)


def test_metadata_key_errors_show_the_key() -> None:
    with pytest.raises(InvalidInputError) as info:
        SessionPatch(metadata={"ok": 1, "": 2})
    assert info.value.errors == [
        {"field": "metadata", "message": "key '': must not be empty or whitespace only"}
    ]


# --- SessionFilter -----------------------------------------------------------------------------


def test_filter_defaults_list_everything_but_archived() -> None:
    default = SessionFilter()
    assert default.status is None
    assert default.statuses == (SessionStatus.ACTIVE, SessionStatus.IDLE, SessionStatus.COMPACTED)
    assert default.limit == 50
    assert SessionStatus.ARCHIVED not in default.statuses


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("archived", ("archived",)),
        (SessionStatus.IDLE, ("idle",)),
        (["idle", "active"], ("active", "idle")),
        (("archived", SessionStatus.ARCHIVED), ("archived",)),
        ({"compacted", "active"}, ("active", "compacted")),
        (frozenset({SessionStatus.IDLE}), ("idle",)),
        ((s for s in ["idle", "idle", "active"]), ("active", "idle")),
    ],
    ids=["one-str", "one-enum", "list", "duplicates", "set", "frozenset", "generator"],
)
def test_filter_status_one_or_several(status: Any, expected: tuple[str, ...]) -> None:
    filt = SessionFilter(status=status)
    assert filt.statuses == tuple(SessionStatus(s) for s in expected)
    assert all(isinstance(s, SessionStatus) for s in filt.statuses)


def test_filter_round_trips_through_json() -> None:
    filt = SessionFilter(
        agent_id="Bot", channel="Discord", peer_kind="group", peer_id="G1",
        status=["idle", "active"], created_after=NOW, limit=1000, cursor="abc",
    )
    assert (filt.agent_id, filt.channel, filt.peer_id) == ("bot", "discord", "G1")
    assert SessionFilter.model_validate_json(filt.model_dump_json()) == filt


def test_filter_limit_bounds() -> None:
    assert SessionFilter(limit=1).limit == 1
    assert SessionFilter(limit=1000).limit == 1000


# --- SessionPatch ------------------------------------------------------------------------------


def test_patch_token_usage_and_add_tokens_together_are_rejected() -> None:
    with pytest.raises(InvalidInputError) as info:
        SessionPatch(token_usage=10, add_tokens=5)
    assert "token_usage" in str(info.value)
    assert "add_tokens" in str(info.value)
    assert SessionPatch(token_usage=10).token_usage == 10
    assert SessionPatch(add_tokens=5).add_tokens == 5
    assert SessionPatch(token_usage=0, add_tokens=None).token_usage == 0


def test_patch_defaults_change_nothing() -> None:
    patch = SessionPatch()
    assert patch.status is None
    assert patch.token_usage is None
    assert patch.add_tokens is None
    assert patch.metadata is None
    assert patch.replace_metadata is False


def test_patch_metadata_none_values_mean_remove() -> None:
    patch = SessionPatch(metadata={"gone": None, "kept": 1}, replace_metadata=True)
    assert patch.metadata == {"gone": None, "kept": 1}
    assert SessionPatch.model_validate_json(patch.model_dump_json()) == patch


# --- StoredMessage -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shortcut", "role"),
    [
        (StoredMessage.user, Role.USER),
        (StoredMessage.assistant, Role.ASSISTANT),
        (StoredMessage.system, Role.SYSTEM),
        (StoredMessage.tool, Role.TOOL),
    ],
)
def test_message_shortcuts(shortcut: Any, role: Role) -> None:
    message = shortcut({"text": "hi"}, token_count=3, external_id="ext-1")
    assert message.role is role
    assert message.content == {"text": "hi"}
    assert message.token_count == 3
    assert message.external_id == "ext-1"
    assert message.id is None
    assert message.compacted is False
    assert message == StoredMessage(role=role.value, content={"text": "hi"}, token_count=3,
                                    external_id="ext-1", created_at=message.created_at)


@pytest.mark.parametrize(
    "content",
    ["hi", "", 0, -1.5, True, None, [], {}, [1, "a", None], {"parts": [{"type": "text"}]},
     "ünï ✓ \u0000 even NUL is JSON text", 2**80],
)
def test_message_content_is_any_json(content: Any) -> None:
    message = StoredMessage.user(content)
    assert message.content == content
    assert StoredMessage.model_validate_json(message.model_dump_json()).content == content


def test_message_tool_calls() -> None:
    calls = [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}]
    message = StoredMessage.assistant(None, tool_calls=calls)
    assert message.tool_calls == calls
    assert StoredMessage.model_validate_json(message.model_dump_json()) == message


def test_message_created_at_defaults_to_now_in_utc() -> None:
    before = datetime.now(UTC)
    message = StoredMessage.user("hi")
    after = datetime.now(UTC)
    assert before <= message.created_at <= after
    assert message.created_at.tzinfo is UTC


def test_message_created_at_is_converted_to_utc() -> None:
    tokyo = timezone(timedelta(hours=9))
    local = datetime(2024, 5, 1, 21, 30, tzinfo=tokyo)
    message = StoredMessage.user("hi", created_at=local)
    assert message.created_at == NOW
    assert message.created_at.tzinfo is UTC
    assert message.created_at.hour == 12


def test_message_naive_datetime_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="created_at"):
        StoredMessage.user("hi", created_at=datetime(2024, 5, 1, 12, 30))


def test_message_token_count_and_id() -> None:
    assert StoredMessage.user("hi", token_count=0).token_count == 0
    assert StoredMessage.user("hi", id=1).id == 1
    assert StoredMessage.user("hi", compacted=True).compacted is True


def test_message_is_immutable() -> None:
    message = StoredMessage.user("hi")
    with pytest.raises(ValidationError):
        message.content = "changed"  # type: ignore[misc]


# --- HistoryQuery ------------------------------------------------------------------------------


def test_history_query_defaults() -> None:
    query = HistoryQuery()
    assert query.limit is None
    assert query.offset == 0
    assert query.before is None
    assert query.after is None
    assert query.tail is False
    assert query.include_compacted is False


def test_history_query_round_trip() -> None:
    query = HistoryQuery(limit=10, offset=5, before=NOW, after=NOW - timedelta(days=1),
                         tail=True, include_compacted=True)
    assert HistoryQuery.model_validate_json(query.model_dump_json()) == query


# --- _json -----------------------------------------------------------------------------------


def test_json_helpers() -> None:
    value = {"b": [1, 2.5, None, True], "a": "ünï"}
    assert _json.check_json(value) is value
    text = _json.dumps(value)
    assert text == '{"b":[1,2.5,null,true],"a":"ünï"}'
    assert _json.loads(text) == value
    with pytest.raises(_json.JsonError, match="b\\[1\\]"):
        _json.check_json({"b": [0, math.nan]})
    with pytest.raises(ValueError, match="nested deeper"):
        _json.check_json(json.loads("[" * 70 + "]" * 70))
    with pytest.raises(_json.JsonError, match="surrogate"):
        _json.check_json({"\udc00": 1})


@pytest.mark.parametrize("text", ["589", "1700000000", "1700000000.5", "2026-11-25", "tomorrow"])
def test_a_timestamp_given_as_text_must_be_rfc3339(text: str) -> None:
    """pydantic alone would read digits as Unix seconds; a time must be written as a time."""
    with pytest.raises(InvalidInputError, match=r"created_at.*RFC 3339"):
        StoredMessage(role="user", content="x", created_at=text)
    with pytest.raises(InvalidInputError, match=r"before.*RFC 3339"):
        HistoryQuery.model_validate({"before": text})
