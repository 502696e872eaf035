"""The search query language and the text it searches: one definition for every backend.

A message's searchable text is every string value of its content and tool calls (see
:func:`message_text`), folded (:func:`fold`: compatibility forms, case, Latin accents) and cut
into tokens (:data:`_TOKEN`): runs of letters and digits, and every character of the scripts
written without spaces (Chinese, Japanese, Korean, Thai, …) on its own, so that any substring of
such text is a sequence of tokens. The database index (FTS5 on SQLite, a tsvector on PostgreSQL)
holds these tokens and only *selects candidates*; :func:`matches` here decides, and
:func:`score` and :func:`snippet` are computed here, so both backends answer the same hits in
the same order.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from aisopod_session import _json
from aisopod_session.errors import InvalidInputError
from aisopod_session.limits import (
    MAX_SEARCH_QUERY_CHARS,
    MAX_SEARCH_TERMS,
    MAX_SEARCH_TOKEN_CHARS,
    MAX_SEARCHED_CHARS,
)

# Scripts written without spaces between words: each character is a token of its own.
_SINGLE = (
    "\u0e00-\u0eff"  # Thai, Lao
    "\u1000-\u109f"  # Myanmar
    "\u1100-\u11ff"  # Hangul Jamo
    "\u1780-\u17ff"  # Khmer
    "\u2e80-\u2fdf"  # CJK radicals
    "\u3005-\u3007"  # ideographic iteration and closing marks, number zero
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3100-\u31ff"  # Bopomofo, Hangul compatibility Jamo, Katakana extensions
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\ua960-\ua97f"  # Hangul Jamo extended A
    "\uac00-\ud7ff"  # Hangul syllables, Jamo extended B
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\uff66-\uff9f"  # half-width Katakana
    "\U00020000-\U0003134f"  # CJK extensions B-H
)
_TOKEN = re.compile(f"[{_SINGLE}]|[^\\W_{_SINGLE}]+")
"""A token: one character of :data:`_SINGLE`, or a run of letters, digits and (for scripts
like Devanagari) what Python counts as word characters. ``_`` separates, as all punctuation."""
_SINGLE_CHAR = re.compile(f"[{_SINGLE}]")
_LATIN_MARKS = re.compile("[\u0300-\u036f]")
"""The combining diacritical marks of Latin (and Greek, Cyrillic) letters; the marks of other
scripts (Japanese voicing marks, Indic vowel signs) are kept."""
_LETTERS = str.maketrans({"\u00f8": "o", "\u0142": "l", "\u0111": "d", "\u0127": "h",
                          "\u0131": "i", "\u0167": "t", "\u00e6": "ae", "\u0153": "oe",
                          "\u00f0": "d", "\u00fe": "th"})
"""Latin letters whose accent is not a combining mark in Unicode's decomposition."""
_KEYS_NOT_SEARCHED = frozenset({"type", "id", "call_id", "tool_call_id", "tool_use_id"})
"""Keys of content and tool-call objects whose values are identifiers, not text."""


def fold(text: str) -> str:
    """Compatibility forms unified (NFKD: ﬁ → fi, full-width → ASCII), case folded, Latin
    accents removed (é → e, ß → ss, ø → o), then recomposed (NFC)."""
    if text.isascii():
        return text.lower()
    folded = _LATIN_MARKS.sub("", unicodedata.normalize("NFKD", text).casefold())
    return unicodedata.normalize("NFC", folded).translate(_LETTERS)


def tokens(text: str) -> list[str]:
    """The searched tokens of ``text``: folded, cut, each at most ``MAX_SEARCH_TOKEN_CHARS``
    characters, and only those within the first ``MAX_SEARCHED_CHARS`` of the token text."""
    every = _TOKEN.findall(fold(text))
    if (sum(map(len, every)) + len(every) <= MAX_SEARCHED_CHARS
            and max(map(len, every), default=0) <= MAX_SEARCH_TOKEN_CHARS):
        return every  # the usual message: nothing to cut
    found: list[str] = []
    used = 0
    for whole in every:
        token = whole[:MAX_SEARCH_TOKEN_CHARS]
        used += len(token) + 1
        if used > MAX_SEARCHED_CHARS:
            break
        found.append(token)
    return found


def _strings(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, list):
        for item in value:
            _strings(item, out)
    elif isinstance(value, dict):
        for name, item in value.items():
            if name not in _KEYS_NOT_SEARCHED:
                _strings(item, out)


