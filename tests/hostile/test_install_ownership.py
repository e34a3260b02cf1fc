"""Finding 8: a REST install touches only its own files in etc/, and a delete removes only what it installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.survival import Bystander, assert_survived
from tests.support.api import collector_files, seqsrc_files, start_api, write_zip

OPERATOR_SEQ = "default:\n  count: 7\n"  # the operator's configuration of another plugin's source
OPERATOR_COLLECT = '{"delay_ms": 1}'  # the operator's own file for the installing plugin's sink


@pytest.fixture
def env(tmp_path: Path, ipc_dir: Path) -> dict[str, Path]:
    dirs = {
        "plugins": tmp_path / "plugins",
        "data": tmp_path / "data",
        "etc": tmp_path / "etc",
        "ipc": ipc_dir,
        "zips": tmp_path / "zips",
    }
    for key in ("plugins", "zips"):
        dirs[key].mkdir()
    (dirs["etc"] / "sources").mkdir(parents=True)
    (dirs["etc"] / "sinks").mkdir()
    (dirs["etc"] / "sources" / "seq.yaml").write_text(OPERATOR_SEQ)
    (dirs["etc"] / "sinks" / "collect.json").write_text(OPERATOR_COLLECT)
    return dirs


def test_install_copies_only_own_unowned_files_and_delete_removes_only_those(processes, env):
    api = start_api(processes, env["plugins"], env["ipc"], env["data"], extra=f"etc_dir: {env['etc']}\n")
    bystander = Bystander.add(env["plugins"], api.loader)
    api.ok(
        "POST",
        "/plugins/portables",
        {"name": "seqsrc", "file": write_zip(env["zips"] / "seqsrc.zip", seqsrc_files())},
        expect=201,
    )

    hostile = dict(
        collector_files(),
        **{
            "sources/seq.yaml": "default:\n  count: 0\n",  # another plugin's source
            "sinks/log.json": '{"hijacked": true}',  # a built-in sink
            "sinks/collect.json": '{"delay_ms": 999}',  # its own sink, but the operator owns the file
            "functions/revert.json": '{"mine": true}',  # its own function, nobody's file yet
        },
    )
    api.ok(
        "POST",
        "/plugins/portables",
        {"name": "collector", "file": write_zip(env["zips"] / "collector.zip", hostile)},
        expect=201,
    )
    answer = api.ok("GET", "/plugins/portables/collector/status")  # what the install could not do: its warnings
    etc = env["etc"]
    assert (etc / "sources" / "seq.yaml").read_text() == OPERATOR_SEQ
    assert not (etc / "sinks" / "log.json").exists()
    assert (etc / "sinks" / "collect.json").read_text() == OPERATOR_COLLECT
    assert (etc / "functions" / "revert.json").read_text() == '{"mine": true}'
    warnings = " | ".join(answer["warnings"])
    assert "sources/seq.yaml was not installed" in warnings and "'seq' is not one of the plugin's sources" in warnings
    assert "sinks/log.json was not installed" in warnings
    assert f"{etc / 'sinks' / 'collect.json'} was kept" in warnings
    kept = api.loader.find("api.config_kept", plugin="collector")
    assert len(kept) == 3, kept

    # Delete: only the file it installed goes; the operator's files stay.
    api.ok("DELETE", "/plugins/portables/collector")
    assert not (etc / "functions" / "revert.json").exists()
    assert (etc / "sources" / "seq.yaml").read_text() == OPERATOR_SEQ
    assert (etc / "sinks" / "collect.json").read_text() == OPERATOR_COLLECT
    assert not (env["data"] / "installed" / "collector.json").exists()

    # An installed file the operator edited afterwards is the operator's: a delete keeps it.
    api.ok(
        "POST",
        "/plugins/portables",
        {"name": "collector", "file": write_zip(env["zips"] / "collector2.zip", hostile)},
        expect=201,
    )
    (etc / "functions" / "revert.json").write_text('{"edited": true}')
    api.ok("DELETE", "/plugins/portables/collector")
    assert (etc / "functions" / "revert.json").read_text() == '{"edited": true}'
    assert api.loader.find("api.config_kept", plugin="collector")[-1]["reason"].endswith(
        "was edited after the plugin installed it"
    )
    assert_survived(api.url, api.loader, bystander)
