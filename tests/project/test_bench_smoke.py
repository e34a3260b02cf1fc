"""``python -m bench --quick`` runs every benchmark scenario to the end and reports every figure.

When it does not, the failure message carries everything needed to find out
why from one CI log: each failed scenario's or subject's traceback, the
bench's own stderr, and the tail of every loader log of the run (the run
directory is kept with ``--keep`` and removed here afterwards).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# The whole benchmark: real loaders and plugin processes.
pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
LOG_TAIL_LINES = 40


def _kept_run_dir(stdout: str) -> Path | None:
    match = re.search(r"^run directory kept: (.+)$", stdout, re.MULTILINE)
    return Path(match.group(1).strip()) if match else None


def _log_tails(run_dir: Path | None) -> str:
    """The last lines of every log the run kept: the loaders' and the plugins'."""
    if run_dir is None or not run_dir.is_dir():
        return "(no run directory was kept)"
    parts = []
    for log in sorted(run_dir.rglob("*.log")):
        lines = log.read_text(errors="replace").splitlines()
        parts.append(
            f"--- {log.relative_to(run_dir)} (last {LOG_TAIL_LINES} of {len(lines)} lines)\n"
            + "\n".join(lines[-LOG_TAIL_LINES:])
        )
    return "\n".join(parts) or "(the run directory holds no log)"


def _diagnosis(result: subprocess.CompletedProcess, results: dict | None, run_dir: Path | None) -> str:
    errors = (results or {}).get("errors", {})
    failed_rows = [row for row in (results or {}).get("rows", []) if row.get("error")]
    return "\n".join(
        [
            f"python -m bench --quick exited {result.returncode}",
            "failed scenarios:",
            *(f"== {name}\n{trace}" for name, trace in errors.items()),
            "failed rows:",
            *(f"  {row['key']}: {row['error']}" for row in failed_rows),
            "== bench stderr (tail)",
            result.stderr[-6000:],
            "== bench stdout (tail)",
            result.stdout[-3000:],
            "== kept logs",
            _log_tails(run_dir),
        ]
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_bench_produces_every_figure(tmp_path):
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--keep", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
    )
    run_dir = _kept_run_dir(result.stdout)
    try:
        results = json.loads(out.read_text()) if out.exists() else None
        diagnosis = _diagnosis(result, results, run_dir)
        assert result.returncode == 0 and results is not None, diagnosis
        assert results["errors"] == {}, diagnosis
        rows = results["rows"]
        assert not [row for row in rows if row.get("error")], diagnosis
        assert {str(n) for n in range(1, 12)} <= {row["figure"] for row in rows}
        assert all(row["value"] is not None for row in rows), diagnosis
    finally:
        if run_dir is not None:
            shutil.rmtree(run_dir, ignore_errors=True)
