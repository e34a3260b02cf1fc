"""Plugin install, update and delete through the folder: the whole transaction, with its rollback.

The loader never loads a plugin from here.  The zip comes from a URL
(eKuiper's form) or as an ``Upload`` already on disk; either way the same size
limit and archive checks apply.  Install and update unpack the zip into a
hidden staging folder inside ``plugins_dir`` (same file system, ignored by
the reconciler), validate it with exactly the checks a dropped folder gets
(``load_plugin``, under its final name), copy its shipped configuration to
``etc/`` (only for its own symbols, never over a file it does not own:
``shipped.py``), then rename it into place and ask the reconciler to apply
the change now.  The outcome is what the status board says afterwards:
running, or failed with the reason, in which case the change is rolled back
(an install is removed again, an update swaps the previous folder back in,
so the old version keeps serving) and ``PluginDidNotStart`` is raised.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
import tempfile
from collections import defaultdict
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from loader.config import LiveConfig, LoaderConfig
from loader.files import write_bytes_atomic
from loader.install import shipped as shipped_configs
from loader.install.archive import ArchiveError, extract, fetch, remove_tree
from loader.install.errors import (
    BadPluginName,
    InstallsBusy,
    InvalidPlugin,
    PluginDidNotStart,
    PluginExists,
    PluginNotFound,
    SymbolTaken,
)
from loader.log import get_logger
from loader.names import is_valid_name
from loader.plugins.manifest import ManifestError, PluginSpec, load_plugin
from loader.plugins.status import PluginState, PluginStatus
from loader.plugins.symbols import SymbolConflict, SymbolRegistry

T = TypeVar("T")

CONFIG_SUFFIXES = {"sources": (".yaml", ".yml", ".json"), "sinks": (".json",), "functions": (".json",)}


class Running(Protocol):
    """A plugin version the reconciler runs, as the installer waits for it."""

    @property
    def spec(self) -> PluginSpec: ...

    async def settled(self) -> bool:
        """Wait for the version's probation: True if it passed."""
        ...


class Plugins(Protocol):
    """What the installer needs of the reconciler (``loader/plugins/reconciler.py``); tests pass a fake."""

    @property
    def supervisors(self) -> Mapping[str, Running]: ...

    async def reconcile(self, name: str) -> None: ...

    def hold(self, name: str) -> asyncio.Lock:
        """The lock that keeps reconciles of ``name`` out while its folder is swapped."""
        ...


class Board(Protocol):
    def get(self, name: str) -> PluginStatus | None: ...


@dataclass
class Upload:
    """A plugin zip already received, waiting in a hidden file inside ``plugins_dir``."""

    path: Path
    size: int

    def __str__(self) -> str:
        return f"upload of {self.size} bytes"

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


#: Where a plugin zip comes from: a URL to fetch (any other value is refused by ``fetch``), or an upload.
Source = Upload | Any


@dataclass(frozen=True)
class Installed:
    """A version that runs now, and what its install could not do (shipped files kept, manifest warnings)."""

    name: str
    version: str | None
    warnings: list[str]


def check_plugin_name(name: Any) -> str:
    """eKuiper's ``invalid name <name>: ...`` sentence, with what a name may be."""
    if name is None or name == "":
        raise BadPluginName("invalid name : should not be empty")
    if not is_valid_name(name):
        raise BadPluginName(
            f"invalid name {name}: use 1 to 64 letters, digits, '_' or '-', starting with a letter or digit"
        )
    return str(name)


@dataclass
class _Staged:
    """An unpacked, validated plugin folder waiting in a hidden staging folder."""

    root: Path
    folder: Path
    spec: PluginSpec
    configs: list[tuple[str, Path]]
    etc_backup: dict[Path, bytes | None] = field(default_factory=dict)
    #: etc_dir-relative path -> sha256 of what this install wrote
    installed: dict[str, str] = field(default_factory=dict)
    #: shipped files not copied, and why
    kept: list[str] = field(default_factory=list)

    def result(self) -> Installed:
        return Installed(self.spec.name, self.spec.version, list(self.spec.warnings) + self.kept)


