"""portable-loader as a device runs it: installed from the wheel as docs/operations.md says, under systemd.

One container for the module (fixture ``unit``); the tests run in file order
and the last ones are the destructive ones (watchdog restart, stop).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.system import docs
from tests.system.unit import SERVICE_USER, UNIT, Unit

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent
STATE = "/var/lib/portable-loader"
PLUGINS = f"{STATE}/plugins/portable"
DATA = f"{STATE}/data"
ETC = f"{STATE}/etc"  # etc_dir as the install steps set it
WHEELS = "/opt/portable-loader/wheels"  # a device's wheel folder for plugin venvs (venv.find_links)
CONFIG = "/etc/portable-loader/loader.yaml"
CLI = "/opt/portable-loader/venv/bin/portable-loader"
RECIPES = [
    recipe
    for name in ("operations", "logging")
    for recipe in docs.journal_recipes(name, (REPO / f"docs/{name}.md").read_text())
]


def drop(unit: Unit, source: Path | None, target: str, content: str | None = None) -> None:
    """Put a folder or a file where the service watches, owned by its user, in one rename."""
    staging = f"{STATE}/.staging-{Path(target).name}"
    host = unit.container.host_path(staging)
    if source is not None:
        shutil.copytree(source, host)
    else:
        host.write_text(content or "")
    unit.run(
        f"mkdir -p {shlex.quote(str(Path(target).parent))} && chown -R {SERVICE_USER}: {staging} "
        f"{shlex.quote(str(Path(target).parent))} && mv -T {staging} {shlex.quote(target)}"
    ).check()


def is_event(name: str, **keys: Any):
    return lambda e: e.get("event") == name and all(e.get(k) == v for k, v in keys.items())


def count(unit: Unit, match) -> int:
    return sum(1 for e in unit.events() if match(e))


@pytest.fixture(scope="module")
def demo(unit: Unit) -> None:
    """The demo plugin dropped into the plugins folder, its stream and rule into the data folder."""
    drop(unit, REPO / "plugins/portable/demo", f"{PLUGINS}/demo")
    drop(unit, None, f"{DATA}/streams/demo.json", (REPO / "etc/demo/streams/demo.json").read_text())
    drop(unit, None, f"{DATA}/rules/demo.json", (REPO / "etc/demo/rules/demo.json").read_text())
    unit.wait_event("the demo plugin running", is_event("plugin.running", plugin="demo"))


@pytest.fixture(scope="module")
def troubles(unit: Unit, demo: None) -> None:
    """A plugin that crashes with a traceback, a rule in error, a degraded rule and a SIGUSR1 stack dump,
    all in the journal."""
    drop(unit, HERE / "plugins/car", f"{PLUGINS}/car")
    drop(unit, HERE / "plugins/gate", f"{PLUGINS}/gate")
    drop(
        unit,
        None,
        f"{DATA}/rules/broken.json",
        json.dumps({"id": "broken", "sql": "SELECT n FROM demo WHERE", "actions": [{"log": {}}]}),
    )
    drop(
        unit,
        None,
        f"{DATA}/rules/stuck.json",
        json.dumps({"id": "stuck", "sql": "SELECT n FROM demo", "actions": [{"gate": {"requireAck": True}}]}),
    )
    unit.wait_event("the stuck rule degraded", is_event("rule.degraded", rule="stuck"))
    unit.wait_event(
        "car's crash with its traceback",
        lambda e: is_event("plugin.exited", plugin="car")(e) and "RuntimeError" in json.dumps(e),
    )
    unit.wait_event(
        "car's restart",
        lambda e: e.get("event") in ("plugin.restarting", "plugin.crashloop") and e.get("plugin") == "car",
    )
    unit.wait_event("the broken rule's error", is_event("rule.error", rule="broken"))
    dumps = count(unit, is_event("loader.stack_dump"))
    # The command of docs/operations.md.
    unit.run(f"sudo kill -USR1 $(systemctl show -p MainPID --value {UNIT})").check()
    unit.wait_for(
        lambda: [e for e in unit.events() if is_event("loader.stack_dump")(e)][dumps:],
        "the SIGUSR1 stack dump in the journal",
    )


def test_active_running_with_a_status_line(unit: Unit) -> None:
    status = unit.run(f"systemctl status {UNIT} --no-pager").check().stdout
    assert re.search(r"Active: active \(running\)", status), status
    props = unit.show("ActiveState", "SubState", "StatusText")
    assert (props["ActiveState"], props["SubState"]) == ("active", "running")
    assert props["StatusText"].strip(), f"Status= is empty:\n{status}"


def test_dropped_plugin_runs_and_a_rule_over_it_delivers(unit: Unit, demo: None) -> None:
    delivered = unit.wait_event("a result of rule demo from the log sink", is_event("sink.log", rule="demo"))
    message = delivered["message"]  # what a sink gets: the array of one result's rows
    rows = message if isinstance(message, list) else [message]
    assert all(row["n"] % 2 == 0 and row["reverted"] == "retnuoc" for row in rows), delivered
    # The demo's own print sink received it too (it prints what it gets).
    unit.wait_event("the demo print sink's output", lambda e: e.get("plugin") == "demo" and "retnuoc" in json.dumps(e))


def test_journal_priority_err_shows_a_broken_plugins_error(unit: Unit, troubles: None) -> None:
    errors = unit.run(f"journalctl -u {UNIT} -p err -o cat --no-pager").check().stdout
    assert "car" in errors, f"`journalctl -p err` shows nothing of plugin car's crash:\n{errors[-2000:]}"


def test_journal_fields_select_a_plugins_events(unit: Unit, troubles: None) -> None:
    """`journalctl -u portable-loader PLUGIN=car` answers, with EVENT= on every entry."""
    entries = unit.entries("PLUGIN=car")
    assert entries, "no journal entry has the field PLUGIN=car"
    assert all(e.get("EVENT") for e in entries), [e.get("MESSAGE") for e in entries if not e.get("EVENT")][:3]
    assert any(e.get("EVENT") == "plugin.exited" for e in entries)


def test_loader_writes_only_json_events(unit: Unit, troubles: None) -> None:
    """Tracebacks and the SIGUSR1 dump are single JSON events: every line of the loader parses.

    systemd's own lines about the unit and the lines `portable-loader reload`
    (ExecReload=) writes for the person who ran `systemctl reload` are not the loader's.
    """
    raw = []
    for entry in unit.entries():
        if entry.get("_PID") == "1" or " reload " in str(entry.get("_CMDLINE")):
            continue
        try:
            json.loads(entry.get("MESSAGE", ""))
        except (ValueError, TypeError):
            raw.append(entry.get("MESSAGE"))
    assert not raw, f"{len(raw)} journal lines of the service are not JSON, first: {raw[:5]}"


@pytest.mark.parametrize("recipe", RECIPES, ids=[f"{r.doc}: {r.question}" for r in RECIPES])
def test_journal_recipe_answers(unit: Unit, troubles: None, recipe: docs.Recipe) -> None:
    result = unit.run(recipe.command)
    assert result.returncode == 0, f"{recipe.command}\nexit {result.returncode}: {result.stderr[-1500:]}"
    assert result.stdout.strip(), f"{recipe.command}\nanswered nothing, though the journal has what it asks for"


def test_cli_installs_a_local_folder(unit: Unit, demo: None) -> None:
    """From root's home, as a user would; the plugin ships a config file, which goes to the etc folder."""
    shutil.copytree(HERE / "plugins/echoer", unit.container.host_path("/root/echoer"))
    result = unit.run(f"{CLI} plugins install echoer /root/echoer", timeout=300)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stdout}{result.stderr}"
    unit.wait_event("the installed plugin running", is_event("plugin.running", plugin="echoer"))
    assert unit.container.host_path(f"{ETC}/functions/shout.json").is_file()


