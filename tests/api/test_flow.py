"""eKuiper's functional test for portable plugins, replayed over REST against a real loader.

Real loader process, real plugin processes installed from zips by REST, real
sockets: stream before its source exists, rule refused until the plugin is
installed, rule counting through a requireAck sink, refCount, update by PUT
with the rule still counting on the new process, delete.
"""

from __future__ import annotations

import json

from tests.support.api import collector_files, seqsrc_files, start_api, write_zip
from tests.support.loader_process import pid_alive
from tests.support.waiting import wait_until

STREAM_SQL = (
    'CREATE STREAM demo () WITH (TYPE="seq", DATASOURCE="t1", CONF_KEY="default", FORMAT="json", SHARED="false")'
)


def sink_out(status: dict, sink: str) -> int:
    keys = [k for k in status if k.startswith(f"sink_{sink}_") and k.endswith("_records_out_total")]
    return sum(int(status[k]) for k in keys)


def test_ekuiper_portable_flow_over_rest(processes, env):
    api = start_api(processes, env["plugins"], env["ipc"], env["data"], extra=f"etc_dir: {env['etc']}\n")
    out = env["out"] / "collected.jsonl"

    # A stream on a source nobody provides yet is accepted (eKuiper does the same).
    assert api.ok("POST", "/streams", {"sql": STREAM_SQL}, expect=201) == "Stream demo is created."
    assert api.ok("GET", "/streams") == ["demo"]
    assert api.ok("GET", "/streamdetails")[0]["type"] == "seq"

    rule = {
        "id": "r1",
        "sql": "SELECT n, revert(name) AS r FROM demo",
        "actions": [{"collect": {"path": str(out), "requireAck": True}}],
    }
    status, error = api.call("POST", "/rules", rule)
    assert status == 400 and error["error"] == 1000 and error["code"] == "unavailable"
    assert error["message"] == (
        "invalid rule json: Parse SQL SELECT n, revert(name) AS r FROM demo error: function revert not found."
    )
    status, error = api.call("POST", "/rules", {**rule, "sql": "SELECT n FROM demo", "actions": [{"log": {}}]})
    assert status == 400 and "reads source seq, which no loaded plugin provides" in error["message"]
    assert api.ok("GET", "/rules") == []

    # The source plugin ships its config under sources/: it lands in etc/.
    seqsrc = dict(seqsrc_files(), **{"sources/seq.yaml": "default:\n  count: 1000000\n  interval_ms: 5\n"})
    seqsrc_url = write_zip(env["zips"] / "seqsrc.zip", seqsrc)
    assert (
        api.ok("POST", "/plugins/portables", {"name": "seqsrc", "file": seqsrc_url}, expect=201)
        == "portable plugin seqsrc is created"
    )
    installed = api.ok("GET", "/plugins/portables/seqsrc/status")
    assert installed["state"] == "running" and installed["version"] == "v1.0.0" and pid_alive(installed["pid"])
    assert (env["etc"] / "sources" / "seq.yaml").read_text() == seqsrc["sources/seq.yaml"]
    api.ok(
        "POST",
        "/plugins/portables",
        {"name": "collector", "file": write_zip(env["zips"] / "collector.zip", collector_files())},
        expect=201,
    )

    listed = api.ok("GET", "/plugins/portables")
    assert [p["name"] for p in listed] == ["collector", "seqsrc"]
    assert listed[0] == {
        "name": "collector",
        "version": "v1.0.0",
        "language": "python",
        "executable": str(env["plugins"] / "collector" / "collector.py"),
        "sources": [],
        "sinks": ["collect"],
        "functions": ["revert"],
    }
    assert api.ok("GET", "/plugins/portables/seqsrc")["sources"] == ["seq"]
    assert api.ok("GET", "/plugins/udfs") == ["revert"]
    assert api.ok("GET", "/plugins/udfs/revert") == {"name": "revert", "plugin": "collector"}
    sinks = {s["name"]: s for s in api.ok("GET", "/sinks")}
    assert sinks["collect"] == {
        "name": "collect",
        "type": "plugin-portable",
        "plugin": "collector",
        "version": "v1.0.0",
    }
    assert sinks["log"]["type"] == "builtin" and sinks["log"]["plugin"] is None
    assert {s["name"]: s["type"] for s in api.ok("GET", "/sources")} == {"seq": "plugin-portable"}
    functions = {s["name"]: s["type"] for s in api.ok("GET", "/functions")}
    assert functions["revert"] == "plugin-portable" and functions["lower"] == "builtin"

    assert api.ok("POST", "/rules", rule, expect=201) == "Rule r1 was created successfully."
    assert api.ok("GET", "/rules") == [
        {"id": "r1", "name": "r1", "status": "running", "tags": None, "trace": False, "version": "", "state": "running"}
    ]
    assert api.ok("GET", "/rules/r1") == rule
    assert json.loads((env["data"] / "rules" / "r1.json").read_text()) == rule
    assert wait_until(lambda: sink_out(api.ok("GET", "/rules/r1/status"), "collect") > 5)

    before = api.ok("GET", "/plugins/portables/collector/status")
    assert before["refCount"] == {"r1": 2}  # the sink and the function
    assert before["status"] == "running" and before["errMsg"] == "" and pid_alive(before["pid"])
    assert api.ok("GET", "/plugins/portables/seqsrc/status")["refCount"] == {"r1": 1}

    # Update by PUT: a new process; the rule keeps running and counting on it.
    url = write_zip(env["zips"] / "collector2.zip", collector_files("v2.0.0"))
    assert api.ok("PUT", "/plugins/portables/collector", {"file": url}) == "portable plugin collector is updated"
    updated = api.ok("GET", "/plugins/portables/collector/status")
    assert updated["version"] == "v2.0.0" and updated["previousVersion"] == "v1.0.0"
    assert updated["state"] == "running" and updated["pid"] != before["pid"]
    assert not pid_alive(before["pid"])
    counted = sink_out(api.ok("GET", "/rules/r1/status"), "collect")
    assert wait_until(lambda: sink_out(api.ok("GET", "/rules/r1/status"), "collect") > counted + 5)
    after = api.ok("GET", "/plugins/portables/collector/status")
    assert after["pid"] == updated["pid"] and after["refCount"] == {"r1": 2}
    assert api.ok("GET", "/rules/r1/status")["status"] == "running"
    assert api.loader.find("rule.stopped", rule="r1") == []
    written = len(out.read_text().splitlines())
    assert wait_until(lambda: len(out.read_text().splitlines()) > written + 5), "the new process writes nothing"

    # Delete: the process goes, the rule waits for a new provider.
    assert api.ok("DELETE", "/plugins/portables/collector") == "portable plugin collector is deleted"
    assert not pid_alive(updated["pid"])
    assert not (env["plugins"] / "collector").exists()
    assert [p["name"] for p in api.ok("GET", "/plugins/portables")] == ["seqsrc"]
    assert api.call("GET", "/plugins/portables/collector/status")[0] == 404
    assert api.ok("GET", "/rules")[0]["state"] == "waiting" and api.ok("GET", "/rules")[0]["status"] == "stopped"
    assert [p.name for p in env["plugins"].iterdir()] == ["seqsrc"], "a staging folder was left behind"


