"""The process argument: eKuiper's PortableConfig and our extension, parsed in one place."""

from __future__ import annotations

import json

from sdk.args import RuntimeArgs, parse_argv


def argv(obj: object) -> list[str]:
    return ["plugin.py", json.dumps(obj)]


def test_no_argument_is_plain_ekuiper_behaviour() -> None:
    assert parse_argv(["plugin.py"]) == RuntimeArgs()
    assert RuntimeArgs() == RuntimeArgs(
        send_timeout_ms=1000, ipc_dir="/tmp", keepalive_ms=5000, plugin_name=None, protocol=0
    )


def test_ekuiper_argument_only_sets_send_timeout() -> None:
    args = parse_argv(argv({"sendTimeout": 250}))
    assert args == RuntimeArgs(send_timeout_ms=250)
    assert args.name_for("car") == "car"


def test_extension_overrides_name_dir_and_keepalive() -> None:
    ext = {"protocol": 1, "pluginName": "renamed", "ipcDir": "/run/pl/", "keepaliveMs": 300, "future": True}
    args = parse_argv(argv({"sendTimeout": 1000, "portableLoader": ext, "other": 1}))
    assert args == RuntimeArgs(1000, "/run/pl", 300, "renamed", 1)
    assert args.name_for("car") == "renamed"


def test_extension_without_usable_protocol_is_ignored() -> None:
    for protocol in (None, 0, "1", True):
        ext = {"protocol": protocol, "pluginName": "renamed", "ipcDir": "/x"}
        assert parse_argv(argv({"sendTimeout": 1000, "portableLoader": ext})) == RuntimeArgs()


def test_invalid_values_fall_back_per_key() -> None:
    ext = {"protocol": 2, "pluginName": "../evil", "ipcDir": 5, "keepaliveMs": -1}
    args = parse_argv(argv({"sendTimeout": "fast", "portableLoader": ext}))
    assert args == RuntimeArgs(protocol=2)


def test_garbage_argument_is_plain_behaviour() -> None:
    assert parse_argv(["plugin.py", "not json"]) == RuntimeArgs()
    assert parse_argv(["plugin.py", "[1, 2]"]) == RuntimeArgs()
