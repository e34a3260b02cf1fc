"""The running service: wiring watcher, reconciler and supervisors to one event loop.

Start-up order matters: stale socket files from a previous (killed) run are
removed first, then every folder is reconciled once, then the watcher and
the periodic rescan take over; streams and rules follow the plugins.
SIGTERM and SIGINT stop every rule, then every plugin, and remove the sockets
before the process exits 0.
"""

from __future__ import annotations

import asyncio
import faulthandler
import signal
from pathlib import Path

from loader.config import LoaderConfig
from loader.log import get_logger
from loader.reconciler import Reconciler
from loader.registry import SymbolRegistry
from loader.rules.manager import RuleManager
from loader.status import StatusBoard
from loader.wire.addresses import remove_stale_sockets
from loader.watcher import Debouncer, FolderWatcher, json_file_name_of


class LoaderService:
    def __init__(self, config: LoaderConfig) -> None:
        self.config = config
        self.board = StatusBoard()
        self.registry = SymbolRegistry()
        self.reconciler = Reconciler(config, self.board, self.registry)
        self.rules = RuleManager(config, self.registry, self.reconciler.supervisors.get)
        self.reconciler.listeners.append(self.rules.on_plugins_changed)
        settle = config.watch.settle_ms / 1000
        self.watchers = [
            FolderWatcher(config.plugins_dir, Debouncer(settle, self.reconciler.reconcile), follow_links=True),
            FolderWatcher(self.rules.streams_dir, Debouncer(settle, self.rules.reconcile_stream), json_file_name_of),
            FolderWatcher(self.rules.rules_dir, Debouncer(settle, self.rules.reconcile_rule), json_file_name_of),
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
        rescan = asyncio.create_task(self._rescan_forever(), name="rescan")
        await self._stopping.wait()
        rescan.cancel()
        if api is not None:
            await api.stop()
        await self.shutdown()

    async def _start_api(self):
        """The REST API (loader/api), unless ``rest`` is ``off``."""
        if self.config.rest == "off":
            return None
        from loader.api.server import ApiServer

        host, _, port = self.config.rest.rpartition(":")
        server = ApiServer(self, host, int(port))
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
        while True:
            await asyncio.sleep(self.config.watch.rescan_s)
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

    def _on_signal(self, sig: int) -> None:
        self.request_stop()
        self.log.info("loader.signal", signal=signal.Signals(sig).name)
