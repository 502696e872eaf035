"""Runs one import in a process of its own for the SIGKILL test: small batches, and a pause
after each session so the test can kill it halfway."""

from __future__ import annotations

import sys
import time

from aisopod_session import SessionStore
from aisopod_session.importers import _run, import_sessions, open_source


def main() -> None:
    target, source = sys.argv[1], sys.argv[2]
    _run.BATCH_MESSAGES = 200  # two sessions of 100 items per transaction
    with SessionStore.open(target) as store:
        opened = open_source("openai-agents", source)
        import_sessions(store, opened, progress=lambda done, total, read: time.sleep(0.05))
        opened.close()


if __name__ == "__main__":
    main()
