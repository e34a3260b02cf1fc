"""Configuration handed to a source when it starts.

As in eKuiper, only a source has configuration files: YAML with named keys
(``default`` first), of which the stream's ``CONF_KEY`` picks one, merged
over ``default``.  A plugin may ship its own ``sources/<symbol>.yaml``; the
file in ``etc/sources/`` overrides it key by key.  A sink's configuration is
its rule action's properties, and a function has none.

The JSON files of an eKuiper plugin (``sources/<symbol>.json``,
``sinks/<symbol>.json``, ``functions/<symbol>.json``) are metadata for a UI
(``about``, ``libs``, ``properties``, ...), never configuration, so nothing
here reads them: eKuiper's own examples ship both kinds side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from loader.plugins.folders import MAX_DEFINITION_BYTES, FolderError, read_regular


class SymbolConfigError(Exception):
    """A symbol configuration file is unreadable or lacks the requested key."""


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        text = read_regular(path, MAX_DEFINITION_BYTES).decode("utf-8")
        data = yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError, FolderError) as exc:
        raise SymbolConfigError(f"{path}: cannot read it: {exc}") from None
    except RecursionError:  # YAML nested deeper than its recursive reader goes
        raise SymbolConfigError(f"{path}: nested too deep to read; flatten it") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SymbolConfigError(f"{path}: must be a mapping of keys to values")
    return data


def _source_files(symbol: str, folder: Path) -> list[Path]:
    return [folder / "sources" / f"{symbol}{suffix}" for suffix in (".yaml", ".yml")]


def source_config(symbol: str, conf_key: str, plugin_folder: Path | None, etc_dir: Path) -> dict[str, Any]:
    layers = [_read(p) for p in (_source_files(symbol, plugin_folder) if plugin_folder else [])]
    layers += [_read(p) for p in _source_files(symbol, etc_dir)]
    merged: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for key, values in layer.items():
            if values is not None and not isinstance(values, dict):
                raise SymbolConfigError(f"configuration key {key!r} of source {symbol!r} must be a mapping")
            merged.setdefault(key, {}).update(values or {})
    if conf_key != "default" and conf_key not in merged:
        raise SymbolConfigError(
            f"CONF_KEY {conf_key!r} is not defined for source {symbol!r}: add it to "
            f"{etc_dir / 'sources' / (symbol + '.yaml')} or use one of {sorted(merged) or ['default']}"
        )
    return {**merged.get("default", {}), **merged.get(conf_key, {})}
