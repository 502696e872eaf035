"""Tables of one run: throughputs and the ratios between systems measured in that run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks.run import Measurement

NAMES = {
    "aisopod": "aisopod-session",
    "raw": "raw driver",
    "openai": "OpenAI Agents SDK SQLiteSession",
    "adk": "Google ADK DatabaseSessionService",
    "langchain": "LangChain SQLChatMessageHistory",
    "openai-aisopod": "OpenAI Agents SDK AisopodSession",
    "adk-aisopod": "Google ADK AisopodSessionService",
    "langchain-aisopod": "LangChain AisopodChatMessageHistory",
    "langgraph": "LangGraph SqliteSaver",
    "langgraph-aisopod": "LangGraph AisopodSaver",
}
SHORT = {"openai": "Agents SDK", "adk": "ADK", "langchain": "LangChain", "langgraph": "LangGraph"}
PEERS = ("openai", "adk", "langchain")
"""The peers of the session workloads' tables."""
FRAMEWORKS = (*PEERS, "langgraph")
"""The frameworks table's: LangGraph's checkpointers are measured on W8 (graph turns) only."""
BUILT_IN = {"openai": "SQLiteSession", "adk": "DatabaseSessionService",
            "langchain": "SQLChatMessageHistory", "langgraph": "SqliteSaver"}
"""Each framework's built-in store; its aisopod-backed counterpart is the system
``<framework>-aisopod``."""
MEMORY_LIMIT_MB = 200.0
X = "\N{MULTIPLICATION SIGN}"


@dataclass
class Context:
    date: str
    command: str
    quick: bool
    machine: str
    python: str
    postgres: str | None
    sizes: dict[str, Any]
    versions: dict[str, str]
    settings: dict[str, dict[str, Any]]
    notes: list[str]
    seconds: float


def per_second(rate: float) -> str:
    """A throughput: whole numbers, but two significant digits below 10/s."""
    return f"{rate:,.0f}/s" if rate >= 10 else f"{rate:.2g}/s"


def short(result: dict[str, Any]) -> str:
    """One line for the progress log."""
    text = per_second(result.get("rate", 0.0))
    if "p50_ms" in result:
        text += f" p50 {result['p50_ms']:.2f} ms p99 {result['p99_ms']:.2f} ms"
    if result.get("capped"):
        text += f" (stopped at {result['ops']} of {result['planned']})"
    if result.get("errors"):
        text += f" {result['errors']} errors: {result.get('first_error', '')}"
    return text


class Table:
    def __init__(self, measurements: list[Measurement]) -> None:
        self.by_key = {(m.label, m.system, m.variant): m for m in measurements}
        self.labels: list[str] = []
        for m in measurements:
            if m.label not in self.labels:
                self.labels.append(m.label)
        self.footnotes: set[str] = set()

    def get(self, label: str, system: str, variant: str) -> Measurement | None:
        return self.by_key.get((label, system, variant))

    def rate(self, label: str, system: str, variant: str) -> float | None:
        m = self.get(label, system, variant)
        if m is None or m.result is None or not m.result.get("ops"):
            return None
        return float(m.result["rate"])

    def cell(self, label: str, system: str, variant: str, *, versus: float | None = None,
             latency: bool = False) -> str:
        m = self.get(label, system, variant)
        if m is None:
            return "—"
        if m.result is None:
            self.footnotes.add("failed: the step failed (see the log)")
            return "failed"
        r = m.result
        if latency:
            text = f"{r['p50_ms']:.2f} ms"
        elif "p50_ms" in r:
            text = f"{per_second(r['rate'])} ({r['p50_ms']:.2f} / {r['p99_ms']:.2f} ms)"
        else:
            text = per_second(r["rate"])
        if r.get("capped"):
            text += f" [{r['ops']} of {r['planned']}]"
            self.footnotes.add("[n of N]: stopped early after the time budget; the rate is "
                               "over the n calls done")
        if r.get("errors"):
            text += f" ‼{r['errors']} errors"
            self.footnotes.add("‼ errors: calls that raised (e.g. 'database is locked'); not "
                               "counted in the rate")
        if versus is not None and r.get("ops"):
            text += f" · **{versus / r['rate']:.2f}{X}**"
        return text


