"""Figure 1: the raw nng ceilings every throughput figure is compared with.

- A: raw PUSH/PULL between two processes, one 75-byte record envelope per
  send; the peer (bench/plugins/rawpeer.py) sends precomputed bytes and this
  process receives without decoding.
- B: raw REQ/REP round trips between two processes, in the direction of a
  function channel: this process holds the REP end and sends a constant call
  as each reply, the peer's REQ answers with a constant result.

Each measurement spawns its peer (``subprocess``, never ``fork``: nng is not
fork-safe), waits for traffic, lets it warm up, counts for the window, then
kills the peer by pid.  Other benchmarks call ``push_pull`` and ``req_rep``
inside their own interleaved rounds, so every ratio compares figures taken
minutes, not hours, apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pynng

from bench.harness import PYTHON, RAWPEER, BenchError, Run
from bench.report import Row, info_row, interleave, median
from sdk.protocol.ipc_listen import IpcPullListener

CEILING_A = "A raw PUSH/PULL"
CEILING_B = "B raw REQ/REP"
RELAY = "raw relay"
WIRE = "raw wire PUSH"

#: What the host sends on a function channel for one call (the shape of an ``Exec``).
CALL = (
    b'{"func":"Exec","arg":[100000,'
    b'"{\\"ruleId\\":\\"r\\",\\"opId\\":\\"project\\",\\"instanceId\\":0,\\"funcId\\":0}"]}'
)


def count_rate(step: Callable[[], object], warmup_s: float, window_s: float, batch: int = 64) -> float:
    """Operations per second of ``step``: once traffic flows, after ``warmup_s``, over about ``window_s``."""
    step()
    warm_until = time.monotonic() + warmup_s
    while time.monotonic() < warm_until:
        for _ in range(batch):
            step()
    done = 0
    started = time.monotonic()
    end = started + window_s
    while True:
        for _ in range(batch):
            step()
        done += batch
        now = time.monotonic()
        if now >= end:
            return done / (now - started)


#: How long a raw peer may take to start and send its first message (a loaded machine starts Python slowly).
PEER_START_S = 30.0


def _first_message(sock: pynng.Socket, peers: list, run: Run) -> None:
    """Wait for the peers' first message on a pynng socket (see ``_await_first``)."""

    def received() -> bool:
        try:
            sock.recv()
            return True
        except pynng.Timeout:
            return False

    steady = sock.recv_timeout
    sock.recv_timeout = 200
    try:
        _await_first(received, peers, run)
    finally:
        sock.recv_timeout = steady


def _await_first(received: Callable[[], bool], peers: list, run: Run) -> None:
    """Wait for the peers' first message, separately from the steady-state timeout of the measurement.

    ``received`` tries for a short while and says whether a message came.
    Raises BenchError naming the cause: a peer that exited, or one that
    started but never sent within ``PEER_START_S``.
    """
    deadline = time.monotonic() + PEER_START_S
    while not received():
        exited = [p for p in peers if p.poll() is not None]
        if exited or time.monotonic() > deadline:
            log = (run.root / "rawpeer.log").read_text(errors="replace")[-2000:]
            why = (
                f"raw peer {exited[0].args[2]} exited with status {exited[0].returncode}"
                if exited
                else f"no message from the raw peers within {PEER_START_S:g}s of their start"
            )
            raise BenchError(f"{why}; rawpeer.log: {log or '(empty)'}")


def _peer(run: Run, mode: str, *paths: Path):
    seconds = run.warmup_s + run.window_s + 10
    log = open(run.root / "rawpeer.log", "ab")
    try:
        return run.processes.popen(
            [PYTHON, RAWPEER, mode, *(f"ipc://{p}" for p in paths), seconds], stdout=log, stderr=log
        )
    finally:
        log.close()