def test_security_exposure_at_most_2(unit: Unit) -> None:
    out = unit.run(f"systemd-analyze security {UNIT} --no-pager").stdout
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
    assert match, out[-2000:]
    exposed = "\n".join(line.rstrip() for line in out.splitlines() if line.lstrip().startswith("✗"))
    assert float(match.group(1)) <= 2.0, f"exposure {match.group(1)}; what counts against it:\n{exposed}"


@pytest.fixture(scope="module")
def failed_reload(unit: Unit, demo: None):
    """`systemctl reload` with an invalid loader.yaml; the valid file is put back at once.

    Only the file is restored: the running loader must still have the old
    configuration because `portable-loader reload` refused the new one before
    signalling it.  A restart (the watchdog test) then finds a valid file.
    """
    main_pid = unit.main_pid()
    signals = count(unit, is_event("loader.signal", signal="SIGHUP"))
    original = unit.container.host_path(CONFIG).read_text()
    assert "\n  level: info\n" in original, "the installed loader.yaml changed shape; update this test"
    before = len(unit.entries())
    unit.container.host_path(CONFIG).write_text(original.replace("\n  level: info\n", "\n  level: loud\n"))
    try:
        result = unit.run(f"systemctl reload {UNIT}")
    finally:
        unit.container.host_path(CONFIG).write_text(original)
    said = [str(e.get("MESSAGE")) for e in unit.entries()[before:] if " reload " in str(e.get("_CMDLINE"))]
    return result, main_pid, said, count(unit, is_event("loader.signal", signal="SIGHUP")) - signals


