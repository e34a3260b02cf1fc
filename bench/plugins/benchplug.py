"""Benchmark plugin on the project's ``sdk``.

One program for every benchmark plugin folder: it declares the symbols its
folder's manifest (``<folder>.json`` in the working directory) lists, so the
same file serves a source plugin, a sink plugin, a function plugin or twenty
idle plugins with distinct symbol names.

- every source is ``Flood``: emits ``{"n": 1, 2, ..., "name", "v"}`` as fast
  as it can (75-byte messages on the wire), forever or up to ``count``
  records (source config), then idles until stopped;
- every sink is ``Count``: counts what it receives; with ``record: true`` in
  its config it also appends ``<n> <monotonic time>`` per record to
  ``rec-<rule>-<pid>.txt`` (flushed before the ack, so a killed or swapped
  process loses nothing it acknowledged);
- every function is ``Echo``: returns its first argument and counts calls
  (one counter per symbol for the process's life).

Counts are written as ``<count> <monotonic time>`` to ``<count_dir>/<file>``
every 50 ms by a reporter thread (``count_dir`` comes from ``bench.json``
next to the program), so nothing is paid per record beyond an increment.
CLOCK_MONOTONIC is shared by all processes of the machine, so the benchmark
computes rates from these samples directly.
"""

import json
import os
import threading
import time

from sdk import Context, Function, PluginConfig, Sink, Source, start

NAME = os.path.basename(os.getcwd())
REPORT_EVERY_S = 0.05


def _settings() -> dict:
    try:
        with open("bench.json") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


SETTINGS = _settings()
COUNT_DIR = SETTINGS.get("count_dir")


class Reporter:
    """Writes ``<count> <time>`` of a counting object to a file, atomically, until stopped."""

    def __init__(self, owner, filename: str) -> None:
        self.owner = owner
        self.path = os.path.join(COUNT_DIR, filename) if COUNT_DIR else None
        self.stopped = threading.Event()
        if self.path:
            threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        tmp = f"{self.path}.{os.getpid()}.tmp"
        while True:
            count, now = self.owner.count, time.monotonic()
            with open(tmp, "w") as f:
                f.write(f"{count} {now:.6f}\n")
            os.replace(tmp, self.path)
            if self.stopped.wait(REPORT_EVERY_S):
                return

    def stop(self) -> None:
        self.stopped.set()


class Flood(Source):
    def configure(self, datasource: str, conf: dict) -> None:
        self.limit = int(conf.get("count", 0))  # 0: endless
        self.report = bool(conf.get("report", False))  # count emitted records to source-<rule>.count
        self.count = 0
        self.reporter = None
        self.stopping = False
        self.idle = threading.Event()

    def open(self, ctx: Context) -> None:
        if self.report:
            self.reporter = Reporter(self, f"source-{ctx.get_rule_id()}.count")
        emit = ctx.emit
        n = 0
        limit = self.limit or -1
        while not self.stopping and n != limit:
            n += 1
            emit({"n": n, "name": "bench-record", "v": 12.5}, None)
            if self.report:
                self.count = n
        self.idle.wait()

    def close(self, ctx: Context) -> None:
        self.stopping = True
        if self.reporter is not None:
            self.reporter.stop()
        self.idle.set()


class Count(Sink):
    def configure(self, conf: dict) -> None:
        self.count = 0
        self.record = bool(conf.get("record", False))
        self.file = None
        self.reporter = None

    def open(self, ctx: Context) -> None:
        rule = ctx.get_rule_id()
        self.reporter = Reporter(self, f"sink-{rule}.count")
        if self.record and COUNT_DIR:
            self.file = open(os.path.join(COUNT_DIR, f"rec-{rule}-{os.getpid()}.txt"), "a")

    def collect(self, ctx: Context, data: bytes) -> None:
        """Counts messages: one per record for a rule without a window (an array of one row, or the
        row itself with sendSingle); decodes only when recording."""
        self.count += 1
        if self.file is not None:
            message = json.loads(data)
            for row in message if isinstance(message, list) else [message]:
                self.file.write(f"{row['n']} {time.monotonic():.6f}\n")
            self.file.flush()

    def close(self, ctx: Context) -> None:
        if self.reporter is not None:
            self.reporter.stop()
        if self.file is not None:
            self.file.close()


class _Tally:
    count = 0


_TALLIES: dict = {}


def _tally(filename: str) -> _Tally:
    """One counter (and reporter) per function symbol for the process's life.

    A function object is built for every ``start`` of the symbol and has no
    ``close``, so its counter must outlive it: rates come from count deltas.
    """
    tally = _TALLIES.get(filename)
    if tally is None:
        tally = _TALLIES[filename] = _Tally()
        Reporter(tally, filename)
    return tally


class Echo(Function):
    def __init__(self, symbol: str) -> None:
        self.tally = _tally(f"func-{symbol}.count")

    def exec(self, args, ctx: Context):
        self.tally.count += 1
        return args[0]


def _manifest() -> dict:
    with open(f"{NAME}.json") as f:
        return json.load(f)


if __name__ == "__main__":
    manifest = _manifest()
    start(
        PluginConfig(
            NAME,
            sources={name: Flood for name in manifest.get("sources", [])},
            sinks={name: Count for name in manifest.get("sinks", [])},
            functions={name: (lambda name=name: Echo(name)) for name in manifest.get("functions", [])},
        )
    )
