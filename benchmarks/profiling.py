"""Where aisopod-session's time goes on the W1 (append), W3 (newest 20) and W4 (get) paths.

    .venv-bench/bin/python -m benchmarks.profiling [--only w1|w3|w4] [--appends 2000]
        [--reads 2000] [--top 25] [--durability normal|full] [--pyinstrument]

Runs them in this process under cProfile, on a fresh SQLite file, and prints the functions with
the most time of their own and the most cumulative time. W1 runs with ``durability="normal"`` by
default (so that fsync does not hide the Python work). ``--pyinstrument`` samples instead (less
distortion of many small calls; ``pip install pyinstrument`` into .venv-bench, never into the
package's dependencies) and prints the call tree. For a flame graph use py-spy (in the benchmark
environment): ``py-spy record -o w1.svg -- .venv-bench/bin/python -m benchmarks.profiling --only
w1``.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aisopod_session import HistoryQuery, SessionStore
from benchmarks import sys_aisopod


def _profiled(title: str, loop: Callable[[], None], top: int, sampling: bool) -> None:
    if sampling:
        from pyinstrument import Profiler  # optional: only the benchmark environment has it

        sampler = Profiler(interval=0.0002)
        sampler.start()
        loop()
        sampler.stop()
        print(f"\n===== {title} =====")
        print(sampler.output_text(unicode=True, show_all=False))
        return
    profiler = cProfile.Profile()
    profiler.enable()
    loop()
    profiler.disable()
    _print(title, profiler, top)


def profile_w1(path: Path, appends: int, top: int, durability: Any = "normal",
               sampling: bool = False) -> None:
    sys_aisopod.prepare_sessions(str(path), 1)
    with SessionStore.open(f"sqlite:///{path}", durability=durability) as store:
        agent = store.for_agent("bench")
        key = sys_aisopod.key(0)

        def loop() -> None:
            for i in range(appends):
                agent.append_messages(key, [sys_aisopod.message(i)])

        _profiled(f"W1: {appends} appends (durability={durability})", loop, top, sampling)


def profile_w3(path: Path, reads: int, top: int, sampling: bool = False) -> None:
    sys_aisopod.prepare_history(str(path), 10_000)
    with SessionStore.open(f"sqlite:///{path}") as store:
        agent = store.for_agent("bench")
        key = sys_aisopod.key(0)
        query = HistoryQuery(limit=20, tail=True)

        def loop() -> None:
            for _ in range(reads):
                agent.get_history(key, query)

        _profiled(f"W3: {reads} reads of the newest 20 of 10,000", loop, top, sampling)


def profile_w4(path: Path, reads: int, top: int, sampling: bool = False) -> None:
    sessions = 5_000
    sys_aisopod.prepare_many_sessions(str(path), sessions, mixed=False)
    with SessionStore.open(f"sqlite:///{path}") as store:
        agent = store.for_agent("bench")
        # As in the benchmark: keys built (and validated) up front, each looked up once.
        keys = [sys_aisopod.key(sys_aisopod.lookup_index(i, sessions)) for i in range(reads)]

        def loop() -> None:
            for key in keys:
                agent.get(key)

        _profiled(f"W4: {reads} gets among {sessions:,} sessions", loop, top, sampling)


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
    parser.add_argument("--only", choices=["w1", "w3", "w4"])
    parser.add_argument("--durability", choices=["normal", "full"], default="normal",
                        help="W1's durability (normal: fsync does not hide the Python work)")
    parser.add_argument("--pyinstrument", action="store_true",
                        help="sample with pyinstrument and print the call tree")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aisopod-profile-") as tmp:
        if args.only in (None, "w1"):
            profile_w1(Path(tmp) / "w1.db", args.appends, args.top, args.durability,
                       args.pyinstrument)
        if args.only in (None, "w3"):
            profile_w3(Path(tmp) / "w3.db", args.reads, args.top, args.pyinstrument)
        if args.only in (None, "w4"):
            profile_w4(Path(tmp) / "w4.db", args.reads, args.top, args.pyinstrument)


if __name__ == "__main__":
    main()
