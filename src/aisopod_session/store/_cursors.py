"""The list cursor: where the next page of a listing starts, signed and bound to that listing.

A cursor holds the position after the last session of a page (its ``updated_at`` and id) and a
MAC over that position and a digest of the listing it belongs to: who listed (an agent's handle,
or the admin) and every filter but the page size. The MAC is HMAC-SHA256 with the database's own
random key (table ``store_secret``, made by migration 0009 and read once when a store is opened),
so every process and replica of one database accepts the cursors of the others, while a cursor
that was made up, edited, taken from another database or handed out by another listing is
refused (InvalidInputError naming ``cursor``) instead of silently paging something else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import struct
from dataclasses import dataclass

from aisopod_session._time import to_us
from aisopod_session.errors import InvalidInputError
from aisopod_session.models import SessionFilter
from aisopod_session.store._tx import Tx

_VERSION = 1
_POSITION = struct.Struct(">BqQ")  # version, updated_at (µs), session id
_MAC_BYTES = 16  # HMAC-SHA256 truncated to 128 bits: short, and still unguessable
_TEXT = re.compile(r"[A-Za-z0-9_-]{44}")  # base64url of the 17 + 16 bytes (no padding)
_KEY_SQL = "SELECT value FROM store_secret WHERE name = 'cursor'"


def read_cursor_key(tx: Tx) -> bytes | None:
    """The database's cursor key, None if its row was removed."""
    row = tx.one(_KEY_SQL)
    return None if row is None else str(row[0]).encode("ascii")


def make_cursor_key(tx: Tx) -> bytes:
    """Put back a removed cursor key (a fresh random one: earlier cursors stop working)."""
    tx.run("INSERT INTO store_secret (name, value) VALUES ('cursor', ?) ON CONFLICT DO NOTHING",
           (secrets.token_hex(32),))
    return str(tx.one(_KEY_SQL)[0]).encode("ascii")


@dataclass(frozen=True, slots=True)
class Listing:
    """One listing's cursors: the key that signs them and the digest they are bound to."""

    key: bytes
    digest: bytes

    @classmethod
    def of(cls, key: bytes, filter: SessionFilter, scope: str | None) -> Listing:
        """``scope``: the agent whose handle lists, None for the admin's list of every agent.
        ``limit`` is left out: a caller may change the page size between pages."""
        bound = [
            _VERSION, scope, filter.agent_id, filter.channel, filter.account_id,
            None if filter.peer_kind is None else filter.peer_kind.value, filter.peer_id,
            [status.value for status in filter.statuses],
            *(None if moment is None else to_us(moment) for moment in (
                filter.created_after, filter.created_before,
                filter.updated_after, filter.updated_before)),
        ]
        return cls(key, hashlib.sha256(json.dumps(bound).encode("utf-8")).digest())

    def _mac(self, position: bytes) -> bytes:
        return hmac.digest(self.key, self.digest + position, "sha256")[:_MAC_BYTES]

    def cursor(self, position: tuple[int, int]) -> str:
        """The cursor after ``position`` (``updated_at``, session id) in this listing."""
        packed = _POSITION.pack(_VERSION, *position)
        return base64.urlsafe_b64encode(packed + self._mac(packed)).decode("ascii").rstrip("=")

    def position(self, cursor: str) -> tuple[int, int]:
        """The position a cursor of this listing holds; InvalidInputError (field ``cursor``)
        for any other text: made up, edited, or handed out by another listing."""
        if _TEXT.fullmatch(cursor):
            raw = base64.urlsafe_b64decode(cursor + "=")
            packed, mac = raw[: _POSITION.size], raw[_POSITION.size :]
            if hmac.compare_digest(mac, self._mac(packed)):
                _version, updated_at, session_id = _POSITION.unpack(packed)
                return updated_at, session_id
        raise InvalidInputError.for_field(
            "cursor", "is not a cursor of this listing: pass next_cursor back unchanged, with "
                      "the same filters (only limit may change)"
        )
