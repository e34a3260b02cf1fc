"""``python -m bench.stress``: repeat a flaky-looking run until it fails, keeping what a failure needs.

    python -m bench.stress --runs 100                          python -m bench --quick, 100 times
    python -m bench.stress --runs 300 --only pipeline,hotswap  some scenarios only
    python -m bench.stress --runs 50 --pytest tests/dataplane/test_batching.py -k upgraded
                                                               a pytest selection, 50 times
    python -m bench.stress --runs 100 --closerace 100          python -m bench.closerace, 100 times

Each run is a fresh process.  A passing run leaves nothing behind; a failing
one keeps its output (and, for the bench, its run directory with every
loader log) under ``--keep-dir``, and the summary names where.  Exit status
0 when every run passed, 1 otherwise.  Load the machine (run it beside a
full ``make test``) to make timing faults show sooner.  See
docs/benchmarks.md, "Stress loop".
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KEPT = re.compile(r"^run directory kept: (.+)$", re.MULTILINE)


def _command(args: argparse.Namespace, run_dir: Path) -> list[str]:
    if args.pytest is not None:
        return [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *args.pytest]
    if args.closerace is not None:
        return [sys.executable, "-m", "bench.closerace", "--rounds", str(args.closerace)]
    command = [sys.executable, "-m", "bench", "--quick", "--keep", "--out", str(run_dir / "results.json")]
    return command + (["--only", args.only] if args.only else [])


def _one_run(args: argparse.Namespace, index: int, keep_dir: Path) -> tuple[bool, float]:
    """Run once; on failure keep its output (and the bench's run directory) as ``keep_dir/run<index>``."""
    run_dir = keep_dir / f"run{index}"
    run_dir.mkdir(parents=True)
    started = time.monotonic()
    proc = subprocess.Popen(
        _command(args, run_dir), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: the bench and pytest clean up their own processes
        stdout, stderr = proc.communicate()
        stderr += f"\nstress: ended after the {args.timeout:g}s timeout\n"
    seconds = time.monotonic() - started
    kept = KEPT.search(stdout)
    bench_dir = Path(kept.group(1).strip()) if kept else None
    if proc.returncode == 0:
        shutil.rmtree(run_dir, ignore_errors=True)
        if bench_dir is not None:
            shutil.rmtree(bench_dir, ignore_errors=True)
        return True, seconds
    (run_dir / "stdout.txt").write_text(stdout)
    (run_dir / "stderr.txt").write_text(stderr)
    if bench_dir is not None and bench_dir.is_dir():
        shutil.move(str(bench_dir), run_dir / "bench-run")
    return False, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stress", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="how many runs (default 100)")
    parser.add_argument("--only", metavar="NAME[,NAME]", help="bench scenarios to run (python -m bench --list)")
    parser.add_argument(
        "--closerace", type=int, metavar="ROUNDS", help="repeat python -m bench.closerace with this many rounds instead"
    )
    parser.add_argument("--pytest", nargs=argparse.REMAINDER, help="repeat this pytest selection instead")
    parser.add_argument("--timeout", type=float, default=600, help="seconds one run may take (default 600)")
    parser.add_argument("--keep-dir", type=Path, help="where failed runs are kept (default: a new /tmp directory)")
    args = parser.parse_args(argv)
    keep_dir = args.keep_dir or Path(tempfile.mkdtemp(prefix="pstress-", dir="/tmp"))
    keep_dir.mkdir(parents=True, exist_ok=True)
    failed: list[int] = []
    for index in range(1, args.runs + 1):
        ok, seconds = _one_run(args, index, keep_dir)
        if not ok:
            failed.append(index)
        print(f"stress: run {index}/{args.runs} {'passed' if ok else 'FAILED'} in {seconds:.0f}s", flush=True)
    passed = args.runs - len(failed)
    print(f"stress: {passed} passed, {len(failed)} failed")
    if failed:
        print(f"stress: failed runs {failed} kept under {keep_dir}")
    else:
        shutil.rmtree(keep_dir, ignore_errors=True)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
