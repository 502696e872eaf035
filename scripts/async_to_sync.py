#!/usr/bin/env python3
"""Write the blocking twins of the asyncio facades: ``store/_async.py`` → ``store/_sync.py`` and
``store/_remote_async.py`` → ``store/_remote_sync.py``.

One source for both facades (psycopg 3 does the same with a far larger tool). The rules are few
and textual, on purpose:

* ``async def`` / ``async for`` / ``async with`` lose ``async``; ``await`` is dropped;
* the names in ``RENAMES`` are replaced as whole words (``AsyncSessionStore`` → ``SessionStore``,
  ``read_async`` → ``read``, ``__aenter__`` → ``__enter__``, …);
* a line ending in ``# sync: CODE`` becomes CODE (with the line's indentation);
* lines from ``# async-only`` to ``# end async-only`` are left out, and so is a line ending in
  ``# async-only``;
* a ``# sync-only: CODE`` line becomes CODE.

Usage: ``python scripts/async_to_sync.py`` rewrites the file; ``--check`` exits 1 (and shows a
diff) when the committed file differs from what would be written.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STORE = ROOT / "src/aisopod_session/store"
TOOLS = ROOT / "src/aisopod_session/tools"
PAIRS = [(STORE / "_async.py", STORE / "_sync.py"),
         (STORE / "_agent_async.py", STORE / "_agent_sync.py"),
         (STORE / "_remote_async.py", STORE / "_remote_sync.py"),
         (STORE / "_remote_agent_async.py", STORE / "_remote_agent_sync.py"),
         (TOOLS / "_tools_async.py", TOOLS / "_tools_sync.py")]

RENAMES = {
    "AsyncSessionTools": "SessionTools",
    "_tools_async": "_tools_sync",
    "AsyncRemoteAgentSessions": "RemoteAgentSessions",
    "AsyncRemoteSessionStore": "RemoteSessionStore",
    "_remote_agent_async": "_remote_agent_sync",
    "_agent_async": "_agent_sync",
    "_remote_async": "_remote_sync",
    "_async": "_sync",
    "AsyncClient": "Client",
    "AsyncHTTPTransport": "HTTPTransport",
    "aiter_bytes": "iter_bytes",
    "aclose": "close",
    "aread": "read",
    "AsyncAgentSessions": "AgentSessions",
    "AsyncSessionStore": "SessionStore",
    "AsyncIterator": "Iterator",
    "AsyncIterable": "Iterable",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "read_async": "read",
    "write_async": "write",
    "wait_async": "wait",
    "asyncio API": "blocking API",
    "The asyncio store": "The blocking store",
    "so the event loop never": "so the calling thread never",
}
_RENAME = re.compile(r"\b(" + "|".join(re.escape(name) for name in RENAMES) + r")\b")
_SYNC_MARK = re.compile(r"^(?P<indent>\s*)(?P<code>.*?)\s*# sync: (?P<sync>.*)$")
_SYNC_ONLY = re.compile(r"^(?P<indent>\s*)# sync-only:(?: (?P<code>.*))?$")

HEADER = (
    "# Generated from {source} by scripts/async_to_sync.py: do not edit.\n"
    "# Edit {source} and run the script (tests/test_generated_sync.py checks they agree).\n"
)


def to_sync(text: str, source: str) -> str:
    out: list[str] = []
    skipping = False
    for source_line in text.splitlines():
        line = source_line
        stripped = line.strip()
        if stripped == "# async-only":
            skipping = True
            continue
        if stripped == "# end async-only":
            skipping = False
            continue
        if skipping or line.endswith("# async-only"):
            continue
        only = _SYNC_ONLY.match(line)
        if only:
            code = only.group("code")
            out.append(f"{only.group('indent')}{code}" if code else "")
            continue
        mark = _SYNC_MARK.match(line)
        if mark:
            out.append(f"{mark.group('indent')}{mark.group('sync')}")
            continue
        line = re.sub(r"\basync (def|for|with)\b", r"\1", line)
        line = re.sub(r"\bawait ", "", line)
        line = _RENAME.sub(lambda found: RENAMES[found.group(1)], line)
        out.append(line)
    return HEADER.format(source=source) + "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args()
    stale = False
    for source, target in PAIRS:
        wanted = to_sync(source.read_text(encoding="utf-8"), source.name)
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current == wanted:
            continue
        if args.check:
            stale = True
            sys.stdout.writelines(difflib.unified_diff(
                current.splitlines(keepends=True), wanted.splitlines(keepends=True),
                str(target.relative_to(ROOT)), "generated"))
        else:
            target.write_text(wanted, encoding="utf-8")
            print(f"wrote {target.relative_to(ROOT)}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
