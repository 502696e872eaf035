"""The README's code is executed, so its examples cannot rot."""

from __future__ import annotations

import os
import re
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
