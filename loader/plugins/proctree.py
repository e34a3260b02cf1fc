"""Every process a plugin started, so none outlives the plugin.

A plugin leads its own process group, and a stop signals that group.  A
child that calls ``setsid`` (a daemonising library, a plugin that forks a
helper) leaves the group; a wrapper script that does not ``exec`` leaves a
child behind when the shell alone is killed.  The parent-death signal only
reaches the plugin itself.  Such a process would survive an unload, or the
loader's death, and dial the next loader's sockets.

Two marks find them, neither needing systemd:

- the environment: every plugin is started with ``PORTABLE_LOADER_LAUNCH=
  <owner>/<token>``; children inherit it through fork, ``setsid`` and
  ``exec`` (``/proc/<pid>/environ`` is what the process was started with).
  ``owner`` is derived from the loader's data directory, ``token`` is new per
  launch, so a stop finds this launch's processes and a loader starting up
  finds whatever a previous run of the same installation left;
- the parent chain (``/proc/<pid>/stat``), taken just before a stop, for a
  descendant started with an emptied environment.

Under systemd, the unit's cgroup is the complete answer: ``KillMode=
control-group`` (the default) kills every process of the service when it
stops, whatever it did to its environment (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path

MARK = "PORTABLE_LOADER_LAUNCH"
#: How long ``end`` waits for killed processes to disappear.
GONE_WITHIN_S = 2.0
_POLL_S = 0.02
_PROC = Path("/proc")

#: The loader installation this process serves; set once by the service (``claim``).
_owner = "unclaimed"


def owner_of(data_dir: Path) -> str:
    """A short stable name for one loader installation (its data directory)."""
    return hashlib.sha256(str(Path(data_dir).absolute()).encode()).hexdigest()[:16]


def claim(data_dir: Path) -> list[int]:
    """Become the owner for ``data_dir`` and kill what earlier runs of it left; returns their pids."""
    global _owner
    _owner = owner_of(data_dir)
    leftovers = marked(f"{_owner}/")
    _signal_all(leftovers, signal.SIGKILL)
    _wait_gone(leftovers, GONE_WITHIN_S)
    return leftovers


def new_mark() -> str:
    """The environment value for one launch."""
    return f"{_owner}/{secrets.token_hex(8)}"


def marked(prefix: str) -> list[int]:
    """Pids of processes (not this one) started with ``PORTABLE_LOADER_LAUNCH`` beginning with ``prefix``."""
    needle = f"{MARK}={prefix}".encode()
    me = os.getpid()
    found: list[int] = []
    for pid in _pids():
        if pid == me:
            continue
        try:
            environ = (_PROC / str(pid) / "environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        if any(entry.startswith(needle) for entry in environ.split(b"\0")):
            found.append(pid)
    return found


def descendants(root: int) -> list[int]:
    """Pids whose parent chain leads to ``root`` (not ``root`` itself).

    Read from ``/proc/<pid>/task/<tid>/children``, which touches only the
    tree; a kernel without it gets a scan of every process's parent.
    """
    children = _children_reader()
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def _children_reader() -> Callable[[int], list[int]]:
    """A pid's children: listed by the kernel when it can, else from one scan of every process's parent."""
    if Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists():

        def listed(pid: int) -> list[int]:
            found: list[int] = []
            try:
                tasks = os.listdir(_PROC / str(pid) / "task")
            except OSError:
                return found
            for task in tasks:
                try:
                    found += [int(c) for c in (_PROC / str(pid) / "task" / task / "children").read_text().split()]
                except (OSError, ValueError):
                    continue
            return found

        return listed
    parents: dict[int, list[int]] = {}
    for pid in _pids():
        parent = _parent(pid)
        if parent is not None:
            parents.setdefault(parent, []).append(pid)
    return lambda pid: parents.get(pid, [])


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it is not)."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def signal_tree(pids: list[int], sig: int) -> None:
    """``sig`` to each pid and to the process group it leads, if it leads one (a ``setsid`` child does)."""
    _signal_all(pids, sig)


async def end(pids: list[int], mark: str | None) -> list[int]:
    """SIGKILL ``pids`` and every process of launch ``mark`` that is still alive; wait until gone.

    Returns the pids that had to be killed.
    """
    targets = sorted({*pids, *(await asyncio.to_thread(marked, mark) if mark else [])})
    targets = [pid for pid in targets if alive(pid)]
    if not targets:
        return []
    _signal_all(targets, signal.SIGKILL)
    deadline = time.monotonic() + GONE_WITHIN_S
    while any(alive(pid) for pid in targets) and time.monotonic() < deadline:
        await asyncio.sleep(_POLL_S)
    return targets


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            continue


def _wait_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(_POLL_S)


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir(_PROC) if name.isdigit()]
    except OSError:
        return []


def _parent(pid: int) -> int | None:
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return int(fields[1]) if len(fields) > 1 else None
