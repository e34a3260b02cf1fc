"""Configuration files a plugin zip ships for ``etc/``, and who owns each copy.

A REST install copies ``sources/<symbol>.yaml`` (and ``sinks/``,
``functions/`` files) into ``etc_dir`` so an operator can edit them.  Those
files are shared ground: another plugin or the operator may own a file of the
same name.  So an install copies a file only when

- it is for one of the plugin's own symbols of that kind (never for another
  plugin's source or a built-in sink), and
- nobody else owns the destination: it does not exist, or this plugin
  installed it and nobody edited it since.

Everything else is kept as it is and reported as a warning.  What an install
copied is recorded, with a hash of the content, in
``<data_dir>/installed/<plugin>.json``; deleting the plugin removes exactly
those files, and only while they still hold what was installed (an operator's
edit makes the file the operator's).

``plan`` decides, with no I/O beyond reading the files it compares;
``read_record``/``write_record`` are the record's I/O.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from loader.files import write_json_atomic
from loader.plugins.manifest import PluginSpec

RECORD_DIR = "installed"
KINDS = ("sources", "sinks", "functions")


@dataclass
class ConfigPlan:
    """What an install does with its shipped configuration files."""

    #: (source file in the staged folder, destination in etc_dir)
    copy: list[tuple[Path, Path]] = field(default_factory=list)
    #: Why a shipped file was not copied, one sentence each.
    kept: list[str] = field(default_factory=list)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_path(data_dir: Path, plugin: str) -> Path:
    return data_dir / RECORD_DIR / f"{plugin}.json"


def read_record(data_dir: Path, plugin: str) -> dict[str, str]:
    """``{path relative to etc_dir: sha256 of what was installed}``; empty when there is none (or it is unreadable)."""
    try:
        data = json.loads(record_path(data_dir, plugin).read_text())
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict):
        return {}
    return {str(k): str(v) for k, v in files.items()}


def write_record(data_dir: Path, plugin: str, files: dict[str, str]) -> None:
    path = record_path(data_dir, plugin)
    if not files:
        path.unlink(missing_ok=True)
        return
    write_json_atomic(path, {"plugin": plugin, "files": dict(sorted(files.items()))})


def _current(path: Path) -> str | None:
    """sha256 of the file's content, None when there is no regular file."""
    try:
        return digest(path.read_bytes()) if path.is_file() else None
    except OSError:
        return None


def plan(spec: PluginSpec, shipped: list[tuple[str, Path]], etc_dir: Path, own: dict[str, str]) -> ConfigPlan:
    """Which shipped files to copy to ``etc_dir`` and which to keep; ``own`` is this plugin's record."""
    result = ConfigPlan()
    for kind, source in shipped:
        relative = f"{kind}/{source.name}"
        destination = etc_dir / kind / source.name
        if source.stem not in spec.symbols(kind):
            result.kept.append(
                f"{relative} was not installed: {source.stem!r} is not one of the plugin's "
                f"{kind} ({', '.join(spec.symbols(kind)) or 'none'}); a plugin ships "
                "configuration only for its own symbols"
            )
            continue
        current = _current(destination)
        if current is None and not destination.exists() and not destination.is_symlink():
            result.copy.append((source, destination))
        elif current is not None and own.get(relative) == current:
            result.copy.append((source, destination))  # installed by this plugin, unedited: an update may replace it
        elif current is not None and current == _current(source):
            continue  # already what the plugin ships; whoever owns it keeps it
        else:
            result.kept.append(
                f"{destination} was kept: it exists and this plugin did not install it (or it was "
                f"edited since); the plugin's own {relative} still applies under it"
            )
    return result


def removable(record: dict[str, str], etc_dir: Path) -> tuple[list[Path], list[str]]:
    """Files of ``record`` still holding what was installed (to remove), and why the others stay."""
    remove: list[Path] = []
    kept: list[str] = []
    for relative, installed in sorted(record.items()):
        parts = Path(relative).parts
        if len(parts) != 2 or parts[0] not in KINDS or parts[1].startswith("."):
            continue  # not something an install writes: never touch it
        path = etc_dir / relative
        current = _current(path)
        if current is None:
            continue
        if current == installed:
            remove.append(path)
        else:
            kept.append(f"{path} was kept: it was edited after the plugin installed it")
    return remove, kept
