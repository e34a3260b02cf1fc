"""eKuiper's ``/metadata/...`` views of sources, sinks and functions, from the plugins' metadata files.

A plugin may ship, per symbol, ``sources/<symbol>.json``, ``sinks/<symbol>.json``
or ``functions/<symbol>.json``: eKuiper's UI metadata (``about``, ``libs``,
``properties``, ``node``), never configuration (docs/sdk.md).  eKuiper serves
them converted for its UI: texts keyed ``en_US``/``zh_CN`` become ``en``/``zh``
and ``about.installed`` says the symbol is there.  A symbol without such a
file, or with one the loader cannot read, gets a minimal entry (the second
with an extra ``error`` naming the file and the fault), so every symbol a
rule can use is listed.  Pure functions over (kind, symbol, plugin, folder).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: The ``about`` object's keys, in eKuiper's order.
ABOUT_KEYS = ("trial", "installed", "author", "helpUrl", "description")
FIELD_KEYS = (
    "exist",
    "name",
    "default",
    "type",
    "control",
    "connection_related",
    "optional",
    "values",
    "hint",
    "label",
)


def _language(text: Any) -> Any:
    """``{"en_US": a, "zh_CN": b}`` as eKuiper's UI gets it: ``{"en": a, "zh": b}``."""
    if not isinstance(text, dict):
        return None
    return {"en": text.get("en_US", ""), "zh": text.get("zh_CN", "")}


def _about(about: Any) -> dict[str, Any]:
    about = about if isinstance(about, dict) else {}
    return {
        "trial": bool(about.get("trial", False)),
        "installed": True,
        "author": about.get("author"),
        "helpUrl": _language(about.get("helpUrl")),
        "description": _language(about.get("description")),
    }


def _field(field: Any) -> dict[str, Any]:
    field = field if isinstance(field, dict) else {}
    default = field.get("default")
    if isinstance(default, list) and all(isinstance(item, dict) for item in default):
        default = [_field(item) for item in default]  # a nested group of fields
    return {
        "exist": False,
        "name": field.get("name", ""),
        "default": default,
        "type": field.get("type", ""),
        "control": field.get("control", ""),
        "connection_related": bool(field.get("connection_related", False)),
        "optional": bool(field.get("optional", False)),
        "values": field.get("values"),
        "hint": _language(field.get("hint")),
        "label": _language(field.get("label")),
    }


def _fields(fields: Any) -> list[dict[str, Any]]:
    return [_field(f) for f in fields] if isinstance(fields, list) else []


def _minimal_about(kind: str, symbol: str, plugin: str | None) -> dict[str, Any]:
    text = f"{kind[:-1]} {symbol} " + (f"of portable plugin {plugin}" if plugin else "built into the loader")
    return {"trial": False, "installed": True, "author": None, "helpUrl": None, "description": {"en": text, "zh": text}}


def read_metadata(folder: Path | None, kind: str, symbol: str) -> tuple[dict[str, Any] | None, str | None]:
    """The metadata file of ``symbol`` in a plugin folder: (content, None), (None, why unusable) or (None, None)."""
    if folder is None:
        return None, None
    path = folder / kind / f"{symbol}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as exc:
        return None, f"{path}: cannot read the metadata file: {exc}"
    if not isinstance(data, dict) or not isinstance(data.get("about"), dict):
        return None, f"{path}: the metadata file has no 'about' object, as eKuiper requires; see docs/sdk.md"
    return data, None


def describe(kind: str, symbol: str, plugin: str | None, folder: Path | None) -> dict[str, Any]:
    """``GET /metadata/sources/{name}`` and ``/metadata/sinks/{name}``: one symbol's UI metadata."""
    data, error = read_metadata(folder, kind, symbol)
    about = _about(data["about"]) if data else _minimal_about(kind, symbol, plugin)
    view: dict[str, Any] = {"about": about, "libs": (data or {}).get("libs") or []}
    if kind == "sources":
        if data is not None and "dataSource" in data:
            view["dataSource"] = data["dataSource"]
        properties = (data or {}).get("properties")
        view["properties"] = (
            {key: _fields(value) for key, value in properties.items()}
            if isinstance(properties, dict)
            else {"default": []}
        )
    else:
        view["properties"] = _fields((data or {}).get("properties"))
    view["node"] = (data or {}).get("node")
    if error:
        view["error"] = error
    return view


def brief(kind: str, symbol: str, plugin: str | None, folder: Path | None) -> dict[str, Any]:
    """One entry of ``GET /metadata/sources`` or ``/metadata/sinks``: its name and ``about``."""
    return {"name": symbol, "about": describe(kind, symbol, plugin, folder)["about"]}


def function_group(symbol: str, plugin: str | None, folder: Path | None) -> dict[str, Any]:
    """One entry of ``GET /metadata/functions``: ``about``, ``name`` and the functions it describes."""
    data, error = read_metadata(folder, "functions", symbol)
    if data is None:
        group: dict[str, Any] = {
            "about": _minimal_about("functions", symbol, plugin),
            "name": symbol,
            "functions": [{"name": symbol, "example": "", "hint": None}],
        }
    else:
        listed = data.get("functions")
        functions: list[Any] = listed if isinstance(listed, list) else []
        group = {
            "about": _about(data["about"]),
            "name": data.get("name") or symbol,
            "functions": [
                {"name": f.get("name", ""), "example": f.get("example", ""), "hint": _language(f.get("hint"))}
                for f in functions
                if isinstance(f, dict)
            ],
        }
    if error:
        group["error"] = error
    return group
