"""Which session a message belongs to: DM scopes, groups, threads, identity links."""

from __future__ import annotations

from typing import Any

import pytest

from aisopod_session import (
    ChannelContext,
    DmScope,
    InvalidInputError,
    PeerKind,
    SessionKey,
    resolve_session_key,
)
from aisopod_session.routing import ANY

ALICE_LINKS = {"alice": ["discord:123", "telegram:456"]}


def dm(channel: str, account: str, peer: str) -> ChannelContext:
    return ChannelContext(channel, account, "dm", peer)


def group(
    channel: str, account: str, group_id: str, thread_id: str | None = None
) -> ChannelContext:
    return ChannelContext(channel, account, "group", group_id, thread_id)


def resolve(ctx: ChannelContext, scope: DmScope | str = DmScope.PER_ACCOUNT_CHANNEL_PEER,
            links: Any = None, agent: str = "bot") -> SessionKey:
    return resolve_session_key(agent, ctx, scope, links)


# DMs that differ in exactly one respect from the first one.
BASE_DM = dm("discord", "acct1", "123")
OTHER_ACCOUNT = dm("discord", "acct2", "123")
OTHER_CHANNEL = dm("telegram", "acct1", "123")
OTHER_PEER = dm("discord", "acct1", "999")


def test_default_scope_is_full_isolation() -> None:
    assert resolve_session_key("bot", BASE_DM) == SessionKey("bot", "discord", "acct1", "dm", "123")
    keys = {resolve_session_key("bot", ctx)
            for ctx in (BASE_DM, OTHER_ACCOUNT, OTHER_CHANNEL, OTHER_PEER)}
    assert len(keys) == 4


@pytest.mark.parametrize(
    ("scope", "same_account", "same_channel", "same_peer"),
    [
        # does a DM differing only in account / channel / peer share the session?
        (DmScope.MAIN, True, True, True),
        (DmScope.PER_PEER, True, False, False),
        (DmScope.PER_CHANNEL_PEER, True, False, False),
        (DmScope.PER_ACCOUNT_CHANNEL_PEER, False, False, False),
    ],
)
def test_dm_scopes(scope: DmScope, same_account: bool, same_channel: bool, same_peer: bool) -> None:
    base = resolve(BASE_DM, scope)
    assert (resolve(OTHER_ACCOUNT, scope) == base) is same_account
    assert (resolve(OTHER_CHANNEL, scope) == base) is same_channel
    assert (resolve(OTHER_PEER, scope) == base) is same_peer
    assert base.peer_kind is PeerKind.DM
    # the same message always lands in the same session
    assert resolve(dm("discord", "acct1", "123"), scope) == base


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        (DmScope.MAIN, SessionKey("bot", ANY, ANY, "dm", ANY)),
        (DmScope.PER_PEER, SessionKey("bot", "discord", ANY, "dm", "123")),
        (DmScope.PER_CHANNEL_PEER, SessionKey("bot", "discord", ANY, "dm", "123")),
        (DmScope.PER_ACCOUNT_CHANNEL_PEER, SessionKey("bot", "discord", "acct1", "dm", "123")),
    ],
)
def test_hand_built_key_equals_resolved(scope: DmScope, expected: SessionKey) -> None:
    assert resolve(BASE_DM, scope) == expected
    assert resolve(BASE_DM, scope.value) == expected  # the scope's string value works too
    assert SessionKey.parse(expected.canonical()) == resolve(BASE_DM, scope)


@pytest.mark.parametrize("scope", list(DmScope))
def test_agents_never_share_a_session(scope: DmScope) -> None:
    assert resolve(BASE_DM, scope, agent="bot") != resolve(BASE_DM, scope, agent="other")
    assert resolve(group("discord", "acct1", "g"), scope, agent="bot") != resolve(
        group("discord", "acct1", "g"), scope, agent="other"
    )


def test_main_scope_shares_one_session_for_all_dms() -> None:
    contexts = [BASE_DM, OTHER_ACCOUNT, OTHER_CHANNEL, OTHER_PEER, dm("slack", "w", "U1")]
    assert {resolve(ctx, DmScope.MAIN) for ctx in contexts} == {
        SessionKey("bot", "*", "*", "dm", "*")
    }


@pytest.mark.parametrize("scope", list(DmScope))
def test_groups_are_isolated_under_every_scope(scope: DmScope) -> None:
    base = group("discord", "acct1", "g1")
    variants = [
        base,
        group("discord", "acct2", "g1"),
        group("telegram", "acct1", "g1"),
        group("discord", "acct1", "g2"),
    ]
    keys = [resolve(ctx, scope, ALICE_LINKS) for ctx in variants]
    assert len(set(keys)) == 4
    assert keys[0] == SessionKey("bot", "discord", "acct1", "group", "g1")
    # a group never shares a session with a DM, whatever the ids
    assert resolve(dm("discord", "acct1", "g1"), scope) not in keys
    # identity links only ever merge DMs
    assert resolve(group("discord", "acct1", "123"), scope, ALICE_LINKS) == SessionKey(
        "bot", "discord", "acct1", "group", "123"
    )


