"""The search index itself, on both backends: what its own tables hold after an erasure (read
byte by byte), the same hits on SQLite and PostgreSQL for one corpus, every write path keeping
it (import, the inbox, group commit), and a database from before search being indexed in
batches while the store keeps working.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from aisopod_session import (
    Policies,
    RetentionPolicy,
    SearchFilter,
    SessionKey,
    SessionStore,
    SlidingWindow,
    StoredMessage,
)
from aisopod_session.store import _messages, _search_candidates, _search_index
from aisopod_session.store._group_commit import Job
from aisopod_session.store._migrations import migrations
from aisopod_session.store._search_text import index_tokens
from aisopod_session.store._tx import Tx
from tests.conftest import PG_URL

T0 = datetime(2026, 3, 1, tzinfo=UTC)
SECRETS = ("xylophonic", "quetzalcoatlus", "zebrafinch", "东京塔")


def key(peer: str, agent: str = "bot") -> SessionKey:
    return SessionKey(agent, "discord", "acct", "dm", peer)


def open_store(url: str, options: dict[str, Any], **more: Any) -> SessionStore:
    return SessionStore.open(url, **options, **more)


def index_bytes(url: str, options: dict[str, Any]) -> bytes:
    """Every byte of every value in the index's own tables."""
    chunks: list[bytes] = []
    if "schema" in options:
        with psycopg.connect(PG_URL) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(options["schema"])))
            # every column (the tsvector and the token text), whatever the table holds
            for row in conn.execute("SELECT message_search::text FROM message_search"):
                chunks.append(row[0].encode())
        return b"\n".join(chunks)
    with sqlite3.connect(url) as conn:
        tables = [name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'message_fts%'")]
        assert {"message_fts_data", "message_fts_idx", "message_fts_content",
                "message_fts_config"} <= set(tables)
        for table in tables:
            for row in conn.execute(f"SELECT * FROM {table}"):
                for value in row:
                    chunks.append(value if isinstance(value, bytes) else str(value).encode())
    return b"\n".join(chunks)


def traces(word: str) -> list[bytes]:
    """What of ``word`` an index may hold: the word, or each character of a word indexed one
    character at a time (the test's CJK word; none of its characters is used elsewhere)."""
    if word.isascii():
        return [word.encode()]
    return [char.encode() for char in word]


def secret_left(url: str, options: dict[str, Any], word: str) -> bool:
    """Whether anything of ``word`` is in the index's tables (for a CJK word, any character)."""
    data = index_bytes(url, options)
    return any(trace in data for trace in traces(word))


def secret_indexed(url: str, options: dict[str, Any], word: str) -> bool:
    data = index_bytes(url, options)
    return all(trace in data for trace in traces(word))


@pytest.mark.parametrize("erase", ["forget_peer", "delete", "clear", "purge_compacted", "purge"])
def test_erased_words_leave_the_index_tables(
        backend_url: tuple[str, dict[str, Any]], erase: str) -> None:
    url, options = backend_url
    policies = Policies(retention=RetentionPolicy(
        compacted_messages=timedelta(seconds=1), archived_sessions=timedelta(seconds=1)))
    store = open_store(url, options, policies=policies)
    bot = store.for_agent("bot")
    victim, keeper = key("victim"), key("keeper")
    for k in (victim, keeper):
        bot.get_or_create(k)
    bot.append_messages(keeper, [StoredMessage.user(f"common words {i}") for i in range(50)])
    # on SQLite the first secrets go into FTS5's segments (a long write), the last is staged
    bot.append_messages(victim, [
        *(StoredMessage.user(f"my {word} and common words") for word in SECRETS[:-1]),
        *(StoredMessage.user("padding") for _ in range(_search_index.STAGED_LIMIT))])
    bot.append_messages(victim, [StoredMessage.user(f"my {SECRETS[-1]} and common words")])
    bot.append_messages(keeper, [StoredMessage.user("more common words")])
    assert all(secret_indexed(url, options, word) for word in SECRETS)
    if "schema" not in options:
        staged = _index_rows(Path(url))[0]
        assert staged == 2  # the last secret and keeper's last message
    assert len(bot.search("xylophonic").hits) == 1
    if erase == "forget_peer":
        store.forget_peer("discord", "victim")
    elif erase == "delete":
        bot.delete(victim)
    elif erase == "clear":
        store.clear_sessions("bot")
    elif erase == "purge_compacted":
        bot.append_messages(victim, [StoredMessage.user("last")])
        bot.compact(victim, SlidingWindow(max_messages=1))
        store.purge_compacted()
    else:
        bot.reset(victim)
        store.purge(datetime.now(UTC) + timedelta(hours=1))
    everything = SearchFilter(include_compacted=True, include_archived=True)
    for word in SECRETS:
        assert store.search_all(word, filter=everything).hits == []
        assert not secret_left(url, options, word), f"{word} left in the index after {erase}"
    if erase != "clear":
        assert len(bot.search("common words").hits) == 10  # the rest is still found
    store.close()


def test_a_popped_message_leaves_results_but_not_yet_the_segments(tmp_path: Path) -> None:
    """What the erasing operations' optimize is for: without it (pop, the integrations' undo),
    FTS5 keeps a deleted word in its segments until they are merged. (The test above would
    fail without the optimize: this shows the bytes it reads are where the words are.)"""
    url = str(tmp_path / "s.db")
    store = SessionStore.open(url)
    bot = store.for_agent("bot")
    bot.get_or_create(key("alice"))
    # a write this long goes into FTS5's segments at once, not through the staged table
    bot.append_messages(key("alice"), [
        *(StoredMessage.user("plain") for _ in range(_search_index.STAGED_LIMIT)),
        StoredMessage.user("xylophonic")])
    bot.pop_message(key("alice"))
    assert bot.search("xylophonic").hits == []
    assert secret_left(url, {}, "xylophonic")
    store.forget_peer("discord", "nobody-at-all")  # erases nothing: no optimize needed
    bot.delete(key("alice"))
    assert not secret_left(url, {}, "xylophonic")
    store.close()


def _index_rows(path: Path) -> tuple[int, int]:
    """(rows in the staged table, rows in FTS5's index) of a SQLite store."""
    with sqlite3.connect(path) as conn:
        staged = conn.execute("SELECT count(*) FROM message_fts_staged").fetchone()[0]
        indexed = conn.execute("SELECT count(*) FROM message_fts").fetchone()[0]
    return int(staged), int(indexed)


def test_short_writes_are_staged_and_move_into_fts5_together(tmp_path: Path) -> None:
    """FTS5 writes a segment at every commit that indexed something: a short write stages its
    entries instead, and the write that fills the staged table moves them all into FTS5."""
    path = tmp_path / "s.db"
    store = SessionStore.open(str(path))
    bot = store.for_agent("bot")
    bot.get_or_create(key("alice"))
    limit = _search_index.STAGED_LIMIT
    for i in range(limit - 1):
        bot.append_messages(key("alice"), [StoredMessage.user(f"word{i}")])
    assert _index_rows(path) == (limit - 1, 0)
    bot.append_messages(key("alice"), [StoredMessage.user("last")])
    assert _index_rows(path) == (0, limit)
    bot.append_messages(key("alice"), [StoredMessage.user("long") for _ in range(limit)])
    assert _index_rows(path) == (0, 2 * limit)  # a long write goes into FTS5 at once
    bot.append_messages(key("alice"), [StoredMessage.user("one"), StoredMessage.user("two")])
    assert _index_rows(path) == (2, 2 * limit)
    bot.pop_message(key("alice"))  # a deleted message leaves the staged table too
    assert _index_rows(path) == (1, 2 * limit)
    store.close()
    assert _index_rows(path) == (1, 2 * limit)
    SessionStore.open(str(path), search=False).close()  # turning search off empties both
    assert _index_rows(path) == (0, 0)


def test_a_staged_message_the_backfill_indexes_again_is_found_once(tmp_path: Path) -> None:
    """SQLite hands a deleted newest message's id out again: a message stored (and staged)
    after search was turned on can carry an id below the backfill's bound, and the backfill
    indexes it too. It must leave the staged table then, or a search would find it twice."""
    path = tmp_path / "s.db"
    with SessionStore.open(str(path), search=False) as store:
        bot = store.for_agent("bot")
        bot.get_or_create(key("alice"))
        bot.append_messages(key("alice"), [StoredMessage.user("first kiwi"),
                                           StoredMessage.user("second")])
    with SessionStore.open(str(path), search=True) as store:
        bot = store.for_agent("bot")
        popped = bot.pop_message(key("alice"))
        assert popped is not None
        again = bot.append_messages(key("alice"), [StoredMessage.user("third kiwi")])[0]
        assert again.id == popped.id  # the id was handed out again, below the bound
        assert store.build_search_index().pending == 0
        assert _index_rows(path) == (0, 2)
        assert sorted(hit.message_id for hit in bot.search("kiwi").hits) == sorted(
            {again.id, bot.get_history(key("alice"))[0].id})


def test_staged_and_indexed_messages_page_together_in_order(tmp_path: Path) -> None:
    """A search reads the staged entries with FTS5's: every page in order, across both."""
    path = tmp_path / "s.db"
    store = SessionStore.open(str(path))
    bot = store.for_agent("bot")
    alice = key("alice")
    bot.get_or_create(alice)
    total = 2 * _search_index.STAGED_LIMIT + _search_index.STAGED_LIMIT // 2
    for i in range(total):  # created_at out of storage order, scores of three sizes
        bot.append_messages(alice, [StoredMessage.user(
            "apple " * (1 + i % 3) + f"n{i}",
            created_at=T0 + timedelta(minutes=(i * 7) % total))])
    staged, indexed = _index_rows(path)
    assert staged and indexed and staged + indexed == total
    messages = bot.get_history(alice)
    stored = {m.id: m for m in messages}
    for order in ("newest", "best"):
        hits, cursor = [], None
        while True:
            page = bot.search("apple", limit=7, order=order, cursor=cursor)
            hits.extend(page.hits)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert sorted(hit.message_id for hit in hits) == sorted(stored)
        if order == "newest":
            expected = sorted(stored, key=lambda i: (stored[i].created_at, i), reverse=True)
        else:
            scores = {hit.message_id: hit.score for hit in hits}
            assert len(set(scores.values())) == 3
            expected = sorted(stored, key=lambda i: (scores[i], stored[i].created_at, i),
                              reverse=True)
        assert [hit.message_id for hit in hits] == expected, order
    store.close()


CORPUS = [
    "The refund was promised on Tuesday, order A-1042",
    "Ein Café in Zürich; naïve façade; STRASSE",
    "我在东京工作了三年\uff0c東京タワーが見えます",
    "refunds refunds refund: processed weekly",
    "near or not and body:refund ^refund (refund)",
    "order order order of the phoenix",
    "안녕하세요 반갑습니다 order",
    "x" * 80 + " long word",
    "Ǆemal Łódź ØRESUND ﬁnance",
]
QUERIES = [
    "refund", "refund*", '"refund was promised"', "order -phoenix", "cafe zurich", "strasse",
    "东京", "京", "タワー", "반갑", "NEAR OR", "body:refund", "a-1042", "x" * 70, "x" * 64 + "*",
    "dzemal lodz", "oresund", "finance", '"order of"', "ord* -refund",
]


def _answers(store: SessionStore) -> list[Any]:
    answers = []
    for query in QUERIES:
        for order in ("best", "newest"):
            page = store.search_all(query, order=order, limit=100)
            answers.append([(hit.key.peer_id, hit.seq, hit.score,
                             [(s.text, s.match) for s in hit.snippet]) for hit in page.hits])
    return answers


def test_both_backends_give_the_same_hits_in_the_same_order(
        tmp_path: Path, pg_schema: str) -> None:
    results = []
    places: list[tuple[str, dict[str, Any]]] = [(str(tmp_path / "s.db"), {}),
                                                (PG_URL, {"schema": pg_schema})]
    for url, options in places:
        store = SessionStore.open(url, **options)
        bot = store.for_agent("bot")
        for round_ in range(3):
            for index, text in enumerate(CORPUS):
                k = key(f"peer{index}")
                bot.get_or_create(k)
                bot.append_messages(k, [StoredMessage.user(
                    f"{text} {round_}", created_at=T0 + timedelta(minutes=index % 4))])
        results.append(_answers(store))
        store.close()
    sqlite_answers, postgres_answers = results
    assert sqlite_answers == postgres_answers
    assert sum(1 for answer in sqlite_answers if answer) >= len(QUERIES) * 2 - 1


def test_every_write_path_indexes(backend_url: tuple[str, dict[str, Any]]) -> None:
    url, options = backend_url
    store = open_store(url, options)
    bot = store.for_agent("bot")
    k = key("alice")
    bot.enqueue(k, [StoredMessage.user("inbox marmalade")])
    assert bot.search("marmalade").hits == []  # waiting in the inbox: not history yet
    run = bot.start_run(k, "worker")
    bot.take_inbox(run)
    bot.finish_run(run)
    assert len(bot.search("marmalade").hits) == 1
    # group commit: many writers at once, every message indexed
    threads = [threading.Thread(target=lambda i=i: bot.append_messages(
        key(f"t{i}"), [StoredMessage.user(f"threaded kumquat {i}")]) if bot.get_or_create(
        key(f"t{i}")) else None) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(bot.search("kumquat", limit=100).hits) == 16
    # import (compacted originals included) into a fresh store
    bot.append_messages(k, [StoredMessage.user(f"lantern {i}") for i in range(3)])
    bot.compact(k, SlidingWindow(max_messages=1))
    exported = list(store.export_jsonl())
    store.clear_sessions()
    assert store.search_all("lantern").hits == []
    store.import_jsonl(exported)
    assert len(store.search_all("lantern").hits) == 1
    everything = SearchFilter(include_compacted=True)
    assert len(store.search_all("lantern", filter=everything).hits) == 3
    for i in range(3):  # each imported message indexed under its own id
        hits = store.search_all(f'"lantern {i}"', filter=everything).hits
        assert [[s.text for s in hit.snippet if s.match] for hit in hits] == [[f"lantern {i}"]]
    assert len(store.search_all("kumquat", limit=100).hits) == 16
    store.close()


def _database_before_search(url: str, options: dict[str, Any], messages: int,
                            version: int = 9) -> None:
    """A database at schema ``version`` (9: before search), with messages, written by plain
    SQL."""
    before = [m for m in migrations("postgres" if "schema" in options else "sqlite")
              if m.version <= version]
    rows = [(f"old message {i} {'dodo' if i % 7 == 0 else 'emu'}",) for i in range(messages)]
    if "schema" in options:
        with psycopg.connect(PG_URL, autocommit=True) as conn, conn.transaction():
            ident = sql.Identifier(options["schema"])
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
            conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(ident))
            conn.execute("CREATE TABLE aisopod_schema (version INTEGER PRIMARY KEY, "
                         "name TEXT NOT NULL, applied_at BIGINT NOT NULL)")
            for m in before:
                for statement in m.statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO aisopod_schema VALUES (%s, %s, 0)", (m.version, m.name))
            _old_rows(conn, "%s", rows)
        return
    with sqlite3.connect(url, isolation_level=None) as lite:
        lite.execute("BEGIN")
        lite.execute("CREATE TABLE aisopod_schema (version INTEGER PRIMARY KEY, "
                     "name TEXT NOT NULL, applied_at INTEGER NOT NULL)")
        for m in before:
            for statement in m.statements:
                lite.execute(statement)
            lite.execute("INSERT INTO aisopod_schema VALUES (?, ?, 0)", (m.version, m.name))
        _old_rows(lite, "?", rows)
        lite.execute("COMMIT")


def _old_rows(conn: Any, mark: str, rows: list[tuple[str]]) -> None:
    now = 1_770_000_000_000_000
    session = conn.execute(
        "INSERT INTO sessions (agent_id, channel, account_id, peer_kind, peer_id, status, "
        f"created_at, updated_at, message_count, last_seq) VALUES ('bot', 'discord', 'acct', "
        f"'dm', 'old', 'active', {mark}, {mark}, {mark}, {mark}) RETURNING id",
        (now, now, len(rows), len(rows))).fetchone()[0]
    for seq, (text,) in enumerate(rows, start=1):
        conn.execute("INSERT INTO messages (session_id, seq, role, content, created_at) "
                     f"VALUES ({mark}, {mark}, 'user', {mark}, {mark})",
                     (session, seq, f'"{text}"', now + seq))


def test_a_database_from_before_search_is_indexed_in_batches_while_it_works(
        backend_url: tuple[str, dict[str, Any]]) -> None:
    url, options = backend_url
    _database_before_search(url, options, 250)
    store = open_store(url, options)
    bot = store.for_agent("bot")
    assert store.search_index_status().pending == 250
    bot.append_messages(key("old"), [StoredMessage.user("new dodo")])  # indexed at once
    page = bot.search("dodo", limit=100)
    assert not page.complete and [hit.seq for hit in page.hits] == [251]
    progress: list[int] = []

    def step(status: Any) -> None:
        progress.append(status.pending)
        if len(progress) == 2:  # the store works between batches
            bot.append_messages(key("old"), [StoredMessage.user("dodo during the build")])

    done = store.build_search_index(batch_size=60, on_progress=step)
    assert progress == [190, 130, 70, 10, 0] and done.pending == 0
    page = bot.search("dodo", limit=100, order="newest")
    assert page.complete
    assert [hit.seq for hit in page.hits] == [252, 251, *range(246, 0, -7)]
    assert len(bot.search("emu", limit=100).hits) == 100
    assert store.build_search_index().pending == 0  # again: nothing to do
    store.close()


def _postgres_bodies(schema: str) -> dict[int, str | None]:
    with psycopg.connect(PG_URL) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        return dict(conn.execute("SELECT message_id, body FROM message_search").fetchall())


def test_postgres_keeps_each_messages_tokens_and_the_matcher_reads_them(
        pg_schema: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """message_search.body holds a message's tokens as the matcher searches them (folded, in
    order, repeats kept, one per CJK character), written with its tsvector; a search confirms
    and scores its candidates from it, without tokenizing a message again."""
    store = SessionStore.open(PG_URL, schema=pg_schema)
    bot = store.for_agent("bot")
    bot.get_or_create(key("alice"))
    [stored] = bot.append_messages(key("alice"), [StoredMessage.user(
        "Ein Café in Zürich, café au lait; 东京")])
    assert _postgres_bodies(pg_schema) == {stored.id: "ein cafe in zurich cafe au lait 东 京"}

    def no_tokenizing(text: str) -> list[str]:
        raise AssertionError(f"the matcher tokenized {text!r} again")

    monkeypatch.setattr(_search_candidates, "tokens", no_tokenizing)
    for order in ("best", "newest"):
        [hit] = bot.search('"cafe au" zur* 东', order=order).hits
        assert hit.message_id == stored.id and hit.score > 1
    store.close()


def test_a_postgres_index_without_token_text_is_filled_in_by_the_build(pg_schema: str) -> None:
    """An index written before message_search had its token text (schema 11): opening the
    store marks its messages pending; meanwhile their tsvectors still find them (the matcher
    tokenizes those) with the same hits and scores; build_search_index writes the text."""
    options = {"schema": pg_schema}
    _database_before_search(PG_URL, options, 40, version=11)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(pg_schema)))
        old = conn.execute("SELECT id, content, tool_calls FROM messages").fetchall()
        for id_, content, tool_calls in old:  # what version 11 wrote: the tsvector alone
            conn.execute("INSERT INTO message_search (message_id, terms) "
                         "VALUES (%s, array_to_tsvector(%s))",
                         (id_, sorted(set(index_tokens(content, tool_calls)))))
    store = SessionStore.open(PG_URL, schema=pg_schema)
    bot = store.for_agent("bot")
    assert set(_postgres_bodies(pg_schema).values()) == {None}
    assert store.search_index_status().pending == 40

    def answers() -> list[Any]:
        return [[(hit.seq, hit.score) for hit in bot.search(query, limit=100, order=order).hits]
                for query in ("dodo", '"old message"', "emu -dodo") for order in ("best", "newest")]

    before = answers()
    assert not bot.search("dodo").complete
    assert [seq for seq, _ in before[1]] == list(range(36, 0, -7))
    assert store.build_search_index(batch_size=15).pending == 0
    assert _postgres_bodies(pg_schema) == {
        id_: " ".join(index_tokens(content, tool_calls)) for id_, content, tool_calls in old}
    assert answers() == before
    assert bot.search("dodo").complete
    store.close()


