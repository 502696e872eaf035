"""The HTTP service under load: appends and history reads through the real server, against the
same server's bare endpoint (issue 24).

    .venv/bin/python -m benchmarks.service [--quick] [--client auto|wrk|httpx] [--no-postgres]

The server is ``benchmarks.service_app`` (the product's app from ``create_app``, served with
``aisopod-session serve``'s uvicorn options, plus the benchmark-only ``POST /bench/bare``) as a
child process on a free loopback port, with one worker and with several (``--workers``), on a
fresh SQLite file and, when reachable, on a fresh PostgreSQL schema (dropped afterwards);
durability ``full``, the default. Agent tokens are configured, so every store request is
authenticated.

``--clients`` (32) keep-alive connections send requests back to back for ``--seconds``, with
``wrk`` (when installed; ``--client auto``) or an asyncio load generator on
``httpx.AsyncClient``. The workloads:

- **bare**: ``POST /bench/bare`` with an append's body (one message): parsed with the append
  route's body model and answered back, no authentication, no store;
- **append**: the same body to ``POST …/sessions/{key}/messages`` (one message per request),
  round-robin over one session per client;
- **history**: ``GET …/sessions/{key}/messages?limit=20&tail=true``, the newest 20 of a session
  holding ``--history`` (200) messages, round-robin over one session per client.

The three take turns, ``--rounds`` times (the order rotates every round), each after a short
warm-up; the table gives each workload's median requests/s, p50 and p99 latency, and the server
processes' CPU time (user + system, every worker) per request, which other load on the machine
moves less than the rates. The ratio is the median rate over the bare endpoint's median rate in
the same server. Nothing is asserted about speed; ``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

from benchmarks import common, report
from benchmarks.feed import drop_schema, pg_version
from benchmarks.remote_transfer import free_port
from benchmarks.service_app import BARE_PATH

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
SCHEMA_PREFIX = "bench_service_"
BACKEND_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
WORKLOADS = ("bare", "append", "history")
TARGETS = {"append": 0.5, "history": 0.6}
"""Issue 24: the store workloads' rate over the bare endpoint's, 32 clients, one worker."""
READ_LIMIT = 20
START_SECONDS = 60.0
X = "\N{MULTIPLICATION SIGN}"
DASH = "\N{EN DASH}"


@dataclass
class Sizes:
    clients: int = 32
    workers: tuple[int, ...] = (1, 2)
    rounds: int = 3
    seconds: float = 5.0
    warmup: float = 1.0
    history: int = 200


QUICK = Sizes(clients=8, rounds=1, seconds=0.5, warmup=0.0, history=30)
"""Every code path once (both worker counts): a smoke run, not a measurement."""


@dataclass
class Load:
    """One load run's outcome."""

    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    first_error: str | None = None

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Cell:
    """The rounds of one workload on one server."""

    rates: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None


@dataclass
class Request:
    """What every client of a workload sends: one of ``paths`` per request, in turn."""

    method: str
    paths: list[str]
    body: bytes | None
    headers: dict[str, str]


# --- the server --------------------------------------------------------------------------------


