"""Commands that look after a store: ``serve``, ``db migrate / stats``, ``usage``, ``sweep``,
``purge``, ``maintenance``, ``peers forget`` and ``audit``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from aisopod_session.cli._app import (
    ChannelArg,
    DryRunOpt,
    JsonOpt,
    JsonResultOpt,
    PeerIdArg,
    YesOpt,
    nothing_found,
    settings,
    store_for,
)
from aisopod_session.cli._output import CliError, confirm, console, plural, print_json, when
from aisopod_session.cli._store import cli_actor
from aisopod_session.limits import MAX_AUDIT_RECORDS, MAX_USAGE_DAYS
from aisopod_session.models import SessionStatus
from aisopod_session.results import SearchIndexStatus


def serve(
    ctx: typer.Context,
    db: Annotated[str | None, typer.Option("--db", metavar="URL",
                                           help="Database URL (overrides the config).")] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(min=0, max=65535, help="Port.")] = None,
    config_file: Annotated[Path | None, typer.Option(
        "--config", metavar="FILE", help="TOML configuration file.")] = None,
) -> None:
    """Run the HTTP API (until SIGINT/SIGTERM)."""
    from aisopod_session.service import server
    from aisopod_session.service.config import load_config

    given = settings(ctx)
    db_url = db or (given.db if given.db_given else None)
    config = load_config(config_file or given.config, db_url=db_url, host=host, port=port)
    if given.schema is not None:
        database = config.database.model_copy(update={"db_schema": given.schema})
        config = config.model_copy(update={"database": database})
    server.serve(config)


def migrate(ctx: typer.Context, as_json: JsonResultOpt = False) -> None:
    """Create or upgrade the database schema; print its version."""
    with store_for(ctx) as store:
        name = store.backend
        if name.startswith("http"):
            raise CliError("db migrate works on a database (--db); a server migrates its own "
                           "database when it starts")
        version = store.schema_version()  # opening it migrated it
    if as_json:
        print_json({"backend": name, "schema_version": version})
    else:
        typer.echo(f"{name} database is at schema version {version}")


def stats(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Sessions by status, agents, live and compacted messages."""
    with store_for(ctx) as store:
        found = store.stats()
    # every status, in their order, also those no session is in
    by_status = {s.value: found.sessions_by_status.get(s, 0) for s in SessionStatus}
    if not any(by_status.values()):
        nothing_found(ctx, "no sessions")
    if as_json:
        print_json({"sessions_by_status": by_status, "agents": found.agents,
                    "messages_live": found.messages_live,
                    "messages_compacted": found.messages_compacted})
        return
    table = Table("", "count", show_header=False)
    table.columns[1].justify = "right"
    for status, count in by_status.items():
        table.add_row(f"sessions {status}", str(count))
    table.add_row("agents", str(found.agents))
    table.add_row("messages live", str(found.messages_live))
    table.add_row("messages compacted", str(found.messages_compacted))
    console().print(table)


