"""Which plugin provides which symbol.

Symbols are per kind (a source and a sink may share a name, as in eKuiper).
A symbol provided by one loaded plugin cannot be claimed by another: the
newcomer is refused with an error naming both, and the running one stays.
"""

from __future__ import annotations

from loader.manifest import SYMBOL_KINDS, PluginSpec


class SymbolConflict(Exception):
    """A plugin declares a symbol another loaded plugin already provides."""


class SymbolRegistry:
    def __init__(self) -> None:
        self._owners: dict[tuple[str, str], str] = {}

    def owner(self, kind: str, symbol: str) -> str | None:
        """The plugin providing ``symbol`` of ``kind`` (sources, sinks, functions), if any."""
        return self._owners.get((kind, symbol))

    def check(self, spec: PluginSpec) -> None:
        """Raise SymbolConflict if ``spec`` claims a symbol of another plugin."""
        clashes = []
        for kind in SYMBOL_KINDS:
            for symbol in spec.symbols(kind):
                owner = self._owners.get((kind, symbol))
                if owner is not None and owner != spec.name:
                    clashes.append(f"{kind[:-1]} {symbol!r} is already provided by plugin {owner!r}")
        if clashes:
            raise SymbolConflict(
                f"plugin {spec.name!r} not loaded: " + "; ".join(clashes)
                + f"; rename the symbol in {spec.name}.json or remove the other plugin"
            )

    def register(self, spec: PluginSpec) -> None:
        """Make ``spec``'s symbols the ones its plugin provides (replacing its old ones)."""
        self.unregister(spec.name)
        for kind in SYMBOL_KINDS:
            for symbol in spec.symbols(kind):
                self._owners[(kind, symbol)] = spec.name

    def unregister(self, plugin: str) -> None:
        for key in [k for k, owner in self._owners.items() if owner == plugin]:
            del self._owners[key]

    def symbols(self) -> dict[tuple[str, str], str]:
        return dict(self._owners)