def test_rule_and_stream_lifecycle_over_rest(processes, env):
    (env["etc"] / "sources").mkdir()
    (env["etc"] / "sources" / "seq.yaml").write_text("default:\n  count: 1000000\n  interval_ms: 5\n")
    api = start_api(processes, env["plugins"], env["ipc"], env["data"], extra=f"etc_dir: {env['etc']}\n")
    api.ok(
        "POST",
        "/plugins/portables",
        {"name": "seqsrc", "file": write_zip(env["zips"] / "s.zip", seqsrc_files())},
        expect=201,
    )
    api.ok("POST", "/streams", {"sql": STREAM_SQL}, expect=201)
    assert api.call("POST", "/streams", {"sql": STREAM_SQL}) == (
        400,
        {
            "error": 3000,
            "message": "Stream command error: Create stream fails: Item demo already exists.",
            "code": "exists",
        },
    )
    described = api.ok("GET", "/streams/demo")
    assert described["Name"] == "demo" and described["Options"] == {
        "datasource": "t1",
        "format": "json",
        "confKey": "default",
        "type": "seq",
    }

    rule = {"id": "r2", "sql": "SELECT n FROM demo WHERE n % 2 = 0", "actions": [{"nop": {}}]}
    api.ok("POST", "/rules", rule, expect=201)
    assert api.call("POST", "/rules", rule)[1]["message"] == "rule r2 already exists"
    assert wait_until(lambda: api.ok("GET", "/rules/r2/status").get("sink_nop_0_0_records_in_total", 0) > 3)

    assert api.ok("POST", "/rules/r2/stop") == "Rule r2 was stopped."
    assert api.ok("GET", "/rules/r2/status")["state"] == "stopped"
    assert json.loads((env["data"] / "rules" / "r2.json").read_text())["triggered"] is False
    assert api.ok("GET", "/rules/r2/status")["status"] == "stopped"
    assert api.ok("POST", "/rules/r2/start") == "Rule r2 was started"
    assert api.ok("GET", "/rules/r2/status")["status"] == "running"
    first_start = api.ok("GET", "/rules/r2/status")["lastStartTimestamp"]
    assert api.ok("POST", "/rules/r2/restart") == "Rule r2 was restarted"
    assert api.ok("GET", "/rules/r2/status")["state"] == "running"
    assert api.ok("GET", "/rules/r2/status")["lastStartTimestamp"] > first_start

    status, error = api.call("PUT", "/rules/r2", {**rule, "sql": "SELECT n FROM demo GROUP BY n"})
    assert status == 400 and error["code"] == "invalid_sql" and "GROUP BY" in error["message"]
    assert error["message"].startswith("Update rule error: invalid rule json: Parse SQL SELECT n FROM demo GROUP BY n")
    assert api.ok("GET", "/rules/r2")["sql"] == rule["sql"], "a refused update changed the rule"
    assert (
        api.ok("PUT", "/rules/r2", {"sql": "SELECT n, 1 AS one FROM demo", "actions": [{"nop": {}}]})
        == "Rule r2 was updated successfully."
    )
    assert api.ok("GET", "/rules/r2/status")["state"] == "running" and api.ok("GET", "/rules/r2")["id"] == "r2"

    status, error = api.call(
        "POST", "/rules", {"id": "r3", "sql": "SELECT nosuch(n) FROM demo", "actions": [{"log": {}}]}
    )
    assert status == 400 and "nosuch" in error["message"]
    status, error = api.call("POST", "/rules", {"id": "r3", "sql": "SELECT n FROM demo", "actions": [{"mqtt": {}}]})
    assert (status, error["error"], error["message"]) == (400, 2201, "sink mqtt is not defined")
    assert not (env["data"] / "rules" / "r3.json").exists()

    new_sql = STREAM_SQL.replace('"t1"', '"t2"')
    assert api.ok("PUT", "/streams/demo", {"sql": new_sql}) == "Stream demo is replaced."
    assert api.ok("GET", "/streamdetails")[0]["datasource"] == "t2"
    assert api.call("PUT", "/streams/demo", {"sql": new_sql.replace("demo", "other", 1)})[0] == 400

    assert api.call("DELETE", "/streams/demo") == (
        400,
        {"error": 1000, "message": "stream demo has been referenced by other rules", "code": "in_use"},
    )
    assert api.call("DELETE", "/streams/demo?force=maybe")[0] == 400
    assert api.ok("DELETE", "/streams/demo?force=true") == "Stream demo is dropped."  # the rule then waits
    assert wait_until(lambda: api.ok("GET", "/rules")[0]["state"] == "waiting")
    assert "stream 'demo' is not defined" in api.ok("GET", "/rules")[0]["message"]
    assert api.ok("PUT", "/streams/demo", {"sql": new_sql}) == "Stream demo is replaced."  # created again
    assert api.ok("DELETE", "/rules/r2") == "Rule r2 is dropped."
    assert api.call("GET", "/rules/r2")[0] == 404
    assert not (env["data"] / "rules" / "r2.json").exists()
    assert api.ok("DELETE", "/streams/demo") == "Stream demo is dropped."
    assert api.ok("GET", "/streams") == []
    overview = api.ok("GET", "/status")
    assert [p["name"] for p in overview["plugins"]] == ["seqsrc"] and overview["streams"] == 0


