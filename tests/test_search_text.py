"""The query language and the matcher on their own (no database): folding, tokens, parsing,
matching, scores and snippets."""

from __future__ import annotations

import pytest

from aisopod_session import InvalidInputError
from aisopod_session.limits import MAX_SEARCH_TOKEN_CHARS, MAX_SEARCHED_CHARS
from aisopod_session.store._search_text import (
    Query,
    fold,
    message_text,
    occurrences,
    padded,
    parse,
    relevance,
    snippet,
    tokens,
)


def scored(query: Query, document: str, token_count: int) -> float | None:
    """What a search computes for a candidate read as text."""
    counts = occurrences(query, document)
    return None if counts is None else relevance(query, counts, token_count)


@pytest.mark.parametrize(("text", "folded"), [
    ("Café", "cafe"), ("ÉCOLE", "ecole"), ("Straße", "strasse"), ("Øre Łódź", "ore lodz"),
    ("\ufb01nance", "finance"), ("\uff21\uff22\uff23\uff11\uff12", "abc12"), ("Ǆ", "dz"),
    ("が", "が"), ("한국", "한국"), ("नमस्ते", "नमस्ते"),  # other scripts' marks are kept
])
def test_fold(text: str, folded: str) -> None:
    assert fold(text) == folded


def test_tokens() -> None:
    assert tokens("Hello, world! foo_bar e-mail 3.14") == [
        "hello", "world", "foo", "bar", "e", "mail", "3", "14"]
    assert tokens("我在东京 abc東京タワー") == [
        "我", "在", "东", "京", "abc", "東", "京", "タ", "ワ", "ー"]
    assert tokens("x" * 100) == ["x" * MAX_SEARCH_TOKEN_CHARS]
    many = tokens("ab " * MAX_SEARCHED_CHARS)
    assert len(" ".join(many)) < MAX_SEARCHED_CHARS and len(many) == MAX_SEARCHED_CHARS // 3


def test_message_text() -> None:
    assert message_text('"plain"', None) == "plain"
    assert message_text('[{"type": "text", "text": "a"}, {"type": "image", "id": "x"}]',
                        '[{"id": "c1", "function": {"name": "f", "arguments": "{}"}}]') == (
        "a\nf\n{}")
    assert message_text('"say \\"hi\\""', None) == 'say "hi"'


def test_parse() -> None:
    query = parse('refund "was promised" ord* -cafe -"x y" NEAR(a)')
    assert [(t.tokens, t.prefix) for t in query.wanted] == [
        (("refund",), False), (("was", "promised"), False), (("ord",), True),
        (("near", "a"), False)]
    assert [t.tokens for t in query.excluded] == [("cafe",), ("x", "y")]
    assert parse('"a b"*').wanted[0].prefix
    assert parse("东京").wanted[0].tokens == ("东", "京")
    with pytest.raises(InvalidInputError, match="unbalanced"):
        parse('"a')


def test_scored_matches_and_ranks() -> None:
    document = padded(tokens("the refund was promised; refunds later"))

    def matches(text: str) -> bool:
        return scored(parse(text), document, 6) is not None

    assert matches("refund promised")
    assert matches('"refund was"')
    assert not matches('"refund promised"')
    assert matches("refunds") and not matches("refun")
    assert matches("refun*")
    assert not matches("refund -later")
    once = scored(parse("refund"), padded(["refund", "x"]), 2)
    twice = scored(parse("refund"), padded(["refund", "refund"]), 2)
    longer = scored(parse("refund"), padded(["refund"] + ["x"] * 500), 501)
    assert once is not None and twice is not None and longer is not None
    assert twice > once > longer > 0
    phrase = scored(parse('"a b"'), padded(["a", "b"]), 2)
    word = scored(parse("a"), padded(["a", "b"]), 2)
    assert phrase is not None and word is not None and phrase > word


def _reference_score(query_text: str, document_tokens: list[str]) -> float | None:
    """The documented rule, written out independently: every wanted term (its tokens, in
    order; a prefix term's last token may go on) occurs, no excluded one does; the score sums
    ``len(tokens) * (1 + ln(occurrences))`` (occurrences share no token) over the wanted
    terms and divides by ``1 + ln(1 + n / 64)``, rounded to 4 decimals."""
    import math

    query = parse(query_text)

    def occurrences(term_tokens: tuple[str, ...], prefix: bool) -> int:
        width = len(term_tokens)
        count = start = 0
        while start <= len(document_tokens) - width:
            window = document_tokens[start:start + width]
            if window[:-1] == list(term_tokens[:-1]) and (
                    window[-1].startswith(term_tokens[-1]) if prefix
                    else window[-1] == term_tokens[-1]):
                count += 1
                start += width  # occurrences do not share tokens
            else:
                start += 1
        return count

    total = 0.0
    for term in query.wanted:
        count = occurrences(term.tokens, term.prefix)
        if not count:
            return None
        total += len(term.tokens) * (1 + math.log(count))
    if any(occurrences(term.tokens, term.prefix) for term in query.excluded):
        return None
    return round(total / (1 + math.log(1 + len(document_tokens) / 64)), 4)


def test_scored_is_the_documented_rule() -> None:
    """What a best page computes for each candidate: None where the query does not match, else
    exactly the documented score (the same float: pages and cursors compare scores)."""
    import random

    rng = random.Random(5)
    vocabulary = ["a", "b", "ab", "refund", "refunds", "东", "京"]
    texts = ("a", "a b", '"a b"', '"a a"', "a*", "ref*", '"a b"*', "refund -b", "a -\"b ab\"",
             "东京", "a a a")
    seen_match = seen_miss = 0
    for _ in range(400):
        document_tokens = [rng.choice(vocabulary) for _ in range(rng.randrange(1, 40))]
        document = padded(document_tokens)
        for text in texts:
            got = scored(parse(text), document, len(document_tokens))
            expected = _reference_score(text, document_tokens)
            assert got == expected, (text, document)
            if got is None:
                seen_miss += 1
            else:
                seen_match += 1
                assert type(got) is float
    assert seen_match > 500 and seen_miss > 500


def test_snippet_marks_matches_without_markup() -> None:
    text = "<b>Intro</b> " + "filler " * 40 + "the Café is CLOSED <script> " + "tail " * 40
    segments = snippet(parse("cafe closed"), text)
    assert [part for part, hit in segments if hit] == ["Café", "CLOSED"]
    joined = "".join(part for part, _ in segments)
    assert joined.startswith("…") and joined.endswith("…")
    assert "<script>" in joined  # untouched: escaping is the renderer's job
    assert len(joined) < 220
    assert snippet(parse("东京"), "我在东京") == [("我在", False), ("东京", True)]
    assert snippet(parse("line"), "first\n\n  line") == [("first ", False), ("line", True)]
