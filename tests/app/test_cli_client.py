"""``portable-loader plugins|streams|rules|symbols|status`` against a real loader's REST API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from loader.app.cli import main
from tests.support.api import REPO, collector_files, free_port, seqsrc_files, start_api, write_zip
from tests.support.waiting import wait_until

TOKEN = "cli-token"


def cli(capsys, api, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--url", api.url, "--token", TOKEN])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_drives_plugins_streams_and_rules(processes, env, capsys):
    api = start_api(processes, env["plugins"], env["ipc"], env["data"], extra=f"etc_dir: {env['etc']}\n", token=TOKEN)

    # Install from a plugin folder (zipped by the client) and from a zip.
    folder = env["zips"] / "seqsrc"
    folder.mkdir()
    for name, content in seqsrc_files().items():
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    code, out, _ = cli(capsys, api, "plugins", "install", "seqsrc", str(folder))
    assert code == 0 and out.startswith("installed seqsrc v1.0.0: running (pid ")
    zip_path = Path(write_zip(env["zips"] / "collector.zip", collector_files())[len("file://") :])
    assert cli(capsys, api, "plugins", "install", "collector", str(zip_path))[0] == 0
    # Both went in the request body, not as file:// URLs the loader would have to read from our disk
    # (under systemd its /tmp is private).
    for name in ("seqsrc", "collector"):
        assert api.loader.find("api.plugin_installing", plugin=name)[0]["url"].startswith("upload of "), name

    code, out, _ = cli(capsys, api, "plugins", "list")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "STATE", "PID", "SOURCES", "SINKS", "FUNCTIONS"]
    assert lines[1].split()[:3] == ["collector", "v1.0.0", "running"] and lines[2].split()[0] == "seqsrc"
    code, out, _ = cli(capsys, api, "plugins", "list", "--json")
    assert [p["name"] for p in json.loads(out)] == ["collector", "seqsrc"]
    code, out, _ = cli(capsys, api, "plugins", "status", "seqsrc", "--json")
    assert json.loads(out)["status"] == "running"
    code, out, _ = cli(capsys, api, "plugins", "describe", "collector")
    assert f"executable: {env['plugins'] / 'collector' / 'collector.py'}" in out

    sql = 'CREATE STREAM demo () WITH (TYPE="seq", DATASOURCE="t1")'
    assert cli(capsys, api, "streams", "create", sql)[1].strip() == "Stream demo is created."
    code, out, _ = cli(capsys, api, "streams", "list")
    assert out.splitlines()[1].split()[:3] == ["demo", "seq", "json"]

    out_file = env["out"] / "r.jsonl"
    rule = {"id": "r1", "sql": "SELECT n FROM demo", "actions": [{"collect": {"path": str(out_file)}}]}
    rule_file = env["zips"] / "r1.json"
    rule_file.write_text(json.dumps(rule))
    code, out, _ = cli(capsys, api, "rules", "create", str(rule_file))
    assert code == 0 and out.strip() == "Rule r1 was created successfully. (running)"
    assert wait_until(lambda: out_file.exists() and len(out_file.read_text().splitlines()) > 3), (
        api.ok("GET", "/rules/r1/status"),
        "".join(api.loader.raw[-30:]),
    )
    code, out, _ = cli(capsys, api, "rules", "list")
    assert out.splitlines()[0].split() == ["ID", "STATE", "STATUS", "MESSAGE"]
    assert out.splitlines()[1].split() == ["r1", "running", "running", "-"]
    code, out, _ = cli(capsys, api, "rules", "status", "r1", "--json")
    assert json.loads(out)["status"] == "running"
    assert cli(capsys, api, "rules", "stop", "r1")[1].strip() == "Rule r1 was stopped. (stopped)"
    assert cli(capsys, api, "rules", "start", "r1")[1].strip() == "Rule r1 was started (running)"
    assert cli(capsys, api, "rules", "restart", "r1")[1].strip() == "Rule r1 was restarted (running)"
    assert json.loads(cli(capsys, api, "rules", "describe", "r1")[1])["sql"] == "SELECT n FROM demo"

    code, out, _ = cli(capsys, api, "symbols")
    rows = [line.split() for line in out.splitlines()[1:]]
    assert ["sink", "collect", "plugin-portable", "collector", "v1.0.0"] in rows
    assert ["sink", "log", "builtin", "-", rows[[r[1] for r in rows].index("log")][4]] in rows
    code, out, _ = cli(capsys, api, "symbols", "sources", "--json")
    assert json.loads(out)["sources"] == [
        {"name": "seq", "type": "plugin-portable", "plugin": "seqsrc", "version": "v1.0.0"}
    ]

    code, out, _ = cli(capsys, api, "status")
    assert out.splitlines()[0].endswith(
        "2 plugins, 1 streams, rules: 1 running, 0 degraded, 0 stopped, 0 waiting, 0 error"
    )
    status_rows = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert "r1=1" in status_rows["collector"]

    # Refusals: the loader's message, exit code 1; --json gives the error object.
    code, _, err = cli(capsys, api, "rules", "create", '{"id": "bad", "sql": "SELECT FROM", "actions": [{"log": {}}]}')
    assert code == 1 and "(400 invalid_sql)" in err and "invalid rule json: Parse SQL SELECT FROM error" in err
    code, out, _ = cli(capsys, api, "plugins", "status", "nosuch", "--json")
    assert code == 1 and json.loads(out) == {
        "error": 1002,
        "message": "portable plugin nosuch not found: not found",
        "code": "not_found",
    }
    code, _, err = cli(capsys, api, "plugins", "install", "seqsrc", str(folder))
    assert code == 1 and "invalid name seqsrc: duplicate (400 exists)" in err

    assert cli(capsys, api, "rules", "delete", "r1")[1].strip() == "Rule r1 is dropped."
    assert cli(capsys, api, "streams", "delete", "demo")[1].strip() == "Stream demo is dropped."
    assert "deleted" in cli(capsys, api, "plugins", "delete", "collector")[1]
    code, out, _ = cli(capsys, api, "plugins", "update", "seqsrc", str(folder))
    assert code == 0 and out.startswith("updated seqsrc v1.0.0: running")

    # Without the token: refused.
    assert main(["rules", "list", "--url", api.url]) == 1
    assert "401" in capsys.readouterr().err


def test_cli_console_script_and_unreachable_loader(tmp_path):
    port = free_port()  # nothing listens there
    script = Path(sys.executable).parent / "portable-loader"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "loader"]
    result = subprocess.run(
        [*command, "status", "--url", f"http://127.0.0.1:{port}"], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert result.returncode == 3
    assert "cannot reach the loader" in result.stderr and str(port) in result.stderr
    result = subprocess.run([*command, "rules", "--help"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0 and "restart" in result.stdout