class PluginInstaller:
    """Install, update and delete plugins; one change per name at a time, names in parallel."""

    def __init__(self, config: LiveConfig, reconciler: Plugins, board: Board, registry: SymbolRegistry) -> None:
        self.live = config
        self.reconciler = reconciler
        self.board = board
        self.registry = registry
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Downloads and unpacking run here, never in the default pool: a slow
        #: download must not hold up unrelated ``asyncio.to_thread`` work.
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._staging = 0

    @property
    def config(self) -> LoaderConfig:
        return self.live.current

    # ------------------------------------------------------------ public

    async def install(self, name: str, source: Source) -> Installed:
        return await self._shielded(self._install, name, source)

    async def update(self, name: str, source: Source) -> Installed:
        """eKuiper's update replaces the plugin or, when there is none, installs it."""
        check_plugin_name(name)
        if not self.installed(name):
            return await self._shielded(self._install, name, source)
        return await self._shielded(self._update, name, source)

    def installed(self, name: str) -> bool:
        return _exists(self.config.plugins_dir / name) or name in self.reconciler.supervisors

    async def delete(self, name: str) -> str | None:
        """Unload and remove the plugin and the ``etc/`` files its installs wrote; the version it ran."""
        return await self._shielded(self._delete, name)

    async def _shielded(self, action: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        """Run ``action`` to its end even if the caller goes away: a half-done swap is worse than a late one."""
        task = asyncio.get_running_loop().create_task(action(*args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(task)

    # ----------------------------------------------------------- install

    async def _install(self, name: str, source: Source) -> Installed:
        check_plugin_name(name)
        log = get_logger(plugin=name)
        async with self._locks[name]:
            target = self.config.plugins_dir / name
            if _exists(target) or name in self.reconciler.supervisors:
                raise PluginExists(f"invalid name {name}: duplicate")
            staged = await self._run_staging(name, source)
            try:
                self._check_symbols(staged.spec)
                await asyncio.to_thread(self._install_configs, staged)
                try:
                    os.rename(staged.folder, target)
                except OSError as exc:
                    raise PluginExists(f"plugin {name!r} appeared while installing: {exc.strerror}") from None
            except BaseException:
                await asyncio.to_thread(self._discard, staged, restore_configs=True)
                raise
            log.info("api.plugin_installing", version=staged.spec.version, url=_redacted(source))
            await self.reconciler.reconcile(name)
            supervisor = self.reconciler.supervisors.get(name)
            if supervisor is not None:
                await supervisor.settled()  # the answer waits for the probation
            status = self.board.get(name)
            if status is None or status.state != PluginState.RUNNING:
                reason = (status.last_error if status is not None else None) or "it did not start"
                await asyncio.to_thread(remove_tree, _aside(target))
                await self.reconciler.reconcile(name)
                await asyncio.to_thread(self._discard, staged, restore_configs=True)
                log.error("api.plugin_install_failed", version=staged.spec.version, error=reason)
                raise PluginDidNotStart(
                    f"plugin {name!r} {staged.spec.version} did not start: {reason}; it was removed again"
                )
            await asyncio.to_thread(self._record_configs, staged)
            await asyncio.to_thread(self._discard, staged, restore_configs=False)
        return staged.result()

    # ------------------------------------------------------------ update

    async def _update(self, name: str, source: Source) -> Installed:
        check_plugin_name(name)
        log = get_logger(plugin=name)
        async with self._locks[name]:
            target = self.config.plugins_dir / name
            if not _exists(target):
                raise PluginNotFound(f"portable plugin {name} is not found")
            running = self.reconciler.supervisors.get(name)
            old_version = running.spec.version if running is not None else None
            staged = await self._run_staging(name, source)
            try:
                self._check_symbols(staged.spec)
                await asyncio.to_thread(self._install_configs, staged)
                # staged.folder holds the previous version afterwards
                await self._swap_folders(name, staged.folder, target)
            except BaseException:
                await asyncio.to_thread(self._discard, staged, restore_configs=True)
                raise
            log.info(
                "api.plugin_updating", version=staged.spec.version, previous_version=old_version, url=_redacted(source)
            )
            await self.reconciler.reconcile(name)
            if not self._runs(name, staged.spec):
                status = self.board.get(name)
                reason = (status.last_error if status is not None else None) or "it did not start"
                await self._swap_folders(name, staged.folder, target)
                await self.reconciler.reconcile(name)
                await asyncio.to_thread(self._discard, staged, restore_configs=True)
                log.error(
                    "api.plugin_update_failed", version=staged.spec.version, error=reason, previous_version=old_version
                )
                restored = (
                    f"the previous version {old_version} was restored"
                    if old_version
                    else "the previous folder was restored"
                )
                raise PluginDidNotStart(f"plugin {name!r} {staged.spec.version} did not start: {reason}; {restored}")
            await asyncio.to_thread(self._record_configs, staged)
            await asyncio.to_thread(self._discard, staged, restore_configs=False)
        return staged.result()

    def _runs(self, name: str, spec: PluginSpec) -> bool:
        """Whether ``spec`` (this digest) is what runs now, and it is running."""
        status = self.board.get(name)
        now = self.reconciler.supervisors.get(name)
        return (
            status is not None
            and status.state == PluginState.RUNNING
            and now is not None
            and now.spec.digest == spec.digest
        )

    # ------------------------------------------------------------ delete

    async def _delete(self, name: str) -> str | None:
        async with self._locks[name]:
            target = self.config.plugins_dir / name
            known = name in self.reconciler.supervisors or self.board.get(name) is not None
            if not is_valid_name(name) or not (_exists(target) or known):
                raise PluginNotFound(f"portable plugin {name} is not found")
            running = self.reconciler.supervisors.get(name)
            version = running.spec.version if running is not None else None
            aside = _aside(target) if _exists(target) else None
            await self.reconciler.reconcile(name)
            await asyncio.to_thread(self._remove_configs, name)
            if aside is not None:
                await asyncio.to_thread(remove_tree, aside)
            get_logger(plugin=name).info("api.plugin_deleted", version=version)
        return version

    # ----------------------------------------------------------- helpers

    async def _run_staging(self, name: str, source: Source) -> _Staged:
        """``_stage`` in the installs' own bounded pool; ``InstallsBusy`` when all its workers are busy."""
        workers = self.config.limits.download_workers
        if self._pool is None:  # sized once, at the first install
            self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="install")
        if self._staging >= workers:
            raise InstallsBusy(
                f"{self._staging} plugin downloads are already in progress "
                f"(limits.download_workers); retry when one is done"
            )
        self._staging += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, self._stage, name, source)
        finally:
            self._staging -= 1

    def _stage(self, name: str, source: Source) -> _Staged:
        """Fetch (or take the upload), unpack into ``plugins_dir/.install-<name>-*/<name>``, validate it there.

        Blocking: it runs in the installs' own pool.
        """
        limit = int(float(self.config.rest_max_upload_mb) * 1024 * 1024)
        plugins_dir = self.config.plugins_dir
        plugins_dir.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix=f".install-{name}-", dir=plugins_dir))
        try:
            archive = root / "plugin.zip"
            if isinstance(source, Upload):
                os.replace(source.path, archive)
            else:
                fetch(source, archive, limit, self.config.limits.download_timeout_s)
            folder = root / name
            folder.mkdir()
            extract(archive, folder, name, limit)
            archive.unlink()
            configs = _shipped_configs(folder)
            try:
                spec = load_plugin(folder)
            except ManifestError as exc:
                raise InvalidPlugin(_manifest_message(exc, root)) from None
            return _Staged(root=root, folder=folder, spec=spec, configs=configs)
        except ArchiveError as exc:
            remove_tree(root)
            raise InvalidPlugin(exc.message, exc.code) from None
        except BaseException:
            remove_tree(root)
            raise

    def _check_symbols(self, spec: PluginSpec) -> None:
        try:
            self.registry.check(spec)
        except SymbolConflict as exc:
            raise SymbolTaken(str(exc)) from None

    def _install_configs(self, staged: _Staged) -> None:
        """Copy the plugin's own ``sources/``, ``sinks/``, ``functions/`` files to ``etc/``, keeping backups.

        Files for other symbols, or over a file this plugin does not own, are
        kept as they are: ``api.config_kept`` and a warning in the answer.
        """
        etc_dir = self.config.etc_dir
        own = shipped_configs.read_record(self.config.data_dir, staged.spec.name)
        decided = shipped_configs.plan(staged.spec, staged.configs, etc_dir, own)
        for path, destination in decided.copy:
            if destination not in staged.etc_backup:
                staged.etc_backup[destination] = destination.read_bytes() if destination.is_file() else None
            content = path.read_bytes()
            write_bytes_atomic(destination, content)
            staged.installed[str(destination.relative_to(etc_dir))] = shipped_configs.digest(content)
        staged.kept = decided.kept
        for reason in decided.kept:
            get_logger(plugin=staged.spec.name).warning("api.config_kept", reason=reason)

    def _record_configs(self, staged: _Staged) -> None:
        """Remember what this install wrote to ``etc/`` (with what it held before), so a delete removes only that."""
        record = shipped_configs.read_record(self.config.data_dir, staged.spec.name)
        record.update(staged.installed)
        try:
            shipped_configs.write_record(self.config.data_dir, staged.spec.name, record)
        except OSError as exc:
            get_logger(plugin=staged.spec.name).error(
                "api.config_record_failed",
                file=str(shipped_configs.record_path(self.config.data_dir, staged.spec.name)),
                error=str(exc),
                reason="deleting the plugin will leave its etc/ files; make data_dir writable",
            )

    def _discard(self, staged: _Staged, restore_configs: bool) -> None:
        if restore_configs:
            for destination, previous in staged.etc_backup.items():
                try:
                    if previous is None:
                        destination.unlink(missing_ok=True)
                    else:
                        write_bytes_atomic(destination, previous)
                except OSError as exc:
                    get_logger(plugin=staged.spec.name).warning(
                        "api.config_restore_failed", file=str(destination), error=str(exc)
                    )
        remove_tree(staged.root)

    def _remove_configs(self, name: str) -> None:
        """Remove the ``etc/`` files this plugin's installs wrote, unless someone edited them since."""
        log = get_logger(plugin=name)
        record = shipped_configs.read_record(self.config.data_dir, name)
        remove, kept = shipped_configs.removable(record, self.config.etc_dir)
        for path in remove:
            try:
                path.unlink()
            except OSError as exc:
                log.warning("api.config_remove_failed", file=str(path), error=str(exc))
        for reason in kept:
            log.warning("api.config_kept", reason=reason)
        try:
            shipped_configs.write_record(self.config.data_dir, name, {})
        except OSError as exc:
            log.warning(
                "api.config_remove_failed",
                file=str(shipped_configs.record_path(self.config.data_dir, name)),
                error=str(exc),
            )

    async def _swap_folders(self, name: str, a: Path, b: Path) -> None:
        """Swap the folders ``a`` and ``b`` (one of them ``plugins_dir/<name>``) with plain renames.

        The renames happen while holding the reconciler's lock for ``name``, so no
        reconcile (file event or rescan) can see the instant where the plugin
        folder is missing.  Plain renames, not renameat2(RENAME_EXCHANGE): watchdog's
        inotify thread does not survive an exchanged directory.
        """
        spare = a.with_name(a.name + ".swap")
        async with self.reconciler.hold(name):
            os.rename(b, spare)
            try:
                os.rename(a, b)
            except OSError:
                os.rename(spare, b)
                raise
            os.rename(spare, a)