def test_the_largest_message_is_indexed_on_both_backends(
        backend_url: tuple[str, dict[str, Any]]) -> None:
    """A 1 MiB message of distinct words: the searched part is cut at MAX_SEARCHED_CHARS of
    tokens, within a PostgreSQL tsvector's bounds; a word past it is not found, on both."""
    import random

    url, options = backend_url
    store = open_store(url, options)
    bot = store.for_agent("bot")
    bot.get_or_create(key("alice"))
    rng = random.Random(3)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(8))
             for _ in range(110_000)]
    text = " ".join(words)[: 1_048_576 - 2]
    bot.append_messages(key("alice"), [StoredMessage.user(text)])
    assert len(bot.search(words[0]).hits) == 1
    assert len(bot.search(words[7000]).hits) == 1  # within the first 65,536 characters
    assert bot.search(words[100_000]).hits == []  # past them
    store.close()


def test_with_search_off_nothing_is_indexed(backend_url: tuple[str, dict[str, Any]]) -> None:
    url, options = backend_url
    store = open_store(url, options, search=False)
    bot = store.for_agent("bot")
    bot.get_or_create(key("alice"))
    bot.append_messages(key("alice"), [StoredMessage.user("xylophonic"),
                                       StoredMessage.user("zebrafinch")])
    store.import_jsonl(list(store.export_jsonl()), on_conflict="archive-existing")
    assert len(bot.get_history(key("alice"))) == 2
    assert not secret_left(url, options, "xylophonic")
    assert store.search_index_status().enabled is False
    store.close()


