"""The plugin process: ``start(config)`` connects to the host and serves until told to stop.

Threads: the control channel runs in its own thread because a blocking nng
receive would delay signal handling on the main thread by up to the
keepalive interval.  The main thread only waits for a reason to end
(SIGTERM/SIGINT, the control channel failing, the host process vanishing)
and then closes every running symbol.

The process ends with ``os._exit`` after that cleanup: plugin code may hold
non-daemon threads or sockets that would otherwise keep it alive past the
host's stop timeout.  ``close(ctx)`` of each symbol is the place for cleanup.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable

from sdk import channels, log
from sdk.api import PluginConfig
from sdk.args import RuntimeArgs, parse_argv
from sdk.control import Controller
from sdk.protocol.handshake import handshake_message
from sdk.protocol.names import control_name
from sdk.registry import Registry

__all__ = ["PluginConfig", "start"]

#: Total time given to close every running symbol at shutdown.
SHUTDOWN_BUDGET_S = 0.8
PARENT_CHECK_S = 1.0
#: How long the exit waits for the control thread to notice, so its socket is not closed under it.
CONTROL_CLOSE_WAIT_S = 0.3

_log = logging.getLogger("sdk.plugin")

#: Set by the debug runner: receives the PluginConfig instead of serving it.
start_hook: Callable[[PluginConfig], None] | None = None


class Shutdown:
    """A reason to end, settable from a signal handler or any thread.

    A pipe rather than threading.Event: setting an Event from a signal
    handler can deadlock on the Event's own lock.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        self.code: int | None = None

    def request(self, code: int = 0) -> None:
        """The first reason wins: a failure noticed while shutting down does not change the exit code."""
        if self.code is None:
            self.code = code
        try:
            os.write(self._write, b"x")
        except OSError:
            pass

    def wait(self, timeout: float) -> bool:
        """True once requested.  ``poll``, not ``select``: a plugin may hold more than 1024 descriptors."""
        poller = select.poll()
        poller.register(self._read, select.POLLIN)
        return bool(poller.poll(max(0, int(timeout * 1000 + 0.999))))


class PluginProcess:
    def __init__(self, config: PluginConfig, args: RuntimeArgs) -> None:
        self.config = config
        self.args = args
        self.name = args.name_for(config.name)
        self.registry = Registry()
        self.controller = Controller(config, args, self.registry)
        self.shutdown = Shutdown()
        self._closing = threading.Event()
        self._control_socket = None
        self._control_thread: threading.Thread | None = None

    def run(self) -> int:
        """Serve until a shutdown is requested; return the exit code."""
        self._install_signals()
        self._control_thread = threading.Thread(target=self._serve_control, name="control", daemon=True)
        self._control_thread.start()
        self._wait()
        self.shutdown.request(0)  # no-op unless _wait ended because the host process is gone
        self._close()
        return self.shutdown.code or 0

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.shutdown.request(0))

    def _serve_control(self) -> None:
        url = channels.address(self.args.ipc_dir, control_name(self.name))
        try:
            self._control_socket = channels.req_dialer(url, self.args.keepalive_ms)
        except ConnectionError as err:
            hint = (
                "the host listens on plugin_<name>.ipc for the name it knows the plugin by: "
                "check that PluginConfig's name matches the plugin folder"
            )
            _log.error(
                "control channel unreachable", extra={"sdk": {"plugin": self.name, "error": str(err), "hint": hint}}
            )
            self.shutdown.request(1)
            return
        _log.info("control channel connected", extra={"sdk": {"plugin": self.name, "url": url}})
        try:
            handshake = handshake_message(self.args.capabilities)
            channels.serve_inverted(self._control_socket, self.controller.handle, self._closing, handshake)
        except Exception as err:
            _log.error("control channel failed", exc_info=err, extra={"sdk": {"plugin": self.name}})
            self.shutdown.request(1)

    def _wait(self) -> None:
        """Block until shutdown; under our loader also end when the host process is gone."""
        parent = os.getppid()
        watch_parent = self.args.protocol >= 1
        while not self.shutdown.wait(PARENT_CHECK_S):
            if watch_parent and os.getppid() != parent:
                _log.warning("host gone", extra={"sdk": {"plugin": self.name}})
                return

    def _close(self) -> None:
        deadline = time.monotonic() + SHUTDOWN_BUDGET_S
        runtimes = self.registry.close()
        for runtime in runtimes:
            runtime.stop(max(0.0, deadline - time.monotonic()))
        self._closing.set()
        channels.close_after(self._control_thread, [self._control_socket], CONTROL_CLOSE_WAIT_S)
        _log.info("plugin stopped", extra={"sdk": {"plugin": self.name, "closed": len(runtimes)}})


def start(config: PluginConfig) -> None:
    """Serve the plugin's symbols to the host; does not return (like eKuiper's ``plugin.start``)."""
    if start_hook is not None:
        start_hook(config)
        return
    log.install()
    args = parse_argv(sys.argv)
    process = PluginProcess(config, args)
    _log.info(
        "plugin starting",
        extra={
            "sdk": {
                "plugin": process.name,
                "declared": config.name,
                "ipcDir": args.ipc_dir,
                "protocol": args.protocol,
                "batch": args.batch is not None,
            }
        },
    )
    code = process.run()
    _exit(code)


def _exit(code: int) -> None:
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
