"""Figure 10: the side-by-side comparison with eKuiper, repeatable on the loader alone.

The real eKuiper v2.4.0 and the loader were once run on the same plugins,
written only against eKuiper's official Python SDK: a source emitting
200,000 records, a counting sink, and a function ``inc``, through
``SELECT * FROM s`` and ``SELECT inc(x) AS x FROM s``.  eKuiper moved more
records per second through ``SELECT *`` but dropped some (and most of them
with a function); the loader dropped none.  This scenario runs the loader
half of that comparison the same way, so the figures can be repeated after
any change: bench/plugins/ekcompare.py in the SDK's cached venv (the
manifest names it with ``virtualEnvType: venv``), batching off (eKuiper's
SDK has no batches anyway), one rule per round, each starting a source
instance that emits records 1..N.

Records/s is the sink's own count divided by the time between the first
and the last record it received; lost is N minus what arrived once the
count stopped moving.  eKuiper's SDK hard-codes ``/tmp`` for its sockets, so
this loader's IPC directory is ``/tmp`` and every name carries the run's token.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from bench.harness import BenchError, Run, write_json
from bench.report import Row, error_row, info_row, median

PROGRAM = Path(__file__).resolve().parent / "plugins" / "ekcompare.py"
RECORDS = 200_000
QUICK_RECORDS = 20_000
#: The count is final once it stopped moving for this long.
QUIET_S = 2.0
SUBJECTS = [
    ("select", "eKuiper SDK plugins: SELECT * (figure of the eKuiper comparison)", "SELECT * FROM {stream}"),
    ("inc", "eKuiper SDK plugins: SELECT inc(x), a portable function per record", "SELECT {inc}(x) AS x FROM {stream}"),
]


def _sdk_python() -> Path:
    from tests.support.ekuiper_env import EkuiperEnvError, ensure_ekuiper_python

    try:
        return ensure_ekuiper_python()
    except EkuiperEnvError as exc:
        raise BenchError(f"cannot build the eKuiper SDK venv: {str(exc)[:500]}") from None


def _install(plugins_dir: Path, etc_dir: Path, name: str, count_dir: Path, records: int) -> None:
    folder = plugins_dir / name
    folder.mkdir(parents=True)
    shutil.copy(PROGRAM, folder / "ekcompare.py")
    (folder / "bench.json").write_text(json.dumps({"count_dir": str(count_dir)}))
    venv = _sdk_python().parent.parent
    write_json(
        folder / f"{name}.json",
        {
            "version": "v1.0.0",
            "language": "python",
            "executable": "ekcompare.py",
            "virtualEnvType": "venv",
            "env": str(venv),
            "sources": [f"seq{name}"],
            "sinks": [f"count{name}"],
            "functions": [f"inc{name}"],
        },
    )
    (etc_dir / "sources").mkdir(parents=True, exist_ok=True)
    (etc_dir / "sources" / f"seq{name}.yaml").write_text(json.dumps({"default": {"count": records}}))


def _final_count(path: Path, records: int, timeout_s: float) -> tuple[int, float, float]:
    """(count, first, last) once every record arrived or the count stopped moving for QUIET_S."""
    deadline = time.monotonic() + timeout_s
    seen, since = None, time.monotonic()
    while time.monotonic() < deadline:
        try:
            count, first, last = path.read_text().split()
            sample = (int(count), float(first), float(last))
        except (OSError, ValueError):
            sample = None
        if sample is not None and sample[0] >= records:
            return sample
        if sample != seen:
            seen, since = sample, time.monotonic()
        elif seen is not None and seen[0] > 0 and time.monotonic() - since >= QUIET_S:
            return seen
        time.sleep(0.05)
    raise BenchError(f"{path.name}: the count did not settle within {timeout_s:g}s (last: {seen})")


def measure(run: Run) -> list[Row]:
    records = QUICK_RECORDS if run.quick else RECORDS
    rounds = 1 if run.quick else 3
    name = f"ekc{run.token}"
    stream = f"s{run.token}"
    loader = run.loader("ekc", batch=False, ipc_dir=Path("/tmp"))
    _install(loader.plugins_dir, loader.etc_dir, name, loader.count_dir, records)
    loader.stream(stream, f"seq{name}")
    loader.start()
    loader.wait_for("plugin.on_probation", plugin=name, timeout=60)
    rates: dict[str, list[float]] = {key: [] for key, _, _ in SUBJECTS}
    lost: dict[str, list[int]] = {key: [] for key, _, _ in SUBJECTS}
    errors: dict[str, str] = {}
    for index in range(rounds):
        for key, _, sql in SUBJECTS:
            if key in errors:
                continue
            rule_id = f"{key}{index}{run.token}"
            mark = loader.mark()
            loader.add_rule(rule_id, sql.format(stream=stream, inc=f"inc{name}"), [{f"count{name}": {}}])
            try:
                loader.wait_for("rule.started", since=mark, rule=rule_id)
                count, first, last = _final_count(loader.count_dir / f"{rule_id}.count", records, 60 + records / 500)
                rates[key].append(count / (last - first) if last > first else 0.0)
                lost[key].append(records - count)
            except BenchError as exc:
                errors[key] = str(exc)
            finally:
                loader.delete_rule(rule_id)
    loader.stop()
    rows = []
    for key, label, _ in SUBJECTS:
        if key in errors or not rates[key]:
            rows.append(error_row(f"ekcompare.{key}", "10", label, errors.get(key, "no samples")))
            continue
        note = f"{records:,} records a round; lost: {', '.join(str(n) for n in lost[key])}"
        rows.append(info_row(f"ekcompare.{key}", "10", label, median(rates[key]), "rec/s", note, rates[key]))
    return rows
