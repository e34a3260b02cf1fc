"""``python -m bench``: every benchmark in one run, one table, the same figures as JSON.

    python -m bench                        all scenarios, a few minutes
    python -m bench --quick                shorter rounds, fewer samples (smoke test), well under a minute
    python -m bench --only source,memory   some scenarios (see --list)
    python -m bench --out PATH             JSON somewhere else than bench/results.json

Exit status: 0 when every scenario produced its figures (goals missed or
not), 1 when a scenario failed, 2 for a bad command line, 130 on Ctrl-C.
Every process a run started is gone and its directory removed on exit,
whatever happened.  See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pynng

from bench import ceilings, ekuiper_compare, hotswap, idle, lifecycle, memory, rules, source, sqlcost
from bench.harness import Run
from bench.report import Row, error_row, render, write_json

DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"


@dataclass(frozen=True)
class Scenario:
    name: str
    figures: str
    what: str
    measure: Callable[[Run], list[Row]]


#: In the order of the table.  A new variant (say, batched) is a new entry, or a new subject inside one.
SCENARIOS = [
    Scenario("ceilings", "1", "raw PUSH/PULL (A) and REQ/REP (B) between two processes", ceilings.measure),
    Scenario("source", "2", "sdk and eKuiper SDK source plugins into SourceChannel, vs A", source.measure),
    Scenario(
        "pipeline",
        "3",
        "source -> SELECT * -> sink plugin through the loader, with/without acks (and batched), vs A",
        rules.pipeline,
    ),
    Scenario("function", "4", "rule calling a portable function per record (and batched), vs B", rules.function),
    Scenario("lifecycle", "5,6", "folder dropped -> running; SIGKILL -> running again", lifecycle.measure),
    Scenario("hotswap", "7", "sink plugin swapped under load with requireAck: lost, duplicates, gap", hotswap.measure),
    Scenario("memory", "8", "loader RSS with 20 plugins, idle sdk plugin RSS", memory.measure),
    Scenario("idle", "9", "idle loader CPU and log lines per hour with 20 idle plugins", idle.measure),
    Scenario(
        "ekcompare",
        "10",
        "the eKuiper comparison's official-SDK plugins: 200,000 records, rec/s and lost",
        ekuiper_compare.measure,
    ),
    Scenario(
        "sqlcost", "11", "the rule worker's cost per record for each SQL corpus case, in-process", sqlcost.measure
    ),
]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (smoke test)")
    parser.add_argument("--only", metavar="NAME[,NAME]", help="run only these scenarios")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT})")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--keep", action="store_true", help="keep the run directory (loader logs, plugin folders) for a post-mortem"
    )
    args = parser.parse_args(argv)
    if args.only:
        known = {s.name for s in SCENARIOS}
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in known]
        if unknown or not wanted:
            parser.error(f"unknown scenario {', '.join(unknown) or '(none)'}; choose from {', '.join(sorted(known))}")
        args.only = wanted
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.list:
        for s in SCENARIOS:
            print(f"{s.name:10} fig {s.figures:4} {s.what}")
        return 0
    selected = [s for s in SCENARIOS if not args.only or s.name in args.only]
    signal.signal(signal.SIGTERM, _interrupt)
    started, clock = datetime.now(UTC), time.monotonic()
    rows: list[Row] = []
    errors: dict[str, str] = {}
    run = Run(quick=args.quick)
    status = 0
    try:
        for scenario in selected:
            print(f"bench: {scenario.name} (fig {scenario.figures}) ...", file=sys.stderr, flush=True)
            begun = time.monotonic()
            try:
                rows += scenario.measure(run)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                errors[scenario.name] = "".join(traceback.format_exception(exc))
                rows.append(
                    error_row(
                        f"{scenario.name}.error",
                        scenario.figures,
                        f"scenario {scenario.name}",
                        f"{type(exc).__name__}: {exc}".splitlines()[0],
                    )
                )
                print(errors[scenario.name], file=sys.stderr)
                status = 1
            finally:
                for loader in run.loaders:  # a failed scenario may leave its loader running
                    loader.stop()
            print(f"bench: {scenario.name} done in {time.monotonic() - begun:.1f}s", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("bench: interrupted, cleaning up", file=sys.stderr)
        status = 130
    finally:
        run.close(keep=args.keep)
    seconds = time.monotonic() - clock
    print()
    print(render(rows))
    print(
        f"\n{'quick run' if args.quick else 'run'} of {seconds:.0f}s; medians of {run.rounds} interleaved rounds "
        f"of {run.window_s:g}s for throughputs; ratios compare figures measured in the same rounds"
    )
    options = {
        "quick": args.quick,
        "only": args.only,
        "rounds": run.rounds,
        "window_s": run.window_s,
        "warmup_s": run.warmup_s,
        "interrupted": status == 130,
    }
    write_json(args.out, rows, options, errors, started, seconds, {"cpus": _cpus(), "pynng": pynng.__version__})
    print(f"JSON: {args.out}")
    if args.keep:
        print(f"run directory kept: {run.root}")
    return status


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    sys.exit(main())
