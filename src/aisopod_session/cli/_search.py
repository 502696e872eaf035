"""The ``search`` command: full-text search over the stored messages, every agent's (admin) or
one agent's, a page at a time, with the matched terms highlighted in each hit's snippet."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.text import Text

from aisopod_session.cli._app import admin_or_agent, looked_in, nothing_found, store_for
from aisopod_session.cli._output import CliError, console, print_json, when
from aisopod_session.errors import SearchDisabledError
from aisopod_session.limits import MAX_SEARCH_LIMIT
from aisopod_session.models import PeerKind, Role, SessionStatus
from aisopod_session.results import SearchFilter, SearchHit, SearchOrder, SearchPage

MATCH_STYLE = "bold yellow"
"""How a matched term looks on a colour terminal; elsewhere it is put in ``[`` ``]``."""


def _instant(option: str, text: str | None) -> datetime | None:
    """An option's date or date-time (ISO 8601); without a zone it is UTC."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date or date-time like 2026-11-25 or "
                                 "2026-11-25T09:30 (UTC unless a zone is given)",
                                 param_hint=option) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def search(
    ctx: typer.Context,
    words: Annotated[list[str], typer.Argument(
        metavar="QUERY", show_default=False,
        help='Words (all must match), "exact phrases", prefix*, -excluded (quote what the '
             'shell would read: \'"a phrase"\', \'refund*\'; a query that starts with - '
             'goes after --).')],
    *,
    agent: Annotated[str | None, typer.Option(
        help="Only this agent's messages (default: every agent's, an admin's search).")] = None,
    channel: Annotated[str | None, typer.Option()] = None,
    account: Annotated[str | None, typer.Option(help="Bot account id.")] = None,
    peer_kind: Annotated[PeerKind | None, typer.Option()] = None,
    peer_id: Annotated[str | None, typer.Option("--peer-id", "--peer", help="Peer id.")] = None,
    role: Annotated[list[Role] | None, typer.Option(
        help="Only messages of these roles (repeatable).")] = None,
    status: Annotated[list[SessionStatus] | None, typer.Option(
        help="Only sessions of these statuses (repeatable; default: every live status).")
    ] = None,
    since: Annotated[str | None, typer.Option(
        metavar="DATETIME", help="Messages created after this (UTC unless a zone is given).")
    ] = None,
    until: Annotated[str | None, typer.Option(
        metavar="DATETIME", help="Messages created before this.")] = None,
    include_compacted: Annotated[bool, typer.Option(
        "--include-compacted", help="Also the messages compaction took out.")] = False,
    include_archived: Annotated[bool, typer.Option(
        "--include-archived", help="Also archived generations (sessions reset since).")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=MAX_SEARCH_LIMIT, help="Hits per page.")
                     ] = 10,
    cursor: Annotated[str | None, typer.Option(
        help="next_cursor of the previous page (same query, filters and order).")] = None,
    order: Annotated[SearchOrder, typer.Option(
        help="best: highest score first; newest: newest message first.")] = "best",
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the page as JSON (hits, next_cursor) instead of text.")] = False,
) -> None:
    """Messages matching QUERY, best first (or newest), one page at a time.

    Each hit shows its score, time, role and position (seq) in its session's history, the
    session's key and id, and a snippet with the matched terms highlighted. A page prints the
    cursor to pass as --cursor for the next one (on stderr, or as "next_cursor" with --json)."""
    query = " ".join(words)
    filter = SearchFilter(
        channel=channel, account_id=account, peer_kind=peer_kind, peer_id=peer_id,
        role=tuple(role) if role else None, status=tuple(status) if status else None,
        after=_instant("--since", since), before=_instant("--until", until),
        include_compacted=include_compacted, include_archived=include_archived)
    with store_for(ctx) as store:
        try:
            with admin_or_agent(store, agent, "searches its own agent's messages"):
                page = (store.search_all(query, filter=filter, limit=limit, cursor=cursor,
                                         order=order) if agent is None
                        else store.for_agent(agent).search(query, filter=filter, limit=limit,
                                                           cursor=cursor, order=order))
        except SearchDisabledError as exc:
            raise CliError(f"search is turned off ({looked_in(ctx)}): {exc}") from exc
    if not page.hits:
        nothing_found(ctx, f"no messages match {query!r}")
    _notes(page)
    if as_json:
        print_json(page.model_dump(mode="json"))
        return
    out = console()
    colour = out.is_terminal and not out.no_color and out.color_system is not None
    for index, hit in enumerate(page.hits):
        if index:
            out.print()
        out.print(_heading(hit), style="dim" if colour else None)
        out.print(_snippet(hit, colour))
    if page.next_cursor:
        typer.echo(f"more: --cursor {page.next_cursor}", err=True)


def _notes(page: SearchPage) -> None:
    if not page.complete:
        typer.echo("note: the search index is still being built (build_search_index): older "
                   "messages may be missing", err=True)
    if page.partial_ranking:
        typer.echo("note: more messages matched than are ranked: only the most recently stored "
                   "were; narrow the search (--since, --agent, a filter) or use --order newest",
                   err=True)


def _heading(hit: SearchHit) -> Text:
    """``score  time  role #seq  key (session id, status)``: one line, the key whole."""
    role = hit.role.value + (" (compacted)" if hit.compacted else "")
    status = "" if hit.session_status is SessionStatus.ACTIVE else \
        f", status {hit.session_status.value}"
    return Text(f"{hit.score:.4f}  {when(hit.created_at)}  {role} #{hit.seq}  "
                f"{hit.key.canonical()} (session {hit.session_id}{status})")


def _snippet(hit: SearchHit, colour: bool) -> Text:
    """The snippet (one line: the store made its whitespace single spaces) indented, its matched
    terms in :data:`MATCH_STYLE` (colour) or between ``[`` and ``]``. Plain text, never Rich
    markup: content is the user's."""
    text = Text("  ")
    for segment in hit.snippet:
        piece = segment.text
        if not segment.match:
            text.append(piece)
        elif colour:
            text.append(piece, style=MATCH_STYLE)
        else:
            text.append(f"[{piece}]")
    return text