def test_search_statements_are_served_by_the_index(traced_sqlite: Any, tmp_path: Path) -> None:
    """Every statement a search runs on SQLite starts from the FTS5 index (or a primary key):
    none scans messages or sessions, whatever the order, filter or page."""
    import re

    store, statements = traced_sqlite("plans.db")
    bot = store.for_agent("bot")
    for peer in range(5):
        bot.get_or_create(key(f"p{peer}"))
        bot.append_messages(key(f"p{peer}"), [StoredMessage.user(f"kiwi fruit {i}")
                                              for i in range(30)])
    del statements[:]
    for order in ("best", "newest"):
        page = bot.search('kiwi -"fruit 3"', limit=5, order=order,
                          filter=SearchFilter(role="user", after=T0, include_archived=True))
        bot.search('kiwi -"fruit 3"', limit=5, order=order, cursor=page.next_cursor,
                   filter=SearchFilter(role="user", after=T0, include_archived=True))
        store.search_all("fru*", order=order)
    store.close()
    queries = {s for s in statements if s.lstrip().upper().startswith("SELECT")}
    assert any("MATCH" in query for query in queries)
    with sqlite3.connect(tmp_path / "plans.db") as conn:
        for query in queries:
            plan = " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {query}"))
            assert not re.search(r"\bSCAN (sessions|messages|s|m)\b(?! USING)", plan), (
                query, plan)
            if "message_fts_staged f" in query:  # at most STAGED_LIMIT rows: the outer loop
                loops = [step for step in plan.split(" | ") if step.startswith(("SCAN", "SEARCH"))]
                assert loops[0].startswith(("SCAN f", "SEARCH f ")), (query, plan)
                assert not re.search(r"\bSCAN (sessions|messages|s|m)\b", plan), (query, plan)


