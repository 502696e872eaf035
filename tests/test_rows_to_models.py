"""Models rebuilt from stored rows (the fast path) equal fully validated ones, field order too."""

from __future__ import annotations

from datetime import UTC, datetime

from aisopod_session import Role, Session, SessionKey, SessionStatus, SessionSummary, StoredMessage
from aisopod_session.store._schema import message_from_row, session_from_row, summary_from_row

NOW = datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC)
US = (NOW - datetime(1970, 1, 1, tzinfo=UTC)) // (NOW - NOW.replace(microsecond=123455))
SESSION_ROW = (7, "bot", "slack", "acct", "dm", "U1", "compacted", US, US, 3, 12, "replica-1", US,
               '{"a": [1, {"b": null}]}', 2, US, "summary")


def test_session_from_row_equals_a_validated_session() -> None:
    built = session_from_row(SESSION_ROW)
    expected = Session(
        id=7, key=SessionKey("bot", "slack", "acct", "dm", "U1"), created_at=NOW,
        updated_at=NOW, message_count=3, token_usage=12, metadata={"a": [1, {"b": None}]},
        status=SessionStatus.COMPACTED, compaction_count=2, last_compacted_at=NOW,
        last_compaction_summary="summary", run_owner="replica-1", run_since=NOW,
    )
    assert built == expected
    assert list(built.__dict__) == list(Session.model_fields)
    assert list(built.key.__dict__) == list(SessionKey.model_fields)
    assert built.model_dump_json() == expected.model_dump_json()
    assert hash(built.key) == hash(expected.key)


def test_summary_from_row_equals_a_validated_summary() -> None:
    built = summary_from_row(SESSION_ROW)
    assert built == session_from_row(SESSION_ROW).summary()
    assert list(built.__dict__) == list(SessionSummary.model_fields)


def test_message_from_row_equals_a_validated_message() -> None:
    row = (5, "tool", '{"out": "x"}', '[{"id": "c1"}]', US, 4, "ext-1", 1)
    built = message_from_row(row)
    expected = StoredMessage(id=5, role=Role.TOOL, content={"out": "x"},
                             tool_calls=[{"id": "c1"}], created_at=NOW, token_count=4,
                             external_id="ext-1", compacted=True)
    assert built == expected
    assert list(built.__dict__) == list(StoredMessage.model_fields)
    assert built.model_dump_json() == expected.model_dump_json()
