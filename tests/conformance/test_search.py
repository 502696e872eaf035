"""Full-text search on every backend x flavour: the query language (words, phrases, prefixes,
exclusions, accents, CJK substrings, operators as plain words), malformed queries, every
filter, paging in both orders (stable while messages are appended), agent isolation, erasure,
and the off switch. The index's own tables are read in tests/test_search_index.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aisopod_session import (
    AccessDeniedError,
    InvalidInputError,
    Policies,
    RetentionPolicy,
    SearchDisabledError,
    SearchFilter,
    SessionKey,
    SessionPatch,
    SessionStatus,
    SlidingWindow,
    StoredMessage,
)
from aisopod_session.limits import MAX_SEARCH_QUERY_CHARS, MAX_SEARCH_TERMS
from tests.conformance._support import key

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def found(page: Any) -> list[str]:
    """The content of each hit's message, by reading the snippet back (whole for short ones)."""
    return ["".join(segment.text for segment in hit.snippet) for hit in page.hits]


def marked(page: Any) -> list[list[str]]:
    return [[segment.text for segment in hit.snippet if segment.match] for hit in page.hits]


def say(agent: Any, k: SessionKey, *texts: str, role: str = "user",
        at: datetime | None = None) -> None:
    agent.get_or_create(k)
    agent.append_messages(k, [
        StoredMessage(role=role, content=text,
                      **({} if at is None else {"created_at": at + timedelta(seconds=i)}))
        for i, text in enumerate(texts)])


def test_words_phrases_prefixes_and_exclusions(store: Any) -> None:
    bot = store.for_agent("bot")
    say(bot, key("alice"), "the refund was promised on Tuesday",
        "no refund promised yet", "refunds are processed weekly", "promised land")
    assert sorted(found(bot.search("refund promised"))) == [
        "no refund promised yet", "the refund was promised on Tuesday"]
    assert found(bot.search('"refund promised"')) == ["no refund promised yet"]
    assert found(bot.search('"refund was promised"')) == ["the refund was promised on Tuesday"]
    assert sorted(found(bot.search("refund*"))) == [
        "no refund promised yet", "refunds are processed weekly",
        "the refund was promised on Tuesday"]
    assert found(bot.search("refund -tuesday -yet")) == []
    assert sorted(found(bot.search("promised -refund"))) == ["promised land"]
    assert found(bot.search('promised -"refund was"')) != []
    assert "the refund was promised on Tuesday" not in found(
        bot.search('promised -"refund was"'))
    assert marked(bot.search('"refund was" tues*')) == [["refund was", "Tuesday"]]
    assert bot.search("refund", limit=1).hits[0].score > 0


def test_accents_and_case_are_folded(store: Any) -> None:
    bot = store.for_agent("bot")
    say(bot, key("alice"), "Ein Café in Zürich", "STRASSE und Straße", "naïve façade")
    assert found(bot.search("cafe zurich")) == ["Ein Café in Zürich"]
    assert found(bot.search("CAFÉ")) == ["Ein Café in Zürich"]
    assert found(bot.search("strasse")) == ["STRASSE und Straße"]
    assert found(bot.search("NAIVE Facade")) == ["naïve façade"]
    assert marked(bot.search("zurich")) == [["Zürich"]]


def test_chinese_japanese_korean_are_found_by_substring(store: Any) -> None:
    bot = store.for_agent("bot")
    say(bot, key("alice"), "我在东京工作了三年", "東京タワーが見えます", "안녕하세요 반갑습니다")
    assert found(bot.search("东京")) == ["我在东京工作了三年"]
    assert found(bot.search("工作")) == ["我在东京工作了三年"]
    assert found(bot.search("京工")) == ["我在东京工作了三年"]
    assert found(bot.search("タワー")) == ["東京タワーが見えます"]
    assert found(bot.search("見え")) == ["東京タワーが見えます"]
    assert found(bot.search("반갑")) == ["안녕하세요 반갑습니다"]
    assert found(bot.search("京都")) == []
    assert marked(bot.search("工作")) == [["工作"]]


