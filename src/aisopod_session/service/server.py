"""Running the service with uvicorn: the ``serve`` command."""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn

from aisopod_session.service.app import create_app
from aisopod_session.service.config import ServiceConfig

log = logging.getLogger("aisopod_session.service")

GRACEFUL_SHUTDOWN_SECONDS = 30


def prepare_database_dir(config: ServiceConfig) -> None:
    url = config.database.url
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)


def serve(config: ServiceConfig) -> None:
    """Serve until SIGINT/SIGTERM; in-flight requests finish and the store closes cleanly."""
    config.check_bind_address()
    prepare_database_dir(config)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not config.auth_enabled:
        log.warning(
            "no tokens configured: the API is open to every local user, so it listens on %s "
            "only. Configure [[tokens]] or AISOPOD_ADMIN_TOKEN before exposing it.",
            config.server.host,
        )
    log.info("database: %s", _redact(config.database.url))
    uvicorn.run(
        create_app(config),
        host=config.server.host,
        port=config.server.port,
        log_level="info",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        access_log=True,
        server_header=False,
    )


def _redact(url: str) -> str:
    import re

    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)
