"""Serving the REST API from the loader's own event loop with uvicorn.

uvicorn is used as a library: no worker processes, no reloader, no logging
configuration of its own (its few messages are forwarded as log events),
and no signal handlers — the loader owns SIGTERM/SIGINT and stops the server
itself.  The listening socket is bound here, so a port already in use is a
clear log event rather than uvicorn exiting the process.  The protocol is
uvicorn's h11 one with connection limits and read deadlines
(loader/api/guard.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn

from loader.api.app import build_app
from loader.api.guard import guarded_protocol
from loader.api.view import LoaderView
from loader.diagnostics import LogRecordsAsEvents
from loader.log import get_logger

STARTUP_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """The loader handles signals; uvicorn must not replace its handlers."""
        yield


def _route_uvicorn_logs() -> None:
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = [LogRecordsAsEvents("api.server_log")] if name == "uvicorn" else []
        logger.propagate = name != "uvicorn"
        logger.setLevel(logging.WARNING)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6 literal or name)."""
    host = host.strip("[]")  # [::1]:9081 names an IPv6 address
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    last: OSError | None = None
    for family, kind, proto, _name, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(128)
            sock.setblocking(False)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last or OSError(f"cannot resolve {host!r}")


class ApiServer:
    def __init__(self, view: LoaderView, host: str, port: int) -> None:
        self.view = view
        self.host = host
        self.port = port
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def serving(self) -> bool:
        return self._server is not None and self._server.started

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Listen and serve in the background; on failure log ``api.unavailable`` and keep the loader running."""
        log = get_logger()
        try:
            sock = bind(self.host, self.port)
        except OSError as exc:
            log.error(
                "api.unavailable",
                rest=f"{self.host}:{self.port}",
                error=str(exc),
                reason="the loader runs without its REST API; free the port or change rest in the config",
            )
            return
        self.port = sock.getsockname()[1]
        _route_uvicorn_logs()
        config = uvicorn.Config(
            build_app(self.view),
            lifespan="off",
            log_config=None,
            access_log=False,
            http=guarded_protocol(self.view.config.limits),
            ws="none",
            # asyncio accepts up to ``backlog`` connections per loop pass, before any of them can
            # be looked at: kept small, so a burst cannot take descriptors past the connection limit.
            backlog=max(1, min(128, self.view.config.limits.rest_max_connections)),
            interface="asgi3",
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=5,
            log_level=logging.WARNING,
        )
        self._server = _Server(config)
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]), name="rest-api")
        deadline = asyncio.get_running_loop().time() + STARTUP_TIMEOUT_S
        while not self._server.started and not self._task.done():
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.01)
        if not self._server.started:
            error = _task_error(self._task)
            log.error(
                "api.unavailable",
                rest=f"{self.host}:{self.port}",
                error=error,
                reason="the loader runs without its REST API",
            )
            await self.stop()
            return
        log.info(
            "api.listening",
            host=self.host,
            port=self.port,
            token=bool(self.view.config.rest_token),
            openapi=f"http://{self.host}:{self.port}/openapi.json",
        )

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), STOP_TIMEOUT_S)
        except (TimeoutError, Exception):
            self._server.force_exit = True
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        self._server = None
        get_logger().info("api.stopped")


def _task_error(task: asyncio.Task[None]) -> str:
    if not task.done():
        return f"not serving after {STARTUP_TIMEOUT_S:g}s"
    if task.cancelled():
        return "cancelled"
    exc = task.exception()
    return str(exc) if exc is not None else "the server stopped at start-up"
