"""``python -m bench.closerace``: close data channels while their threads are inside calls, many times.

nng aborts the process (``panic: pthread_mutex_lock: Invalid argument``,
exit status 134) when a socket is closed while another thread sends or
receives on it; with plain pynng sockets this loop hits it within a few
hundred rounds.  Each round here opens a source, a sink and a function
channel of the loader with a real peer on the other side, lets a thread
send or receive on each, and closes the channel from the main thread at a
random moment.  The plugin side of the function channel is the sdk's own
serving loop, stopped the way the sdk stops a function.

    python -m bench.closerace --rounds 500

Exit status 0 and ``closerace: N rounds, no abort`` when the process
survived every round.  ``python -m bench.stress --closerace`` repeats it.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pynng

from loader.wire.addresses import url
from loader.wire.codec import DataChannelClosed, DataChannelError
from loader.wire.function import FunctionChannel
from loader.wire.sink import SinkChannel
from loader.wire.source import SourceChannel
from sdk import channels

#: Longest a round lets the threads run before it closes the channel.
MAX_RUN_S = 0.004


def _thread(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def _until_closed(call: Callable[[], object]) -> Callable[[], None]:
    def loop() -> None:
        while True:
            try:
                call()
            except DataChannelClosed:
                return
            except DataChannelError:
                continue

    return loop


def source_round(ipc: Path, index: int) -> None:
    channel = SourceChannel(ipc / f"src{index % 4}.ipc", "race", "s")
    channel.open()
    stop = threading.Event()
    push = pynng.Push0(send_timeout=50)
    push.dial(url(channel.path), block=False)

    def send() -> None:
        while not stop.is_set():
            try:
                push.send(b'{"message": {"n": 1}, "meta": null}')
            except pynng.NNGException:
                continue

    sender = _thread(send)
    reader = _thread(_until_closed(lambda: channel.recv_batch(64, 0.5)))
    time.sleep(random.uniform(0, MAX_RUN_S))
    channel.close()
    stop.set()
    sender.join()
    push.close()  # after its thread ended, as every socket here
    reader.join()


def sink_round(ipc: Path, index: int) -> None:
    require_ack = index % 2 == 0
    channel = SinkChannel(
        ipc / f"data{index % 4}.ipc",
        ipc / f"ack{index % 4}.ipc",
        "race",
        "s",
        require_ack=require_ack,
        send_timeout=0.5,
        ack_timeout=0.5,
    )
    channel.open()
    stop = threading.Event()
    pull = pynng.Pull0(recv_timeout=20)
    pull.listen(url(channel.data_path))
    acks = pynng.Push0(send_timeout=20)
    acks.dial(url(channel.ack_path), block=False)

    def serve() -> None:
        while not stop.is_set():
            try:
                pull.recv()
                if require_ack:
                    acks.send(b"{}")
            except pynng.NNGException:
                continue

    peer = _thread(serve)
    channel.connect()
    sender = _thread(_until_closed(lambda: channel.send({"n": 1})))
    time.sleep(random.uniform(0, MAX_RUN_S))
    channel.close()
    sender.join()
    stop.set()
    peer.join()
    pull.close()
    acks.close()


def function_round(ipc: Path, index: int) -> None:
    channel = FunctionChannel(ipc / f"func_f{index % 4}.ipc", "race", "f", timeout=0.5)
    channel.open()
    closing = threading.Event()
    req = pynng.Req0(recv_timeout=200, resend_time=0)
    req.dial(url(channel.path), block=False)
    answer = b'{"state": true, "result": 1}'
    plugin = _thread(lambda: channels.serve_inverted(req, lambda _: answer, closing))
    caller = _thread(_until_closed(lambda: channel.exec([1], "{}")))
    time.sleep(random.uniform(0, MAX_RUN_S))
    if index % 2:  # either side may go first
        channel.close()
        caller.join()
    closing.set()
    channels.close_after(plugin, [req], 1.0)
    channel.close()
    caller.join()


ROUNDS = (source_round, sink_round, function_round)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.closerace", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=500, help="rounds of each channel kind (default 500)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="closerace-") as tmp:
        ipc = Path(tmp)
        for index in range(args.rounds):
            for round_of in ROUNDS:
                round_of(ipc, index)
    print(f"closerace: {args.rounds} rounds, no abort")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
