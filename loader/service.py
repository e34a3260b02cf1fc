"""The running service: wiring watcher, reconciler and supervisors to one event loop.

Start-up order matters: stale socket files from a previous (killed) run are
removed first, then every folder is reconciled once, then the watcher and
the periodic rescan take over; streams and rules follow the plugins.
SIGTERM and SIGINT stop every rule, then every plugin, and remove the sockets
before the process exits 0.  SIGHUP rereads the configuration and rescans
every folder.  Under systemd the service reports readiness, status and
watchdog pings (loader/systemd.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import faulthandler
import signal
from pathlib import Path
from typing import Callable

from loader.config import ConfigError, LoaderConfig
from loader.log import configure_logging, get_logger
from loader.reconciler import Reconciler
from loader.registry import SymbolRegistry
from loader.rules.manager import RuleManager
from loader.status import CRASHLOOP, INVALID, RESTARTING, RUNNING, StatusBoard
from loader.tasks import repeat
from loader.systemd import Notifier, keep_notifying, watchdog_interval
from loader.wire.addresses import remove_stale_sockets
from loader.watcher import Debouncer, FolderWatcher, json_file_name_of


#: Settings a running loader cannot change; SIGHUP reports them as needing a restart.
RESTART_ONLY = ("plugins_dir", "etc_dir", "data_dir", "ipc_dir", "rest")


class LoaderService:
    def __init__(self, config: LoaderConfig, reload_config: Callable[[], LoaderConfig] | None = None) -> None:
        self.config = config
        self._reload_config = reload_config
        self.notifier = Notifier()
        self.board = StatusBoard()
        self.registry = SymbolRegistry()
        self.reconciler = Reconciler(config, self.board, self.registry)
        self.rules = RuleManager(config, self.registry, self.reconciler.supervisors.get)
        self.reconciler.listeners.append(self.rules.on_plugins_changed)
        settle = config.watch.settle_ms / 1000
        self.debouncers = [Debouncer(settle, self.reconciler.reconcile),
                           Debouncer(settle, self.rules.reconcile_stream),
                           Debouncer(settle, self.rules.reconcile_rule)]
        self.watchers = [
            FolderWatcher(config.plugins_dir, self.debouncers[0], follow_links=True),
            FolderWatcher(self.rules.streams_dir, self.debouncers[1], json_file_name_of),
            FolderWatcher(self.rules.rules_dir, self.debouncers[2], json_file_name_of),
        ]
        self.log = get_logger()
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT (or ``request_stop``), then stop everything."""
        self._install_signal_handlers()
        self._prepare_directories()
        removed = remove_stale_sockets(self.config.ipc_dir)
        self.log.info("loader.starting", plugins_dir=str(self.config.plugins_dir), ipc_dir=str(self.config.ipc_dir),
                      stale_sockets_removed=len(removed))
        for watcher in self.watchers:
            watcher.start()
        await self.reconciler.reconcile_all()
        await self.rules.reconcile_all()
        api = await self._start_api()
        self.log.info("loader.ready", plugins=len(self.reconciler.supervisors), rules=len(self.rules.rules))
        self.notifier.ready(self.status_text())
        background = [asyncio.create_task(self._rescan_forever(), name="rescan"),
                      asyncio.create_task(keep_notifying(self.notifier, self.status_text, watchdog_interval()),
                                          name="sd-notify")]
        await self._stopping.wait()
        self.notifier.stopping()
        for task in background:
            task.cancel()
        if api is not None:
            await api.stop()
        await self.shutdown()

    def status_text(self) -> str:
        """One line for systemd's STATUS=: what runs and what failed."""
        board = self.board
        failed = board.count(INVALID) + board.count(CRASHLOOP) + board.count(RESTARTING)
        rules = sum(1 for entry in self.rules.rules.values() if entry.state == "running")
        return f"plugins: {board.count(RUNNING)} running, {failed} failed; rules: {rules} running"

    async def reload(self) -> None:
        """Reread the configuration (SIGHUP), apply what can change live, rescan everything."""
        if self._reload_config is None:
            self.log.warning("loader.reload_failed", error="started without a configuration to reread")
            return
        try:
            new = self._reload_config()
        except ConfigError as exc:
            self.log.error("loader.reload_failed", error=str(exc), reason="the running configuration is kept")
            return
        old = self.config
        pinned = {key: getattr(old, key) for key in RESTART_ONLY}
        restart_needed = [key for key in RESTART_ONLY if getattr(new, key) != getattr(old, key)]
        new = dataclasses.replace(new, **pinned)
        changed = [f.name for f in dataclasses.fields(new) if getattr(new, f.name) != getattr(old, f.name)]
        # Logged before applying, so it shows even when the new log level hides info events.
        self.log.info("loader.reloaded", changed=changed, restart_needed=restart_needed)
        self._apply(new)
        await self.reconciler.reconcile_all()
        await self.rules.reconcile_all()

    def _apply(self, config: LoaderConfig) -> None:
        self.config = config
        configure_logging(config.log_format, config.log_level)
        self.reconciler.config = config
        self.reconciler.venvs.settings = config.venv
        self.reconciler.venvs.forget_failures()
        self.rules.config = config
        for supervisor in self.reconciler.supervisors.values():
            supervisor.config, supervisor.settings = config, config.supervisor
        for debouncer in self.debouncers:
            debouncer.settle_s = config.watch.settle_ms / 1000

    async def _start_api(self):
        """The REST API (loader/api), unless ``rest`` is ``off``."""
        address = self.config.rest_address
        if address is None:
            return None
        from loader.api.server import ApiServer

        server = ApiServer(self, *address)
        await server.start()
        return server

    def request_stop(self) -> None:
        self._stopping.set()

    async def shutdown(self) -> None:
        self.log.info("loader.stopping")
        for watcher in self.watchers:
            watcher.stop()
        await self.rules.shutdown()
        await self.reconciler.shutdown()
        self.log.info("loader.stopped")

    async def _rescan_forever(self) -> None:
        """Every ``watch.rescan_s``; a pass that fails is logged (task.failed) and the next one still runs."""
        await repeat("rescan", self._rescan, lambda: self.config.watch.rescan_s)

    async def _rescan(self) -> None:
        self.watchers[0].refresh_links()
        await self.reconciler.reconcile_all()
        await self.rules.reconcile_all()

    def _prepare_directories(self) -> None:
        for path in (self.config.plugins_dir, self.config.data_dir, self.config.ipc_dir):
            Path(path).mkdir(parents=True, exist_ok=True)

    def _install_signal_handlers(self) -> None:
        # SIGUSR1 dumps every thread's stack to stderr: how to see where a stuck data plane waits.
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)

    def _on_sighup(self) -> None:
        self.log.info("loader.signal", signal="SIGHUP")
        task = asyncio.get_running_loop().create_task(self.reload(), name="reload")
        self._reload_task = task  # keep a reference until it is done

    def _on_signal(self, sig: int) -> None:
        self.request_stop()
        self.log.info("loader.signal", signal=signal.Signals(sig).name)