def test_reload_with_an_invalid_config_fails(failed_reload) -> None:
    result, _, said, sighups = failed_reload
    assert result.returncode != 0, "systemctl reload exited 0 with an invalid loader.yaml"
    assert any(CONFIG in line and "level" in line and "loud" in line for line in said), (
        f"the journal of ExecReload= does not name the file, the key and the value: {said}"
    )
    assert sighups == 0, "the loader was signalled although the file is invalid"


def test_old_config_keeps_running_after_a_failed_reload(unit: Unit, failed_reload) -> None:
    _, main_pid, _, _ = failed_reload
    props = unit.show("ActiveState", "SubState", "MainPID")
    assert (props["ActiveState"], props["SubState"], int(props["MainPID"])) == ("active", "running", main_pid)
    after = len(unit.events())
    unit.wait_event("rule demo delivering after the failed reload", is_event("sink.log", rule="demo"), after=after)


def test_reload_waits_for_the_loader(unit: Unit, failed_reload) -> None:
    """systemd says "Reloaded" only once the loader has reread its file (RELOADING=1 ... READY=1).

    The loader is stopped (SIGSTOP) while the reload is asked for: a reload
    that only sends a signal is over at once, though nothing has been read.
    """
    main_pid = unit.main_pid()
    reloaded = count(unit, is_event("loader.reloaded"))
    unit.run(f"kill -STOP {main_pid}").check()
    try:
        unit.run(f"systemctl reload --no-block {UNIT}").check()
        finished_while_stopped = unit.within(lambda: not reload_pending(unit), seconds=3)
    finally:
        unit.run(f"kill -CONT {main_pid}").check()
    assert not finished_while_stopped, "systemd finished the reload while the loader was stopped and read nothing"
    unit.wait_for(lambda: count(unit, is_event("loader.reloaded")) > reloaded, "loader.reloaded")
    unit.wait_for(lambda: not reload_pending(unit), "the reload job to finish")
    props = unit.show("ActiveState", "MainPID")
    assert (props["ActiveState"], int(props["MainPID"])) == ("active", main_pid)


def reload_pending(unit: Unit) -> bool:
    jobs = unit.run("systemctl list-jobs --no-legend --no-pager").check().stdout
    return any(f"{UNIT}.service" in line and "reload" in line for line in jobs.splitlines())


def test_a_plugin_venv_builds_offline_inside_the_sandbox(unit: Unit, demo: None) -> None:
    """venv.offline and venv.find_links set as docs/operations.md says, applied by a successful reload;
    then a plugin with a requirements.txt gets its venv from the service itself and a rule uses it."""
    unit.run(f"mkdir -p {WHEELS} && cp /root/wheelhouse/orjson-*.whl {WHEELS}/").check()
    original = unit.container.host_path(CONFIG).read_text()
    assert "find_links: []" in original and "offline: false" in original, "loader.yaml changed shape; update this test"
    unit.container.host_path(CONFIG).write_text(
        original.replace("find_links: []", f"find_links: [{WHEELS}]").replace("offline: false", "offline: true")
    )
    after = len(unit.events())
    result = unit.run(f"systemctl reload {UNIT}")
    assert result.returncode == 0, (
        f"systemctl reload of a valid loader.yaml failed:\n{result.stderr}\n{unit.journal_tail()}"
    )
    reloaded = unit.wait_event("the venv settings reloaded", is_event("loader.reloaded"), after=after)
    assert "venv" in reloaded["changed"], reloaded
    drop(unit, HERE / "plugins/packer", f"{PLUGINS}/packer")
    built = unit.wait_event(
        "packer's venv built",
        lambda e: e.get("plugin") == "packer" and e.get("event") in ("plugin.venv_ready", "plugin.invalid"),
        timeout=180,
    )
    assert built["event"] == "plugin.venv_ready", built
    unit.wait_event("packer running", is_event("plugin.running", plugin="packer"), timeout=60)
    drop(
        unit,
        None,
        f"{DATA}/rules/packed.json",
        json.dumps({"id": "packed", "sql": "SELECT packed(n) AS p FROM demo", "actions": [{"log": {}}]}),
    )
    delivered = unit.wait_event("a result of rule packed", is_event("sink.log", rule="packed"))
    assert "packed:" in json.dumps(delivered), delivered


