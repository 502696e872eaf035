"""The Typer application: the command groups, the global options, the arguments and options the
commands share, and the turning of an operator's error into one line and exit status 1.

The commands themselves are in the topic modules; ``cli/__init__.py`` adds them to these apps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from aisopod_session.cli._output import CliError, one_line, os_message, silence_stdout
from aisopod_session.cli._store import DEFAULT_DB_URL, Settings, open_store
from aisopod_session.errors import SessionError
from aisopod_session.store import SessionStore


class _Cli(TyperGroup):
    """Turns the errors an operator can act on into one ``error:`` line and exit status 1."""

    def invoke(self, ctx: Any) -> Any:
        message: str
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            silence_stdout()
            raise typer.Exit(1) from None
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


def store_for(ctx: typer.Context) -> SessionStore:
    """The store the global options name, opened for one command (``with store_for(ctx) as
    store:``)."""
    return open_store(settings(ctx))