def test_tool_calls_and_results_are_searched_but_not_metadata(store: Any) -> None:
    bot = store.for_agent("bot")
    k = key("alice")
    bot.get_or_create(k)
    bot.patch(k, SessionPatch(metadata={"topic": "zeppelin"}))
    bot.append_messages(k, [
        StoredMessage.assistant(None, tool_calls=[
            {"id": "call-quasar", "type": "function",
             "function": {"name": "lookup_order", "arguments": '{"order": "K-77"}'}}]),
        StoredMessage.tool({"tool_call_id": "call-quasar", "output": "parcel left Lyon"}),
        StoredMessage.user([{"type": "text", "text": "multipart hello"}]),
    ])
    assert [hit.role for hit in bot.search("lookup_order").hits] == ["assistant"]
    assert [hit.role for hit in bot.search('"k 77"').hits] == ["assistant"]
    assert [hit.role for hit in bot.search("lyon parcel").hits] == ["tool"]
    assert [hit.role for hit in bot.search("multipart").hits] == ["user"]
    assert bot.search("zeppelin").hits == []  # metadata is not searched
    assert bot.search("quasar").hits == []  # nor identifiers (id, tool_call_id)
    assert bot.search("function").hits == []  # nor "type" values


@pytest.mark.parametrize("query", [
    "NEAR(refund promised)", "refund OR promised", "refund AND", "NOT refund", "body:refund",
    "^refund", "(refund)", "refund + promised", "{refund}", "refund*promised", "a:b:c",
    "'refund'", "refund\\", "refund;DROP TABLE messages", "refund -", "\u200brefund",
])
def test_operators_are_plain_words(store: Any, query: str) -> None:
    bot = store.for_agent("bot")
    say(bot, key("alice"), "refund promised", "not now or near body a b c drop table")
    page = bot.search(query)  # never a database error
    assert all(hit.role == "user" for hit in page.hits)


def test_operator_words_are_searched_as_words(store: Any) -> None:
    bot = store.for_agent("bot")
    say(bot, key("alice"), "refund promised", "near or not and")
    assert found(bot.search("NEAR OR")) == ["near or not and"]
    assert found(bot.search("refund NOT")) == []


@pytest.mark.parametrize(("query", "problem"), [
    ('"unbalanced phrase', "unbalanced quote"),
    ('refund "', "unbalanced quote"),
    ("-refund", "only exclusions"),
    ('-refund -"a b"', "only exclusions"),
    ("", "empty"),
    ("   ", "empty"),
    ("!!! ???", "no word"),
    ("x" * (MAX_SEARCH_QUERY_CHARS + 1), "characters long"),
    (" ".join(f"w{i}" for i in range(MAX_SEARCH_TERMS + 1)), "terms"),
    (42, "expected a string"),
])
def test_a_malformed_query_is_invalid_input_naming_the_problem(
        store: Any, query: Any, problem: str) -> None:
    bot = store.for_agent("bot")
    say(bot, key("alice"), "refund")
    with pytest.raises(InvalidInputError, match=problem) as raised:
        bot.search(query)
    assert raised.value.errors[0]["field"] == "query"
    with pytest.raises(InvalidInputError, match=problem):
        store.search_all(query)


@pytest.mark.parametrize(("options", "field"), [
    ({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"order": "worst"}, "order"),
    ({"cursor": "not-a-cursor"}, "cursor"), ({"filter": {"role": "robot"}}, "role"),
    ({"filter": "channel=discord"}, "filter"),
])
def test_bad_options_are_invalid_input(store: Any, options: dict[str, Any], field: str) -> None:
    bot = store.for_agent("bot")
    with pytest.raises(InvalidInputError, match=field):
        bot.search("refund", **options)


