"""The sdk runs inside plugin processes: it may import the standard library and pynng, nothing else;
its protocol package, which the loader imports too, only the standard library."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("structlog", "watchdog", "yaml", "jsonschema", "loader")


def modules_after(statement: str) -> set[str]:
    code = f"import json, sys; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)
    return set(json.loads(out.stdout))


def test_import_sdk_loads_none_of_the_loader_dependencies() -> None:
    loaded = modules_after("import sdk, sdk.debug")
    assert "sdk" in loaded and "pynng" in loaded
    bad = sorted(m for m in loaded if m.split(".")[0] in FORBIDDEN)
    assert bad == []


def test_import_sdk_adds_only_stdlib_modules_beyond_pynng() -> None:
    allowed = modules_after("import pynng")
    loaded = modules_after("import sdk, sdk.debug")
    extra = {m.split(".")[0] for m in loaded - allowed}
    assert extra - set(sys.stdlib_module_names) == {"sdk"}


#: Imports every module of sdk/protocol with an empty ``sdk`` package in front of it,
#: so that only what the protocol itself imports is loaded (``import sdk`` would load pynng).
_PROTOCOL_ONLY = """
import importlib, json, pathlib, pkgutil, sys, types
import sdk as real
folder = pathlib.Path(real.__file__).parent
for name in [m for m in sys.modules if m == "sdk" or m.startswith("sdk.") or m.startswith("pynng")]:
    del sys.modules[name]
shell = types.ModuleType("sdk")
shell.__path__ = [str(folder)]
sys.modules["sdk"] = shell
before = set(sys.modules)
modules = [m.name for m in pkgutil.iter_modules([str(folder / "protocol")])]
for name in modules:
    importlib.import_module("sdk.protocol." + name)
print(json.dumps({"modules": modules, "loaded": sorted(set(sys.modules) - before)}))
"""


def test_the_protocol_package_imports_only_the_standard_library() -> None:
    out = subprocess.run([sys.executable, "-c", _PROTOCOL_ONLY], capture_output=True, text=True, check=True, timeout=30)
    result = json.loads(out.stdout)
    assert {"names", "control", "handshake", "messages"} <= set(result["modules"])
    ours = {m for m in result["loaded"] if m == "sdk.protocol" or m.startswith("sdk.protocol.")}
    assert ours, "nothing of sdk.protocol was imported"
    foreign = sorted(m for m in set(result["loaded"]) - ours if m.split(".")[0] not in sys.stdlib_module_names)
    assert foreign == []
