"""The frameworks are optional: importing aisopod-session never imports one."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_library_imports_no_framework() -> None:
    code = (
        "import sys, aisopod_session, aisopod_session.integrations\n"
        "loaded = [m for m in ('agents', 'google.adk', 'langchain_core', 'langgraph')\n"
        "          if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