def render(measurements: list[Measurement], context: Context) -> str:
    return Renderer(measurements, context).render()


class Renderer:
    def __init__(self, measurements: list[Measurement], context: Context) -> None:
        self.measurements = measurements
        self.t = Table(measurements)
        self.durabilities: list[str] = list(context.sizes.get("durabilities",
                                                              ("full", "normal")))
        self.peers = [p for p in PEERS if any(m.system == p for m in measurements)]
        self.has_raw = any(m.system == "raw" for m in measurements)
        self.out: list[str] = []

    def labels(self, *prefixes: str) -> list[str]:
        return [label for label in self.t.labels if label.startswith(prefixes)]

    def table(self, title: str, header: list[str]) -> None:
        self.out += [f"### {title}\n", _row(header), _row(["---"] * len(header))]

    def render(self) -> str:
        self.appends()
        self.concurrent()
        self.postgres()
        self.reads()
        self.listing()
        self.memory()
        self.frameworks()
        legend = [f"Cells: throughput; **r{X}** = aisopod's throughput ÷ that cell's, both "
                  "from this run (above 1: aisopod is faster)."]
        legend += sorted(self.t.footnotes)
        legend += [f"FAILED {m.label} {m.system} {m.variant}: {m.error}"
                   for m in self.measurements if m.error]
        self.out.extend(f"- {line}" for line in legend)
        return "\n".join(self.out).rstrip() + "\n"

    def appends(self) -> None:
        t = self.t
        labels = self.labels("W1 ", "W2 ")
        if not labels:
            return
        header = ["workload", "durability", "aisopod"]
        if self.has_raw:
            header += ["raw sqlite3: INSERT + commit", "raw sqlite3: the store's statements"]
        header += [SHORT[p] + " (its defaults)" for p in self.peers]
        self.table("Appends, SQLite (one message per call, blocking API)", header)
        for label in labels:
            for durability in self.durabilities:
                ours = t.rate(label, "aisopod", durability)
                row = [label, durability, t.cell(label, "aisopod", durability)]
                if self.has_raw:
                    row += [t.cell(label, "raw", f"{durability}/{v}", versus=ours)
                            for v in ("insert", "same")]
                row += [t.cell(label, p, "default", versus=ours) if durability == "full"
                        else "" for p in self.peers]
                self.out.append(_row(row))
        self.out.append("")

    def concurrent(self) -> None:
        t = self.t
        labels = self.labels("W6 ")
        if not labels:
            return
        label = labels[0]
        w1 = next(iter(self.labels("W1 ")), None)
        header = ["workload", "durability", "aisopod (AsyncSessionStore)",
                  "aisopod W6 ÷ its W1", *(SHORT[p] + " (its defaults)" for p in self.peers)]
        self.table("Concurrent asyncio writers, SQLite (each on its own session)", header)
        for durability in self.durabilities:
            ours = t.rate(label, "aisopod", durability)
            single = t.rate(w1, "aisopod", durability) if w1 else None
            row = [label, durability, t.cell(label, "aisopod", durability),
                   f"**{ours / single:.2f}{X}**" if ours and single else "—"]
            row += [t.cell(label, p, "default", versus=ours) if durability == "full" else ""
                    for p in self.peers]
            self.out.append(_row(row))
        self.out.append("")

    def postgres(self) -> None:
        t = self.t
        labels = self.labels("W7 ")
        if not labels:
            return
        self.table("PostgreSQL (W7)", ["workload", "durability", "aisopod",
                                       "raw psycopg: the store's statements",
                                       "aisopod ÷ its PG W1"])
        for label in labels:
            for durability in self.durabilities:
                ours = t.rate(label, "aisopod", durability)
                single = t.rate(labels[0], "aisopod", durability)
                ratio = (f"**{ours / single:.2f}{X}**"
                         if label != labels[0] and ours and single else "")
                self.out.append(_row([label, durability, t.cell(label, "aisopod", durability),
                                      t.cell(label, "raw", durability, versus=ours), ratio]))
        self.out.append("")

    def reads(self) -> None:
        t = self.t
        labels = self.labels("W3 ", "W4 ")
        if not labels:
            return
        self.table("Reads, SQLite: calls/s (p50 / p99 latency)",
                   ["workload", "aisopod", *(["raw sqlite3"] if self.has_raw else []),
                    *(SHORT[p] for p in self.peers)])
        for label in labels:
            ours = t.rate(label, "aisopod", "")
            row = [label, t.cell(label, "aisopod", "")]
            if self.has_raw:
                row.append(t.cell(label, "raw", "", versus=ours))
            row += [t.cell(label, p, "default", versus=ours) for p in self.peers]
            self.out.append(_row(row))
        w3 = self.labels("W3 ")
        first = t.rate(w3[0], "aisopod", "") if w3 else None
        last = t.rate(w3[-1], "aisopod", "") if w3 else None
        if len(w3) >= 2 and first and last:
            self.out += ["", f"History growth: aisopod's W3 rate at the largest history ÷ at "
                         f"the smallest = **{last / first:.2f}{X}** (1.00: the cost does not "
                         "grow with history)."]
        self.out.append("")

    def listing(self) -> None:
        labels = self.labels("W5")
        if not labels:
            return
        self.table("Listing (W5): one agent's idle sessions, first page of 50",
                   ["workload", "system", "p50", "p99", "first call (cold)",
                    "aisopod ÷ this"])
        for label in labels:
            ours = self.t.rate(label, "aisopod", "")
            for m in (m for m in self.measurements if m.label == label):
                if m.result is None:
                    self.out.append(_row([label, NAMES[m.system], "failed", "", "", ""]))
                    continue
                r = m.result
                ratio = (f"**{ours / r['rate']:.2f}{X}**"
                         if ours and m.system != "aisopod" and r.get("rate") else "")
                self.out.append(_row([label, NAMES[m.system], f"{r['p50_ms']:.2f} ms",
                                      f"{r['p99_ms']:.2f} ms", f"{r['first_call_ms']:.1f} ms",
                                      ratio]))
        self.out.append("")

    def memory(self) -> None:
        measured = [m for m in self.measurements
                    if m.workload in ("w3", "w5") and m.result is not None]
        if not measured:
            return
        self.table("Peak RSS of the measuring process (MB)",
                   ["workload", "system", "peak RSS", f"aisopod under {MEMORY_LIMIT_MB:.0f} MB"])
        for m in measured:
            ok = "yes" if m.rss_mb < MEMORY_LIMIT_MB else "**NO**"
            self.out.append(_row([m.label, NAMES[m.system], f"{m.rss_mb:.0f}",
                                  ok if m.system == "aisopod" else ""]))
        self.out.append("")


    def frameworks(self) -> None:
        """Each framework's built-in store beside its aisopod-backed integration, both driven
        through the framework's own interface, on the same workloads."""
        t = self.t
        frameworks = [f for f in FRAMEWORKS if any(m.system in (f, f"{f}-aisopod")
                                              for m in self.measurements)]
        if not frameworks:
            return
        labels = [label for label in self.labels("W1 ", "W2 ", "W3 ", "W6 ", "W8 ")
                  if any(t.get(label, s, v) for f in frameworks
                         for s, v in ((f, "default"), (f"{f}-aisopod", "full")))]
        if not labels:
            return
        self.out += [f"### {FRAMEWORKS_TITLE}", "",
                     "Each framework driven through its own interface (Agents SDK `Session`: "
                     "`add_items` / `get_items(limit=20)`; ADK `BaseSessionService`: "
                     "`append_event` / `get_session(GetSessionConfig(num_recent_events=20))`; "
                     "LangChain `BaseChatMessageHistory`: `add_message` / `messages`, which for "
                     "aisopod is its bounded tail read `max_messages=20`; LangGraph: "
                     "`graph.invoke` of a one-node graph, a message in and a reply out, with "
                     "its checkpointer, W8), once on the "
                     "framework's built-in SQLite store with its defaults, once on aisopod-session "
                     "(SQLite file, durability `full`). Writes: throughput; reads: calls/s "
                     "(p50 / p99 latency).", ""]
        header = ["workload", "framework", "built-in store (its defaults)",
                  "aisopod-backed (SQLite, full)", "aisopod-backed ÷ built-in"]
        self.out += [_row(header), _row(["---"] * len(header))]
        for label in labels:
            for f in frameworks:
                backed = f"{f}-aisopod"
                if t.get(label, f, "default") is None and t.get(label, backed, "full") is None:
                    continue
                ours = t.rate(label, backed, "full")
                theirs = t.rate(label, f, "default")
                ratio = f"**{ours / theirs:.2f}{X}**" if ours and theirs else "—"
                self.out.append(_row([label, f"{SHORT[f]}: {BUILT_IN[f]} vs "
                                      f"{NAMES[backed].split()[-1]}",
                                      t.cell(label, f, "default"), t.cell(label, backed, "full"),
                                      ratio]))
        self.out += ["", "Ratio above 1: the aisopod-backed integration does more calls per "
                     "second than the framework's built-in store, both from this run.", ""]


