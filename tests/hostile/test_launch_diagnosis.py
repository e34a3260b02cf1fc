"""Finding 20: a plugin that fails to start is explained as what it is.

Before, exit 126, exit 2 and a SyntaxError were all "the plugin program may
declare a different name", a directory as executable "does not exist", and
the status showed the old pid while the new process loaded.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from loader.plugins.diagnose import explain_no_handshake
from tests.hostile.helpers import assert_serving, snapshot
from tests.support.api import start_api
from tests.support.loader_process import make_plugin

LISTEN = Path("/run/pl/plugin_p.ipc")
EXE = Path("/plugins/p/main.py")
SYNTAX_TAIL = [
    "rawplugin p pid 1 dialing ipc:///tmp/plugin_p.ipc",
    '  File "/plugins/p/main.py", line 32',
    "    def f()",
    "           ^",
    "SyntaxError: expected ':'",
]


def explain(returncode, tail, outcome="process exited before the handshake (exit code 1)"):
    return explain_no_handshake(outcome, returncode, tail, "p", LISTEN, EXE)


def test_explanations_say_what_the_evidence_shows():
    syntax = explain(1, SYNTAX_TAIL)
    assert syntax.startswith("SyntaxError: expected ':' (main.py, line 32): the program failed before its handshake")
    traceback = [
        "Traceback (most recent call last):",
        '  File "/p/main.py", line 3, in <module>',
        "    import missing",
        "ModuleNotFoundError: No module named 'missing'",
    ]
    assert explain(1, traceback).startswith("ModuleNotFoundError: No module named 'missing' (main.py, line 3)")
    assert "could not be executed" in explain(126, ["setpriv: failed to execute x: Permission denied"])
    assert "a program was not found" in explain(127, ["setpriv: failed to execute x: No such file or directory"])
    usage = explain(2, ["python: can't open file 'x.py': [Errno 2] No such file or directory"])
    assert usage.endswith("its output: \"python: can't open file 'x.py': [Errno 2] No such file or directory\"")
    for text in (syntax, usage, explain(126, []), explain(127, [])):
        assert "different name" not in text
    other = explain(0, ["dialing ipc:///tmp/plugin_q.ipc"])
    assert "declares the name 'q', the folder is 'p'" in other
    assert "may declare a different name" in explain(None, [], "no handshake within 5s")


def _raw(folder: Path, text: str, mode: int = 0o755) -> None:
    (folder / "run.sh").write_text(text)
    (folder / "run.sh").chmod(mode)


def test_launch_failures_are_explained_and_others_keep_running(processes, tmp_path, ipc_dir):
    plugins = tmp_path / "plugins"
    make_plugin(plugins, "good")
    syntax = make_plugin(plugins, "syntax")
    (syntax / "main.py").write_text("import os\n\ndef broken()\n    pass\n")
    crash = make_plugin(plugins, "crash")  # compiles, fails while it runs: a traceback to explain
    (crash / "main.py").write_text("import os\n\nraise RuntimeError('no config')\n")
    _raw(make_plugin(plugins, "noexec", language="sh", executable="run.sh"), "#!/\n")
    _raw(make_plugin(plugins, "nointerp", language="sh", executable="run.sh"), "#!/nonexistent/interpreter\n")
    folder = make_plugin(plugins, "isdir", executable="code")
    (folder / "code").mkdir()
    before = snapshot(plugins)  # failing launches leave the plugins' folders as they are
    api = start_api(
        processes,
        plugins,
        ipc_dir,
        tmp_path / "data",
        extra="supervisor: {handshake_timeout_s: 5, restart_backoff_initial_s: 5}\n",
    )
    loader = api.loader
    # A syntax error is found before the program is started (loader/plugins/pycheck.py).
    invalid = loader.wait_for("plugin.invalid", plugin="syntax")["error"]
    assert "SyntaxError: expected ':' (main.py, line 3)" in invalid, invalid
    failed = loader.wait_for("plugin.start_failed", plugin="crash")["error"]
    assert failed.startswith(
        "RuntimeError: no config (main.py, line 3): the program failed before its handshake "
        "(process exited before the handshake (exit code 1))"
    ), failed
    failed = loader.wait_for("plugin.start_failed", plugin="noexec")["error"]
    assert "(exit code 126): the program could not be executed" in failed and "different name" not in failed
    failed = loader.wait_for("plugin.start_failed", plugin="nointerp")["error"]
    assert "(exit code 127): a program was not found: the interpreter on the #! line" in failed
    invalid = loader.wait_for("plugin.invalid", plugin="isdir")["error"]
    assert "executable 'code' is a directory, not a program" in invalid
    assert_serving(api, ["good"])
    assert snapshot(plugins) == before


SLOW_START = """
import sys, time, runpy
time.sleep(2)
sys.argv = [sys.argv[0].replace("slow.py", "main.py"), *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_status_never_shows_the_old_pid_while_the_new_one_loads(processes, tmp_path, ipc_dir):
    plugins = tmp_path / "plugins"
    folder = make_plugin(plugins, "p")
    api = start_api(processes, plugins, ipc_dir, tmp_path / "data")
    old_pid = api.loader.wait_for("plugin.running", plugin="p")["pid"]
    (folder / "slow.py").write_text(SLOW_START)
    manifest = json.loads((folder / "p.json").read_text())
    (folder / "p.json").write_text(json.dumps({**manifest, "version": "v2", "executable": "slow.py"}))
    seen: list[tuple[str, int | None]] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status = api.ok("GET", "/plugins/portables/p/status")
        seen.append((status["state"], status["pid"]))
        if status["state"] == "running" and status["version"] == "v2":
            break
        time.sleep(0.05)
    loading = [pid for state, pid in seen if state == "starting"]  # "loading" before the state machine
    assert loading, seen  # the poll saw the new version loading
    assert old_pid not in loading, seen
    new_pid = api.loader.wait_for("plugin.updated", plugin="p")["pid"]
    assert new_pid != old_pid and os.path.exists(f"/proc/{new_pid}")
