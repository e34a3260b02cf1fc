"""Events reach journald with priority and fields, over a real unix datagram socket the test binds."""

from __future__ import annotations

import json
import os
import signal
import struct
import time
from pathlib import Path

import pytest

from loader.journal import JournalSocket, encode, entry_fields, stream_is_journal
from tests.support.journal import FakeJournal, parse_entry, start_under_journal
from tests.support.loader_process import make_plugin


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
