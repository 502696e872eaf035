"""The ``webhooks`` commands: the delivery log (``webhooks deliveries``) and where each webhook's
delivery stands (``webhooks status``). The service delivers; these only read."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from aisopod_session.cli._app import JsonOpt, nothing_found, store_for
from aisopod_session.cli._output import console, print_json, when
from aisopod_session.limits import MAX_PAGE_SIZE
from aisopod_session.results import WebhookDeliveryStatus

webhooks_app = typer.Typer(
    help="Webhooks the service delivers the change feed to: the delivery log, their state.",
    no_args_is_help=True)


def deliveries(
    ctx: typer.Context,
    webhook: Annotated[str | None, typer.Option(metavar="NAME", help="Only this webhook's.")
                       ] = None,
    status: Annotated[WebhookDeliveryStatus | None, typer.Option(
        help="Only deliveries in this state (failed: out of tries).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_PAGE_SIZE,
                                       help="How many, newest first.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """The delivery log, newest first: what was POSTed where, tries, answers and errors."""
    with store_for(ctx) as store:
        found = store.webhook_deliveries(webhook, status=status, limit=limit)
    if not found:
        nothing_found(ctx, "no deliveries")
    if as_json:
        print_json([delivery.model_dump(mode="json") for delivery in found])
        return
    if not found:
        return
    table = Table("id", "webhook", "cursor", "kind", "status", "tries", "answer", "error",
                  "last try (UTC)", "by")
    for d in found:
        state = d.status.value + (" (lease lost)" if d.lease_lost else "")
        table.add_row(str(d.id), d.webhook, d.cursor, d.kind.value, state, str(d.attempts),
                      "" if d.http_status is None else str(d.http_status), Text(d.error or ""),
                      when(d.last_attempt_at), Text(d.delivered_by))
    console().print(table)


def status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Where each webhook's delivery stands: position, entries behind, lease holder, counts."""
    with store_for(ctx) as store:
        found = store.webhook_states()
    if not found:
        nothing_found(ctx, "no webhook has been delivered yet")
    if as_json:
        print_json([state.model_dump(mode="json") for state in found])
        return
    if not found:
        return
    table = Table("webhook", "cursor", "behind", "holder", "lease until (UTC)", "delivered",
                  "failed", "duplicates", "skipped")
    for s in found:
        table.add_row(s.name, s.cursor, str(s.behind), Text(s.holder or ""),
                      when(s.lease_expires_at), str(s.delivered), str(s.failed),
                      str(s.duplicates), str(s.skipped))
    console().print(table)
