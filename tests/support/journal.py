"""A stand-in journald on a real datagram socket, and a loader started with its stdout on it."""

from __future__ import annotations

import array
import os
import socket
import struct
import sys
import threading
import time
from pathlib import Path

from tests.support.loader_process import REPO


def parse_entry(data: bytes) -> dict[str, str]:
    """Decode one native-protocol entry: ``NAME=value\\n`` or ``NAME\\n<le64 size><bytes>\\n``."""
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        end = data.index(b"\n", pos)
        line = data[pos:end]
        if b"=" in line:
            name, _, value = line.partition(b"=")
            fields[name.decode()] = value.decode()
            pos = end + 1
        else:
            (size,) = struct.unpack("<Q", data[end + 1 : end + 9])
            value = data[end + 9 : end + 9 + size]
            assert data[end + 9 + size : end + 10 + size] == b"\n", "binary field not terminated by a newline"
            fields[line.decode()] = value.decode()
            pos = end + 10 + size
    return fields


class FakeJournal:
    """journald's socket, played by the test: records every entry (datagram or memfd)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.entries: list[dict[str, str]] = []
        self.via_memfd = 0
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        fd_size = array.array("i").itemsize
        while not self._closed:
            try:
                data, ancillary, _flags, _addr = self.sock.recvmsg(1 << 20, socket.CMSG_SPACE(fd_size))
            except (TimeoutError, OSError):
                continue
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fd = array.array("i", payload[:fd_size])[0]
                    with os.fdopen(fd, "rb") as handle:  # journald maps it; the offset is the sender's
                        handle.seek(0)
                        data = handle.read()
                    self.via_memfd += 1
            with self._cond:
                self.entries.append(parse_entry(data))
                self._cond.notify_all()

    def wait_for(self, timeout: float = 15.0, **match: str) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for entry in self.entries:
                    if all(entry.get(k) == v for k, v in match.items()):
                        return entry
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no journal entry {match}; got {[e.get('EVENT') for e in self.entries]}")
                self._cond.wait(min(remaining, 0.2))

    def close(self) -> None:
        self._closed = True
        self._thread.join(1)
        self.sock.close()


def start_under_journal(processes, tmp_path: Path, ipc_dir: Path, socket_path: Path, plugins: Path):
    """The loader with stdout a pipe whose dev:ino is in JOURNAL_STREAM, as systemd sets it up."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    config = data / "loader.yaml"
    config.write_text(
        f"plugins_dir: {plugins}\nipc_dir: {ipc_dir}\ndata_dir: {data}\nrest: 'off'\n"
        "log: {format: json, level: info}\nwatch: {settle_ms: 100, rescan_s: 1}\n"
        "updates: {probation_s: 0.1}\n"
    )
    read_end, write_end = os.pipe()
    info = os.fstat(write_end)
    env = dict(
        os.environ,
        PYTHONUNBUFFERED="1",
        JOURNAL_STREAM=f"{info.st_dev}:{info.st_ino}",
        PORTABLE_LOADER_JOURNAL_SOCKET=str(socket_path),
    )
    proc = processes.popen(
        [sys.executable, "-m", "loader", "serve", "--config", str(config)],
        stdout=write_end,
        stderr=write_end,
        cwd=REPO,
        env=env,
    )
    os.close(write_end)
    stdout = os.fdopen(read_end, "r")
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(stdout), daemon=True).start()
    return proc, lines
