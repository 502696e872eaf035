"""List cursors are signed and bound to their listing, on every backend x flavour: a cursor pages
its own listing (after a reopen too), and an edited, made-up or borrowed one is refused with an
InvalidInputError naming ``cursor``."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from aisopod_session import InvalidInputError, SessionFilter, SessionStatus

from ._support import key


def _refused(call: Callable[[], Any]) -> None:
    with pytest.raises(InvalidInputError) as raised:
        call()
    assert [error["field"] for error in raised.value.errors] == ["cursor"]
    assert "cursor" in str(raised.value)


def _sessions(store: Any, agent: str, count: int, channel: str = "discord") -> list[int]:
    handle = store.for_agent(agent)
    made = [handle.get_or_create(key(f"p{i}", agent=agent, channel=channel)).id
            for i in range(count)]
    return list(reversed(made))  # newest update first: the listing's order


def test_a_cursor_pages_its_listing_to_the_end_after_a_reopen_too(open_store: Any) -> None:
    store = open_store()
    expected = _sessions(store, "bot", 7)
    _sessions(store, "bot", 3, channel="telegram")
    bot = store.for_agent("bot")
    first = bot.list(SessionFilter(channel="discord", limit=3))
    assert [s.id for s in first] == expected[:3]
    assert first.next_cursor is not None
    assert len(first.next_cursor) <= 48  # short: it fits a URL comfortably

    # the key is the database's: another process (a reopened store) accepts the cursor, and
    # the page size may change between pages
    again = open_store().for_agent("bot")
    second = again.list(SessionFilter(channel="discord", limit=2, cursor=first.next_cursor))
    assert [s.id for s in second] == expected[3:5]
    # the summary and detailed listings of one filter are one listing: cursors go across
    rest = again.list_detailed(SessionFilter(channel="discord", limit=5,
                                             cursor=second.next_cursor))
    assert [s.id for s in rest] == expected[5:]
    assert rest.next_cursor is None

    admin_pages = store.list_all_sessions(SessionFilter(limit=6))
    assert admin_pages.next_cursor is not None
    tail = store.list_all_sessions(SessionFilter(limit=6, cursor=admin_pages.next_cursor))
    assert len(admin_pages) + len(tail) == 10
    assert not {s.id for s in admin_pages} & {s.id for s in tail}


def test_an_edited_or_made_up_cursor_is_refused(store: Any) -> None:
    _sessions(store, "bot", 4)
    bot = store.for_agent("bot")
    cursor = bot.list(SessionFilter(limit=2)).next_cursor
    assert cursor is not None
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    edited = []
    for index in range(len(raw)):  # every byte of it: the position, the version, the MAC
        changed = bytearray(raw)
        changed[index] ^= 0x01
        edited.append(base64.urlsafe_b64encode(bytes(changed)).decode().rstrip("="))
    made_up = [
        base64.urlsafe_b64encode(b"1700000000000000.3").decode().rstrip("="),  # the old format
        cursor[:-1],
        cursor + "A",
        cursor[:-2] + cursor[-1] + cursor[-2] if cursor[-1] != cursor[-2] else cursor + "AA",
        "A" * len(cursor),
    ]
    for bad in edited + made_up:
        _refused(lambda bad=bad: bot.list(SessionFilter(limit=2, cursor=bad)))
        _refused(lambda bad=bad: store.list_all_sessions(SessionFilter(limit=2, cursor=bad)))
    assert [s.id for s in bot.list(SessionFilter(limit=2, cursor=cursor))]  # the real one


def test_a_cursor_of_one_listing_is_refused_by_another(store: Any) -> None:
    _sessions(store, "bot", 4)
    _sessions(store, "other", 4)
    bot, other = store.for_agent("bot"), store.for_agent("other")
    listing = SessionFilter(channel="discord", limit=2)
    cursor = bot.list(listing).next_cursor
    assert cursor is not None

    def with_cursor(filter: SessionFilter) -> SessionFilter:
        return filter.model_copy(update={"cursor": cursor})

    later = bot.list()[0].updated_at + timedelta(days=1)
    others: dict[str, Callable[[], Any]] = {
        "another agent": lambda: other.list(with_cursor(listing)),
        "the admin's list of that agent": lambda: store.list_all_sessions(
            with_cursor(listing.model_copy(update={"agent_id": "bot"}))),
        "the admin's list of everyone": lambda: store.list_all_sessions(with_cursor(listing)),
        "no channel filter": lambda: bot.list(SessionFilter(limit=2, cursor=cursor)),
        "another channel": lambda: bot.list(with_cursor(SessionFilter(channel="telegram"))),
        "another account": lambda: bot.list(with_cursor(
            SessionFilter(channel="discord", account_id="acct"))),
        "a peer": lambda: bot.list(with_cursor(SessionFilter(channel="discord", peer_id="p1"))),
        "a peer kind": lambda: bot.list(with_cursor(
            SessionFilter(channel="discord", peer_kind="dm"))),
        "other statuses": lambda: bot.list(with_cursor(
            SessionFilter(channel="discord", status=tuple(SessionStatus)))),
        "a time bound": lambda: bot.list(with_cursor(
            SessionFilter(channel="discord", updated_before=later))),
        "another time bound": lambda: bot.list(with_cursor(
            SessionFilter(channel="discord", created_before=later))),
    }
    for label, call in others.items():
        try:
            _refused(call)
        except BaseException as failed:
            raise AssertionError(label) from failed
    # the admin's cursors are bound the same way
    admin_cursor = store.list_all_sessions(SessionFilter(limit=2)).next_cursor
    _refused(lambda: bot.list(SessionFilter(limit=2, cursor=admin_cursor)))
    _refused(lambda: store.list_all_sessions(
        SessionFilter(limit=2, agent_id="bot", cursor=admin_cursor)))
    # and the listing it came from still takes it, whatever the page size
    assert len(bot.list(listing.model_copy(update={"cursor": cursor, "limit": 5}))) == 2