class Server:
    """``benchmarks.service_app`` with ``workers`` processes, as a child of this one."""

    def __init__(self, folder: Path, database: dict[str, str], workers: int,
                 token: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.log_path = folder / f"server-{workers}.log"
        self.config = folder / f"service-{workers}.toml"
        lines = ["[database]"] + [f"{name} = {json.dumps(value)}"
                                  for name, value in database.items()]
        lines += ["", "[maintenance]", "interval_seconds = 0", "",
                  "[[tokens]]", f"token = {json.dumps(token)}", 'role = "agent"',
                  f"agent = {json.dumps(common.AGENT)}", ""]
        self.config.write_text("\n".join(lines), encoding="utf-8")
        self._log: TextIO | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        self._log = self.log_path.open("w", encoding="utf-8")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.service_app", "--config", str(self.config),
             "--port", str(self.port), "--workers", str(self.workers)],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode}):\n"
                                   f"{self.log()}")
            with suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not get ready:\n{self.log()}")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            common.stop(self.process, START_SECONDS)
        if self._log is not None:
            self._log.close()

    def log(self, tail: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-tail:])

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process and every descendant (the workers)."""
        assert self.process is not None
        return sum(_cpu_of(pid) for pid in _tree(self.process.pid))


def _tree(pid: int) -> list[int]:
    pids = [pid]
    with suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as children:
                for child in children.read().split():
                    pids.extend(_tree(int(child)))
    return pids


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14 and 15)


# --- what the clients send ---------------------------------------------------------------------


def session_path(kind: str, client: int) -> str:
    return (f"/v1/agents/{common.AGENT}/sessions/{common.CHANNEL}/{common.ACCOUNT}/dm/"
            f"{kind}-{client}/messages")


def append_body(i: int) -> bytes:
    return json.dumps({"messages": [{"role": common.role_of(i),
                                     "content": common.text(i)}]}).encode()


def requests_of(sizes: Sizes, token: str) -> dict[str, Request]:
    auth = {"Authorization": f"Bearer {token}"}
    as_json = {"Content-Type": "application/json"}
    clients = range(sizes.clients)
    return {
        "bare": Request("POST", [BARE_PATH], append_body(1), as_json),
        "append": Request("POST", [session_path("append", c) for c in clients], append_body(1),
                          {**auth, **as_json}),
        "history": Request("GET", [session_path("read", c) + f"?limit={READ_LIMIT}&tail=true"
                                   for c in clients], None, auth),
    }


def prepare(server: Server, sizes: Sizes, token: str) -> None:
    """One session per client for the appends, one of ``sizes.history`` messages per client
    for the reads (appended in one request each); every request checked."""
    auth = {"Authorization": f"Bearer {token}"}
    history = [json.loads(append_body(i))["messages"][0] for i in range(sizes.history)]
    with httpx.Client(base_url=server.url, headers=auth, timeout=60) as client:
        for c in range(sizes.clients):
            for kind in ("append", "read"):
                path = session_path(kind, c).removesuffix("/messages")
                client.put(path).raise_for_status()
            client.post(session_path("read", c), json={"messages": history}).raise_for_status()
        sample = client.get(session_path("read", 0),
                            params={"limit": READ_LIMIT, "tail": "true"})
        sample.raise_for_status()
        if len(sample.json()) != min(READ_LIMIT, sizes.history):
            raise RuntimeError(f"a history read returned {len(sample.json())} messages")
        bare = client.post(BARE_PATH, content=append_body(1),
                           headers={"Content-Type": "application/json"})
        bare.raise_for_status()
        sent = json.loads(append_body(1))["messages"][0]
        answered = bare.json()["messages"][0]
        if {name: answered.get(name) for name in sent} != sent:
            raise RuntimeError(f"the bare endpoint answered {bare.text[:200]}")


# --- load generators ---------------------------------------------------------------------------


def run_wrk(url: str, request: Request, clients: int, seconds: float, folder: Path) -> Load:
    """``wrk`` with one thread and ``clients`` connections; each request takes the next path."""
    script = folder / "requests.lua"
    headers = "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}"
                        for k, v in request.headers.items())
    body = "nil" if request.body is None else json.dumps(request.body.decode())
    script.write_text(
        f"wrk.method = {json.dumps(request.method)}\n{headers}\n"
        f"local paths = {{{', '.join(json.dumps(p) for p in request.paths)}}}\n"
        f"local body = {body}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i + 1\n"
        "  return wrk.format(nil, paths[(i % #paths) + 1], nil, body)\n"
        "end\n",
        encoding="utf-8")
    result = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--latency",
         "--timeout", "30s", "-s", str(script), url],
        capture_output=True, text=True, timeout=seconds + 120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"wrk exited {result.returncode}: {result.stderr[-500:]}")
    return parse_wrk(result.stdout)


def parse_wrk(output: str) -> Load:
    """Requests, seconds, failures and p50/p99 from ``wrk --latency``'s report."""
    requests = seconds = None
    errors = 0
    first_error = None
    percentiles: dict[str, float] = {}
    for line in output.splitlines():
        words = line.split()
        if " requests in " in line:  # "  12345 requests in 5.00s, 3.21MB read"
            requests = int(words[0])
            seconds = _duration(words[3].rstrip(","))
        elif line.strip().startswith(("50%", "99%")) and len(words) == 2:
            percentiles[words[0]] = _duration(words[1]) * 1000
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            errors += int(words[-1])
            first_error = line.strip()
        elif line.strip().startswith("Socket errors:"):
            # "Socket errors: connect 0, read 0, write 0, timeout 0"
            counts = [int(w.rstrip(",")) for w in words[2:] if w.rstrip(",").isdigit()]
            if sum(counts):
                errors += sum(counts)
                first_error = first_error or line.strip()
    if requests is None or seconds is None or set(percentiles) != {"50%", "99%"}:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    return Load(requests, seconds, errors, percentiles["50%"], percentiles["99%"], first_error)


