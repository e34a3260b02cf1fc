"""Events reach journald with priority and fields, over a real unix datagram socket the test binds."""

from __future__ import annotations

import array
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path

import pytest

from loader.journal import JournalSocket, encode, entry_fields, stream_is_journal
from tests.loader_harness import REPO, make_plugin


def parse_entry(data: bytes) -> dict[str, str]:
    """Decode one native-protocol entry: ``NAME=value\\n`` or ``NAME\\n<le64 size><bytes>\\n``."""
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        end = data.index(b"\n", pos)
        line = data[pos:end]
        if b"=" in line:
            name, _, value = line.partition(b"=")
            fields[name.decode()] = value.decode()
            pos = end + 1
        else:
            (size,) = struct.unpack("<Q", data[end + 1 : end + 9])
            value = data[end + 9 : end + 9 + size]
            assert data[end + 9 + size : end + 10 + size] == b"\n", "binary field not terminated by a newline"
            fields[line.decode()] = value.decode()
            pos = end + 10 + size
    return fields


class FakeJournal:
    """journald's socket, played by the test: records every entry (datagram or memfd)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.entries: list[dict[str, str]] = []
        self.via_memfd = 0
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        fd_size = array.array("i").itemsize
        while not self._closed:
            try:
                data, ancillary, _flags, _addr = self.sock.recvmsg(1 << 20, socket.CMSG_SPACE(fd_size))
            except (TimeoutError, OSError):
                continue
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fd = array.array("i", payload[:fd_size])[0]
                    with os.fdopen(fd, "rb") as handle:  # journald maps it; the offset is the sender's
                        handle.seek(0)
                        data = handle.read()
                    self.via_memfd += 1
            with self._cond:
                self.entries.append(parse_entry(data))
                self._cond.notify_all()

    def wait_for(self, timeout: float = 15.0, **match: str) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for entry in self.entries:
                    if all(entry.get(k) == v for k, v in match.items()):
                        return entry
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no journal entry {match}; got {[e.get('EVENT') for e in self.entries]}")
                self._cond.wait(min(remaining, 0.2))

    def close(self) -> None:
        self._closed = True
        self._thread.join(1)
        self.sock.close()


@pytest.fixture
def journal(ipc_dir: Path):
    fake = FakeJournal(ipc_dir / "journal.sock")
    try:
        yield fake
    finally:
        fake.close()


def test_multi_line_values_use_the_binary_safe_form_and_round_trip():
    fields = {"MESSAGE": '{"event":"x"}', "TRACE": "line one\nline two\n", "EMPTY": ""}
    data = encode(fields)
    assert b"TRACE\n" + struct.pack("<Q", len("line one\nline two\n")) in data
    assert b'MESSAGE={"event":"x"}\n' in data
    assert parse_entry(data) == fields


def test_fields_carry_priority_and_the_event_keys():
    event = {"event": "plugin.exited", "plugin": "car", "version": "v1", "pid": 42, "rule": "", "symbol": None}
    fields = entry_fields(event, "error", '{"event":"plugin.exited"}')
    assert fields["PRIORITY"] == "3" and fields["EVENT"] == "plugin.exited" and fields["PLUGIN"] == "car"
    assert fields["PLUGIN_PID"] == "42" and fields["VERSION"] == "v1"
    assert "RULE" not in fields and "SYMBOL" not in fields and "_PID" not in fields
    assert entry_fields({"event": "e"}, "warning", "m")["PRIORITY"] == "4"
    assert entry_fields({"event": "e"}, "debug", "m")["PRIORITY"] == "7"


def test_journal_stream_must_match_the_stream_itself(tmp_path):
    with open(tmp_path / "out", "w") as out, open(tmp_path / "other", "w") as other:
        info = os.fstat(out.fileno())
        value = f"{info.st_dev}:{info.st_ino}"
        assert stream_is_journal(value, out.fileno())
        assert not stream_is_journal(value, other.fileno()), "an inherited JOURNAL_STREAM must not count"
        assert not stream_is_journal(None, out.fileno()) and not stream_is_journal("garbage", out.fileno())


def test_an_entry_too_large_for_a_datagram_goes_in_a_sealed_memfd(journal):
    sender = JournalSocket(str(journal.path))
    try:
        big = "x" * (1 << 19)
        assert sender.send({"MESSAGE": big, "EVENT": "big"})
    finally:
        sender.close()
    entry = journal.wait_for(EVENT="big")
    assert entry["MESSAGE"] == big and journal.via_memfd == 1


def start_under_journal(processes, tmp_path: Path, ipc_dir: Path, socket_path: Path, plugins: Path):
    """The loader with stdout a pipe whose dev:ino is in JOURNAL_STREAM, as systemd sets it up."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    config = data / "loader.yaml"
    config.write_text(
        f"plugins_dir: {plugins}\nipc_dir: {ipc_dir}\ndata_dir: {data}\nrest: 'off'\n"
        "log: {format: json, level: info}\nwatch: {settle_ms: 100, rescan_s: 1}\n"
        "updates: {probation_s: 0.1}\n"
    )
    read_end, write_end = os.pipe()
    info = os.fstat(write_end)
    env = dict(
        os.environ,
        PYTHONUNBUFFERED="1",
        JOURNAL_STREAM=f"{info.st_dev}:{info.st_ino}",
        PORTABLE_LOADER_JOURNAL_SOCKET=str(socket_path),
    )
    proc = processes.popen(
        [sys.executable, "-m", "loader", "serve", "--config", str(config)],
        stdout=write_end,
        stderr=write_end,
        cwd=REPO,
        env=env,
    )
    os.close(write_end)
    stdout = os.fdopen(read_end, "r")
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(stdout), daemon=True).start()
    return proc, lines


