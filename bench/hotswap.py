"""Figure 7: swapping a sink plugin's version under load, with ``requireAck``.

The real loader runs a source plugin emitting records numbered 1..N as fast
as it can and a sink plugin recording every number it receives, with the
monotonic time of arrival, to a file per process (flushed before the ack).
Once a third of the records arrived, the sink plugin's folder is updated in
place (its manifest gets a new version, written atomically), so the loader
swaps its process mid-stream.  When every number arrived (or nothing moved
for a while) the files of both processes are merged:

- lost: numbers never received (must be 0);
- duplicates: numbers received more than once (allowed: a record the old
  process took but did not ack is sent again to the new one);
- longest gap: the longest time between two consecutive arrivals, across
  both processes, which is what the swap costs a stream.

When the loader has the batching extension this runs twice: with it off
(one record per message) and on (more records, so the swap still lands
mid-stream).  The sink is an sdk plugin, so it runs with the ack window
(``sinks.ack_window`` messages in flight, docs/protocol.md): the note says
which, and every message in flight at the swap goes again to the new process.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

from bench.harness import BenchError, Run, batch_supported, event_time, install_benchplug, write_json
from bench.report import Row, error_row, info_row, limit_row
from loader.config import SinkSettings
from sdk.protocol.handshake import declared_ack_window

STALL_S = 8.0


def _received(
    count_dir: Path, rule: str, per_process: dict[str, tuple[float, int]] | None = None
) -> list[tuple[float, int]]:
    """(arrival time, number) of every record any sink process recorded for ``rule``."""
    arrivals = []
    for path in count_dir.glob(f"rec-{rule}-*.txt"):
        lines = path.read_text().splitlines()
        for line in lines:
            parts = line.split()
            if len(parts) == 2:  # a line being written is incomplete
                arrivals.append((float(parts[1]), int(parts[0])))
        if per_process is not None and lines:
            per_process[path.stem.rsplit("-", 1)[1]] = (float(lines[0].split()[1]), len(lines))
    return arrivals


def measure(run: Run) -> list[Row]:
    rows = _swap(run, "l7", False, 4000 if run.quick else 15000, "")
    if batch_supported():
        try:
            rows += _swap(run, "l7b", True, 60000 if run.quick else 200000, "batching on: ")
        except Exception as exc:  # keep the unbatched figures
            rows.append(error_row("hotswap.batched_lost", "7", "batching on: lost", f"{type(exc).__name__}: {exc}"))
    return rows


def _swap(run: Run, name: str, batch: bool, total: int, prefix: str) -> list[Row]:
    loader = run.loader(name, batch=batch)
    install_benchplug(loader.plugins_dir, "bsrc", sources=["flood"])
    sink_folder = install_benchplug(loader.plugins_dir, "bsink", count_dir=loader.count_dir, sinks=["count"])
    loader.source_config("flood", default={"count": total})
    loader.stream("s", "flood")
    loader.start()
    for plugin in ("bsrc", "bsink"):
        loader.wait_for("plugin.on_probation", plugin=plugin)
    rule = "swap"
    loader.start_rule(rule, "SELECT * FROM s", [{"count": {"requireAck": True, "record": True}}])

    deadline = time.monotonic() + 60
    while len(_received(loader.count_dir, rule)) < total // 3:
        if time.monotonic() > deadline:
            raise BenchError(f"fewer than {total // 3} records reached the sink within 60 s")
        time.sleep(0.05)
    mark = loader.mark()
    manifest = sink_folder / "bsink.json"
    write_json(manifest, {**json.loads(manifest.read_text()), "version": "v2.0.0"})
    updated = loader.wait_for("plugin.updated", timeout=30, since=mark, plugin="bsink")
    updating = loader.find("plugin.updating", since=mark, plugin="bsink")

    seen, moved_at = 0, time.monotonic()
    while True:
        arrivals = _received(loader.count_dir, rule)
        distinct = len({n for _, n in arrivals})
        if distinct >= total:
            break
        if len(arrivals) != seen:
            seen, moved_at = len(arrivals), time.monotonic()
        elif time.monotonic() - moved_at > STALL_S:
            break  # nothing more is coming: what is missing is lost
        time.sleep(0.1)
    per_process: dict[str, tuple[float, int]] = {}
    arrivals = _received(loader.count_dir, rule, per_process)
    stopped = loader.find("rule.stopped", rule=rule)
    window = _ack_window(loader.find("plugin.running", plugin="bsink"))
    loader.delete_rule(rule)
    loader.stop()

    arrivals.sort()
    numbers = [n for _, n in arrivals]
    distinct = set(numbers)
    lost = len(set(range(1, total + 1)) - distinct)
    duplicates = len(numbers) - len(distinct)
    gaps = [(b[0] - a[0]) * 1000 for a, b in itertools.pairwise(arrivals)]
    longest = max(gaps) if gaps else 0.0
    swap_ms = (event_time(updated) - event_time(updating[0])) * 1000 if updating else None
    swap_note = f"swap took {swap_ms:.0f} ms (plugin.updating -> plugin.updated)" if swap_ms is not None else ""
    in_order = sorted(per_process.items(), key=lambda item: item[1][0])
    processes = ", then ".join(f"{count} by pid {pid}" for pid, (_, count) in in_order)
    if len(per_process) < 2:
        processes += " (the swap did not happen mid-stream)"
    note = f"{total} records: {processes}; {swap_note}; ack window {window}"
    note += "; the rule was stopped!" if stopped else ""
    key = "hotswap.batched_" if batch else "hotswap."
    first = f"{prefix}hot swap of the sink under load (requireAck): lost" if not batch else f"{prefix}lost"
    return [
        limit_row(f"{key}lost", "7", first, lost, "records", 0, exact=True, note=note),
        info_row(
            f"{key}duplicates", "7", f"{prefix}duplicates" if batch else "same: duplicates", duplicates, "records"
        ),
        info_row(
            f"{key}longest_gap",
            "7",
            f"{prefix}longest gap" if batch else "same: longest gap between records at the sink",
            longest,
            "ms",
            f"median gap {sorted(gaps)[len(gaps) // 2]:.3f} ms" if gaps else "",
        ),
    ]


def _ack_window(running: list[dict]) -> str:
    """The ack window the sink's processes had: the default ``sinks.ack_window`` bounded by what each declared."""
    windows = {min(SinkSettings().ack_window, declared_ack_window(e.get("capabilities") or {})) for e in running}
    return "/".join(str(w) for w in sorted(windows)) or "unknown"
