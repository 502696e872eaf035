"""PostgreSQL's ranked search sorts every match instead of letting the planner walk the index's
primary key where PostgreSQL's statistics bound the matches below the two plans' crossing
(``_search_candidates.sorts_every_match``): the choice of plan never changes a hit, a score or
a page, and the statistics are read once per store and period, not per search."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from aisopod_session import SessionStore, StoredMessage
from aisopod_session.store import _search, _search_candidates, _tx
from aisopod_session.store._search_text import parse
from tests.conftest import PG_URL
from tests.test_search_counts import QUERIES, fill, key, ranked

RARE = "kiwi"  # in 3 of ~260 messages


def analyze(schema: str) -> None:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("ANALYZE {}.message_search").format(sql.Identifier(schema)))


@pytest.fixture
def store(pg_schema: str) -> Iterator[SessionStore]:
    opened = SessionStore.open(PG_URL, schema=pg_schema)
    fill(opened, random.Random(11))
    bot = opened.for_agent("bot")
    for number in range(3):
        bot.append_messages(key(f"p{number}"), [StoredMessage.user(f"{RARE} apple {number}")])
    analyze(pg_schema)
    yield opened
    opened.close()


def sorts(store: SessionStore, query: str) -> bool:
    return bool(store._engine.read(  # type: ignore[attr-defined]
        lambda tx: _search_candidates.sorts_every_match(tx, parse(query))))


def test_the_rarest_whole_token_decides(store: SessionStore) -> None:
    # 0.3 * sqrt(1000 * ~260 messages) = ~150: "apple" is in most messages, "kiwi" in 3
    assert not sorts(store, "apple")
    assert sorts(store, RARE)
    assert sorts(store, f"apple {RARE}")  # a match holds both: kiwi bounds them
    assert sorts(store, f'"apple {RARE}"')
    assert sorts(store, "zebra")  # in no message: at most the rarest known share
    assert not sorts(store, "ap*")  # a prefix only: the planner chooses
    assert sorts(store, f"ap* {RARE}")
    assert not sorts(store, f"apple -{RARE}")  # an exclusion bounds nothing


def test_without_statistics_the_planner_chooses(pg_schema: str) -> None:
    with SessionStore.open(PG_URL, schema=pg_schema) as empty:
        assert not sorts(empty, RARE)
        empty.for_agent("bot").get_or_create(key("p"))
        empty.for_agent("bot").append_messages(key("p"), [StoredMessage.user(RARE)])
        assert empty.for_agent("bot").search(RARE).hits[0].message_id > 0


@pytest.mark.parametrize("window", [5, 1000])
def test_sorting_or_walking_gives_the_same_pages(store: SessionStore, window: int,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_search, "MAX_RANKED_MATCHES", window)
    monkeypatch.setattr(_search_candidates, "MAX_RANKED_MATCHES", window)
    statements: list[str] = []
    all_rows = _tx.Tx.all

    def spy(tx: _tx.Tx, statement: str, params: Any = ()) -> list[Any]:
        statements.append(statement)
        return all_rows(tx, statement, params)

    monkeypatch.setattr(_tx.Tx, "all", spy)
    queries = [*QUERIES, RARE, f"apple {RARE}", f"band* {RARE}"]
    pages = {}
    for forced in (False, True):
        with monkeypatch.context() as patch:
            patch.setattr(_search_candidates, "sorts_every_match", lambda *_, sort=forced: sort)
            statements.clear()
            pages[forced] = {query: ranked(store, query) for query in queries}
            candidates = [s for s in statements if "f.terms @@" in s]
            sorted_by_id = [s for s in candidates if "ORDER BY f.message_id + 0 DESC" in s]
            assert candidates
            assert len(sorted_by_id) == (len(candidates) if forced else 0)
    assert pages[True] == pages[False]
    assert len(pages[True][RARE]) == 3
    if window == 5:  # the window holds the newest 5 matches, whatever the plan
        newest = {hit.message_id for hit in store.for_agent("bot").search(
            "apple", limit=5, order="newest").hits}
        assert {message_id for message_id, _ in pages[True]["apple"]} == newest


def test_the_statistics_are_read_once_per_period(store: SessionStore,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    one_row = _tx.Tx.one

    def spy(tx: _tx.Tx, statement: str, params: Any = ()) -> Any:
        if statement == _search_candidates._STATISTICS:
            reads.append(statement)
        return one_row(tx, statement, params)

    monkeypatch.setattr(_tx.Tx, "one", spy)
    bot = store.for_agent("bot")
    for _ in range(3):
        bot.search(RARE)
    assert len(reads) == 1
    bot.search(RARE, order="newest")  # a newest-first page needs none
    store._engine.memo.clear()  # type: ignore[attr-defined]
    reads.clear()
    for _ in range(3):
        bot.search(RARE)
    assert len(reads) == 1
    monkeypatch.setattr(_search_candidates, "STATISTICS_SECONDS", 0.0)
    bot.search(RARE)
    assert len(reads) == 2
