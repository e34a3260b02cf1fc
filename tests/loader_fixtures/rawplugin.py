"""A minimal plugin on raw pynng, for exercising the supervisor.

It speaks only the control channel: handshake, keepalives, ``ok`` to every
command.  ``behaviour.json`` next to it switches on misbehaviours the tests
need: start slowly, crash after a delay, ignore SIGTERM, never send keepalives, declare a
different plugin name, print lines before exiting, write a file into its
working directory.
"""

import json
import os
import signal
import sys
import time
from pathlib import Path

import pynng

here = Path(__file__).resolve().parent
behaviour = {}
if (here / "behaviour.json").exists():
    behaviour = json.loads((here / "behaviour.json").read_text())

arg = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
ext = arg.get("portableLoader", {})
name = behaviour.get("declare_name") or ext.get("pluginName") or here.name
ipc_dir = ext.get("ipcDir", "/tmp")
keepalive_ms = ext.get("keepaliveMs", 5000)

print(f"rawplugin {name} pid {os.getpid()} dialing ipc://{ipc_dir}/plugin_{name}.ipc", flush=True)
for line in behaviour.get("print_lines", []):
    print(line, flush=True)
if "exit_code" in behaviour:
    sys.exit(behaviour["exit_code"])
if "start_delay_s" in behaviour:  # a slow start (heavy imports, a device to open) before the handshake
    time.sleep(behaviour["start_delay_s"])
if behaviour.get("ignore_sigterm"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

sock = pynng.Req0(recv_timeout=keepalive_ms if not behaviour.get("no_keepalive") else None, resend_time=0)
dial_deadline = time.monotonic() + behaviour.get("dial_timeout_s", 30)
while True:
    try:
        sock.dial(f"ipc://{ipc_dir}/plugin_{name}.ipc", block=True)
        break
    except pynng.NNGException:
        if time.monotonic() > dial_deadline:
            print("cannot dial the control channel, giving up", flush=True)
            sys.exit(0)
        time.sleep(0.1)
sock.send(b"handshake")
if "write_file" in behaviour:  # a plugin keeping state in its working directory
    Path(behaviour["write_file"]).write_text(f"written by pid {os.getpid()}\n")
crash_at = time.monotonic() + behaviour["crash_after_s"] if "crash_after_s" in behaviour else None
while True:
    if crash_at is not None and time.monotonic() >= crash_at:
        print("rawplugin crashing on purpose", file=sys.stderr, flush=True)
        os._exit(behaviour.get("crash_code", 7))
    try:
        sock.recv_timeout = 100 if crash_at else (keepalive_ms if not behaviour.get("no_keepalive") else -1)
        sock.recv()
        sock.send(b"ok")
    except pynng.Timeout:
        sock.send(b"handshake")
