"""Finding 11: installs from a URL that trickles one byte every few seconds.

Each download has an overall deadline (not one per read) and runs in the
installs' own bounded pool, so rule admission (``asyncio.to_thread`` in the
default pool) never waits behind them.  The trickling server is on loopback
and stops by itself.
"""

from __future__ import annotations

import http.server
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.hostile.helpers import snapshot
from tests.hostile.survival import Bystander, assert_survived
from tests.support.api import collector_files, seqsrc_files, start_api, write_zip

DEADLINE_S = 2.0
WORKERS = 2
TRICKLE_EVERY_S = 1.5
SERVER_GIVES_UP_S = 30.0


class _Trickle(http.server.BaseHTTPRequestHandler):
    """``/body``: headers at once, then a byte of body every TRICKLE_EVERY_S; ``/headers``: the headers that slowly."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.connections += 1  # type: ignore[attr-defined]
        started = time.monotonic()
        try:
            if self.path == "/headers":
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                for byte in b"X-Slow: " + b"a" * 1000:
                    if time.monotonic() - started > SERVER_GIVES_UP_S:
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(TRICKLE_EVERY_S)
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            while time.monotonic() - started < SERVER_GIVES_UP_S:
                self.wfile.write(b"P")
                self.wfile.flush()
                time.sleep(TRICKLE_EVERY_S)
        except OSError:
            pass  # the loader hung up: what should happen
        finally:
            self.server.hung_up.append(time.monotonic() - started)  # type: ignore[attr-defined]

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def trickle():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    server.daemon_threads = True
    server.connections = 0  # type: ignore[attr-defined]
    server.hung_up = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_trickling_downloads_hit_the_deadline_and_never_block_rule_admission(processes, tmp_path, ipc_dir, trickle):
    server, base = trickle
    plugins, data, etc, zips = tmp_path / "plugins", tmp_path / "data", tmp_path / "etc", tmp_path / "zips"
    plugins.mkdir()
    (etc / "sources").mkdir(parents=True)
    (etc / "sources" / "seq.yaml").write_text("default:\n  count: 1000000\n  interval_ms: 5\n")
    api = start_api(
        processes,
        plugins,
        ipc_dir,
        data,
        extra=(f"etc_dir: {etc}\nlimits: {{download_timeout_s: {DEADLINE_S}, download_workers: {WORKERS}}}\n"),
    )
    bystander = Bystander.add(plugins, api.loader)
    for name, files in (("seqsrc", seqsrc_files()), ("collector", collector_files())):
        api.ok("POST", "/plugins/portables", {"name": name, "file": write_zip(zips / f"{name}.zip", files)}, expect=201)
    api.ok(
        "POST",
        "/streams",
        {"sql": 'CREATE STREAM demo () WITH (TYPE="seq", DATASOURCE="t", FORMAT="json")'},
        expect=201,
    )
    before = [snapshot(folder) for folder in (plugins, etc)]  # the failed installs must leave both as they are

    def install(index: int) -> tuple[int, dict, float]:
        started = time.monotonic()
        path = "/headers" if index == 0 else "/body"
        status, body = api.call("POST", "/plugins/portables", {"name": f"slow{index}", "file": base + path}, timeout=30)
        return status, body, time.monotonic() - started

    with ThreadPoolExecutor(7) as pool:
        installs = [pool.submit(install, i) for i in range(7)]
        assert _wait(lambda: server.connections >= WORKERS, 5), "the downloads did not start"
        # Rule admission validates the function call in the default thread pool: it must not wait.
        started = time.monotonic()
        rule = {"id": "admitted", "sql": "SELECT revert(name) AS r FROM demo", "actions": [{"nop": {}}]}
        created = api.ok("POST", "/rules", rule, expect=201)
        admission_s = time.monotonic() - started
        created_state = api.ok("GET", "/rules/admitted/status")["state"]
        results = [future.result() for future in installs]

    assert created == "Rule admitted was created successfully." and created_state == "running"
    assert admission_s < 1.5, admission_s
    timed_out = [r for r in results if r[0] == 400]
    busy = [r for r in results if r[0] == 503]
    assert len(timed_out) == WORKERS and len(busy) == 7 - WORKERS, [r[:2] for r in results]
    for _status, body, took in timed_out:
        assert body["code"] == "download_timeout" and "limits.download_timeout_s" in body["message"], body
        assert took < DEADLINE_S + 2.5, took
    for _status, body, took in busy:
        assert body["code"] == "busy" and "limits.download_workers" in body["message"] and took < 1.5, body
    assert _wait(lambda: len(server.hung_up) >= WORKERS, 2 * TRICKLE_EVERY_S + 2), (
        "the loader kept a trickling connection open"
    )
    # The server notices the hang-up on its second write after it (the first still fits the socket buffer).
    assert all(held < DEADLINE_S + 2 * TRICKLE_EVERY_S + 1 for held in server.hung_up), server.hung_up
    assert sorted(p.name for p in plugins.iterdir()) == ["bystander", "collector", "seqsrc"], "staging left behind"
    assert_survived(api.url, api.loader, bystander)
    assert [snapshot(folder) for folder in (plugins, etc)] == before


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