def test_identity_links_merge_alices_dms_under_per_peer() -> None:
    scope = DmScope.PER_PEER
    on_discord = resolve(dm("discord", "acct1", "123"), scope, ALICE_LINKS)
    on_telegram = resolve(dm("telegram", "tg-bot", "456"), scope, ALICE_LINKS)
    other_account = resolve(dm("discord", "acct2", "123"), scope, ALICE_LINKS)
    assert on_discord == on_telegram == other_account
    assert on_discord == SessionKey("bot", ANY, ANY, "dm", "alice")

    bob_discord = resolve(dm("discord", "acct1", "777"), scope, ALICE_LINKS)
    bob_telegram = resolve(dm("telegram", "tg-bot", "777"), scope, ALICE_LINKS)
    assert bob_discord != bob_telegram
    assert on_discord not in {bob_discord, bob_telegram}
    # Alice's telegram id on discord is somebody else
    assert resolve(dm("discord", "acct1", "456"), scope, ALICE_LINKS) != on_discord


def test_without_a_link_the_same_id_on_two_channels_is_two_people() -> None:
    for scope in (DmScope.PER_PEER, DmScope.PER_CHANNEL_PEER, DmScope.PER_ACCOUNT_CHANNEL_PEER):
        discord, telegram = dm("discord", "a", "123"), dm("telegram", "a", "123")
        assert resolve(discord, scope) != resolve(telegram, scope)
        assert resolve(dm("discord", "a", "123"), scope, {}) != resolve(
            dm("telegram", "a", "123"), scope, {}
        )


@pytest.mark.parametrize(
    "scope", [DmScope.PER_CHANNEL_PEER, DmScope.PER_ACCOUNT_CHANNEL_PEER]
)
def test_identity_links_do_not_merge_channels_under_per_channel_scopes(scope: DmScope) -> None:
    assert resolve(dm("discord", "a", "123"), scope, ALICE_LINKS) != resolve(
        dm("telegram", "a", "456"), scope, ALICE_LINKS
    )


def test_identity_links_are_normalised_like_contexts() -> None:
    links = {"alice": [" Discord :123", "telegram:456"]}
    key = resolve(dm("DISCORD", "acct1", "123"), DmScope.PER_PEER, links)
    assert key == SessionKey("bot", ANY, ANY, "dm", "alice")
    # peer ids keep their case: a link to U123 is not u123
    slack = {"carol": ["slack:U123"]}
    assert resolve(dm("slack", "w", "U123"), DmScope.PER_PEER, slack).peer_id == "carol"
    assert resolve(dm("slack", "w", "u123"), DmScope.PER_PEER, slack).peer_id == "u123"


def test_a_person_name_never_collides_with_an_unlinked_peer() -> None:
    linked = resolve(dm("discord", "a", "123"), DmScope.PER_PEER, ALICE_LINKS)
    unlinked = resolve(dm("discord", "a", "alice"), DmScope.PER_PEER, ALICE_LINKS)
    assert linked != unlinked


def test_identity_links_accept_any_iterable_of_identities() -> None:
    links = {"alice": ("discord:123", "telegram:456"), "bob": {"discord:777"}}
    assert resolve(dm("telegram", "t", "456"), DmScope.PER_PEER, links).peer_id == "alice"
    assert resolve(dm("discord", "d", "777"), DmScope.PER_PEER, links).peer_id == "bob"


def test_the_same_identity_twice_for_one_person_is_fine() -> None:
    links = {"alice": ["discord:123", "Discord:123"]}
    assert resolve(dm("discord", "a", "123"), DmScope.PER_PEER, links).peer_id == "alice"


@pytest.mark.parametrize(
    "links",
    [
        ["discord:123"],
        [],
        "alice",
        5,
        {"alice": "discord:123"},
        {"alice": 5},
        {"alice": ["discord-123"]},
        {"alice": [123]},
        {"alice": [":123"]},
        {"alice": ["discord:"]},
        {"alice": ["discord:  "]},
        {"alice": ["discord:1\n"]},
        {"alice": ["*:123"]},
        {"alice": ["discord:123"], "bob": ["discord:123"]},
        {"alice": ["discord:123"], "bob": ["DISCORD: 123 "]},
        {"*": ["discord:123"]},
        {"": ["discord:123"]},
        {5: ["discord:123"]},
    ],
    ids=["list", "empty-list", "str", "int", "identities-str", "identities-int", "no-colon",
         "identity-int", "empty-channel", "empty-peer", "blank-peer", "control-char",
         "any-channel", "two-people", "two-people-after-normalising", "any-person",
         "empty-person", "int-person"],
)
def test_bad_identity_links(links: Any) -> None:
    with pytest.raises(InvalidInputError) as info:
        resolve(BASE_DM, DmScope.PER_PEER, links)
    assert "identity_links" in str(info.value)
    assert info.value.errors[0]["field"].startswith("identity_links")


