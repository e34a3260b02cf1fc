"""The running service: wiring watcher, reconciler and supervisors to one event loop.

Start-up order matters: stale socket files from a previous (killed) run are
removed first, then the watchers and the REST API start and the service is
ready; every folder is then reconciled once in the background (streams and
rules after the plugins) before the periodic rescan takes over.
SIGTERM and SIGINT stop every rule, then every plugin, and remove the sockets
before the process exits 0.  SIGHUP rereads the configuration and rescans
every folder; SIGUSR1 logs every thread's stack.  Under systemd the service reports readiness, status and
watchdog pings (loader/app/systemd.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loader.api.view import ServiceView
from loader.app.changes import ChangeSource, PeriodicRescan, WatchedFolder
from loader.app.reload import reload_outcome, state_path, write_state
from loader.app.systemd import Notifier, keep_notifying, watchdog_interval
from loader.app.watcher import FolderWatcher, NameOf, json_file_name_of, plugin_name_of
from loader.config import ConfigError, LiveConfig, LoaderConfig
from loader.diagnostics import install_loop_handler, install_stack_dump
from loader.log import configure_logging, get_logger
from loader.plugins import proctree
from loader.plugins.reconciler import Reconciler
from loader.plugins.status import STATES, PluginState, StatusBoard
from loader.plugins.symbols import SymbolRegistry
from loader.rules.reconciler import RuleReconciler, RuleState
from loader.wire.addresses import remove_stale_sockets

if TYPE_CHECKING:  # imported when the API starts: a loader with rest off never loads the web stack
    from loader.api.server import ApiServer

#: Settings a running loader cannot change; SIGHUP reports them as needing a restart.
RESTART_ONLY = ("plugins_dir", "etc_dir", "data_dir", "ipc_dir", "rest")


class LoaderService:
    def __init__(self, config: LoaderConfig, reload_config: Callable[[], LoaderConfig] | None = None) -> None:
        #: The configuration in force, shared with every component (a reload replaces it here only).
        self.live = LiveConfig(config)
        self._reload_config = reload_config
        self.notifier = Notifier()
        self.board = StatusBoard()
        self.registry = SymbolRegistry(config.data_dir / "symbols.json")
        self.reconciler = Reconciler(self.live, self.board, self.registry)
        self.rules = RuleReconciler(self.live, self.registry, self.reconciler.supervisors.get)
        #: What the REST API sees of the loader, with the plugin installer and the stream/rule store.
        self.view = ServiceView(self.live, self.board, self.registry, self.reconciler, self.rules)
        self.reconciler.listeners.append(self.rules.on_plugins_changed)
        self.reconciler.symbol_users = self.rules.symbol_users

        #: Set once the first full scan is done: the periodic rescans begin then.
        self._scanned = asyncio.Event()
        self.folders = self._watched_folders()
        self.log = get_logger()
        self._stopping = asyncio.Event()
        self._reloads = 0
        self._also_report_to: Path | None = None

    @property
    def config(self) -> LoaderConfig:
        return self.live.current

    def _watched_folders(self) -> list[WatchedFolder]:
        """Plugins, streams and rules: each watched by watchdog and rescanned periodically (loader/app/changes.py)."""

        def settle() -> float:
            return self.config.watch.settle_ms / 1000

        def sources(path: Path, name_of: NameOf, follow_links: bool = False) -> list[ChangeSource]:
            rescan = PeriodicRescan(lambda: self.config.watch.rescan_s, begin=self._scanned.wait)
            return [FolderWatcher(path, name_of, follow_links), rescan]

        plugins, rules = self.reconciler, self.rules
        return [
            WatchedFolder(
                "plugins",
                self.config.plugins_dir,
                plugins.reconcile,
                plugins.reconcile_all,
                settle,
                sources(self.config.plugins_dir, plugin_name_of, follow_links=True),
            ),
            WatchedFolder(
                "streams",
                rules.streams_dir,
                rules.reconcile_stream,
                rules.reconcile_streams,
                settle,
                sources(rules.streams_dir, json_file_name_of),
            ),
            WatchedFolder(
                "rules",
                rules.rules_dir,
                rules.reconcile_rule,
                rules.reconcile_rules,
                settle,
                sources(rules.rules_dir, json_file_name_of),
            ),
        ]

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT (or ``request_stop``), then stop everything.

        Ready (``READY=1``) as soon as the loader serves: REST up, watchers
        started.  The first scan (plugin starts, venv builds, rules) goes on
        after that and shows in ``STATUS=``, so a slow pip never runs into
        the unit's start timeout.
        """
        install_loop_handler(asyncio.get_running_loop())
        self._install_signal_handlers()
        self._prepare_directories()
        removed = remove_stale_sockets(self.config.ipc_dir)
        leftovers = proctree.claim(self.config.data_dir)
        if leftovers:
            self.log.warning(
                "loader.leftovers_killed",
                pids=leftovers,
                reason="processes a plugin of an earlier run started and left behind",
            )
        self.log.info(
            "loader.starting",
            plugins_dir=str(self.config.plugins_dir),
            etc_dir=str(self.config.etc_dir),
            data_dir=str(self.config.data_dir),
            ipc_dir=str(self.config.ipc_dir),
            stale_sockets_removed=len(removed),
        )
        for folder in self.folders:
            folder.start()
        api = await self._start_api()
        await asyncio.to_thread(self._write_state)
        rest = api.url if api is not None and api.serving else "off"
        self.log.info(
            "loader.ready",
            rest=rest,
            pid=os.getpid(),
            message=start_message(self.config, rest, stop_hint(os.environ, _stdin_is_terminal())),
        )
        self.notifier.ready(self.status_text())
        background = [
            asyncio.create_task(self._first_scan(), name="first-scan"),
            asyncio.create_task(keep_notifying(self.notifier, self.status_text, watchdog_interval()), name="sd-notify"),
            asyncio.create_task(self.rules.watch_health(), name="rule-health"),
        ]
        await self._stopping.wait()
        self.notifier.stopping()
        for task in background:
            task.cancel()
        if api is not None:
            await api.stop()
        await self.shutdown()

    async def _first_scan(self) -> None:
        """Reconcile every plugin folder, then streams and rules; the periodic rescans begin after it."""
        await self.reconciler.reconcile_all()
        await self.rules.reconcile_all()
        self._scanned.set()
        self.notifier.status(self.status_text())
        self.log.info(
            "loader.scan_complete",
            plugins=len(self.reconciler.supervisors),
            rules=len(self.rules.rules),
            status=self.status_text(),
        )

    def status_text(self) -> str:
        """One line for systemd's STATUS=: what runs, what is still starting, what failed."""
        states = [self.rules.state_of(entry) for entry in self.rules.rules.values()]
        return status_line(
            {state: self.board.count(state) for state in STATES},
            states.count(RuleState.RUNNING),
            self._scanned.is_set(),
            states.count(RuleState.DEGRADED),
        )

    async def reload(self) -> None:
        """Reread the configuration (SIGHUP), apply what can change live, rescan everything.

        systemd sees ``RELOADING=1`` until the outcome is known, then ``READY=1``;
        the outcome also goes to the state file ``portable-loader reload`` waits on.
        """
        self.notifier.reloading()
        try:
            outcome = self._reread()
        finally:
            self.notifier.ready(self.status_text())
        self._reloads += 1
        await asyncio.to_thread(self._write_state, outcome)
        if outcome["outcome"] == "reloaded":
            await self.reconciler.reconcile_all()
            await self.rules.reconcile_all()

    def _reread(self) -> dict[str, Any]:
        """Read and apply the new configuration; the outcome as it goes to the state file."""
        if self._reload_config is None:
            error = "started without a configuration to reread"
            self.log.warning("loader.reload_failed", error=error)
            return reload_outcome("reload_failed", error=error)
        try:
            new = self._reload_config()
        except ConfigError as exc:
            self.log.error("loader.reload_failed", error=str(exc), reason="the running configuration is kept")
            return reload_outcome("reload_failed", error=str(exc))
        old = self.config
        pinned = {key: getattr(old, key) for key in RESTART_ONLY}
        restart_needed = [key for key in RESTART_ONLY if getattr(new, key) != getattr(old, key)]
        self._also_report_to = new.data_dir if new.data_dir != old.data_dir else None
        new = dataclasses.replace(new, **pinned)
        changed = [f.name for f in dataclasses.fields(new) if getattr(new, f.name) != getattr(old, f.name)]
        # Logged before applying, so it shows even when the new log level hides info events.
        self.log.info("loader.reloaded", changed=changed, restart_needed=restart_needed)
        self._apply(new)
        return reload_outcome("reloaded", changed=changed, restart_needed=restart_needed)

    def _write_state(self, outcome: dict[str, Any] | None = None) -> None:
        """The state file: this process's pid and the last reload's outcome (loader/app/reload.py)."""
        state = {"pid": os.getpid(), "reloads": self._reloads, "last_reload": outcome}
        targets = [self.config.data_dir]
        if self._also_report_to is not None and self._also_report_to.is_dir():
            targets.append(self._also_report_to)  # the reload command reads the data_dir of the new file
        for data_dir in targets:
            try:
                write_state(data_dir, state)
            except OSError as exc:
                self.log.error(
                    "loader.state_write_failed",
                    file=str(state_path(data_dir)),
                    error=str(exc),
                    reason="portable-loader reload cannot see the outcome; make data_dir writable",
                )

    def _apply(self, config: LoaderConfig) -> None:
        """Put ``config`` in force: every component reads it from ``self.live`` where a setting is used.

        What is left here are the things a reload does beyond new values:
        the log configuration, and forgetting failed venv builds and folder
        fingerprints so the rescan after a reload retries and rereads all.
        """
        self.live.current = config
        configure_logging(config.log_format, config.log_level)
        self.reconciler.venvs.forget_failures()
        self.reconciler.memo.forget_all()

    async def _start_api(self) -> ApiServer | None:
        """The REST API (loader/api), unless ``rest`` is ``off``."""
        address = self.config.rest_address
        if address is None:
            return None
        from loader.api.server import ApiServer

        server = ApiServer(self.view, *address)
        await server.start()
        return server

    def request_stop(self) -> None:
        self._stopping.set()

    async def shutdown(self) -> None:
        self.log.info("loader.stopping")
        for folder in self.folders:
            folder.stop()
        await self.rules.shutdown()
        await self.reconciler.shutdown()
        self.log.info("loader.stopped")

    def _prepare_directories(self) -> None:
        for path in (self.config.plugins_dir, self.config.data_dir, self.config.ipc_dir):
            Path(path).mkdir(parents=True, exist_ok=True)

    def _install_signal_handlers(self) -> None:
        # SIGUSR1 logs every thread's stack as one event: where a stuck data plane waits.
        install_stack_dump()
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