def _duration(text: str) -> float:
    """Seconds from wrk's ``850.00us``, ``1.23ms``, ``2.00s`` or ``1.5m``."""
    for unit, scale in (("us", 1e-6), ("ms", 1e-3), ("s", 1.0), ("m", 60.0)):
        if text.endswith(unit):
            return float(text.removesuffix(unit)) * scale
    raise ValueError(f"unexpected wrk duration {text!r}")


def run_httpx(url: str, request: Request, clients: int, seconds: float) -> Load:
    """``clients`` asyncio tasks on one ``httpx.AsyncClient`` (a keep-alive connection each),
    each sending requests back to back, client ``c`` on ``paths[c]``."""

    async def main() -> Load:
        samples: list[float] = []
        errors: list[str] = []
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30,
                                     headers=request.headers) as client:
            started = time.perf_counter()
            deadline = started + seconds

            async def one(c: int) -> None:
                path = request.paths[c % len(request.paths)]
                while time.perf_counter() < deadline:
                    t0 = time.perf_counter()
                    try:
                        answer = await client.request(request.method, path,
                                                      content=request.body)
                    except httpx.HTTPError as exc:
                        errors.append(f"{type(exc).__name__}: {exc}")
                        continue
                    if answer.status_code >= 300:
                        errors.append(f"{answer.status_code}: {answer.text[:200]}")
                    else:
                        samples.append(time.perf_counter() - t0)

            await asyncio.gather(*(one(c) for c in range(clients)))
            elapsed = time.perf_counter() - started
        ordered = sorted(samples)
        return Load(len(samples), elapsed, len(errors),
                    common.percentile(ordered, 0.50) * 1000,
                    common.percentile(ordered, 0.99) * 1000,
                    errors[0] if errors else None)

    return asyncio.run(main())


# --- the measurement ---------------------------------------------------------------------------


