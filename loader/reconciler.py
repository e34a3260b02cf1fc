"""Make the running plugins match the plugin folders.

The filesystem is the desired state; supervisors are the actual state.
``reconcile(name)`` reads one folder, compares it with what runs and does
exactly one of: nothing, load, swap, unload, keep the old version and report,
or report the folder as waiting/invalid.  File events, the periodic rescan and
REST installs all end up here, so there is one code path for every change.
Calls for the same name are serialised; different names proceed in parallel.
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
from loader.digest import content_files
from loader.folders import FolderError, FolderLimits
from loader.log import get_logger
from loader.manifest import ManifestError, PluginSpec, load_plugin
from loader.registry import SymbolConflict, SymbolRegistry
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
        self._reported: dict[str, str] = {}
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
            return
        try:
            spec = await self._read_folder(folder)
            self.registry.check(spec, exists=lambda plugin: (self.config.plugins_dir / plugin).is_dir())
        except ManifestError as exc:
            self._not_loadable(name, folder, str(exc), exc.incomplete and await self._still_copying(folder))
            return
        except SymbolConflict as exc:
            self._not_loadable(name, folder, str(exc), False)
            return
        self._reported.pop(name, None)
        for warning in spec.warnings:
            get_logger(plugin=name).warning("plugin.manifest_warning", reason=warning)
        current = self.supervisors.get(name)
        if current is not None and current.spec.digest == spec.digest:
            return
        try:
            spec = await self._with_venv(spec, running=current is not None)
        except VenvError as exc:
            self._not_loadable(name, folder, f"{folder / 'requirements.txt'}: {exc}", False)
            return
        if current is None:
            await self._load(spec)
        elif current.spec.digest != spec.digest:
            await self._swap(current, spec)
        else:
            return
        await self._notify()

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

    def _not_loadable(self, name: str, folder: Path, error: str, still_copying: bool) -> None:
        """Report a folder that cannot be loaded now, keeping any running version.

        ``still_copying``: the folder is incomplete and changed within the grace time.
        """
        log = get_logger(plugin=name)
        first_report = self._reported.get(name) != error
        self._reported[name] = error
        running = self.supervisors.get(name)
        if running is not None:
            self.board.ensure(name).last_error = error
            if first_report:
                log.error("plugin.update_rejected", version=running.spec.version, error=error,
                          reason="the running version keeps running")
            return
        if still_copying:
            self.board.set_state(name, WAITING, last_error=error)
            if first_report:
                log.info("plugin.incomplete", error=error, reason="waiting for the folder to be complete")
            return
        previous = self.board.ensure(name).state
        self.board.set_state(name, INVALID, last_error=error, pid=None)
        if first_report or previous != INVALID:
            log.error("plugin.invalid", error=error)

    async def _load(self, spec: PluginSpec) -> None:
        self.registry.register(spec)
        supervisor = self._factory(spec)
        get_logger(plugin=spec.name).info("plugin.loading", version=spec.version, folder=str(spec.folder))
        try:
            await supervisor.open()
        except OSError as exc:
            self.registry.unregister(spec.name)
            self._not_loadable(spec.name, spec.folder, str(exc), False)
            return
        self.supervisors[spec.name] = supervisor
        await supervisor.start()

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
