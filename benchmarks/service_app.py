"""The server the service benchmark measures: the product's app plus one benchmark-only route.

    python -m benchmarks.service_app --config service.toml --port 8123 [--workers 2]

The app is :func:`aisopod_session.service.app.create_app` on the given configuration, served
with the same uvicorn options as ``aisopod-session serve`` (its connection limits and h11
protocol with a header deadline, access log on), plus ``POST /bench/bare``: it parses the body
an append takes with the same pydantic model (``AppendBody``) and answers it back, without
authentication and without touching the store. The route exists only here, never in the
product's app. With ``--workers N`` (N > 1) the sockets are bound once and N forked processes
serve them, each with an app (and store) of its own, as uvicorn's own ``--workers`` does.
"""

from __future__ import annotations

import argparse
import multiprocessing
import signal
import socket
import sys
from types import FrameType

import uvicorn
from fastapi import FastAPI

from aisopod_session.service import server
from aisopod_session.service._bodies import AppendBody
from aisopod_session.service.app import create_app
from aisopod_session.service.config import load_config

BARE_PATH = "/bench/bare"


def create_bench_app(config_path: str) -> FastAPI:
    """The product's app on ``config_path``, plus the bare route."""
    app = create_app(load_config(config_path))

    @app.post(BARE_PATH, include_in_schema=False)
    async def bare(body: AppendBody) -> AppendBody:
        return body

    # First in line, as the session routes are (their router is the first included): routing
    # tries the routes in order, so the last route would also pay for trying every other one.
    app.router.routes.insert(0, app.router.routes.pop())
    return app


def _uvicorn_config(config_path: str) -> uvicorn.Config:
    """What ``serve`` runs (see aisopod_session.service.server), on the benchmark's app."""
    config = load_config(config_path)
    return uvicorn.Config(
        create_bench_app(config_path),
        host=config.server.host,
        port=config.server.port,
        log_level="info",
        timeout_graceful_shutdown=server.GRACEFUL_SHUTDOWN_SECONDS,
        access_log=True,
        server_header=False,
        **server.connection_limits(config.server),
    )


def _worker(config_path: str, sockets: list[socket.socket]) -> None:
    uvicorn.Server(_uvicorn_config(config_path)).run(sockets=sockets)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.service_app")
    parser.add_argument("--config", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    sockets = server.listen(args.host, args.port)
    if args.workers <= 1:
        _worker(args.config, sockets)
        return 0
    # Forked after binding: every worker accepts on the same sockets (the kernel spreads the
    # connections) and opens its own store once it starts.
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_worker, args=(args.config, sockets))
               for _ in range(args.workers)]
    for worker in workers:
        worker.start()

    def stop(signum: int, frame: FrameType | None) -> None:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for worker in workers:
        worker.join()
    return max((worker.exitcode or 0) for worker in workers)


if __name__ == "__main__":
    sys.exit(main())