def usage(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(
        min=1, max=MAX_USAGE_DAYS, help="The last this many UTC days, today included.")] = 14,
    agent: Annotated[str | None, typer.Option(help="Only this agent.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Messages stored and their tokens per UTC day and agent (what the console charts)."""
    with store_for(ctx) as store:
        rows = store.usage_by_day(days, agent_id=agent)
    if not rows:
        nothing_found(ctx, "no messages in that window")
    if as_json:
        print_json([row.model_dump(mode="json") for row in rows])
        return
    if not rows:
        return
    table = Table("day (UTC)", "agent", "messages", "tokens")
    for column in table.columns[2:]:
        column.justify = "right"
    for row in rows:
        table.add_row(row.day.isoformat(), Text(row.agent_id), str(row.messages), str(row.tokens))
    console().print(table)


# --- lifecycle, retention and privacy ----------------------------------------------------------


def sweep(ctx: typer.Context, dry_run: DryRunOpt = False, as_json: JsonResultOpt = False
          ) -> None:
    """Apply the lifecycle policy: silent sessions go idle, long-idle ones are archived."""
    with store_for(ctx) as store:
        result = store.sweep(dry_run=dry_run)
    if as_json:
        print_json(result.model_dump(mode="json"))
    elif dry_run:
        typer.echo(f"dry run: would make {plural(result.idled, 'session')} idle and archive "
                   f"{result.archived}")
    else:
        typer.echo(f"made {plural(result.idled, 'session')} idle, archived {result.archived}")


def purge(ctx: typer.Context, dry_run: DryRunOpt = False, as_json: JsonResultOpt = False
          ) -> None:
    """Apply the retention policy: delete old compacted messages, archived sessions and
    change-feed entries."""
    with store_for(ctx) as store:
        result = store.purge(dry_run=dry_run)
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    what = (f"{plural(result.sessions, 'archived session')}, "
            f"{plural(result.messages, 'message')} and "
            f"{plural(result.changes, 'change-feed record')}")
    typer.echo(f"dry run: would purge {what}" if dry_run else f"purged {what}")


def maintenance(
    ctx: typer.Context,
    batch_size: Annotated[int, typer.Option(
        min=1, help="Messages per batch of the search index build (each batch one short write).")
    ] = 1000,
    as_json: JsonResultOpt = False,
) -> None:
    """What the service's maintenance does, once: sweep, purge, and index for search the
    messages stored before search was turned on, until none is left (a progress line on a
    terminal; interrupted, the next run resumes where it stopped)."""
    with store_for(ctx) as store:
        swept = store.sweep()
        purged = store.purge()
        status = store.search_index_status()  # opening the store turned search on
        pending = status.pending
        if pending:
            with _index_progress(pending) as advance:
                status = store.build_search_index(batch_size=batch_size, on_progress=advance)
    indexed = max(0, pending - status.pending)
    if as_json:
        print_json({"sweep": swept.model_dump(mode="json"),
                    "purge": purged.model_dump(mode="json"),
                    "search_index": {"indexed": indexed, **status.model_dump(mode="json")}})
        return
    typer.echo(f"made {plural(swept.idled, 'session')} idle, archived {swept.archived}")
    typer.echo(f"purged {plural(purged.sessions, 'archived session')}, "
               f"{plural(purged.messages, 'message')} and "
               f"{plural(purged.changes, 'change-feed record')}")
    typer.echo(f"indexed {plural(indexed, 'older message')} for search; "
               + (f"{status.pending} still pending" if status.pending
                  else "the search index is complete"))


@contextmanager
def _index_progress(pending: int) -> Iterator[Callable[[SearchIndexStatus], None]]:
    """Messages indexed of those pending, on stderr, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield lambda status: None
        return
    columns = (TextColumn("indexing older messages for search"), BarColumn(),
               MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("index", total=pending)
        yield lambda status: bar.update(task, completed=pending - status.pending)


def forget_peer(ctx: typer.Context, channel: ChannelArg, peer_id: PeerIdArg, yes: YesOpt = False,
                as_json: JsonResultOpt = False) -> None:
    """Erase every direct-conversation session of a person, across agents and accounts,
    archived generations and compacted messages included (group chats are not touched)."""
    with store_for(ctx) as store:
        confirm(f"Erase every direct conversation with {peer_id!r} on {channel!r}, of every "
                "agent, archived ones included, for good?", yes)
        result = store.forget_peer(channel, peer_id, actor=cli_actor())
    if as_json:
        print_json(result.model_dump(mode="json"))
    else:
        typer.echo(f"erased {plural(result.sessions, 'session')} and "
                   f"{plural(result.messages, 'message')} of {peer_id} on {channel}")


def audit(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(
        min=1, max=MAX_AUDIT_RECORDS, help="At most this many.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """The newest audit records, newest first: who erased or exported whose data, how much."""
    with store_for(ctx) as store:
        records = store.audit_log(limit)
    if not records:
        nothing_found(ctx, "no audit records")
    if as_json:
        print_json([record.model_dump(mode="json") for record in records])
        return
    if not records:
        return
    table = Table("id", "at (UTC)", "actor", "action", "subject", "sessions", "messages")
    table.columns[4].overflow = "fold"
    for record in records:
        table.add_row(str(record.id), when(record.at), Text(record.actor), record.action,
                      Text(record.subject or ""), str(record.sessions), str(record.messages))
    console().print(table)
