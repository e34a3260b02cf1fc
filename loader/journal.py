"""Sending log events to journald with their priority and fields (its native protocol).

Under systemd, stdout is a stream to journald and every line arrives with
the unit's default priority and only a MESSAGE: ``journalctl -p err`` misses
the loader's errors and nothing can be matched by plugin.  The native
protocol (one datagram per entry to ``/run/systemd/journal/socket``, see
systemd's "Native Journal Protocol" document) carries any fields we choose,
so each event keeps its JSON line as MESSAGE and adds PRIORITY, EVENT,
PLUGIN, RULE, VERSION, SYMBOL and PLUGIN_PID.  This is a few lines of the
standard library; the systemd Python bindings would need libsystemd headers
to build on the device.

The loader uses it only when systemd says stdout *is* the journal: the
``JOURNAL_STREAM`` variable holds the device and inode of that stream, and
they must match stdout's (a pipe or file that merely inherited the variable
keeps getting plain lines).  Any failure to send falls back to the stream.
"""

from __future__ import annotations

import array
import errno
import fcntl
import os
import socket
import struct
from collections.abc import Mapping
from typing import Any

SOCKET_PATH = "/run/systemd/journal/socket"
IDENTIFIER = "portable-loader"

#: syslog priorities journald filters on (``journalctl -p``).
PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3, "exception": 3, "critical": 2}

#: Event key -> journal field.  ``pid`` in our events is always a plugin's
#: process; journald's own ``_PID`` is the sender (the loader) and is trusted,
#: so ours is ``PLUGIN_PID``.
FIELDS = {
    "event": "EVENT",
    "plugin": "PLUGIN",
    "rule": "RULE",
    "version": "VERSION",
    "symbol": "SYMBOL",
    "pid": "PLUGIN_PID",
}


def stream_is_journal(journal_stream: str | None, fd: int) -> bool:
    """Whether ``fd`` is the stream systemd connected to journald (``$JOURNAL_STREAM`` is ``dev:inode``)."""
    if not journal_stream:
        return False
    device, _, inode = journal_stream.partition(":")
    try:
        info = os.fstat(fd)
        return info.st_dev == int(device) and info.st_ino == int(inode)
    except (OSError, ValueError):
        return False


def entry_fields(event: Mapping[str, Any], level: str, message: str) -> dict[str, str]:
    """The journal fields of one event: MESSAGE is the rendered line, the rest are for matching."""
    fields = {"MESSAGE": message, "PRIORITY": str(PRIORITIES.get(level, 6)), "SYSLOG_IDENTIFIER": IDENTIFIER}
    for key, name in FIELDS.items():
        value = event.get(key)
        if value is not None and value != "":
            fields[name] = str(value)
    return fields


def encode(fields: Mapping[str, str]) -> bytes:
    """One entry in the native protocol: ``NAME=value\\n``, or for a value with a newline
    ``NAME\\n`` + its length as 64-bit little endian + the bytes + ``\\n``."""
    out = bytearray()
    for name, value in fields.items():
        data = value.encode("utf-8", errors="replace")
        if b"\n" in data:
            out += name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += name.encode() + b"=" + data + b"\n"
    return bytes(out)


class JournalSocket:
    """A datagram socket to journald; ``send`` says whether the entry was taken."""

    def __init__(self, path: str = SOCKET_PATH) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def send(self, fields: Mapping[str, str]) -> bool:
        data = encode(fields)
        try:
            self._sock.sendto(data, self.path)
            return True
        except OSError as exc:
            if exc.errno == errno.EMSGSIZE:  # too big for a datagram, hand it over in a sealed memfd
                return self._send_memfd(data)
            return False

    def _send_memfd(self, data: bytes) -> bool:
        """journald's way for large entries: a sealed memfd passed with SCM_RIGHTS and no payload."""
        try:
            fd = os.memfd_create("portable-loader-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        except (OSError, AttributeError):
            return False
        try:
            os.write(fd, data)
            fcntl.fcntl(
                fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
            )
            rights = (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]).tobytes())
            self._sock.sendmsg([], [rights], 0, self.path)
            return True
        except OSError:
            return False
        finally:
            os.close(fd)

    def close(self) -> None:
        self._sock.close()
