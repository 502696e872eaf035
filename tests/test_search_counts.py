"""SQLite's ranked search of words and prefixes scores its window from counts (the message
row's ``search_tokens`` and FTS5's own counts of the terms) instead of reading each candidate's
token text: the same hits, scores and pages as the matcher's, which the conformance suite
compares with PostgreSQL's."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from aisopod_session import SearchFilter, SessionKey, SessionStore, StoredMessage
from aisopod_session.store import _search, _search_candidates
from aisopod_session.store._search_text import index_tokens

VOCABULARY = ["apple", "apples", "apricot", "banana", "band", "bandana", "cherry", "东", "京",
              "a", "ab", "aq", "c"]
QUERIES = ["apple", "ap*", "band*", "b*", "apple banana", "apple -cherry", "ban* -band",
           "a", "东", "a ab", "cherry a*", "apricot -\"a ab\"", "zebra", "ab*"]


def key(peer: str) -> SessionKey:
    return SessionKey("bot", "discord", "acct", "dm", peer)


def fill(store: SessionStore, rng: random.Random, sessions: int = 6) -> None:
    """Messages of random words (repeats next to each other included): most written 40 at a
    time (straight into FTS5), some one at a time (staged), some as tool calls."""
    bot = store.for_agent("bot")
    for number in range(sessions):
        bot.get_or_create(key(f"p{number}"))
        batch = []
        for i in range(40):
            words = " ".join(rng.choice(VOCABULARY) for _ in range(rng.randrange(1, 30)))
            if i % 9 == 0:
                batch.append(StoredMessage.assistant(None, tool_calls=[{
                    "id": f"c{number}-{i}", "function": {"name": "f", "arguments": words}}]))
            else:
                batch.append(StoredMessage.user(words))
        bot.append_messages(key(f"p{number}"), batch)
        for _ in range(3):
            bot.append_messages(key(f"p{number}"), [StoredMessage.user(
                " ".join(rng.choice(VOCABULARY) for _ in range(rng.randrange(1, 12))))])


def ranked(store: SessionStore, query: str, **options: Any) -> list[tuple[int, float]]:
    """Every hit of a best-first search, page by page."""
    bot = store.for_agent("bot")
    found: list[tuple[int, float]] = []
    cursor = None
    while True:
        page = bot.search(query, limit=7, cursor=cursor, **options)
        found.extend((hit.message_id, hit.score) for hit in page.hits)
        cursor = page.next_cursor
        if cursor is None:
            return found


def as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every ranked search read its candidates' text (no term is counted)."""
    monkeypatch.setattr(_search_candidates, "_MAX_COUNTED", -1)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    opened = SessionStore.open(str(tmp_path / "s.db"))
    fill(opened, random.Random(11))
    yield opened
    opened.close()


def test_counted_and_read_scores_are_the_same(store: SessionStore,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    counted = {query: ranked(store, query) for query in QUERIES}
    filtered = ranked(store, "apple", filter=SearchFilter(role=["user"]))
    with monkeypatch.context() as patch:
        as_text(patch)
        assert {query: ranked(store, query) for query in QUERIES} == counted
        assert ranked(store, "apple", filter=SearchFilter(role=["user"])) == filtered
    assert sum(len(hits) for hits in counted.values()) > 500
    assert counted["zebra"] == [] and len(counted["a ab"]) > 20


def test_a_counted_window_reads_no_text_of_its_fts5_candidates(
        store: SessionStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the staged entries (3 per session here) are read as text."""
    read: list[str] = []
    real = _search_candidates.occurrences

    def spy(query: Any, text: str) -> list[int] | None:
        read.append(text)
        return real(query, text)

    monkeypatch.setattr(_search_candidates, "occurrences", spy)
    for query in ("apple", "ap*", "cherry a*", "ban* -band"):
        read.clear()
        store.for_agent("bot").search(query, limit=100)
        assert len(read) <= 18
    read.clear()
    store.for_agent("bot").search('"apple banana"', limit=100)  # a phrase: read as text
    assert len(read) > 18


def test_the_window_is_the_newest_matches_with_or_without_counts(
        store: SessionStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a window of 5: the newest 5 matches, read in the index's order where a term has
    more than 5 matches, in any order where one has fewer."""
    monkeypatch.setattr(_search, "MAX_RANKED_MATCHES", 5)
    monkeypatch.setattr(_search_candidates, "MAX_RANKED_MATCHES", 5)
    bot = store.for_agent("bot")
    for query in QUERIES:
        newest = {hit.message_id for hit in bot.search(query, limit=5, order="newest").hits}
        page = bot.search(query, limit=10)
        assert {hit.message_id for hit in page.hits} == newest, query
        with monkeypatch.context() as patch:
            as_text(patch)
            assert bot.search(query, limit=10).hits == page.hits


def test_messages_indexed_without_a_count_are_read_as_text(
        store: SessionStore, tmp_path: Path) -> None:
    counted = {query: ranked(store, query) for query in QUERIES}
    with sqlite3.connect(tmp_path / "s.db") as raw:
        raw.execute("UPDATE messages SET search_tokens = NULL WHERE id % 3 = 0")
    assert {query: ranked(store, query) for query in QUERIES} == counted


def test_migration_14_counts_the_tokens_of_messages_indexed_before_it(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = SessionStore.open(str(path))
    fill(store, random.Random(3), sessions=2)
    before = {query: ranked(store, query) for query in QUERIES}
    store.close()
    with sqlite3.connect(path) as raw:  # back to schema 13
        raw.execute("DROP TABLE message_fts_instances")
        raw.execute("ALTER TABLE messages DROP COLUMN search_tokens")
        raw.execute("DELETE FROM aisopod_schema WHERE version = 14")
        assert raw.execute("SELECT count(*) FROM message_fts_staged").fetchone()[0] > 0
    store = SessionStore.open(str(path))
    with sqlite3.connect(path) as raw:
        rows = raw.execute("SELECT content, tool_calls, search_tokens FROM messages").fetchall()
    assert rows and all(count == len(index_tokens(content, tool_calls))
                        for content, tool_calls, count in rows)
    assert {query: ranked(store, query) for query in QUERIES} == before
    store.close()


def test_every_write_counts_the_tokens_it_indexes(tmp_path: Path) -> None:
    """Appends (staged and straight into FTS5), the backfill, and a store with search off
    (nothing counted until the backfill)."""
    path = tmp_path / "w.db"
    store = SessionStore.open(str(path), search=False)
    fill(store, random.Random(4), sessions=1)
    store.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT count(*) FROM messages WHERE search_tokens IS NOT NULL"
                           ).fetchone()[0] == 0
    store = SessionStore.open(str(path), search=True)
    assert store.build_search_index().pending == 0
    fill(store, random.Random(5), sessions=1)
    store.close()
    with sqlite3.connect(path) as raw:
        rows = raw.execute("SELECT content, tool_calls, search_tokens FROM messages").fetchall()
    assert len(rows) == 86 and all(count == len(index_tokens(content, tool_calls))
                                   for content, tool_calls, count in rows)
