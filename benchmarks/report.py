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
W3_MODEL = "W3 newest 20 of"
"""Labels of W3 on the model path (``get_history``): ``W3 newest 20 of 10,000``."""
W3_LEAN = "W3 lean, newest 20 of"
"""Labels of W3 on the lean path (``get_contents``) and its raw baseline."""
SERVICE_TITLE = "### Service over HTTP"


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
    service: str | None = None
    """The service benchmark's table of this run (``benchmarks.service``), if it ran."""


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
        self.quick = context.quick
        self.service = context.service
        self.out: list[str] = []

    def labels(self, *prefixes: str) -> list[str]:
        return [label for label in self.t.labels if label.startswith(prefixes)]

    def table(self, title: str, header: list[str]) -> None:
        self.out += [f"### {title}\n", _row(header), _row(["---"] * len(header))]

    def render(self) -> str:
        self.targets()
        self.appends()
        self.concurrent()
        self.postgres()
        self.reads()
        self.lean_reads()
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
        if self.has_raw:
            self.out += [RAW_APPENDS, ""]

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
        labels = self.labels(f"{W3_MODEL} ", "W4 ")
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
        w3 = self.labels(f"{W3_MODEL} ")
        first = t.rate(w3[0], "aisopod", "") if w3 else None
        last = t.rate(w3[-1], "aisopod", "") if w3 else None
        if len(w3) >= 2 and first and last:
            self.out += ["", f"History growth: aisopod's W3 rate at the largest history ÷ at "
                         f"the smallest = **{last / first:.2f}{X}** (1.00: the cost does not "
                         "grow with history)."]
        self.out.append("")

    def lean_reads(self) -> None:
        """W3 on the lean path (``get_contents``) against raw sqlite3 returning the same list,
        beside the model path's W3 row of the same history."""
        t = self.t
        labels = self.labels(f"{W3_LEAN} ")
        if not labels:
            return
        header = ["workload", "aisopod `get_contents`"]
        if self.has_raw:
            header.append("raw sqlite3: `SELECT content` + one `json.loads`")
        header += ["aisopod `get_history` (W3 row above)", "lean ÷ model path"]
        self.table("Reads, lean path (W3), SQLite: calls/s (p50 / p99 latency)", header)
        for label in labels:
            model = _model_label(label)
            ours = t.rate(label, "aisopod", "")
            models = t.rate(model, "aisopod", "")
            row = [label, t.cell(label, "aisopod", "")]
            if self.has_raw:
                row.append(t.cell(label, "raw", "", versus=ours))
            row += [t.cell(model, "aisopod", ""),
                    f"**{ours / models:.2f}{X}**" if ours and models else "—"]
            self.out.append(_row(row))
        self.out += ["", LEAN_READS, ""]

    def targets(self) -> None:
        """Issue 24's targets, each from this run's own measurements, beside the first round's
        figure; a target without its measurement in this run is not met."""
        rows = [*self.append_targets(), *self.read_targets(), *self.postgres_targets(),
                *self.service_targets()]
        quick = " (quick mode: not a measurement)" if self.quick else ""
        self.table(f"{TARGETS_TITLE}{quick}",
                   ["target", "first round (before)", "this run (after)", "met / missed"])
        for target, before, after, met in rows:
            self.out.append(_row([target, before, after, met]))
        self.out += ["", TARGETS_NOTE, ""]

    def append_targets(self) -> list[tuple[str, str, str, str]]:
        t = self.t
        rows = []
        for workload, full, normal, sdk in (("W1", "0.64", "0.24", "1.29"),
                                            ("W2", "0.55", "0.21", "1.68")):
            label = next(iter(self.labels(f"{workload} ")), None)
            for durability, goal, before in (("full", 0.8, full), ("normal", 0.5, normal)):
                ours = t.rate(label, "aisopod", durability) if label else None
                raw = t.rate(label, "raw", f"{durability}/insert") if label else None
                rows.append(_target(f"{workload} ≥ {goal:g}{X} raw INSERT + commit, "
                                    f"`{durability}`", f"{before}{X}", ours, raw, goal))
            ours = t.rate(label, "aisopod", "full") if label else None
            sdk_rate = t.rate(label, "openai", "default") if label else None
            rows.append(_target(f"{workload} ≥ 2{X} the Agents SDK's `SQLiteSession` (aisopod "
                                "`full`, the SDK its defaults)", f"{sdk}{X}", ours, sdk_rate,
                                2.0))
        return rows

    def read_targets(self) -> list[tuple[str, str, str, str]]:
        rows = []
        for prefix, goal, path, before in ((W3_MODEL, 0.7, "model path (`get_history`)",
                                            f"0.46{DASH}0.55{X}"),
                                           (W3_LEAN, 0.85, "lean path (`get_contents`)",
                                            "not measured")):
            ratios: list[tuple[str, float | None]] = []
            for label in self.labels(f"{prefix} "):
                ours, raw = self.t.rate(label, "aisopod", ""), self.t.rate(label, "raw", "")
                ratios.append((label.removeprefix(f"{prefix} "), ours / raw if ours and raw
                               else None))
            target = f"W3 ≥ {goal:g}{X} raw sqlite3, {path}, every history size"
            measured = [r for _, r in ratios if r is not None]
            if not measured:
                rows.append((target, before, "—", NOT_MEASURED))
                continue
            low, high = min(measured), max(measured)
            spread = (f"{low:.2f}{X}" if f"{low:.2f}" == f"{high:.2f}"
                      else f"{low:.2f}{DASH}{high:.2f}{X}")
            sizes = " / ".join("—" if r is None else f"{r:.2f}{X}" for _, r in ratios)
            after = (f"{spread} ({sizes} at {', '.join(n for n, _ in ratios)} messages)"
                     if len(ratios) > 1 else f"{spread} ({ratios[0][0]} messages)")
            missing = [n for n, r in ratios if r is None]
            met = _met(low >= goal)
            if missing and low >= goal:
                met = f"not met: not measured at {', '.join(missing)} messages"
            rows.append((target, before, after, met))
        return rows

    def postgres_targets(self) -> list[tuple[str, str, str, str]]:
        t = self.t
        w1 = next(iter(self.labels("W7 PG W1 ")), None)
        w6 = next(iter(self.labels("W7 PG W6 ")), None)
        single = t.rate(w1, "aisopod", "full") if w1 else None
        many = t.rate(w6, "aisopod", "full") if w6 else None
        raw = t.rate(w1, "raw", "full") if w1 else None
        return [
            _target(f"PostgreSQL W6 ≥ 4{X} its W1, `full`", f"2.4{X}", many, single, 4.0),
            _target(f"PostgreSQL W1 ≥ 0.8{X} raw psycopg with the store's statements, `full`",
                    f"0.73{X}", single, raw, 0.8),
        ]

    def service_targets(self) -> list[tuple[str, str, str, str]]:
        found = service_ratios(self.service) if self.service else {}
        clients = service_clients(self.service) if self.service else None
        rows = []
        for workload, goal in (("append", 0.5), ("history", 0.6)):
            target = (f"Service {workload}{'s' if workload == 'append' else ' reads'} ≥ "
                      f"{goal:g}{X} the bare endpoint, 32 clients, one worker")
            ratios = {backend: ratio for (backend, name), ratio in found.items()
                      if name == workload}
            # the service table's own verdict (of the unrounded ratio), else the ratio shown
            missed = [backend for backend, (ratio, ok) in ratios.items()
                      if not (ok if ok is not None else ratio >= goal)]
            if not self.service:
                rows.append((target, "not measured", "—", NOT_MEASURED))
            elif not ratios:
                rows.append((target, "not measured", f"see {SERVICE_TITLE[4:]}", NOT_MEASURED))
            else:
                after = ", ".join(f"{backend} {ratio:.2f}{X}"
                                  for backend, (ratio, _) in ratios.items())
                if clients is not None and clients != 32:
                    after += f" ({clients} clients)"
                met = _met(not missed)
                if missed and len(missed) < len(ratios):
                    met += f" on {', '.join(missed)}"
                rows.append((target, "not measured", after, met))
        return rows

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
TARGETS_TITLE = "Targets of issue 24"
DASH = "\N{EN DASH}"
NOT_MEASURED = "not met: not measured in this run"
TARGETS_NOTE = (
    "Each ratio from this run's tables below (durability `full` unless named): W1/W2 from "
    "*Appends* (aisopod ÷ raw INSERT + commit; ÷ the Agents SDK's `SQLiteSession` with its "
    "defaults), W3 from *Reads* and *Reads, lean path* (aisopod ÷ the raw sqlite3 baseline "
    "returning the same result, the lowest ratio over the history sizes decides), PostgreSQL "
    "from *PostgreSQL (W7)*, the service from *Service over HTTP* (requests/s ÷ the bare "
    "endpoint's, one worker, each backend measured). *First round*: issue 24's figures from the "
    "first round of issue 6 (docs/performance-analysis.md); the lean path and the service were "
    "not measured then. A target whose measurement is not in this run is not met."
)
RAW_APPENDS = (
    "*raw sqlite3: INSERT + commit*: one plain INSERT of the message and a commit, the least a "
    "durable append does. *raw sqlite3: the store's statements*: exactly what the store runs "
    "for one append with its defaults (search index on), traced with "
    "`sqlite3.Connection.set_trace_callback`, with the same parameters: `BEGIN IMMEDIATE`, "
    "the counter `UPDATE sessions … RETURNING`, `INSERT INTO messages … RETURNING id`, the "
    "message's token count (`UPDATE messages SET search_tokens`), the search index's staged "
    "entry (`INSERT INTO message_fts_staged`, the staged count, and "
    "every 32nd append the move of the staged entries into `message_fts`), the change feed's "
    "`INSERT INTO changes` (position after the newest entry), `COMMIT`; the gap between "
    "*aisopod* and this column is the store's Python work only."
)
LEAN_READS = (
    "The lean path: `get_contents(key, HistoryQuery(limit=20, tail=True))`, only each "
    "message's decoded `content`, no `StoredMessage` (what the integrations build prompts "
    "from). Its raw baseline runs the store's statement for it (`SELECT content … ORDER BY seq "
    "DESC LIMIT 20`) and decodes the texts as the store does (one `json.loads` of them "
    f"joined as an array), returning the same list. **r{X}** "
    "= aisopod's rate ÷ that cell's; *lean ÷ model path*: `get_contents` ÷ `get_history` on "
    "the same history, both aisopod."
)


