"""Full-text search over stored messages (the read side; ``_search_index`` keeps the index).

The database index selects *candidates* (every message holding all the wanted tokens: an FTS5
MATCH on SQLite, a tsquery on PostgreSQL), newest first, inside the caller's scope and filters
(the agent is a condition of the statement, never a check afterwards). On SQLite the few entries
short writes staged (``_search_index.STAGED_LIMIT``) are candidates too, read in the same
order and merged with FTS5's. The matcher of ``_search_text`` confirms each candidate, scores
it and cuts its snippet, so both backends give the same hits in the same order. A search reads
one snapshot; its cursor remembers the newest message id of its first page, so messages stored
while a caller pages are not mixed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any, NamedTuple

from pydantic import ValidationError

from aisopod_session._time import from_us, to_us
from aisopod_session.base import invalid_input_from
from aisopod_session.errors import InvalidInputError, SearchDisabledError
from aisopod_session.limits import (
    MAX_CURSOR_LENGTH,
    MAX_RANKED_MATCHES,
    MAX_SEARCH_LIMIT,
    MAX_SQL_INT,
)
from aisopod_session.models import PeerKind, Role, SessionKey, SessionStatus
from aisopod_session.results import SearchFilter, SearchHit, SearchPage, SnippetSegment
from aisopod_session.store._search_text import (
    Query,
    Term,
    message_text,
    padded,
    parse,
    scored,
    snippet,
    tokens,
)
from aisopod_session.store._tx import Tx, Work

ORDERS = ("best", "newest")
_MAX_CHUNK = 2000
"""Most candidates read per statement (each statement after the first reads 4 times more)."""
_TOKEN_TEXT = {
    "sqlite": "f.body, NULL, NULL",
    "postgres": "f.body, CASE WHEN f.body IS NULL THEN m.content END, "
                "CASE WHEN f.body IS NULL THEN m.tool_calls END",
}
"""What the matcher reads of each candidate, with its id and created_at in the candidates
statement: the tokens the index keeps as text (``f.body``), or on PostgreSQL, for a message
indexed before that column existed (until ``build_search_index`` writes it), the message's
content and tool calls, tokenized again. A ``best`` page confirms and scores up to
``MAX_RANKED_MATCHES`` candidates from these alone; only its hits' columns are read."""
_COLUMNS = ("m.id, m.seq, m.role, m.created_at, m.content, m.tool_calls, m.compacted, s.id, "
            "s.agent_id, s.channel, s.account_id, s.peer_kind, s.peer_id, s.status")
_DETAILS = {
    "sqlite": f"SELECT {_COLUMNS} FROM messages m JOIN sessions s ON s.id = m.session_id "
              "WHERE m.id IN ",
    "postgres": f"SELECT {_COLUMNS} FROM messages m JOIN sessions s ON s.id = m.session_id "
                "WHERE m.id = ANY(?)",
}
"""The columns of a page's hits, read by id once the page is chosen (on PostgreSQL the ids are
one array parameter)."""


class _Candidate(NamedTuple):
    """A row of :data:`_COLUMNS`."""

    id: int
    seq: int
    role: str
    created_at: int
    content: str
    tool_calls: str | None
    compacted: int
    session_id: int
    agent_id: str
    channel: str
    account_id: str
    peer_kind: str
    peer_id: str
    status: str


class _Found(NamedTuple):
    """A confirmed candidate (a tuple: a ``best`` page makes up to ``MAX_RANKED_MATCHES``),
    whose fields are in ``best`` order: the tuple is its own :attr:`best_key` to sort by."""

    score: float
    created_at: int
    id: int

    @property
    def newest_key(self) -> tuple[int, int]:
        return self.created_at, self.id

    @property
    def best_key(self) -> tuple[float, int, int]:
        return self.score, self.created_at, self.id


_STATE = {
    "sqlite": "SELECT enabled, pending_below, (SELECT coalesce(max(id), 0) FROM messages) "
              "FROM search_state WHERE id = 1",
    "postgres": "SELECT enabled, pending_below, (SELECT coalesce(max(id), 0) FROM messages), "
                "set_config('plan_cache_mode', 'force_custom_plan', true) "
                "FROM search_state WHERE id = 1",
}
"""The search state and the newest message id (a first page's bound), read first, in one
statement. On PostgreSQL it also makes this read transaction plan every statement for its own
parameters: psycopg prepares a statement run five times, and PostgreSQL may then settle on a
generic plan, made without knowing the tsquery, for every later search of the same shape (the
candidates' plan depends on how common the words are; see :func:`_candidates_sql`)."""