class Bench:
    def __init__(self, sizes: Sizes, client: str, pg_url: str, workdir: Path) -> None:
        self.sizes = sizes
        self.client = client
        self.pg_url = pg_url
        self.workdir = workdir

    def log(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    @contextmanager
    def database(self, backend: str, workers: int) -> Iterator[dict[str, str]]:
        if backend == "sqlite":
            yield {"url": f"sqlite:///{self.workdir / f'service-{workers}.db'}"}
            return
        schema = f"{SCHEMA_PREFIX}{uuid.uuid4().hex[:10]}"
        try:
            yield {"url": self.pg_url, "schema": schema}
        finally:
            drop_schema(self.pg_url, schema)

    def load(self, server: Server, request: Request, seconds: float) -> Load:
        if self.client == "wrk":
            return run_wrk(server.url, request, self.sizes.clients, max(1.0, seconds),
                           self.workdir)
        return run_httpx(server.url, request, self.sizes.clients, seconds)

    def server(self, backend: str, workers: int) -> dict[str, Cell]:
        token = secrets.token_urlsafe(24)
        cells = {workload: Cell() for workload in WORKLOADS}
        with self.database(backend, workers) as database, \
                Server(self.workdir, database, workers, token) as server:
            prepare(server, self.sizes, token)
            requests = requests_of(self.sizes, token)
            if self.sizes.warmup > 0:
                for workload in WORKLOADS:
                    self.load(server, requests[workload], self.sizes.warmup)
            for round_ in range(self.sizes.rounds):
                shift = round_ % len(WORKLOADS)
                for workload in WORKLOADS[shift:] + WORKLOADS[:shift]:
                    cpu = server.cpu_seconds()
                    load = self.load(server, requests[workload], self.sizes.seconds)
                    cpu = server.cpu_seconds() - cpu
                    cell = cells[workload]
                    cell.rates.append(load.rate)
                    cell.p50.append(load.p50_ms)
                    cell.p99.append(load.p99_ms)
                    cell.cpu_us.append(cpu / max(1, load.requests) * 1e6)
                    cell.errors += load.errors
                    cell.first_error = cell.first_error or load.first_error
                    self.log(f"  {backend} workers={workers} {workload}: {load.rate:,.0f}/s "
                             f"p50 {load.p50_ms:.2f} ms p99 {load.p99_ms:.2f} ms, "
                             f"{cell.cpu_us[-1]:.0f} µs CPU/request, {load.errors} errors")
        return cells


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def render(sizes: Sizes, results: dict[tuple[str, int], dict[str, Cell]],
           context: dict[str, Any]) -> str:
    quick = " (quick mode: not a measurement)" if context["quick"] else ""
    lines = [f"### Service over HTTP: {sizes.clients} concurrent clients{quick}", "",
             f"`python -m benchmarks.service`: the real server (uvicorn, `serve`'s options, "
             f"access log on, agent token) on loopback, load from {context['client']} "
             f"({sizes.clients} keep-alive connections, back to back). *bare*: the same "
             f"server's benchmark-only route parsing an append's body with the route's model "
             f"and answering it back (no auth, no store); *append*: one message per request, "
             f"one session per client; *history*: the newest {READ_LIMIT} of {sizes.history} "
             f"messages. Durability `full`. Median of {sizes.rounds} alternating rounds of "
             f"{sizes.seconds:g} s (lowest{DASH}highest in brackets); CPU is the server's "
             f"(every worker), per request. Load average before / after: "
             f"{context['load_before']} / {context['load_after']}.", "",
             "| backend | workers | workload | requests/s | p50 ms | p99 ms | "
             f"server CPU µs/request | {X} bare | target |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (backend, workers), cells in results.items():
        bare = _median(cells["bare"].rates)
        for workload in WORKLOADS:
            cell = cells[workload]
            if not cell.rates:
                continue
            rate = _median(cell.rates)
            spread = (f" ({min(cell.rates):,.0f}{DASH}{max(cell.rates):,.0f})"
                      if len(cell.rates) > 1 else "")
            ratio = target = "—"
            if workload != "bare" and bare > 0:
                ratio = f"**{rate / bare:.2f}{X}**"
                if workers == 1:
                    goal = TARGETS[workload]
                    target = f"≥ {goal:g}: {'yes' if rate / bare >= goal else '**no**'}"
            errors = f" ({cell.errors} failed: {cell.first_error})" if cell.errors else ""
            lines.append(f"| {BACKEND_NAMES[backend]} | {workers} | {workload}{errors} | "
                         f"{rate:,.0f}{spread} | {_median(cell.p50):.2f} | "
                         f"{_median(cell.p99):.2f} | {_median(cell.cpu_us):,.0f} | {ratio} | "
                         f"{target} |")
    lines.append("")
    lines += [f"_{note}_" for note in context["notes"]]
    return "\n".join(lines).rstrip() + "\n"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.service",
                                     description="Appends and history reads through the HTTP "
                                                 "service against its bare endpoint.")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, one round: a smoke run, not a measurement")
    parser.add_argument("--client", choices=("auto", "wrk", "httpx"), default="auto",
                        help="the load generator (auto: wrk when installed, else httpx)")
    parser.add_argument("--pg-url", default=os.environ.get("AISOPOD_BENCH_PG_URL",
                                                           DEFAULT_PG_URL))
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--clients", type=int)
    parser.add_argument("--workers", type=lambda s: tuple(int(x) for x in s.split(",")),
                        help="comma-separated worker counts (default 1,2)")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=float, help="seconds of one measured load")
    parser.add_argument("--history", type=int, help="messages in each session read")
    parser.add_argument("--output", type=Path, default=None,
                        help="also put the table into this file (docs/performance.md): in "
                             "place of its previous service table, else before its settings")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    sizes = Sizes(**vars(QUICK)) if args.quick else Sizes()
    for name in ("clients", "workers", "rounds", "seconds", "history"):
        if getattr(args, name) is not None:
            setattr(sizes, name, getattr(args, name))
    notes: list[str] = []
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "httpx"
    if client == "wrk" and shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk), or pass --client httpx",
              file=sys.stderr)
        return 2
    if client == "wrk":
        sizes.seconds = max(1.0, round(sizes.seconds))  # wrk runs whole seconds
    backends = ["sqlite"]
    version = None if args.no_postgres else pg_version(args.pg_url)
    if version:
        backends.append("postgres")
    elif not args.no_postgres:
        notes.append(f"PostgreSQL at {args.pg_url} is not reachable: left out.")
    load_before = common.loadavg()
    started = time.perf_counter()
    results: dict[tuple[str, int], dict[str, Cell]] = {}
    failed = False
    with tempfile.TemporaryDirectory(prefix="aisopod-service-") as tmp:
        bench = Bench(sizes, client, args.pg_url, Path(tmp))
        for backend in backends:
            for workers in sizes.workers:
                bench.log(f"{backend}, {workers} worker(s)")
                try:
                    results[backend, workers] = bench.server(backend, workers)
                except (RuntimeError, OSError, httpx.HTTPError) as exc:
                    failed = True
                    notes.append(f"{BACKEND_NAMES[backend]}, {workers} worker(s) failed: "
                                 f"{str(exc).strip().splitlines()[0][:300]}")
    failed = failed or any(cell.errors for cells in results.values() for cell in cells.values())
    context = {"quick": args.quick, "client": _client_name(client),
               "load_before": load_before, "load_after": common.loadavg(), "notes": notes}
    notes.append(f"Machine: {common.machine()}; Python {platform.python_version()}; PostgreSQL "
                 f"{version or 'not measured'}; {time.perf_counter() - started:.0f} s in all.")
    table = render(sizes, results, context)
    print(table)
    if args.output is not None:
        args.output.write_text(with_table(args.output.read_text(encoding="utf-8"), table),
                               encoding="utf-8")
        print(f"written to {args.output}", file=sys.stderr)
    return 1 if failed else 0


TITLE = "### Service over HTTP"


RESULTS = "## Results"


def with_table(document: str, table: str) -> str:
    """``document`` with ``table`` in place of its service table (see
    :func:`benchmarks.report.with_section`), or else at the end of its results, where
    ``python -m benchmarks`` puts it (not after a later section such as ``## Search``)."""
    if report.section(document, TITLE) is not None or RESULTS not in document:
        return report.with_section(document, TITLE, table)
    results = report.section(document, RESULTS) or ""
    at = document.index(RESULTS) + len(results.rstrip("\n"))
    head, tail = document[:at].rstrip("\n"), document[at:].lstrip("\n")
    return head + "\n\n" + table.rstrip("\n") + "\n" + ("\n" + tail if tail else "")


def _client_name(client: str) -> str:
    if client == "wrk":
        return "`wrk` (one thread)"
    # Python on the same 2 CPUs is slower than the server it loads: every route then looks
    # about as fast as the bare one, so the ratios say nothing about the server.
    return ("an asyncio load generator (`httpx.AsyncClient`; `wrk` was not installed: the "
            "generator, not the server, bounds every row, so the ratios to *bare* are not the "
            "server's; `apt-get install wrk`)")


if __name__ == "__main__":
    sys.exit(main())
