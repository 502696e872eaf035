"""Commands on sessions: ``sessions list / show / history / delete / reset / clear``, ``reset``
(every session) and ``compact``."""

from __future__ import annotations

from typing import Annotated

import typer

from aisopod_session.cli._app import (
    JsonOpt,
    JsonResultOpt,
    KeyArg,
    RefArg,
    YesOpt,
    admin_or_agent,
    nothing_found,
    store_for,
)
from aisopod_session.cli._output import (
    CliError,
    confirm,
    console,
    message_table,
    plural,
    print_json,
    session_details,
    session_table,
)
from aisopod_session.compaction import (
    CompactionStrategy,
    SlidingWindow,
    Summarize,
    TruncateToolResults,
)
from aisopod_session.limits import MAX_PAGE_SIZE
from aisopod_session.models import (
    HistoryQuery,
    PeerKind,
    SessionFilter,
    SessionKey,
    SessionStatus,
)


def parse_key(text: str) -> SessionKey:
    return SessionKey.parse(text)


def parse_ref(text: str) -> SessionKey | int:
    """A canonical key (the live session), or a session id (any generation)."""
    stripped = text.strip()
    if stripped.isascii() and stripped.isdigit():
        return int(stripped)
    return SessionKey.parse(text)


def list_sessions(
    ctx: typer.Context,
    *,
    agent: Annotated[str | None, typer.Option(
        help="Only this agent's sessions (default: every agent).")] = None,
    channel: Annotated[str | None, typer.Option()] = None,
    account: Annotated[str | None, typer.Option(help="Bot account id.")] = None,
    peer_kind: Annotated[PeerKind | None, typer.Option()] = None,
    peer: Annotated[str | None, typer.Option(help="Peer id.")] = None,
    status: Annotated[list[SessionStatus] | None, typer.Option(
        help="Only these statuses (repeatable; default: every live status).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_PAGE_SIZE)] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Sessions, most recently updated first, one page at a time."""
    filter = SessionFilter(channel=channel, account_id=account, peer_kind=peer_kind,
                           peer_id=peer, status=tuple(status) if status else None,
                           limit=limit, cursor=cursor)
    with store_for(ctx) as store, admin_or_agent(store, agent, "lists its own agent's sessions"):
        # an agent token: every agent's sessions are an admin's, its own agent's are not
        page = (store.list_all_sessions(filter) if agent is None
                else store.for_agent(agent).list(filter))
    if not page:
        nothing_found(ctx, "no sessions")
    if as_json:
        print_json({"items": [s.model_dump(mode="json") for s in page],
                    "next_cursor": page.next_cursor})
        return
    if page:
        console().print(session_table(page))
    if page.next_cursor:
        typer.echo(f"more: --cursor {page.next_cursor}", err=True)


def show(ctx: typer.Context, key: RefArg, as_json: JsonOpt = False) -> None:
    """One session: the live one of a key (with its run and inbox), or any generation by id."""
    ref = parse_ref(key)
    run, waiting = None, None
    with store_for(ctx) as store:
        if isinstance(ref, int):
            session = store.get_session_by_id(ref)
        else:
            agent = store.for_agent(ref.agent_id)
            session = agent.get(ref)
            run, waiting = agent.current_run(ref), len(agent.inbox(ref))
    if as_json:
        shown = session.model_dump(mode="json")
        if not isinstance(ref, int):
            shown["run"] = None if run is None else run.model_dump(mode="json")
            shown["inbox"] = waiting
        print_json(shown)
    else:
        console().print(session_details(session, run, waiting))


def stop(ctx: typer.Context, key: KeyArg, as_json: JsonResultOpt = False) -> None:
    """Ask the session's current run to stop (its holder sees it on its next renewal)."""
    parsed = parse_key(key)
    with store_for(ctx) as store:
        agent = store.for_agent(parsed.agent_id)
        agent.get(parsed)  # a missing session is an error, not "no run"
        asked = agent.request_stop(parsed)
    if as_json:
        print_json({"stop_requested": asked})
    elif asked:
        typer.echo(f"asked the run on {parsed} to stop")
    else:
        typer.echo(f"no run is active on {parsed}", err=True)


def history(
    ctx: typer.Context,
    key: RefArg,
    *,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many messages.")] = None,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many.")] = 0,
    tail: Annotated[bool, typer.Option(
        "--tail", help="The newest --limit messages (still oldest first).")] = False,
    include_compacted: Annotated[bool, typer.Option(
        "--include-compacted", help="Also the messages compaction took out.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """A session's messages, in append order."""
    ref = parse_ref(key)
    query = HistoryQuery(limit=limit, offset=offset, tail=tail,
                         include_compacted=include_compacted)
    with store_for(ctx) as store:
        messages = (store.get_history_by_id(ref, query) if isinstance(ref, int)
                    else store.for_agent(ref.agent_id).get_history(ref, query))
    if not messages:
        nothing_found(ctx, "no messages")
    if as_json:
        print_json([m.model_dump(mode="json") for m in messages])
    elif messages:
        console().print(message_table(messages))


def delete(ctx: typer.Context, key: KeyArg, yes: YesOpt = False) -> None:
    """Delete a session and every archived generation of its key, messages included."""
    parsed = parse_key(key)
    with store_for(ctx) as store:
        agent = store.for_agent(parsed.agent_id)
        confirm(f"Delete {parsed} and all its archived generations for good?", yes)
        if not agent.delete(parsed):
            raise CliError(f"no session for {parsed}: nothing was deleted")
    typer.echo(f"deleted {parsed}")


def reset_session(ctx: typer.Context, key: KeyArg, as_json: JsonResultOpt = False) -> None:
    """Archive the live session (history kept) and start a fresh one: the chat /new."""
    parsed = parse_key(key)
    with store_for(ctx) as store:
        session = store.for_agent(parsed.agent_id).reset(parsed)
    if as_json:
        print_json(session.model_dump(mode="json"))
    else:
        typer.echo(f"reset {parsed}: new session {session.id}")


def _clear(ctx: typer.Context, agent: str | None, yes: bool) -> None:
    with store_for(ctx) as store:
        if not yes:
            count = sum(store.count_sessions_by_status(agent).values())
            what = "every session of every agent" if agent is None else \
                f"every session of agent {agent!r}"
            confirm(f"Erase {what} ({plural(count, 'session')}), messages included, for "
                    "good?", yes)
        deleted = store.clear_sessions(agent)
    typer.echo(f"deleted {deleted} session{'' if deleted == 1 else 's'}")


def clear(
    ctx: typer.Context,
    agent: Annotated[str | None, typer.Option(help="Only this agent's sessions.")] = None,
    yes: YesOpt = False,
) -> None:
    """Delete every session (of one agent), all generations and messages."""
    _clear(ctx, agent, yes)


def reset_all(ctx: typer.Context, yes: YesOpt = False) -> None:
    """Erase every session of every agent."""
    _clear(ctx, None, yes)


def compact(
    ctx: typer.Context,
    key: KeyArg,
    *,
    window: Annotated[int | None, typer.Option(
        min=1, metavar="N", help="SlidingWindow: keep the newest N messages.")] = None,
    summary: Annotated[str | None, typer.Option(
        metavar="TEXT", help="Summarize: replace the history by this system message.")] = None,
    keep_recent: Annotated[int | None, typer.Option(
        min=0, metavar="N", help="With --summary: keep the newest N messages.")] = None,
    truncate_tools: Annotated[int | None, typer.Option(
        metavar="N", help="TruncateToolResults: cut tool results to N characters.")] = None,
    as_json: JsonResultOpt = False,
) -> None:
    """Compact a session's live history (nothing is deleted; see --include-compacted)."""
    given = [name for name, value in (("--window", window), ("--summary", summary),
                                      ("--truncate-tools", truncate_tools)) if value is not None]
    if len(given) != 1:
        raise typer.BadParameter("give exactly one of them",
                                 param_hint="--window / --summary / --truncate-tools")
    if keep_recent is not None and summary is None:
        raise typer.BadParameter("goes with --summary", param_hint="--keep-recent")
    parsed = parse_key(key)
    strategy: CompactionStrategy
    if window is not None:
        strategy = SlidingWindow(max_messages=window)
    elif summary is not None:
        strategy = Summarize(summary=summary, keep_recent=keep_recent or 0)
    else:
        assert truncate_tools is not None
        strategy = TruncateToolResults(max_chars=truncate_tools)
    with store_for(ctx) as store:
        agent = store.for_agent(parsed.agent_id)
        before = agent.get(parsed)
        record = agent.compact(parsed, strategy)
    # compact() answers the record as it stands; a strategy with nothing to do leaves it as it
    # was, which the operator must not read as a compaction
    compacted = record.compaction_count > before.compaction_count
    if as_json:
        print_json(record.model_dump(mode="json"))
    if compacted:
        if not as_json:
            typer.echo(f"compacted {parsed}: {plural(record.compaction_count, 'compaction')} "
                       "so far")
        return
    typer.echo(f"nothing compacted in {parsed}: {_why_nothing(strategy, before.message_count)}"
               f" ({plural(record.compaction_count, 'earlier compaction')})",
               err=as_json)


def _why_nothing(strategy: CompactionStrategy, live: int) -> str:
    """Why ``strategy`` changed nothing in a history of ``live`` messages."""
    messages = plural(live, "live message")
    if isinstance(strategy, TruncateToolResults):
        return f"no tool result is longer than {strategy.max_chars} characters"
    option, keep = (("--window", strategy.max_messages) if isinstance(strategy, SlidingWindow)
                    else ("--keep-recent", strategy.keep_recent))
    if live <= keep:
        return f"it has {messages} and {option} keeps {keep}"
    # the kept part widened back to the assistant message whose tool calls it answers
    return (f"it has {messages}; keeping the newest {keep} without the tool call they answer "
            f"is not allowed, so all are kept")
