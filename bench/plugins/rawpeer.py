"""Raw nng peers for the ceilings: no SDK, no encoding per message.

    python rawpeer.py push <url> <seconds>   PUSH dialer sending one 75-byte record envelope per send
    python rawpeer.py wirepush <url> <seconds>
                                             the same through the sdk's own dialer (sdk/protocol/ipc_wire.py)
                                             instead of pynng: what an sdk source sends with, bare
    python rawpeer.py req  <url> <seconds>   REQ dialer answering every reply with a constant result,
                                             the plugin end of a function channel (PROTOCOL.md section 5)
    python rawpeer.py relay <in-url> <out-url> <seconds>
                                             PULL listening on in-url, forwarding every message as it is
                                             to a PUSH dialing out-url: a host that does nothing per record

Each exits after ``seconds`` (the benchmark kills it earlier by pid).
Standard library and pynng only (``wirepush`` also imports the sdk's
protocol package); it never forks.
"""

import json
import sys
import time

import pynng

#: Same shape and size as what the benchmark's sdk source sends for one record.
RECORD = json.dumps({"message": {"n": 100000, "name": "bench-record", "v": 12.5}, "meta": None}).encode()
REPLY = json.dumps({"state": True, "result": 100000}).encode()


def _dial(sock: pynng.Socket, url: str) -> None:
    for _ in range(100):
        try:
            sock.dial(url, block=True)
            return
        except pynng.NNGException:
            time.sleep(0.02)
    raise SystemExit(f"rawpeer: nobody listens on {url}")


def push(url: str, seconds: float) -> None:
    sock = pynng.Push0(send_timeout=2000)
    _dial(sock, url)
    send, payload = sock.send, RECORD
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            for _ in range(256):
                send(payload)
    except pynng.NNGException:
        pass
    sock.close()


def wirepush(url: str, seconds: float) -> None:
    from sdk.protocol.ipc_wire import IpcPushDialer

    dialer = IpcPushDialer(url.removeprefix("ipc://"))
    if not dialer.dial(2.0):
        raise SystemExit(f"rawpeer: nobody listens on {url}: {dialer.last_error}")
    send, payload = dialer.send, RECORD
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(256):
            if not send(payload, 2.0):
                dialer.close()
                return
    dialer.close()


def req(url: str, seconds: float) -> None:
    sock = pynng.Req0(resend_time=0, recv_timeout=2000)
    _dial(sock, url)
    send, recv, reply = sock.send, sock.recv, REPLY
    end = time.monotonic() + seconds
    try:
        send(b"handshake")
        while time.monotonic() < end:
            for _ in range(64):
                recv()
                send(reply)
    except pynng.NNGException:
        pass
    sock.close()


def relay(in_url: str, out_url: str, seconds: float) -> None:
    pull = pynng.Pull0(recv_timeout=2000, recv_max_size=0)
    pull.listen(in_url)
    push = pynng.Push0(send_timeout=2000)
    _dial(push, out_url)
    recv, send = pull.recv, push.send
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            for _ in range(256):
                send(recv())
    except pynng.NNGException:
        pass
    pull.close()
    push.close()


if __name__ == "__main__":
    mode, *urls, duration = sys.argv[1:]
    {"push": push, "wirepush": wirepush, "req": req, "relay": relay}[mode](*urls, float(duration))
