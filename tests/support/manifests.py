"""A minimal valid plugin folder and the CLI, for the manifest and validate tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

GOOD = {"version": "v1.0.0", "language": "python", "executable": "main.py", "sources": ["counter"]}


def plugin(tmp_path: Path, name: str = "car", manifest: dict | None = None, exe: str = "main.py") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / exe).write_text("print('hi')\n")
    (folder / f"{name}.json").write_text(json.dumps(manifest if manifest is not None else GOOD))
    return folder


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loader", *args], capture_output=True, text=True, timeout=60)
