"""The query language and the matcher on their own (no database): folding, tokens, parsing,
matching, scores and snippets."""

from __future__ import annotations

import pytest

from aisopod_session import InvalidInputError
from aisopod_session.limits import MAX_SEARCH_TOKEN_CHARS, MAX_SEARCHED_CHARS
from aisopod_session.store._search_text import (
    fold,
    matches,
    message_text,
    padded,
    parse,
    score,
    scored,
    snippet,
    tokens,
)


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


def test_matches_and_score() -> None:
    document = padded(tokens("the refund was promised; refunds later"))
    assert matches(parse("refund promised"), document)
    assert matches(parse('"refund was"'), document)
    assert not matches(parse('"refund promised"'), document)
    assert matches(parse("refunds"), document) and not matches(parse("refun"), document)
    assert matches(parse("refun*"), document)
    assert not matches(parse("refund -later"), document)
    once = score(parse("refund"), padded(["refund", "x"]), 2)
    twice = score(parse("refund"), padded(["refund", "refund"]), 2)
    longer = score(parse("refund"), padded(["refund"] + ["x"] * 500), 501)
    assert twice > once > longer > 0
    assert score(parse('"a b"'), padded(["a", "b"]), 2) > score(parse("a"), padded(["a", "b"]), 2)


def test_scored_is_matches_and_score_in_one_pass() -> None:
    """What a best page computes for each candidate: None where the query does not match, else
    exactly the score (the same float: pages and cursors compare scores)."""
    import random

    rng = random.Random(5)
    vocabulary = ["a", "b", "ab", "refund", "refunds", "东", "京"]
    queries = [parse(text) for text in ("a", "a b", '"a b"', '"a a"', "a*", "ref*", '"a b"*',
                                        "refund -b", "a -\"b ab\"", "东京", "a a a")]
    seen_match = seen_miss = 0
    for _ in range(400):
        document_tokens = [rng.choice(vocabulary) for _ in range(rng.randrange(1, 40))]
        document = padded(document_tokens)
        for query in queries:
            got = scored(query, document, len(document_tokens))
            if matches(query, document):
                seen_match += 1
                assert got == score(query, document, len(document_tokens)), (query, document)
                assert type(got) is float
            else:
                seen_miss += 1
                assert got is None, (query, document)
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
