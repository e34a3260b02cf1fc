"""A stand-in for systemd's notify socket: what the service sends (READY=1, STATUS=, WATCHDOG=1)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET, recording what arrives."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, OSError):
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def lines(self) -> list[str]:
        return [line for _, message in self.messages for line in message.split("\n")]

    def close(self) -> None:
        self._closed = True
        self._thread.join(1)
        self.sock.close()
