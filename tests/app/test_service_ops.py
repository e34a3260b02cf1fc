"""Running as an edge service: systemd unit and notifications, signals, plugin venvs, log recipes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from loader.app.systemd import Notifier, keep_notifying
from tests.support.api import free_port
from tests.support.loader_process import REPO, make_plugin, pid_alive, start_loader
from tests.support.notify import NotifySocket
from tests.support.rules import install_collector, install_seqsrc, rule, seq_config, stream, wait_collected
from tests.support.waiting import wait_until

UNIT = REPO / "etc" / "systemd" / "portable-loader.service"


@pytest.fixture
def dirs(tmp_path: Path, ipc_dir: Path) -> dict[str, Path]:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    return {"plugins": plugins, "ipc": ipc_dir, "data": tmp_path / "data", "tmp": tmp_path}


def test_unit_file_verifies_and_has_what_the_service_needs(tmp_path):
    text = UNIT.read_text()
    for directive in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "TimeoutStopSec=",
        "KillMode=mixed",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "User=portable-loader",
        "StateDirectory=portable-loader",
        "RuntimeDirectory=portable-loader",
        "ExecReload=",
    ):
        assert directive in text, directive
    # Verify the unit as installed by docs/operations.md, with this checkout's venv as /opt/portable-loader/venv.
    installed = tmp_path / "portable-loader.service"
    installed.write_text(text.replace("/opt/portable-loader/venv", str(Path(sys.executable).parent.parent)))
    result = subprocess.run(["systemd-analyze", "verify", str(installed)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
    assert "ExecReload=/opt/portable-loader/venv/bin/portable-loader reload " in text and "$MAINPID" in text


def test_unit_file_security_exposure_is_at_most_2(tmp_path):
    """What ``systemd-analyze security portable-loader`` scores, measured offline on the shipped unit."""
    installed = tmp_path / "portable-loader.service"
    installed.write_text(UNIT.read_text())
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(installed)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for portable-loader\.service: (\d+\.\d+)", result.stdout)
    assert found, f"systemd-analyze (needs systemd >= 250 for --offline) said: {result.stdout[-500:]}{result.stderr}"
    assert float(found.group(1)) <= 2.0, result.stdout


MDWE = (
    "import ctypes, os, sys; "
    "assert ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) == 0, 'PR_SET_MDWE needs Linux >= 6.3'; "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def test_loader_and_plugins_run_with_memory_deny_write_execute(processes, dirs, tmp_path):
    """The unit's MemoryDenyWriteExecute=yes, as the kernel's PR_SET_MDWE (inherited by every plugin)."""
    install_seqsrc(dirs["plugins"])
    install_collector(dirs["plugins"])
    make_plugin(dirs["plugins"], "car")  # raw pynng, like eKuiper's own Python SDK
    etc = tmp_path / "etc"
    seq_config(etc, default={"count": 100000, "interval_ms": 5})
    stream(dirs["data"])
    out = tmp_path / "out.jsonl"
    rule(dirs["data"], "r1", "SELECT n FROM demo", out)
    loader = start_loader(
        processes,
        dirs["plugins"],
        dirs["ipc"],
        dirs["data"],
        extra_config=f"etc_dir: {etc}\n",
        wrapper=[sys.executable, "-c", MDWE],
    )
    for name in ("seqsrc", "collector", "car"):
        loader.wait_for("plugin.running", plugin=name, timeout=20)
    wait_collected(out, 5)
    assert loader.terminate() == 0


def test_ready_status_watchdog_and_stopping_reach_systemd_in_order(processes, dirs):
    notify = NotifySocket(dirs["ipc"] / "notify.sock")
    try:
        make_plugin(dirs["plugins"], "car")
        loader = start_loader(
            processes,
            dirs["plugins"],
            dirs["ipc"],
            dirs["data"],
            env_extra={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000"},
        )
        assert wait_until(lambda: sum(line == "WATCHDOG=1" for line in notify.lines()) >= 3)
        assert loader.terminate() == 0
        assert wait_until(lambda: "STOPPING=1" in notify.lines())
        lines = notify.lines()
        ready = lines.index("READY=1")
        assert ready < lines.index("WATCHDOG=1") < lines.index("STOPPING=1")
        statuses = [line for line in lines if line.startswith("STATUS=")]
        assert "STATUS=plugins: 1 running, 0 failed; rules: 0 running" in statuses
        assert lines[ready + 1].startswith("STATUS=plugins:")
        pings = [t for t, m in notify.messages if m == "WATCHDOG=1"]
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert max(gaps) < 0.5, gaps  # every half WatchdogSec (0.2 s here), with slack
    finally:
        notify.close()


def test_ready_does_not_wait_for_a_slow_plugin_and_status_shows_it_starting(processes, dirs):
    notify = NotifySocket(dirs["ipc"] / "notify.sock")
    try:
        make_plugin(dirs["plugins"], "slow", behaviour={"start_delay_s": 6})
        loader = start_loader(
            processes,
            dirs["plugins"],
            dirs["ipc"],
            dirs["data"],
            wait_ready=False,
            extra_config="supervisor: {handshake_timeout_s: 30}\n",
            env_extra={"NOTIFY_SOCKET": str(notify.path)},
        )
        ready = loader.wait_for("loader.ready")
        assert wait_until(lambda: "READY=1" in notify.lines())
        assert loader.find("plugin.running") == [], "READY waited for the plugin's start"
        assert "stop with: kill -TERM" in ready["message"] and str(dirs["plugins"]) in ready["message"]
        assert wait_until(
            lambda: (
                "STATUS=plugins: 0 running, 1 starting, 0 failed; rules: 0 running; "
                "first scan in progress" in notify.lines()
            )
        )
        loader.wait_for("plugin.running", plugin="slow", timeout=30)
        loader.wait_for("loader.scan_complete")
        assert wait_until(lambda: "STATUS=plugins: 1 running, 0 failed; rules: 0 running" in notify.lines())
    finally:
        notify.close()


def test_status_line_counts_starting_and_building_plugins():
    from loader.app.service import status_line

    assert (
        status_line({"running": 2, "building": 1, "starting": 1, "crashloop": 1}, 3, True)
        == "plugins: 2 running, 2 starting (1 building a venv), 1 failed; rules: 3 running"
    )
    assert status_line({}, 0, False) == "plugins: 0 running, 0 failed; rules: 0 running; first scan in progress"


def test_console_start_message_says_what_runs_where_and_how_to_stop(processes, dirs):
    from loader.app.service import start_message, stop_hint
    from loader.config import LoaderConfig

    assert (
        stop_hint({"INVOCATION_ID": "x", "NOTIFY_SOCKET": "/run/n"}, True)
        == "stop with: systemctl stop portable-loader"
    )
    assert stop_hint({}, True) == "stop with Ctrl-C"
    text = start_message(LoaderConfig(), "http://127.0.0.1:9081", "stop with Ctrl-C")
    assert "REST API on http://127.0.0.1:9081" in text and "sockets in /tmp" in text
    port = free_port()  # the config refuses port 0
    loader = start_loader(
        processes, dirs["plugins"], dirs["ipc"], dirs["data"], extra_config=f"rest: 127.0.0.1:{port}\n"
    )
    ready = loader.find("loader.ready")[0]
    assert ready["rest"] == f"http://127.0.0.1:{port}" and ready["rest"] in ready["message"]
    for key in ("plugins", "data", "ipc"):
        assert str(dirs[key]) in ready["message"], key


def test_watchdog_pings_stop_while_the_loop_is_blocked(ipc_dir):
    notify = NotifySocket(ipc_dir / "notify.sock")

    async def scenario() -> None:
        task = asyncio.create_task(keep_notifying(Notifier(str(notify.path)), lambda: "ok", 0.05))
        await asyncio.sleep(0.5)
        time.sleep(1.0)  # noqa: ASYNC251 - the point: a stuck control plane, nothing on the loop runs
        await asyncio.sleep(0.5)
        task.cancel()

    try:
        asyncio.run(scenario())
        time.sleep(0.2)
        pings = [t for t, m in notify.messages if m == "WATCHDOG=1"]
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert len(pings) >= 10
        assert max(gaps) >= 0.9, "pings went on while the loop was blocked"
        assert sorted(gaps)[len(gaps) // 2] < 0.2
    finally:
        notify.close()


def test_sigterm_with_rules_running_exits_zero_and_leaves_nothing(processes, dirs, tmp_path):
    install_seqsrc(dirs["plugins"])
    install_collector(dirs["plugins"])
    etc = tmp_path / "etc"
    seq_config(etc, default={"count": 100000, "interval_ms": 5})
    stream(dirs["data"])
    out = tmp_path / "out.jsonl"
    rule(dirs["data"], "r1", "SELECT n FROM demo", out)
    loader = start_loader(processes, dirs["plugins"], dirs["ipc"], dirs["data"], extra_config=f"etc_dir: {etc}\n")
    pids = [loader.wait_for("plugin.running", plugin=name)["pid"] for name in ("seqsrc", "collector")]
    wait_collected(out, 5)
    assert any(dirs["ipc"].glob("r1_*"))
    started = time.monotonic()
    assert loader.terminate(timeout=20) == 0
    assert time.monotonic() - started < 10
    assert not any(pid_alive(pid) for pid in pids)
    assert list(dirs["ipc"].iterdir()) == []


def test_sighup_rereads_config_and_applies_it_to_running_plugins(processes, dirs):
    make_plugin(dirs["plugins"], "car")
    loader = start_loader(processes, dirs["plugins"], dirs["ipc"], dirs["data"], log_level="info")
    running = loader.wait_for("plugin.running", plugin="car")
    config = dirs["data"] / "loader.yaml"
    text = (
        config.read_text()
        .replace("level: info", "level: warning")
        .replace(f"ipc_dir: {dirs['ipc']}", "ipc_dir: /tmp/elsewhere")
    )
    text += "supervisor: {restart_backoff_initial_s: 0.3}\n"
    config.write_text(text)
    loader.proc.send_signal(signal.SIGHUP)
    reloaded = loader.wait_for("loader.reloaded")
    assert {"log_level", "supervisor"} <= set(reloaded["changed"])
    assert reloaded["restart_needed"] == ["ipc_dir"]
    os.kill(running["pid"], signal.SIGKILL)
    restarting = loader.wait_for("plugin.restarting", plugin="car")  # a warning: still logged
    assert restarting["delay_s"] == 0.3  # the new backoff, on the plugin already running
    loader.wait_for("plugin.exited", plugin="car")
    time.sleep(1.0)
    # info events are gone for every logger, including the plugin's long-lived one
    assert loader.find("plugin.running", plugin="car") == [running]
    assert (dirs["ipc"] / "plugin_car.ipc").exists()


def build_wheel(folder: Path, name: str, version: str, value: str) -> Path:
    """A minimal pure-Python wheel, written by hand (no build backend, no network)."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VALUE = {value!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join(record + [f"{dist}/RECORD,,"]) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


