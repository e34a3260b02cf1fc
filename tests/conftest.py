"""Shared fixtures: per-test IPC directories and processes cleaned up by pid.

Unix socket paths are limited to about 107 bytes, so IPC directories are short
directories under /tmp rather than pytest's long tmp_path.  Every process a
test starts is registered here and killed by its own pid (and process group)
at teardown, even when the test fails.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from loader.log import configure_logging
from tests.support.processes import ProcessTracker


@pytest.fixture
def ipc_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pl-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def processes() -> Iterator[ProcessTracker]:
    tracker = ProcessTracker()
    try:
        yield tracker
    finally:
        tracker.cleanup()


# The system test boots a container as root and takes minutes: it runs on its
# own (tests/system/run, `make test-system`), never as part of a plain run.
collect_ignore = ["system"]


#: Fixtures that start real processes, sockets or a loader: a test using one is end to end.
E2E_FIXTURES = frozenset({"processes", "ipc_dir", "harness", "env", "corpus", "dirs", "api"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test ``unit`` (in-process, fast: ``make test-fast``) or ``e2e``, unless it says which."""
    for item in items:
        if item.get_closest_marker("unit") or item.get_closest_marker("e2e"):
            continue
        uses = set(getattr(item, "fixturenames", ()))
        item.add_marker(pytest.mark.e2e if uses & E2E_FIXTURES else pytest.mark.unit)


@pytest.fixture
def log_lines() -> Iterator[Callable[..., list[dict]]]:
    """The loader's JSON log events, captured in this process."""
    stream = io.StringIO()
    configure_logging("json", "info", stream=stream)

    def events(name: str | None = None) -> list[dict]:
        found = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
        return [e for e in found if name is None or e.get("event") == name]

    yield events
    configure_logging("json", "info")


@pytest.fixture
def env(tmp_path: Path, ipc_dir: Path) -> dict[str, Path]:
    """A loader's folders for one test: plugins, data (made by the loader), etc, ipc, and out and zips
    for what a test writes or uploads."""
    dirs = {
        "plugins": tmp_path / "plugins",
        "data": tmp_path / "data",
        "etc": tmp_path / "etc",
        "ipc": ipc_dir,
        "out": tmp_path / "out",
        "zips": tmp_path / "zips",
    }
    for key in ("plugins", "etc", "out", "zips"):
        dirs[key].mkdir()
    return dirs


@pytest.fixture
def harness(ipc_dir: Path, processes: ProcessTracker) -> Iterator[Any]:
    """A host for one sdk plugin process (tests/support/sdk_host.py): its control and data sockets."""
    from tests.support.sdk_host import Harness

    h = Harness(ipc_dir, processes)
    try:
        yield h
    finally:
        h.close()
