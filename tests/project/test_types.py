"""mypy finds no error in the loader and the sdk (configuration: [tool.mypy] in pyproject.toml).

Type hints that nothing checks drift from the code; this keeps them true.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# mypy over every module takes seconds: a check, not a unit test (make test runs it).
pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_mypy_finds_no_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", "--cache-dir", "/dev/null"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"mypy found errors:\n{result.stdout}{result.stderr}"
