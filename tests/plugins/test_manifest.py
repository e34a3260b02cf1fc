"""Manifest validation and ``portable-loader validate``: precise errors for bad folders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from loader.config import ConfigError, load_config
from loader.plugins.manifest import ManifestError, load_plugin
from loader.plugins.symbols import SymbolConflict, SymbolRegistry
from tests.support.manifests import GOOD, plugin, run_cli


def error_of(folder: Path) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        load_plugin(folder)
    return info.value


def test_good_manifest_loads_with_digest(tmp_path):
    spec = load_plugin(plugin(tmp_path))
    assert spec.name == "car" and spec.version == "v1.0.0"
    assert spec.symbols("sources") == ["counter"] and spec.symbols("sinks") == []
    assert len(spec.digest) == 64


def test_digest_follows_content_not_mtime(tmp_path):
    folder = plugin(tmp_path)
    first = load_plugin(folder).digest
    (folder / "main.py").write_text("print('hi')\n")
    assert load_plugin(folder).digest == first
    (folder / "main.py").write_text("print('changed')\n")
    assert load_plugin(folder).digest != first
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "x.pyc").write_bytes(b"0")
    assert load_plugin(folder).digest == load_plugin(folder).digest


@pytest.mark.parametrize(
    "change, pointer, words",
    [
        ({"version": 3}, "/version", "is not of type 'string'"),
        ({"sources": "counter"}, "/sources", "is not of type 'array'"),
        ({"sources": ["bad name"]}, "/sources/0", "does not match"),
        ({"virtualEnvType": "pipenv", "env": "x"}, "/virtualEnvType", "is not one of"),
        ({"name": "bus"}, "/name", "differs from the folder name"),
        ({"sources": [], "sinks": []}, "/", "declares no symbol"),
        ({"executable": "/usr/bin/python3"}, "/executable", "absolute path"),
        ({"executable": "../outside.py"}, "/executable", "outside the plugin folder"),
    ],
)
def test_schema_and_semantic_errors_name_file_pointer_and_fix(tmp_path, change, pointer, words):
    error = error_of(plugin(tmp_path, manifest={**GOOD, **change}))
    assert error.file.endswith("car/car.json")
    assert error.pointer == pointer
    assert words in error.message
    assert error.fix


def test_missing_required_key(tmp_path):
    manifest = dict(GOOD)
    del manifest["executable"]
    error = error_of(plugin(tmp_path, manifest=manifest))
    assert "'executable' is a required property" in error.message and error.fix == "add the missing key"


def test_bad_json_gives_line_and_column(tmp_path):
    folder = plugin(tmp_path)
    (folder / "car.json").write_text('{"version": "v1",\n  "language": }')
    error = error_of(folder)
    assert "line 2 column" in error.message


def test_missing_manifest_and_executable_are_incomplete(tmp_path):
    folder = tmp_path / "car"
    folder.mkdir()
    assert error_of(folder).incomplete
    (folder / "car.json").write_text(json.dumps({**GOOD, "executable": "later.py"}))
    error = error_of(folder)
    assert error.incomplete and "later.py" in error.message


def test_symlink_escaping_the_folder_is_rejected(tmp_path):
    outside = tmp_path / "outside.py"
    outside.write_text("")
    folder = plugin(tmp_path, manifest={**GOOD, "executable": "link.py"})
    os.symlink(outside, folder / "link.py")
    assert "outside the plugin folder" in error_of(folder).message


def test_non_python_executable_must_be_executable(tmp_path):
    folder = plugin(tmp_path, manifest={**GOOD, "language": "go", "executable": "car"}, exe="car")
    assert "chmod +x" in error_of(folder).fix
    (folder / "car").chmod(0o755)
    assert load_plugin(folder).language == "go"


def test_invalid_folder_name(tmp_path):
    error = error_of(plugin(tmp_path, name="bad.name"))
    assert "not a valid plugin name" in error.message


def test_unknown_keys_warn_but_load(tmp_path):
    spec = load_plugin(plugin(tmp_path, manifest={**GOOD, "author": "me"}))
    assert len(spec.warnings) == 1 and "'author'" in spec.warnings[0]


def test_registry_conflict_names_both(tmp_path):
    registry = SymbolRegistry()
    registry.register(load_plugin(plugin(tmp_path, "a")))
    other = load_plugin(plugin(tmp_path, "b", manifest={**GOOD, "sinks": ["counter"]}))
    with pytest.raises(SymbolConflict) as info:
        registry.check(other)
    assert "'a'" in str(info.value) and "'b'" in str(info.value) and "source 'counter'" in str(info.value)
    # Same name as a sink only would not clash: kinds are separate.
    registry.check(load_plugin(plugin(tmp_path, "c", manifest={**GOOD, "sources": [], "sinks": ["counter"]})))


def test_validate_command(tmp_path):
    good = run_cli("validate", str(plugin(tmp_path)))
    assert good.returncode == 0 and good.stdout.startswith("OK car v1.0.0")
    bad = run_cli("validate", str(plugin(tmp_path, "bus", manifest={**GOOD, "sources": "x"})))
    assert bad.returncode == 1
    assert "field:   /sources" in bad.stdout and "fix:" in bad.stdout and "bus.json" in bad.stdout


def test_package_command_zips_the_folder(tmp_path):
    import zipfile

    out = tmp_path / "car.zip"
    result = run_cli("package", str(plugin(tmp_path)), "-o", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(zipfile.ZipFile(out).namelist()) == ["car.json", "main.py"]


def test_config_file_errors_name_the_key(tmp_path):
    path = tmp_path / "loader.yaml"
    path.write_text("watch: {settle_ms: -1}\n")
    with pytest.raises(ConfigError, match="watch/settle_ms"):
        load_config(path)
    path.write_text("plugin_dir: x\n")
    with pytest.raises(ConfigError, match="plugin_dir"):
        load_config(path)


def test_config_flags_override_file(tmp_path):
    path = tmp_path / "loader.yaml"
    path.write_text("ipc_dir: /tmp/a\nrest: 'off'\nsupervisor: {stop_grace_s: 1}\n")
    config = load_config(path, {"ipc_dir": "/tmp/b", "rest": None})
    assert config.ipc_dir == Path("/tmp/b") and config.rest == "off" and config.supervisor.stop_grace_s == 1
    shipped = load_config(Path(__file__).resolve().parents[2] / "etc" / "loader.yaml")
    assert shipped.ipc_dir == Path("/tmp")
