"""Wake-ups of watchers and run waiters (``store/_wakeups``)."""

from __future__ import annotations

import asyncio

import pytest

from aisopod_session.store._wakeups import Watch


def test_a_cancel_that_comes_with_the_wake_up_is_not_lost() -> None:
    """A watcher cancelled in the same turn as it is woken ends (Python 3.11's
    ``asyncio.wait_for`` returned the wake-up instead and the cancel was lost: a stopped
    ``watch()`` went on waiting)."""

    async def main() -> None:
        watch = Watch()
        waiting = asyncio.create_task(watch.wait_async(30))
        await asyncio.sleep(0)  # it waits
        assert watch._woken is not None
        watch._woken.set()  # woken and cancelled in the same turn
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(asyncio.wait_for(main(), 10))


def test_a_wait_ends_when_woken_or_after_its_time() -> None:
    async def main() -> None:
        watch = Watch()
        waiting = asyncio.create_task(watch.wait_async(30))
        await asyncio.sleep(0)
        watch.wake()
        await asyncio.wait_for(waiting, 5)  # woken
        await asyncio.wait_for(watch.wait_async(0.01), 5)  # its time passed

    asyncio.run(main())