def _json_strings(encoded: str | None, out: list[str]) -> None:
    if encoded is None:
        return
    if encoded[0] == '"' and "\\" not in encoded:  # a plain string: its interior
        out.append(encoded[1:-1])
    else:
        _strings(_json.loads(encoded), out)


def message_text(content: str, tool_calls: str | None) -> str:
    """The searchable text of a stored message (its JSON columns): every string value of its
    content and tool calls, except the values of identifier keys (``type``, ``id``,
    ``call_id``, ``tool_call_id``, ``tool_use_id``), one per line."""
    out: list[str] = []
    _json_strings(content, out)
    _json_strings(tool_calls, out)
    return "\n".join(out)


def index_tokens(content: str, tool_calls: str | None) -> list[str]:
    """What the database index holds for a stored message."""
    return tokens(message_text(content, tool_calls))


# --- the query language ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Term:
    """A word or a phrase: consecutive tokens; with ``prefix``, the last one a token's start."""

    tokens: tuple[str, ...]
    prefix: bool = False
    excluded: bool = False
    pattern: str = field(init=False, repr=False, compare=False)
    """The term in a document's :func:`padded` token text (computed once: every candidate of a
    search is tested against it)."""
    adjacent: str = field(init=False, repr=False, compare=False)
    """Two occurrences of :attr:`pattern` sharing the space between them."""

    def __post_init__(self) -> None:
        pattern = " " + " ".join(self.tokens) + ("" if self.prefix else " ")
        object.__setattr__(self, "pattern", pattern)
        object.__setattr__(self, "adjacent", pattern + pattern[1:])


@dataclass(frozen=True, slots=True)
class Query:
    wanted: tuple[Term, ...]
    excluded: tuple[Term, ...]

    def fingerprint(self) -> str:
        return repr((self.wanted, self.excluded))


def _bad(problem: str) -> InvalidInputError:
    return InvalidInputError.for_field("query", problem)


def _raw_terms(text: str) -> Iterator[tuple[str, bool, bool]]:
    """(text, prefix, excluded) of each word or "phrase" as typed."""
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        excluded = text[i] == "-" and i + 1 < n and not text[i + 1].isspace()
        if excluded:
            i += 1
        if text[i] == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise _bad('has an unbalanced quote: close the "phrase" with a second "')
            raw, i = text[i + 1 : end], end + 1
            prefix = i < n and text[i] == "*"
            while i < n and text[i] == "*":
                i += 1
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] != '"':
                i += 1
            raw = text[start:i]
            prefix = raw.endswith("*")
        yield raw, prefix, excluded


def parse(query: Any) -> Query:
    """A query typed by a person: words (all must match), "exact phrases", prefix*, -excluded.
    Anything else (``NEAR``, ``AND``/``OR``/``NOT``, ``column:``, ``^``, parentheses) is plain
    words or punctuation."""
    if not isinstance(query, str):
        raise _bad(f"expected a string, got {type(query).__name__}")
    if len(query) > MAX_SEARCH_QUERY_CHARS:
        raise _bad(f"is {len(query)} characters long; at most {MAX_SEARCH_QUERY_CHARS}")
    if not query.strip():
        raise _bad("is empty: give at least one word to find")
    wanted: list[Term] = []
    excluded: list[Term] = []
    for raw, prefix, is_excluded in _raw_terms(query):
        found = tuple(tokens(raw))
        if not found:
            continue  # punctuation only
        term = Term(found, prefix, is_excluded)
        (excluded if is_excluded else wanted).append(term)
    if len(wanted) + len(excluded) > MAX_SEARCH_TERMS:
        raise _bad(f"has {len(wanted) + len(excluded)} terms; at most {MAX_SEARCH_TERMS}")
    if not wanted:
        if excluded:
            raise _bad("has only exclusions (-word): give at least one word to find")
        raise _bad("has no word to find (only punctuation)")
    return Query(tuple(wanted), tuple(excluded))


# --- matching, scoring, snippets --------------------------------------------------------------


def padded(found: list[str]) -> str:
    """A document's tokens as one string in which every term is a substring search."""
    return " " + " ".join(found) + " "