FRAMEWORKS_TITLE = "Frameworks: built-in store vs aisopod-backed"


def document(tables: str, context: Context) -> str:
    """The whole of docs/performance.md."""
    sizes = context.sizes
    lines = [
        "# Performance",
        "",
        "Written by `./scripts/bench` (see `benchmarks/`). Every number below comes from one "
        "run in one process tree: each system's workload ran in a child process of its own, "
        "the steps of one workload back to back. **Only the ratios between systems of the same "
        "run mean anything**; the absolute numbers move with the machine's load.",
        "",
        f"- Run: {context.date}, `{context.command}`"
        + (" (**quick mode: tiny sizes, not a measurement**)" if context.quick else "")
        + f", {context.seconds / 60:.1f} minutes",
        f"- Machine: {context.machine}; Python {context.python}",
        f"- PostgreSQL: {context.postgres or 'not measured'}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(context.versions.items())),
        "",
        "## Workloads",
        "",
        f"- **W1**: one session, {sizes['appends']:,} appends of one message each. "
        f"**W2**: {sizes['w2_sessions']:,} sessions {X} {sizes['w2_per_session']} appends, "
        "round-robin. Each on a fresh database whose sessions exist already.",
        f"- **W3**: the newest 20 messages of one session, {sizes['w3_reads']:,} reads, for "
        f"histories of {', '.join(f'{n:,}' for n in sizes['w3_sizes'])} messages; aisopod and "
        f"raw also at {sizes['w3_memory_size']:,} (the memory run).",
        f"- **W4**: {sizes['w4_lookups']:,} `get` of one session among "
        f"{sizes['w4_sessions']:,}.",
        f"- **W5**: the first page (50) of `list` for one agent and one status among "
        f"{sizes['w5_sessions']:,} sessions (10 agents, mixed statuses, bulk-loaded with SQL); "
        "repeated calls, latency in ms.",
        f"- **W6**: {sizes['writers']} asyncio tasks, each appending {sizes['per_writer']} "
        "messages one per call to its own session, on one `AsyncSessionStore`.",
        "- **W7**: W1 and W6 on PostgreSQL, aisopod against psycopg running the store's own "
        "statements (one connection for W1; a pool of the store's default size 4 for W6).",
        f"- **W8**: {max(10, sizes['appends'] // 4):,} turns of a one-node LangGraph graph (a "
        "user message in, a reply out; threads of 10 turns), under LangGraph's `SqliteSaver` "
        "and under `AisopodSaver` (which also writes each turn's messages to the thread's "
        "session transcript).",
        f"- A measured loop stops early after {sizes['budget']:.0f} s (only slow peers hit "
        "this; their cells say how far they got).",
        "- Durability: aisopod `full` = WAL + `synchronous=FULL` (PostgreSQL: "
        "`synchronous_commit=on`), `normal` = WAL + `synchronous=NORMAL` "
        "(`synchronous_commit=off`); the raw baselines use the same settings. Peers run with "
        "their own defaults, listed below: all of them survive power loss (SQLite's default "
        "`synchronous` is FULL), so they are compared with `full`.",
        "- **Frameworks**: W1, W2, W3 and W6 also run through each framework's own interface, "
        "once on its built-in store and once on its aisopod-session integration "
        "(`aisopod_session.integrations`: SQLite file, durability `full`), back to back "
        "(their W3 histories are written in batches through the integration or the store); "
        "table *Frameworks: built-in store vs aisopod-backed*.",
        "- Setup (not measured): bulk loads go straight to SQL in a separate process (for ADK "
        "by cloning rows the service itself wrote), so only the measured calls use each "
        "system's public API.",
        "",
        "## Results",
        "",
        tables,
        SETTINGS,
        "",
    ]
    for name, settings in sorted(context.settings.items()):
        lines.append(f"- {name}: " + ", ".join(f"{k}={v}" for k, v in settings.items()
                                                if k != "backend"))
    lines += ["", "Profile the store's W1, W3 and W4 paths with "
              "`.venv-bench/bin/python -m benchmarks.profiling` (cProfile; py-spy is installed "
              "in the same environment); `python -m benchmarks.ceiling` times the store's own "
              "append statements in raw sqlite3. The targets of issue 6, which of them this "
              "run meets, and the profiles of the misses are in "
              "[performance-analysis.md](performance-analysis.md), written by hand from a run "
              "of this command (this file is rewritten by every run)."]
    if context.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in context.notes]
    return "\n".join(lines).rstrip() + "\n"


