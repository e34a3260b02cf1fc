"""The release artefact is what runs: build the sdist and wheel, install the wheel.

Not an editable install and not the checkout on ``sys.path``: the wheel is
built from the sdist (as ``make dist`` does), installed into a fresh venv with
the hash-checked runtime lock, and run from a folder outside the checkout.
Catches what an editable install hides: files the loader reads at run time
(the JSON Schemas) that the wheel does not ship, and locked dependency
versions the code does not work with.

Needs network access to PyPI (the locked dependencies, and the pinned
setuptools of the isolated build).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.api import free_port
from tests.support.loader_process import REPO, LoaderProcess

# Builds the wheel and installs it into fresh venvs: real pip, real processes.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

INSTALL_TIMEOUT_S = 600


def run(args: list[str], cwd: Path, timeout: float = INSTALL_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run a command, failing the test with its output when it fails."""
    result = subprocess.run(args, cwd=cwd, env=outside_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def outside_env() -> dict[str, str]:
    """The environment of a user: no PYTHONPATH pointing into the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """dist/ of a fresh build: the sdist, and the wheel built from it."""
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--quiet", "--outdir", str(out), str(REPO)], cwd=out)
    yield out
    shutil.rmtree(out, ignore_errors=True)


def only(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {folder}, found {found}"
    return found[0]


def test_wheel_ships_every_module_and_schema(built: Path):
    names = set(zipfile.ZipFile(only(built, "*.whl")).namelist())
    for package in ("loader", "sdk"):
        for path in (REPO / package).rglob("*.py"):
            assert str(path.relative_to(REPO)) in names, f"{path.relative_to(REPO)} is not in the wheel"
    schemas = sorted(p.name for p in (REPO / "schema").glob("*.json"))
    assert schemas and all(f"loader/schemas/{name}" in names for name in schemas)
    assert not any(name.startswith(("schema/", "tests/")) for name in names), "the wheel ships a top-level folder"


def test_installed_wheel_validates_and_serves_the_demo(built: Path, tmp_path: Path, processes, ipc_dir: Path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    run(pip + ["--require-hashes", "-r", str(REPO / "requirements" / "runtime.txt")], cwd=tmp_path)
    run(pip + ["--no-deps", str(only(built, "*.whl"))], cwd=tmp_path)

    work = tmp_path / "work"
    plugins, etc, data = work / "plugins", work / "etc", work / "data"
    shutil.copytree(REPO / "plugins" / "portable" / "demo", plugins / "demo")
    shutil.copytree(REPO / "etc" / "demo", data)
    (etc / "sources").mkdir(parents=True)
    (etc / "sources" / "counter.yaml").write_text("default:\n  interval: 50\n")
    (work / "loader.yaml").write_text("log:\n  format: json\n  level: info\nwatch:\n  settle_ms: 100\n")
    cli = str(venv / "bin" / "portable-loader")

    where = run(
        [str(venv / "bin" / "python"), "-c", "import loader, sdk; print(loader.__file__, sdk.__file__)"], cwd=work
    ).stdout
    assert all(Path(p).is_relative_to(venv) for p in where.split()), f"not the installed wheel: {where}"

    validated = run([cli, "validate", str(plugins / "demo")], cwd=work).stdout
    assert validated.startswith("OK demo v1.0.0"), validated

    port = free_port()
    proc = processes.popen(
        [
            cli,
            "serve",
            "--config",
            "loader.yaml",
            "--plugins-dir",
            str(plugins),
            "--etc-dir",
            str(etc),
            "--data-dir",
            str(data),
            "--ipc-dir",
            str(ipc_dir),
            "--rest",
            f"127.0.0.1:{port}",
        ],
        cwd=work,
        env=outside_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    loader = LoaderProcess(proc)
    threading.Thread(target=loader._read, daemon=True).start()
    running = loader.wait_for("plugin.running", timeout=60, plugin="demo")
    assert running["version"] == "v1.0.0"
    delivered = loader.wait_for("sink.log", timeout=60, count=3, rule="demo")
    [row] = delivered["message"]  # one result: the array of its one row, as a sink gets it
    assert row["n"] % 2 == 0 and row["reverted"] == "retnuoc"

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=10) as response:
        assert "/rules" in json.load(response)["paths"]
    assert loader.terminate(timeout=30) == 0


def test_the_sdk_distribution_installs_alone_and_runs_a_plugin(tmp_path: Path):
    """``portable-loader-sdk`` (sdk/pyproject.toml, built by make dist): a venv with only it and pynng
    runs a plugin, from outside the checkout, without the loader."""
    source = tmp_path / "sdk-src"
    shutil.copytree(REPO / "sdk", source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    out = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--quiet", "--wheel", "--outdir", str(out), str(source)], cwd=tmp_path)
    wheel = only(out, "portable_loader_sdk-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {str(p.relative_to(REPO)) for p in (REPO / "sdk").rglob("*.py") if "__pycache__" not in p.parts}
    assert modules <= names and not any(n.startswith("loader/") for n in names), names - modules
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    python = str(venv / "bin" / "python")
    run([python, "-m", "pip", "install", "--quiet", str(wheel)], cwd=tmp_path)
    counted = run(
        [
            python,
            "-m",
            "sdk.debug",
            str(REPO / "plugins/portable/demo/demo.py"),
            "source",
            "counter",
            "--conf",
            '{"interval": 10}',
            "--count",
            "2",
        ],
        cwd=tmp_path,
        timeout=60,
    )
    assert len([line for line in counted.stdout.splitlines() if line.strip()]) == 2, counted.stdout
    alone = run(
        [python, "-c", "import importlib.util, sdk; print(sdk.__file__, importlib.util.find_spec('loader'))"],
        cwd=tmp_path,
    )
    path, loader_spec = alone.stdout.split()
    assert Path(path).is_relative_to(venv) and loader_spec == "None", alone.stdout
