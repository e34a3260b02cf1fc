"""Findings 1 and 2: bad or deeply nested stream, rule and manifest files never crash the loader.

Before: ``"bufferLength": "abc"`` passed the schema and ``int()`` raised at
start (REST answered 500 and left the file on disk, the next start died);
a file nested 50,000 levels deep raised RecursionError through every
handler.  Now both are refused with an error naming file and field, at
start-up and over REST, and the rest of the loader runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.hostile.helpers import assert_serving, deep_json, raw_call, snapshot
from tests.support.api import collector_files, seqsrc_files, start_api, write_zip
from tests.support.loader_process import REPO
from tests.support.rules import install_collector, install_seqsrc, rule, stream, wait_collected, write_json

GOOD_SQL = "SELECT n FROM demo"


@pytest.fixture
def env(env: dict[str, Path]) -> dict[str, Path]:
    """The shared folders (tests/conftest.py), with the data folder made: these tests write into it first."""
    env["data"].mkdir()
    return env


def test_bad_files_on_disk_are_reported_and_the_rest_starts(processes, env):
    data = env["data"]
    install_seqsrc(env["plugins"])
    install_collector(env["plugins"])
    stream(data, "demo")
    out = env["out"] / "good.jsonl"
    rule(data, "good", GOOD_SQL, out)
    rule(data, "badopt", GOOD_SQL, env["out"] / "bad.jsonl", options={"bufferLength": "abc"})
    (data / "rules" / "deeprule.json").write_text(deep_json())
    (data / "streams" / "deepstream.json").write_text(deep_json())
    write_json(
        data / "streams" / "badshared.json", {"sql": 'CREATE STREAM badshared () WITH (TYPE="seq", SHARED="yes")'}
    )

    api = start_api(processes, env["plugins"], env["ipc"], data, extra=f"etc_dir: {env['etc']}\n")
    loader = api.loader
    bad = loader.wait_for("rule.error", rule="badopt")
    assert f"{data / 'rules' / 'badopt.json'} at /options/bufferLength: 'abc' is not of type 'integer'" in bad["error"]
    deep = loader.wait_for("rule.error", rule="deeprule")
    assert "deeprule.json: not valid JSON: nested 50000 levels deep" in deep["error"]
    deep_stream = loader.wait_for("stream.invalid", stream="deepstream")
    assert "nested 50000 levels deep" in deep_stream["error"]
    shared = loader.wait_for("stream.invalid", stream="badshared")
    assert "WITH option SHARED: 'yes' is not one of ['true', 'false']" in shared["error"]
    assert len(wait_collected(out, 100)) == 100  # the good rule runs
    assert not loader.find("task.failed") and not loader.find("rule.reconcile_failed")
    assert_serving(api, ["seqsrc", "collector"])


def test_rest_refuses_bad_options_and_deep_bodies_and_keeps_nothing(processes, env):
    data = env["data"]
    api = start_api(processes, env["plugins"], env["ipc"], data, extra=f"etc_dir: {env['etc']}\n")
    api.ok(
        "POST",
        "/plugins/portables",
        {"name": "seqsrc", "file": write_zip(env["zips"] / "s.zip", seqsrc_files())},
        expect=201,
    )
    api.ok(
        "POST",
        "/plugins/portables",
        {"name": "collector", "file": write_zip(env["zips"] / "c.zip", collector_files())},
        expect=201,
    )
    api.ok("POST", "/streams", {"sql": 'CREATE STREAM demo () WITH (TYPE="seq", DATASOURCE="t1")'}, expect=201)
    before = snapshot(data)

    body = {"id": "r1", "sql": GOOD_SQL, "actions": [{"log": {}}], "options": {"bufferLength": "abc"}}
    status, answer = api.call("POST", "/rules", body)
    assert status == 400, answer
    assert "at /options/bufferLength: 'abc' is not of type 'integer'" in answer["message"]
    status, answer = api.call("POST", "/rules", {**body, "options": {"bufferLength": 0}})
    assert status == 400 and "0 is less than the minimum of 1" in answer["message"]
    status, answer = api.call("POST", "/streams", {"sql": 'CREATE STREAM s2 () WITH (TYPE="seq", FORMAT="xml")'})
    assert status == 400 and "WITH option FORMAT: 'xml' is not one of ['json']" in answer["message"]
    for path in ("/rules", "/streams"):
        status, answer = raw_call(api, "POST", path, deep_json(100_000).encode())
        assert status == 400, (path, answer)
    assert not (data / "rules" / "r1.json").exists()
    assert snapshot(data) == before
    assert_serving(api, ["seqsrc", "collector"])
    # what the schema allows still works
    api.ok("POST", "/rules", {**body, "options": {"bufferLength": 8}}, expect=201)
    assert api.ok("GET", "/rules/r1/status")["state"] == "running"


def test_deep_manifest_is_a_precise_error_for_validate_and_rest_install(processes, env, tmp_path):
    folder = tmp_path / "deepplug"
    folder.mkdir()
    (folder / "deepplug.json").write_text('{"version": "v1", "sources": ' + deep_json() + "}")
    (folder / "main.py").write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "loader", "validate", str(folder)], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "problem: not valid JSON: nested 50001 levels deep" in result.stdout

    api = start_api(processes, env["plugins"], env["ipc"], env["data"])
    url = write_zip(env["zips"] / "deep.zip", {"deepplug.json": (folder / "deepplug.json").read_text(), "main.py": ""})
    status, answer = api.call("POST", "/plugins/portables", {"name": "deepplug", "file": url})
    assert status == 400, answer
    assert "nested 50001 levels deep" in answer["message"]
    assert not (env["plugins"] / "deepplug").exists()
    assert api.call("GET", "/ping", timeout=1.0)[0] == 200
