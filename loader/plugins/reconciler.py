"""Make the running plugins match the plugin folders.

The filesystem is the desired state; supervisors are the actual state.
``reconcile(name)`` reads one folder, asks ``decide`` (loader/plugins/decision.py,
a pure function) what to do, and does exactly that: nothing, load, swap,
unload, keep the old version and report, or report the folder as
waiting/invalid.  File events, the periodic rescan and REST installs all end
up here, so there is one code path for every change.  Calls for the same
name are serialised; different names proceed in parallel.

A version is started from a snapshot of its folder (loader/plugins/snapshots.py),
never from the folder itself.

Quiet when idle: a folder whose stat fingerprint and running version are as
the last settled look left them is not read at all (loader/plugins/fingerprint.py),
and a fault of a folder is logged once per content digest, not once per
look; a condition that repeats by itself (a control socket held by another
process) is logged at most once per interval, with a count.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from loader.config import FolderLimits, LiveConfig, LoaderConfig, live
from loader.log import get_logger
from loader.plugins.decision import Action, Folder, Observed, Running, decide
from loader.plugins.digest import content_files, folder_digest
from loader.plugins.fingerprint import Fingerprint, FolderMemo, stat_fingerprint
from loader.plugins.folders import FolderError
from loader.plugins.manifest import ManifestError, PluginSpec, load_plugin
from loader.plugins.snapshots import SnapshotStore
from loader.plugins.states import Lifecycle
from loader.plugins.status import PluginState, StatusBoard
from loader.plugins.supervisor import PluginSupervisor
from loader.plugins.symbols import SymbolConflict, SymbolRegistry
from loader.plugins.venvs import VenvBuilder, VenvError, wants_venv
from loader.repeats import Repeats

SupervisorFactory = Callable[[PluginSpec, Lifecycle], PluginSupervisor]
#: Running rules by the symbols of one plugin they use: ``{(kind, symbol): [rule ids]}``.
SymbolUsers = Callable[[str], dict[tuple[str, str], list[str]]]
S = PluginState
T = TypeVar("T")

#: Threads of their own for reading plugin folders: a folder on a hung file
#: system ties up one of them, never the event loop or the default pool.
_FOLDER_READERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="folder-read")


def is_candidate(path: Path) -> bool:
    """Entries of the plugins folder that can be plugins: not hidden (staging, editor files)."""
    return not path.name.startswith(".") and not path.name.endswith("~")


class _NotLoadable(Exception):
    """The folder's version cannot be loaded now; ``incomplete``: it may still be being copied."""

    def __init__(self, error: str, incomplete: bool = False, version: str | None = None) -> None:
        super().__init__(error)
        self.error, self.incomplete, self.version = error, incomplete, version


