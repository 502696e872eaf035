"""OpenClaw sources: state directories written by these tests to OpenClaw's documented
JSONL-era layout (sessions.json + one transcript per session: a header, then entries with
id / parentId)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aisopod_session import HistoryQuery, PeerKind, Role, SessionKey, SessionStore
from aisopod_session.importers import KeyMapping, SourceError
from tests.importers.conftest import contents, run_import

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in milliseconds


def stamp(n: int) -> str:
    seconds = T0 // 1000 + n
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", ".000Z")


class Transcript:
    """Entries appended as OpenClaw's SessionManager appends them: each a child of the
    current leaf."""

    def __init__(self, session_id: str, version: int = 3) -> None:
        self.lines: list[str] = [json.dumps({"type": "session", "version": version,
                                             "id": session_id, "timestamp": stamp(0),
                                             "cwd": "/work"})]
        self.leaf: str | None = None
        self.count = 0

    def add(self, kind: str, parent: str | None = "leaf", **fields: Any) -> str:
        self.count += 1
        entry_id = f"{self.count:08x}"
        entry = {"type": kind, "id": entry_id,
                 "parentId": self.leaf if parent == "leaf" else parent,
                 "timestamp": stamp(self.count), **fields}
        self.lines.append(json.dumps(entry))
        self.leaf = entry_id
        return entry_id

    def message(self, role: str, content: Any, parent: str | None = "leaf",
                **fields: Any) -> str:
        return self.add("message", parent, message={"role": role, "content": content,
                                                     "timestamp": T0 + self.count, **fields})

    def turn(self, n: int) -> list[str]:
        call = {"type": "toolCall", "id": f"call_{n}", "name": "bash",
                "arguments": {"command": f"echo {n}"}}
        return [
            self.message("user", f"run echo {n}"),
            self.message("assistant", [{"type": "text", "text": "running"}, call],
                         provider="anthropic", model="claude", stopReason="toolUse"),
            self.message("toolResult", [{"type": "text", "text": str(n)}],
                         toolCallId=f"call_{n}", toolName="bash", isError=False),
            self.message("assistant", [{"type": "text", "text": f"it printed {n}"}],
                         stopReason="stop"),
        ]


def write_state(root: Path, sessions: dict[str, Transcript], agent: str = "main",
                extra: dict[str, Any] | None = None) -> Path:
    folder = root / "agents" / agent / "sessions"
    folder.mkdir(parents=True, exist_ok=True)
    index = {}
    for key, transcript in sessions.items():
        session_id = json.loads(transcript.lines[0])["id"]
        (folder / f"{session_id}.jsonl").write_text("\n".join(transcript.lines) + "\n")
        index[key] = {"sessionId": session_id, "updatedAt": T0 + 10_000, "chatType": "direct",
                      "totalTokens": 1234, **(extra or {})}
    (folder / "sessions.json").write_text(json.dumps(index))
    return root


def test_keys_roles_tool_calls_and_order(tmp_path: Path, target: SessionStore) -> None:
    main, dm, group = Transcript("s-main"), Transcript("s-dm"), Transcript("s-thread")
    for n in range(3):
        main.turn(n)
    dm.turn(7)
    dm.add("model_change", provider="openai", modelId="gpt")
    dm.add("custom", customType="ext", data={"x": 1})
    dm.add("custom_message", customType="ext", content="injected", display=False)
    group.turn(9)
    root = write_state(tmp_path / "state", {
        "agent:main:main": main,
        "agent:main:telegram:bot1:direct:@Alice": dm,
        "agent:main:slack:group:C42:thread:1700.1": group,
    })
    report = run_import(target, "openclaw", str(root),
                        mapping=KeyMapping(channels={"telegram": "tg"}))
    by_key = {s.key: s for s in report.sessions}
    main_key = SessionKey("main", "*", "*", "dm", "*")
    dm_key = SessionKey("main", "tg", "bot1", "dm", "@Alice")
    thread_key = SessionKey.for_thread("main", "slack", "*", "C42", "1700.1")
    assert set(by_key) == {main_key.canonical(), dm_key.canonical(), thread_key.canonical()}
    assert by_key[main_key.canonical()].imported == 12
    assert by_key[dm_key.canonical()].skipped == {"model_change entry (not a message)": 1,
                                                  "custom entry (not a message)": 1}
    agent = target.for_agent("main")
    history = agent.get_history(main_key)
    assert [m.role for m in history[:4]] == [Role.USER, Role.ASSISTANT, Role.TOOL,
                                             Role.ASSISTANT]
    assert history[0].content == {"role": "user", "content": "run echo 0", "timestamp": T0}
    assert history[1].tool_calls == [{"type": "toolCall", "id": "call_0", "name": "bash",
                                      "arguments": {"command": "echo 0"}}]
    assert history[2].content["toolCallId"] == "call_0"
    assert [m.content["content"] for m in history if m.role is Role.USER] == [
        f"run echo {n}" for n in range(3)]
    assert history[0].created_at.isoformat().startswith("2026-01-01T00:00:01")
    assert history[0].external_id == "openclaw:s-main:00000001"
    dm_history = agent.get_history(dm_key)
    assert dm_history[-1].role is Role.SYSTEM
    assert dm_history[-1].content["customType"] == "ext"
    session = agent.get(dm_key)
    assert session.metadata["openclaw"]["session_key"] == \
        "agent:main:telegram:bot1:direct:@Alice"
    assert session.token_usage == 1234
    assert agent.get(thread_key).key.peer_kind is PeerKind.THREAD
    before = contents(target)
    assert run_import(target, "openclaw", str(root), mapping=KeyMapping(
        channels={"telegram": "tg"})).count("already-imported") == 3
    assert contents(target) == before


def test_compaction_entries_become_compactions(tmp_path: Path, target: SessionStore) -> None:
    transcript = Transcript("s-c")
    first = transcript.turn(0)
    second = transcript.turn(1)
    transcript.add("compaction", summary="ran echo 0", firstKeptEntryId=second[0],
                   tokensBefore=5000)
    third = transcript.turn(2)
    transcript.add("compaction", summary="ran echo 0 and 1", firstKeptEntryId=third[0],
                   tokensBefore=6000)
    transcript.turn(3)
    root = write_state(tmp_path, {"agent:main:main": transcript})
    report = run_import(target, "openclaw", str(root))
    assert report.sessions[0].imported == 16 + 2
    agent = target.for_agent("main")
    key = SessionKey("main", "*", "*", "dm", "*")
    live = agent.get_history(key)
    assert live[0].content == {"role": "compactionSummary", "summary": "ran echo 0 and 1",
                               "tokensBefore": 6000, "timestamp": stamp(14)}
    assert [m.content["content"] for m in live if m.role is Role.USER] == ["run echo 2",
                                                                          "run echo 3"]
    everything = agent.get_history(key, HistoryQuery(include_compacted=True))
    assert len(everything) == 18
    compacted = [m for m in everything if m.compacted]
    assert len(compacted) == 8 + 1  # two turns and the first summary
    session = agent.get(key)
    assert session.compaction_count == 2
    assert session.last_compaction_summary == "ran echo 0 and 1"
    assert first  # the first turn is in the transcript, compacted


def test_a_branched_transcript_imports_its_active_branch(tmp_path: Path,
                                                        target: SessionStore) -> None:
    transcript = Transcript("s-b")
    trunk = transcript.turn(0)
    transcript.turn(1)  # an abandoned branch: 4 entries
    transcript.message("user", "let us try again", parent=trunk[-1])
    transcript.message("assistant", [{"type": "text", "text": "ok"}])
    root = write_state(tmp_path, {"agent:main:main": transcript})
    report = run_import(target, "openclaw", str(root))
    assert report.sessions[0].imported == 6
    assert report.sessions[0].skipped == {"on another branch (not the active one)": 4}
    history = target.for_agent("main").get_history(SessionKey("main", "*", "*", "dm", "*"))
    assert [m.content["content"] for m in history if m.role is Role.USER] == [
        "run echo 0", "let us try again"]


def test_bad_and_partial_transcripts(tmp_path: Path, target: SessionStore) -> None:
    truncated, unknown, newer = Transcript("s-t"), Transcript("s-u"), Transcript("s-n", 4)
    truncated.turn(0)
    truncated.lines.append('{"type":"message","id":"cut","parentId":"00000004","mess')
    unknown.turn(0)
    unknown.add("hologram", data=1)
    unknown.message("user", "after it")
    newer.turn(0)
    root = write_state(tmp_path, {"agent:a:main": truncated, "agent:b:main": unknown,
                                  "agent:c:main": newer, "agent:d:main": Transcript("gone")})
    (root / "agents" / "main" / "sessions" / "gone.jsonl").unlink()
    report = {s.source_id.split("/")[1]: s for s in run_import(
        target, "openclaw", str(root)).sessions}
    assert report["agent:a:main"].outcome == "imported"
    assert report["agent:a:main"].imported == 4
    assert report["agent:a:main"].skipped == {"the last line is not JSON (a write cut short)": 1}
    assert report["agent:b:main"].skipped == {"unknown entry type 'hologram'": 1}
    assert report["agent:b:main"].imported == 5
    assert report["agent:c:main"].outcome == "failed"
    assert "version 4" in (report["agent:c:main"].reason or "")
    assert report["agent:d:main"].outcome == "failed"
    assert "not found" in (report["agent:d:main"].reason or "")
    assert {s.key.agent_id for s in target.list_all_sessions()} == {"a", "b"}


def test_a_folder_without_sessions_json_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "agents" / "main" / "agent").mkdir(parents=True)
    (tmp_path / "agents" / "main" / "agent" / "openclaw-agent.sqlite").write_bytes(b"")
    with pytest.raises(SourceError, match="does not document"):
        run_import(None, "openclaw", str(tmp_path))  # type: ignore[arg-type]
