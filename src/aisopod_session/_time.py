"""Time as the store keeps it, and as text crosses the boundaries.

The store keeps every timestamp as whole microseconds since the Unix epoch (UTC) in a BIGINT:
one codec, used by the store, the integrations and the importers. Text timestamps (HTTP bodies,
query strings, export files, the CLI) must be RFC 3339 with an offset; one pattern decides that
everywhere, so a value one layer accepts is accepted by every other.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["EPOCH", "RFC3339", "check_rfc3339", "from_us", "to_us", "utc_now"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)

RFC3339 = re.compile(
    r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)"
)
"""An RFC 3339 date-time with an offset (the date and time may be split by a space, as RFC
3339 allows). Without this check pydantic would also read "589" as a Unix timestamp."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_us(value: datetime) -> int:
    """Microseconds since the epoch, as stored."""
    return (value - EPOCH) // ONE_US


def from_us(value: int) -> datetime:
    """The aware UTC datetime of a stored timestamp."""
    return EPOCH + ONE_US * value


def check_rfc3339(value: str) -> str:
    """``value`` if it is an RFC 3339 date-time with an offset; ValueError otherwise."""
    if not RFC3339.fullmatch(value):
        raise ValueError(
            f"{value[:40]!r} is not an RFC 3339 timestamp with an offset "
            "(e.g. 2026-11-25T12:00:00Z)"
        )
    return value
