"""Figures 3 and 4: records/s through the real loader running rules.

The loader (``python -m loader serve``, REST off) runs benchmark plugins
(bench/plugins/benchplug.py): a source emitting as fast as it can, a sink
counting what it receives, a function counting its calls.  The plugins
report their counts to files every 50 ms with a monotonic timestamp, so a
rate is two reads of a file, with nothing added per record.

Each round of a subject creates a rule file with a new id, waits for
``rule.started`` and for records to flow, measures, and deletes the rule
(``rule.deleted``) before the next subject, so a ceiling round never shares
the CPUs with a running rule.

- Figure 3: ``SELECT * FROM s`` into the counting sink plugin, without and
  with ``requireAck``, against ceiling A.  A diagnostic row measures, in the
  same rounds, raw PUSH -> raw relay process -> raw PULL: the same three
  processes with nothing done per record.
- Figure 4: ``SELECT echo(n) AS y FROM s`` into the built-in ``nop`` sink,
  one portable function call per record (counted by the function plugin),
  against ceiling B.  A diagnostic row measures, in the same rounds,
  ``FunctionChannel.exec`` called from this process into the same sdk
  function plugin started without a loader: the per-call cost of the host
  channel and the sdk, with no rule and no source around.

When the loader has the batching extension (``batch`` in its config
schema), the figures above run with it switched off (one record per
message, as the goals mean), and extra rows run the same rules on a second
loader with it on (goals >= 5x of the ceiling).  Any variant is one more
entry in a subject list.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from bench.ceilings import CEILING_A, CEILING_B, count_rate, push_pull, relay, req_rep
from bench.harness import (
    PYTHON,
    Loader,
    RawControl,
    Run,
    batch_supported,
    counter_rate,
    install_benchplug,
    plugin_argument,
    read_counter,
)
from bench.report import Row, error_row, guarded, interleave, median, ratio_row
from loader.wire.addresses import control_path
from loader.wire.function import FunctionChannel
from sdk.protocol.control import TYPE_FUNC, Control
from sdk.protocol.messages import exec_meta

PIPELINE_GOAL = 0.7
#: A windowed aggregate against SELECT * of the same rounds (issue: windows cost no more than 10%).
WINDOW_GOAL = 0.9
WINDOWS = {
    "countwindow": "COUNTWINDOW(100)",
    "tumbling": "TUMBLINGWINDOW(ss, 1)",
}
FUNCTION_GOAL = 0.8
BATCHED_GOAL = 5.0


def _loaders(run: Run, name: str, **symbols: list[str]) -> dict[bool, Loader]:
    """Loaders by batching (off, and on when the loader has the extension), each with the flood source
    plugin (stream ``s``) and one more plugin providing ``symbols``; started side by side."""
    loaders = {False: run.loader(name, batch=False)}
    if batch_supported():
        loaders[True] = run.loader(f"{name}b", batch=True)
    for loader in loaders.values():
        install_benchplug(loader.plugins_dir, "bsrc", count_dir=loader.count_dir, sources=["flood"])
        install_benchplug(loader.plugins_dir, "bplug", count_dir=loader.count_dir, **symbols)
        loader.stream("s", "flood")
        # Stream sr: the same source, counting what it emits (the input rate of a windowed rule).
        loader.source_config("flood", default={}, report={"report": True})
        loader.stream("sr", "flood", conf_key="report")
        loader.start(wait=False)
    for loader in loaders.values():
        loader.wait_ready()
        for plugin in ("bsrc", "bplug"):
            loader.wait_for("plugin.on_probation", plugin=plugin)
    return loaders


def _rule_round(run: Run, loader: Loader, rule_id: str, sql: str, actions: list[dict], counter: str) -> float:
    """Start a rule, measure the rate of ``counter`` (a file in the loader's count dir), delete the rule."""
    path = loader.count_dir / counter.format(rule=rule_id)
    before = read_counter(path)
    mark = loader.mark()
    loader.add_rule(rule_id, sql, actions)
    try:
        loader.wait_for("rule.started", since=mark, rule=rule_id)
        return counter_rate(path, run.warmup_s, run.window_s, start_above=before[0] if before else 0)
    finally:
        loader.delete_rule(rule_id)


def _rows(
    specs: list[tuple[str, str, str, str]],
    samples: dict[str, list[float]],
    errors: dict[str, str],
    ceiling: str,
    goals: dict[str, float],
) -> list[Row]:
    """One ratio row per (key, row key, label, unit), or an error row for a subject that failed."""
    rows = []
    for key, row_key, label, unit in specs:
        figure = "3" if row_key.startswith("pipeline") else "4"
        if key in errors:
            rows.append(error_row(row_key, figure, label, errors[key]))
            continue
        rows.append(
            ratio_row(row_key, figure, label, samples[key], unit, ceiling, samples["ceiling"], goals.get(key, 0.0))
        )
        if key not in goals:  # a diagnostic: no goal
            rows[-1].goal, rows[-1].ok = "", None
    return rows


def pipeline(run: Run) -> list[Row]:
    loaders = _loaders(run, "l3", sinks=["count"])
    batched = True in loaders
    ipc = run.ipc_dir()
    ids = itertools.count(1)
    errors: dict[str, str] = {}

    def subject(ack: bool, batch: bool = False) -> Callable[[], float]:
        def measure() -> float:
            rule_id = f"{'b' if batch else ''}{'ack' if ack else 'noack'}{next(ids)}"
            return _rule_round(
                run, loaders[batch], rule_id, "SELECT * FROM s", [{"count": {"requireAck": ack}}], "sink-{rule}.count"
            )

        return measure

    def window_subject(window: str, batch: bool = False) -> Callable[[], float]:
        """A windowed aggregate into the counting sink; its rate is what the source emitted (the rule's input)."""

        def measure() -> float:
            rule_id = f"{'b' if batch else ''}w{next(ids)}"
            sql = f"SELECT count(*) AS c, avg(n) AS a FROM sr GROUP BY {window}"
            return _rule_round(run, loaders[batch], rule_id, sql, [{"count": {}}], "source-{rule}.count")

        return measure

    subjects = [
        ("ceiling", lambda: push_pull(run, ipc)),
        ("relay", lambda: relay(run, ipc)),
        ("noack", subject(False)),
        ("ack", subject(True)),
        *((key, guarded(key, window_subject(window), errors)) for key, window in WINDOWS.items()),
    ]
    if batched:
        subjects += [
            ("bnoack", guarded("bnoack", subject(False, True), errors)),
            ("back", guarded("back", subject(True, True), errors)),
            *((f"b{key}", guarded(f"b{key}", window_subject(window, True), errors)) for key, window in WINDOWS.items()),
        ]
    samples = interleave(subjects, run.rounds)
    for loader in loaders.values():
        loader.stop()
    rows = _rows(
        [
            ("relay", "pipeline.raw_relay", "(diagnostic) raw PUSH -> raw relay -> PULL, 3 procs", "msg/s"),
            ("noack", "pipeline.noack", "source -> SELECT * -> sink plugin", "rec/s"),
            ("ack", "pipeline.ack", "same, sink with requireAck", "rec/s"),
            *(
                [
                    ("bnoack", "pipeline.batched_noack", "same, batching extension on", "rec/s"),
                    ("back", "pipeline.batched_ack", "same, batching on, sink with requireAck", "rec/s"),
                ]
                if batched
                else []
            ),
        ],
        samples,
        errors,
        CEILING_A,
        {"noack": PIPELINE_GOAL, "ack": PIPELINE_GOAL, "bnoack": BATCHED_GOAL, "back": BATCHED_GOAL},
    )
    rows[0].note = "the three processes of figure 3, one nng message in and one out per record, nothing done per record"
    relayed = median(samples["relay"])
    for row in rows[1:3]:
        row.note = f"{row.value / relayed:.2f}x of the raw relay"
    return rows + _window_rows(samples, errors, batched)


def _window_rows(samples: dict[str, list[float]], errors: dict[str, str], batched: bool) -> list[Row]:
    """Each windowed rule against SELECT * measured in the same rounds, batching off (and on)."""
    rows = []
    for prefix, plain in (("", "noack"), *((("b", "bnoack"),) if batched else ())):
        for key, window in WINDOWS.items():
            subject = f"{prefix}{key}"
            label = f"SELECT count(*), avg(n) ... GROUP BY {window}" + (", batching on" if prefix else "")
            if subject in errors or plain in errors:
                rows.append(error_row(f"pipeline.{subject}", "3", label, errors.get(subject) or errors[plain]))
                continue
            rows.append(
                ratio_row(
                    f"pipeline.{subject}",
                    "3",
                    label,
                    samples[subject],
                    "rec/s",
                    f"SELECT * ({'batched' if prefix else 'per record'}), same rounds",
                    samples[plain],
                    WINDOW_GOAL,
                    note="input records/s (what the source emitted)",
                )
            )
    return rows


class _DirectFunction:
    """The sdk function plugin run without a loader: this process calls ``FunctionChannel.exec`` itself."""

    def __init__(self, run: Run) -> None:
        self.ipc = run.ipc_dir()
        name = "bfn"
        folder = install_benchplug(run.dir("function"), name, functions=["echo"])
        self.control = RawControl(control_path(self.ipc, name))
        self.channel = FunctionChannel.for_symbol(self.ipc, name, "echo")
        self.proc = None
        try:
            with open(folder / "plugin.log", "ab") as log:
                self.proc = run.processes.popen(
                    [PYTHON, "-u", "benchplug.py", plugin_argument(self.ipc, name)], cwd=folder, stdout=log, stderr=log
                )
            self.control.wait_handshake()
            self.channel.open()
            self.control.command("start", Control("echo", TYPE_FUNC, "", "", 0, config={}).to_dict())
        except BaseException:
            self.close(run)
            raise
        self.meta = exec_meta("direct", "project", 0, 0)

    def measure(self, run: Run) -> float:
        exec_, meta = self.channel.exec, self.meta
        return count_rate(lambda: exec_([100000], meta), run.warmup_s, run.window_s)

    def close(self, run: Run) -> None:
        self.channel.close()
        self.control.close()
        if self.proc is not None:
            run.processes.kill(self.proc)


def function(run: Run) -> list[Row]:
    loaders = _loaders(run, "l4", functions=["echo"])
    batched = True in loaders
    ipc = run.ipc_dir()
    ids = itertools.count(1)
    errors: dict[str, str] = {}
    direct = _DirectFunction(run)

    def subject(batch: bool) -> Callable[[], float]:
        def measure() -> float:
            return _rule_round(
                run,
                loaders[batch],
                f"{'b' if batch else ''}fn{next(ids)}",
                "SELECT echo(n) AS y FROM s",
                [{"nop": {}}],
                "func-echo.count",
            )

        return measure

    subjects = [
        ("ceiling", lambda: req_rep(run, ipc)),
        ("direct", lambda: direct.measure(run)),
        ("function", subject(False)),
    ]
    if batched:
        subjects.append(("batched", guarded("batched", subject(True), errors)))
    try:
        samples = interleave(subjects, run.rounds)
    finally:
        direct.close(run)
    for loader in loaders.values():
        loader.stop()
    rows = _rows(
        [
            ("direct", "function.direct", "(diagnostic) FunctionChannel.exec -> sdk function, no loader", "calls/s"),
            ("function", "function.per_record", "rule calling a portable function per record", "rec/s"),
            *([("batched", "function.batched", "same, batching extension on", "rec/s")] if batched else []),
        ],
        samples,
        errors,
        CEILING_B,
        {"function": FUNCTION_GOAL, "batched": BATCHED_GOAL},
    )
    rows[0].note = "host channel and sdk per-call costs, without a rule or a source competing for the CPUs"
    rows[1].note = f"{rows[1].value / rows[0].value:.2f}x of the direct channel"
    return rows
