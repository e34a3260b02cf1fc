"""Helpers for the REST API tests: a real loader with REST on a free port, plugin zips, HTTP calls."""

from __future__ import annotations

import io
import json
import socket
import stat
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.loader_process import LoaderProcess, start_loader

REPO = Path(__file__).resolve().parents[2]
RULES_FIXTURES = REPO / "tests" / "fixtures" / "rules"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Api:
    """A loader process with its REST address."""

    loader: LoaderProcess
    url: str
    token: str | None = None

    def call(
        self, method: str, path: str, body: Any = None, token: str | None = "default", timeout: float = 60.0
    ) -> tuple[int, Any]:
        """(status, body): JSON parsed (eKuiper's errors too, served as text), other text as a str, None if empty.

        Never raises on HTTP errors.
        """
        data = json.dumps(body).encode() if body is not None else None
        return self.send(method, path, data, "application/json", token, timeout)

    def upload(self, method: str, path: str, data: bytes, timeout: float = 60.0) -> tuple[int, Any]:
        """A plugin zip as the request body."""
        return self.send(method, path, data, "application/zip", "default", timeout)

    def send(
        self, method: str, path: str, data: bytes | None, content_type: str, token: str | None, timeout: float
    ) -> tuple[int, Any]:
        status, _headers, raw = self.exchange(method, path, data, content_type, token, timeout)
        return status, parse_body(raw)

    def exchange(
        self,
        method: str,
        path: str,
        data: bytes | None,
        content_type: str = "application/json",
        token: str | None = "default",
        timeout: float = 60.0,
    ) -> tuple[int, Any, bytes]:
        """(status, headers, raw body) of one request."""
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", content_type)
        token = self.token if token == "default" else token
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    def ok(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        status, data = self.call(method, path, body)
        assert status == expect, f"{method} {path}: {status} {data}"
        return data


def parse_body(raw: bytes) -> Any:
    """A body as the tests read it: JSON when it is JSON, else the text, None when empty."""
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", errors="replace")


def start_api(processes, plugins: Path, ipc: Path, data: Path, extra: str = "", token: str | None = None) -> Api:
    """Start the loader with REST on a free loopback port; returns once it listens."""
    port = free_port()
    config = f"rest: 127.0.0.1:{port}\n" + (f"rest_token: {token}\n" if token else "") + extra
    loader = start_loader(processes, plugins, ipc, data, extra_config=config)
    loader.wait_for("api.listening", timeout=10)
    return Api(loader, f"http://127.0.0.1:{port}", token)


def zip_bytes(
    files: dict[str, bytes | str], links: dict[str, str] | None = None, modes: dict[str, int] | None = None
) -> bytes:
    """A zip in memory: regular files (with optional modes) and symlink entries (name -> target)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | (modes or {}).get(name, 0o644)) << 16
            archive.writestr(info, content)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


def fixture_plugin_files(name: str, version: str = "v1.0.0", **symbols: list[str]) -> dict[str, bytes | str]:
    """The files of a plugin built from tests/fixtures/rules/<name>.py."""
    manifest = {"version": version, "language": "python", "executable": f"{name}.py", **symbols}
    return {f"{name}.json": json.dumps(manifest), f"{name}.py": (RULES_FIXTURES / f"{name}.py").read_bytes()}


def seqsrc_files(version: str = "v1.0.0") -> dict[str, bytes | str]:
    return fixture_plugin_files("seqsrc", version, sources=["seq"])


def collector_files(version: str = "v1.0.0") -> dict[str, bytes | str]:
    return fixture_plugin_files("collector", version, sinks=["collect"], functions=["revert"])


def write_zip(path: Path, files: dict[str, bytes | str], **kw: Any) -> str:
    """Write the zip and return its file:// URL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zip_bytes(files, **kw))
    return path.as_uri()