def search_filter(value: Any) -> SearchFilter:
    """The filter of a search, checked (None: the default one; a dict is validated)."""
    if value is None:
        return SearchFilter()
    if isinstance(value, SearchFilter):
        return value
    if isinstance(value, dict):
        try:
            return SearchFilter.model_validate(value)
        except ValidationError as exc:
            raise invalid_input_from(exc, "filter") from None
    raise InvalidInputError.for_field("filter", f"expected a SearchFilter, got "
                                                f"{type(value).__name__}")


def _phrase(term: Term) -> str:
    return '"' + " ".join(term.tokens).replace('"', '""') + '"' + ("*" if term.prefix else "")


def _lexeme(token: str, prefix: bool) -> str:
    return "'" + token.replace("\\", "\\\\").replace("'", "''") + "'" + (":*" if prefix else "")


_FTS = "message_fts"
_STAGED = "message_fts_staged"
_PG_INDEX = "message_search"


def _source(table: str) -> str:
    """The FROM clause of the candidates in index ``table``: with their message and session."""
    if table == _STAGED:
        # CROSS JOIN: SQLite joins in the order written. The staged table holds a few rows,
        # but the planner, to avoid sorting, would walk messages by created_at instead (90 ms
        # a search at 1,000,000 messages, for an empty staged table).
        return ("message_fts_staged f CROSS JOIN messages m ON m.id = f.rowid "
                "CROSS JOIN sessions s ON s.id = m.session_id")
    id_column = "f.message_id" if table == _PG_INDEX else "f.rowid"
    return (f"{table} f JOIN messages m ON m.id = {id_column} "
            "JOIN sessions s ON s.id = m.session_id")


def _candidates_sql(dialect: str, query: Query, where: list[str], order: str
                    ) -> tuple[str, str, Any]:
    """The index table, its id column, and the index condition's parameter.

    FTS5 phrases mean what the matcher's terms mean (the same tokens, in order), so SQLite's
    candidates are the matches, exclusions included. PostgreSQL's tsvector has no positions:
    it asks for every wanted token, and excludes single-word exclusions."""
    if dialect == "sqlite":
        match = "(" + " AND ".join(_phrase(term) for term in query.wanted) + ")"
        match += "".join(" NOT " + _phrase(term) for term in query.excluded)
        where.insert(0, "f.body MATCH ?")
        return _FTS, "f.rowid", match
    prefix_only: dict[str, bool] = {}  # a token wanted whole anywhere is wanted whole
    for term in query.wanted:
        for index, token in enumerate(term.tokens):
            prefix = term.prefix and index == len(term.tokens) - 1
            prefix_only[token] = prefix_only.get(token, True) and prefix
    tsquery = " & ".join(_lexeme(token, prefix) for token, prefix in prefix_only.items())
    tsquery += "".join(" & !" + _lexeme(term.tokens[0], term.prefix)
                       for term in query.excluded if len(term.tokens) == 1)
    where.insert(0, "f.terms @@ CAST(? AS tsquery)")
    if order == "best":
        # The most recently stored matches, by the index's own id: the planner picks, from its
        # statistics of the tsvector's tokens, between asking the GIN index for every match
        # and sorting them (a rare word, a prefix) and walking message_search's primary key
        # backwards until the window is full (a common word: a few ms where the sort of
        # nearly every message took 80-150 ms, 200,000 messages).
        return _PG_INDEX, "f.message_id", tsquery
    # "+ 0": a newest-first page is ordered by created_at; bounding it by the bare id could let
    # the planner walk the primary key, testing every message, instead of asking the GIN index
    return _PG_INDEX, "(m.id + 0)", tsquery


def _scope(agent_id: str | None, checked: SearchFilter) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("s.agent_id", agent_id), ("s.channel", checked.channel),
                          ("s.account_id", checked.account_id), ("s.peer_id", checked.peer_id),
                          ("s.peer_kind", None if checked.peer_kind is None
                           else checked.peer_kind.value)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    statuses = [status.value for status in checked.statuses]
    where.append(f"s.status IN ({', '.join('?' for _ in statuses)})")
    params.extend(statuses)
    if checked.role:
        where.append(f"m.role IN ({', '.join('?' for _ in checked.role)})")
        params.extend(role.value for role in checked.role)
    if not checked.include_compacted:
        where.append("m.compacted = 0")
    if checked.after is not None:
        where.append("m.created_at > ?")
        params.append(to_us(checked.after))
    if checked.before is not None:
        where.append("m.created_at < ?")
        params.append(to_us(checked.before))
    return where, params


