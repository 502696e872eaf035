"""Property tests: canonical key strings are one-line, injective and parsed back exactly."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from aisopod_session import InvalidInputError, PeerKind, SessionKey
from aisopod_session.models import normalize_name, normalize_peer_id

# Characters that stress the escaping: the separators, the escape character, hex digits that
# could be mistaken for an escape, whitespace of several kinds and some non-ASCII.
_TRICKY = [":", "%", "/", " ", "2", "5", "F", "3", "A", "a", "\u00a0", "\u2028", "\u3000", "é"]

# Arbitrary text without control characters or surrogates (those are refused by design).
_any_char = st.characters(exclude_categories=("Cc", "Cs"))
part_text = st.text(st.one_of(_any_char, st.sampled_from(_TRICKY)), min_size=1, max_size=24)
# A tiny alphabet makes near-identical parts likely, which is where collisions would hide.
small_text = st.text(st.sampled_from([":", "%", "3", "A", " ", "/", "2", "F", "x"]), min_size=1,
                     max_size=6)

FAST = settings(max_examples=150, deadline=None)


def _build(agent: str, channel: str, account: str, kind: PeerKind, peer: str) -> SessionKey:
    """The key, or reject the example when normalisation leaves a part invalid (blank)."""
    try:
        return SessionKey(agent, channel, account, kind, peer)
    except InvalidInputError:
        assume(False)
        raise  # unreachable: assume(False) stops the example


def _thread(agent: str, channel: str, account: str, group: str, thread: str) -> SessionKey:
    try:
        return SessionKey.for_thread(agent, channel, account, group, thread)
    except InvalidInputError:
        assume(False)
        raise


@st.composite
def keys(draw: st.DrawFn, text: st.SearchStrategy[str] = part_text) -> SessionKey:
    agent, channel, account = draw(text), draw(text), draw(text)
    kind = draw(st.sampled_from(PeerKind))
    if kind is PeerKind.THREAD:
        return _thread(agent, channel, account, draw(text), draw(text))
    return _build(agent, channel, account, kind, draw(text))


@FAST
@given(keys())
@example(SessionKey("J\u030c", "Matrix", "W\u030a", "dm", "@alice:matrix.org"))
@example(SessionKey.for_thread("bot", "irc", "libera", "#rust/%2F", "t 1/2"))
def test_parse_is_the_exact_inverse_of_canonical(key: SessionKey) -> None:
    text = key.canonical()
    parsed = SessionKey.parse(text)
    assert parsed == key
    assert parsed.canonical() == text
    assert hash(parsed) == hash(key)


@FAST
@given(keys())
def test_canonical_is_a_single_token_on_a_single_line(key: SessionKey) -> None:
    text = key.canonical()
    assert text.splitlines() == [text]
    assert text.split() == [text]  # no whitespace of any kind survives unescaped
    assert text.startswith("agent:")
    assert text.count(":") == 5
    assert str(key) == text


@FAST
@given(keys(small_text), keys(small_text))
def test_different_keys_never_share_a_canonical_string(a: SessionKey, b: SessionKey) -> None:
    assert (a == b) == (a.canonical() == b.canonical())


@settings(max_examples=60, deadline=None)
@given(st.lists(keys(small_text), min_size=2, max_size=8))
def test_canonical_strings_are_unique_per_key_in_a_batch(batch: list[SessionKey]) -> None:
    assert len({key.canonical() for key in batch}) == len(set(batch))


@FAST
@given(keys())
def test_json_round_trip(key: SessionKey) -> None:
    assert SessionKey.model_validate_json(key.model_dump_json()) == key
    assert SessionKey.model_validate(key.model_dump()) == key


@FAST
@given(keys())
def test_rebuilding_a_key_from_its_parts_changes_nothing(key: SessionKey) -> None:
    again = SessionKey(key.agent_id, key.channel, key.account_id, key.peer_kind, key.peer_id)
    assert again == key


@FAST
@given(part_text)
def test_normalisation_is_idempotent(text: str) -> None:
    for normalize in (normalize_name, normalize_peer_id):
        try:
            once = normalize(text)
        except ValueError:
            continue
        assert normalize(once) == once
        assert unicodedata.is_normalized("NFC", once)
        assert once == once.strip()
    try:
        name = normalize_name(text)
    except ValueError:
        return
    assert name.lower() == name


@FAST
@given(part_text, part_text, part_text, part_text, part_text)
def test_thread_parent_is_the_group(
    agent: str, channel: str, account: str, group: str, thread: str
) -> None:
    key = _thread(agent, channel, account, group, thread)
    parent = key.parent()
    assert parent is not None
    assert parent == SessionKey(agent, channel, account, PeerKind.GROUP, group)
    assert parent.parent() is None
    # the thread key is fully determined by its parent and thread id
    assert SessionKey.for_thread(
        agent, channel, account, parent.peer_id, normalize_peer_id(thread)
    ) == key
    assert SessionKey.parse(key.canonical()).parent() == parent


@FAST
@given(st.one_of(st.text(), st.text().map(lambda t: "agent:" + t),
                 st.lists(small_text, min_size=6, max_size=6).map(":".join)))
def test_parse_of_arbitrary_text_fails_only_with_invalid_input(text: str) -> None:
    # anything but InvalidInputError (UnicodeDecodeError, TypeError, ...) fails the test
    try:
        key = SessionKey.parse(text)
    except InvalidInputError:
        return
    assert SessionKey.parse(key.canonical()) == key


@pytest.mark.parametrize(
    "text",
    ["J\u030c", "W\u030a", "Y\u030a", "\u0130", "A\u0308", " \u00c5 ", "\u212b"],
    ids=["j-caron", "w-ring", "y-ring", "dotted-I", "a-diaeresis", "padded", "angstrom-sign"],
)
def test_names_whose_lower_case_composes_still_round_trip(text: str) -> None:
    # lower-casing "J" + U+030C gives "j" + U+030C, which NFC composes to one character: the
    # stored part must already be in its final form or parse(canonical) would differ
    key = SessionKey(text, text, text, "dm", text)
    assert normalize_name(key.agent_id) == key.agent_id
    assert SessionKey.parse(key.canonical()) == key
    assert SessionKey(key.agent_id, key.channel, key.account_id, "dm", key.peer_id) == key
