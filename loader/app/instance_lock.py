"""One loader per state: an exclusive lock on the data and IPC directories.

Two loaders on the same IPC directory fight over every plugin's control
socket, and two on the same data directory reconcile the same rules twice.
``serve`` therefore takes an exclusive ``flock`` on a lock file in each
directory before it touches anything, and writes its pid into it so a
second loader can say who holds the state.  The kernel drops the lock when
the process ends, however it ends, so a killed loader never leaves a stale
lock behind; a loader that stops cleanly also removes the files (while still
holding the lock, and a loader that locked a file just removed tries again).
The descriptors are not inherited by plugin processes (Python opens files
non-inheritable), so an orphaned plugin cannot keep it.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = "portable-loader.lock"


class AlreadyRunning(Exception):
    """Another process holds the lock of one of the directories."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        holder = f"pid {pid}" if pid is not None else "a process whose pid is not written yet"
        super().__init__(
            f"{path} is locked by another portable-loader ({holder}); only one loader may use a data or "
            "IPC directory: stop that one, or give this one other data_dir and ipc_dir"
        )


@dataclass
class DirectoryLock:
    """Held locks (path, descriptor); they last until ``release`` (or the process ends)."""

    files: list[tuple[Path, int]]

    def release(self) -> None:
        """Remove the lock files, then unlock: whoever waits finds no file, or a new one to lock."""
        for path, fd in self.files:
            try:
                path.unlink(missing_ok=True)
            finally:
                os.close(fd)
        self.files = []


def lock_directories(directories: list[Path]) -> DirectoryLock:
    """Lock each directory (created if needed) or raise AlreadyRunning naming the holder's pid."""
    held: list[tuple[Path, int]] = []
    seen: set[Path] = set()
    try:
        for directory in directories:
            path = directory.resolve() / LOCK_NAME
            if path in seen:  # data_dir == ipc_dir: a second flock on the same file would fail
                continue
            seen.add(path)
            held.append((path, _lock(path)))
    except BaseException:
        DirectoryLock(held).release()
        raise
    return DirectoryLock(held)


def _lock(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder(fd)
            os.close(fd)
            raise AlreadyRunning(path, pid) from None
        except BaseException:
            os.close(fd)
            raise
        if _still_there(path, fd):
            break
        os.close(fd)  # the holder removed this file as it stopped: lock the new one
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _still_there(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _holder(fd: int) -> int | None:
    """The pid the holder wrote into the lock file, if it did yet."""
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