PROBE = """
import importlib, json, sys
from sdk import PluginConfig, Source, start
found = {}
for module in ("plmarker", "yaml"):
    try:
        found[module] = getattr(importlib.import_module(module), "VALUE", "present")
    except ImportError:
        found[module] = None
print("PROBE " + json.dumps({"python": sys.executable, **found}), flush=True)

class S(Source):
    def configure(self, datasource, conf): pass
    def open(self, ctx): pass
    def close(self, ctx): pass

start(PluginConfig("NAME", sources={"NAME_src": S}, sinks={}, functions={}))
"""


def probe_plugin(plugins: Path, name: str, requirements: str | None) -> Path:
    folder = plugins / name
    folder.mkdir(parents=True)
    (folder / "main.py").write_text(PROBE.replace("NAME", name))
    if requirements is not None:
        (folder / "requirements.txt").write_text(requirements)
    (folder / f"{name}.json").write_text(
        json.dumps({"version": "v1", "language": "python", "executable": "main.py", "sources": [f"{name}_src"]})
    )
    return folder


def probe_of(loader, name: str) -> dict:
    event = loader.wait_for("plugin.output", plugin=name, timeout=60)
    return json.loads(event["line"].removeprefix("PROBE "))


@pytest.mark.slow
def test_plugin_with_requirements_runs_in_its_own_venv(processes, dirs):
    wheels = dirs["tmp"] / "wheels"
    build_wheel(wheels, "plmarker", "1.0", "from-wheel")
    probe_plugin(dirs["plugins"], "withreq", "plmarker==1.0\n")
    probe_plugin(dirs["plugins"], "plain", None)
    loader = start_loader(
        processes,
        dirs["plugins"],
        dirs["ipc"],
        dirs["data"],
        extra_config=f"venv: {{offline: true, find_links: [{wheels}]}}\n",
        wait_ready=False,
    )
    loader.wait_for("plugin.venv_building", plugin="withreq", timeout=30)
    loader.wait_for("plugin.running", plugin="withreq", timeout=120)
    own = probe_of(loader, "withreq")
    assert own["plmarker"] == "from-wheel"
    assert own["yaml"] is None, "the loader's packages leak into the plugin venv"
    assert own["python"].startswith(str(dirs["data"] / "venvs"))
    other = probe_of(loader, "plain")
    assert other["plmarker"] is None, "a second plugin sees the first one's package"


