"""Executing the host's start and stop commands.

``handle`` is the function the control channel's request loop calls for
every command; it turns each one into ``ok`` or a readable error text and
never raises, because an exception here would end the control loop and
leave the host without answers.
"""

from __future__ import annotations

import logging

from sdk.api import PluginConfig
from sdk.args import RuntimeArgs
from sdk.protocol.control import CMD_START, TYPE_FUNC, CommandError, Control, decode_command
from sdk.registry import Registry
from sdk.runtimes import RUNTIMES, FunctionRuntime, StartError, error_text

OK = b"ok"
#: How long a stop waits for the symbol's thread to finish after close().
STOP_TIMEOUT_S = 0.5

_log = logging.getLogger("sdk.control")


class Controller:
    def __init__(self, config: PluginConfig, args: RuntimeArgs, registry: Registry) -> None:
        self._config = config
        self._args = args
        self._registry = registry

    def handle(self, payload: bytes) -> bytes:
        """Run one command and return the reply for the host."""
        try:
            cmd, control = decode_command(payload)
        except CommandError as err:
            _log.warning("bad command", extra={"sdk": {"error": str(err)}})
            return str(err).encode()
        try:
            if cmd == CMD_START:
                self.start(control)
            else:
                self.stop(control)
            return OK
        except (StartError, LookupError) as err:
            _log.warning(f"{cmd} failed", extra={"sdk": {**control.log_context(), "error": str(err)}})
            return str(err).encode()
        except Exception as err:
            _log.error(f"{cmd} failed", exc_info=err, extra={"sdk": control.log_context()})
            return f"{cmd} of {control.describe()} failed: {error_text(err)}".encode()

    def start(self, control: Control) -> None:
        """Start an instance; raises StartError (or LookupError) with the reply text."""
        if control.plugin_type == TYPE_FUNC and self._share_function(control):
            return
        factory = self._config.factory(control.plugin_type, control.symbol)
        runtime = RUNTIMES[control.plugin_type](control, factory, self._args)
        self._stop_previous(control)
        runtime.start()
        if not self._registry.put(control.key, runtime):
            runtime.stop(0)
            raise StartError(f"{control.describe()}: the plugin is shutting down")
        _log.info(f"{control.plugin_type} started", extra={"sdk": control.log_context()})

    def stop(self, control: Control) -> None:
        """Stop an instance; stopping one that does not run is not an error (eKuiper agrees)."""
        runtime = self._registry.get(control.key)
        if runtime is None:
            _log.warning("stop of unknown instance", extra={"sdk": control.log_context()})
            return
        if isinstance(runtime, FunctionRuntime):
            runtime.users -= 1
            if runtime.users > 0:
                return
        if not self._registry.remove(control.key, runtime):
            return  # a shutdown took it meanwhile and stops it
        runtime.stop(STOP_TIMEOUT_S)
        context = {**control.log_context(), "errors": runtime.errors.count}
        _log.info(f"{control.plugin_type} stopped", extra={"sdk": context})

    def _share_function(self, control: Control) -> bool:
        """A function channel is per symbol: a further start only counts one more user."""
        runtime = self._registry.get(control.key)
        if runtime is None:
            return False
        runtime.users += 1
        return True

    def _stop_previous(self, control: Control) -> None:
        """A start for a key that already runs replaces it: the latest start wins."""
        previous = self._registry.pop(control.key)
        if previous is not None:
            _log.warning("instance replaced", extra={"sdk": control.log_context()})
            previous.stop(STOP_TIMEOUT_S)
