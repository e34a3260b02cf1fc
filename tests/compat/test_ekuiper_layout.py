"""An eKuiper plugin layout means what it means in eKuiper (issue 12, item 2).

eKuiper's examples (the Go ``mirror`` plugin among them) ship, per symbol, a
JSON file of UI metadata (``about``, ``libs``, ``properties``, ``node``) next
to the source's YAML configuration.  The loader read the JSON as
configuration and refused ``mirror`` outright: ``configuration key 'libs' of
source 'random' must be a mapping``.  Only ``sources/<symbol>.yaml`` (shipped,
then ``etc/sources/``) configures a source; a sink gets its action's
properties; a function gets nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from loader.rules.symbol_config import source_config
from tests.support.rules import (
    install_collector,
    install_seqsrc,
    loader_for,
    rule,
    stream,
    wait_collected,
)

#: Shaped like the metadata of eKuiper's examples: never configuration.
SOURCE_METADATA = {
    "about": {"trial": True, "author": {"name": "EMQ"}, "description": {"en_US": "a source", "zh_CN": "..."}},
    "libs": ["github.com/example/lib@v1.0.0"],
    "properties": {"default": [{"name": "interval", "default": 1000, "type": "number", "optional": False}]},
    "node": {"category": "source", "icon": "iconPath", "label": {"en_US": "Seq"}},
}
SINK_METADATA = {"about": {"trial": True}, "libs": [], "properties": [{"name": "path", "default": "/nowhere"}]}
FUNCTION_METADATA = {"about": {"trial": True}, "name": "revert", "functions": [{"name": "revert", "example": "x"}]}


def write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_source_configuration_is_the_yaml_never_the_metadata(tmp_path: Path) -> None:
    plugin, etc = tmp_path / "plugin", tmp_path / "etc"
    write(plugin / "sources" / "random.json", SOURCE_METADATA)
    (plugin / "sources" / "random.yaml").write_text(
        "default:\n  interval: 100\n  pattern: {a: 1}\nfast:\n  interval: 10\n"
    )
    write(etc / "sources" / "random.json", SOURCE_METADATA)  # eKuiper installs the metadata into etc/ too
    (etc / "sources").mkdir(exist_ok=True)
    (etc / "sources" / "random.yaml").write_text("fast:\n  pattern: {b: 2}\n")
    assert source_config("random", "default", plugin, etc) == {"interval": 100, "pattern": {"a": 1}}
    assert source_config("random", "fast", plugin, etc) == {"interval": 10, "pattern": {"b": 2}}


def test_a_plugin_shipping_ekuiper_metadata_runs_its_rule(processes, env) -> None:
    seqsrc = install_seqsrc(env["plugins"])
    write(seqsrc / "sources" / "seq.json", SOURCE_METADATA)
    (seqsrc / "sources" / "seq.yaml").write_text(json.dumps({"default": {"count": 5}}))
    collector = install_collector(env["plugins"])
    write(collector / "sinks" / "collect.json", SINK_METADATA)
    write(collector / "functions" / "revert.json", FUNCTION_METADATA)
    stream(env["data"])
    out = env["out"] / "r1.jsonl"
    rule(env["data"], "r1", "SELECT n, revert(name) AS r FROM demo", out)
    loader = loader_for(processes, env)
    rows = wait_collected(out, 5)
    assert [row["n"] for row in rows] == [1, 2, 3, 4, 5]
    assert not loader.find("rule.error", rule="r1") and not loader.find("rule.waiting", rule="r1")
