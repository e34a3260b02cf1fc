"""``python -m bench --quick`` runs every benchmark scenario to the end and reports every figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_bench_produces_every_figure(tmp_path):
    out = tmp_path / "results.json"
    result = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out)], cwd=REPO,
                            capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["errors"] == {}
    rows = results["rows"]
    assert not [row for row in rows if row.get("error")]
    assert {str(n) for n in range(1, 9)} <= {row["figure"] for row in rows}
    assert all(row["value"] is not None for row in rows)