def test_ready_does_not_wait_for_a_slow_plugin(unit: Unit, demo: None) -> None:
    """`systemctl restart` returns (READY=1) while a plugin that takes seconds to start is still starting."""
    drop(unit, HERE / "plugins/slowpoke", f"{PLUGINS}/slowpoke")
    try:
        unit.wait_event("the slow plugin running", is_event("plugin.running", plugin="slowpoke"), timeout=30)
        started = count(unit, is_event("plugin.running", plugin="slowpoke"))
        unit.run(f"systemctl restart {UNIT}", timeout=150).check()
        assert count(unit, is_event("plugin.running", plugin="slowpoke")) == started, (
            "systemd heard READY only after the slow plugin had started"
        )
        unit.wait_for(
            lambda: count(unit, is_event("plugin.running", plugin="slowpoke")) > started,
            "the slow plugin running after the restart",
            timeout=30,
        )
    finally:
        unit.run(f"rm -rf {PLUGINS}/slowpoke").check()
    unit.wait_event("the slow plugin unloaded", is_event("plugin.unloaded", plugin="slowpoke"), timeout=30)


def test_sigstop_brings_a_watchdog_restart_and_no_orphan_plugin(unit: Unit, demo: None) -> None:
    old_main = unit.main_pid()
    old_plugins = {pid for pid, _, _ in unit.processes() if pid != old_main}
    assert old_plugins, "no plugin process before the test"
    restarts = int(unit.show("NRestarts")["NRestarts"])
    running_before = count(unit, is_event("plugin.running", plugin="demo"))
    unit.run(f"kill -STOP {old_main}").check()
    unit.wait_for(
        lambda: int(unit.show("NRestarts")["NRestarts"]) > restarts and unit.main_pid() not in (0, old_main),
        "systemd's watchdog restart",
        timeout=120,
        every=1,
    )
    assert any("Watchdog timeout" in str(e.get("MESSAGE")) for e in unit.entries()), (
        "restarted, but not by the watchdog"
    )
    unit.wait_for(
        lambda: count(unit, is_event("plugin.running", plugin="demo")) > running_before,
        "the demo plugin running again",
        timeout=60,
    )
    new_main = unit.main_pid()
    procs = unit.processes()
    left = old_plugins & {pid for pid, _, _ in procs}
    assert not left, f"plugin processes of the stopped loader still run: {procs}"
    parents = {pid: ppid for pid, ppid, _ in procs}
    for pid, _, args in procs:
        ancestor = pid
        while ancestor in parents and ancestor != new_main:
            ancestor = parents[ancestor]
        assert ancestor == new_main, f"{pid} ({args}) is not the new loader's ({new_main}) descendant"


def test_stop_is_clean(unit: Unit, demo: None) -> None:
    result = unit.run(f"systemctl stop {UNIT}", timeout=90)
    assert result.returncode == 0, result.stderr
    props = unit.show("ActiveState", "Result", "ExecMainCode", "ExecMainStatus")
    assert props["ActiveState"] == "inactive" and props["Result"] == "success", props
    assert (props["ExecMainCode"], props["ExecMainStatus"]) == ("1", "0"), f"the loader did not exit 0: {props}"
    assert unit.processes() == [], "processes of the service's user are left after stop"
    assert count(unit, is_event("loader.stopped")) >= 1