def test_a_message_deleted_later_in_its_transaction_is_not_indexed(
    backend_url: tuple[str, dict[str, Any]],
) -> None:
    """An append whose message a later job of the same batch removes is never found. On
    PostgreSQL index rows are written just before COMMIT, joined to the messages still there:
    nothing of it reaches the index's table. SQLite indexes at once and forgets on delete (a
    trigger), so FTS5 keeps the words in its segments until they are merged, as after any pop:
    an erasing operation's optimize removes them."""
    url, options = backend_url
    with open_store(url, options) as store:
        bot = store.for_agent("bot")
        bot.get_or_create(key("alice"))
        bot.append_messages(key("alice"), [StoredMessage.user("plain words")])
        append = _messages.append_messages(key("alice"), [StoredMessage.user("xylophonic")])
        pop = _messages.pop_message(key("alice"))
        assert append.write is not None and pop.write is not None

        def append_then_pop(tx: Tx) -> Any:
            assert append.write is not None and pop.write is not None
            append.write(tx)
            return pop.write(tx)

        popped = store._engine.write(append_then_pop)
        assert popped is not None and popped.content == "xylophonic"
        assert bot.search("xylophonic").hits == []
        assert [hit.message_id for hit in bot.search("plain").hits] != []
        if "schema" not in options:  # SQLite
            bot.delete(key("alice"))
    assert not secret_left(url, options, "xylophonic")


