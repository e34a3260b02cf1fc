"""Counting opens of files with inotify (ctypes, Linux only): did the loader read a file?

The loader cannot be asked whether it read a manifest; the kernel can.  An
``IN_OPEN`` watch on each file counts every open by any process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
import time
from pathlib import Path

IN_OPEN = 0x00000020
IN_NONBLOCK = 0o4000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class OpenCounter:
    """Counts IN_OPEN events per file name, watching the files' folders (so a file replaced by rename still counts)."""

    def __init__(self, paths: list[Path]) -> None:
        self.fd = _libc.inotify_init1(IN_NONBLOCK)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self._folders: dict[int, Path] = {}
        self.counts: dict[Path, int] = {path: 0 for path in paths}
        for folder in {path.parent for path in paths}:
            wd = _libc.inotify_add_watch(self.fd, os.fsencode(folder), IN_OPEN)
            if wd < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch failed for {folder}")
            self._folders[wd] = folder

    def poll(self, timeout: float = 0.0) -> int:
        """Read pending events (waiting up to ``timeout`` for the first); the total count so far."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            while True:
                try:
                    data = os.read(self.fd, 65536)
                except BlockingIOError:
                    break
                offset = 0
                while offset < len(data):
                    wd, mask, _, length = _EVENT.unpack_from(data, offset)
                    name = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
                    offset += _EVENT.size + length
                    path = self._folders[wd] / os.fsdecode(name) if wd in self._folders and name else None
                    if mask & IN_OPEN and path in self.counts:
                        self.counts[path] += 1
        return self.total

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def wait_for(self, total: int, timeout: float) -> int:
        """Block until at least ``total`` opens were counted, or the timeout; the count."""
        deadline = time.monotonic() + timeout
        while self.poll(0) < total and time.monotonic() < deadline:
            self.poll(min(0.2, max(0.0, deadline - time.monotonic())))
        return self.total

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> OpenCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
