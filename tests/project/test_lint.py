"""One style, checked: ``ruff check`` and ``ruff format --check`` find nothing (configuration: [tool.ruff])."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, "."], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_ruff_finds_nothing() -> None:
    result = _ruff("check", "--no-cache", "--output-format", "concise")
    assert result.returncode == 0, f"ruff check found problems (fix them, or ruff check --fix):\n{result.stdout}"


def test_the_code_is_formatted() -> None:
    result = _ruff("format", "--check", "--no-cache")
    assert result.returncode == 0, f"not formatted (run ruff format):\n{result.stdout}"
