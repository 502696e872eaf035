"""``aisopod-session``: the operator's command line, mirroring the library's admin operations.

Every command opens the store the global options name (``_store.py``) and calls its methods as
they are: ``SessionStore.open`` gives the database's (``--db``) or, for ``--server``, a running
server's store, the same API over HTTP. Adding an admin operation to the CLI is writing its
command in a topic module and putting it in the command tree below.

Data goes to stdout (a Rich table, or JSON with ``--json``); questions, progress bars and errors go
to stderr (``_output.py``). An error is one line, ``error: ...``, and exit status 1; a usage error
exits with 2.

The package: ``_app.py`` (the Typer apps, the global options, the error handling), ``_store.py``
(opening the store those options name), ``_output.py`` (the printing), and the commands by topic
in ``_sessions.py``, ``_search.py``, ``_feed.py``, ``_transfer.py``, ``_maintenance.py`` and the
others, put in the command tree below, in the order ``--help`` lists them.
"""

from __future__ import annotations

from aisopod_session.cli import (
    _feed,
    _import_from,
    _maintenance,
    _mcp,
    _search,
    _sessions,
    _transfer,
    _webhooks,
)
from aisopod_session.cli._app import app, db_app, peers_app, sessions_app
from aisopod_session.cli._store import cli_actor

__all__ = ["app", "cli_actor", "main"]

app.command("serve")(_maintenance.serve)

sessions_app.command("list")(_sessions.list_sessions)
sessions_app.command("show")(_sessions.show)
sessions_app.command("history")(_sessions.history)
sessions_app.command("delete")(_sessions.delete)
sessions_app.command("reset")(_sessions.reset_session)
sessions_app.command("clear")(_sessions.clear)
sessions_app.command("stop")(_sessions.stop)
app.command("reset")(_sessions.reset_all)
app.command("compact")(_sessions.compact)

app.command("export")(_transfer.export)
app.command("import")(_transfer.import_)
app.command("import-from")(_import_from.import_from)

db_app.command("migrate")(_maintenance.migrate)
db_app.command("stats")(_maintenance.stats)
app.command("usage")(_maintenance.usage)
app.command("sweep")(_maintenance.sweep)
app.command("purge")(_maintenance.purge)
app.command("maintenance")(_maintenance.maintenance)
peers_app.command("forget")(_maintenance.forget_peer)
peers_app.command("export")(_transfer.export_peer)
app.command("audit")(_maintenance.audit)
app.command("search")(_search.search)
app.command("changes")(_feed.changes)
app.command("mcp")(_mcp.mcp)
app.add_typer(_webhooks.webhooks_app, name="webhooks")
_webhooks.webhooks_app.command("deliveries")(_webhooks.deliveries)
_webhooks.webhooks_app.command("status")(_webhooks.status)


def main() -> None:
    """The ``aisopod-session`` console script."""
    app(prog_name="aisopod-session")