def test_rule_using_and_or_is_admitted_and_filters(processes, env):
    """AND/OR are operators, never function calls to look up (sqlglot 30 made them Func nodes)."""
    (env["etc"] / "sources").mkdir()
    (env["etc"] / "sources" / "seq.yaml").write_text("default:\n  count: 12\n")
    api = start_api(processes, env["plugins"], env["ipc"], env["data"], extra=f"etc_dir: {env['etc']}\n")
    for name, files in (("seqsrc", seqsrc_files()), ("collector", collector_files())):
        api.ok(
            "POST",
            "/plugins/portables",
            {"name": name, "file": write_zip(env["zips"] / f"{name}.zip", files)},
            expect=201,
        )
    api.ok("POST", "/streams", {"sql": STREAM_SQL}, expect=201)
    out = env["out"] / "filtered.jsonl"
    rule = {
        "id": "logic",
        "sql": "SELECT n FROM demo WHERE n > 2 AND n < 6 OR n = 10",
        "actions": [{"collect": {"path": str(out), "requireAck": True}}],
    }
    api.ok("POST", "/rules", rule, expect=201)
    assert api.ok("GET", "/rules/logic/status")["state"] == "running"
    assert wait_until(lambda: out.exists() and len(out.read_text().splitlines()) >= 4)
    # one message per result, the JSON array of its rows, as eKuiper sends it
    assert [json.loads(line) for line in out.read_text().splitlines()] == [[{"n": n}] for n in (3, 4, 5, 10)]