@pytest.mark.slow
def test_failed_venv_build_marks_plugin_invalid_with_pip_output(processes, dirs):
    wheels = dirs["tmp"] / "wheels"
    wheels.mkdir()
    probe_plugin(dirs["plugins"], "broken", "no-such-package-anywhere==9.9\n")
    loader = start_loader(
        processes,
        dirs["plugins"],
        dirs["ipc"],
        dirs["data"],
        extra_config=f"venv: {{offline: true, find_links: [{wheels}]}}\n",
        wait_ready=False,
    )
    invalid = loader.wait_for("plugin.invalid", plugin="broken", timeout=120)
    assert "requirements.txt" in invalid["error"] and "pip install failed" in invalid["error"]
    assert "no-such-package-anywhere" in invalid["error"]
    assert not any((dirs["data"] / "venvs").glob("[!_]*")), "a half-built venv was left in place"


def recipes() -> list[tuple[str, str]]:
    """(question, shell command) of every journalctl recipe in docs/operations.md."""
    text = (REPO / "docs" / "operations.md").read_text()
    return re.findall(r"^# (.+\?)\n(journalctl .+)$", text, flags=re.MULTILINE)


NOT_JSON = [
    "Started portable-loader.service - portable-loader: runs eKuiper-compatible portable plugins.",
    "Traceback (most recent call last):",
    '  File "x.py", line 1, in <module>',
    "{broken json",
]


