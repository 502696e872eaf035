"""OpenClaw: a state directory in the JSONL-era layout (OpenClaw's "Session management deep
dive" and the transcript format of its ``SessionManager``).

SOURCE is the state directory (``~/.openclaw``, with ``agents/<agentId>/sessions/``) or one
agent's ``sessions`` directory. Each ``sessions.json`` maps a session key to an entry whose
``sessionId`` names the transcript ``<sessionId>.jsonl`` (or whose ``sessionFile`` names it).
Only sessions.json's entries are imported: reset archives (``*.jsonl.reset.<ts>``) and
transcripts no entry points at are not.

A transcript is JSON Lines: a ``session`` header (``version`` 1, 2 or 3), then entries with
``id`` / ``parentId`` forming a tree (version 1: a plain sequence). The conversation is the
*active branch*: the path from the file's last entry (the leaf OpenClaw resumes from) back to
the root. Entries on other branches are not imported; the report counts them ("on another
branch"). On the active branch:

* ``message`` → one stored message whose ``content`` is the message object as written; roles
  ``user`` and ``bashExecution`` → user, ``assistant`` → assistant (its ``toolCall`` blocks also
  as ``tool_calls``), ``toolResult`` → tool, ``custom`` / ``hookMessage`` / ``branchSummary`` /
  ``compactionSummary`` → system;
* ``custom_message`` and ``branch_summary`` (they enter the model's context) → system messages
  with the entry's own fields;
* ``compaction`` → a compaction as the store records one: the messages before
  ``firstKeptEntryId`` are kept but flagged compacted (at the compaction's time) and a system
  message ``{"role": "compactionSummary", "summary": …}`` takes the place of the last of them;
  the session's compaction count, time and summary are set;
* ``custom``, ``model_change``, ``thinking_level_change``, ``label``, ``session_info``: not
  messages (counted as skipped, by type); an unknown entry type is skipped with its name.

A line that is not JSON (a truncated last line after a crash) is skipped with its line number;
a transcript whose header is missing or of a newer version is not imported at all (reported).

Keys: ``agent:<id>:main`` → the agent's main DM key (``*``, ``*``, ``*``);
``agent:<id>:[<channel>:[<account>:]](dm|direct):<peer>`` → a DM key (missing parts ``*``);
``agent:<id>:<channel>:(group|channel|room):<id>`` → a group key, with ``:thread:<t>`` or
``:topic:<t>`` → the thread's key (``SessionKey.for_thread``); any other key (``cron:…``,
``hook:…``, sub-agents) → ``agent:<id>:openclaw:*:dm:<the key>``. The agent is the key's (or
the directory's); the original key, session id and a few labels stay in the metadata under
``openclaw``. External ids are ``openclaw:<sessionId>:<entry id>``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aisopod_session.errors import InvalidInputError
from aisopod_session.importers._model import (
    KeyMapping,
    Skip,
    SourceError,
    SourceMessage,
    SourceSession,
    utc,
)
from aisopod_session.models import PeerKind, Role, SessionKey

ANY = "*"
FALLBACK_CHANNEL = "openclaw"
NEWEST_VERSION = 3
_ROLES = {"user": Role.USER, "bashExecution": Role.USER, "assistant": Role.ASSISTANT,
          "toolResult": Role.TOOL, "custom": Role.SYSTEM, "hookMessage": Role.SYSTEM,
          "branchSummary": Role.SYSTEM, "compactionSummary": Role.SYSTEM}
_NOT_MESSAGES = frozenset(("custom", "model_change", "thinking_level_change", "label",
                           "session_info"))
_CONTEXT_ENTRIES = frozenset(("custom_message", "branch_summary"))
_KEPT_FIELDS = ("chatType", "displayName", "subject", "label", "origin", "channel",
                "inputTokens", "outputTokens", "totalTokens", "compactionCount")


# --- keys -------------------------------------------------------------------------------------


def map_key(session_key: str, directory_agent: str, mapping: KeyMapping) -> SessionKey:
    """The store's key for an OpenClaw session key (see the module docstring)."""
    parts = session_key.split(":")
    agent = directory_agent
    if len(parts) >= 3 and parts[0] == "agent" and parts[1]:
        agent, rest = parts[1], parts[2:]
        key = _agent_key(agent, rest, mapping)
        if key is not None:
            return key
        peer = ":".join(rest)
    else:
        peer = session_key
    return SessionKey(mapping.agent_id or agent, mapping.channel or FALLBACK_CHANNEL, ANY,
                      PeerKind.DM, peer)


