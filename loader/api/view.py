"""What the REST API sees of the loader: a small typed view, and the service's implementation of it.

The API (loader/api/) reads plugin and rule state and calls the services
below HTTP (plugin installs, the stream and rule store); it never reaches
into the reconciler or the rule manager's tables.  ``LoaderView`` is that
boundary; ``ServiceView`` implements it over the loader's components, and a
test can pass any object with the same methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from loader.config import LiveConfig, LoaderConfig
from loader.install.installer import PluginInstaller
from loader.plugins.manifest import PluginSpec
from loader.plugins.reconciler import Reconciler
from loader.plugins.status import PluginStatus, StatusBoard
from loader.plugins.symbols import SymbolRegistry
from loader.rules.definitions import StreamDef
from loader.rules.health import Cause
from loader.rules.reconciler import RuleEntry, RuleReconciler, RuleState
from loader.rules.store import DefinitionStore


class LoaderView(Protocol):
    """The loader as its REST API uses it."""

    @property
    def config(self) -> LoaderConfig:
        """The configuration in force now (a reload replaces it)."""
        ...

    @property
    def installer(self) -> PluginInstaller: ...

    @property
    def store(self) -> DefinitionStore: ...

    def symbols(self, kind: str) -> dict[str, str]:
        """The portable symbols of ``kind`` (``sources``, ``sinks``, ``functions``) -> the plugin providing each."""
        ...

    def symbol_owner(self, kind: str, symbol: str) -> str | None:
        """The plugin providing ``symbol`` of ``kind``, None when none does."""
        ...

    # plugins
    def plugin_status(self, name: str) -> PluginStatus | None: ...

    def plugin_statuses(self) -> list[dict[str, Any]]:
        """Every plugin's status as a dict (metrics)."""
        ...

    def plugin_names(self) -> list[str]:
        """Every plugin with a status or a running version."""
        ...

    def running_spec(self, name: str) -> PluginSpec | None:
        """The version of ``name`` that runs now, if any."""
        ...

    def running_specs(self) -> dict[str, PluginSpec]: ...

    def ref_count(self, plugin: str) -> dict[str, int]:
        """eKuiper's ``refCount``: running rule id -> symbols of ``plugin`` it uses."""
        ...

    # streams and rules
    def streams(self) -> Mapping[str, StreamDef]: ...

    def stream_errors(self) -> Mapping[str, str]: ...

    def rules(self) -> Mapping[str, RuleEntry]: ...

    def rule_status(self, rule_id: str) -> dict[str, Any] | None: ...

    def rule_causes(self, entry: RuleEntry) -> list[Cause]: ...

    def rule_state(self, entry: RuleEntry) -> RuleState:
        """The state as reported: ``degraded`` for a running rule with causes."""
        ...

    def rule_stream(self, entry: RuleEntry) -> str | None: ...


class ServiceView:
    """``LoaderView`` over the loader's components (built by ``LoaderService``)."""

    def __init__(
        self,
        live: LiveConfig,
        board: StatusBoard,
        registry: SymbolRegistry,
        reconciler: Reconciler,
        manager: RuleReconciler,
    ) -> None:
        self.live = live
        self.board = board
        self._registry = registry
        self._reconciler = reconciler
        self._manager = manager
        self._installer = PluginInstaller(live, reconciler, board, registry)
        self._store = DefinitionStore(manager)

    @property
    def config(self) -> LoaderConfig:
        return self.live.current

    @property
    def installer(self) -> PluginInstaller:
        return self._installer

    @property
    def store(self) -> DefinitionStore:
        return self._store

    def symbols(self, kind: str) -> dict[str, str]:
        return {symbol: plugin for (k, symbol), plugin in sorted(self._registry.symbols().items()) if k == kind}

    def symbol_owner(self, kind: str, symbol: str) -> str | None:
        return self._registry.owner(kind, symbol)

    def plugin_status(self, name: str) -> PluginStatus | None:
        return self.board.get(name)

    def plugin_statuses(self) -> list[dict[str, Any]]:
        return self.board.snapshot()

    def plugin_names(self) -> list[str]:
        return sorted(set(self.board.names()) | set(self._reconciler.supervisors))

    def running_spec(self, name: str) -> PluginSpec | None:
        supervisor = self._reconciler.supervisors.get(name)
        return supervisor.spec if supervisor is not None else None

    def running_specs(self) -> dict[str, PluginSpec]:
        return {name: supervisor.spec for name, supervisor in sorted(self._reconciler.supervisors.items())}

    def ref_count(self, plugin: str) -> dict[str, int]:
        return self._manager.ref_count(plugin)

    def streams(self) -> Mapping[str, StreamDef]:
        return self._manager.streams

    def stream_errors(self) -> Mapping[str, str]:
        return self._manager.stream_errors

    def rules(self) -> Mapping[str, RuleEntry]:
        return self._manager.rules

    def rule_status(self, rule_id: str) -> dict[str, Any] | None:
        return self._manager.status(rule_id)

    def rule_causes(self, entry: RuleEntry) -> list[Cause]:
        return self._manager.causes(entry)

    def rule_state(self, entry: RuleEntry) -> RuleState:
        return self._manager.state_of(entry)

    def rule_stream(self, entry: RuleEntry) -> str | None:
        return self._manager.stream_of(entry)
