"""Where changes to a watched folder come from, and the one loop per folder that acts on them.

The files are the desired state.  The loader watches three folders: plugins,
streams and rules.  Changes are noticed by *change sources*, all with the
same small interface:

- ``FolderWatcher`` (loader/app/watcher.py), the watchdog observer: one name
  changed (a plugin folder, a ``<name>.json``);
- ``PeriodicRescan`` (here): look at everything again every
  ``watch.rescan_s``, because an event can be missed (a full inotify queue,
  a file system that reports nothing for a symlink's target).

Every source of a folder feeds that folder's ``WatchedFolder``.  A changed
name goes through the settle timer (``Debouncer``) to ``reconcile(name)``.
A rescan first lets every source refresh itself (the watcher re-arms the
watches on symlinked plugin folders), then runs ``reconcile_all()``.
Nothing else decides when a folder is read. A new kind of source (a
polling one for file systems without inotify, say) is one more class with
``start``, ``refresh`` and ``stop``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from loader.log import get_logger
from loader.tasks import Backoff, repeat, report_failure


class FolderEvents(Protocol):
    """What a change source tells its folder."""

    def changed(self, name: str) -> None: ...

    async def rescan(self) -> None: ...


class ChangeSource(Protocol):
    """Something that notices changes to one watched folder."""

    def start(self, folder: FolderEvents) -> None: ...

    def refresh(self) -> None:
        """Called before each full rescan of the folder: re-arm whatever the source can no longer see."""

    def stop(self) -> None: ...


class Debouncer:
    """Calls ``action(name)`` once ``name`` has had no poke for ``settle_s`` seconds.

    ``settle_s`` may be a function, read at every poke, so a reload's new
    settle time applies to the next change.
    """

    def __init__(self, settle_s: float | Callable[[], float], action: Callable[[str], Awaitable[None]]) -> None:
        self._settle = settle_s if callable(settle_s) else (lambda: settle_s)
        self._action = action
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._failures: dict[str, Backoff] = {}

    @property
    def settle_s(self) -> float:
        return self._settle()

    def poke(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        self._timers[name] = loop.call_later(self.settle_s, self._fire, name)

    def _fire(self, name: str) -> None:
        self._timers.pop(name, None)
        task = asyncio.get_running_loop().create_task(self._run(name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, name: str) -> None:
        """The action for one name; a failure is logged and the name retried after a growing delay."""
        try:
            await self._action(name)
        except Exception as exc:  # the debouncer serves every later poke, and retries this one
            backoff = self._failures.setdefault(name, Backoff())
            delay = report_failure("debouncer", exc, backoff, name=name)
            timer = self._timers.pop(name, None)
            if timer is not None:
                timer.cancel()
            self._timers[name] = asyncio.get_running_loop().call_later(max(delay, self.settle_s), self._fire, name)
        else:
            self._failures.pop(name, None)

    def cancel(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()


class WatchedFolder:
    """One watched folder: its change sources, its settle timer, and what reconciles it."""

    def __init__(
        self,
        kind: str,
        path: Path,
        reconcile: Callable[[str], Awaitable[None]],
        reconcile_all: Callable[[], Awaitable[None]],
        settle_s: Callable[[], float],
        sources: list[ChangeSource],
    ) -> None:
        self.kind = kind
        self.path = path
        self.reconcile = reconcile
        self.reconcile_all = reconcile_all
        self.sources = sources
        self.debouncer = Debouncer(settle_s, self._reconcile_settled)

    def start(self) -> None:
        for source in self.sources:
            source.start(self)

    def stop(self) -> None:
        for source in self.sources:
            source.stop()
        self.debouncer.cancel()

    def changed(self, name: str) -> None:
        """A source saw ``name`` change: reconcile it once it has been quiet for the settle time."""
        self.debouncer.poke(name)

    async def _reconcile_settled(self, name: str) -> None:
        await self.reconcile(name)
        # Debug level: the countable "this change has been looked at" a test (or an operator
        # following a change) waits for, instead of sleeping and hoping the loader got to it.
        get_logger().debug("reconcile.done", folder=self.kind, name=name)

    async def rescan(self) -> None:
        """Refresh every source, then look at every name of the folder."""
        for source in self.sources:
            source.refresh()
        await self.reconcile_all()
        get_logger().debug("rescan.done", folder=self.kind)


class PeriodicRescan:
    """A change source that asks for a full rescan every ``interval()`` seconds.

    The first pass comes ``interval()`` after ``begin()`` returned (the
    service's first full scan: a rescan racing it would only redo its work).
    A pass that fails is logged (``task.failed``, task ``rescan``) and backed
    off; the next one still runs.
    """

    def __init__(self, interval: Callable[[], float], begin: Callable[[], Awaitable[object]] | None = None) -> None:
        self.interval = interval
        self._begin = begin
        self._task: asyncio.Task[None] | None = None

    def start(self, folder: FolderEvents) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(folder), name="rescan")

    async def _run(self, folder: FolderEvents) -> None:
        if self._begin is not None:
            await self._begin()
        await repeat("rescan", folder.rescan, self.interval)

    def refresh(self) -> None:
        pass

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
