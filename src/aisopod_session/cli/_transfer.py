"""Commands that move data in and out as export JSON Lines: ``export``, ``import`` and
``peers export``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import IO, Annotated

import typer

from aisopod_session.cli._app import (
    ChannelArg,
    JsonResultOpt,
    PeerIdArg,
    nothing_found,
    store_for,
)
from aisopod_session.cli._output import plural, print_json, progress
from aisopod_session.cli._store import cli_actor
from aisopod_session.limits import MAX_IMPORT_LINE_BYTES
from aisopod_session.results import ImportConflictPolicy

OutOpt = Annotated[Path | None, typer.Option(
    "--out", "-o", metavar="FILE", help="Write here (default: stdout).")]


def _write_lines(lines: Iterable[str], out: IO[bytes], advance: Callable[[int], None]) -> int:
    count = 0
    for line in lines:
        data = line.encode("utf-8") + b"\n"
        out.write(data)
        advance(len(data))
        count += 1
    out.flush()
    return count


def _write_out(ctx: typer.Context, lines: Iterable[str], out: Path | None) -> None:
    """Lines to stdout, or to ``out`` through ``out.partial`` (only a complete file is kept),
    with a progress bar on a terminal's stderr (not when the lines go to that terminal too)."""
    if out is None:
        sys.stdout.flush()
        with progress(None, "exporting", shown=not sys.stdout.isatty()) as advance:
            count = _write_lines(lines, sys.stdout.buffer, advance)
    else:
        partial = out.with_name(out.name + ".partial")
        try:
            with partial.open("wb") as handle, progress(None, "exporting") as advance:
                count = _write_lines(lines, handle, advance)
            partial.replace(out)
        finally:
            partial.unlink(missing_ok=True)
        typer.echo(f"wrote {count} line{'' if count == 1 else 's'} to {out}")
    if count <= 1:  # the header alone
        nothing_found(ctx, "no sessions to export")


def _numbered(stream: IO[bytes], advance: Callable[[int], None]) -> Iterator[bytes]:
    """The file's lines, never reading more than the import's line limit at once: a longer
    line is handed on cut short, and the import refuses it by its number."""
    while line := stream.readline(MAX_IMPORT_LINE_BYTES + 2):
        advance(len(line))
        yield line


def export(
    ctx: typer.Context,
    agent: Annotated[str | None, typer.Option(help="Only this agent's sessions.")] = None,
    out: OutOpt = None,
) -> None:
    """Every session (all generations) and message as JSON Lines, streamed."""
    with store_for(ctx) as store:
        _write_out(ctx, store.export_jsonl(agent), out)


def import_(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(metavar="FILE", help="An export; - reads stdin.")],
    on_conflict: Annotated[ImportConflictPolicy, typer.Option(
        "--on-conflict",
        help="A session of the file that already exists: fail (nothing is imported), skip "
             "(keep the stored one), archive-existing (archive it, import the file's).")
    ] = "fail",
    as_json: JsonResultOpt = False,
) -> None:
    """Import an export (JSON Lines), streamed: every line is checked first, then the whole
    file is stored at once; on any error nothing of it is.

    Prints one line: the sessions and messages imported, and those skipped or archived by
    --on-conflict (with --json, those counts as JSON)."""
    source: AbstractContextManager[IO[bytes]]
    if file == "-":
        total = None
        source = nullcontext(sys.stdin.buffer)
    else:
        path = Path(file)
        total = path.stat().st_size if path.is_file() else None
        source = path.open("rb")
    with source as stream, store_for(ctx) as store, progress(total, "importing") as advance:
        result = store.import_jsonl(_numbered(stream, advance), on_conflict=on_conflict)
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    waiting = f", {plural(result.queued, 'waiting message')}" if result.queued else ""
    skipped = (f"; skipped {plural(result.skipped, 'session')} already stored"
               if result.skipped else "")
    archived = (f"; archived {plural(result.archived, 'stored live session')}"
                if result.archived else "")
    typer.echo(f"imported {plural(result.sessions, 'session')}, "
               f"{plural(result.messages, 'message')}{waiting}{skipped}{archived}")


def export_peer(ctx: typer.Context, channel: ChannelArg, peer_id: PeerIdArg,
                out: OutOpt = None) -> None:
    """Everything held about a person, as export JSON Lines (importable), streamed."""
    with store_for(ctx) as store:
        _write_out(ctx, store.export_peer(channel, peer_id, actor=cli_actor()), out)
