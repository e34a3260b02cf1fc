"""Make the running plugins match the plugin folders.

The filesystem is the desired state; supervisors are the actual state.
``reconcile(name)`` reads one folder, compares it with what runs and does
exactly one of: nothing, load, swap, unload, keep the old version and report,
or report the folder as waiting/invalid.  File events, the periodic rescan and
REST installs all end up here, so there is one code path for every change.
Calls for the same name are serialised; different names proceed in parallel.

Quiet when idle: a folder whose stat fingerprint and running version are as
the last settled look left them is not read at all (loader/fingerprint.py),
and a fault of a folder is logged once per content digest, not once per
look; a condition that repeats by itself (a control socket held by another
process) is logged at most once per interval, with a count.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import defaultdict
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable, TypeVar

from loader.config import LoaderConfig
from loader.digest import content_files, folder_digest
from loader.folders import FolderError, FolderLimits
from loader.fingerprint import FolderMemo, stat_fingerprint
from loader.log import get_logger
from loader.manifest import ManifestError, PluginSpec, load_plugin
from loader.registry import SymbolConflict, SymbolRegistry
from loader.repeats import Repeats
from loader.status import BUILDING, INVALID, WAITING, StatusBoard
from loader.supervisor import PluginSupervisor
from loader.venvs import VenvBuilder, VenvError, wants_venv

SupervisorFactory = Callable[[PluginSpec], PluginSupervisor]
T = TypeVar("T")

#: Threads of their own for reading plugin folders: a folder on a hung file
#: system ties up one of them, never the event loop or the default pool.
_FOLDER_READERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="folder-read")


def is_candidate(path: Path) -> bool:
    """Entries of the plugins folder that can be plugins: not hidden (staging, editor files)."""
    return not path.name.startswith(".") and not path.name.endswith("~")


class Reconciler:
    def __init__(self, config: LoaderConfig, board: StatusBoard, registry: SymbolRegistry,
                 factory: SupervisorFactory | None = None) -> None:
        self.config = config
        self.venvs = VenvBuilder(config.data_dir / "venvs", config.venv)
        self.board = board
        self.registry = registry
        self.supervisors: dict[str, PluginSupervisor] = {}
        self._factory = factory or (lambda spec: PluginSupervisor(spec, self.config, board))
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        #: The last fault logged per folder: (event, content digest, error); logged again only when one changes.
        self._reported: dict[str, tuple[str, str, str]] = {}
        #: The content digest whose manifest warnings were logged, per folder.
        self._warned: dict[str, str] = {}
        self.memo = FolderMemo()
        self._repeats = Repeats()
        self._closing = False
        #: Called after any plugin was loaded, swapped or unloaded (the rules follow).
        self.listeners: list[Callable[[], Awaitable[None]]] = []

    def folder_names(self) -> set[str]:
        root = self.config.plugins_dir
        if not root.is_dir():
            return set()
        return {p.name for p in root.iterdir() if is_candidate(p) and p.is_dir()}

    async def reconcile_all(self) -> None:
        names = self.folder_names() | set(self.supervisors) | set(self.board.names())
        await asyncio.gather(*(self.reconcile(name) for name in sorted(names)))

    async def reconcile(self, name: str) -> None:
        """Bring plugin ``name`` to the state its folder asks for; never raises."""
        async with self._locks[name]:
            if self._closing:
                return
            try:
                await self._reconcile(name)
            except Exception as exc:  # one plugin's failure must not take down the others
                get_logger(plugin=name).exception("plugin.reconcile_failed", error=str(exc))
                self.board.set_state(name, INVALID, last_error=str(exc))

    def hold(self, name: str) -> asyncio.Lock:
        """The lock that serialises reconciling ``name``.

        Hold it to change a plugin's folder in several steps (REST update swaps
        two folders) without a reconcile seeing the moment in between.
        """
        return self._locks[name]

    async def shutdown(self) -> None:
        """Stop every plugin (used on loader exit); later reconcile calls do nothing."""
        self._closing = True
        names = list(self.supervisors)
        await asyncio.gather(*(self._shutdown_one(name) for name in names))

    async def _shutdown_one(self, name: str) -> None:
        async with self._locks[name]:
            if name in self.supervisors:
                await self._unload(name, reason="loader stopping")

    async def _reconcile(self, name: str) -> None:
        folder = self.config.plugins_dir / name
        if not is_candidate(folder):
            return
        if not folder.is_dir():
            if name in self.supervisors:
                await self._unload(name, reason="folder removed")
                await self._notify()
            self.registry.unregister(name, forget=True)  # its symbols are free for others now
            self.board.remove(name)
            self._reported.pop(name, None)
            self._warned.pop(name, None)
            self.memo.forget(name)
            return
        try:
            fingerprint = await self._off_loop(stat_fingerprint, folder, self.config.folders)
        except ManifestError:  # the walk timed out: look anyway, and report that
            self.memo.forget(name)
            await self._look(name, folder)
            return
        if self.memo.unchanged(name, fingerprint, self._running_digest(name)):
            return  # nothing to read: the folder and what runs are as the last settled look left them
        if await self._look(name, folder):
            self.memo.remember(name, fingerprint, self._running_digest(name))
        else:
            self.memo.forget(name)

    def _running_digest(self, name: str) -> str | None:
        current = self.supervisors.get(name)
        return current.spec.digest if current is not None else None

    async def _look(self, name: str, folder: Path) -> bool:
        """Read the folder and act on it; True when the outcome is settled (see loader/fingerprint.py)."""
        try:
            spec = await self._read_folder(folder)
            self.registry.check(spec, exists=lambda plugin: (self.config.plugins_dir / plugin).is_dir())
        except ManifestError as exc:
            return self._not_loadable(name, folder, str(exc), exc.incomplete and await self._still_copying(folder))
        except SymbolConflict as exc:
            return self._not_loadable(name, folder, str(exc), False)
        self._reported.pop(name, None)
        if self._warned.get(name) != spec.digest:  # once per content, not per look
            self._warned[name] = spec.digest
            for warning in spec.warnings:
                get_logger(plugin=name).warning("plugin.manifest_warning", reason=warning)
        current = self.supervisors.get(name)
        if current is not None and current.spec.digest == spec.digest:
            return True
        try:
            spec = await self._with_venv(spec, running=current is not None)
        except VenvError as exc:
            return self._not_loadable(name, folder, f"{folder / 'requirements.txt'}: {exc}", False)
        settled = True
        if current is None:
            settled = await self._load(spec)
        elif current.spec.digest != spec.digest:
            await self._swap(current, spec)
        else:
            return True
        await self._notify()
        return settled

    async def _with_venv(self, spec: PluginSpec, running: bool) -> PluginSpec:
        """The spec with its own interpreter when the plugin has a requirements.txt (built if needed)."""
        if not wants_venv(spec.folder, spec.manifest):
            return spec
        log = get_logger(plugin=spec.name)
        if not self.venvs.is_built(spec.folder):
            if not running:
                self.board.set_state(spec.name, BUILDING, version=spec.version, last_error=None)
            log.info("plugin.venv_building", version=spec.version, reason="requirements.txt present")
            python = await self.venvs.ensure(spec.folder)
            log.info("plugin.venv_ready", version=spec.version, python=str(python))
        return dataclasses.replace(spec, python=self.venvs.python_for(spec.folder))

    async def _notify(self) -> None:
        self.memo.forget_not_running()  # a symbol another folder conflicted on may be free now
        for listener in self.listeners:
            await listener()

    async def _read_folder(self, folder: Path) -> PluginSpec:
        """load_plugin off the event loop: a slow or hostile folder must not stall the loader."""
        return await self._off_loop(load_plugin, folder, self.config.folders)

    async def _still_copying(self, folder: Path) -> bool:
        """Whether an incomplete folder changed within the grace time (a copy may still be going on)."""
        try:
            return await self._off_loop(_recently_changed, folder, self.config.watch.incomplete_grace_s,
                                        self.config.folders)
        except ManifestError:
            return False

    async def _off_loop(self, function: Callable[..., T], folder: Path, *args: Any) -> T:
        """Run blocking folder I/O in the folder-reading threads, bounded by ``folders.timeout_s``."""
        timeout = self.config.folders.timeout_s
        future = asyncio.get_running_loop().run_in_executor(_FOLDER_READERS, function, folder, *args)
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise ManifestError(str(folder), "", f"reading the folder took longer than {timeout:g}s",
                                "check the file system, or raise folders.timeout_s") from None

    def _not_loadable(self, name: str, folder: Path, error: str, still_copying: bool) -> bool:
        """Report a folder that cannot be loaded now, keeping any running version; False while waiting.

        ``still_copying``: the folder is incomplete and changed within the grace time.
        """
        log = get_logger(plugin=name)
        running = self.supervisors.get(name)
        if running is not None:
            self.board.ensure(name).last_error = error
            if self._first_report(name, "plugin.update_rejected", folder, error):
                log.error("plugin.update_rejected", version=running.spec.version, error=error,
                          reason="the running version keeps running")
            return True
        if still_copying:
            self.board.set_state(name, WAITING, last_error=error)
            if self._first_report(name, "plugin.incomplete", folder, error):
                log.info("plugin.incomplete", error=error, reason="waiting for the folder to be complete")
            return False
        self.board.set_state(name, INVALID, last_error=error, pid=None)
        if self._first_report(name, "plugin.invalid", folder, error):
            log.error("plugin.invalid", error=error)
        return True

    def _first_report(self, name: str, event: str, folder: Path, error: str) -> bool:
        """Whether this fault of this folder content has not been logged yet (once per content digest)."""
        try:
            content = folder_digest(folder, self.config.folders)
        except (FolderError, ManifestError, OSError):
            content = ""  # an unreadable folder: the error text alone tells one fault from another
        key = (event, content, error)
        if self._reported.get(name) == key:
            return False
        self._reported[name] = key
        return True

    def _control_socket_busy(self, spec: PluginSpec, error: str) -> None:
        """The control socket is held by another process: a condition that repeats, so rate-limited."""
        self.board.set_state(spec.name, INVALID, last_error=error, pid=None)
        held_back = self._repeats.check((spec.name, "control_socket"))
        if held_back is not None:
            get_logger(plugin=spec.name).error("plugin.invalid", error=error, repeated=held_back)

    async def _load(self, spec: PluginSpec) -> bool:
        """Start a supervisor for ``spec``; False when its control socket could not be opened (retried later)."""
        self.registry.register(spec)
        supervisor = self._factory(spec)
        key = (spec.name, "control_socket")
        if not self._repeats.active(key):  # retries while another process holds the socket are not news
            get_logger(plugin=spec.name).info("plugin.loading", version=spec.version, folder=str(spec.folder))
        try:
            await supervisor.open()
        except OSError as exc:
            self.registry.unregister(spec.name)
            self._control_socket_busy(spec, str(exc))
            return False
        self._repeats.clear(key)
        self.supervisors[spec.name] = supervisor
        await supervisor.start()
        return True

    async def _swap(self, supervisor: PluginSupervisor, spec: PluginSpec) -> None:
        old = supervisor.spec.version
        get_logger(plugin=spec.name).info("plugin.updating", version=spec.version, previous_version=old)
        self.registry.register(spec)
        ok = await supervisor.swap(spec)
        if ok:
            get_logger(plugin=spec.name).info("plugin.updated", version=spec.version, previous_version=old,
                                              pid=supervisor.process.pid if supervisor.process else None)

    async def _unload(self, name: str, reason: str) -> None:
        supervisor = self.supervisors.pop(name)
        await supervisor.stop()
        self.registry.unregister(name)
        get_logger(plugin=name).info("plugin.unloaded", version=supervisor.spec.version, reason=reason)


def _recently_changed(folder: Path, grace_s: float, limits: FolderLimits) -> bool:
    """Whether anything in ``folder`` changed within ``grace_s`` (a copy may still be going on)."""
    try:
        newest = folder.stat().st_mtime
        files = content_files(folder, limits)
    except (OSError, FolderError):
        return False
    for path in files:
        try:
            newest = max(newest, path.stat().st_mtime)
        except OSError:
            continue
    return time.time() - newest < grace_s
