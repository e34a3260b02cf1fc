"""Which plugin provides which symbol.

Symbols are per kind (a source and a sink may share a name, as in eKuiper).
A symbol provided by one plugin cannot be claimed by another: the newcomer is
refused with an error naming both, and the first one keeps it.

"First" must mean the same thing after a restart, when every folder is
looked at again in whatever order the loader happens to finish reading them.
So each claim is recorded in the data directory (``symbols.json``) and
outlives the process: the plugin that claimed a symbol first keeps it across
restarts, even while it is not running (invalid, crash-looping, not yet
started), for as long as its folder exists.  The claim ends when the plugin's
folder is removed or a new version of it stops declaring the symbol.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from loader.files import write_json_atomic
from loader.plugins.manifest import SYMBOL_KINDS, PluginSpec

Key = tuple[str, str]  # (kind, symbol)


class SymbolConflict(Exception):
    """A plugin declares a symbol another plugin already provides or has claimed."""


class SymbolRegistry:
    def __init__(self, record: Path | None = None) -> None:
        """``record``: the file claims are kept in (None: claims last as long as the process)."""
        self._owners: dict[Key, str] = {}
        self._record = record
        self._claims: dict[Key, str] = _read_claims(record) if record is not None else {}

    def owner(self, kind: str, symbol: str) -> str | None:
        """The loaded plugin providing ``symbol`` of ``kind`` (sources, sinks, functions), if any."""
        return self._owners.get((kind, symbol))

    def check(self, spec: PluginSpec, exists: Callable[[str], bool] = lambda name: False) -> None:
        """Raise SymbolConflict if ``spec`` declares a symbol another plugin provides, or claimed
        and still has a folder for (``exists(plugin)``)."""
        clashes = []
        for kind in SYMBOL_KINDS:
            for symbol in spec.symbols(kind):
                owner = self._owners.get((kind, symbol))
                if owner is not None and owner != spec.name:
                    clashes.append(f"{kind[:-1]} {symbol!r} is already provided by plugin {owner!r}")
                    continue
                claimant = self._claims.get((kind, symbol))
                if claimant is not None and claimant != spec.name and exists(claimant):
                    clashes.append(
                        f"{kind[:-1]} {symbol!r} belongs to plugin {claimant!r}, which declared it "
                        "first (it keeps it while its folder exists, running or not)"
                    )
        if clashes:
            raise SymbolConflict(
                f"plugin {spec.name!r} not loaded: "
                + "; ".join(clashes)
                + f"; rename the symbol in {spec.name}.json or remove the other plugin"
            )

    def register(self, spec: PluginSpec) -> None:
        """Make ``spec``'s symbols the ones its plugin provides (replacing its old ones), and its claims."""
        self.unregister(spec.name)
        declared = {(kind, symbol) for kind in SYMBOL_KINDS for symbol in spec.symbols(kind)}
        for key in declared:
            self._owners[key] = spec.name
        claims = {key: owner for key, owner in self._claims.items() if owner != spec.name or key in declared}
        claims.update({key: spec.name for key in declared})
        self._save(claims)

    def unregister(self, plugin: str, forget: bool = False) -> None:
        """``plugin`` no longer provides anything; with ``forget`` (its folder is gone) its claims end too."""
        for key in [k for k, owner in self._owners.items() if owner == plugin]:
            del self._owners[key]
        if forget:
            self._save({key: owner for key, owner in self._claims.items() if owner != plugin})

    def symbols(self) -> dict[Key, str]:
        return dict(self._owners)

    def _save(self, claims: dict[Key, str]) -> None:
        if claims == self._claims:
            return
        self._claims = claims
        if self._record is not None:
            rows = sorted([kind, symbol, owner] for (kind, symbol), owner in claims.items())
            write_json_atomic(self._record, {"claims": rows})


def _read_claims(record: Path) -> dict[Key, str]:
    """The recorded claims; an unreadable record counts as none (and is rewritten on the next change)."""
    try:
        rows = json.loads(record.read_text())["claims"]
        return {(str(kind), str(symbol)): str(owner) for kind, symbol, owner in rows}
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return {}
