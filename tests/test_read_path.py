"""The fast paths of issue 6: one-statement reads, remembered validation, batches without
savepoints. Each must give exactly what the slower path gave."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from aisopod_session import (
    HistoryQuery,
    InvalidInputError,
    SessionKey,
    SessionNotFoundError,
    SessionStore,
    StoredMessage,
)
from aisopod_session.base import validated_twin
from aisopod_session.store import _checks, _messages
from aisopod_session.store._group_commit import Job
from aisopod_session.store._tx import OneStatement, Tx
from tests.conftest import TracedOpen

KEY = SessionKey("bot", "discord", "acct", "dm", "alice")


@pytest.fixture
def traced(traced_sqlite: TracedOpen) -> tuple[SessionStore, list[str]]:
    return traced_sqlite("reads.db")


def test_one_statement_reads_run_without_a_transaction(
    traced: tuple[SessionStore, list[str]],
) -> None:
    store, statements = traced
    with store:
        agent = store.for_agent("bot")
        agent.append_messages(agent.get_or_create(KEY).key, [StoredMessage.user("hi")])
        for read in (lambda: agent.get(KEY),
                     lambda: agent.get_history(KEY, HistoryQuery(limit=20, tail=True)),
                     lambda: agent.get_or_create(KEY),
                     lambda: agent.get_compaction_record(KEY),
                     agent.list):
            statements.clear()
            read()
            assert len(statements) == 1, statements
            assert statements[0].startswith("SELECT"), statements


def test_an_empty_history_is_told_from_a_missing_session_in_one_snapshot(
    traced: tuple[SessionStore, list[str]],
) -> None:
    store, statements = traced
    with store:
        agent = store.for_agent("bot")
        agent.get_or_create(KEY)
        statements.clear()
        assert agent.get_history(KEY) == []
        # The one statement found nothing: both statements run again in one read transaction.
        assert statements[0].startswith("SELECT")
        assert statements[1:] == ["BEGIN", *statements[2:-1], "COMMIT"]
        with pytest.raises(SessionNotFoundError):
            agent.get_history(SessionKey("bot", "discord", "acct", "dm", "nobody"))
        with pytest.raises(SessionNotFoundError):
            agent.get(SessionKey("bot", "discord", "acct", "dm", "nobody"))


def test_reads_see_the_latest_commit_of_another_connection(tmp_path: Path) -> None:
    path = str(tmp_path / "fresh.db")
    with SessionStore.open(path) as reader, SessionStore.open(path) as writer:
        ours, theirs = reader.for_agent("bot"), writer.for_agent("bot")
        theirs.get_or_create(KEY)
        for count in range(1, 6):
            theirs.append_messages(KEY, [StoredMessage.user(f"m{count}")])
            assert ours.get(KEY).message_count == count
            assert len(ours.get_history(KEY)) == count


def test_one_statement_inside_a_transaction_falls_back_in_that_transaction() -> None:
    calls: list[str] = []
    tx: Any = object()

    def run(given: Tx) -> int | None:
        calls.append("run")
        return None if len(calls) == 1 else 1

    def fallback(given: Tx) -> int:
        assert given is tx
        calls.append("fallback")
        return 2

    read = OneStatement(run, fallback)
    assert read(tx) == 2 and calls == ["run", "fallback"]
    assert read(tx) == 1 and calls == ["run", "fallback", "run"]
    assert OneStatement(lambda given: None)(tx) is None


def test_only_validated_instances_are_remembered() -> None:
    fields = (("agent_id", "Bot2"), ("channel", "discord"), ("account_id", "acct"),
              ("peer_kind", "dm"), ("peer_id", "x"))
    unchecked = SessionKey.model_construct(**dict(fields))
    assert SessionKey.model_validate(unchecked) is unchecked  # passed through, not validated
    assert validated_twin(SessionKey, tuple(unchecked.__dict__.items())) is None
    checked = SessionKey("Bot2", "discord", "acct", "dm", "x")
    # (An equal key validated earlier in this process may be the one remembered.)
    assert validated_twin(SessionKey, tuple(checked.__dict__.items())) == checked
    # The store still checks the unvalidated one: upper case is not a stored agent id.
    assert _checks.owned_key(unchecked, "bot2") == checked


def test_an_unvalidated_key_is_still_refused(tmp_path: Path) -> None:
    with SessionStore.open(str(tmp_path / "bad.db")) as store:
        agent = store.for_agent("bot")
        agent.get_or_create(KEY)
        bad = KEY.model_copy(update={"peer_id": " \x00 "})
        with pytest.raises(InvalidInputError):
            agent.get(bad)
        with pytest.raises(InvalidInputError):
            agent.get_history(bad)


def test_an_appended_message_equals_its_model_copy(tmp_path: Path) -> None:
    with SessionStore.open(str(tmp_path / "copy.db")) as store:
        agent = store.for_agent("bot")
        agent.get_or_create(KEY)
        given = StoredMessage.assistant({"text": "hi"}, token_count=3, external_id="e1")
        [stored] = agent.append_messages(KEY, [given])
        assert stored.id is not None
        assert stored == given.model_copy(update={"id": stored.id})
        assert stored == agent.get_history(KEY)[0]


def test_a_failing_job_rolls_back_alone_when_the_batch_runs_again(tmp_path: Path) -> None:
    with SessionStore.open(str(tmp_path / "batch.db")) as store:
        agent = store.for_agent("bot")
        agent.get_or_create(KEY)
        engine: Any = store._engine
        runs: list[bool] = []
        original = engine._run_jobs

        def run_jobs(jobs: list[Job], *, isolated: bool) -> bool:
            runs.append(isolated)
            done: bool = original(jobs, isolated=isolated)
            return done

        engine._run_jobs = run_jobs
        good = _messages.append_messages(KEY, [StoredMessage.user("kept")])
        missing = _messages.append_messages(SessionKey("bot", "d", "a", "dm", "none"),
                                       [StoredMessage.user("lost")])
        assert good.write is not None and missing.write is not None
        jobs = [Job(good.write), Job(missing.write), Job(good.write)]
        for job in jobs:
            job.event = threading.Event()
        engine._run_batch_with_retries(jobs)
        assert runs == [False, True]  # rolled back whole, then each job in a savepoint
        assert isinstance(jobs[1].error, SessionNotFoundError)
        assert jobs[0].error is None and jobs[2].error is None
        assert [m.content for m in agent.get_history(KEY)] == ["kept", "kept"]
