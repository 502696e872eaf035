"""Where aisopod-session's time goes on the W1 (append) and W3 (newest 20) paths.

    .venv-bench/bin/python -m benchmarks.profiling [--appends 2000] [--reads 2000] [--top 25]

Runs both in this process under cProfile, on a fresh SQLite file with ``durability="normal"``
(so that fsync does not hide the Python work), and prints the functions with the most time of
their own and the most cumulative time. For a sampling view of the same loops use py-spy (in the
benchmark environment): ``py-spy record -o w1.svg -- .venv-bench/bin/python -m
benchmarks.profiling --only w1``.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
from pathlib import Path

from aisopod_session import HistoryQuery, SessionStore
from benchmarks import sys_aisopod


def profile_w1(path: Path, appends: int, top: int) -> None:
    sys_aisopod.prepare_sessions(str(path), 1)
    with SessionStore.open(f"sqlite:///{path}", durability="normal") as store:
        agent = store.for_agent("bench")
        key = sys_aisopod.key(0)
        profiler = cProfile.Profile()
        profiler.enable()
        for i in range(appends):
            agent.append_messages(key, [sys_aisopod.message(i)])
        profiler.disable()
    _print(f"W1: {appends} appends (durability=normal)", profiler, top)


def profile_w3(path: Path, reads: int, top: int) -> None:
    sys_aisopod.prepare_history(str(path), 10_000)
    with SessionStore.open(f"sqlite:///{path}") as store:
        agent = store.for_agent("bench")
        key = sys_aisopod.key(0)
        query = HistoryQuery(limit=20, tail=True)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(reads):
            agent.get_history(key, query)
        profiler.disable()
    _print(f"W3: {reads} reads of the newest 20 of 10,000", profiler, top)


def _print(title: str, profiler: cProfile.Profile, top: int) -> None:
    print(f"\n===== {title} =====")
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profiling")
    parser.add_argument("--appends", type=int, default=2_000)
    parser.add_argument("--reads", type=int, default=2_000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--only", choices=["w1", "w3"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aisopod-profile-") as tmp:
        if args.only in (None, "w1"):
            profile_w1(Path(tmp) / "w1.db", args.appends, args.top)
        if args.only in (None, "w3"):
            profile_w3(Path(tmp) / "w3.db", args.reads, args.top)


if __name__ == "__main__":
    main()
