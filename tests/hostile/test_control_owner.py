"""A control channel belongs to the process the loader spawned for that plugin (issue 14, finding 6).

A plugin program that dials another plugin's control socket used to be
answered like the owner: it took that plugin's start and stop commands and
said ``ok``, and the victim's rules ran with no records.  The loader now
closes any connection whose peer (nng's ``ipc:peer-pid``) is outside the
spawned process's group, logs the intruder once with its pid, and the
victim's rule delivers everything.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.hostile.helpers import snapshot
from tests.support.rules import (
    install_collector,
    install_seqsrc,
    loader_for,
    rule,
    seq_config,
    stream,
    wait_collected,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def install_intruder(plugins: Path, victim: str) -> None:
    folder = plugins / "intruder"
    folder.mkdir()
    shutil.copy(FIXTURES / "intruder.py", folder / "intruder.py")
    (folder / "victim.txt").write_text(victim)
    (folder / "intruder.json").write_text(
        json.dumps({"version": "v1.0.0", "language": "python", "executable": "intruder.py", "sources": ["nothing"]})
    )


def test_a_plugin_dialling_anothers_control_socket_is_refused(processes, env):
    install_seqsrc(env["plugins"])
    install_collector(env["plugins"])
    install_intruder(env["plugins"], victim="seqsrc")
    seq_config(env["etc"], default={"count": 50, "interval_ms": 20})
    stream(env["data"])
    out = env["out"] / "r1.jsonl"
    rule(env["data"], "r1", "SELECT n FROM demo", out)
    before = [snapshot(env[key]) for key in ("plugins", "etc")] + [snapshot(env["data"] / "rules")]
    loader = loader_for(processes, env)

    intruder_pid = loader.wait_for("plugin.spawned", plugin="intruder")["pid"]
    refused = loader.wait_for("plugin.control_intruder", plugin="seqsrc", timeout=15)
    assert refused["intruder_pid"] == intruder_pid
    assert refused["pid"] == loader.find("plugin.running", plugin="seqsrc")[-1]["pid"]
    assert "intruder.py" in refused["command"]

    rows = wait_collected(out, 50)
    assert [row["n"] for row in rows] == list(range(1, 51))
    assert not [line for line in loader.raw if "intruder got" in line], "the intruder was given a command"
    # It keeps redialling, and is refused each time, but logged once.
    assert len(loader.find("plugin.control_intruder", intruder_pid=intruder_pid)) == 1
    assert [snapshot(env[key]) for key in ("plugins", "etc")] + [snapshot(env["data"] / "rules")] == before