def test_a_job_rolled_back_in_its_batch_leaves_no_index_entry(
    backend_url: tuple[str, dict[str, Any]],
) -> None:
    """A job that fails after appending is rolled back to its savepoint, its index entries
    with it: SQLite may hand its message id to the next job's message, whose own words are
    what the index then holds for that id."""
    url, options = backend_url
    with open_store(url, options) as store:
        bot = store.for_agent("bot")
        bot.get_or_create(key("alice"))
        failing = _messages.append_messages(key("alice"), [StoredMessage.user("quetzalcoatlus")])
        assert failing.write is not None

        def append_then_fail(tx: Tx) -> Any:
            assert failing.write is not None
            failing.write(tx)
            raise RuntimeError("the job had a bug")

        later = _messages.append_messages(key("alice"), [StoredMessage.user("zebrafinch")])
        jobs = [Job(append_then_fail), Job(later.pipelined or later.write)]  # type: ignore[arg-type]
        store._engine._run_batch(jobs)
        assert isinstance(jobs[0].error, RuntimeError) and jobs[1].error is None
        [stored] = jobs[1].result
        assert [hit.message_id for hit in bot.search("zebrafinch").hits] == [stored.id]
        assert bot.search("quetzalcoatlus").hits == []
    assert not secret_left(url, options, "quetzalcoatlus")
    assert secret_indexed(url, options, "zebrafinch")