def _redacted(source: Source) -> str:
    """The URL for the log, without any user:password@ it carries."""
    text = str(source)
    scheme, sep, rest = text.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return text


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _aside(target: Path) -> Path:
    """Rename ``target`` to a hidden name next to it (the folder disappears at once for the reconciler)."""
    aside = target.with_name(f".delete-{target.name}-{secrets.token_hex(4)}")
    os.rename(target, aside)
    return aside


def _manifest_message(exc: ManifestError, root: Path) -> str:
    try:
        file = str(Path(exc.file).relative_to(root))
    except ValueError:
        file = Path(exc.file).name
    where = f"{file} at {exc.pointer}" if exc.pointer else file
    return f"{where}: {exc.message}; {exc.fix}"


def _shipped_configs(folder: Path) -> list[tuple[str, Path]]:
    """Config files a plugin ships for ``etc/``; a file name that cannot be a symbol is refused."""
    found: list[tuple[str, Path]] = []
    for kind, suffixes in CONFIG_SUFFIXES.items():
        directory = folder / kind
        if not directory.is_dir() or directory.is_symlink():
            continue
        for path in sorted(directory.iterdir()):
            if path.name.startswith(".") or path.is_dir():
                continue
            if path.suffix not in suffixes or not is_valid_name(path.stem):
                raise BadPluginName(
                    f"entry '{kind}/{path.name}': configuration files under {kind}/ are "
                    f"named <symbol>{'|'.join(suffixes)}, with a symbol name of 1 to 64 "
                    "letters, digits, '_' or '-'"
                )
            found.append((kind, path))
    return found
