"""The integrations' commit: append messages and merge metadata into a session and into other
sessions of the same agent, in one transaction, optionally as a compare-and-set."""

from __future__ import annotations

from typing import Any

from aisopod_session import _time
from aisopod_session._time import from_us, to_us
from aisopod_session.errors import ConflictError, InvalidInputError
from aisopod_session.models import Session, SessionKey
from aisopod_session.results import ChangeKind, CommitResult, MetadataMerge
from aisopod_session.store import _checks
from aisopod_session.store._changes import record
from aisopod_session.store._messages import append_messages, stored_by_external_id
from aisopod_session.store._schema import (
    SESSION_COLUMNS,
    TOUCH,
    create_live,
    live_session,
    lock_order,
    locked_or_created,
    not_found,
    session_from_row,
    touch_params,
)
from aisopod_session.store._tx import Tx, Work


def _merged_metadata(current: dict[str, Any], merge: MetadataMerge, key: SessionKey) -> str:
    metadata = dict(current)
    for name, entries in merge.items():
        existing = metadata.get(name)
        if existing is None:
            existing = {}
        if not isinstance(existing, dict):
            raise InvalidInputError.for_field(
                f"merge.{name}",
                f"metadata {name!r} of {key} is a {type(existing).__name__}, not an object",
            )
        metadata[name] = {**existing, **entries}
    return _checks.metadata_text(metadata)


def _update_metadata(tx: Tx, session: Session, metadata: str) -> Session:
    """Store ``metadata``; ``updated_at`` strictly increases (the revision compare-and-set sees)."""
    row = tx.one(
        f"UPDATE sessions SET metadata = ?, {TOUCH} WHERE id = ? RETURNING {SESSION_COLUMNS}",
        (metadata, *touch_params(to_us(_time.utc_now())), session.id),
    )
    record(tx, ChangeKind.SESSION_UPDATED, session.key.agent_id, session.id, fields=["metadata"])
    return session_from_row(row)


def _lock_for_commit(
    tx: Tx, key: SessionKey, shared_merge: dict[SessionKey, MetadataMerge], *, create: bool
) -> dict[SessionKey, Session | None]:
    """The sessions a commit touches, locked in key order (created where the commit says)."""
    current: dict[SessionKey, Session | None] = {}
    for one in sorted({key, *shared_merge}, key=lock_order):
        if one == key and create:
            current[one] = create_live(tx, key, must_be_new=True)[0]
        elif one == key:
            found = live_session(tx, key, lock=True)
            if found is None:
                raise not_found(key)
            current[one] = found
        elif shared_merge[one]:
            current[one] = locked_or_created(tx, one)
        else:
            current[one] = live_session(tx, one)
    return current


def commit(
    key: SessionKey,
    messages: Any,
    merge: Any,
    *,
    create: bool,
    expect_updated_at: Any,
    shared: dict[SessionKey, Any],
) -> Work[CommitResult]:
    """Append messages and merge metadata into this session and into ``shared`` ones, atomically.

    * ``create``: the session must not exist yet (ConflictError if a live one does); it is
      created in the same transaction.
    * ``expect_updated_at``: compare-and-set. The commit applies only if the session's
      ``updated_at`` is still this value (ConflictError otherwise). Every commit moves
      ``updated_at`` strictly forward, so the value read back is a revision.
    * Messages de-duplicate on ``external_id`` as in ``append_messages``; when *every* message
      given is already stored the call is a redelivery: nothing changes (the precondition is not
      checked) and ``applied`` is False.
    * ``shared``: other sessions of the same agent whose metadata is merged in the same
      transaction, created when missing; one with nothing to merge is only read.

    Sessions are locked in key order, so concurrent commits touching the same shared sessions
    never deadlock.
    """
    prepared = _checks.new_messages([] if messages is None else messages)
    own_merge = _checks.merge(merge, "merge")
    shared_merge = {k: _checks.merge(m, f"shared[{k}]") for k, m in shared.items()}
    if key in shared_merge:
        raise InvalidInputError.for_field("shared", f"{key} is the session being committed")
    if type(create) is not bool:
        raise InvalidInputError.for_field("create", f"expected a bool, got {create!r}")
    expected = (None if expect_updated_at is None
                else to_us(_checks.aware(expect_updated_at, "expect_updated_at")))
    with_ids = sorted({p.message.external_id for p in prepared
                       if p.message.external_id is not None})
    all_have_ids = bool(prepared) and all(p.message.external_id is not None for p in prepared)
    append = append_messages(key, [p.message for p in prepared])
    assert append.write is not None
    append_write = append.write

    def write(tx: Tx) -> CommitResult:
        current = _lock_for_commit(tx, key, shared_merge, create=create)
        session = current[key]
        assert session is not None
        if all_have_ids and len(stored_by_external_id(tx, session.id, with_ids)) == len(with_ids):
            # a redelivery of the whole commit: changes nothing, returns the stored messages
            return CommitResult(session=session, messages=append_write(tx), applied=False,
                                shared={k: v for k, v in current.items() if k != key})
        if expected is not None and to_us(session.updated_at) != expected:
            raise ConflictError(
                f"session {key} was changed since it was read (updated_at is "
                f"{session.updated_at.isoformat()}, expected {from_us(expected).isoformat()})"
            )
        stored = append_write(tx) if prepared else []
        session = _update_metadata(tx, session, _merged_metadata(session.metadata, own_merge, key))
        after: dict[SessionKey, Session | None] = {}
        for one, merge_one in shared_merge.items():
            existing = current[one]
            if merge_one and existing is not None:
                existing = _update_metadata(
                    tx, existing, _merged_metadata(existing.metadata, merge_one, one)
                )
            after[one] = existing
        return CommitResult(session=session, messages=stored, applied=True, shared=after)

    # It locks its sessions in key order, starting with the smallest: sorting batches on that
    # one keeps its first lock in the order every other write takes its own.
    locked = [lock_order(key), *(lock_order(k) for k, m in shared_merge.items() if m)]
    return Work(write=write, lock_key=min(locked))
