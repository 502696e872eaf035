"""``import-from``: the sessions of another system (OpenClaw, the OpenAI Agents SDK, Google
ADK, LangChain) imported into the store (:mod:`aisopod_session.importers`)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Literal

import typer

from aisopod_session.cli._app import JsonResultOpt, store_for
from aisopod_session.cli._output import CliError, plural, print_json
from aisopod_session.importers import (
    ImportReport,
    KeyMapping,
    SessionReport,
    import_sessions,
    open_source,
)
from aisopod_session.results import ImportConflictPolicy

SourceKindArg = Literal["openclaw", "openai-agents", "adk", "langchain"]


def _channels(pairs: list[str]) -> dict[str, str]:
    renamed = {}
    for pair in pairs:
        source, sep, target = pair.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise CliError(f"--map-channel {pair!r}: expected SOURCE=TARGET (e.g. "
                           "telegram=tg)")
        renamed[source.strip()] = target.strip()
    return renamed


@contextmanager
def _progress_bar() -> Iterator[Callable[[int, int, int], None]]:
    """Sessions done of all, on stderr, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield lambda done, total, messages: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    columns = (TextColumn("importing sessions"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[messages]} messages"))
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("import", total=None, messages=0)

        def advance(done: int, total: int, messages: int) -> None:
            bar.update(task, completed=done, total=total, messages=messages)

        yield advance


def _line(session: SessionReport) -> str:
    counts = f"read {session.read}, imported {session.imported}"
    skipped = "; ".join(f"{reason} x{count}" for reason, count in session.skipped.items())
    why = f" ({session.reason})" if session.reason else ""
    extra = f"; skipped: {skipped}" if skipped else ""
    return f"{session.outcome:<16} {session.source_id} → {session.key}: {counts}{extra}{why}"


def _summary(report: ImportReport) -> str:
    done = "would import" if report.dry_run else "imported"
    sessions = report.count("would-import" if report.dry_run else "imported")
    parts = [f"{done} {plural(sessions, 'session')} "
             f"({plural(report.messages_imported, 'message')} of {report.messages_read} read)"]
    for outcome, label in (("already-imported", "already imported"), ("skipped", "skipped"),
                           ("failed", "failed")):
        if report.count(outcome):  # type: ignore[arg-type]
            parts.append(f"{report.count(outcome)} {label}")  # type: ignore[arg-type]
    return "; ".join(parts) + (" (dry run: nothing was written)" if report.dry_run else "")


def import_from(
    ctx: typer.Context,
    source_kind: Annotated[SourceKindArg, typer.Argument(
        metavar="SOURCE_KIND", help="openclaw, openai-agents, adk or langchain.")],
    source: Annotated[str, typer.Argument(
        metavar="SOURCE", help="OpenClaw: its state directory (or an agent's sessions "
        "directory); the others: a SQLite file or a database URL (sqlite:///…, "
        "postgresql://…).")],
    agent: Annotated[str | None, typer.Option(
        help="Import into this agent id (default: the source's own, or the kind's name).")
    ] = None,
    channel: Annotated[str | None, typer.Option(
        help="The channel of the keys (default: the kind's name; OpenClaw: for keys that "
             "name no channel).")] = None,
    map_channel: Annotated[list[str] | None, typer.Option(
        "--map-channel", metavar="SOURCE=TARGET",
        help="OpenClaw: rename a channel of its keys (repeatable).")] = None,
    table: Annotated[str | None, typer.Option(
        help="LangChain: the table (default message_store); Agents SDK: the messages table "
             "(default agent_messages).")] = None,
    on_conflict: Annotated[ImportConflictPolicy, typer.Option(
        "--on-conflict",
        help="A key that already holds a session not imported from this source: fail "
             "(nothing is imported), skip (keep it), archive-existing (archive it).")
    ] = "fail",
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Read and count everything, write nothing.")] = False,
    as_json: JsonResultOpt = False,
) -> None:
    """Import the sessions of another system. Whole sessions are committed in batches; a
    session already imported from the same source is skipped, so running it again adds
    nothing and a run that was stopped continues where it stopped.

    Prints a verification report: one line per source session (messages read, imported,
    skipped and why) and a summary; exit status 1 when a session failed."""
    mapping = KeyMapping(agent_id=agent, channel=channel,
                         channels=_channels(map_channel or []))
    opened = open_source(source_kind, source, mapping, table=table)
    try:
        with store_for(ctx) as store, _progress_bar() as advance:
            report = import_sessions(store, opened, on_conflict=on_conflict, dry_run=dry_run,
                                     progress=advance)
    finally:
        opened.close()
    if as_json:
        print_json(report.model_dump(mode="json"))
    else:
        for session in report.sessions:
            typer.echo(_line(session))
        typer.echo(_summary(report))
    if report.failed:
        raise typer.Exit(1)
