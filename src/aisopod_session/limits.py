"""Every limit the store, the service and the CLI enforce: one name each, defined once.

Callers that check input early (the HTTP service's request bodies, the CLI's import) read the
same numbers, so an input refused by one layer is refused with the same bound by every other.
"""

from __future__ import annotations

MAX_SQL_INT = 2**63 - 1
"""Largest integer every backend stores in a BIGINT column and binds as a parameter: ids,
positions, counts and token counts."""

MAX_ID_LENGTH = 256
"""Longest accepted key part, metadata key or external message id, in characters."""

MAX_KEY_BYTES = 2048
"""Longest key, as the UTF-8 bytes of its parts together: PostgreSQL cannot index a longer one
(a b-tree entry holds at most 2704 bytes), so four 256-character parts fit only if most of their
characters take less than two bytes each."""

MAX_PAGE_SIZE = 1000
"""Largest ``SessionFilter.limit``: a page is meant to be read, not to dump a table."""

MAX_MESSAGE_CHARS = 1_048_576
"""Largest content + tool_calls of one message, as serialised JSON characters."""

MAX_METADATA_CHARS = 65_536
"""Largest session metadata, as serialised JSON characters."""

MAX_BATCH_MESSAGES = 10_000
"""Most messages in one append call."""

MAX_TOKEN_USAGE = 2**62 - 1
"""Largest token_usage of a session (and of one append batch): the sum of both still fits the
64-bit integer columns, so an overflow is reported as bad input rather than by the database."""

MAX_COUNTER = 2**62 - 1
"""Largest history position or compaction count an import takes: what the store adds to them
later still fits the 64-bit integer columns."""

MAX_USAGE_DAYS = 366
"""Longest window ``usage_by_day`` reports on."""

MAX_JSON_DEPTH = 64
"""Deepest nesting of a JSON value (content, tool calls, metadata)."""

MAX_IMPORT_LINE_BYTES = 4 * 1024 * 1024
"""Longest line of an export file that import reads (one session or one message)."""

MAX_AUDIT_RECORDS = 10_000
"""Most audit records one ``audit_log`` call returns."""

MAX_CURSOR_LENGTH = 1024
"""Longest list cursor accepted (the store's own are a few dozen characters)."""

MAX_CONSOLE_OFFSET = 10_000_000
"""Deepest the console's history pages go back (``older``); the API takes the store's bounds."""

MAX_RUN_TTL_SECONDS = 86_400.0
"""Longest run lease one start or renewal takes (renew to hold a session longer)."""

MAX_RUN_WAIT_SECONDS = 3_600.0
"""Longest ``start_run`` waits for a busy session."""

MAX_OWNER_LENGTH = MAX_ID_LENGTH
"""Longest name of a run's owner."""

MAX_INBOX_BATCH = 500
"""Most inbox messages one ``inbox`` peek or ``take_inbox`` returns when given a limit."""

MAX_SEARCH_QUERY_CHARS = 1_000
"""Longest search query, in characters."""

MAX_SEARCH_TERMS = 32
"""Most words, phrases and exclusions in one search query."""

MAX_SEARCH_LIMIT = 100
"""Most hits one search page returns."""

MAX_SEARCH_TOKEN_CHARS = 64
"""Longest word the search index keeps: longer words are compared on their first 64
characters (PostgreSQL's lexemes are bounded, and both backends must agree)."""

MAX_SEARCHED_CHARS = 65_536
"""How much of one message is searched: its words up to this many characters of indexed text
(a PostgreSQL tsvector holds at most 1 MB; both backends search the same part)."""

MAX_SEARCH_BUILD_BATCH = 10_000
"""Largest ``batch_size`` of ``build_search_index`` (one write transaction per batch)."""

MAX_SEARCH_BUILD_BATCHES_PER_REQUEST = 10
"""Most batches one ``POST /v1/admin/search/index/build`` runs: a request indexes at most
10 batches of 10,000 messages (a few seconds), then answers what is still pending."""

MAX_RANKED_MATCHES = 1_000
"""How many matching messages (the most recently stored) a search ordered by ``best`` ranks: a
query with more matches says so (``SearchPage.partial_ranking``); narrow it or page by
``newest``."""
