"""The Typer application: the command groups, the global options, the arguments and options the
commands share, and the turning of an operator's error into one line and exit status 1.

The commands themselves are in the topic modules; ``cli/__init__.py`` adds them to these apps.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from aisopod_session.cli._output import CliError, one_line, os_message, silence_stdout
from aisopod_session.cli._store import DEFAULT_DB_URL, Settings, location, open_store
from aisopod_session.errors import AccessDeniedError, SessionError, SessionNotFoundError
from aisopod_session.store import SessionStore


class _ReadableOption(TyperOption):
    """An option whose help shows a flag as a flag, choices as ``[a|b|c]`` and a value's type as
    ``TEXT``, ``INTEGER`` or its metavar (Typer's own shows ``<bool>``, ``<list[a|b]>``)."""

    def display_type_rich(self, ctx: Any) -> str | None:
        if self.is_flag or self.count:
            return None
        if self.metavar is not None:
            return self.metavar
        described = self.type_descriptor
        if described.is_choice:
            # Typer's "<a|b>" or "<list[a|b]>": the choices, one value per --option
            choices = self.display_type(ctx).strip("<>").removeprefix("list[").rstrip("]")
            return f"[{choices}]"
        annotation: object = described.annotation
        if get_origin(annotation) is list:
            (annotation,) = get_args(annotation)
        return _TYPE_NAMES.get(annotation, getattr(annotation, "__name__", "VALUE").upper())


class _ReadableArgument(TyperArgument):
    """An argument whose help shows only its name (``KEY``, ``FILE``): no ``<str>`` beside it."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


_TYPE_NAMES: dict[object, str] = {str: "TEXT", int: "INTEGER", float: "NUMBER", Path: "PATH",
                                  datetime: "DATETIME"}


def _readable_help(command: Any) -> None:
    """Give every option and argument of ``command`` (a Click command of Typer's) and of its
    subcommands, ``--help`` included, the help of :class:`_ReadableOption` and
    :class:`_ReadableArgument`: they are Typer's classes with only the help display changed."""
    for param in command.get_params(typer.Context(command)):
        if type(param) is TyperOption:
            param.__class__ = _ReadableOption
        elif type(param) is TyperArgument:
            param.__class__ = _ReadableArgument
    for sub in getattr(command, "commands", {}).values():
        _readable_help(sub)


class _Cli(TyperGroup):
    """Turns the errors an operator can act on into one ``error:`` line and exit status 1, and
    makes the help of every command readable (see :class:`_ReadableOption`)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)  # the subcommands are built by now
        _readable_help(self)

    def invoke(self, ctx: Any) -> Any:
        message: str
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            silence_stdout()
            raise typer.Exit(1) from None
        except SessionNotFoundError as exc:
            # a user in the wrong directory (or on the wrong server) sees where it looked
            message = f"{exc} ({looked_in(ctx)})"
        except (CliError, SessionError) as exc:
            message = str(exc)
        except OSError as exc:
            message = os_message(exc)
        typer.echo(f"error: {one_line(message)}", err=True)
        raise typer.Exit(1)


app = typer.Typer(
    cls=_Cli,
    name="aisopod-session",
    help="Operate aisopod-session stores: list, inspect, compact, export, import and erase "
         "conversation sessions, on a database (--db) or a running server (--server).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
sessions_app = typer.Typer(help="List, inspect, reset and delete sessions.", no_args_is_help=True)
db_app = typer.Typer(help="The database: migrate it, count what it holds.", no_args_is_help=True)
peers_app = typer.Typer(
    help="A person's data across agents and accounts: export it, erase it (both audited).",
    no_args_is_help=True)
app.add_typer(sessions_app, name="sessions")
app.add_typer(db_app, name="db")
app.add_typer(peers_app, name="peers")

KeyArg = Annotated[str, typer.Argument(
    metavar="KEY", help="Canonical key: agent:<agent>:<channel>:<account>:<kind>:<peer>.")]
RefArg = Annotated[str, typer.Argument(
    metavar="KEY", help="Canonical key (the live session), or a session id (any generation).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
JsonResultOpt = Annotated[bool, typer.Option(
    "--json", help="Print the result as JSON instead of a line of text.")]
DryRunOpt = Annotated[bool, typer.Option(
    "--dry-run", help="Only count what would change; change nothing.")]
ChannelArg = Annotated[str, typer.Argument(
    metavar="CHANNEL", help="The person's channel (* for a linked name of per-peer sessions).")]
PeerIdArg = Annotated[str, typer.Argument(metavar="PEER_ID", help="Their id on that channel.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


@app.callback()
def _global(
    ctx: typer.Context,
    db: Annotated[str, typer.Option(
        "--db", envvar="AISOPOD_DATABASE_URL", metavar="URL",
        help="Database: a SQLite path, sqlite:///path or postgresql://...")] = DEFAULT_DB_URL,
    schema: Annotated[str | None, typer.Option(
        "--schema", envvar="AISOPOD_DATABASE_SCHEMA",
        help="PostgreSQL schema (default aisopod_session).")] = None,
    server: Annotated[str | None, typer.Option(
        "--server", envvar="AISOPOD_SERVER", metavar="URL",
        help="Work against a running server instead of a database (--db is then unused).",
    )] = None,
    token: Annotated[str | None, typer.Option(
        "--token", envvar="AISOPOD_TOKEN",
        help="Bearer token for --server. Prefer $AISOPOD_TOKEN or --token-file: other users "
             "can read a command line in the process list.",
        show_default=False)] = None,
    token_file: Annotated[Path | None, typer.Option(
        "--token-file", envvar="AISOPOD_TOKEN_FILE", metavar="FILE",
        help="Read the bearer token for --server from FILE (its first line).",
        show_default=False)] = None,
    config_file: Annotated[Path | None, typer.Option(
        "--config", metavar="FILE",
        # Rich reads [word] as markup: the brackets are escaped to be shown.
        help="Service TOML config: its \\[lifecycle], \\[reset] and \\[retention] policies "
             "apply to sweep and purge, its \\[database] unless --db is given (not used with "
             "--server).",
    )] = None,
) -> None:
    source = ctx.get_parameter_source("db")
    given = source is not None and source.name == "COMMANDLINE"
    if token_file is not None:
        if token is not None:
            raise typer.BadParameter("give --token or --token-file, not both",
                                     param_hint="--token-file")
        try:
            lines = token_file.read_text("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise typer.BadParameter(f"{token_file}: cannot read it ({exc})",
                                     param_hint="--token-file") from None
        token = lines[0].strip() if lines else ""
        if not token:
            raise typer.BadParameter(f"{token_file}: its first line is empty",
                                     param_hint="--token-file")
    ctx.obj = Settings(db=db, db_given=given, schema=schema, server=server, token=token,
                       config=config_file)


def settings(ctx: typer.Context) -> Settings:
    """The global options of this invocation."""
    found = ctx.find_object(Settings)
    assert found is not None
    return found


def looked_in(ctx: typer.Context) -> str:
    """``looked in database /abs/path.db`` (or ``server URL``): where this invocation read."""
    found = ctx.find_object(Settings)
    if found is None:  # the global options were not read (a usage error)
        return "no database opened"
    return f"looked in {location(found)}"


def nothing_found(ctx: typer.Context, what: str) -> None:
    """Say on stderr that a reading command found nothing, and where it looked: an empty result
    from the wrong database (the wrong directory, a missing --db) is noticed."""
    typer.echo(f"{what} ({looked_in(ctx)})", err=True)


def store_for(ctx: typer.Context) -> SessionStore:
    """The store the global options name, opened for one command (``with store_for(ctx) as
    store:``)."""
    return open_store(settings(ctx))


@contextmanager
def admin_or_agent(store: SessionStore, agent: str | None, what: str) -> Iterator[None]:
    """Around an admin operation that ``--agent`` narrows to one agent: an agent token's refusal
    (no --agent, against a server) says how to do it with that token, ``an agent token
    <what>: pass --agent <its agent id>``."""
    try:
        yield
    except AccessDeniedError as exc:
        if agent is not None or not store.backend.startswith("http"):
            raise
        raise CliError(f"{exc}; an agent token {what}: pass --agent <its agent id>") from exc