SETTINGS = "## Settings each system ran with"


def _bounds(lines: list[str], heading: str) -> tuple[int, int] | None:
    """Where the section whose heading starts with ``heading`` is: its first line, and the
    next heading of the same or a higher level (or the end)."""
    start = next((i for i, line in enumerate(lines) if line.startswith(heading)), None)
    if start is None:
        return None
    level = len(heading) - len(heading.lstrip("#"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("#")
                and len(lines[i]) - len(lines[i].lstrip("#")) <= level), len(lines))
    return start, end


def section(document: str, heading: str) -> str | None:
    """The section of ``document`` whose heading starts with ``heading``, if it has one."""
    lines = document.splitlines(keepends=True)
    found = _bounds(lines, heading)
    return None if found is None else "".join(lines[found[0]:found[1]]).rstrip("\n") + "\n"


def with_section(document: str, heading: str, text: str) -> str:
    """``document`` (docs/performance.md as ``python -m benchmarks`` writes it) with ``text``
    in place of its section whose heading starts with ``heading`` (the tables of a benchmark
    run on its own), or before its settings section, or at its end."""
    lines = document.splitlines(keepends=True)
    found = _bounds(lines, heading)
    if found is None:
        at = next((i for i, line in enumerate(lines) if line.startswith(SETTINGS)), len(lines))
        found = (at, at)
    return ("".join(lines[:found[0]]) + text.rstrip("\n") + "\n\n"
            + "".join(lines[found[1]:]))


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"