def test_filters(store: Any) -> None:
    bot = store.for_agent("bot")
    dm, group = key("alice"), key("team", kind="group", channel="slack", account="work")
    say(bot, dm, "parcel one", at=T0)
    say(bot, dm, "parcel two", role="assistant", at=T0 + timedelta(days=2))
    say(bot, group, "parcel three", at=T0 + timedelta(days=4))

    def where(**fields: Any) -> list[str]:
        return sorted(found(bot.search("parcel", filter=SearchFilter(**fields))))

    assert where() == ["parcel one", "parcel three", "parcel two"]
    assert where(channel="slack") == ["parcel three"]
    assert where(account_id="acct") == ["parcel one", "parcel two"]
    assert where(peer_kind="group") == ["parcel three"]
    assert where(peer_id="alice") == ["parcel one", "parcel two"]
    assert where(role="assistant") == ["parcel two"]
    assert where(role=["user", "system"]) == ["parcel one", "parcel three"]
    assert where(after=T0 + timedelta(days=1)) == ["parcel three", "parcel two"]
    assert where(before=T0 + timedelta(days=1)) == ["parcel one"]
    assert where(after=T0, before=T0 + timedelta(days=3)) == ["parcel two"]
    bot.patch(group, SessionPatch(status=SessionStatus.IDLE))
    assert where(status="idle") == ["parcel three"]
    assert where(status=["active"]) == ["parcel one", "parcel two"]
    # a filter as a dict (what the HTTP layer passes on)
    assert found(bot.search("parcel", filter={"channel": "slack"})) == ["parcel three"]
    hit = bot.search("three").hits[0]
    assert (hit.key, hit.session_status, hit.seq, hit.role.value) == (
        group, SessionStatus.IDLE, 1, "user")
    assert hit.created_at == T0 + timedelta(days=4)
    assert hit.session_id == bot.get(group).id
    assert hit.message_id == bot.get_history(group)[0].id


def test_live_history_by_default_compacted_and_archived_on_request(store: Any) -> None:
    bot = store.for_agent("bot")
    k = key("alice")
    say(bot, k, "lantern old one", "lantern old two", "lantern new")
    bot.compact(k, SlidingWindow(max_messages=1))
    assert found(bot.search("lantern")) == ["lantern new"]
    page = bot.search("lantern", filter=SearchFilter(include_compacted=True), order="newest")
    assert found(page) == ["lantern new", "lantern old two", "lantern old one"]
    assert [hit.compacted for hit in page.hits] == [False, True, True]
    bot.reset(k)
    say(bot, k, "lantern next generation")
    assert found(bot.search("lantern")) == ["lantern next generation"]
    archived = bot.search("lantern", filter=SearchFilter(include_archived=True), order="newest")
    assert found(archived) == ["lantern next generation", "lantern new"]
    assert archived.hits[1].session_status == SessionStatus.ARCHIVED
    assert found(bot.search("lantern", filter=SearchFilter(status="archived"))) == [
        "lantern new"]


@pytest.mark.parametrize("order", ["best", "newest"])
def test_paging_returns_every_hit_once_and_ignores_later_appends(
        store: Any, order: str) -> None:
    bot = store.for_agent("bot")
    k = key("alice")
    texts = [f"comet {'comet ' * (i % 3)}number {i}" for i in range(11)]
    say(bot, k, *texts, at=T0)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = bot.search("comet", limit=3, cursor=cursor, order=order)
        seen.extend(found(page))
        pages += 1
        if pages == 2:  # stored while paging: not mixed into this search's pages
            say(bot, key("bob"), "comet latecomer", "comet latecomer two")
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(seen) == sorted(texts)
    assert pages == 4
    whole = bot.search("comet", limit=20, order=order)
    assert len(whole.hits) == 13
    if order == "newest":
        stamps = [hit.created_at for hit in whole.hits]
        assert stamps == sorted(stamps, reverse=True)
    else:
        scores = [hit.score for hit in whole.hits]
        assert scores == sorted(scores, reverse=True)
        assert not whole.partial_ranking and whole.complete


def test_a_cursor_belongs_to_its_search(store: Any) -> None:
    bot = store.for_agent("bot")
    say(bot, key("alice"), *[f"orbit {i}" for i in range(4)])
    cursor = bot.search("orbit", limit=2).next_cursor
    assert cursor is not None
    for other in ({"query": "orbit*"}, {"order": "newest"},
                  {"filter": SearchFilter(role="assistant")}):
        arguments: dict[str, Any] = {"query": "orbit", **other}
        with pytest.raises(InvalidInputError, match="cursor"):
            bot.search(arguments.pop("query"), cursor=cursor, limit=2, **arguments)
    with pytest.raises(InvalidInputError, match="cursor"):
        store.search_all("orbit", cursor=cursor, limit=2)  # another scope
    assert len(bot.search("orbit", cursor=cursor, limit=2).hits) == 2


