"""The fence every write given ``run=`` passes: the run must still be its session's current run.

Checked first in the write's own transaction, after locking the session's row (the order every
write of a key locks in) and the key's run row: a run taken over after its lease expired can
never write after its successor started.
"""

from __future__ import annotations

from aisopod_session.errors import RunLostError
from aisopod_session.models import SessionKey
from aisopod_session.results import Run
from aisopod_session.store._schema import (
    KEY_WHERE,
    LIVE_KEY_WHERE,
    RUN_COLUMNS,
    RunRow,
    key_params,
    run_row,
    twice,
)
from aisopod_session.store._tx import Tx

_RUN_SQL = f"SELECT {RUN_COLUMNS} FROM runs WHERE {KEY_WHERE}"


def run_state(tx: Tx, key: SessionKey, *, lock: bool = False) -> RunRow | None:
    """The key's row of ``runs`` (None if no run ever started on it)."""
    return run_row(tx.one(_RUN_SQL + (tx.dialect.for_update if lock else ""), key_params(key)))


def lost(run: Run, current: RunRow | None) -> RunLostError:
    if current is None or current.owner is None:
        why = "it has finished" if current is not None and current.fence == run.fence else (
            "no run holds the session now")
    else:
        why = f"run {current.fence} of {current.owner!r} holds the session now"
    return RunLostError(f"run {run.fence} of {run.owner!r} on {run.key} is no longer the "
                        f"session's current run: {why}")


_LIVE_ID_LOCKED = f"SELECT id FROM sessions WHERE {LIVE_KEY_WHERE}"


def current(tx: Tx, run: Run, *, finished_too: bool = False) -> RunRow:
    """The key's run row, locked, if ``run`` is still its current run (or, ``finished_too``,
    its newest, finished or not); RunLostError if not. The run row decides, whether or not the
    key still has a live session."""
    # the live session's row first (if there is one): the order every write of a key locks in
    twice(tx, _LIVE_ID_LOCKED + tx.dialect.for_update, key_params(run.key))
    state = run_state(tx, run.key, lock=True)
    if (state is None or state.fence != run.fence
            or (state.owner is None and not finished_too)):
        raise lost(run, state)
    return state


def forget_runs(tx: Tx, where: str = "1 = 1", params: tuple[str, ...] = ()) -> int:
    """Drop the run state and the inbox of the keys ``where`` selects, with their sessions (call
    it after deleting those, so that locks are taken in the usual order). Fences come from one
    counter for every key, so a fence is not handed out again after this. Returns how many inbox
    messages were dropped."""
    tx.run(f"DELETE FROM runs WHERE {where}", params)
    return tx.run(f"DELETE FROM inbox WHERE {where}", params)


def check_fence(tx: Tx, run: Run | None) -> None:
    """For a write given ``run=``: refused (RunLostError, nothing stored) unless ``run`` is the
    session's current run."""
    if run is not None:
        current(tx, run)
