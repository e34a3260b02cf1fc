"""Finding 10: 1,100 slow loopback connections that never finish their headers.

They used to take every file descriptor of a loader limited to 1,024 (a
killed plugin could not restart: "Too many open files") and flood the log
with accept tracebacks.  Now the REST server keeps at most
``limits.rest_max_connections`` connections (a new one closes the oldest
that has not sent a whole request) and closes a connection whose headers
are not complete within ``limits.rest_header_timeout_s``.  The loop is
bounded, loopback only, and the test closes every socket it opened.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import time

from tests.hostile.helpers import snapshot
from tests.hostile.survival import Bystander, assert_survived, ping_within
from tests.support.api import free_port
from tests.support.loader_process import make_plugin, start_loader

SLOW_CLIENTS = 1100
MAX_CONNECTIONS = 64
HEADER_TIMEOUT_S = 2.0
LOADER_FDS = 1024


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_slow_clients_neither_exhaust_descriptors_nor_stop_a_plugin_restart(processes, tmp_path, ipc_dir):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard >= SLOW_CLIENTS + 200, f"the test itself needs {SLOW_CLIENTS + 200} descriptors (hard limit {hard})"
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, SLOW_CLIENTS + 200), hard))
    plugins, data = tmp_path / "plugins", tmp_path / "data"
    plugins.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    loader = start_loader(
        processes,
        plugins,
        ipc_dir,
        data,
        wrapper=["prlimit", f"--nofile={LOADER_FDS}:{LOADER_FDS}"],
        log_level="info",  # the log volume is measured at the level a device runs
        extra_config=(
            f"rest: 127.0.0.1:{port}\n"
            f"limits: {{rest_max_connections: {MAX_CONNECTIONS}, "
            f"rest_header_timeout_s: {HEADER_TIMEOUT_S}, rest_body_timeout_s: {HEADER_TIMEOUT_S}}}\n"
        ),
    )
    loader.wait_for("api.listening")
    bystander = Bystander.add(plugins, loader)
    make_plugin(plugins, "victim")
    victim = loader.wait_for("plugin.running", timeout=20, plugin="victim")
    lines_before = len(loader.raw)
    before = snapshot(plugins)

    clients: list[socket.socket] = []
    peak_fds = 0
    try:
        for index in range(SLOW_CLIENTS):
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
            client.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never the blank line that ends it
            clients.append(client)
            if index % 100 == 0:
                peak_fds = max(peak_fds, _fds(loader.proc.pid))
        peak_fds = max(peak_fds, _fds(loader.proc.pid))

        # While the slow clients still hold their sockets: a killed plugin comes back, /ping answers.
        os.kill(victim["pid"], signal.SIGKILL)
        restarted = loader.wait_for("plugin.running", timeout=20, count=2, plugin="victim")
        assert restarted["pid"] != victim["pid"]
        ping_within(url)
        assert peak_fds < 4 * MAX_CONNECTIONS + 100, f"the loader had {peak_fds} descriptors open"

        # The ones the limit kept are closed once their header time is up.
        time.sleep(HEADER_TIMEOUT_S + 1)
        kept = clients[-MAX_CONNECTIONS // 2 :]
        for client in kept:
            client.settimeout(2)
            assert client.recv(1024) in (b"",), "a connection without complete headers was kept open"
    finally:
        for client in clients:
            client.close()

    # A body that stops coming is cut off too.
    with socket.create_connection(("127.0.0.1", port), timeout=HEADER_TIMEOUT_S + 3) as client:
        client.sendall(
            b"POST /rules HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"id": '
        )
        started = time.monotonic()
        answer = client.recv(4096)
        assert answer == b"" or b"400" in answer.split(b"\r\n")[0], answer
        assert time.monotonic() - started < HEADER_TIMEOUT_S + 2

    new_lines = loader.raw[lines_before:]
    assert not any("Too many open files" in line for line in new_lines)
    assert not loader.find("loader.task_exception")
    limited = loader.find("api.connections_limited")
    assert limited and limited[0]["closed"].get("evicted", 0) > 0, limited
    assert len(new_lines) < 60, f"{len(new_lines)} log lines during the attack"
    assert_survived(url, loader, bystander)
    assert snapshot(plugins) == before
