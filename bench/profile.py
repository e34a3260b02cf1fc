"""``python -m bench.profile``: where a record's time goes inside the loader, sampled with py-spy.

    python -m bench.profile                      every subject, 8 s of samples each
    python -m bench.profile --only select,ack    some subjects
    python -m bench.profile --seconds 4 --raw DIR   shorter, and keep py-spy's raw stacks in DIR

For each subject the loader runs one rule between the benchmark plugins
(bench/plugins/benchplug.py) with batching off, one record per message, as
the per-record figures of ``python -m bench`` do.  Once records flow, py-spy
samples the loader process twice for the same duration:

- on-CPU samples (py-spy's default): the CPU a record costs, per thread;
- all samples (``--idle``): where each thread is, waiting or not.

Every sample is put in one *stage* of a record's trip by the innermost frame
of its stack that a rule in ``STAGES`` recognises (receive, decode, hand-off
between threads, evaluation, encode, send, ack wait, metrics; "other" when
no rule matches).  Divided by the records that went through in the same
seconds, the on-CPU samples give microseconds of CPU per record and stage;
the all-samples view gives, per thread, the share of wall time in each
stage (for a thread blocked on an ack, that is its ack wait).

py-spy is installed by ``make profile`` from the tools lock
(requirements/tools.txt); the path to it can be given with ``--py-spy``.
Nothing here changes the loader: the figures are those of the same code the
benchmarks measure, plus py-spy's sampling overhead (it pauses the process
for each sample; the record rates printed are those measured while sampling).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from bench.harness import Loader, Run, install_benchplug, read_counter

DEFAULT_SECONDS = 8.0
SAMPLE_RATE = 250


@dataclass(frozen=True)
class Subject:
    name: str
    what: str
    sql: str
    actions: list[dict]
    counter: str  # file in the loader's count dir whose count is the records through the rule


SUBJECTS = [
    Subject(
        "select",
        "source -> SELECT * -> sink plugin",
        "SELECT * FROM s",
        [{"count": {"requireAck": False}}],
        "sink-{rule}.count",
    ),
    Subject(
        "ack", "same, sink with requireAck", "SELECT * FROM s", [{"count": {"requireAck": True}}], "sink-{rule}.count"
    ),
    Subject(
        "function",
        "rule calling a portable function per record",
        "SELECT echo(n) AS y FROM s",
        [{"nop": {}}],
        "func-echo.count",
    ),
]

#: (stage, file fragment, function names or None for any): the innermost frame of a sample that a rule
#: matches names its stage; rules are tried in order.  nng's calls and the channels' use lock are not
#: stages of their own: a sample inside them belongs to the caller's stage, marked "(in nng)".
STAGES: list[tuple[str, str, frozenset[str] | None]] = [
    (
        "ack wait",
        "loader/wire/sink.py",
        frozenset({"wait_ack", "recv_ack", "_wait_ack", "_drain_acks", "discard_acks"}),
    ),
    ("ack wait", "loader/dataplane/sink.py", frozenset({"_take_ack"})),
    ("metrics", "loader/dataplane/metrics.py", None),
    ("decode", "loader/wire/codec.py", None),
    ("decode", "json/decoder.py", None),
    ("encode", "sdk/protocol/messages.py", None),
    ("encode", "sdk/protocol/jsonenc.py", None),
    ("encode", "json/encoder.py", None),
    ("receive", "loader/wire/source.py", None),
    ("send", "loader/wire/sink.py", None),
    ("function call", "loader/wire/function.py", None),
    ("function call", "loader/dataplane/function.py", None),
    ("hand-off", "loader/rules/buffer.py", None),
    ("evaluation", "loader/rules/sql/", None),
    ("evaluation", "loader/rules/pipeline.py", frozenset({"on_records"})),
    ("receive", "loader/dataplane/source.py", None),
    ("send", "loader/dataplane/sink.py", None),
    ("event loop", "asyncio/", None),
]


def stage_of(frames: list[str]) -> str:
    """The stage of one sample from its frames, outermost first (py-spy's order)."""
    stage = "other"
    for frame in reversed(frames):
        qualified, _, where = frame.partition(" (")
        name = qualified.rpartition(".")[2]  # py-spy writes Class.method
        match = next(
            (s for s, fragment, names in STAGES if fragment in where and (names is None or name in names)), None
        )
        if match is not None:
            stage = match
            break
    return f"{stage} (in nng)" if frames and "pynng/" in frames[-1] else stage


def parse_raw(text: str) -> tuple[dict[str, Counter[str]], dict[int, str]]:
    """py-spy ``--format raw --threads`` output: sample counts by thread role and stage (threads with
    Python frames), and the role of every thread id seen (``nng worker`` for threads without Python frames)."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    roles: dict[int, str] = {}
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        head = frames.pop(0) if frames[0].startswith("thread (") else "thread (0)"
        tid = int(head[len("thread (") : head.index(")")], 0)
        if not frames:
            roles.setdefault(tid, "nng worker")  # no Python frames: one of nng's own threads
            continue
        role = roles[tid] = _thread_kind(head.partition(": ")[2] or "?")
        counts[role][stage_of(frames)] += int(count)
    return counts, roles


def _thread_kind(name: str) -> str:
    """Threads by role: rule workers, source readers, the event loop; numbered names folded together."""
    for prefix, kind in (("rule-", "rule worker"), ("source-", "source reader"), ("MainThread", "event loop")):
        if name.startswith(prefix):
            return kind
    return name.rstrip("0123456789_-") or name


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) each thread of ``pid`` has used so far, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # the thread ended meanwhile
        used[int(task.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return used


def record(py_spy: str, pid: int, seconds: float, idle: bool, out: Path) -> str:
    """Samples of ``pid`` for ``seconds`` (all threads, ``idle`` ones too if asked), as raw text."""
    command = [
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        str(SAMPLE_RATE),
        "--threads",
        "--nonblocking",
        "--format",
        "raw",
        "--output",
        str(out),
    ]
    if idle:
        command.append("--idle")
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=seconds + 60)
    return out.read_text()


def _profile_subject(run: Run, loader: Loader, subject: Subject, seconds: float, py_spy: str, raw_dir: Path) -> dict:
    rule_id = f"prof{subject.name}"
    path = loader.count_dir / subject.counter.format(rule=rule_id)
    mark = loader.mark()
    loader.add_rule(rule_id, subject.sql, subject.actions)
    try:
        loader.wait_for("rule.started", since=mark, rule=rule_id)
        _wait_flowing(path)
        views = {}
        for idle in (False, True):
            before, cpu_before = read_counter(path), thread_cpu(loader.pid)
            text = record(py_spy, loader.pid, seconds, idle, raw_dir / f"{subject.name}-{'all' if idle else 'cpu'}.txt")
            after, cpu_after = read_counter(path), thread_cpu(loader.pid)
            assert before is not None and after is not None
            counts, roles = parse_raw(text)
            by_role: Counter[str] = Counter()
            for tid, seconds_used in cpu_after.items():
                by_role[roles.get(tid, "other threads")] += seconds_used - cpu_before.get(tid, 0.0)
            views["all" if idle else "cpu"] = {
                "records": after[0] - before[0],
                "elapsed": after[1] - before[1],
                "counts": counts,
                "thread_cpu": by_role,
            }
        return views
    finally:
        loader.delete_rule(rule_id)


def _wait_flowing(path: Path, timeout: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sample = read_counter(path)
        if sample is not None and sample[0] > 1000:
            return
        time.sleep(0.05)
    raise RuntimeError(f"no records reached {path.name} within {timeout:g}s")


def render(subject: Subject, views: dict) -> str:
    cpu, wall = views["cpu"], views["all"]
    records = max(cpu["records"], 1)
    rate = cpu["records"] / cpu["elapsed"] if cpu["elapsed"] > 0 else 0.0
    lines = [
        f"== {subject.name}: {subject.what}  ({subject.sql!r}, batching off)",
        f"   {rate:,.0f} rec/s while sampling",
        "   CPU per record by thread (us, from /proc while sampling):",
    ]
    for role, used in cpu["thread_cpu"].most_common():
        lines.append(f"     {role:24} {used * 1e6 / records:7.1f}")
    lines.append(f"     {'total':24} {sum(cpu['thread_cpu'].values()) * 1e6 / records:7.1f}")
    lines.append("   on-CPU samples by stage (us per record; py-spy's view of what is running):")
    per_sample_us = 1e6 / SAMPLE_RATE
    total: Counter[str] = Counter()
    for counts in cpu["counts"].values():
        total.update(counts)
    for stage, n in total.most_common(8):
        lines.append(f"     {stage:24} {n * per_sample_us / records:7.1f}")
    lines.append("   wall time of the data-plane threads by stage (share of their samples, waits included):")
    for thread in ("source reader", "rule worker"):
        counts = wall["counts"].get(thread)
        if counts:
            all_samples = sum(counts.values())
            shares = ", ".join(f"{stage} {n / all_samples:.0%}" for stage, n in counts.most_common(5))
            lines.append(f"     {thread:14} {shares}")
    return "\n".join(lines)


def _py_spy(given: str | None) -> str:
    found = given or shutil.which("py-spy") or str(Path(sys.prefix).parent / ".venv-tools" / "bin" / "py-spy")
    if not Path(found).exists() and shutil.which(found) is None:
        raise SystemExit(
            f"py-spy not found at {found}: run `make profile` (it installs the tools lock) or pass --py-spy PATH"
        )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="subjects, comma separated: " + ",".join(s.name for s in SUBJECTS))
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="sampling time per view")
    parser.add_argument("--py-spy", dest="py_spy", help="path of the py-spy program")
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw stacks in this directory")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    wanted = [s for s in SUBJECTS if not args.only or s.name in args.only.split(",")]
    if not wanted:
        parser.error(f"no such subject: {args.only}")
    py_spy = _py_spy(args.py_spy)
    raw_dir = args.raw or Path(tempfile.mkdtemp(prefix="pprofile-"))
    raw_dir.mkdir(parents=True, exist_ok=True)
    run = Run()
    try:
        loader = run.loader("prof", batch=False)
        install_benchplug(loader.plugins_dir, "bsrc", count_dir=loader.count_dir, sources=["flood"])
        install_benchplug(loader.plugins_dir, "bplug", count_dir=loader.count_dir, sinks=["count"], functions=["echo"])
        loader.stream("s", "flood")
        loader.start()
        for plugin in ("bsrc", "bplug"):
            loader.wait_for("plugin.on_probation", plugin=plugin)
        for subject in wanted:
            print(render(subject, _profile_subject(run, loader, subject, args.seconds, py_spy, raw_dir)), flush=True)
    finally:
        run.close()
        if args.raw is None:
            shutil.rmtree(raw_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
