"""Import from an OpenAI Agents SDK database vs the store's own JSON Lines import (issue 22).

Builds a ``SQLiteSession`` database with the SDK itself (``--messages`` items over sessions of
``--per-session``), then, each in a fresh child process (so peak RSS is the run's own):

* ``import-from``: ``aisopod_session.importers`` from that database into an empty SQLite store;
* ``import``: ``store.import_jsonl`` of the same sessions' export (written beforehand) into
  another empty store.

Prints messages/s, the ratio, and each child's peak RSS and its growth over the RSS it had
before the import started (the imports' memory, not Python's and the libraries')::

    .venv/bin/python -m benchmarks.import_from                 # 100,000 messages
    .venv/bin/python -m benchmarks.import_from --messages 2000 # a quick run

``--quick`` is 300 messages (a smoke run); ``--markdown`` prints a ``###`` heading before the
table and sends the progress to stderr (the form ``python -m benchmarks`` puts in
docs/performance.md's ``## Capabilities``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_source(path: Path, messages: int, per_session: int) -> None:
    os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")
    from agents import SQLiteSession

    async def write() -> None:
        written = 0
        number = 0
        while written < messages:
            count = min(per_session, messages - written)
            session = SQLiteSession(f"user-{number:06d}", str(path))
            items = []
            for i in range(count):
                if i % 4 == 1:
                    items.append({"type": "function_call", "call_id": f"c{i}", "name": "f",
                                  "arguments": json.dumps({"i": i})})
                elif i % 4 == 2:
                    items.append({"type": "function_call_output", "call_id": f"c{i - 1}",
                                  "output": f"result {i} " + "x" * 200})
                else:
                    items.append({"role": "user" if i % 4 == 0 else "assistant",
                                  "content": f"message {i} of session {number} " + "y" * 200})
            await session.add_items(items)
            session.close()
            written += count
            number += 1

    asyncio.run(write())


def _rss_kib() -> int:
    """Peak resident memory so far (KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _current_rss_kib() -> int:
    """Resident memory now (KiB; Linux), so the growth is measured from what the process holds
    when the import starts, not from an earlier peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return _rss_kib()


def child(mode: str, source: str, target: str) -> None:
    """One measured run; prints a JSON line."""
    from aisopod_session import SessionStore
    from aisopod_session.importers import import_sessions, open_source

    with SessionStore.open(target) as store:
        before = _current_rss_kib()
        started = time.perf_counter()
        if mode == "import-from":
            opened = open_source("openai-agents", source)
            report = import_sessions(store, opened)
            opened.close()
            messages = report.messages_imported
        else:
            with open(source, "rb") as lines:
                messages = store.import_jsonl(lines).messages
        elapsed = time.perf_counter() - started
    print(json.dumps({"messages": messages, "seconds": elapsed, "peak_kib": _rss_kib(),
                      "before_kib": before}))


def measure(mode: str, source: Path, target: Path) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.import_from", "--child", mode, str(source),
         str(target)], cwd=ROOT, capture_output=True, text=True, check=True)
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=None,
                        help="default 100,000 (300 with --quick)")
    parser.add_argument("--per-session", type=int, default=None,
                        help="default 100 (50 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a smoke run, not a measurement")
    parser.add_argument("--markdown", action="store_true",
                        help="a heading before the table; the progress on stderr")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "SOURCE", "TARGET"))
    options = parser.parse_args()
    if options.child:
        child(*options.child)
        return
    if options.messages is None:
        options.messages = 300 if options.quick else 100_000
    if options.per_session is None:
        options.per_session = 50 if options.quick else 100
    from aisopod_session import SessionStore

    with tempfile.TemporaryDirectory(prefix="import-from-") as folder:
        work = Path(folder)
        source = work / "sdk.db"
        started = time.perf_counter()
        build_source(source, options.messages, options.per_session)
        built = (f"source: {options.messages} messages written by SQLiteSession in "
                 f"{time.perf_counter() - started:.1f} s ({source.stat().st_size >> 20} MiB)")
        if options.markdown:
            print(built, file=sys.stderr, flush=True)
        else:
            print(built)
        ours = measure("import-from", source, work / "from.db")
        export = work / "export.jsonl"
        with SessionStore.open(str(work / "from.db")) as store, export.open("w") as out:
            for line in store.export_jsonl():
                out.write(line + "\n")
        theirs = measure("import", export, work / "jsonl.db")
    if options.markdown:
        quick = " (quick mode: not a measurement)" if options.quick else ""
        print(f"### Import rate: an OpenAI Agents SDK database vs JSON Lines{quick}\n\n"
              f"{options.messages:,} messages in sessions of {options.per_session}, written by "
              f"the SDK's SQLiteSession; each import a fresh process into an empty SQLite store "
              f"(`python -m benchmarks.import_from`).")
    print("\n| run | messages | seconds | messages/s | peak RSS | RSS growth during import |")
    print("|---|---|---|---|---|---|")
    for name, run in (("import-from openai-agents", ours), ("import (JSON Lines)", theirs)):
        print(f"| {name} | {int(run['messages'])} | {run['seconds']:.2f} | "
              f"{run['messages'] / run['seconds']:,.0f} | {run['peak_kib'] / 1024:.1f} MiB | "
              f"{(run['peak_kib'] - run['before_kib']) / 1024:.1f} MiB |")
    ratio = (ours["messages"] / ours["seconds"]) / (theirs["messages"] / theirs["seconds"])
    print(f"\nimport-from runs at {ratio:.2f}x the rate of the JSON Lines import")


if __name__ == "__main__":
    main()
