"""Full-text search over stored messages (the read side; ``_search_index`` keeps the index).

``_search_candidates`` reads a search's candidates from the database index inside the caller's
scope and filters (the agent is a condition of the statement, never a check afterwards),
confirmed and scored; this module checks the request, chooses the page, reads its hits' columns
and cuts their snippets. A search reads one snapshot; its cursor remembers the newest message id
of its first page, so messages stored while a caller pages are not mixed in.
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
from aisopod_session.store._search_candidates import (
    FTS,
    ID,
    STAGED,
    Found,
    confirmed,
    index_condition,
    merged,
)
from aisopod_session.store._search_text import Query, message_text, parse, snippet
from aisopod_session.store._tx import Tx, Work

ORDERS = ("best", "newest")
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
candidates' plan depends on how common the words are; see
``_search_candidates.index_condition``)."""


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


def _details(tx: Tx, page: list[Found]) -> dict[int, _Candidate]:
    """The columns of a page's hits, by message id."""
    if not page:
        return {}
    ids = [found[ID] for found in page]
    values: list[Any] = ids
    if tx.dialect.name == "sqlite":
        statement = f"{_DETAILS['sqlite']}({', '.join('?' for _ in ids)})"
    else:  # one array parameter (psycopg splits a statement of many placeholders slowly)
        statement, values = _DETAILS["postgres"], [ids]
    return {int(row.id): row for row in map(_Candidate._make, tx.all(statement, values))}


def _hit(query: Query, found: Found, row: _Candidate) -> SearchHit:
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
        "compacted": bool(row.compacted), "score": found[0], "snippet": segments,
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
        table, id_column, index_param = index_condition(tx.dialect.name, parsed, where,
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
        found = confirmed(tx, parsed, order, table, where, [index_param, *params], wanted,
                          after, by_id)
        if table == FTS:  # and the staged entries: every one a candidate (no MATCH)
            staged = confirmed(tx, parsed, order, STAGED, where[1:], params, wanted, after,
                               by_id)
            found = merged(found, staged, by_id is not None, wanted)
        partial = False
        if order == "best":
            partial = len(found) == MAX_RANKED_MATCHES
            found.sort(reverse=True)  # best first: the tuple is its own key
            if position is not None:
                last = tuple(position[1])
                found = [f for f in found if f < last]
        page, more = found[:limit], len(found) > limit
        next_cursor = None
        if more and page:
            last_key = page[-1] if order == "best" else page[-1][1:]
            next_cursor = _encode_cursor(fingerprint, bound, last_key)
        rows = _details(tx, page)  # one snapshot: every candidate's row is still there
        return SearchPage(hits=[_hit(parsed, f, rows[f[ID]]) for f in page],
                          next_cursor=next_cursor,
                          complete=not state[1], partial_ranking=partial)

    return Work(read=read)
