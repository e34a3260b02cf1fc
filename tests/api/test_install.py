"""REST install and update: hostile zips, bad names, broken plugins, conflicts; a real loader each time.

Every refusal must be a 400 in eKuiper's words, naming the entry, must leave nothing in
the plugins folder (no staging left-overs) and nothing outside it.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import zipfile

import pytest

from tests.support.api import Api, collector_files, free_port, seqsrc_files, start_api, write_zip, zip_bytes
from tests.support.loader_process import REPO, LoaderProcess, pid_alive


@pytest.fixture
def api(processes, env):
    # 0.25 MiB: small enough to test the limit cheaply.
    return start_api(
        processes, env["plugins"], env["ipc"], env["data"], extra=f"etc_dir: {env['etc']}\nrest_max_upload_mb: 0.25\n"
    )


def refused(api, env, name: str, files: dict, status: int = 400, **kw) -> dict:
    url = write_zip(env["zips"] / f"{name}-{len(os.listdir(env['zips']))}.zip", files, **kw)
    code, body = api.call("POST", "/plugins/portables", {"name": name, "file": url})
    assert code == status, body
    assert set(body) == {"error", "message", "code"} and body["error"] == 1000
    assert body["message"].startswith("portable plugin create command error: "), body
    assert list(env["plugins"].iterdir()) == [], "something was left in the plugins folder"
    return body


def test_hostile_archives_are_refused_naming_the_entry(api, env, tmp_path):
    good = seqsrc_files()

    body = refused(api, env, "seqsrc", {**good, "../escaped.py": "x"})
    assert body["code"] == "path_traversal" and "'../escaped.py'" in body["message"]
    body = refused(api, env, "seqsrc", {**good, "lib/../../escaped.py": "x"})
    assert body["code"] == "path_traversal" and "lib/../../escaped.py" in body["message"]
    assert not (tmp_path / "escaped.py").exists() and not (env["plugins"] / "escaped.py").exists()

    outside = tmp_path / "absolute-target"
    body = refused(api, env, "seqsrc", {**good, str(outside): "x"})
    assert body["code"] == "absolute_path" and str(outside) in body["message"]
    assert not outside.exists()

    body = refused(api, env, "seqsrc", good, links={"secret": "/etc/passwd"})
    assert body["code"] == "link_out" and "'secret'" in body["message"]
    body = refused(api, env, "seqsrc", good, links={"sub/up": "../../../outside"})
    assert body["code"] == "link_out" and "'sub/up'" in body["message"]
    # A link that stays inside lexically but escapes through another link.
    body = refused(api, env, "seqsrc", good, links={"here": "seqsrc.py", "a/self": "..", "a/b": "self/../x"})
    assert body["code"] in ("link_out", "link_to_directory")
    body = refused(api, env, "seqsrc", good, links={"loop": "."})
    assert body["code"] == "link_to_directory" and "'loop'" in body["message"]
    body = refused(api, env, "seqsrc", {**good, "lnk/x.py": "x"}, links={"lnk": "seqsrc.py"})
    assert "'lnk/x.py'" in body["message"]

    big = os.urandom(300 * 1024)  # incompressible: the archive itself is over 0.25 MiB
    body = refused(api, env, "seqsrc", {**good, "blob.bin": big})
    assert body["code"] == "archive_too_large" and "rest_max_upload_mb" in body["message"]
    bomb = b"\0" * (2 * 1024 * 1024)  # a few KiB zipped, 2 MiB unpacked
    body = refused(api, env, "seqsrc", {**good, "bomb.bin": bomb})
    assert body["code"] == "archive_too_large" and "bomb.bin" in body["message"]

    body = refused(api, env, "bad name!", good)
    assert body["code"] == "bad_name" and "invalid name bad name!: use 1 to 64" in body["message"]
    body = refused(api, env, "seqsrc", {**good, "sources/bad name.yaml": "default: {}"})
    assert body["code"] == "bad_name" and "sources/bad name.yaml" in body["message"]
    body = refused(api, env, "seqsrc", {**good, "sub\\evil.py": "x"})
    assert body["code"] == "bad_entry_name"

    # The loader's own folder checks, with the file and field named.
    manifest = '{"version": "v1", "language": "python", "executable": "seqsrc.py", "sources": ["seq"], "name": "x"}'
    body = refused(api, env, "seqsrc", {**good, "seqsrc.json": manifest})
    assert body["code"] == "invalid_plugin" and "seqsrc/seqsrc.json at /name" in body["message"]
    body = refused(api, env, "seqsrc", {"seqsrc.py": good["seqsrc.py"]})
    assert body["code"] == "invalid_plugin" and "manifest file is missing" in body["message"]
    body = refused(api, env, "other", good)  # the manifest file must be named after the plugin
    assert body["code"] == "invalid_plugin"

    (env["zips"] / "junk.zip").write_bytes(b"not a zip at all")
    status, body = api.call(
        "POST", "/plugins/portables", {"name": "seqsrc", "file": (env["zips"] / "junk.zip").as_uri()}
    )
    assert status == 400 and body["code"] == "bad_archive"
    for url in ("ftp://example.invalid/x.zip", "relative/x.zip", (env["zips"] / "missing.zip").as_uri()):
        status, body = api.call("POST", "/plugins/portables", {"name": "seqsrc", "file": url})
        assert status == 400 and body["code"] in ("bad_url", "download_failed"), (url, body)
    for payload in ({"name": "seqsrc"}, {"file": "file:///x.zip"}, ["seqsrc"], {"name": 5, "file": "file:///x"}):
        assert api.call("POST", "/plugins/portables", payload)[0] == 400, payload

    assert not (env["etc"] / "sources").exists(), "a refused install wrote configuration"
    assert api.ok("GET", "/plugins/portables") == []


def test_http_download_top_folder_and_modes(api, env):
    files = {f"seqsrc/{k}": v for k, v in seqsrc_files().items()}
    files["seqsrc/tool.sh"] = "#!/bin/sh\n"
    (env["zips"] / "served.zip").write_bytes(zip_bytes(files, modes={"seqsrc/tool.sh": 0o4755}))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: Quiet(*a, directory=str(env["zips"])))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        status, body = api.call("POST", "/plugins/portables", {"name": "seqsrc", "file": f"{base}/nothing.zip"})
        assert status == 400 and body["code"] == "download_failed" and "404" in body["message"]
        api.ok("POST", "/plugins/portables", {"name": "seqsrc", "file": f"{base}/served.zip"}, expect=201)
    finally:
        server.shutdown()
        server.server_close()
    assert api.ok("GET", "/plugins/portables/seqsrc/status")["state"] == "running"
    mode = (env["plugins"] / "seqsrc" / "tool.sh").stat().st_mode
    assert mode & 0o777 == 0o755, "executable bit kept, setuid dropped"


def test_failed_start_is_rolled_back_and_failed_update_keeps_the_old_version(api, env):
    crash = {"seqsrc.json": seqsrc_files()["seqsrc.json"], "seqsrc.py": "import sys\nsys.exit(3)\n"}
    status, body = api.call(
        "POST", "/plugins/portables", {"name": "seqsrc", "file": write_zip(env["zips"] / "crash.zip", crash)}
    )
    assert status == 400 and body["code"] == "plugin_failed"
    assert "exited before the handshake" in body["message"] and "removed again" in body["message"]
    assert list(env["plugins"].iterdir()) == []
    assert api.call("GET", "/plugins/portables/seqsrc/status")[0] == 404

    api.ok(
        "POST",
        "/plugins/portables",
        {"name": "seqsrc", "file": write_zip(env["zips"] / "good.zip", seqsrc_files())},
        expect=201,
    )
    running = api.ok("GET", "/plugins/portables/seqsrc/status")
    assert running["state"] == "running" and running["version"] == "v1.0.0"
    status, body = api.call(
        "POST", "/plugins/portables", {"name": "seqsrc", "file": write_zip(env["zips"] / "again.zip", seqsrc_files())}
    )
    assert status == 400 and body["code"] == "exists"
    assert body["message"] == "portable plugin create command error: invalid name seqsrc: duplicate"

    crash2 = {"seqsrc.json": seqsrc_files("v2.0.0")["seqsrc.json"], "seqsrc.py": "import sys\nsys.exit(3)\n"}
    status, body = api.call("PUT", "/plugins/portables/seqsrc", {"file": write_zip(env["zips"] / "crash2.zip", crash2)})
    assert status == 400 and body["code"] == "plugin_failed" and "previous version v1.0.0" in body["message"]
    restored = api.ok("GET", "/plugins/portables/seqsrc/status")
    assert restored["state"] == "running" and restored["version"] == "v1.0.0" and pid_alive(restored["pid"])
    assert restored["pid"] != running["pid"], "the old version was restarted after the failed swap"
    assert (env["plugins"] / "seqsrc" / "seqsrc.py").read_text() == seqsrc_files()["seqsrc.py"].decode()

    invalid = {"seqsrc.json": '{"version": 1}', "seqsrc.py": "x"}
    status, body = api.call(
        "PUT", "/plugins/portables/seqsrc", {"file": write_zip(env["zips"] / "invalid.zip", invalid)}
    )
    assert status == 400 and body["code"] == "invalid_plugin"
    assert api.ok("GET", "/plugins/portables/seqsrc/status")["pid"] == restored["pid"], "the old version was touched"

    # The collector's function name is free, but a second plugin cannot claim seqsrc's source.
    thief = dict(collector_files())
    thief["collector.json"] = thief["collector.json"].replace('"sinks"', '"sources": ["seq"], "sinks"')
    status, body = api.call(
        "POST", "/plugins/portables", {"name": "collector", "file": write_zip(env["zips"] / "thief.zip", thief)}
    )
    assert status == 400 and body["code"] == "symbol_conflict" and "seqsrc" in body["message"]

    # An update of a plugin that is not there installs it, as eKuiper's does: here refused, the zip is seqsrc.
    status, body = api.call("PUT", "/plugins/portables/nosuch", {"file": (env["zips"] / "good.zip").as_uri()})
    assert status == 400 and body["code"] == "invalid_plugin" and "nosuch.json" in body["message"]
    assert body["message"].startswith("portable plugin update command error: ")
    assert api.call("PUT", "/plugins/portables/seqsrc", {"name": "other", "file": "file:///x.zip"})[0] == 400
    assert api.call("DELETE", "/plugins/portables/nosuch") == (
        400,
        {
            "error": 1000,
            "message": "delete portable plugin nosuch error: portable plugin nosuch is not found",
            "code": "not_found",
        },
    )
    assert sorted(p.name for p in env["plugins"].iterdir()) == ["seqsrc"]


def test_upload_in_the_body_gets_the_same_checks_as_a_url(api, env):
    code, body = api.upload("POST", "/plugins/portables?name=seqsrc", zip_bytes({**seqsrc_files(), "../x.py": "x"}))
    assert code == 400 and body["code"] == "path_traversal" and "'../x.py'" in body["message"]
    big = zip_bytes({**seqsrc_files(), "blob.bin": os.urandom(300 * 1024)})
    code, body = api.upload("POST", "/plugins/portables?name=seqsrc", big)
    assert code == 400 and body["code"] == "archive_too_large" and "rest_max_upload_mb" in body["message"]
    code, body = api.upload("POST", "/plugins/portables", zip_bytes(seqsrc_files()))
    assert code == 400 and body["code"] == "bad_name"
    code, body = api.upload("POST", "/plugins/portables?name=seqsrc", b"not a zip")
    assert code == 400 and body["code"] == "bad_archive"
    assert body["message"].startswith("portable plugin create command error: the file is not a readable zip")
    assert list(env["plugins"].iterdir()) == [], "an upload or staging folder was left behind"
    code, body = api.upload("POST", "/plugins/portables?name=seqsrc", zip_bytes(seqsrc_files()))
    assert (code, body) == (201, "portable plugin seqsrc is created")
    assert api.ok("GET", "/plugins/portables/seqsrc/status")["state"] == "running"
    code, body = api.upload("PUT", "/plugins/portables/seqsrc", zip_bytes(seqsrc_files("v1.1.0")))
    assert (code, body) == (200, "portable plugin seqsrc is updated")
    assert api.ok("GET", "/plugins/portables/seqsrc/status")["version"] == "v1.1.0"
    assert api.loader.find("api.plugin_installing", plugin="seqsrc")[0]["url"].startswith("upload of ")
    # An update of a plugin that is not there installs it, as eKuiper's does.
    code, body = api.upload("PUT", "/plugins/portables/collector", zip_bytes(collector_files()))
    assert (code, body) == (200, "portable plugin collector is updated")
    assert api.ok("GET", "/plugins/portables/collector/status")["state"] == "running"
    assert sorted(p.name for p in env["plugins"].iterdir()) == ["collector", "seqsrc"]


def test_storage_errors_name_the_path_and_the_fix():
    import errno

    from loader.api.errors import storage_error

    full = storage_error(OSError(errno.ENOSPC, "No space left on device", "/var/lib/x/plugins/.upload-1.zip"))
    assert full.status == 507 and full.code == "disk_full" and "/var/lib/x/plugins/.upload-1.zip" in full.message
    denied = storage_error(PermissionError(errno.EACCES, "Permission denied", "/etc/portable-loader/sources"))
    assert denied.status == 503 and denied.code == "not_writable"
    assert "make /etc/portable-loader writable" in denied.message and "chown" in denied.message
    assert storage_error(OSError(errno.ENOENT, "No such file", "/x")) is None


def test_read_only_etc_dir_answers_503_naming_it_and_leaves_nothing(processes, env, tmp_path):
    """The loader in a private mount namespace where etc_dir is bind-mounted read-only."""
    port = free_port()
    data = env["data"]
    data.mkdir()
    config = data / "loader.yaml"
    config.write_text(
        f"plugins_dir: {env['plugins']}\nipc_dir: {env['ipc']}\ndata_dir: {data}\n"
        f"etc_dir: {env['etc']}\nrest: 127.0.0.1:{port}\nlog: {{format: json, level: info}}\n"
    )
    script = 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" "$1" && shift && exec "$@"'
    proc = processes.popen(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            str(env["etc"]),
            sys.executable,
            "-m",
            "loader",
            "serve",
            "--config",
            str(config),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    loader = LoaderProcess(proc)
    threading.Thread(target=loader._read, daemon=True).start()
    loader.wait_for("api.listening", timeout=20)
    api = Api(loader, f"http://127.0.0.1:{port}")
    files = {**seqsrc_files(), "sources/seq.yaml": "default:\n  count: 1\n"}
    code, body = api.upload("POST", "/plugins/portables?name=seqsrc", zip_bytes(files))
    assert code == 503 and body["code"] == "read_only", body
    assert str(env["etc"] / "sources") in body["message"] and "ReadWritePaths=" in body["message"]
    assert list(env["plugins"].iterdir()) == []
    loader.wait_for("api.storage_error", timeout=5)  # the answer can arrive before the log line is read
    assert not loader.find("api.internal_error")
    code, body = api.upload("POST", "/plugins/portables?name=collector", zip_bytes(collector_files()))
    assert code == 201, body  # a plugin that writes nothing to etc_dir still installs


def test_entries_without_mode_bits_install_and_the_executable_is_runnable(tmp_path):
    """eKuiper accepts zips that store no Unix attributes (made on Windows, say); so do we:
    their files get 0644, and the manifest's executable 0755 so a compiled plugin can run."""
    from loader.install.archive import extract

    archive = tmp_path / "modeless.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in {
            "gomirror.json": '{"version": "v1", "language": "go", "executable": "./bin/mirror", "sources": ["random"]}',
            "bin/mirror": "\x7fELF",
            "sources/random.yaml": "default: {}\n",
        }.items():
            info = zipfile.ZipInfo(name)
            info.create_system = 0  # made on Windows: MS-DOS attributes only ("archive"), no Unix mode
            info.external_attr = 0x20
            zf.writestr(info, data)
        info = zipfile.ZipInfo("lib/helper.txt")  # Python's writestr stores 0600 without a file type
        zf.writestr(info, "x")
    dest = tmp_path / "gomirror"
    dest.mkdir()
    extract(archive, dest, "gomirror", 1 << 20)
    assert (dest / "bin" / "mirror").stat().st_mode & 0o777 == 0o755
    assert (dest / "sources" / "random.yaml").stat().st_mode & 0o777 == 0o644
    assert (dest / "gomirror.json").stat().st_mode & 0o777 == 0o644
    assert (dest / "lib" / "helper.txt").stat().st_mode & 0o777 == 0o600


def test_an_entry_typed_as_a_fifo_or_device_is_refused(tmp_path):
    import stat

    from loader.install.archive import ArchiveError, extract

    for kind in (stat.S_IFIFO, stat.S_IFCHR, stat.S_IFSOCK):
        archive = tmp_path / "typed.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("p.json", "{}")
            info = zipfile.ZipInfo("pipe")
            info.external_attr = (kind | 0o644) << 16
            zf.writestr(info, "")
        dest = tmp_path / f"p{kind}"
        dest.mkdir()
        with pytest.raises(ArchiveError) as caught:
            extract(archive, dest, "p", 1 << 20)
        assert caught.value.code == "bad_entry_type" and "'pipe'" in str(caught.value)
