"""Figure 8: resident memory (VmRSS from /proc) of the loader with 20 plugins, and of one idle sdk plugin.

The loader runs with REST on (``rest: 127.0.0.1:<free port>``).  Its RSS is
read once it is ready with no plugin (reported as a note), then 20 idle
plugin folders (bench/plugins/benchplug.py, one source each, never started)
are dropped in, and once every one logged ``plugin.on_probation`` and things
settled for a second, the loader's RSS and every plugin process's RSS are
read, and the REST API is asked ``GET /ping`` (after reading RSS) to say in
the note whether it really served.  No rule runs.
"""

from __future__ import annotations

import os
import socket
import time
import urllib.request

from bench.harness import Run, install_benchplug, rss_mb
from bench.report import Row, limit_row, median

PLUGINS = 20
LOADER_GOAL_MB = 80
PLUGIN_GOAL_MB = 25


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pings(rest: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{rest}/ping", timeout=3) as response:
            return 200 <= response.status < 300
    except (OSError, ValueError):
        return False


def measure(run: Run) -> list[Row]:
    rest = f"127.0.0.1:{_free_port()}"
    loader = run.loader("l8", rest=rest, settle_ms=50)
    loader.start()
    time.sleep(0.5)
    empty_mb = rss_mb(loader.pid)
    mark = loader.mark()
    for index in range(1, PLUGINS + 1):
        name = f"idle{index:02d}"
        staged = install_benchplug(loader.plugins_dir, name, folder_name=f".stage-{name}", sources=[f"isrc{index}"])
        os.rename(staged, loader.plugins_dir / name)
    pids = [
        loader.wait_for("plugin.on_probation", timeout=60, since=mark, plugin=f"idle{i:02d}")["pid"]
        for i in range(1, PLUGINS + 1)
    ]
    time.sleep(1.0)
    loader_mb = rss_mb(loader.pid)
    plugin_mb = [rss_mb(pid) for pid in pids]
    placeholder = loader.find("api.unavailable")
    answering = _pings(rest)
    loader.stop()
    if placeholder:
        rest_note = f"REST on {rest}, but the API is still a placeholder (api.unavailable): no HTTP server counted"
    else:
        rest_note = f"REST on {rest}, " + ("answering GET /ping" if answering else "NOT answering GET /ping")
    return [
        limit_row(
            "memory.loader",
            "8",
            f"loader RSS, {PLUGINS} plugins loaded, REST on",
            loader_mb,
            "MB",
            LOADER_GOAL_MB,
            note=f"{rest_note}; {empty_mb:.1f} MB with no plugin",
        ),
        limit_row(
            "memory.plugin",
            "8",
            f"idle sdk plugin RSS, median of {PLUGINS}",
            median(plugin_mb),
            "MB",
            PLUGIN_GOAL_MB,
            samples=plugin_mb,
            note=f"max {max(plugin_mb):.1f} MB",
        ),
    ]