def journalctl(entries: list[dict[str, str]], args: list[str]) -> str:
    """What ``journalctl -u portable-loader <args>`` prints for these entries: matches (FIELD=value, the
    same field ORed, different fields ANDed), ``-p`` (that priority or more urgent), ``-n``, ``-o cat``."""
    matches: dict[str, set[str]] = {}
    priority, last, words = 7, None, iter(args)
    for word in words:
        if word in ("-u", "--since"):
            next(words)
        elif word == "-o":
            assert next(words) == "cat"
        elif word == "-p":
            priority = {"err": 3, "warning": 4, "info": 6}[next(words)]
        elif word == "-n":
            last = int(next(words))
        else:
            field, _, value = word.partition("=")
            assert field.isupper() and value, f"unknown journalctl argument {word!r}"
            matches.setdefault(field, set()).add(value)
    found = [
        e["MESSAGE"]
        for e in entries
        if int(e.get("PRIORITY", "6")) <= priority and all(e.get(field) in values for field, values in matches.items())
    ]
    return "".join(line + "\n" for line in (found[-last:] if last else found))


def test_operations_log_recipes_answer_their_questions(processes, tmp_path, ipc_dir):
    from tests.support.journal import FakeJournal, start_under_journal

    plugins, data = tmp_path / "plugins", tmp_path / "data"
    make_plugin(
        plugins, "car", behaviour={"crash_after_s": 0.3, "crash_code": 3, "print_lines": ["car: sensor offline"]}
    )
    make_plugin(plugins, "bus", version="v2.1.0")
    (data / "rules").mkdir(parents=True)
    (data / "rules" / "r1.json").write_text(
        json.dumps({"id": "r1", "sql": "SELECT a FROM s GROUP BY a", "actions": [{"log": {}}]})
    )
    (data / "streams").mkdir(parents=True)
    (data / "streams" / "s.json").write_text(json.dumps({"sql": 'CREATE STREAM s () WITH (TYPE="bus_src")'}))
    (data / "streams" / "cars.json").write_text(json.dumps({"sql": 'CREATE STREAM cars () WITH (TYPE="car_src")'}))
    (data / "rules" / "r2.json").write_text(
        json.dumps({"id": "r2", "sql": "SELECT * FROM cars", "actions": [{"nop": {}}]})
    )
    journal = FakeJournal(ipc_dir / "journal.sock")
    try:
        proc, stdout_lines = start_under_journal(processes, tmp_path, ipc_dir, journal.path, plugins)
        journal.wait_for(EVENT="plugin.exited", PLUGIN="car")
        journal.wait_for(EVENT="plugin.restarting", PLUGIN="car")
        journal.wait_for(EVENT="rule.error", RULE="r1")
        journal.wait_for(EVENT="rule.degraded", RULE="r2")  # car keeps crashing
        journal.wait_for(EVENT="plugin.running", PLUGIN="bus")
        proc.send_signal(signal.SIGUSR1)
        journal.wait_for(EVENT="loader.stack_dump")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        entries = list(journal.entries)
    finally:
        journal.close()
    assert stdout_lines == []
    # What else a real journal holds for the unit: systemd's lines, text without fields.
    entries += [{"MESSAGE": line, "PRIORITY": "3"} for line in NOT_JSON]
    answers = {}
    for question, command in recipes():
        journal_part, _, jq = command.partition(" | ")
        output = journalctl(entries, shlex.split(journal_part)[1:])
        if jq:
            mixed = "".join(f"{NOT_JSON[i % len(NOT_JSON)]}\n{line}\n" for i, line in enumerate(output.splitlines()))
            result = subprocess.run(
                jq, shell=True, input=mixed + NOT_JSON[0] + "\n", capture_output=True, text=True, timeout=30
            )
            assert result.returncode == 0, f"{question}: {result.stderr}"
            output = result.stdout
        answers[question] = output
    assert len(answers) == 8, list(answers)
    errors = answers["Which errors did the loader log?"]
    assert '"event": "plugin.exited"' in errors and '"event": "rule.error"' in errors
    assert '"event": "plugin.running"' not in errors
    why = answers["Why did plugin car stop?"]
    assert '"event": "plugin.exited"' in why and '"plugin": "bus"' not in why
    assert "car: sensor offline" in answers["What did car print just before it crashed?"]
    versions = answers["Which version of each plugin runs?"]
    assert "bus v2.1.0 pid" in versions and "car v1.0.0 pid" in versions
    assert '"plugin": "car"' in answers["What restarted in the last hour?"]
    assert "GROUP BY" in answers["Which rules have errors, and why?"]
    stuck = [json.loads(line) for line in answers["Which rule is stuck, and why?"].splitlines()]
    assert [(s["rule"], s["symbol"], s["plugin"]) for s in stuck] == [("r2", "car_src", "car")]
    assert stuck[0]["cause"].startswith("plugin ") and "car is" in stuck[0]["error"]
    threads = [json.loads(line) for line in answers["Where does each thread wait?"].splitlines()]
    assert any(t["thread"] == "MainThread" for t in threads) and all(t["at"] for t in threads)
