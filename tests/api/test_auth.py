"""The optional bearer token: from the config file or PORTABLE_LOADER_TOKEN, on every route but /ping."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.api import start_api


@pytest.fixture
def dirs(tmp_path: Path, ipc_dir: Path) -> dict[str, Path]:
    (tmp_path / "plugins").mkdir()
    return {"plugins": tmp_path / "plugins", "data": tmp_path / "data", "ipc": ipc_dir}


ROUTES = [
    ("GET", "/rules"),
    ("GET", "/openapi.json"),
    ("GET", "/plugins/portables"),
    ("GET", "/sources"),
    ("GET", "/status"),
    ("POST", "/streams"),
    ("DELETE", "/plugins/portables/x"),
    ("GET", "/no/such/route"),
]


def check_enforced(api, token: str) -> None:
    assert api.call("GET", "/ping", token=None) == (200, None)
    for method, path in ROUTES:
        for sent in (None, "wrong-" + token, token.upper()):
            status, body = api.call(method, path, token=sent)
            assert status == 401, (method, path, sent, status)
            assert body["code"] == "unauthorized" and "Bearer" in body["message"]
    assert api.call("GET", "/rules", token=token) == (200, [])
    status, document = api.call("GET", "/openapi.json", token=token)
    assert status == 200 and document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert document["paths"]["/ping"]["get"]["security"] == []
    # Wrong requests with the token are judged on their merits, not as 401.
    assert api.call("POST", "/streams", {"sql": "nonsense"}, token=token)[0] == 400


def test_token_from_the_config_file(processes, dirs, monkeypatch):
    monkeypatch.delenv("PORTABLE_LOADER_TOKEN", raising=False)
    api = start_api(processes, dirs["plugins"], dirs["ipc"], dirs["data"], token="s3cret-Token")
    check_enforced(api, "s3cret-Token")
    assert api.loader.find("api.listening")[0]["token"] is True
    assert not any("s3cret" in line for line in api.loader.raw), "the token must never be logged"


def test_environment_overrides_the_config(processes, dirs, monkeypatch):
    monkeypatch.setenv("PORTABLE_LOADER_TOKEN", "from-env")
    api = start_api(processes, dirs["plugins"], dirs["ipc"], dirs["data"], token="from-file")
    assert api.call("GET", "/rules", token="from-file")[0] == 401
    check_enforced(api, "from-env")


def test_no_token_means_open_api(processes, dirs, monkeypatch):
    monkeypatch.delenv("PORTABLE_LOADER_TOKEN", raising=False)
    api = start_api(processes, dirs["plugins"], dirs["ipc"], dirs["data"])
    assert api.call("GET", "/rules", token=None) == (200, [])
    status, document = api.call("GET", "/openapi.json", token=None)
    assert status == 200 and "security" not in document
