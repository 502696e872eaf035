"""What the CLI prints, and where: data to stdout (a Rich table, or JSON with ``--json``);
questions, progress bars and errors to stderr. An error is one line, ``error: ...``."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from aisopod_session.models import Session, SessionSummary, StoredMessage
from aisopod_session.results import Run

CONTENT_CHARS = 2000
"""Longest content a table shows of a message (or a summary); the rest is cut off with ``…``."""


class CliError(Exception):
    """A failure the operator can act on: reported as one line on stderr, exit status 1."""


# --- errors ------------------------------------------------------------------------------------


def one_line(text: str) -> str:
    return " ".join(text.split()) or "failed"


def os_message(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc) or type(exc).__name__


def silence_stdout() -> None:
    """After a broken pipe (``... | head``), stop Python complaining when it flushes stdout."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


# --- data --------------------------------------------------------------------------------------


def console() -> Console:
    """Rich output to the current stdout. Not a terminal: as wide as the content, so that keys
    are never wrapped for grep or cut (a table is only as wide as its content needs)."""
    width = None if sys.stdout.isatty() else 8192
    return Console(file=sys.stdout, width=width, highlight=False)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False, indent=2))


def when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def content(value: Any, limit: int = CONTENT_CHARS) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "…"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def session_table(page: Iterable[SessionSummary]) -> Table:
    """A page of sessions, one row each."""
    table = Table("id", "key", "status", "messages", "tokens", "updated (UTC)")
    table.columns[1].overflow = "fold"
    for s in page:
        table.add_row(str(s.id), Text(s.key.canonical()), s.status.value,
                      str(s.message_count), str(s.token_usage), when(s.updated_at))
    return table


def session_details(session: Session, run: Run | None = None,
                    waiting: int | None = None) -> Table:
    """One session, one field a row (with its run and inbox, when they were read)."""
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows: list[tuple[str, str]] = [
        ("key", session.key.canonical()),
        ("id", str(session.id)),
        ("status", session.status.value),
        ("created (UTC)", when(session.created_at)),
        ("updated (UTC)", when(session.updated_at)),
        ("messages", str(session.message_count)),
        ("tokens", str(session.token_usage)),
        ("compactions", str(session.compaction_count)),
    ]
    if session.last_compacted_at is not None:
        rows.append(("last compacted", when(session.last_compacted_at)))
    if session.last_compaction_summary is not None:
        rows.append(("summary", content(session.last_compaction_summary)))
    rows.append(("metadata", json.dumps(session.metadata, ensure_ascii=False)))
    if run is not None:
        stop = ", stop requested" if run.stop_requested else ""
        rows.append(("run", f"{run.fence} held by {run.owner} since {when(run.started_at)}, "
                            f"lease until {when(run.expires_at)}{stop}"))
    if waiting:
        rows.append(("inbox", f"{waiting} waiting"))
    for name, value in rows:
        table.add_row(name, Text(value))
    return table


def message_table(messages: Iterable[StoredMessage]) -> Table:
    """Messages, one row each; long contents are cut (see :data:`CONTENT_CHARS`)."""
    table = Table("id", "role", "created (UTC)", "tokens", "content")
    table.columns[4].overflow = "fold"
    for m in messages:
        role = m.role.value + (" (compacted)" if m.compacted else "")
        text = content(m.content)
        if m.tool_calls is not None:
            text += f"\n[tool_calls] {content(m.tool_calls)}"
        table.add_row(str(m.id or ""), role, when(m.created_at),
                      "" if m.token_count is None else str(m.token_count), Text(text))
    return table


# --- the operator ------------------------------------------------------------------------------


def confirm(question: str, yes: bool) -> None:
    """Ask on stderr; anything but yes is a :class:`CliError` (nothing was changed)."""
    if yes:
        return
    try:
        answer = typer.confirm(question, default=False, err=True)
    except typer.Abort:  # no answer at all (end of input)
        answer = False
        typer.echo("", err=True)
    else:
        if not sys.stdin.isatty():  # the answer was not echoed: end the prompt's line
            typer.echo("", err=True)
    if not answer:
        raise CliError("not confirmed: nothing was changed (pass --yes to skip the question)")


@contextmanager
def progress(total: int | None, label: str, *, shown: bool = True
             ) -> Iterator[Callable[[int], None]]:
    """A byte-counting progress bar on stderr (``total`` None: bytes so far, no bar's end), only
    when stderr is a terminal and ``shown``."""
    if not (shown and sys.stderr.isatty()):
        yield lambda _: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