def _encode_cursor(fingerprint: str, bound: int, last: tuple[Any, ...]) -> str:
    raw = json.dumps([fingerprint, bound, *last], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(cursor: Any, fingerprint: str, order: str) -> tuple[int, tuple[Any, ...]]:
    bad = InvalidInputError.for_field(
        "cursor", "is not a cursor of this search (pass next_cursor back unchanged, with the "
                  "same query, filter and order)")
    if not isinstance(cursor, str) or not 0 < len(cursor) <= MAX_CURSOR_LENGTH:
        raise bad
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad from None
    size = 5 if order == "best" else 4
    if (not isinstance(values, list) or len(values) != size or values[0] != fingerprint
            or not all(type(v) in (int, float) for v in values[1:])):
        raise bad
    return int(values[1]), tuple(values[2:])


def _chunk_sql(dialect: str, table: str, where: str, order: str, sorted_: bool) -> str:
    """The statement reading a chunk of candidates of index ``table``: id, created_at and
    :data:`_TOKEN_TEXT`."""
    source = _source(table)
    if dialect == "sqlite" and sorted_:
        # SQLite's sorter carries every result column: reading the token text in the sorted
        # statement would read it for every match (a common word: nearly every message), not
        # only for the chunk the sort keeps
        return (f"SELECT c.id, c.created_at, t.body, NULL, NULL FROM (SELECT m.id AS id, "
                f"m.created_at AS created_at FROM {source} WHERE {where} ORDER BY {order} "
                f"LIMIT ?) c JOIN {table} t ON t.rowid = c.id "
                "ORDER BY c.created_at DESC, c.id DESC")
    return (f"SELECT m.id, m.created_at, {_TOKEN_TEXT[dialect]} FROM {source} WHERE {where} "
            f"ORDER BY {order} LIMIT ?")


def _confirmed(tx: Tx, query: Query, table: str, where: list[str], params: list[Any],
               wanted: int, after: tuple[int, int] | None, id_column: str | None
               ) -> list[_Found]:
    """Up to ``wanted`` matches, newest first (``created_at``; with ``id_column``, the most
    recently stored first, which FTS5 reads without sorting), after ``after``; read a chunk of
    candidates at a time, each confirmed by the matcher."""
    found: list[_Found] = []
    chunk = wanted  # a newest-first page needs limit + 1; best its whole window
    order = "m.created_at DESC, m.id DESC" if id_column is None else f"{id_column} DESC"
    while len(found) < wanted:
        clauses, values = list(where), list(params)
        if after is not None and id_column is not None:
            clauses.append(f"{id_column} < ?")
            values.append(after[-1])
        elif after is not None:
            clauses.append("(m.created_at < ? OR (m.created_at = ? AND m.id < ?))")
            values.extend((after[0], after[0], after[1]))
        chosen = tx.all(_chunk_sql(tx.dialect.name, table, " AND ".join(clauses), order,
                                   id_column is None), (*values, chunk))
        if not chosen:
            return found
        for found_id, created_at, body, content, tool_calls in chosen:
            if body is not None:
                document, count = " " + body + " ", body.count(" ") + 1
            else:
                found_tokens = tokens(message_text(content, tool_calls))
                document, count = padded(found_tokens), len(found_tokens)
            relevance = scored(query, document, count)
            if relevance is not None:
                found.append(_Found(relevance, int(created_at), int(found_id)))
                if len(found) == wanted:
                    return found
        if len(chosen) < chunk:
            return found
        chunk = min(chunk * 4, _MAX_CHUNK)
        after = (int(chosen[-1][1]), int(chosen[-1][0]))
    return found


def _merged(found: list[_Found], staged: list[_Found], by_id: bool, wanted: int
            ) -> list[_Found]:
    """The first ``wanted`` of two sources' confirmed candidates, each already in order (by id
    for a ``best`` window, newest first otherwise) and each cut at ``wanted``."""
    if not staged:
        return found
    ordered = sorted(found + staged, key=(lambda f: f.id) if by_id else (lambda f: f.newest_key),
                     reverse=True)
    return ordered[:wanted]


def _details(tx: Tx, page: list[_Found]) -> dict[int, _Candidate]:
    """The columns of a page's hits, by message id."""
    if not page:
        return {}
    ids = [found.id for found in page]
    values: list[Any] = ids
    if tx.dialect.name == "sqlite":
        statement = f"{_DETAILS['sqlite']}({', '.join('?' for _ in ids)})"
    else:  # one array parameter (psycopg splits a statement of many placeholders slowly)
        statement, values = _DETAILS["postgres"], [ids]
    return {int(row.id): row for row in map(_Candidate._make, tx.all(statement, values))}


def _hit(query: Query, found: _Found, row: _Candidate) -> SearchHit:
    key = SessionKey._from_store({"agent_id": row.agent_id, "channel": row.channel,
                                  "account_id": row.account_id,
                                  "peer_kind": PeerKind(row.peer_kind), "peer_id": row.peer_id})
    # Built from values the store computed (every field given, of its type), without
    # validation: a page's dozens of segments were a third of a short search's time
    segments = SnippetSegment._from_store_many(
        [{"text": text, "match": hit}
         for text, hit in snippet(query, message_text(row.content, row.tool_calls))])
    return SearchHit._from_store({
        "session_id": int(row.session_id), "key": key,
        "session_status": SessionStatus(row.status), "message_id": int(row.id),
        "seq": int(row.seq), "role": Role(row.role), "created_at": from_us(int(row.created_at)),
        "compacted": bool(row.compacted), "score": found.score, "snippet": segments,
    })


def max_batches(value: Any) -> int | None:
    """``build_search_index``'s ``max_batches``: None (no bound) or a positive number."""
    if value is not None and (type(value) is not int or not 1 <= value <= MAX_SQL_INT):
        raise InvalidInputError.for_field("max_batches", "must be a positive number (or None)")
    return value


def search(query: Any, agent_id: str | None, filter: Any, limit: Any, cursor: Any,
           order: Any) -> Work[SearchPage]:
    """One page of the messages matching ``query`` (see the README's Search section)."""
    parsed = parse(query)
    checked = search_filter(filter)
    if type(limit) is not int or not 1 <= limit <= MAX_SEARCH_LIMIT:
        raise InvalidInputError.for_field("limit", f"must be 1 to {MAX_SEARCH_LIMIT}")
    if order not in ORDERS:
        raise InvalidInputError.for_field("order", f"must be one of {list(ORDERS)}")
    fingerprint = hashlib.sha256(repr((parsed.fingerprint(), agent_id, order,
                                       checked.model_dump_json())).encode()).hexdigest()[:16]
    position = None if cursor is None else _decode_cursor(cursor, fingerprint, order)

    def read(tx: Tx) -> SearchPage:
        state = tx.one(_STATE[tx.dialect.name])
        if not state[0]:
            raise SearchDisabledError("search is turned off for this store (it was opened "
                                      "with search=False): open it with search on")
        bound = position[0] if position else int(state[2])
        where, params = _scope(agent_id, checked)
        table, id_column, index_param = _candidates_sql(tx.dialect.name, parsed, where,
                                                        order)
        where.append(f"{id_column} <= ?")
        params.append(bound)
        if order == "newest" and position is not None:
            wanted = max(1, limit + 1)
            after: tuple[int, int] | None = (int(position[1][0]), int(position[1][1]))
        else:
            wanted = limit + 1 if order == "newest" else MAX_RANKED_MATCHES
            after = None
        by_id = id_column if order == "best" else None
        found = _confirmed(tx, parsed, table, where, [index_param, *params], wanted, after,
                           by_id)
        if table == _FTS:  # and the staged entries: every one a candidate (no MATCH)
            found = _merged(found, _confirmed(tx, parsed, _STAGED, where[1:], params, wanted,
                                              after, by_id),
                            by_id is not None, wanted)
        partial = False
        if order == "best":
            partial = len(found) == MAX_RANKED_MATCHES
            found.sort(reverse=True)  # by best_key: the tuple itself
            if position is not None:
                last = tuple(position[1])
                found = [f for f in found if f.best_key < last]
        page, more = found[:limit], len(found) > limit
        next_cursor = None
        if more and page:
            last_key = page[-1].best_key if order == "best" else page[-1].newest_key
            next_cursor = _encode_cursor(fingerprint, bound, last_key)
        rows = _details(tx, page)  # one snapshot: every candidate's row is still there
        return SearchPage(hits=[_hit(parsed, f, rows[f.id]) for f in page],
                          next_cursor=next_cursor,
                          complete=not state[1], partial_ranking=partial)

    return Work(read=read)
