"""Export/import through the remote store: do the client's and the server's peak RSS stay flat?

    .venv/bin/python -m benchmarks.remote_transfer [--messages 10000 100000] [--per-session 100]

For each size it writes an export file (the format of ``store/_transfer.py``: the session and
message lines of a small store built and exported with the library, replicated under fresh keys,
each message ~200 bytes of text), starts the real service (``python -m aisopod_session serve``)
as a process of its own on a fresh SQLite file (durability "normal"), and runs a client process
that opens ``SessionStore.open("http://…", token=…)``, imports the file through it (read lazily,
line by line) and exports everything back to a file (streamed). The client reports its own peak
RSS (``ru_maxrss``) after connecting, after the import and after the export; at each of those
points this process reads the server's peak (``VmHWM`` in ``/proc/<pid>/status``). Then the
server is stopped (SIGTERM) and the exported file is checked: as many sessions and messages as
were imported.

"Flat" means: from the smallest to the largest size, neither side's peak RSS grows by more than
``--flat-mb`` (20 MB by default), however many more messages went through.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from benchmarks import common

DEFAULT_SIZES = (10_000, 100_000)
PER_SESSION = 100
CONTENT_BYTES = 200
FLAT_MB = 20.0
START_SECONDS = 30.0
CLIENT_SECONDS = 900.0
TOKEN_ENV = "AISOPOD_TOKEN"
FILLER = "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
PHASES = ("ready", "imported", "exported")
"""What the client reports, in order: connected, import done, export done."""


# --- the export file --------------------------------------------------------------------------


def content(i: int) -> str:
    """Message ``i``'s text: CONTENT_BYTES of ASCII, different for every message."""
    head = f"transfer benchmark message {i}: "
    return (head + FILLER * (CONTENT_BYTES // len(FILLER) + 1))[:CONTENT_BYTES]


def template(per_session: int, folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One session of ``per_session`` messages, as the library exports it (parsed)."""
    from aisopod_session import SessionKey, SessionStore, StoredMessage

    key = SessionKey("bench", "slack", "acct", "dm", "template")
    with SessionStore.open(str(folder / "template.db"), durability="normal") as store:
        agent = store.for_agent("bench")
        agent.get_or_create(key)
        agent.append_messages(key, [
            StoredMessage.user(content(i)) if i % 2 == 0 else StoredMessage.assistant(content(i))
            for i in range(per_session)
        ])
        records = [json.loads(line) for line in store.export_jsonl()]
    sessions = [r for r in records if r["kind"] == "session"]
    messages = [r for r in records if r["kind"] == "message"]
    if len(sessions) != 1 or len(messages) != per_session:
        raise RuntimeError(f"unexpected template export: {len(records)} lines")
    return sessions[0], messages


def export_lines(total: int, per_session: int, folder: Path) -> Iterator[dict[str, Any]]:
    """The header, then sessions of ``per_session`` messages (the last may have fewer) with
    fresh keys, until ``total`` messages."""
    session, messages = template(per_session, folder)
    yield {"kind": "aisopod-session-export", "version": 1}
    number = 0
    written = 0
    while written < total:
        number += 1
        count = min(per_session, total - written)
        key = {**session["key"], "peer_id": f"user{number}"}
        yield {**session, "id": number, "key": key, "message_count": count, "last_seq": count}
        for message in messages[:count]:
            yield {**message, "session": number, "content": content(written)}
            written += 1


def write_export(path: Path, total: int, per_session: int, folder: Path) -> int:
    """Write the file; the number of sessions in it."""
    sessions = 0
    with path.open("w", encoding="utf-8") as out:
        for record in export_lines(total, per_session, folder):
            sessions += record["kind"] == "session"
            out.write(json.dumps(record, separators=(",", ":")))
            out.write("\n")
    return sessions


def count_kinds(path: Path) -> dict[str, int]:
    """Lines of each kind in an export file (every line parsed)."""
    counts: dict[str, int] = {}
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            kind = json.loads(line)["kind"]
            counts[kind] = counts.get(kind, 0) + 1
    return counts


# --- the server -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def status_mb(pid: int) -> dict[str, float]:
    """VmHWM (peak RSS) and VmRSS of a process, in MiB."""
    values: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                values[name] = int(rest.split()[0]) / 1024
    return values


class Server:
    """``aisopod-session serve`` on a fresh SQLite file, as a process of its own."""

    def __init__(self, folder: Path, token: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / "server.log"
        self.config = folder / "service.toml"
        self.config.write_text(
            "[database]\n"
            f"url = {json.dumps(str(folder / 'server.db'))}\n"
            'durability = "normal"\n\n'
            "[maintenance]\n"
            "interval_seconds = 0\n\n"
            "[[tokens]]\n"
            f'token = "{token}"\n'
            'role = "admin"\n',
            encoding="utf-8",
        )
        self._log: TextIO | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        self._log = self.log_path.open("w", encoding="utf-8")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aisopod_session", "serve", "--config", str(self.config),
             "--port", str(self.port)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode}):\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer /healthz:\n{self.log()}")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            common.stop(self.process, START_SECONDS)
        if self._log is not None:
            self._log.close()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self, tail: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-tail:])


# --- the client (a process of its own: its peak RSS is its own) --------------------------------


def peak_mb() -> float:
    """This process's peak RSS so far, in MiB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report_phase(phase: str, **numbers: Any) -> None:
    print(json.dumps({"phase": phase, "peak_mb": peak_mb(), **numbers}), flush=True)


def client(url: str, source: Path, target: Path) -> None:
    """Import ``source`` through the remote store, then export everything to ``target``."""
    from aisopod_session import SessionStore

    with SessionStore.open(url, token=os.environ[TOKEN_ENV], timeout=600) as store:
        report_phase("ready", backend=store.backend)
        started = time.perf_counter()
        with source.open(encoding="utf-8") as lines:  # a file: read lazily, line by line
            result = store.import_jsonl(lines)
        report_phase("imported", seconds=time.perf_counter() - started,
                     sessions=result.sessions, messages=result.messages)
        started = time.perf_counter()
        written = 0
        with target.open("w", encoding="utf-8") as out:
            for line in store.export_jsonl():
                out.write(line)
                out.write("\n")
                written += 1
        report_phase("exported", seconds=time.perf_counter() - started, lines=written)


# --- one size, and the table -------------------------------------------------------------------


@dataclass
class Row:
    messages: int
    sessions: int
    file_mb: float
    client: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each phase's report from the client."""
    server: dict[str, float] = field(default_factory=dict)
    """The server's VmHWM (MiB) at start and at each phase."""
    exported: dict[str, int] = field(default_factory=dict)
    ok: bool = False

    @property
    def client_peak(self) -> float:
        return float(self.client["exported"]["peak_mb"])

    @property
    def server_peak(self) -> float:
        return self.server["exported"]


def run_size(total: int, per_session: int) -> Row:
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="aisopod-transfer-") as tmp:
        folder = Path(tmp)
        source = folder / "source.jsonl"
        target = folder / "exported.jsonl"
        sessions = write_export(source, total, per_session, folder)
        row = Row(total, sessions, source.stat().st_size / 1024 / 1024)
        with Server(folder, token) as server:
            row.server["start"] = status_mb(server.pid)["VmHWM"]
            command = [sys.executable, "-m", "benchmarks.remote_transfer", "--client",
                       server.url, str(source), str(target)]
            env = {**os.environ, TOKEN_ENV: token}
            with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as child:
                assert child.stdout is not None
                for line in child.stdout:
                    report = json.loads(line)
                    row.client[report["phase"]] = report
                    row.server[report["phase"]] = status_mb(server.pid)["VmHWM"]
                code = child.wait(timeout=CLIENT_SECONDS)
            if code != 0 or set(row.client) != set(PHASES):
                raise RuntimeError(f"the client failed ({code}); server log:\n{server.log()}")
        row.exported = count_kinds(target)
    imported = row.client["imported"]
    row.ok = (imported["messages"] == total and imported["sessions"] == sessions
              and row.exported.get("message") == total
              and row.exported.get("session") == sessions
              and row.exported.get("aisopod-session-export") == 1)
    return row


def print_row(row: Row) -> None:
    c, s = row.client, row.server
    imported, exported = c["imported"], c["exported"]
    print(f"{row.messages:>9,} {row.sessions:>6,} {row.file_mb:>6.1f} | "
          f"{c['ready']['peak_mb']:6.1f} → {c['imported']['peak_mb']:6.1f} → "
          f"{exported['peak_mb']:6.1f} | "
          f"{s['start']:6.1f} → {s['imported']:6.1f} → {s['exported']:6.1f} | "
          f"{imported['seconds']:6.1f} s {row.messages / imported['seconds']:>7,.0f}/s | "
          f"{exported['seconds']:6.1f} s {row.messages / exported['seconds']:>7,.0f}/s | "
          f"{'yes' if row.ok else 'NO ' + json.dumps(row.exported)}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.remote_transfer")
    parser.add_argument("--messages", type=int, nargs="+", default=list(DEFAULT_SIZES),
                        help="sizes to run, in messages")
    parser.add_argument("--per-session", type=int, default=PER_SESSION)
    parser.add_argument("--flat-mb", type=float, default=FLAT_MB,
                        help="the most peak RSS may grow from the smallest to the largest size")
    parser.add_argument("--client", nargs=3, metavar=("URL", "SOURCE", "TARGET"),
                        help=argparse.SUPPRESS)  # the client process
    args = parser.parse_args()
    if args.client:
        url, source, target = args.client
        client(url, Path(source), Path(target))
        return 0
    print(f"remote store import/export: {args.per_session} messages per session, "
          f"{CONTENT_BYTES}-byte contents, SQLite (durability normal); peak RSS in MiB "
          "(client: ru_maxrss, server: VmHWM), each after connect → import → export")
    print(f"{'messages':>9} {'sess.':>6} {'file':>6} | {'client peak RSS':^24} | "
          f"{'server peak RSS':^24} | {'import':^20} | {'export':^20} | counts match")
    rows: list[Row] = []
    for total in sorted(args.messages):
        row = run_size(total, args.per_session)
        print_row(row)
        rows.append(row)
    if len(rows) > 1:
        small, large = rows[0], rows[-1]
        client_growth = large.client_peak - small.client_peak
        server_growth = large.server_peak - small.server_peak
        flat = client_growth < args.flat_mb and server_growth < args.flat_mb
        print(f"from {small.messages:,} to {large.messages:,} messages: client peak RSS "
              f"{client_growth:+.1f} MiB, server peak RSS {server_growth:+.1f} MiB: "
              f"{'FLAT' if flat else 'NOT flat'} (limit {args.flat_mb:g} MiB)")
        return 0 if flat and all(r.ok for r in rows) else 1
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