def _agent_key(agent: str, rest: list[str], mapping: KeyMapping) -> SessionKey | None:
    agent = mapping.agent_id or agent

    def channel(name: str) -> str:
        return mapping.channels.get(name, name)

    try:
        if rest == ["main"]:
            return SessionKey(agent, ANY, ANY, PeerKind.DM, ANY)
        for at, kind in enumerate(rest[:3]):
            if kind in ("dm", "direct") and len(rest) > at + 1:
                scope = rest[:at]
                return SessionKey(agent, channel(scope[0]) if scope else ANY,
                                  scope[1] if len(scope) > 1 else ANY, PeerKind.DM,
                                  ":".join(rest[at + 1:]))
        if len(rest) >= 3 and rest[1] in ("group", "channel", "room"):
            group = rest[2:]
            for marker in ("thread", "topic"):
                if marker in group[1:-1] or (len(group) > 2 and group[-2] == marker):
                    at = len(group) - 1 - group[::-1].index(marker)
                    return SessionKey.for_thread(agent, channel(rest[0]), ANY,
                                                 ":".join(group[:at]), ":".join(group[at + 1:]))
            return SessionKey(agent, channel(rest[0]), ANY, PeerKind.GROUP, ":".join(group))
    except InvalidInputError:
        return None
    return None


# --- transcripts ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Plan:
    """What a first read of a transcript decides (ids of the active branch, compactions)."""

    version: int = 1
    on_path: set[str] = field(default_factory=set)
    compacted_at: dict[str, datetime] = field(default_factory=dict)
    summaries: dict[str | None, list[SourceMessage]] = field(default_factory=dict)
    skips: list[Skip] = field(default_factory=list)
    last_time: datetime | None = None


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, bool]]:
    """(line number, the entry or None when not JSON, whether it is the last line)."""
    with path.open("rb") as file:
        previous: tuple[int, bytes] | None = None
        for number, raw in enumerate(file, 1):
            if previous is not None:
                yield previous[0], _entry(previous[1]), False
            previous = (number, raw)
        if previous is not None:
            yield previous[0], _entry(previous[1]), True


