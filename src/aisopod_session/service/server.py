"""Running the service with uvicorn: the ``serve`` command, and :class:`BackgroundService` (the
service on a thread of this process, for tests and examples)."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from aisopod_session.service.app import create_app
from aisopod_session.service.config import DEFAULT_DB_URL, ServerSettings, ServiceConfig
from aisopod_session.store import AsyncSessionStore

log = logging.getLogger("aisopod_session.service")
uvicorn_log = logging.getLogger("uvicorn.error")

GRACEFUL_SHUTDOWN_SECONDS = 30


def prepare_database_dir(config: ServiceConfig) -> None:
    """The default database's folder is made when missing; a configured path's must exist (a
    mistyped one must not leave folders behind)."""
    if config.database.url == DEFAULT_DB_URL:
        Path(DEFAULT_DB_URL.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


class ListenError(OSError):
    """The service cannot listen where its configuration says (a port in use, an address that
    is not this machine's): one sentence with what to change."""


def serve(config: ServiceConfig) -> None:
    """Serve until SIGINT/SIGTERM; in-flight requests finish and the store closes cleanly.
    Raises :class:`ListenError` before anything starts when the address cannot be listened
    on."""
    config.check_bind_address()
    sockets = listen(config.server.host, config.server.port)
    try:
        _serve_on(config, sockets)
    finally:
        for sock in sockets:
            sock.close()


def listen(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to every address of ``host`` (as asyncio's create_server binds them), bound
    before the app starts: uvicorn binds after the application's startup and reports a port in
    use as an errno after "Application startup complete"."""
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {host!r}: {exc.strerror}; pass --host or set "
                          "[server] host") from None
    sockets: list[socket.socket] = []
    bound: set[tuple[int, Any]] = set()
    try:
        for family, kind, proto, _, address in addresses:
            if (family, address) in bound:  # getaddrinfo may name an address twice
                continue
            bound.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # as asyncio: IPv4 gets its own socket
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(f"port {port} is in use on {host}; pass --port or set [server] "
                              "port") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise ListenError(f"not allowed to listen on port {port} (ports below 1024 need "
                              "privileges); pass --port or set [server] port") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ListenError(f"{host} is not an address of this machine; pass --host or set "
                              "[server] host") from None
        raise ListenError(f"cannot listen on {host} port {port}: {exc.strerror}") from None
    return sockets


def _serve_on(config: ServiceConfig, sockets: list[socket.socket]) -> None:
    prepare_database_dir(config)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not config.auth_enabled:
        log.warning(
            "no tokens configured: the API is open to every local user, so it listens on %s "
            "only. Configure [[tokens]] or AISOPOD_ADMIN_TOKEN before exposing it.",
            config.server.host,
        )
    log.info("database: %s", _redact(config.database.url))
    _ServedOnSockets(uvicorn.Config(
        create_app(config),
        host=config.server.host,
        port=config.server.port,
        log_level="info",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        access_log=True,
        server_header=False,
        **connection_limits(config.server),
    )).run(sockets=sockets)


def connection_limits(server: ServerSettings) -> dict[str, Any]:
    """uvicorn's options for ``[server]``'s connection limits, and its HTTP protocol: h11 with
    a deadline for a request's headers (uvicorn has none: a client sending its headers slowly,
    or never, would hold the connection forever)."""
    return {
        "limit_concurrency": server.limit_concurrency,
        "timeout_keep_alive": server.timeout_keep_alive,
        "h11_max_incomplete_event_size": server.max_incomplete_event_size,
        "http": _with_header_timeout(server.header_timeout),
    }


def _with_header_timeout(seconds: float) -> type[H11Protocol]:
    class HeaderTimeoutProtocol(H11Protocol):
        """Closes a connection that has not sent a whole request head ``seconds`` after it
        opened or after its previous response."""

        _head_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_deadline is not None:
                self._head_deadline.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._head_deadline is not None:
                self._head_deadline.cancel()
            self._head_deadline = self.loop.call_later(seconds, self._expire)

        def _expire(self) -> None:
            self._head_deadline = None
            # their state leaves IDLE once a whole request line and headers arrived
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol


class Server(uvicorn.Server):
    """uvicorn's server, telling the app's open change streams to end when it shuts down:
    uvicorn waits for every open response before it stops, and a stream never ends by itself."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        stopping = getattr(getattr(self.config.app, "state", None), "stopping", None)
        if isinstance(stopping, asyncio.Event):
            stopping.set()
        await super().shutdown(sockets)


class _ServedOnSockets(Server):
    """The server of :func:`serve`, on the sockets it bound: says where it listens once started,
    as uvicorn does only for sockets it binds itself."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        for sock in sockets or ():
            host, port = sock.getsockname()[:2]
            shown = f"[{host}]" if sock.family == socket.AF_INET6 else host
            uvicorn_log.info("Uvicorn running on http://%s:%d (Press CTRL+C to quit)", shown,
                             port)


def _redact(url: str) -> str:
    import re

    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)


class BackgroundService:
    """The service on a thread of this process, on a free loopback port: for tests and examples
    that want a real server without a second process.

    ``with BackgroundService(config) as service:`` starts it (opening ``config.database``, or
    serving ``store`` when one is given: the caller keeps owning that one) and stops it at the
    end; ``service.url`` is ``http://127.0.0.1:PORT``.
    """

    START_SECONDS = 30.0

    def __init__(self, config: ServiceConfig | None = None, *,
                 store: AsyncSessionStore | None = None) -> None:
        config = config or ServiceConfig()
        prepare_database_dir(config)
        # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that name it, and without
        # it every answer waits 40 ms for the client's delayed ACK (Nagle's algorithm).
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        self._server = Server(uvicorn.Config(
            create_app(config, store), log_level="warning", lifespan="on", server_header=False,
            **connection_limits(config.server)))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [listener]},
                                        name="aisopod-service", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.START_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("the service did not start (see the log above)")
            time.sleep(0.005)

    @classmethod
    def over(cls, database: str, config: ServiceConfig | None = None,
             **options: object) -> BackgroundService:
        """The service over a store opened here on ``database`` with the store's ``options``
        (durability, policies, …), closed again when the service stops."""
        store = asyncio.run(AsyncSessionStore.open(database, **options))  # type: ignore[arg-type]
        try:
            service = cls(config, store=store)
        except BaseException:
            asyncio.run(store.close())
            raise
        service._owned = store
        return service

    _owned: AsyncSessionStore | None = None

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=GRACEFUL_SHUTDOWN_SECONDS)
        if self._owned is not None:
            asyncio.run(self._owned.close())
            self._owned = None

    def __enter__(self) -> BackgroundService:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