def test_a_failing_job_that_indexes_much_does_not_take_earlier_jobs_entries_with_it(
    backend_url: tuple[str, dict[str, Any]],
) -> None:
    """Index entries are written in chunks as they are recorded: a job that records a chunk's
    worth and then fails is rolled back to its savepoint, which must not hold the entries of
    the jobs before it."""
    url, options = backend_url
    with open_store(url, options) as store:
        bot = store.for_agent("bot")
        bot.get_or_create(key("alice"))
        first = _messages.append_messages(key("alice"), [StoredMessage.user("zebrafinch")])
        many = _messages.append_messages(
            key("alice"), [StoredMessage.user(f"quetzalcoatlus {i}") for i in range(450)])
        assert first.write is not None and many.write is not None

        def append_many_then_fail(tx: Tx) -> Any:
            assert many.write is not None
            many.write(tx)
            raise RuntimeError("the job had a bug")

        jobs = [Job(first.write), Job(append_many_then_fail)]
        store._engine._run_batch(jobs)
        assert jobs[0].error is None and isinstance(jobs[1].error, RuntimeError)
        [stored] = jobs[0].result
        assert [hit.message_id for hit in bot.search("zebrafinch").hits] == [stored.id]
        assert bot.search("quetzalcoatlus").hits == []