def _entry(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _ids(entry: dict[str, Any], number: int, previous: str | None,
         version: int) -> tuple[str, str | None]:
    """An entry's id and parent (version 1 files have neither: a plain sequence)."""
    if version >= 2 and isinstance(entry.get("id"), str):
        parent = entry.get("parentId")
        return entry["id"], parent if isinstance(parent, str) else None
    return f"line-{number}", previous


class _Transcript:
    def __init__(self, path: Path, session_id: str) -> None:
        self.path = path
        self.session_id = session_id
        self.plan = _Plan()

    def header(self) -> tuple[datetime | None, str | None]:
        """The header's time, or why the transcript cannot be imported."""
        try:
            with self.path.open("rb") as file:
                first = file.readline()
        except OSError as exc:
            return None, f"transcript {self.path.name} cannot be read ({exc.strerror})"
        header = _entry(first)
        if header is None or header.get("type") != "session":
            return None, f"transcript {self.path.name} does not start with a session header"
        version = header.get("version", 1)
        if not isinstance(version, int) or version < 1 or version > NEWEST_VERSION:
            return None, (f"transcript version {version!r} is not one this importer reads "
                          f"(1 to {NEWEST_VERSION})")
        self.plan.version = version
        return utc(header.get("timestamp"), utc(0)), None

    def prepare(self, session: SourceSession) -> None:
        """First read: the active branch and the compactions on it (again from the start
        when called again)."""
        plan = self.plan = _Plan(version=self.plan.version)
        session.compaction_count, session.last_compacted_at = 0, None
        session.last_compaction_summary = None
        parents: dict[str, str | None] = {}
        kinds: dict[str, str] = {}
        order: list[str] = []
        previous: str | None = None
        entries: dict[str, dict[str, Any]] = {}
        for number, entry, last in _lines(self.path):
            if number == 1:
                continue
            if entry is None:
                plan.skips.append(Skip(
                    "the last line is not JSON (a write cut short)" if last
                    else f"line {number} is not JSON"))
                continue
            entry_id, parent = _ids(entry, number, previous, plan.version)
            parents[entry_id], previous = parent, entry_id
            kinds[entry_id] = str(entry.get("type"))
            order.append(entry_id)
            if entry.get("type") == "compaction":
                entries[entry_id] = entry
        path: list[str] = []
        at = order[-1] if order else None
        while at is not None:
            path.append(at)
            if at not in parents:
                plan.skips.append(Skip(f"the active branch's entry {at!r} is missing (earlier "
                                       "entries of the branch are not imported)"))
                path.pop()
                break
            at = parents[at]
        path.reverse()
        plan.on_path = set(path)
        off_path = len(order) - len(path)
        if off_path:
            plan.skips.append(Skip("on another branch (not the active one)", off_path))
        self._compactions(session, path, kinds, entries)

    def _compactions(self, session: SourceSession, path: list[str], kinds: dict[str, str],
                     entries: dict[str, dict[str, Any]]) -> None:
        plan = self.plan
        index = {entry_id: at for at, entry_id in enumerate(path)}
        producing = [kinds[e] == "message" or kinds[e] in _CONTEXT_ENTRIES for e in path]
        summaries: list[tuple[int, SourceMessage]] = []  # (anchor index, summary)
        for at, entry_id in enumerate(path):
            if kinds[entry_id] != "compaction":
                continue
            entry = entries[entry_id]
            kept = entry.get("firstKeptEntryId")
            summary = entry.get("summary")
            if not isinstance(summary, str) or kept not in index or index[kept] > at:
                plan.skips.append(Skip("a compaction entry without a usable summary or "
                                       "firstKeptEntryId on the active branch"))
                continue
            moment = utc(entry.get("timestamp"), session.created_at)
            first_kept = index[kept]
            for before in range(first_kept):
                if producing[before]:
                    plan.compacted_at.setdefault(path[before], moment)
            summaries = [(anchor, _compacted(message, moment) if anchor < first_kept
                          and message.compacted_at is None else message)
                         for anchor, message in summaries]
            anchor = max((i for i in range(first_kept) if producing[i]), default=-1)
            summaries.append((anchor, SourceMessage(
                source_id=f"{self.session_id}:{entry_id}", role=Role.SYSTEM,
                content={"role": "compactionSummary", "summary": summary,
                         "tokensBefore": entry.get("tokensBefore"),
                         "timestamp": entry.get("timestamp")},
                created_at=moment, same_position=True)))
            session.compaction_count += 1
            session.last_compacted_at = moment
            session.last_compaction_summary = summary
        for anchor, message in summaries:
            owner = None if anchor < 0 else path[anchor]
            plan.summaries.setdefault(owner, []).append(message)

    def read(self, session: SourceSession) -> Iterator[SourceMessage | Skip]:
        plan = self.plan
        yield from plan.skips
        yield from plan.summaries.get(None, [])
        previous: str | None = None
        for number, entry, _last in _lines(self.path):
            if number == 1 or entry is None:
                continue
            entry_id, _parent = _ids(entry, number, previous, plan.version)
            previous = entry_id
            if entry_id not in plan.on_path:
                continue
            yield from self._message(entry, entry_id, session)
            yield from plan.summaries.get(entry_id, [])

    def _message(self, entry: dict[str, Any], entry_id: str,
                 session: SourceSession) -> Iterator[SourceMessage | Skip]:
        kind = entry.get("type")
        if kind == "compaction":
            return
        if kind in _NOT_MESSAGES:
            yield Skip(f"{kind} entry (not a message)")
            return
        moment = utc(entry.get("timestamp"), session.created_at)
        compacted = self.plan.compacted_at.get(entry_id)
        source_id = f"{self.session_id}:{entry_id}"
        if kind in _CONTEXT_ENTRIES:
            content = {k: v for k, v in entry.items() if k not in ("id", "parentId")}
            yield SourceMessage(source_id, Role.SYSTEM, content, moment, compacted_at=compacted)
            return
        if kind != "message":
            yield Skip(f"unknown entry type {kind!r}")
            return
        message = entry.get("message")
        role = message.get("role") if isinstance(message, dict) else None
        if not isinstance(message, dict) or role not in _ROLES:
            yield Skip(f"message with unknown role {role!r}")
            return
        calls = None
        if role == "assistant" and isinstance(message.get("content"), list):
            calls = [block for block in message["content"]
                     if isinstance(block, dict) and block.get("type") == "toolCall"] or None
        yield SourceMessage(source_id, _ROLES[role], message, moment, tool_calls=calls,
                            compacted_at=compacted)


def _compacted(message: SourceMessage, moment: datetime) -> SourceMessage:
    return SourceMessage(message.source_id, message.role, message.content, message.created_at,
                         compacted_at=moment, same_position=True)


# --- the directory ----------------------------------------------------------------------------


class OpenClawSource:
    kind = "openclaw"

    def __init__(self, source: str, mapping: KeyMapping | None = None) -> None:
        self.mapping = mapping or KeyMapping()
        root = Path(source).expanduser()
        if (root / "sessions.json").is_file():
            agent = root.parent.name if root.name == "sessions" else "main"
            self.stores = [(agent, root)]
        elif (root / "agents").is_dir():
            self.stores = [(folder.name, folder / "sessions")
                           for folder in sorted((root / "agents").iterdir())
                           if (folder / "sessions" / "sessions.json").is_file()]
        else:
            self.stores = []
        if not self.stores:
            sqlite = list(root.glob("agents/*/agent/openclaw-agent.sqlite"))
            hint = (" (it has OpenClaw's per-agent SQLite databases, whose table layout OpenClaw "
                    "does not document: not read by this importer)") if sqlite else ""
            raise SourceError.for_field(
                "source", f"{source}: no sessions.json (give OpenClaw's state directory or an "
                f"agent's sessions directory){hint}")

    def close(self) -> None:
        pass

    def sessions(self) -> Iterator[SourceSession]:
        for agent, folder in self.stores:
            try:
                index = json.loads((folder / "sessions.json").read_bytes())
            except (OSError, ValueError) as exc:
                raise SourceError.for_field(
                    "source", f"{folder / 'sessions.json'} cannot be read as JSON ({exc})"
                ) from None
            if not isinstance(index, dict):
                raise SourceError.for_field(
                    "source", f"{folder / 'sessions.json'}: expected a JSON object (key → entry)")
            for session_key in sorted(index):
                yield self._session(agent, folder, session_key, index[session_key])

    def _session(self, agent: str, folder: Path, session_key: str,
                 entry: Any) -> SourceSession:
        entry = entry if isinstance(entry, dict) else {}
        session_id = str(entry.get("sessionId") or "")
        file = entry.get("sessionFile")
        path = folder / (file if isinstance(file, str) and file else f"{session_id}.jsonl")
        updated = utc(entry.get("updatedAt"))
        try:
            key = map_key(session_key, agent, self.mapping)
        except InvalidInputError as exc:
            key = SessionKey(self.mapping.agent_id or agent, FALLBACK_CHANNEL, ANY,
                             PeerKind.DM, "invalid-key")
            return _failed(f"{agent}/{session_key}", key, updated,
                           f"the key cannot be mapped ({exc})")
        source_id = f"{agent}/{session_key}"
        if not session_id or not path.is_file():
            return _failed(source_id, key, updated, f"transcript {path.name} not found")
        transcript = _Transcript(path, session_id)
        started, problem = transcript.header()
        metadata = {"openclaw": {"session_key": session_key, "session_id": session_id,
                                 **{k: entry[k] for k in _KEPT_FIELDS if k in entry}}}
        tokens = entry.get("totalTokens")
        session = SourceSession(
            source_id=source_id, key=key, created_at=started or updated,
            updated_at=updated, metadata=metadata, problem=problem,
            token_usage=tokens if isinstance(tokens, int) and tokens >= 0 else 0,
            size_hint=path.stat().st_size // 2000, prepare=transcript.prepare,
            read=lambda: iter(()))
        session.read = lambda: transcript.read(session)
        return session


def _failed(source_id: str, key: SessionKey, moment: datetime, problem: str) -> SourceSession:
    return SourceSession(source_id=source_id, key=key, created_at=moment, updated_at=moment,
                         problem=problem, read=lambda: iter(()))
