"""Connection limits uvicorn's h11 protocol does not have.

uvicorn bounds idle keep-alive connections (``timeout_keep_alive``) and
answers 503 past ``limit_concurrency``, but only once a request is complete:
a client that opens connections and never finishes its headers holds each
one, and its file descriptor, forever.  1,100 of them took every descriptor
the loader had, and a killed plugin could not be restarted.

``guarded_protocol`` subclasses the protocol with three bounds
(``limits`` in the configuration):

- ``rest_max_connections``: a new connection past it closes the oldest one
  that is not in the middle of a request (it has not sent whole headers, or
  it idles between requests); when every connection is busy with a request,
  the new one is answered 503 and closed;
- ``rest_header_timeout_s``: headers must be complete this long after the
  connection opened or its previous answer was sent;
- ``rest_body_timeout_s``: a request body that sends nothing for this long
  is cut off (not counted while the app has paused reading).

Closed connections are counted and reported as one ``api.connections_limited``
event per ``REPORT_EVERY_S``, never one per connection.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from loader.config import LimitSettings
from loader.log import get_logger

REPORT_EVERY_S = 30.0
#: Shaped as every other error of the API (loader/api/errors.py): eKuiper's JSON, served as text.
_BUSY_BODY = b'{"error":1000,"message":"too many open connections (limits.rest_max_connections)","code":"busy"}\n'
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


class _Report:
    """Counts of connections closed by a limit, logged at most once per period."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.last = 0.0

    def add(self, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        now = time.monotonic()
        if now - self.last >= REPORT_EVERY_S:
            self.last = now
            counts, self.counts = self.counts, {}
            get_logger().warning(
                "api.connections_limited",
                closed=counts,
                period_s=REPORT_EVERY_S,
                reason="clients opened too many connections or sent requests too slowly (limits.rest_*)",
            )


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a connection limit and header/body read deadlines."""

    limits: LimitSettings = LimitSettings()
    report: _Report = _Report()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        now = time.monotonic()
        self._opened = self._idle_since = self._last_data = now
        self._check_timer: asyncio.TimerHandle | None = None
        self._make_room()
        if not self.transport.is_closing():
            self._schedule()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._check_timer is not None:
            self._check_timer.cancel()
            self._check_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._last_data = time.monotonic()
        super().data_received(data)

    def on_response_complete(self) -> None:
        self._idle_since = time.monotonic()
        super().on_response_complete()

    # ---------------------------------------------------------------- limits

    def in_request(self) -> bool:
        """Headers complete and the answer not yet sent."""
        return self.cycle is not None and not self.cycle.response_complete

    def _make_room(self) -> None:
        """Past the limit: close the oldest connection not in a request, or refuse this one."""
        open_now = sum(1 for c in self.connections if not c.transport.is_closing())
        if open_now <= self.limits.rest_max_connections:
            return
        others = [
            c
            for c in self.connections
            if c is not self
            and isinstance(c, GuardedH11Protocol)
            and not c.in_request()
            and not c.transport.is_closing()
        ]
        if others:
            oldest = min(others, key=lambda c: c._opened)
            oldest._close("evicted")
            return
        self.transport.write(_BUSY)
        self._close("refused")

    def _schedule(self) -> None:
        interval = min(self.limits.rest_header_timeout_s, self.limits.rest_body_timeout_s) / 4
        self._check_timer = self.loop.call_later(max(0.05, interval), self._check)

    def _check(self) -> None:
        self._check_timer = None
        if self.transport.is_closing():
            return
        now = time.monotonic()
        if not self.in_request():
            if now - self._idle_since >= self.limits.rest_header_timeout_s:
                self._close("header_timeout")
                return
        elif (
            self.cycle.more_body
            and not self.flow.read_paused
            and now - self._last_data >= self.limits.rest_body_timeout_s
        ):
            self._close("body_timeout")
            return
        self._schedule()

    def _close(self, reason: str) -> None:
        self.report.add(reason)
        self.transport.close()


def guarded_protocol(limits: LimitSettings) -> type[GuardedH11Protocol]:
    """The protocol class for one server, with its limits."""
    attributes: dict[str, Any] = {"limits": limits, "report": _Report()}
    return type("GuardedH11", (GuardedH11Protocol,), attributes)