def push_pull(run: Run, ipc_dir: Path) -> float:
    """Ceiling A, messages/s."""
    path = ipc_dir / "ceil_a.ipc"
    sock = pynng.Pull0(recv_timeout=5000, recv_max_size=0)
    sock.listen(f"ipc://{path}")
    peer = None
    try:
        peer = _peer(run, "push", path)
        _first_message(sock, [peer], run)
        return count_rate(sock.recv, run.warmup_s, run.window_s)
    finally:
        if peer is not None:
            run.processes.kill(peer)
        sock.close()
        path.unlink(missing_ok=True)


def wire_push(run: Run, ipc_dir: Path) -> float:
    """Diagnostic for figure 2, messages/s: ceiling A's records sent through the sdk's own dialer instead
    of pynng's PUSH, received by the loader's listener (sdk/protocol/ipc_listen.py), not decoded.

    The sdk source sends with that dialer and the loader receives with that
    listener, so this is the bare transport an sdk source runs on; ceiling A
    stays pynng on both ends, what a plugin and host built on pynng reach.
    """
    path = ipc_dir / "ceil_w.ipc"
    listener = IpcPullListener(path)
    peer = None
    try:
        peer = _peer(run, "wirepush", path)
        _await_first(lambda: listener.recv(0.2) is not None, [peer], run)
        recv = listener.recv
        return count_rate(lambda: recv(5.0), run.warmup_s, run.window_s)
    finally:
        if peer is not None:
            run.processes.kill(peer)
        listener.close()
        path.unlink(missing_ok=True)


def relay(run: Run, ipc_dir: Path) -> float:
    """Diagnostic for figure 3, messages/s: the raw pusher into a raw relay process into this process.

    The shape of source plugin -> loader -> sink plugin (three processes, one
    nng message in and one out per record) with nothing done per record: the
    most any host relaying one message per record can reach on this machine.
    """
    into, out = ipc_dir / "relay_in.ipc", ipc_dir / "relay_out.ipc"
    sock = pynng.Pull0(recv_timeout=5000, recv_max_size=0)
    sock.listen(f"ipc://{out}")
    peers = []
    try:
        peers.append(_peer(run, "relay", into, out))
        peers.append(_peer(run, "push", into))
        _first_message(sock, peers, run)
        return count_rate(sock.recv, run.warmup_s, run.window_s)
    finally:
        for peer in reversed(peers):
            run.processes.kill(peer)
        sock.close()
        for path in (into, out):
            path.unlink(missing_ok=True)


def req_rep(run: Run, ipc_dir: Path) -> float:
    """Ceiling B, round trips/s."""
    path = ipc_dir / "ceil_b.ipc"
    sock = pynng.Rep0(recv_timeout=5000, send_timeout=5000, recv_max_size=0)
    sock.listen(f"ipc://{path}")
    peer = None
    try:
        peer = _peer(run, "req", path)
        _first_message(sock, [peer], run)  # the peer's handshake: from now on we hold a reply slot
        send, recv = sock.send, sock.recv

        def round_trip() -> None:
            send(CALL)
            recv()

        return count_rate(round_trip, run.warmup_s, run.window_s)
    finally:
        if peer is not None:
            run.processes.kill(peer)
        sock.close()
        path.unlink(missing_ok=True)


def measure(run: Run) -> list[Row]:
    ipc = run.ipc_dir()
    samples = interleave([("a", lambda: push_pull(run, ipc)), ("b", lambda: req_rep(run, ipc))], run.rounds)
    spread = "medians of {n} rounds; min {lo:,.0f}, max {hi:,.0f}"
    return [
        info_row(
            "ceiling.push_pull",
            "1",
            "raw PUSH/PULL, 75 B, 1 msg/send (ceiling A)",
            median(samples["a"]),
            "msg/s",
            spread.format(n=len(samples["a"]), lo=min(samples["a"]), hi=max(samples["a"])),
            samples["a"],
        ),
        info_row(
            "ceiling.req_rep",
            "1",
            "raw REQ/REP round trips (ceiling B)",
            median(samples["b"]),
            "calls/s",
            spread.format(n=len(samples["b"]), lo=min(samples["b"]), hi=max(samples["b"])),
            samples["b"],
        ),
    ]