class Reconciler:
    def __init__(
        self,
        config: LoaderConfig | LiveConfig,
        board: StatusBoard,
        registry: SymbolRegistry,
        factory: SupervisorFactory | None = None,
    ) -> None:
        self.live = live(config)
        config = self.live.current
        self.venvs = VenvBuilder(config.data_dir / "venvs", lambda: self.config.venv)
        self.snapshots = SnapshotStore(config.data_dir / "snapshots", config.updates.snapshots_kept)
        self.board = board
        self.registry = registry
        self.supervisors: dict[str, PluginSupervisor] = {}
        #: Each name's state while no supervisor owns it (and handed to its supervisor).
        self.lifecycles: dict[str, Lifecycle] = {}
        self._factory = factory or self._supervisor
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
        #: Which running rules use which symbols of a plugin (set by the service to the rule manager's).
        self.symbol_users: SymbolUsers = lambda plugin: {}

    @property
    def config(self) -> LoaderConfig:
        return self.live.current

    def _supervisor(self, spec: PluginSpec, lifecycle: Lifecycle) -> PluginSupervisor:
        return PluginSupervisor(spec, self.live, self.board, lifecycle=lifecycle, on_good=self._keep_good)

    def _keep_good(self, spec: PluginSpec) -> None:
        """A version passed probation: keep its snapshot as a rollback target, prune the rest."""
        in_use = {s.spec.folder for s in self.supervisors.values()}
        in_use |= {s.good.folder for s in self.supervisors.values() if s.good is not None}
        self.snapshots.keep = self.config.updates.snapshots_kept
        self.snapshots.mark_good(spec, in_use)

    def lifecycle(self, name: str) -> Lifecycle:
        life = self.lifecycles.get(name)
        if life is None:
            life = self.lifecycles[name] = Lifecycle(name, self.board)
        return life

    def folder_names(self) -> set[str]:
        root = self.config.plugins_dir
        if not root.is_dir():
            return set()
        return {p.name for p in root.iterdir() if is_candidate(p) and p.is_dir()}

    async def reconcile_all(self) -> None:
        names = sorted(self.folder_names() | set(self.supervisors) | set(self.lifecycles) | set(self.board.names()))
        settled = await self._settled(names)
        await asyncio.gather(*(self.reconcile(name) for name in names if name not in settled))

    async def _settled(self, names: list[str]) -> set[str]:
        """The names a reconcile would leave at once: nothing in their folder or process changed.

        Their fingerprints are taken in one trip to the folder-reading threads,
        so a rescan of 200 idle plugins costs one hand-over, not 200 (each one
        a future, a timeout and a wakeup of the event loop).  A name being
        reconciled right now, or any name when the walk times out, goes the
        usual way.
        """
        try:
            fingerprints = await self._off_loop(_fingerprints, self.config.plugins_dir, names, self.config.folders)
        except ManifestError:
            return set()
        return {
            name
            for name, fingerprint in zip(names, fingerprints, strict=True)
            if not self._locks[name].locked() and self.memo.unchanged(name, fingerprint, self._running_digest(name))
        }

    async def reconcile(self, name: str) -> None:
        """Bring plugin ``name`` to the state its folder asks for; never raises."""
        async with self._locks[name]:
            if self._closing:
                return
            try:
                await self._reconcile(name)
            except Exception as exc:  # one plugin's failure must not take down the others
                get_logger(plugin=name).exception("plugin.reconcile_failed", error=str(exc))
                if name in self.supervisors:
                    self.lifecycle(name).publish(last_error=str(exc))
                else:
                    self.lifecycle(name).move(S.INVALID, last_error=str(exc), pid=None)

    def hold(self, name: str) -> asyncio.Lock:
        """The lock that serialises reconciling ``name``.

        Hold it to change a plugin's folder in several steps (REST update swaps
        two folders) without a reconcile seeing the moment in between.
        """
        return self._locks[name]

    async def shutdown(self) -> None:
        """Stop every plugin (used on loader exit); later reconcile calls do nothing."""
        self._closing = True
        # Stop the processes first, without the per-name locks: a reconcile
        # waiting for a new version's probation returns as soon as its
        # supervisor stops, instead of holding the lock for the whole period.
        await asyncio.gather(*(supervisor.stop() for supervisor in list(self.supervisors.values())))
        names = list(self.supervisors)
        await asyncio.gather(*(self._shutdown_one(name) for name in names))

    async def _shutdown_one(self, name: str) -> None:
        async with self._locks[name]:
            if name in self.supervisors:
                await self._unload(name, reason="loader stopping")

    # ------------------------------------------------------------ decide

    async def _reconcile(self, name: str) -> None:
        folder = self.config.plugins_dir / name
        if not is_candidate(folder):
            return
        if not folder.is_dir():
            await self._act(name, folder, decide(Observed(Folder.GONE), self._running(name)), None, None, {})
            self.registry.unregister(name, forget=True)  # its symbols are free for others now
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

    def _running(self, name: str) -> Running:
        current = self.supervisors.get(name)
        return Running(
            digest=current.spec.digest if current is not None else None,
            failed_digest=current.failed[0].digest if current is not None and current.failed else None,
            reporting_failure=name in self._reported or (current is not None and current.failed is not None),
        )

    async def _look(self, name: str, folder: Path) -> bool:
        """Read the folder, decide and act; True when the outcome is settled (see loader/plugins/fingerprint.py)."""
        current = self.supervisors.get(name)
        spec, problem, users = None, None, {}
        try:
            spec = await self._read(folder)
        except _NotLoadable as exc:
            problem = exc
            recent = exc.incomplete and current is None and await self._still_copying(folder)
            observed = Observed(Folder.INCOMPLETE if exc.incomplete else Folder.INVALID, recently_changed=recent)
        else:
            users = self._removed_in_use(current.spec, spec) if current is not None else {}
            observed = Observed(Folder.VALID, spec.digest, removes_used_symbols=bool(users))
        action = decide(observed, self._running(name))
        if spec is not None and self._warned.get(name) != spec.digest:  # once per content, not per look
            self._warned[name] = spec.digest
            for warning in spec.warnings:
                get_logger(plugin=name).warning("plugin.manifest_warning", reason=warning)
        return await self._act(name, folder, action, spec, problem, users)

    async def _read(self, folder: Path) -> PluginSpec:
        """load_plugin off the event loop (a slow or hostile folder must not stall the loader), then symbol claims."""
        try:
            spec = await self._off_loop(load_plugin, folder, self.config.folders)
            self.registry.check(spec, exists=lambda plugin: (self.config.plugins_dir / plugin).is_dir())
        except ManifestError as exc:
            raise _NotLoadable(str(exc), exc.incomplete, exc.version) from None
        except SymbolConflict as exc:
            raise _NotLoadable(str(exc)) from None
        return spec

    def _removed_in_use(self, old: PluginSpec, new: PluginSpec) -> dict[tuple[str, str], list[str]]:
        """Symbols ``old`` declares, ``new`` does not, and running rules use: with those rules."""
        used = self.symbol_users(old.name)
        return {
            key: rules
            for key, rules in used.items()
            if rules and key[1] in old.symbols(key[0]) and key[1] not in new.symbols(key[0])
        }

    async def _act(
        self,
        name: str,
        folder: Path,
        action: Action,
        spec: PluginSpec | None,
        problem: _NotLoadable | None,
        users: dict[tuple[str, str], list[str]],
    ) -> bool:
        """Do what ``decide`` chose; True when the outcome is settled (nothing to look at until the folder changes)."""
        if action is Action.NOTHING:
            return True
        if action in (Action.FORGET, Action.UNLOAD):
            if action is Action.UNLOAD:
                await self._unload(name, reason="folder removed")
                await self._notify()
            self.board.remove(name)
            self.lifecycles.pop(name, None)
            self._reported.pop(name, None)
            return True
        if action is Action.ACCEPT:
            self._reported.pop(name, None)
            self.supervisors[name].accept_folder()
            return True
        if action in (Action.WAIT, Action.INVALID) or (action is Action.REJECT and problem is not None):
            assert problem is not None
            return await self._not_loadable(name, folder, problem, wait=action is Action.WAIT)
        assert spec is not None
        if action is Action.REJECT:
            await self._not_loadable(name, folder, _NotLoadable(_symbols_in_use(spec, users), version=spec.version))
            return False  # it depends on the rules too: look again on the next rescan
        self._reported.pop(name, None)
        try:
            spec = await self._prepare(spec, running=name in self.supervisors)
        except _NotLoadable as exc:
            return await self._not_loadable(name, folder, exc)
        settled = True
        try:
            if action is Action.LOAD:
                settled = await self._load(spec)
            else:
                await self._swap(self.supervisors[name], spec)
        finally:
            self.snapshots.release(spec)
        await self._notify()
        return settled

    async def _prepare(self, spec: PluginSpec, running: bool) -> PluginSpec:
        """The snapshot the version will run from, with its venv built if it has requirements."""
        try:
            snapshot = await self._off_loop(lambda _folder: self.snapshots.take(spec), spec.folder)
        except ManifestError as exc:
            raise _NotLoadable(
                f"{exc} (while taking a snapshot: is the folder still being written?)", exc.incomplete, exc.version
            ) from None
        except OSError as exc:
            raise _NotLoadable(
                f"cannot take a snapshot of {spec.folder} in {self.snapshots.root}: {exc}; "
                "make data_dir writable and check free space",
                version=spec.version,
            ) from None
        try:
            return await self._with_venv(snapshot, running)
        except VenvError as exc:
            raise _NotLoadable(f"{spec.folder / 'requirements.txt'}: {exc}", version=spec.version) from None

    async def _with_venv(self, spec: PluginSpec, running: bool) -> PluginSpec:
        """The spec with its own interpreter when the plugin has a requirements.txt (built if needed)."""
        if not wants_venv(spec.folder, spec.manifest):
            return spec
        log = get_logger(plugin=spec.name)
        if not self.venvs.is_built(spec.folder):
            if not running:
                self.lifecycle(spec.name).move(S.BUILDING, version=spec.version, last_error=None)
            log.info("plugin.venv_building", version=spec.version, reason="requirements.txt present")
            python = await self.venvs.ensure(spec.folder)
            log.info("plugin.venv_ready", version=spec.version, python=str(python))
        return dataclasses.replace(spec, python=self.venvs.python_for(spec.folder))

    async def _notify(self) -> None:
        self.memo.forget_not_running()  # a symbol another folder conflicted on may be free now
        if self._closing:
            return  # the rules are being stopped too
        for listener in self.listeners:
            await listener()

    async def _still_copying(self, folder: Path) -> bool:
        """Whether an incomplete folder changed within the grace time (a copy may still be going on)."""
        try:
            return await self._off_loop(
                _recently_changed, folder, self.config.watch.incomplete_grace_s, self.config.folders
            )
        except ManifestError:
            return False

    async def _off_loop(self, function: Callable[..., T], folder: Path, *args: Any) -> T:
        """Run blocking folder I/O in the folder-reading threads, bounded by ``folders.timeout_s``."""
        timeout = self.config.folders.timeout_s
        future = asyncio.get_running_loop().run_in_executor(_FOLDER_READERS, function, folder, *args)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise ManifestError(
                str(folder),
                "",
                f"reading the folder took longer than {timeout:g}s",
                "check the file system, or raise folders.timeout_s",
            ) from None

    async def _not_loadable(self, name: str, folder: Path, problem: _NotLoadable, wait: bool = False) -> bool:
        """Report a folder that cannot be loaded now, keeping any running version; False while waiting.

        ``wait``: it is incomplete and changed within the grace time, so it is
        reported as waiting, not as an error.
        """
        log = get_logger(plugin=name)
        error = problem.error
        life = self.lifecycle(name)
        running = self.supervisors.get(name)
        if running is not None:
            life.publish(last_error=error, failed_version=problem.version, failed_error=error)
            if await self._first_report(name, "plugin.update_rejected", folder, error):
                log.error(
                    "plugin.update_rejected",
                    version=running.spec.version,
                    rejected_version=problem.version,
                    error=error,
                    reason="the running version keeps running",
                )
            return True
        if wait:
            life.move(S.WAITING, last_error=error)
            if await self._first_report(name, "plugin.incomplete", folder, error):
                log.info("plugin.incomplete", error=error, reason="waiting for the folder to be complete")
            return False
        life.move(S.INVALID, last_error=error, pid=None)
        if await self._first_report(name, "plugin.invalid", folder, error):
            log.error("plugin.invalid", error=error)
        return True

    async def _first_report(self, name: str, event: str, folder: Path, error: str) -> bool:
        """Whether this fault of this folder content has not been logged yet (once per content digest).

        The digest reads every file of the folder, so it runs off the event loop, bounded like every folder read.
        """
        try:
            content = await self._off_loop(folder_digest, folder, self.config.folders)
        except (FolderError, ManifestError, OSError):
            content = ""  # an unreadable folder: the error text alone tells one fault from another
        key = (event, content, error)
        if self._reported.get(name) == key:
            return False
        self._reported[name] = key
        return True

    def _control_socket_busy(self, spec: PluginSpec, error: str) -> None:
        """The control socket is held by another process: a condition that repeats, so rate-limited."""
        self.lifecycle(spec.name).move(S.INVALID, last_error=error, pid=None)
        held_back = self._repeats.check((spec.name, "control_socket"))
        if held_back is not None:
            get_logger(plugin=spec.name).error("plugin.invalid", error=error, repeated=held_back)

    # ------------------------------------------------------------ act

    async def _load(self, spec: PluginSpec) -> bool:
        """Start a supervisor for ``spec``; False when its control socket could not be opened (retried later)."""
        self.registry.register(spec)
        supervisor = self._factory(spec, self.lifecycle(spec.name))
        key = (spec.name, "control_socket")
        if not self._repeats.active(key):  # retries while another process holds the socket are not news
            get_logger(plugin=spec.name).info(
                "plugin.loading",
                version=spec.version,
                folder=str(spec.source or spec.folder),
                snapshot=str(spec.folder),
            )
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
        get_logger(plugin=spec.name).info(
            "plugin.updating", version=spec.version, previous_version=old, snapshot=str(spec.folder)
        )
        self.registry.register(spec)
        ok = await supervisor.swap(spec)
        if ok:
            get_logger(plugin=spec.name).info(
                "plugin.updated",
                version=spec.version,
                previous_version=old,
                pid=supervisor.process.pid if supervisor.process else None,
            )
        else:
            self.registry.register(supervisor.spec)  # rolled back (or still retrying the new one)

    async def _unload(self, name: str, reason: str) -> None:
        supervisor = self.supervisors.pop(name)
        await supervisor.stop()
        self.registry.unregister(name)
        if reason == "folder removed":
            await asyncio.to_thread(shutil.rmtree, self.snapshots.root / name, True)
        get_logger(plugin=name).info("plugin.unloaded", version=supervisor.spec.version, reason=reason)


def _symbols_in_use(spec: PluginSpec, users: dict[tuple[str, str], list[str]]) -> str:
    """The refusal of a version that drops symbols running rules use, naming both and the fix."""
    parts = [
        f"{kind[:-1]} {symbol!r} (used by rule{'s' if len(rules) > 1 else ''} {', '.join(sorted(rules))})"
        for (kind, symbol), rules in sorted(users.items())
    ]
    return (
        f"version {spec.version} no longer declares {'; '.join(parts)}, which running rules use; "
        f"stop those rules first, or declare the symbol again in {spec.name}.json"
    )


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


def _fingerprints(root: Path, names: list[str], limits: FolderLimits) -> list[Fingerprint]:
    """``stat_fingerprint`` of each plugin folder (a hidden or vanished one gets the empty fingerprint)."""
    return [stat_fingerprint(root / name, limits) if is_candidate(root / name) else () for name in names]
