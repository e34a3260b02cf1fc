"""The sdk runs inside plugin processes: it may import the standard library and pynng, nothing else."""

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
