"""A search's candidates: read from the database index, confirmed and scored (``_search``
chooses the page from them and builds its hits).

The index selects *candidates* (every message holding all the wanted tokens: an FTS5 MATCH on
SQLite, a tsquery on PostgreSQL) inside the caller's scope and filters, newest first, or for a
``best`` page the most recently stored first, up to its window of ``MAX_RANKED_MATCHES``. On
SQLite the few entries short writes staged (``_search_index.STAGED_LIMIT``) are candidates too,
read in the same order and merged with FTS5's. The matcher of ``_search_text`` confirms each
candidate from its token text and scores it, so both backends give the same hits in the same
order; where the database can count a query's terms as the matcher does (single words and
prefixes), a ``best`` window is scored from those counts instead of its text.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any, Final, NamedTuple

from aisopod_session.limits import MAX_RANKED_MATCHES
from aisopod_session.store._search_text import (
    Query,
    Term,
    message_text,
    occurrences,
    padded,
    relevance,
    tokens,
)
from aisopod_session.store._tx import Tx

FTS = "message_fts"
STAGED = "message_fts_staged"
PG_INDEX = "message_search"
_INSTANCES = "message_fts_instances"

Found = tuple[float, int, int]
"""A confirmed candidate: (score, created_at, id), in ``best`` order, so the tuple is its own
sort key; ``found[1:]`` is its ``newest`` key. A plain tuple: a ``best`` window makes up to
``MAX_RANKED_MATCHES`` of them (a named tuple's constructor was a fifth of such a search)."""
ID: Final = 2

_MAX_CHUNK = 2000
"""Most candidates read per statement (each statement after the first reads 4 times more)."""
_TOKEN_TEXT = {
    "sqlite": "f.body, NULL, NULL",
    "postgres": "f.body, CASE WHEN f.body IS NULL THEN m.content END, "
                "CASE WHEN f.body IS NULL THEN m.tool_calls END",
}
"""What the matcher reads of each candidate, after its id and created_at: the tokens the index
keeps as text (``f.body``), or on PostgreSQL, for a message indexed before that column existed
(until ``build_search_index`` writes it), the message's content and tool calls, tokenized
again. Only a page's hits' other columns are read, once the page is chosen."""
_MAX_COUNTED = 2 * MAX_RANKED_MATCHES
"""SQLite: most occurrences of a term a ranked search counts in FTS5's index. fts5vocab reads
every occurrence of the term in the whole index, not only the candidates': beyond this many,
reading the (at most ``MAX_RANKED_MATCHES``) candidates' token text costs less."""
_UNSCORED: Any = object()


class _Reading(NamedTuple):
    """How a candidates statement reads its candidates: its columns after id and created_at
    (see :func:`_reading`). As text: the columns of :data:`_TOKEN_TEXT`. As counts (SQLite):
    the token count, with each wanted term's occurrences per message id in ``instances``; with
    ``whole``, every match fits the window, so the statement need not read the index in
    order. With ``sort`` (PostgreSQL), the statement orders by an expression of the id, which
    leaves the planner no walk of the primary key (see :func:`sorts_every_match`)."""

    columns: str
    instances: list[Counter[int]] | None = None
    whole: bool = False
    sort: bool = False


def _phrase(term: Term) -> str:
    return '"' + " ".join(term.tokens).replace('"', '""') + '"' + ("*" if term.prefix else "")


def _lexeme(token: str, prefix: bool) -> str:
    return "'" + token.replace("\\", "\\\\").replace("'", "''") + "'" + (":*" if prefix else "")


def _source(table: str) -> str:
    """The FROM clause of the candidates in index ``table``: with their message and session."""
    if table == STAGED:
        # CROSS JOIN: SQLite joins in the order written. The staged table holds a few rows,
        # but the planner, to avoid sorting, would walk messages by created_at instead (90 ms
        # a search at 1,000,000 messages, for an empty staged table).
        return ("message_fts_staged f CROSS JOIN messages m ON m.id = f.rowid "
                "CROSS JOIN sessions s ON s.id = m.session_id")
    id_column = "f.message_id" if table == PG_INDEX else "f.rowid"
    return (f"{table} f JOIN messages m ON m.id = {id_column} "
            "JOIN sessions s ON s.id = m.session_id")


def _pg_tokens(query: Query) -> dict[str, bool]:
    """PostgreSQL: the wanted tokens, each with whether it is wanted as a prefix only (a token
    wanted whole anywhere is wanted whole)."""
    prefix_only: dict[str, bool] = {}
    for term in query.wanted:
        for index, token in enumerate(term.tokens):
            prefix = term.prefix and index == len(term.tokens) - 1
            prefix_only[token] = prefix_only.get(token, True) and prefix
    return prefix_only


def index_condition(dialect: str, query: Query, where: list[str], order: str
                    ) -> tuple[str, str, Any]:
    """The index table, its id column, and the index condition's parameter (the condition is
    put first in ``where``).

    FTS5 phrases mean what the matcher's terms mean (the same tokens, in order), so SQLite's
    candidates are the matches, exclusions included. PostgreSQL's tsvector has no positions:
    it asks for every wanted token, and excludes single-word exclusions."""
    if dialect == "sqlite":
        match = "(" + " AND ".join(_phrase(term) for term in query.wanted) + ")"
        match += "".join(" NOT " + _phrase(term) for term in query.excluded)
        where.insert(0, "f.body MATCH ?")
        return FTS, "f.rowid", match
    prefix_only = _pg_tokens(query)
    tsquery = " & ".join(_lexeme(token, prefix) for token, prefix in prefix_only.items())
    tsquery += "".join(" & !" + _lexeme(term.tokens[0], term.prefix)
                       for term in query.excluded if len(term.tokens) == 1)
    where.insert(0, "f.terms @@ CAST(? AS tsquery)")
    if order == "best":
        # The most recently stored matches, by the index's own id: the planner picks, from its
        # statistics of the tsvector's tokens, between asking the GIN index for every match
        # and sorting them (a rare word, a prefix) and walking message_search's primary key
        # backwards until the window is full (a common word: a few ms where the sort of
        # nearly every message took 80-150 ms, 200,000 messages); see sorts_every_match
        return PG_INDEX, "f.message_id", tsquery
    # "+ 0": a newest-first page is ordered by created_at; bounding it by the bare id could let
    # the planner walk the primary key, testing every message, instead of asking the GIN index
    return PG_INDEX, "(m.id + 0)", tsquery


class _TokenStatistics(NamedTuple):
    """PostgreSQL's statistics of the index's tokens (``pg_stats.most_common_elems``), from
    its last ANALYZE of ``message_search``."""

    rows: float
    frequencies: dict[str, float]
    """The share of indexed messages holding each of the most common tokens."""
    rarest: float
    """The lowest of those shares: a token not among them is held by at most this share."""


_STATISTICS = (
    "SELECT c.reltuples, s.most_common_elems::text::text[], s.most_common_elem_freqs "
    "FROM pg_class c LEFT JOIN pg_stats s ON s.schemaname = current_schema() "
    "AND s.tablename = 'message_search' AND s.attname = 'terms' "
    "WHERE c.oid = to_regclass('message_search')"
)
_STATISTICS_MEMO = "search.token_statistics"
STATISTICS_SECONDS = 300.0
"""How long a store reuses the statistics it read (reading them costs ~1 ms: pg_stats is a
view over the catalogs); autovacuum's ANALYZE renews them as the index grows."""
_SORT_FACTOR = 0.3
"""Sorting every match costs less than walking when there are at most ``_SORT_FACTOR *
sqrt(MAX_RANKED_MATCHES * rows)`` of them. A walk reads about ``window * rows / matches``
entries (``c_walk`` each), a sort reads every match with its message (``c_sort`` each): the
two meet at ``sqrt(c_walk / c_sort * window * rows)`` matches. Measured at 1,000,000
messages: ``c_walk`` 0.32 µs, ``c_sort`` 2.4-3.2 µs, so the factor ``sqrt(c_walk / c_sort)``
is 0.32-0.36 (docs/performance-analysis.md)."""


def _token_statistics(tx: Tx) -> _TokenStatistics | None:
    """The statistics, read at most every :data:`STATISTICS_SECONDS` per store (None: there
    are none yet, before the first ANALYZE)."""
    now = time.monotonic()
    memo = tx.memo.get(_STATISTICS_MEMO)
    if memo is not None and now - memo[0] < STATISTICS_SECONDS:
        found: _TokenStatistics | None = memo[1]
        return found
    rows, elements, frequencies = tx.one(_STATISTICS) or (None, None, None)
    found = None
    if rows is not None and float(rows) > 0 and elements and frequencies:
        # After one share per token come the lowest and the highest of them.
        rarest = frequencies[len(elements)] if len(frequencies) > len(elements) \
            else min(frequencies)
        found = _TokenStatistics(float(rows), dict(zip(elements, map(float, frequencies),
                                                       strict=False)), float(rarest))
    tx.memo[_STATISTICS_MEMO] = (now, found)
    return found


def sorts_every_match(tx: Tx, query: Query) -> bool:
    """PostgreSQL, a ``best`` window: whether asking the GIN index for every match and sorting
    them by id surely costs less than walking the index's primary key backwards.

    The planner walks wherever its statistics say the window fills within the walk's cost
    estimate, which holds a walked entry for far cheaper than it is (0.32 µs each, its
    tsvector tested): at 1,000,000 messages, two words in 6,900 messages took 46 ms walking
    and 22 ms sorted. A match holds every whole token, so the rarest one bounds how many there
    are: when even that bound is below the two plans' crossing, sorting is no slower, whatever
    the tokens have in common. Without statistics, or with prefixes only, the planner
    chooses."""
    whole_tokens = [token for token, prefix in _pg_tokens(query).items() if not prefix]
    if not whole_tokens:
        return False
    statistics = _token_statistics(tx)
    if statistics is None:
        return False
    share = min(statistics.frequencies.get(token, statistics.rarest) for token in whole_tokens)
    return (statistics.rows * share
            <= _SORT_FACTOR * math.sqrt(MAX_RANKED_MATCHES * statistics.rows))


def _after_prefix(token: str) -> str | None:
    """The first string after every string that starts with ``token`` in code point order (the
    order of FTS5's terms: UTF-8 bytes sort as code points), or None if there is none."""
    following = ord(token[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:  # surrogates are not characters
        following = 0xE000
    return None if following > 0x10FFFF else token[:-1] + chr(following)


def _instance_counts(tx: Tx, query: Query) -> list[Counter[int]] | None:
    """SQLite: each wanted term's occurrences per message, counted in FTS5's own index (a term
    of FTS5's is a token of the matcher's); None if a term is a phrase or occurs more than
    :data:`_MAX_COUNTED` times."""
    counted = []
    for term in query.wanted:
        if len(term.tokens) != 1:
            return None
        token = term.tokens[0]
        if term.prefix:
            following = _after_prefix(token)
            if following is None:
                return None
            condition, values = "term >= ? AND term < ?", [token, following]
        else:
            condition, values = "term = ?", [token]
        docs = tx.all(f"SELECT doc FROM {_INSTANCES} WHERE {condition} LIMIT ?",
                      (*values, _MAX_COUNTED + 1))
        if len(docs) > _MAX_COUNTED:
            return None
        counted.append(Counter(int(row[0]) for row in docs))
    return counted


def _reading(tx: Tx, query: Query, order: str, table: str) -> _Reading:
    """How the candidates statement of index ``table`` reads them.

    SQLite, a ``best`` window of single words and prefixes: it scores up to
    ``MAX_RANKED_MATCHES`` candidates from the message row's ``search_tokens`` and FTS5's counts
    of the terms (:func:`_instance_counts`; FTS5's candidates are the matches, exclusions
    included), not from their text: reading the text out of FTS5 was most of such a search's
    time. PostgreSQL reads the text (counting in SQL, with ``replace``, cost more than the
    matcher), sorted where :func:`sorts_every_match`."""
    text = _Reading(_TOKEN_TEXT[tx.dialect.name])
    if order == "best" and table == PG_INDEX and sorts_every_match(tx, query):
        return text._replace(sort=True)
    if order != "best" or table != FTS:
        return text
    instances = _instance_counts(tx, query)
    if instances is None:
        return text
    # a match holds every wanted term: the least common one bounds how many there are
    whole = min(len(occurrences) for occurrences in instances) <= MAX_RANKED_MATCHES
    return _Reading("m.search_tokens", instances, whole)


def _chunk_sql(dialect: str, table: str, reading: _Reading, where: str, order: str,
               sorted_: bool) -> str:
    """The statement reading a chunk of candidates of index ``table``: id, created_at and
    the ``reading``'s columns."""
    source = _source(table)
    if dialect == "sqlite" and sorted_:
        # SQLite's sorter carries every result column: reading the token text in the sorted
        # statement would read it for every match (a common word: nearly every message), not
        # only for the chunk the sort keeps
        return (f"SELECT c.id, c.created_at, t.body, NULL, NULL FROM (SELECT m.id AS id, "
                f"m.created_at AS created_at FROM {source} WHERE {where} ORDER BY {order} "
                f"LIMIT ?) c JOIN {table} t ON t.rowid = c.id "
                "ORDER BY c.created_at DESC, c.id DESC")
    # every match fits the window: FTS5 reads a prefix's many terms faster in its own order
    ordered = "" if reading.whole else f" ORDER BY {order}"
    return (f"SELECT m.id, m.created_at, {reading.columns} FROM {source} WHERE {where}"
            f"{ordered} LIMIT ?")


def _from_text(query: Query, rows: Sequence[Sequence[Any]],
               memo: dict[tuple[int, ...], float | None]) -> Iterator[Found]:
    """The matches among candidates read as text: (id, created_at, body, content, tool_calls)."""
    for found_id, created_at, body, content, tool_calls in rows:
        if body is not None:
            counts, size = occurrences(query, " " + body + " "), body.count(" ") + 1
        else:
            found_tokens = tokens(message_text(content, tool_calls))
            counts, size = occurrences(query, padded(found_tokens)), len(found_tokens)
        if counts is not None:
            score = _score(query, counts, size, memo)
            if score is not None:
                yield score, int(created_at), int(found_id)


def _score(query: Query, counts: list[int], size: int,
           memo: dict[tuple[int, ...], float | None]) -> float | None:
    """:func:`relevance`, once per (token count, occurrences): a ``best`` window's hundreds of
    candidates share a few dozen."""
    key = (size, *counts)
    score: float | None = memo.get(key, _UNSCORED)
    if score is _UNSCORED:
        score = memo[key] = relevance(query, counts, size)
    return score


def _from_counts(tx: Tx, query: Query, instances: list[Counter[int]],
                 rows: Sequence[Sequence[Any]], memo: dict[tuple[int, ...], float | None]
                 ) -> Iterator[Found]:
    """SQLite: the matches among candidates read as counts: (id, created_at, token count), each
    wanted term's occurrences in ``instances``."""
    for found_id, created_at, size in rows:
        if size is None:  # indexed without its count (not expected since migration 0014)
            yield from _from_text(query, tx.all(
                f"SELECT rowid, ?, body, NULL, NULL FROM {FTS} WHERE rowid = ?",
                (created_at, found_id)), memo)
            continue
        score = _score(query, [each[found_id] for each in instances], size, memo)
        if score is not None:
            yield score, int(created_at), int(found_id)


def confirmed(tx: Tx, query: Query, order: str, table: str, where: list[str],
              params: list[Any], wanted: int, after: tuple[int, int] | None,
              id_column: str | None) -> list[Found]:
    """Up to ``wanted`` matches in index ``table``, newest first (``created_at``; with
    ``id_column``, the most recently stored first, which FTS5 reads without sorting), after
    ``after``; read a chunk of candidates at a time, each confirmed by the matcher or scored
    from its counts."""
    reading = _reading(tx, query, order, table)
    found: list[Found] = []
    memo: dict[tuple[int, ...], float | None] = {}
    chunk = wanted  # a newest-first page needs limit + 1; best its whole window
    order_by = ("m.created_at DESC, m.id DESC" if id_column is None
                else f"{id_column}{' + 0' if reading.sort else ''} DESC")
    while len(found) < wanted:
        clauses, values = list(where), list(params)
        if after is not None and id_column is not None:
            clauses.append(f"{id_column} < ?")
            values.append(after[-1])
        elif after is not None:
            clauses.append("(m.created_at < ? OR (m.created_at = ? AND m.id < ?))")
            values.extend((after[0], after[0], after[1]))
        chosen = tx.all(_chunk_sql(tx.dialect.name, table, reading, " AND ".join(clauses),
                                   order_by, id_column is None), (*values, chunk))
        found.extend(_from_text(query, chosen, memo) if reading.instances is None
                     else _from_counts(tx, query, reading.instances, chosen, memo))
        if reading.whole or len(chosen) < chunk or len(found) >= wanted:
            return found[:wanted]
        chunk = min(chunk * 4, _MAX_CHUNK)
        after = (int(chosen[-1][1]), int(chosen[-1][0]))
    return found


def merged(found: list[Found], staged: list[Found], by_id: bool, wanted: int) -> list[Found]:
    """The first ``wanted`` of two sources' confirmed candidates (each cut at ``wanted``): by
    id for a ``best`` window, newest first otherwise."""
    if not staged:
        return found
    ordered = sorted(found + staged, key=(lambda f: f[ID]) if by_id else (lambda f: f[1:]),
                     reverse=True)
    return ordered[:wanted]
