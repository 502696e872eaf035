"""A small gateway simulation on the embedded SQLite default: ``python -m aisopod_session.demo``.

Several people talk to two agents over a few channels; the demo routes each message to its
session, reads the recent history, appends the turn, compacts a long conversation (and says so)
and prints what the store holds. Run it twice: sessions persist in ``data/demo-sessions.db``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aisopod_session import (
    ChannelContext,
    DmScope,
    HistoryQuery,
    SessionStore,
    SlidingWindow,
    StoredMessage,
    resolve_session_key,
)

ALICE_ON_DISCORD = ChannelContext("discord", "bot-1", "dm", "alice#1234")
TRAFFIC = [
    ("support-bot", ALICE_ON_DISCORD, "my order is late"),
    ("support-bot", ChannelContext("telegram", "bot-2", "dm", "@bob"), "hello!"),
    ("support-bot", ALICE_ON_DISCORD, "order 42"),
    ("notes-bot", ChannelContext("matrix", "bot-3", "dm", "@alice:matrix.org"), "remember milk"),
    ("support-bot", ChannelContext("slack", "bot-4", "group", "C01", "1700.01"), "deploy failed"),
    ("support-bot", ALICE_ON_DISCORD, "it was due on monday"),
    ("notes-bot", ChannelContext("discord", "bot-5", "dm", "alice#1234"), "and eggs"),
    ("support-bot", ALICE_ON_DISCORD, "any news?"),
]
LINKS = {"alice": ["matrix:@alice:matrix.org", "discord:alice#1234"]}
COMPACT_ABOVE = 6
"""A conversation with more live messages than this is compacted to its newest KEEP_NEWEST."""
KEEP_NEWEST = 4

DESCRIPTION = (
    "A small gateway simulation on the library: several people talk to two agents over a few "
    "channels; each message is routed to its session, the recent history is read, the turn is "
    f"appended, a conversation longer than {COMPACT_ABOVE} messages is compacted to its newest "
    f"{KEEP_NEWEST}, and the "
    "sessions are listed. Sessions persist in the database (--db): a second run continues "
    "the conversations."
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m aisopod_session.demo",
                                     description=DESCRIPTION)
    parser.add_argument("--db", default="sqlite:///data/demo-sessions.db", metavar="URL",
                        help="the database (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.db.startswith("sqlite:///"):
        Path(args.db.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    with SessionStore.open(args.db) as store:
        for agent_id, ctx, text in TRAFFIC:
            # notes-bot is a personal assistant: one session per person across channels.
            personal = agent_id == "notes-bot"
            scope = DmScope.PER_PEER if personal else DmScope.PER_ACCOUNT_CHANNEL_PEER
            key = resolve_session_key(agent_id, ctx, scope, LINKS)
            agent = store.for_agent(agent_id)
            earlier = agent.get_or_create(key).message_count
            context = agent.get_history(key, HistoryQuery(limit=20, tail=True))
            reply = f"[{agent_id}] noted ({len(context)} earlier messages)"
            agent.append_messages(key, [StoredMessage.user(text), StoredMessage.assistant(reply)])
            print(f"{key}\n    {text!r} -> {reply!r}")
            live = earlier + 2
            if live > COMPACT_ABOVE:
                record = agent.compact(key, SlidingWindow(max_messages=KEEP_NEWEST))
                print(f"    compacted: the newest {KEEP_NEWEST} of {live} messages stay live, "
                      f"the others are kept as compacted (compaction {record.compaction_count})")
        print("\nSessions (all agents):")
        for summary in store.list_all_sessions():
            print(f"  {summary.status.value:9} {summary.message_count:4} msgs  {summary.key}")


if __name__ == "__main__":
    main()
