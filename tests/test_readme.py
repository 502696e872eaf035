"""The README's code is executed, so its examples cannot rot."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text("utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def test_readme_names_two_commands_that_exist() -> None:
    commands = re.findall(r"^\./scripts/(\w+)", README, flags=re.MULTILINE)
    assert {"run", "test"} <= set(commands)
    for name in ("run", "test"):
        assert os.access(ROOT / "scripts" / name, os.X_OK), name
    assert "./scripts/test" in (ROOT / ".ci" / "run").read_text("utf-8")


def test_the_readme_python_runs_twice_with_the_same_results(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A reader who runs the examples again, against the files the first run left, sees the
    same (the documented patterns are idempotent)."""
    monkeypatch.chdir(tmp_path)
    outputs = []
    for _ in range(2):
        namespace: dict[str, object] = {"__name__": "readme_twice"}
        for index, block in enumerate(BLOCKS):
            exec(compile(block, f"README.md block {index}", "exec"), namespace)
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert outputs[0].count("\n") >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"readme_block_{index}"}
    # Blocks may build on earlier ones (like a reader following along), so run those first.
    for block in BLOCKS[: index + 1]:
        exec(compile(block, f"README.md block {index}", "exec"), namespace)
    printed = capsys.readouterr().out
    for expected in re.findall(r"print\(.*?\)\s+# (.+)$", BLOCKS[index], flags=re.MULTILINE):
        assert expected.split(":")[0] in printed


# --- the CLI tour -------------------------------------------------------------------------------


def _cli_session() -> list[str]:
    """The README's CLI tour, one shell command line each (comments kept: the shell drops them)."""
    block = re.search(r"```sh\n# cli-session\n(.*?)```", README, flags=re.DOTALL)
    assert block, "the README has no CLI session"
    return [line for line in block.group(1).replace("\\\n", " ").splitlines()
            if line.strip() and not line.startswith("#")]


_TIMES = re.compile(r"\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?)?")
_IDS = re.compile(r'(?m)("id": |^ id +|new session |^│ *|\(session )\d+')


def _masked(output: str) -> str:
    """What a second run may print differently: times (and the days of usage), and the ids a
    store assigns (sessions and audit records get new ones); then runs of spaces and table
    rules, whose widths follow those of the ids."""
    masked = _IDS.sub(r"\1<id>", _TIMES.sub("<time>", output))
    return re.sub(r"[ ─━═]+", " ", masked)


def _run_cli_session(cwd: Path) -> list[tuple[str, int, str, str]]:
    """Each line run by a shell as a reader would, confirming what asks first; (line, exit
    status, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AISOPOD_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "200"
    results = []
    for line in _cli_session():
        done = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, input="y\n",
                              capture_output=True, text=True, timeout=120, check=False)
        results.append((line, done.returncode, done.stdout, done.stderr))
    return results


def test_the_readme_cli_session_runs_twice_with_the_same_results(tmp_path: Path) -> None:
    """Issue 19: the README's CLI examples, run as written, twice on the same database."""
    first, second = _run_cli_session(tmp_path), _run_cli_session(tmp_path)
    for line, status, stdout, stderr in first:
        assert status == 0, (line, stdout, stderr)
        assert "Traceback" not in stdout + stderr, line
    copy = next(i for i, (line, *_) in enumerate(first) if "copy.db import" in line)
    for index, (run1, run2) in enumerate(zip(first, second, strict=True)):
        line, _, out1, err1 = run1
        if index == copy:  # the copy keeps the first run's sessions: skipped the second time
            assert re.search(r"imported 4 sessions, \d+ messages$", out1.strip())
            assert out1.splitlines()[0] == run2[2].splitlines()[0]  # wrote N lines
            assert re.search(r"imported 0 sessions, 0 messages; skipped 4 sessions already "
                             r"stored$", run2[2].strip()), run2[2]
            continue
        assert (run2[1], _masked(run2[2]), _masked(run2[3])) == (0, _masked(out1),
                                                                  _masked(err1)), line
    printed = {line: out + err for line, _, out, err in first}
    demo_line = next(line for line in printed if "aisopod_session.demo" in line)
    assert "compacted: the newest 4 of 8 messages" in printed[demo_line]
    compact_line = next(line for line in printed if " compact " in line)
    assert "nothing compacted" in printed[compact_line]
    assert "erased 1 session" in "".join(printed.values())
    assert "deleted" in printed[_cli_session()[-1]]
