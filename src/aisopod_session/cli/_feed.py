"""The ``changes`` command: the change feed, a page at a time or followed as it commits."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from aisopod_session.cli._app import JsonOpt, nothing_found, store_for
from aisopod_session.cli._output import console, print_json, when
from aisopod_session.limits import MAX_PAGE_SIZE
from aisopod_session.results import Change


def changes(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(
        metavar="CURSOR", help="After this cursor (a next cursor or a change's); default: the "
                               "oldest kept, or now with --follow.")] = None,
    agent: Annotated[str | None, typer.Option(help="Only this agent's changes.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_PAGE_SIZE,
                                       help="Changes per page.")] = 100,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Print changes as they commit, until interrupted (Ctrl-C).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Committed changes in commit order (ids, kinds and counts; never message content).

    A page prints the cursor to pass as --since for the next one (on stderr, or as
    "next_cursor" with --json). --follow prints one line per change (JSON Lines with --json)."""
    with store_for(ctx) as store:
        if follow:
            try:
                for change in store.watch(since, agent_id=agent):
                    if as_json:
                        typer.echo(change.model_dump_json())
                    else:
                        typer.echo(_line(change))
            except KeyboardInterrupt:
                return
            return
        page = store.changes(since, agent_id=agent, limit=limit)
    if not page:
        nothing_found(ctx, "no changes" if since is None else "no changes after that cursor")
    if as_json:
        print_json({"changes": [c.model_dump(mode="json") for c in page],
                    "next_cursor": page.next_cursor})
        return
    table = Table("cursor", "at (UTC)", "kind", "agent", "session", "key", "data")
    for change in page:
        table.add_row(change.cursor, when(change.at), change.kind.value,
                      Text(change.agent_id or ""), _session(change),
                      Text("" if change.key is None else str(change.key)), Text(_data(change)))
    if page:
        console().print(table)
    typer.echo(f"next: --since {page.next_cursor}", err=True)


def _session(change: Change) -> str:
    return "" if change.session_id is None else str(change.session_id)


def _data(change: Change) -> str:
    return json.dumps(change.data, ensure_ascii=False) if change.data else ""


def _line(change: Change) -> str:
    key = "" if change.key is None else str(change.key)
    return "  ".join((change.cursor, when(change.at), change.kind.value, change.agent_id or "-",
                      _session(change) or "-", key or "-", _data(change))).rstrip()
