"""Finding 10, the connection limit's two answers, on uvicorn in this process.

Past ``rest_max_connections`` a new connection closes the oldest one that is
not in the middle of a request; when every connection is in a request, the
new one is answered 503 ``busy`` and closed.
"""

from __future__ import annotations

import asyncio
import socket

import uvicorn

from loader.api.guard import guarded_protocol
from loader.config import LimitSettings


async def _slow_app(scope, receive, send) -> None:  # noqa: ANN001 - ASGI
    if scope["type"] != "http":
        return
    await asyncio.sleep(0.5 if scope["path"] == "/slow" else 0)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), 3)


async def _scenario() -> None:
    limits = LimitSettings(rest_max_connections=2, rest_header_timeout_s=5, rest_body_timeout_s=5)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        _slow_app,
        lifespan="off",
        log_config=None,
        access_log=False,
        http=guarded_protocol(limits),
        ws="none",
        backlog=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        # Two connections without a whole request; a third evicts the oldest.
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        idle[0][1].write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        await asyncio.sleep(0.1)
        third = await asyncio.open_connection("127.0.0.1", port)
        assert await _read_all(idle[0][0]) == b"", "the oldest idle connection was not closed"
        third[1].write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200 OK" in await asyncio.wait_for(third[0].readuntil(b"ok"), 3)
        for _, writer in (idle[1], third):
            writer.close()
        await asyncio.sleep(0.1)

        # Two connections in the middle of a request: a third is answered 503 and closed.
        busy = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        for _, writer in busy:
            writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(0.1)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        refused = await _read_all(reader)
        assert refused.startswith(b"HTTP/1.1 503") and b'"busy"' in refused, refused
        writer.close()
        for reader, writer in busy:  # the requests in progress were not disturbed
            assert b"200 OK" in await asyncio.wait_for(reader.readuntil(b"ok"), 3)
            writer.close()
    finally:
        server.should_exit = True
        await task


def test_limit_evicts_the_oldest_idle_connection_else_refuses_with_503():
    asyncio.run(_scenario())
