"""The benchmark driver: ``python -m benchmarks [--quick] [...]`` (``./scripts/bench`` sets up
the benchmark environment and runs this).

One parent process runs every step in a child process of its own (``benchmarks.child``): a setup
step builds a database, a measured step runs one workload of one system on it and reports its
numbers; the parent reaps it with ``os.wait4`` to read its peak RSS. The steps of one workload
run back to back, so that the ratios compare numbers taken close together on this noisy machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import common, report, search
from benchmarks.report import NAMES, W3_LEAN

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
PEERS = {"openai": "agents", "adk": "google.adk", "langchain": "langchain_community",
         "langgraph": "langgraph.checkpoint.sqlite"}
"""Each framework's built-in store, and the package it needs."""
BACKED = {"openai": "openai-aisopod", "adk": "adk-aisopod", "langchain": "langchain-aisopod",
          "langgraph": "langgraph-aisopod"}
"""Each framework's aisopod-backed integration, driven through the framework's own interface."""
BACKED_PACKAGES = {"openai-aisopod": "agents", "adk-aisopod": "google.adk",
                   "langchain-aisopod": "langchain_core", "langgraph-aisopod": "langgraph"}
GRAPH_FRAMEWORKS = ("langgraph",)
"""Frameworks measured on W8 (turns of a graph) instead of the session workloads."""
SYSTEMS = ("aisopod", "raw", *PEERS, *BACKED.values())
GROUPS = {"frameworks": (*PEERS, *BACKED.values())}
"""Names ``--systems`` expands: ``frameworks`` = each built-in store and its aisopod-backed one."""
WORKLOADS = ("w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8")
STEP_TIMEOUT = 900.0


@dataclass
class Sizes:
    appends: int = 2_000
    w2_sessions: int = 500
    w2_per_session: int = 4
    w3_sizes: list[int] = field(default_factory=lambda: [100, 10_000, 100_000])
    w3_reads: int = 500
    w3_memory_size: int = 1_000_000
    w4_sessions: int = 5_000
    w4_lookups: int = 2_000
    w5_sessions: int = 1_000_000
    w5_repeats: int = 200
    writers: int = 64
    per_writer: int = 32
    budget: float = 20.0
    """Seconds one measured loop may run before it stops early (slow peers)."""
    durabilities: tuple[str, ...] = ("full", "normal")


QUICK = Sizes(appends=50, w2_sessions=10, w2_per_session=4, w3_sizes=[100],
              w3_reads=30, w3_memory_size=2_000, w4_sessions=200, w4_lookups=50,
              w5_sessions=5_000, w5_repeats=10, writers=8, per_writer=4, budget=2.0,
              durabilities=("full",))
"""Every code path once, as few processes as possible: a smoke run, not a measurement."""


@dataclass
class Measurement:
    workload: str
    label: str
    system: str
    variant: str
    result: dict[str, Any] | None
    rss_mb: float
    error: str | None = None


class StepFailedError(Exception):
    pass


