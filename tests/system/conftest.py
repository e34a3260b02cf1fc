"""The system test's machine: a Debian bookworm container booted with systemd, portable-loader installed.

Run with ``tests/system/run`` (``make test-system``); a plain ``pytest`` run
leaves this folder out (tests/conftest.py).  Everything here needs root, and
debootstrap and systemd-nspawn, which are installed with apt-get when
missing.  A machine that cannot run it makes the tests skip with the exact
reason, and fail with it under CI (CI=true), where a skip would hide that the
system test never ran.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system import docs
from tests.system.container import Container, ContainerError
from tests.system.rootfs import cached_rootfs, fresh_copy
from tests.system.unit import Unit
from tests.system.wheelhouse import build_wheelhouse, export_checkout

REPO = Path(__file__).resolve().parents[2]
# Host tools and the Debian packages that bring them.
HOST_TOOLS = {"debootstrap": "debootstrap", "systemd-nspawn": "systemd-container", "nsenter": "util-linux"}
# Where the checkout and the wheelhouse are inside the container.
CHECKOUT_INSIDE = "/root/portable-loader"
WHEELHOUSE_INSIDE = "/root/wheelhouse"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "system: boots a systemd container (tests/system/run, make test-system)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.system)


def host_problem() -> str | None:
    """Why this machine cannot run the system test, after installing what apt-get can; None if it can."""
    if os.geteuid() != 0:
        return "the system test needs root (debootstrap, systemd-nspawn and nsenter do): run it as root"
    missing = [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
    if missing and shutil.which("apt-get"):
        packages = sorted({HOST_TOOLS[tool] for tool in missing})
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=False, env=env, stdout=subprocess.DEVNULL)
        missing = [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
    if missing:
        packages = " ".join(sorted({HOST_TOOLS[tool] for tool in missing}))
        return f"missing {', '.join(missing)}; install the Debian packages {packages} (no apt-get here to do it)"
    return None


def refuse(reason: str) -> None:
    """Skip with the reason on a developer's machine; fail under CI, where a skip would go unnoticed."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"system test cannot run on this machine: {reason}", pytrace=False)
    pytest.skip(f"system test cannot run on this machine: {reason}")


@pytest.fixture(scope="session")
def run_dir() -> Iterator[Path]:
    """A work folder on disk (not tmpfs: the container's tree is copied here), removed at the end."""
    problem = host_problem()
    if problem:
        refuse(problem)
    path = Path(tempfile.mkdtemp(prefix="portable-loader-system-", dir="/var/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def unit(run_dir: Path) -> Iterator[Unit]:
    """One booted container with portable-loader installed as docs/operations.md says, running."""
    root = run_dir / "root"
    fresh_copy(cached_rootfs(), root)
    source = run_dir / "src"
    export_checkout(REPO, source)
    wheel = build_wheelhouse(source, run_dir / "wheelhouse")
    shutil.copytree(source, root / CHECKOUT_INSIDE.lstrip("/"))
    shutil.copytree(run_dir / "wheelhouse", root / WHEELHOUSE_INSIDE.lstrip("/"))
    # The container has no network: pip takes every package from the wheelhouse,
    # so the documented `pip install` runs as written.
    (root / "etc/pip.conf").write_text(f"[global]\nno-index = true\nfind-links = {WHEELHOUSE_INSIDE}\n")
    container = Container(root, run_dir / "console.log")
    try:
        container.boot()
        install = docs.install_script((REPO / "docs/operations.md").read_text(), f"{WHEELHOUSE_INSIDE}/{wheel.name}")
        result = container.run(f"cd {CHECKOUT_INSIDE} && set -ex\n{install}", timeout=300)
        if result.returncode != 0:
            journal = container.run("journalctl -u portable-loader -o cat --no-pager -n 40").stdout
            raise ContainerError(
                f"the install steps of docs/operations.md failed (exit {result.returncode}):\n"
                f"{result.stderr[-3000:]}\n{result.stdout[-2000:]}\njournal:\n{journal}"
            )
        # The service's own pip (plugin venvs) must see only what loader.yaml configures.
        (root / "etc/pip.conf").unlink()
        yield Unit(container)
    finally:
        container.stop()