def _model_label(lean: str) -> str:
    """The model path's W3 label of the history a lean W3 label reads."""
    return f"{W3_MODEL} {lean.removeprefix(f'{W3_LEAN} ')}"


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _target(target: str, before: str, ours: float | None, theirs: float | None,
            goal: float) -> tuple[str, str, str, str]:
    """A row of the targets table for the ratio ``ours / theirs`` (either missing: not met)."""
    if not ours or not theirs:
        return target, before, "—", NOT_MEASURED
    ratio = ours / theirs
    return (target, before, f"{ratio:.2f}{X} ({per_second(ours)} vs {per_second(theirs)})",
            _met(ratio >= goal))


def service_ratios(table: str) -> dict[tuple[str, str], tuple[float, bool | None]]:
    """The service benchmark's ratios to the bare endpoint on one worker, from its table
    (``benchmarks.service.render``): (backend, workload) -> (requests/s ÷ the bare endpoint's,
    its target column's verdict, None if it has none)."""
    found: dict[tuple[str, str], tuple[float, bool | None]] = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 9 or cells[1] != "1":
            continue
        workload = cells[2].split(" ")[0]
        if workload not in ("append", "history"):
            continue
        try:
            ratio = float(cells[7].strip("*").removesuffix(X))
        except ValueError:
            continue
        verdict = cells[8].rpartition(":")[2].strip("* ")
        found[cells[0], workload] = (ratio, {"yes": True, "no": False}.get(verdict))
    return found