def test_an_agent_never_sees_another_agent_s_messages(store: Any) -> None:
    bot, other = store.for_agent("bot"), store.for_agent("other")
    say(bot, key("alice"), "shared word from bot")
    say(other, key("alice", agent="other"), "shared word from other", "other secret")
    assert found(bot.search("shared")) == ["shared word from bot"]
    assert found(bot.search("secret")) == []
    for order in ("best", "newest"):
        assert found(other.search("shared word", order=order)) == ["shared word from other"]
    assert sorted(found(store.search_all("shared"))) == [
        "shared word from bot", "shared word from other"]
    assert found(store.search_all("shared", agent_id="other")) == ["shared word from other"]
    with pytest.raises(AccessDeniedError):
        bot.get_history(key("alice", agent="other"))


def test_deleted_popped_purged_and_erased_messages_are_not_found(open_store: Any) -> None:
    store = open_store(policies=Policies(retention=RetentionPolicy(
        compacted_messages=timedelta(seconds=1), archived_sessions=None, changes=None)))
    bot = store.for_agent("bot")
    say(bot, key("alice"), "walrus alpha")
    say(bot, key("bob"), "walrus bravo")
    say(bot, key("carol"), "walrus charlie one", "walrus charlie two")
    say(bot, key("dave"), "walrus delta")
    assert len(bot.search("walrus").hits) == 5
    bot.delete(key("alice"))
    bot.pop_message(key("bob"))
    bot.compact(key("carol"), SlidingWindow(max_messages=1))
    store.purge(datetime.now(UTC) + timedelta(hours=1))
    store.forget_peer("discord", "dave")
    everything = SearchFilter(include_compacted=True, include_archived=True)
    assert found(store.search_all("walrus", filter=everything)) == ["walrus charlie two"]
    for word in ("alpha", "bravo", "one", "delta"):
        assert store.search_all(word, filter=everything).hits == []


def test_search_off_refuses_search_and_keeps_writing(open_store: Any) -> None:
    store = open_store()
    bot = store.for_agent("bot")
    say(bot, key("alice"), "beacon before")
    store.close()
    off = open_store(search=False)
    bot = off.for_agent("bot")
    say(bot, key("alice"), "beacon during")  # W1 appends work with indexing off
    assert [m.content for m in bot.get_history(key("alice"))] == [
        "beacon before", "beacon during"]
    with pytest.raises(SearchDisabledError, match="search=False"):
        bot.search("beacon")
    with pytest.raises(SearchDisabledError):
        off.search_all("beacon")
    assert off.search_index_status().enabled is False
    off.close()
    again = open_store()  # the default keeps the database's setting
    assert again.search_index_status().enabled is False
    say(again.for_agent("bot"), key("alice"), "beacon again")  # not indexed either
    with pytest.raises(SearchDisabledError):
        again.for_agent("bot").search("beacon")
    again.close()
    on = open_store(search=True)
    status = on.search_index_status()
    assert status.enabled and status.pending == 3
    assert not on.for_agent("bot").search("beacon").complete
    with pytest.raises(InvalidInputError, match="max_batches"):
        on.build_search_index(max_batches=0)
    assert on.build_search_index(batch_size=1, max_batches=1).pending == 2  # a bounded build
    progress: list[int] = []
    done = on.build_search_index(batch_size=1, on_progress=lambda s: progress.append(s.pending))
    assert done.pending == 0 and progress[-1] == 0
    page = on.for_agent("bot").search("beacon", order="newest")
    assert page.complete and found(page) == ["beacon again", "beacon during", "beacon before"]


def test_search_option_is_checked(open_store: Any) -> None:
    with pytest.raises(InvalidInputError, match="search"):
        open_store(search="no")
