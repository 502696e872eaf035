"""The blocking and asyncio APIs are kept in step: same methods, same parameters, same results."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from aisopod_session import AgentSessions, AsyncAgentSessions, AsyncSessionStore, SessionStore

NOT_COROUTINES = {"for_agent", "durability", "backend", "agent_id"}
PAIRS = [(SessionStore, AsyncSessionStore), (AgentSessions, AsyncAgentSessions)]


def _public(cls: type) -> dict[str, Any]:
    return {name: value for name, value in vars(cls).items() if not name.startswith("_")}


@pytest.mark.parametrize(("blocking", "asyncio_"), PAIRS, ids=lambda c: c.__name__)
def test_same_public_methods(blocking: type, asyncio_: type) -> None:
    assert set(_public(blocking)) == set(_public(asyncio_))


@pytest.mark.parametrize(("blocking", "asyncio_"), PAIRS, ids=lambda c: c.__name__)
def test_same_signatures_and_async_where_expected(blocking: type, asyncio_: type) -> None:
    for name, sync_member in _public(blocking).items():
        async_member = _public(asyncio_)[name]
        if isinstance(sync_member, property):
            assert isinstance(async_member, property), name
            continue
        sync_fn = sync_member.__func__ if isinstance(sync_member, classmethod) else sync_member
        async_fn = async_member.__func__ if isinstance(async_member, classmethod) else async_member
        assert not inspect.iscoroutinefunction(sync_fn), name
        if inspect.isgeneratorfunction(sync_fn):  # streams: an iterator and an async iterator
            assert inspect.isasyncgenfunction(async_fn), name
        else:
            assert inspect.iscoroutinefunction(async_fn) == (name not in NOT_COROUTINES), name
        sync_sig = inspect.signature(sync_fn)
        async_sig = inspect.signature(async_fn)
        assert list(sync_sig.parameters) == list(async_sig.parameters), name
        for param in sync_sig.parameters:
            expected = sync_sig.parameters[param]
            got = async_sig.parameters[param]
            assert (expected.kind, expected.default) == (got.kind, got.default), (name, param)
            if param not in ("self", "cls"):
                # the asyncio twin may accept more (an async iterable of lines), never less
                assert expected.annotation in got.annotation, (name, param)
        returns = (str(sync_sig.return_annotation), str(async_sig.return_annotation))
        renamed = (
            returns[0]
            .replace("SessionStore", "AsyncSessionStore")
            .replace("AgentSessions", "AsyncAgentSessions")
            .replace("Iterator", "AsyncIterator")
        )
        assert returns[1] in (returns[0], renamed), name
