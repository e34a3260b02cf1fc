"""What must hold after every hostile input: the loader answers, its other plugins keep running.

``Bystander`` is a plugin the hostile input has nothing to do with: its
process must be the same one, still running, when the test is over.
"""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support.loader_process import make_plugin, pid_alive


def ping_within(url: str, limit_s: float = 1.0) -> float:
    """Seconds GET /ping took; fails when the answer takes longer than ``limit_s``."""
    started = time.monotonic()
    with urllib.request.urlopen(url + "/ping", timeout=limit_s) as response:
        assert response.status == 200
    took = time.monotonic() - started
    assert took <= limit_s, f"/ping took {took:.2f}s"
    return took


@dataclass
class Bystander:
    """An unrelated plugin, started before the hostile input."""

    name: str
    pid: int

    @classmethod
    def add(cls, plugins: Path, loader, name: str = "bystander") -> Bystander:
        make_plugin(plugins, name)
        event = loader.wait_for("plugin.running", timeout=20, plugin=name)
        return cls(name, event["pid"])

    def assert_running(self, loader) -> None:
        assert pid_alive(self.pid), f"plugin {self.name} (pid {self.pid}) is gone"
        assert not loader.find("plugin.exited", plugin=self.name), f"plugin {self.name} exited"
        assert not loader.find("plugin.unhealthy", plugin=self.name), f"plugin {self.name} was judged unhealthy"


def assert_survived(url: str, loader, bystander: Bystander) -> None:
    """The property every hostile test ends with."""
    assert loader.proc.poll() is None, "the loader died"
    ping_within(url)
    bystander.assert_running(loader)


def get_json(url: str, timeout: float = 5.0) -> object:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())
