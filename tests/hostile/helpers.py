"""What the hostile-input tests share: deep JSON, raw HTTP, and the "still serving" property."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.api import Api

DEEP = 50_000


def deep_json(depth: int = DEEP) -> str:
    """Valid JSON nested ``depth`` arrays deep: what made the parser raise RecursionError."""
    return "[" * depth + "]" * depth


def raw_call(api: Api, method: str, path: str, body: bytes) -> tuple[int, dict | None]:
    """An HTTP call with a body json.dumps could not even write."""
    request = urllib.request.Request(
        api.url + path, data=body, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    return status, (json.loads(raw) if raw.strip() else None)


def assert_serving(api: Api, running: list[str]) -> None:
    """The loader answers /ping within a second and every plugin in ``running`` serves.

    A plugin serves from its handshake on: on probation, then running.
    """
    started = time.monotonic()
    assert api.call("GET", "/ping", timeout=1.0)[0] == 200
    assert time.monotonic() - started < 1.0
    for name in running:
        assert api.ok("GET", f"/plugins/portables/{name}/status")["state"] in ("probation", "running"), name


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every regular file under ``folder`` with its bytes: nothing on disk changed that should not have."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }
