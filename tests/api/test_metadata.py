"""eKuiper's metadata, topology and node names over REST, against a real loader running the demo plugin.

The demo plugin ships eKuiper UI metadata for its sink and function (not its
source): the loader serves the files converted as eKuiper does, a minimal
entry for the source, and eKuiper 2.x's node names in the rule status.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.support.api import REPO, start_api
from tests.support.waiting import wait_until

SINK_METADATA = {
    "about": {
        "trial": True,
        "author": {"name": "EMQ", "email": "", "company": "", "website": ""},
        "helpUrl": {"en_US": "https://example.com/en", "zh_CN": "https://example.com/zh"},
        "description": {"en_US": "prints records", "zh_CN": "打印"},
    },
    "libs": ["github.com/example/print@v1.0.0"],
    "properties": [
        {
            "name": "prefix",
            "default": "",
            "optional": True,
            "control": "text",
            "type": "string",
            "hint": {"en_US": "a prefix", "zh_CN": "前缀"},
            "label": {"en_US": "Prefix", "zh_CN": "前缀"},
        }
    ],
    "node": {"category": "sink", "iconPath": "icon.png", "label": {"en_US": "Print", "zh_CN": "打印"}},
}
FUNCTION_METADATA = {
    "about": {"trial": False, "description": {"en_US": "reverts a string", "zh_CN": "反转"}},
    "name": "revert",
    "functions": [{"name": "revert", "example": "revert(name)", "hint": {"en_US": "reverts", "zh_CN": "反转"}}],
}


def test_metadata_topology_and_node_names(processes, tmp_path: Path, ipc_dir: Path) -> None:
    plugins = tmp_path / "plugins"
    demo = plugins / "demo"
    shutil.copytree(REPO / "plugins" / "portable" / "demo", demo)
    (demo / "sinks").mkdir()
    (demo / "sinks" / "print.json").write_text(json.dumps(SINK_METADATA))
    (demo / "functions").mkdir()
    (demo / "functions" / "revert.json").write_text("{not json")
    api = start_api(processes, plugins, ipc_dir, tmp_path / "data", extra=f"etc_dir: {tmp_path / 'etc'}\n")
    wait_until(lambda: api.ok("GET", "/plugins/portables") != [], timeout=20)

    sink = api.ok("GET", "/metadata/sinks/print")
    assert sink["about"] == {
        "trial": True,
        "installed": True,
        "author": SINK_METADATA["about"]["author"],
        "helpUrl": {"en": "https://example.com/en", "zh": "https://example.com/zh"},
        "description": {"en": "prints records", "zh": "打印"},
    }
    assert sink["libs"] == SINK_METADATA["libs"] and sink["node"] == SINK_METADATA["node"]
    assert sink["properties"] == [
        {
            "exist": False,
            "name": "prefix",
            "default": "",
            "type": "string",
            "control": "text",
            "connection_related": False,
            "optional": True,
            "values": None,
            "hint": {"en": "a prefix", "zh": "前缀"},
            "label": {"en": "Prefix", "zh": "前缀"},
        }
    ]
    sinks = {entry["name"]: entry for entry in api.ok("GET", "/metadata/sinks")}
    assert sinks["print"]["about"] == sink["about"] and "log" in sinks  # built-in sinks are listed too

    source = api.ok("GET", "/metadata/sources/counter")  # no metadata file: a minimal entry
    assert source["about"]["description"]["en"] == "source counter of portable plugin demo"
    assert source["properties"] == {"default": []} and source["libs"] == [] and "error" not in source
    assert [entry["name"] for entry in api.ok("GET", "/metadata/sources")] == ["counter"]
    functions = api.ok("GET", "/metadata/functions")
    assert [f["name"] for f in functions] == ["revert"]
    assert "functions/revert.json: cannot read the metadata file" in functions[0]["error"]
    (demo / "functions" / "revert.json").write_text(json.dumps(FUNCTION_METADATA))
    # The running snapshot keeps the old file; the folder change makes a new one.
    assert wait_until(lambda: "error" not in api.ok("GET", "/metadata/functions")[0], timeout=20)
    assert api.ok("GET", "/metadata/functions")[0]["functions"] == [
        {"name": "revert", "example": "revert(name)", "hint": {"en": "reverts", "zh": "反转"}}
    ]
    assert api.call("GET", "/metadata/sinks/nosuch") == (
        400,
        {"error": 5000, "message": "This plugin was not found:nosuch", "code": "not_found"},
    )

    # A stream and a rule created by PUT, as eKuiper allows; its status with eKuiper 2.x's node names.
    sql = 'CREATE STREAM demo () WITH (TYPE="counter", DATASOURCE="d", CONF_KEY="fast")'
    assert api.ok("PUT", "/streams/demo", {"sql": sql}) == "Stream demo is replaced."
    rule = {"sql": "SELECT n, revert(name) AS r FROM demo", "actions": [{"print": {}}, {"nop": {}}]}
    assert api.ok("PUT", "/rules/r1", rule) == "Rule r1 was updated successfully."
    assert wait_until(lambda: api.ok("GET", "/rules/r1/status").get("sink_nop_1_0_records_in_total", 0) > 2, timeout=20)
    status = api.ok("GET", "/rules/r1/status")
    assert list(status)[:5] == ["status", "message", "lastStartTimestamp", "lastStopTimestamp", "nextStartTimestamp"]
    assert status["status"] == "running" and status["state"] == "running" and status["lastStartTimestamp"] > 0
    nodes = [
        "source_demo_0",
        "op_2_ratelimit_0",
        "op_3_project_0",
        "op_print_0_0_transform_0",
        "op_print_0_1_encode_0",
        "sink_print_0_0",
        "op_nop_1_0_transform_0",
        "op_nop_1_1_encode_0",
        "sink_nop_1_0",
    ]
    for node in nodes:
        for key in (
            "records_in_total",
            "records_out_total",
            "messages_processed_total",
            "process_latency_us",
            "buffer_length",
            "last_invocation",
            "exceptions_total",
            "last_exception",
            "last_exception_time",
        ):
            assert f"{node}_{key}" in status, (node, key)
    assert status["source_demo_0_connection_status"] == 1 and "sink_print_0_0_connection_last_try_time" in status
    assert "op_3_project_0_connection_status" not in status
    assert status["op_2_ratelimit_0_records_in_total"] <= status["source_demo_0_records_out_total"]
    assert not any(key.startswith("op_project_0") for key in status), "the loader's own node name leaked"
    assert api.ok("GET", "/rules/r1/topo") == {
        "sources": ["source_demo"],
        "edges": {
            "source_demo": ["op_2_ratelimit"],
            "op_2_ratelimit": ["op_3_project"],
            "op_3_project": ["op_print_0_0_transform", "op_nop_1_0_transform"],
            "op_print_0_0_transform": ["op_print_0_1_encode"],
            "op_print_0_1_encode": ["sink_print_0"],
            "op_nop_1_0_transform": ["op_nop_1_1_encode"],
            "op_nop_1_1_encode": ["sink_nop_1"],
        },
    }

    assert api.ok("POST", "/rules/r1/stop") == "Rule r1 was stopped."
    stopped = api.ok("GET", "/rules/r1/status")
    assert (stopped["status"], stopped["state"]) == ("stopped", "stopped") and stopped["lastStopTimestamp"] > 0
    assert not any(key.startswith("source_") for key in stopped)
    code, headers, raw = api.exchange("GET", "/", None)
    assert code == 200 and headers["Content-Type"].startswith("text/plain")  # eKuiper's node information
    info = json.loads(raw)
    assert set(info) == {"version", "os", "arch", "upTimeSeconds"} and info["os"] == "linux"


def test_shapes_of_streams_and_sql_words() -> None:
    """The pure pieces: eKuiper's stream Options and its word for CREATE <not stream>."""
    from loader.api.ekuiper import misplaced_stream_keyword, sink_base, stream_options
    from loader.rules.definitions import parse_stream

    stream = parse_stream('CREATE STREAM s () WITH (TYPE="counter", DATASOURCE="d", FORMAT="JSON", SHARED="true")')
    assert stream_options(stream) == {
        "datasource": "d",
        "format": "json",
        "confKey": "default",
        "type": "counter",
        "shared": True,
    }
    assert misplaced_stream_keyword("create strem x") == "STREM"
    assert misplaced_stream_keyword("CREATE TABLE t ()") is None and misplaced_stream_keyword("SELECT 1") is None
    assert sink_base("sink_collect_0_0") == "collect_0"


def test_metadata_of_a_source_file_converts_every_confkey(tmp_path: Path) -> None:
    from loader.api.metadata import describe

    (tmp_path / "sources").mkdir()
    (tmp_path / "sources" / "random.json").write_text(
        json.dumps(
            {
                "about": {"trial": True, "description": {"en_US": "random"}},
                "libs": [],
                "dataSource": {"default": "x"},
                "properties": {
                    "default": [{"name": "interval", "default": 1000, "type": "int"}],
                    "fast": [{"name": "interval", "default": 10}],
                },
            }
        )
    )
    meta = describe("sources", "random", "demo", tmp_path)
    assert meta["about"]["description"] == {"en": "random", "zh": ""} and meta["dataSource"] == {"default": "x"}
    assert [f["default"] for f in meta["properties"]["default"]] == [1000]
    assert meta["properties"]["fast"][0]["name"] == "interval" and meta["node"] is None
    (tmp_path / "sources" / "random.json").write_text('{"libs": []}')
    broken = describe("sources", "random", "demo", tmp_path)
    assert "has no 'about' object" in broken["error"] and broken["about"]["installed"] is True