def service_clients(table: str) -> int | None:
    """The concurrent clients of the service benchmark's table (its heading says)."""
    heading = next((line for line in table.splitlines() if line.startswith(SERVICE_TITLE)), "")
    words = heading.removeprefix(SERVICE_TITLE).lstrip(":").split()
    return int(words[0]) if words and words[0].isdigit() else None


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
        f"raw also at {sizes['w3_memory_size']:,} (the memory run). Model path: "
        "`get_history(key, HistoryQuery(limit=20, tail=True))` (`StoredMessage`s) against raw "
        "sqlite3 fetching the same rows; lean path (*W3 lean*, same histories): "
        "`get_contents` with the same query (each message's decoded `content` only) against raw "
        "sqlite3 fetching the `content` column and decoding it as the store does (one "
        "`json.loads`).",
        f"- **W4**: {sizes['w4_lookups']:,} `get` of one session among "
        f"{sizes['w4_sessions']:,}.",
        f"- **W5**: the first page (50) of `list` for one agent and one status among "
        f"{sizes['w5_sessions']:,} sessions (10 agents, mixed statuses, bulk-loaded with SQL); "
        "repeated calls, latency in ms.",
        f"- **W6**: {sizes['writers']} asyncio tasks, each appending {sizes['per_writer']} "
        "messages one per call to its own session, on one `AsyncSessionStore`.",
        "- **W7**: W1 and W6 on PostgreSQL, aisopod against psycopg running the store's own "
        "statements for each append with the same parameters, pipelined as the store sends "
        "them (`BEGIN`, the append's one `WITH … UPDATE sessions … INSERT INTO messages` "
        "statement and a fetch of its rows, the search index's `INSERT INTO message_search` and "
        "the change feed's `INSERT INTO changes`, `COMMIT`: two round trips), one connection "
        "for W1. Raw W6: that transaction per append, from the writers sharing a pool of the "
        "store's default size 4; no group commit, which aisopod's W6 does (many writers' "
        "appends in one transaction), so its ratio there includes what group commit gains.",
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