def test_bad_identity_links_are_refused_whatever_the_scope() -> None:
    with pytest.raises(InvalidInputError, match="linked to both"):
        resolve(group("discord", "a", "g"), DmScope.MAIN,
                {"alice": ["discord:1"], "bob": ["discord:1"]})


# --- normalisation -----------------------------------------------------------------------------


def test_names_are_trimmed_and_lower_cased_peer_ids_keep_their_case() -> None:
    key = resolve_session_key(" Bot ", ChannelContext(" Discord ", " ACCT1 ", "dm", " Alice "))
    assert key == SessionKey("bot", "discord", "acct1", "dm", "Alice")
    assert key.peer_id == "Alice"
    other = resolve_session_key("bot", ChannelContext("discord", "acct1", "dm", "alice"))
    assert key != other


def test_peer_ids_are_nfc_normalised() -> None:
    decomposed = resolve(dm("telegram", "t", "Zoe\u0308"))
    composed = resolve(dm("telegram", "t", "Zo\u00eb"))
    assert decomposed == composed
    assert composed.peer_id == "Zo\u00eb"


@pytest.mark.parametrize(
    "peer",
    ["@alice:matrix.org", "#rust", "bob@example.com", "ünï", "name with spaces", "100%/x"],
)
def test_real_world_ids_round_trip_through_the_canonical_string(peer: str) -> None:
    for ctx in (dm("matrix", "main", peer), group("irc", "libera", peer),
                group("slack", "w", peer, "17000.1")):
        key = resolve(ctx)
        assert SessionKey.parse(key.canonical()) == key


# --- threads -----------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", list(DmScope))
@pytest.mark.parametrize("group_id", ["C01", "teams/general", "100%", "%2F/x"])
def test_a_thread_is_its_own_session_under_its_group(scope: DmScope, group_id: str) -> None:
    group_key = resolve(group("slack", "w", group_id), scope)
    thread_key = resolve(group("slack", "w", group_id, "1700.5"), scope)
    assert thread_key.peer_kind is PeerKind.THREAD
    assert thread_key != group_key
    assert thread_key.parent() == group_key
    assert thread_key == SessionKey.for_thread("bot", "slack", "w", group_id, "1700.5")
    other_thread = resolve(group("slack", "w", group_id, "1700.6"), scope)
    assert other_thread != thread_key
    assert other_thread.parent() == group_key


def test_same_thread_id_in_two_groups_is_two_sessions() -> None:
    one = resolve(group("slack", "w", "C01", "t1"))
    two = resolve(group("slack", "w", "C02", "t1"))
    assert one != two
    assert one.parent() != two.parent()


def test_peer_kind_thread_means_a_group_with_a_thread() -> None:
    as_thread = resolve(ChannelContext("slack", "w", "thread", "C01", "t1"))
    as_group = resolve(ChannelContext("slack", "w", "group", "C01", "t1"))
    assert as_thread == as_group


def test_peer_kind_thread_without_thread_id_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="thread_id"):
        ChannelContext("slack", "w", "thread", "C01")


@pytest.mark.parametrize("scope", list(DmScope))
def test_a_thread_inside_a_dm_belongs_to_the_dm(scope: DmScope) -> None:
    assert resolve(ChannelContext("slack", "w", "dm", "U1", "t1"), scope) == resolve(
        dm("slack", "w", "U1"), scope
    )


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["bogus", None, 3, "MAIN"])
def test_bad_dm_scope(scope: Any) -> None:
    with pytest.raises(InvalidInputError, match="dm_scope"):
        resolve(BASE_DM, scope)


@pytest.mark.parametrize(
    "ctx", [None, "discord:acct:dm:123", {"channel": "discord"}, BASE_DM.model_dump()]
)
def test_ctx_must_be_a_channel_context(ctx: Any) -> None:
    with pytest.raises(InvalidInputError, match="ctx"):
        resolve_session_key("bot", ctx)


@pytest.mark.parametrize("agent", ["", "  ", 5, None, "bot\n", "a" * 257])
def test_bad_agent_id(agent: Any) -> None:
    with pytest.raises(InvalidInputError, match="agent_id"):
        resolve_session_key(agent, BASE_DM)


def test_channel_context_from_a_dict() -> None:
    ctx = ChannelContext.model_validate(
        {"channel": "Slack", "account_id": "w", "peer_kind": "group", "peer_id": "C01",
         "thread_id": "t1"}
    )
    assert ctx == ChannelContext("slack", "w", "group", "C01", "t1")
    assert ChannelContext.model_validate_json(ctx.model_dump_json()) == ctx
    with pytest.raises(InvalidInputError) as info:
        ChannelContext.model_validate({"channel": "slack"})
    assert {e["field"] for e in info.value.errors} == {"account_id", "peer_kind", "peer_id"}
