"""The blocking facade is generated from the asyncio one (scripts/async_to_sync.py): one source,
so the two cannot drift apart. This fails when the committed ``_sync.py`` is not what the script
writes today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_sync_facade_is_generated_from_the_async_one() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/async_to_sync.py"), "--check"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, (
        "src/aisopod_session/store/_sync.py is out of date: run scripts/async_to_sync.py\n"
        + result.stdout[-4000:] + result.stderr[-2000:]
    )


def test_generator_rules() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from async_to_sync import to_sync
    finally:
        sys.path.pop(0)
    source = "\n".join([
        "# async-only",
        "import asyncio",
        "# end async-only",
        "class AsyncSessionStore:",
        "    async def get(self) -> AsyncIterator[str]:",
        "        async for x in self._lines():  # sync: yield from self._lines()",
        "            yield x  # async-only",
        "        return await engine.read_async(work)",
        "    # sync-only: def only_here(self) -> None: ...",
    ])
    out = to_sync(source, "_async.py").splitlines()
    assert out[2:] == [
        "class SessionStore:",
        "    def get(self) -> Iterator[str]:",
        "        yield from self._lines()",
        "        return engine.read(work)",
        "    def only_here(self) -> None: ...",
    ]
