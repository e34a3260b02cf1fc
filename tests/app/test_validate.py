"""``portable-loader validate`` compiles Python plugins and, with ``--strict``, refuses unknown keys."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from loader.plugins.manifest import ManifestError, load_plugin
from loader.plugins.snapshots import SnapshotStore
from tests.support.manifests import GOOD, plugin, run_cli


def test_syntax_error_is_refused_with_file_and_line(tmp_path):
    folder = plugin(tmp_path)
    (folder / "main.py").write_text("import sys\n\ndef main()\n    pass\n")
    with pytest.raises(ManifestError) as info:
        load_plugin(folder)
    assert info.value.message == "SyntaxError: expected ':' (main.py, line 3)"
    assert info.value.version == "v1.0.0" and info.value.file.endswith("main.py")
    result = run_cli("validate", str(folder))
    assert result.returncode == 1 and "SyntaxError: expected ':' (main.py, line 3)" in result.stdout


def test_a_broken_module_of_the_plugin_is_found_but_a_bundled_venv_is_not_compiled(tmp_path):
    folder = plugin(tmp_path)
    (folder / "lib").mkdir()
    (folder / "lib" / "sensors.py").write_text("def f(:\n")
    with pytest.raises(ManifestError) as info:
        load_plugin(folder)
    assert "sensors.py, line 1" in info.value.message
    shutil.rmtree(folder / "lib")
    venv = folder / "env"
    (venv / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (venv / "lib" / "python3.11" / "site-packages" / "py2only.py").write_text("print 'old'\n")
    assert load_plugin(folder).version == "v1.0.0"


def test_unknown_key_suggests_the_nearest_and_strict_refuses_it(tmp_path):
    folder = plugin(tmp_path, manifest={**GOOD, "sourcse": ["x"]})
    spec = load_plugin(folder)
    assert "did you mean 'sources'?" in spec.warnings[0]
    lenient = run_cli("validate", str(folder))
    assert lenient.returncode == 0 and "did you mean 'sources'?" in lenient.stdout
    strict = run_cli("validate", "--strict", str(folder))
    assert strict.returncode == 1
    assert "field:   /sourcse" in strict.stdout and "did you mean 'sources'?" in strict.stdout
    far = load_plugin(plugin(tmp_path, "bus", manifest={**GOOD, "zzz": 1}))
    assert "known keys:" in far.warnings[0]


def test_snapshot_is_a_copy_the_folder_cannot_change(tmp_path):
    folder = plugin(tmp_path)
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"x")
    os.chmod(folder / "main.py", 0o755)
    spec = load_plugin(folder)
    store = SnapshotStore(tmp_path / "snapshots", keep=2)
    snap = store.take(spec)
    assert snap.digest == spec.digest and snap.source == folder
    assert snap.folder == tmp_path / "snapshots" / "car" / spec.digest[:16] / "car"
    assert snap.executable == (snap.folder / "main.py").resolve() and os.access(snap.executable, os.X_OK)
    assert not (snap.folder / "__pycache__").exists()
    (folder / "main.py").write_text("print('edited')\n")
    assert (snap.folder / "main.py").read_text() == "print('hi')\n"
    (snap.folder / "out.log").write_text("the plugin writes here")
    assert load_plugin(folder).digest != spec.digest and "out.log" not in os.listdir(folder)


def test_only_the_newest_good_snapshots_and_those_in_use_are_kept(tmp_path):
    store = SnapshotStore(tmp_path / "snapshots", keep=2)
    folder = plugin(tmp_path)
    snaps = []
    for n in range(4):
        (folder / "car.json").write_text(json.dumps({**GOOD, "version": f"v{n}"}))
        snaps.append(store.take(load_plugin(folder)))
    store.release(snaps[0])
    store.mark_good(snaps[0], in_use={snaps[0].folder})
    assert len(list((tmp_path / "snapshots" / "car").iterdir())) == 4  # taken, not started yet: pinned
    for snap in snaps[1:3]:
        store.release(snap)
        store.mark_good(snap, in_use={snap.folder, snaps[3].folder})
    kept = {p.name for p in (tmp_path / "snapshots" / "car").iterdir()}
    assert kept == {s.digest[:16] for s in (snaps[1], snaps[2], snaps[3])}
    assert store.good("car") == [snaps[2].folder, snaps[1].folder]
