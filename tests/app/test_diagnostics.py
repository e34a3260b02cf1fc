"""Uncaught exceptions, warnings, library log records and stack dumps are JSON events, never raw lines."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading

from loader.diagnostics import thread_stacks
from tests.support.loader_process import REPO, make_plugin, start_loader

FAULTS = r"""
import asyncio, gc, logging, threading, warnings
from loader.diagnostics import install_exception_hooks, install_loop_handler
from loader.log import configure_logging

configure_logging("json")
install_exception_hooks()

def worker():
    raise RuntimeError("thread went wrong\nsecond line")

thread = threading.Thread(target=worker, name="worker-1")
thread.start()
thread.join()

async def failing():
    raise ValueError("task went wrong")

async def main():
    install_loop_handler(asyncio.get_running_loop())
    task = asyncio.get_running_loop().create_task(failing(), name="orphan")
    await asyncio.sleep(0.05)
    del task  # never awaited: the loop reports it when the task is collected
    gc.collect()
    await asyncio.sleep(0)

asyncio.run(main())
warnings.warn("something is deprecated", DeprecationWarning, stacklevel=1)
logging.getLogger("some.library").error("library trouble")
raise KeyError("main went wrong")
"""


def test_uncaught_exceptions_warnings_and_library_logs_are_one_json_event_each():
    warnings_on = ["-W", "always"]
    result = subprocess.run(
        [sys.executable, *warnings_on, "-c", FAULTS], capture_output=True, text=True, cwd=REPO, timeout=30
    )
    assert result.returncode == 1
    lines = (result.stdout + result.stderr).splitlines()
    events = [json.loads(line) for line in lines]  # every line is JSON: no raw traceback text
    by_name = {event["event"]: event for event in events}
    thread = by_name["loader.thread_exception"]
    assert thread["thread"] == "worker-1" and thread["level"] == "error"
    assert "RuntimeError: thread went wrong" in thread["exception"] and "in worker" in thread["exception"]
    task = by_name["loader.task_exception"]
    assert task["task"] == "orphan" and "ValueError: task went wrong" in task["exception"]
    assert by_name["loader.python_warning"]["category"] == "DeprecationWarning"
    library = by_name["loader.library_log"]
    assert library["logger"] == "some.library" and library["message"] == "library trouble"
    main = by_name["loader.uncaught_exception"]
    assert main["level"] == "critical" and "KeyError: 'main went wrong'" in main["exception"]
    assert len(lines) == 5


def test_thread_stacks_name_every_thread_outermost_call_first():
    started, release = threading.Event(), threading.Event()

    def parked() -> None:
        started.set()
        release.wait()

    thread = threading.Thread(target=parked, name="parked-thread")
    thread.start()
    try:
        started.wait(5)
        stacks = thread_stacks(sys._current_frames(), threading.enumerate())
    finally:
        release.set()
        thread.join()
    parked_stack = next(s for s in stacks if s["thread"] == "parked-thread")
    frames = parked_stack["stack"]
    parked_at = next(i for i, frame in enumerate(frames) if " in parked: release.wait()" in frame)
    assert "in _bootstrap" in frames[0] and "in wait" in frames[-1] and 0 < parked_at < len(frames) - 1


def test_sigusr1_logs_one_stack_dump_event_and_only_json_lines(processes, tmp_path, ipc_dir):
    plugins = tmp_path / "plugins"
    make_plugin(plugins, "car")
    loader = start_loader(processes, plugins, ipc_dir, tmp_path / "data")
    loader.wait_for("plugin.running", plugin="car")
    loader.proc.send_signal(signal.SIGUSR1)
    dump = loader.wait_for("loader.stack_dump")
    names = {thread["thread"] for thread in dump["threads"]}
    assert "MainThread" in names and dump["thread_count"] == len(dump["threads"]) >= 2
    main = next(t for t in dump["threads"] if t["thread"] == "MainThread")
    # The event loop's frames, or, when the signal lands while a task runs, that coroutine's own
    # frames (a task's coroutine has no Python caller frame): the loader's code either way.
    assert any("/loader/" in frame or "asyncio" in frame for frame in main["stack"]), main["stack"]
    assert loader.terminate() == 0
    for line in loader.raw:  # stdout and stderr together, as journald gets them
        json.loads(line)
