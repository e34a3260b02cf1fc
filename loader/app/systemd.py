"""Telling systemd how the service is doing (sd_notify), without a dependency.

The protocol is one datagram of ``KEY=value`` lines to the unix socket named
by ``$NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace).  When
the variable is unset (not under systemd, or ``Type=simple``) every call
does nothing.

The watchdog ping is sent by a task on the loader's event loop, so it stops
when the loop stops turning: systemd then kills and restarts a loader whose
control plane is stuck, which a ping from a separate thread would hide.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable

from loader.log import get_logger


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._address: str | None = None
        if address:
            self._address = "\0" + address[1:] if address.startswith("@") else address
        self._socket: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *lines: str) -> None:
        if self._address is None:
            return
        if self._socket is None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._socket.sendto("\n".join(lines).encode(), self._address)
        except OSError as exc:  # systemd gone or socket full: never fatal for the service
            get_logger().warning("systemd.notify_failed", error=str(exc))

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        """Reload begins; ``ready`` ends it.  MONOTONIC_USEC lets systemd match it to the reload it asked for."""
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}", "STATUS=reloading the configuration")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")


def watchdog_interval() -> float | None:
    """Seconds between pings (half of ``WatchdogSec``), or None if the watchdog is off for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1_000_000 / 2
    except ValueError:
        return None


async def keep_notifying(
    notifier: Notifier, status: Callable[[], str], interval: float | None, status_every: float = 2.0
) -> None:
    """Ping the watchdog (when enabled) and refresh STATUS= when it changes, from the event loop."""
    period = min(interval, status_every) if interval else status_every
    last_status = ""
    loop = asyncio.get_running_loop()
    next_ping = loop.time()
    while True:
        now = loop.time()
        if interval and now >= next_ping:
            notifier.watchdog()
            next_ping = now + interval
        current = status()
        if current != last_status:
            notifier.status(current)
            last_status = current
        await asyncio.sleep(period)