#: How systemd's STATUS= line groups the plugin states; a plugin on probation or rolled back serves.
SERVING_STATES = (PluginState.RUNNING, PluginState.PROBATION, PluginState.ROLLED_BACK)
STARTING_STATES = (PluginState.STARTING, PluginState.BUILDING, PluginState.WAITING)
FAILED_STATES = (PluginState.INVALID, PluginState.CRASHLOOP, PluginState.RESTARTING)


def status_line(counts: Mapping[str, int], rules_running: int, scanned: bool, rules_degraded: int = 0) -> str:
    """systemd's STATUS= text from the plugin state counts: running, starting (venv builds), failed, rules."""

    def total(states: tuple[PluginState, ...]) -> int:
        return sum(counts.get(state, 0) for state in states)

    failed, starting = total(FAILED_STATES), total(STARTING_STATES)
    parts = [f"{total(SERVING_STATES)} running"]
    if starting:
        building = counts.get(PluginState.BUILDING, 0)
        parts.append(f"{starting} starting" + (f" ({building} building a venv)" if building else ""))
    parts.append(f"{failed} failed")
    text = f"plugins: {', '.join(parts)}; rules: {rules_running} running"
    if rules_degraded:
        text += f", {rules_degraded} degraded"
    return text if scanned else f"{text}; first scan in progress"


def stop_hint(env: Mapping[str, str], interactive: bool) -> str:
    """How whoever started this process stops it."""
    if env.get("INVOCATION_ID") and env.get("NOTIFY_SOCKET"):
        return "stop with: systemctl stop portable-loader"
    if interactive:
        return "stop with Ctrl-C"
    return f"stop with: kill -TERM {os.getpid()}"


def start_message(config: LoaderConfig, rest: str, stop: str) -> str:
    """The one line a person reads at start: what runs from where, where the API listens, how to stop."""
    api = f"REST API on {rest} (routes: {rest}/openapi.json)" if rest != "off" else "REST API off"
    return (
        f"portable-loader serving: plugins from {config.plugins_dir}, symbol configuration in {config.etc_dir}, "
        f"state in {config.data_dir}, sockets in {config.ipc_dir}; {api}; {stop}"
    )


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):
        return False