class Runner:
    def __init__(self, workdir: Path, python: str) -> None:
        self.workdir = workdir
        self.python = python
        self.templates: dict[str, Path] = {}
        self.measurements: list[Measurement] = []
        self.versions: dict[str, str] = {}
        self.settings: dict[str, dict[str, Any]] = {}
        self._counter = 0

    def step(self, module: str, func: str, **kwargs: Any) -> tuple[dict[str, Any], float]:
        """Run one function in a child process; its result and the child's peak RSS (MB)."""
        spec = json.dumps({"module": module, "func": func, "kwargs": kwargs})
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen([self.python, "-m", "benchmarks.child", spec], cwd=ROOT,
                                    stdout=out, stderr=err, stdin=subprocess.DEVNULL)
            timer = threading.Timer(STEP_TIMEOUT, proc.kill)
            timer.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            finally:
                timer.cancel()
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode(errors="replace")
            stderr = err.read().decode(errors="replace")
        lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            tail = "\n".join(stderr.strip().splitlines()[-6:])
            raise StepFailedError(f"{module}.{func} exited {proc.returncode}: {tail}")
        result = json.loads(lines[-1].removeprefix("RESULT "))
        self.versions.update(result.pop("versions", {}))
        return result, usage.ru_maxrss / 1024  # Linux reports kilobytes

    def template(self, module: str, func: str, **kwargs: Any) -> Path:
        """A database built once by a setup step (cached for the run)."""
        name = f"{module}.{func}." + ".".join(f"{k}={v}" for k, v in sorted(kwargs.items()))
        if name not in self.templates:
            self._counter += 1
            path = self.workdir / f"template-{self._counter}.db"
            started = time.perf_counter()
            self.step(module, func, path=str(path), **kwargs)
            self.log(f"  setup {module}.{func} {kwargs} in {time.perf_counter() - started:.1f} s")
            self.templates[name] = path
        return self.templates[name]

    def fresh(self, template: Path | None = None) -> str:
        """A new database file: a copy of ``template``, or an empty path."""
        self._counter += 1
        path = self.workdir / f"run-{self._counter}.db"
        if template is not None:
            shutil.copyfile(template, path)
        return str(path)

    def measure(self, workload: str, label: str, system: str, tag: str, module: str,
                func: str, **kwargs: Any) -> Measurement:
        started = time.perf_counter()
        try:
            result, rss = self.step(module, func, **kwargs)
            entry = Measurement(workload, label, system, tag, result, rss)
            if "settings" in result:
                backend = result["settings"].get("backend", "")
                self.settings.setdefault(f"{NAMES[system]}, {backend}, {tag}",
                                         result["settings"])
            summary = report.short(result)
        except StepFailedError as exc:
            entry = Measurement(workload, label, system, tag, None, 0.0, str(exc))
            summary = f"FAILED: {exc}"
        self.measurements.append(entry)
        self.log(f"{label:<34} {system:<17} {tag:<8} {summary} "
                 f"({time.perf_counter() - started:.1f} s)")
        return entry

    def log(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def cleanup_file(self, path: str) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(path + suffix).unlink(missing_ok=True)


class Plan:
    """The steps of one run, workload by workload."""

    def __init__(self, runner: Runner, sizes: Sizes, systems: list[str],
                 pg_url: str | None) -> None:
        self.runner = runner
        self.sizes = sizes
        self.systems = systems
        self.peers = [s for s in systems if s in PEERS]
        chosen = [f for f in PEERS if f in systems or BACKED[f] in systems]
        self.frameworks = [f for f in chosen if f not in GRAPH_FRAMEWORKS]
        self.graph_frameworks = [f for f in chosen if f in GRAPH_FRAMEWORKS]
        self.ours = "aisopod" in systems
        self.raw = "raw" in systems
        self.pg_url = pg_url
        self.w6_label = f"W6 {sizes.writers} async writers"

    def run(self, workloads: list[str]) -> None:
        for workload in ("w1", "w2"):
            if workload in workloads:
                self.appends(workload)
        if "w3" in workloads:
            self.history()
        if "w4" in workloads:
            self.lookups()
        if "w5" in workloads:
            self.listing()
        if "w6" in workloads:
            self.concurrent()
        if "w7" in workloads and self.pg_url and (self.ours or self.raw):
            self.postgres(self.pg_url)
        if "w8" in workloads:
            self.graph_turns()

    def graph_turns(self) -> None:
        """W8: turns of one graph (a message in, a reply out), threads of 10 turns, under each
        graph framework's own checkpointer and under aisopod's, back to back."""
        count = max(10, self.sizes.appends // 4)
        label = f"W8 {count} graph turns, threads of 10"
        for framework in self.graph_frameworks:
            for system, tag, module in self.framework_systems(framework):
                self.write("w8", label, system, tag, module, "w8", None, turns_count=count,
                           budget=self.sizes.budget)

    def write(self, workload: str, label: str, system: str, tag: str, module: str,
              func: str, template: Path | None, **kwargs: Any) -> None:
        """A measured write step on a fresh copy of ``template``."""
        path = self.runner.fresh(template)
        self.runner.measure(workload, label, system, tag, module, func, path=path, **kwargs)
        self.runner.cleanup_file(path)

    def appends(self, workload: str) -> None:
        sizes = self.sizes
        if workload == "w1":
            count, label = 1, f"W1 {sizes.appends} appends, 1 session"
            extra: dict[str, Any] = {"appends": sizes.appends, "budget": sizes.budget}
        else:
            count = sizes.w2_sessions
            label = f"W2 {count} sessions x {sizes.w2_per_session} appends"
            extra = {"sessions": count, "per_session": sizes.w2_per_session,
                     "budget": sizes.budget}
        if self.ours or self.raw:
            base = self.runner.template("sys_aisopod", "prepare_sessions", sessions=count)
            for durability in sizes.durabilities:
                if self.ours:
                    self.write(workload, label, "aisopod", durability, "sys_aisopod", workload,
                               base, durability=durability, **extra)
                if self.raw:
                    for variant in ("insert", "same"):
                        self.write(workload, label, "raw", f"{durability}/{variant}",
                                   "sys_raw", workload, base, durability=durability,
                                   variant=variant, **extra)
        for framework in self.frameworks:
            for system, tag, module in self.framework_systems(framework):
                template = None
                if framework == "adk":
                    template = self.runner.template(module, "prepare_sessions", sessions=count)
                self.write(workload, label, system, tag, module, workload, template, **extra)

    def framework_systems(self, framework: str) -> list[tuple[str, str, str]]:
        """(system, variant, module) of a framework's selected systems: its built-in store (its
        defaults), then its aisopod-backed integration (durability full), back to back."""
        found = []
        if framework in self.systems:
            found.append((framework, "default", f"sys_{framework}"))
        backed = BACKED[framework]
        if backed in self.systems:
            found.append((backed, "full", "sys_" + backed.replace("-", "_")))
        return found

    def history(self) -> None:
        sizes = self.sizes
        extra = {"reads": sizes.w3_reads, "budget": sizes.budget}
        memory_size = [sizes.w3_memory_size] if self.ours or self.raw else []
        for size in sizes.w3_sizes + memory_size:
            label = f"W3 newest 20 of {size:,}"
            if self.ours or self.raw:
                path = str(self.runner.template("sys_aisopod", "prepare_history",
                                                messages=size))
                for system in ("aisopod", "raw"):
                    if system in self.systems:
                        self.runner.measure("w3", label, system, "", f"sys_{system}", "w3",
                                            path=path, **extra)
                # the lean path (get_contents) and its raw baseline, on the same file
                for system in ("aisopod", "raw"):
                    if system in self.systems:
                        self.runner.measure("w3", f"{W3_LEAN} {size:,}", system, "",
                                            f"sys_{system}", "w3_lean", path=path, **extra)
            if size not in sizes.w3_sizes:
                continue  # the memory run: aisopod and raw only
            for framework in self.frameworks:
                for system, tag, module in self.framework_systems(framework):
                    path = str(self.runner.template(module, "prepare_history", messages=size))
                    self.runner.measure("w3", label, system, tag, module, "w3", path=path,
                                        **extra)

    def lookups(self) -> None:
        sizes = self.sizes
        label = f"W4 get among {sizes.w4_sessions:,}"
        extra = {"lookups": sizes.w4_lookups, "sessions": sizes.w4_sessions,
                 "budget": sizes.budget}
        if self.ours or self.raw:
            path = str(self.runner.template("sys_aisopod", "prepare_many_sessions",
                                            sessions=sizes.w4_sessions, mixed=False))
            for system in ("aisopod", "raw"):
                if system in self.systems:
                    self.runner.measure("w4", label, system, "", f"sys_{system}", "w4",
                                        path=path, **extra)
        if "adk" in self.peers:
            path = str(self.runner.template("sys_adk", "prepare_sessions",
                                            sessions=sizes.w4_sessions))
            self.runner.measure("w4", label, "adk", "default", "sys_adk", "w4", path=path,
                                **extra)

    def listing(self) -> None:
        sizes = self.sizes
        label = f"W5 first page of {sizes.w5_sessions:,}"
        if self.ours or self.raw:
            path = str(self.runner.template("sys_aisopod", "prepare_many_sessions",
                                            sessions=sizes.w5_sessions, mixed=True))
            for system in ("aisopod", "raw"):
                if system in self.systems:
                    self.runner.measure("w5", label, system, "", f"sys_{system}", "w5",
                                        path=path, repeats=sizes.w5_repeats,
                                        budget=sizes.budget)
        if "adk" in self.peers:
            # ADK has no filter and no pages: its whole list of the W4 sessions, for scale.
            path = str(self.runner.template("sys_adk", "prepare_sessions",
                                            sessions=sizes.w4_sessions))
            self.runner.measure("w5", f"W5' ADK list_sessions, all {sizes.w4_sessions:,}",
                                "adk", "default", "sys_adk", "list_all", path=path,
                                repeats=max(3, sizes.w5_repeats // 20), budget=sizes.budget)

    def concurrent(self) -> None:
        sizes = self.sizes
        extra = {"writers": sizes.writers, "per_writer": sizes.per_writer,
                 "budget": sizes.budget}
        if self.ours:
            base = self.runner.template("sys_aisopod", "prepare_sessions",
                                        sessions=sizes.writers)
            for durability in sizes.durabilities:
                self.write("w6", self.w6_label, "aisopod", durability, "sys_aisopod", "w6",
                           base, durability=durability, **extra)
        for framework in self.frameworks:
            for system, tag, module in self.framework_systems(framework):
                template = None
                if framework == "adk":
                    template = self.runner.template(module, "prepare_sessions",
                                                    sessions=sizes.writers)
                self.write("w6", self.w6_label, system, tag, module, "w6", template, **extra)

    def postgres(self, url: str) -> None:
        """W7: one fresh schema per measured step, all made by one setup step."""
        sizes = self.sizes
        prefix = f"bench_{os.getpid()}"
        schemas: dict[str, int] = {}
        steps: list[tuple[str, str, str, str, str, dict[str, Any]]] = []
        jobs = (
            (f"W7 PG W1 {sizes.appends} appends", 1, "w1", "pg_w1",
             {"appends": sizes.appends}),
            (f"W7 PG {self.w6_label}", sizes.writers, "w6", "pg_w6",
             {"writers": sizes.writers, "per_writer": sizes.per_writer}),
        )
        for label, sessions, ours, raw, extra in jobs:
            for durability in sizes.durabilities:
                for system, func in (("aisopod", ours), ("raw", raw)):
                    if system in self.systems:
                        name = f"{prefix}_{len(schemas)}"
                        schemas[name] = sessions
                        steps.append((label, system, durability, f"sys_{system}", func,
                                      {**extra, "schema": name}))
        try:
            self.runner.step("sys_aisopod", "prepare_pg_schemas", url=url, schemas=schemas)
            for label, system, durability, module, func, kwargs in steps:
                self.runner.measure("w7", label, system, durability, module, func, path=url,
                                    durability=durability, budget=sizes.budget, **kwargs)
        finally:
            self.runner.step("sys_aisopod", "drop_pg_schemas", url=url, schemas=list(schemas))


def pg_reachable(url: str) -> str | None:
    """The server's version if ``url`` answers, else None."""
    try:
        import psycopg
    except ImportError:
        return None
    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            fsync = conn.execute("SHOW fsync").fetchone()
            method = conn.execute("SHOW wal_sync_method").fetchone()
            return (f"PostgreSQL {row[0] if row else '?'} (fsync={fsync[0] if fsync else '?'}, "
                    f"wal_sync_method={method[0] if method else '?'})")
    except Exception:
        return None


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="aisopod-session against raw drivers and peer libraries, in one run.")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes for a CI smoke run (asserts nothing about speed)")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated subset of {','.join(SYSTEMS)}, or "
                             "'frameworks' (each framework's built-in store and its "
                             "aisopod-backed one); systems whose framework is not installed "
                             "are left out with a note")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help=f"comma-separated subset of {','.join(WORKLOADS)}")
    parser.add_argument("--pg-url", default=os.environ.get("AISOPOD_BENCH_PG_URL",
                                                           DEFAULT_PG_URL))
    parser.add_argument("--no-postgres", action="store_true",
                        help="skip W7 and the service benchmark's PostgreSQL rows")
    parser.add_argument("--no-service", action="store_true",
                        help="skip the HTTP service benchmark (benchmarks.service)")
    parser.add_argument("--no-search", action="store_true",
                        help="skip the search benchmark (benchmarks.search); the output keeps "
                             "the '## Search' section of its earlier run")
    parser.add_argument("--no-capabilities", action="store_true",
                        help="skip the capabilities step (benchmarks.runs, benchmarks.feed's "
                             "W6-load watch rows, benchmarks.import_from); the output keeps the "
                             "'## Capabilities' section of its earlier run")
    parser.add_argument("--search-messages", type=int, default=1_000_000,
                        help="corpus of the search benchmark (issue 20's acceptance: 1,000,000)")
    parser.add_argument("--output", default=None,
                        help="markdown file to write (default docs/performance.md, none with "
                             "--quick; '-' for none)")
    parser.add_argument("--workdir", default=None, help="where the databases go (a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument("--appends", type=int)
    parser.add_argument("--w3-sizes", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--w3-reads", type=int)
    parser.add_argument("--w3-memory-size", type=int)
    parser.add_argument("--w5-sessions", type=int)
    parser.add_argument("--writers", type=int)
    parser.add_argument("--budget", type=float, help="seconds one measured loop may run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    sizes = Sizes(**vars(QUICK)) if args.quick else Sizes()
    for name in ("appends", "w3_sizes", "w3_reads", "w3_memory_size", "w5_sessions", "writers",
                 "budget"):
        value = getattr(args, name)
        if value is not None:
            setattr(sizes, name, value)
    systems: list[str] = []
    for name in (s.strip() for s in args.systems.split(",") if s.strip()):
        for system in GROUPS.get(name, (name,)):
            if system not in systems:
                systems.append(system)
    workloads = [w.strip().lower() for w in args.workloads.split(",") if w.strip()]
    unknown = [s for s in systems if s not in SYSTEMS] + [w for w in workloads
                                                          if w not in WORKLOADS]
    if unknown:
        print(f"unknown systems or workloads: {unknown}", file=sys.stderr)
        return 2
    notes: list[str] = []
    for system, package in {**PEERS, **BACKED_PACKAGES}.items():
        if system in systems and importlib.util.find_spec(package.split(".")[0]) is None:
            systems.remove(system)
            notes.append(f"{report.NAMES[system]} is not installed here: left out "
                         "(./scripts/bench installs the frameworks).")
    pg_version = None
    pg_url: str | None = None
    if "w7" in workloads and not args.no_postgres:
        pg_version = pg_reachable(args.pg_url)
        if pg_version:
            pg_url = args.pg_url
        else:
            notes.append(f"PostgreSQL at {args.pg_url} is not reachable: W7 left out.")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="aisopod-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    runner = Runner(workdir, sys.executable)
    started = time.perf_counter()
    try:
        Plan(runner, sizes, systems, pg_url).run(workloads)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    service_table, service_ok = (None, True) if args.no_service else run_service(args, notes)
    context = report.Context(
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command=" ".join(["./scripts/bench", *(argv if argv is not None else sys.argv[1:])]),
        quick=args.quick, machine=common.machine(), python=platform.python_version(),
        postgres=pg_version, sizes=vars(sizes), versions=runner.versions,
        settings=runner.settings, notes=notes, seconds=time.perf_counter() - started,
        service=service_table)
    text = report.render(runner.measurements, context)
    searched, capabilities, capabilities_ok = own_sections(args, notes)
    if service_table:
        text = text.rstrip("\n") + "\n\n" + service_table.rstrip("\n") + "\n\n"
    print(text)
    output = args.output
    if output is None and not args.quick:
        output = str(ROOT / "docs" / "performance.md")
    if output and output != "-":
        write_document(Path(output), report.document(text, context), searched, capabilities)
    failed = [m for m in runner.measurements if m.error]
    return 1 if failed or not service_ok or not capabilities_ok else 0


def own_sections(args: argparse.Namespace,
                 notes: list[str]) -> tuple[str | None, str | None, bool]:
    """The sections of the benchmarks run on their own, None for one skipped or failed: search,
    capabilities; and whether the capabilities step succeeded."""
    searched = None
    if not args.no_search:
        pg = None if args.no_postgres or not pg_reachable(args.pg_url) else args.pg_url
        searched = search.run_for_report(pg, args.quick, args.search_messages, notes)
    capabilities, ok = (None, True) if args.no_capabilities else run_capabilities(args, notes)
    return searched, capabilities, ok


def write_document(output: Path, document: str, searched: str | None,
                   capabilities: str | None = None) -> None:
    """Write ``document`` with the search benchmark's section and the capabilities section:
    this run's, or else the ones ``output`` had (a run with --no-search or --no-capabilities
    keeps them)."""
    earlier = output.read_text() if output.exists() else ""
    for heading, ours in ((search.SECTION, searched), (CAPABILITIES, capabilities)):
        section = ours or report.section(earlier, heading)
        if section:
            document = report.with_section(document, heading, section)
    output.write_text(document)
    print(f"written to {output}", file=sys.stderr)


CAPABILITIES = "## Capabilities"
CAPABILITY_IMPORT_MESSAGES = 50_000
"""The import benchmark's corpus in a full run (about 20 s here; its own default is 100,000)."""


def run_capabilities(args: argparse.Namespace, notes: list[str]) -> tuple[str | None, bool]:
    """The costs of issue 24's capabilities, each benchmark in a process of its own (stdout its
    markdown, progress on stderr), the way :func:`run_service` runs the service's: runs
    (start+finish/s, hand-over latency), the change feed's lag under a W6 load (commit ->
    watcher, p50/p99) and the import rate. Their ``## Capabilities`` section (None if no table
    came out) and whether each succeeded. Search latency on 1,000,000 messages is the
    ``## Search`` section's."""
    pg = not args.no_postgres and pg_reachable(args.pg_url) is not None
    quick = ["--quick"] if args.quick else []
    no_pg = [] if pg else ["--no-postgres"]
    steps: list[tuple[str, list[str]]] = [
        ("runs", ["benchmarks.runs", "--markdown", *quick, *no_pg]),
        ("feed", ["benchmarks.feed", "--only", "watch", "--watch-rows", "load", "--pg-url",
                  args.pg_url, *quick, *no_pg]),
    ]
    if importlib.util.find_spec("agents") is None:
        notes.append("The import benchmark needs the OpenAI Agents SDK (not installed here): "
                     "left out.")
    else:
        sizes = [] if args.quick else ["--messages", str(CAPABILITY_IMPORT_MESSAGES)]
        steps.append(("import_from", ["benchmarks.import_from", "--markdown", *quick, *sizes]))
    env = {**os.environ, "AISOPOD_BENCH_PG_URL": args.pg_url}  # benchmarks.runs' server
    tables: list[str] = []
    ok = True
    for name, command in steps:
        print(f"capabilities: {' '.join(command)}", file=sys.stderr, flush=True)
        try:
            done = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, env=env,
                                  stdout=subprocess.PIPE, text=True, timeout=STEP_TIMEOUT,
                                  check=False)
        except subprocess.TimeoutExpired:
            notes.append(f"The capabilities step benchmarks.{name} did not finish in "
                         f"{STEP_TIMEOUT:.0f} s.")
            ok = False
            continue
        table = done.stdout.strip()
        if not table.startswith("#"):
            notes.append(f"The capabilities step benchmarks.{name} exited {done.returncode} "
                         "without its table.")
            ok = False
            continue
        if done.returncode != 0:
            notes.append(f"The capabilities step benchmarks.{name} exited {done.returncode}.")
            ok = False
        # under ## Capabilities: each benchmark's first heading a ### (the rest alike moved)
        shift = "#" * max(0, 3 - (len(table) - len(table.lstrip("#"))))
        tables.append("\n".join(shift + line if line.startswith("#") else line
                                for line in table.splitlines()))
    if not tables:
        return None, False
    mode = ", quick mode" if args.quick else ""
    head = [f"{CAPABILITIES} (runs, change feed under W6, import{mode})", "",
            f"Written by `./scripts/bench`'s capabilities step "
            f"({datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; skip it with "
            "`--no-capabilities`): `python -m benchmarks.runs --markdown`, "
            "`python -m benchmarks.feed --only watch --watch-rows load` and "
            "`python -m benchmarks.import_from --markdown`, each run on its own. Search latency "
            "on 1,000,000 messages is in the Search section.", ""]
    failed = [n for n in notes if n.startswith("The capabilities step")]
    return "\n".join([*head, "\n\n".join(tables), *(f"\n_{n}_" for n in failed)]) + "\n", ok


def run_service(args: argparse.Namespace, notes: list[str]) -> tuple[str | None, bool]:
    """``benchmarks.service`` in a process of its own (its progress goes to stderr): its table
    (None if it printed none) and whether every request of it succeeded."""
    command = [sys.executable, "-m", "benchmarks.service", "--pg-url", args.pg_url]
    command += ["--quick"] if args.quick else []
    command += ["--no-postgres"] if args.no_postgres else []
    print("service over HTTP (benchmarks.service)", file=sys.stderr, flush=True)
    try:
        done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              timeout=STEP_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        notes.append(f"The service benchmark did not finish in {STEP_TIMEOUT:.0f} s.")
        return None, False
    table = done.stdout.strip()
    if not table.startswith("### "):
        notes.append(f"The service benchmark exited {done.returncode} without its table.")
        return None, False
    return table, done.returncode == 0