def occurrences(query: Query, text: str) -> list[int] | None:
    """How often each wanted term occurs in a document (its :func:`padded` token text), or None
    if it does not match (a wanted term missing, or an excluded one present).

    Two occurrences may share the space between them (``a a`` holds the word ``a`` twice).
    ``str.count`` counts only occurrences that do not overlap, so where two share a space
    (:attr:`Term.adjacent` is in the text) they are counted one by one: every candidate of a
    ``best`` window read as text goes through here."""
    counts = []
    for term in query.wanted:
        count = text.count(term.pattern)
        if not count:
            return None
        if term.adjacent in text:
            count, at = 0, text.find(term.pattern)
            while at >= 0:
                count += 1
                at = text.find(term.pattern, at + len(term.pattern) - 1)
        counts.append(count)
    for term in query.excluded:
        if term.pattern in text:
            return None
    return counts


def relevance(query: Query, counts: Sequence[int], token_count: int) -> float | None:
    """Relevance of a document of ``token_count`` tokens in which each wanted term occurs
    ``counts`` times (in the order of ``query.wanted``), or None if one does not occur.

    From the document alone, so a page's order does not move when other messages are stored:
    for each wanted term, its length in tokens times ``1 + ln(occurrences)``, summed and divided
    by ``1 + ln(1 + tokens / 64)`` (long messages count for less); rounded to 4 decimals. The
    only home of the formula: occurrences counted by the matcher (:func:`occurrences`) and by
    the database (SQLite's FTS5) give the same score."""
    total: float = 0
    for term, count in zip(query.wanted, counts, strict=True):
        if not count:
            return None
        total += len(term.tokens) * (1 + math.log(count))
    return round(total / (1 + math.log(1 + token_count / 64)), 4)


@functools.lru_cache(maxsize=4096)
def _fold_char(char: str) -> str:
    return fold(char)


_SPACES = re.compile(r"\s+")
SNIPPET_CHARS = 160
"""About how many characters of a message a hit's snippet shows."""


def snippet(query: Query, text: str) -> list[tuple[str, bool]]:
    """A short excerpt of ``text`` around the first match, as (text, matched) segments: the
    matched terms' characters are the segments marked True. Whitespace runs become one space;
    a cut end is shown as ``…``. No markup: rendering (and escaping) is the caller's."""
    if text.isascii():  # folding is lower(): one character for one, no map needed
        spans = [(m.start(), m.end(), m.group()[:MAX_SEARCH_TOKEN_CHARS])
                 for m in _TOKEN.finditer(text.lower())]
    else:
        folded_chars: list[str] = []
        origin: list[int] = []  # the original index of each folded character
        for index, char in enumerate(text):
            for part in _fold_char(char):
                folded_chars.append(part)
                origin.append(index)
        spans = [(origin[m.start()], origin[m.end() - 1] + 1,
                  m.group()[:MAX_SEARCH_TOKEN_CHARS])
                 for m in _TOKEN.finditer("".join(folded_chars))]
    marked: list[tuple[int, int]] = []
    words = [token for _, _, token in spans]
    for term in query.wanted:
        size = len(term.tokens)
        head, wanted_last = list(term.tokens[:-1]), term.tokens[-1]
        for start in range(len(words) - size + 1):
            last = words[start + size - 1]
            if ((last.startswith(wanted_last) if term.prefix else last == wanted_last)
                    and (not head or words[start : start + size - 1] == head)):
                marked.append((spans[start][0], spans[start + size - 1][1]))
    marked.sort()
    first = marked[0][0] if marked else 0
    begin = max(0, first - SNIPPET_CHARS // 3)
    if begin:  # start at a word's start
        space = text.rfind(" ", 0, begin)
        begin = space + 1 if space >= 0 and begin - space < 20 else begin
    end = min(len(text), begin + SNIPPET_CHARS)
    if end < len(text):
        space = text.find(" ", end)
        end = space if 0 <= space < end + 20 else end
    segments: list[tuple[str, bool]] = []
    at = begin
    for first_char, after_last in marked:
        start, stop = max(first_char, at), min(after_last, end)
        if start >= stop:
            continue
        if start > at:
            segments.append((text[at:start], False))
        segments.append((text[start:stop], True))
        at = stop
    if at < end:
        segments.append((text[at:end], False))
    cleaned = [(_SPACES.sub(" ", part), hit) for part, hit in segments]
    if begin > 0:
        cleaned.insert(0, ("…", False))
    if end < len(text):
        cleaned.append(("…", False))
    return _merge(cleaned)


def _merge(segments: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    merged: list[tuple[str, bool]] = []
    for part, hit in segments:
        if merged and merged[-1][1] == hit:
            merged[-1] = (merged[-1][0] + part, hit)
        else:
            merged.append((part, hit))
    return merged