def test_loader_events_arrive_in_the_journal_with_fields(processes, tmp_path, ipc_dir, journal):
    plugins = tmp_path / "plugins"
    make_plugin(plugins, "car", behaviour={"crash_after_s": 0.3, "crash_code": 3})
    make_plugin(plugins, "bus", version="v2.1.0")
    proc, stdout_lines = start_under_journal(processes, tmp_path, ipc_dir, journal.path, plugins)
    exited = journal.wait_for(EVENT="plugin.exited", PLUGIN="car")
    assert exited["PRIORITY"] == "3" and exited["SYSLOG_IDENTIFIER"] == "portable-loader"
    message = json.loads(exited["MESSAGE"])  # MESSAGE is still the JSON line of the event
    assert message["event"] == "plugin.exited" and message["exit_code"] == 3
    assert exited["PLUGIN_PID"] == str(message["pid"]) and exited["VERSION"] == "v1.0.0"
    running = journal.wait_for(EVENT="plugin.running", PLUGIN="bus")
    assert running["PRIORITY"] == "6" and running["VERSION"] == "v2.1.0"
    assert journal.wait_for(EVENT="plugin.restarting", PLUGIN="car")["PRIORITY"] == "4"
    proc.send_signal(signal.SIGUSR1)
    dump = json.loads(journal.wait_for(EVENT="loader.stack_dump")["MESSAGE"])
    assert any(thread["thread"] == "MainThread" for thread in dump["threads"])
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    journal.wait_for(EVENT="loader.stopped")
    for entry in journal.entries:
        assert json.loads(entry["MESSAGE"])["event"] == entry["EVENT"]
    assert stdout_lines == [], "events went to the journal and to stdout"


def test_a_journal_socket_that_fails_falls_back_to_stdout(processes, tmp_path, ipc_dir):
    plugins = tmp_path / "plugins"
    make_plugin(plugins, "bus")
    proc, stdout_lines = start_under_journal(processes, tmp_path, ipc_dir, ipc_dir / "no-such.sock", plugins)
    deadline = time.monotonic() + 20
    while not any('"plugin.running"' in line for line in list(stdout_lines)) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    events = [json.loads(line)["event"] for line in stdout_lines]
    assert "plugin.running" in events and "loader.ready" in events
