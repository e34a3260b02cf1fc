"""Finding 19: a bad REST address stops the loader before anything starts, saying what is wrong.

Before, ``--rest localhost`` raised ValueError after every plugin had
started, and ``rest: 127.0.0.1:99999`` passed the schema and bound a
random port.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from loader.config import ConfigError, load_config
from tests.support.loader_process import REPO, make_plugin


def _serve(tmp_path: Path, ipc_dir: Path, rest_line: str, *flags: str) -> subprocess.CompletedProcess:
    config = tmp_path / "loader.yaml"
    config.write_text(
        f"plugins_dir: {tmp_path / 'plugins'}\nipc_dir: {ipc_dir}\ndata_dir: {tmp_path / 'data'}\n"
        f"log: {{format: json}}\n{rest_line}\n"
    )
    return subprocess.run(
        [sys.executable, "-m", "loader", "serve", "--config", str(config), *flags],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "rest_line, flags, message",
    [
        (
            "rest: 'off'",
            ["--rest", "localhost"],
            "--rest: 'localhost' has no port; give HOST:PORT with a port from 1 to 65535",
        ),
        ("rest: 127.0.0.1:99999", [], "rest: port '99999' of '127.0.0.1:99999' is not a number from 1 to 65535"),
        ("rest: 127.0.0.1:0", [], "rest: port '0' of '127.0.0.1:0' is not a number from 1 to 65535"),
    ],
)
def test_bad_rest_address_refused_before_anything_starts(tmp_path, ipc_dir, rest_line, flags, message):
    make_plugin(tmp_path / "plugins", "p1")
    result = _serve(tmp_path, ipc_dir, rest_line, *flags)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert "loader.starting" not in result.stdout  # nothing started: no plugin, no socket
    assert not (tmp_path / "data").exists()
    assert list(ipc_dir.iterdir()) == []


def test_good_addresses_parse(tmp_path):
    assert load_config(None, {"rest": "127.0.0.1:9081"}).rest_address == ("127.0.0.1", 9081)
    assert load_config(None, {"rest": "[::1]:65535"}).rest_address == ("::1", 65535)
    assert load_config(None, {"rest": "off"}).rest_address is None
    with pytest.raises(ConfigError, match="has no host"):
        load_config(None, {"rest": ":9081"})
    with pytest.raises(ConfigError, match="IPv6 hosts in brackets"):
        load_config(None, {"rest": "::1:9081"})
