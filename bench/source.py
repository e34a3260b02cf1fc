"""Figure 2: a source plugin emitting as fast as it can into the host's ``SourceChannel``.

The host side is the loader's own code driven as the tests drive it:
``ControlChannel`` starts and stops the source, this process reads
``SourceChannel.recv`` (one nng receive and one ``json.loads`` per record).
Subjects, interleaved round by round with ceiling A:

- ``sdk``: bench/plugins/benchplug.py on our sdk, offered the extension
  (its own IPC directory);
- ``ekuiper``: bench/plugins/ekbench.py on eKuiper's official SDK in its
  cached venv (tests/support/ekuiper_env.py), which only knows ``/tmp``: its plugin
  name and rule ids carry the run's token so nothing else in ``/tmp`` is
  touched, and ``Run.close`` removes what is left.

One plugin process per subject serves every round; each round starts a new
source instance (new rule id, new channel), measures, then stops it while a
thread keeps draining so the stop is answered at once.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
from pathlib import Path

from bench.ceilings import CEILING_A, WIRE, count_rate, push_pull, wire_push
from bench.harness import EKBENCH, PYTHON, BenchError, Run, install_benchplug, plugin_argument
from bench.report import Row, error_row, ratio_row, round_order
from loader.wire.addresses import control_path
from loader.wire.codec import DataChannelClosed
from loader.wire.control import ControlChannel
from loader.wire.source import SourceChannel, SourceTimeout
from sdk.protocol.control import TYPE_SOURCE, Control

GOAL = 0.9
BATCH_GOAL = 5.0  # the batching extension: several records per message
TIMEOUT_S = 10.0


class _SourcePlugin:
    """One plugin process and the host end of its control channel."""

    def __init__(self, run: Run, name: str, symbol: str, ipc_dir: Path, command: list[str], folder: Path) -> None:
        self.run, self.name, self.symbol, self.ipc_dir = run, name, symbol, ipc_dir
        self.command, self.folder = command, folder
        self.control: ControlChannel | None = None
        self.proc: subprocess.Popen | None = None
        self.rounds = 0

    async def start(self) -> None:
        self.control = ControlChannel(control_path(self.ipc_dir, self.name), self.name)
        await self.control.open()
        with open(self.folder / "plugin.log", "ab") as log:  # noqa: ASYNC230 - opening a local file, once
            self.proc = self.run.processes.popen(self.command, cwd=self.folder, stdout=log, stderr=log)
        try:
            await self.control.wait_handshake(TIMEOUT_S)
        except TimeoutError:
            raise BenchError(
                f"plugin {self.name}: no handshake within {TIMEOUT_S:g}s; its output:\n{self._tail()}"
            ) from None

    async def measure(self) -> float:
        assert self.control is not None
        self.rounds += 1
        rule = f"{self.name}r{self.rounds}"
        ctrl = Control(self.symbol, TYPE_SOURCE, rule, "op", 0, "bench", {}).to_dict()
        channel = SourceChannel.for_instance(self.ipc_dir, self.name, self.symbol, rule, "op", 0)
        channel.open()
        stop_draining = threading.Event()
        drain = threading.Thread(target=_drain, args=(channel, stop_draining), daemon=True)
        try:
            await self.control.command("start", ctrl, TIMEOUT_S)
            rate = await asyncio.to_thread(
                count_rate, lambda: channel.recv(TIMEOUT_S), self.run.warmup_s, self.run.window_s
            )
            drain.start()  # keep taking records so the stop is not stuck behind a full socket
            await self.control.command("stop", ctrl, TIMEOUT_S)
            return rate
        finally:
            stop_draining.set()
            if drain.is_alive():
                await asyncio.to_thread(drain.join, 5)
            channel.close()  # no thread uses it any more

    async def close(self) -> None:
        if self.control is not None:
            await self.control.close()
        if self.proc is not None:
            self.run.processes.kill(self.proc)

    def _tail(self) -> str:
        log = self.folder / "plugin.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else "(no output)"


def _drain(channel: SourceChannel, stop: threading.Event) -> None:
    """Take records until ``stop``; the channel is closed only after this returns.

    nng can panic (``pthread_mutex_lock: Invalid argument``, the whole
    process aborts) when a socket is closed while another thread receives on
    it, so the receiving thread ends first, by itself, within one short timeout.
    """
    while not stop.is_set():
        try:
            channel.recv_raw(0.2)
        except SourceTimeout:
            continue
        except DataChannelClosed:
            return


def _sdk_plugin(run: Run, ipc_dir: Path, batched: bool = False) -> _SourcePlugin:
    """The sdk source; ``batched`` offers the batching extension as the loader does by default."""
    name = "bsrcb" if batched else "bsrc"
    folder = install_benchplug(run.dir(f"source-{name}"), name, sources=["flood"])
    batch = {"maxRecords": 256, "lingerMs": 2} if batched else None
    command = [PYTHON, "-u", "benchplug.py", plugin_argument(ipc_dir, name, batch=batch)]
    return _SourcePlugin(run, name, "flood", ipc_dir, command, folder)


def _ekuiper_plugin(run: Run) -> _SourcePlugin:
    from tests.support.ekuiper_env import EkuiperEnvError, ensure_ekuiper_python

    try:
        python = ensure_ekuiper_python()
    except EkuiperEnvError as exc:
        raise BenchError(f"cannot build the eKuiper SDK venv: {str(exc)[:500]}") from None
    name = f"ekb{run.token}"
    folder = run.dir(name)
    shutil.copy(EKBENCH, folder / "ekbench.py")
    command = [str(python), "-u", "ekbench.py", json.dumps({"sendTimeout": 1000})]
    return _SourcePlugin(run, name, "ekflood", Path("/tmp"), command, folder)


async def _scenario(run: Run) -> list[Row]:
    ipc = run.ipc_dir()
    plugins: dict[str, _SourcePlugin] = {}
    errors: dict[str, str] = {}
    try:
        subjects = (
            ("sdk", lambda: _sdk_plugin(run, ipc)),
            ("sdk_batch", lambda: _sdk_plugin(run, ipc, True)),
            ("ekuiper", lambda: _ekuiper_plugin(run)),
        )
        for key, make in subjects:
            try:
                plugin = make()
                plugins[key] = plugin
                await plugin.start()
            except Exception as exc:  # the other subject still gets its figure
                errors[key] = str(exc) if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"
                plugin = plugins.pop(key, None)
                if plugin is not None:
                    await plugin.close()
        samples: dict[str, list[float]] = {"ceiling": [], "wire": [], **{key: [] for key in plugins}}
        for index in range(run.rounds):
            for key in round_order(list(samples), index):
                if key == "ceiling":
                    samples[key].append(await asyncio.to_thread(push_pull, run, ipc))
                    continue
                if key == "wire":
                    samples[key].append(await asyncio.to_thread(wire_push, run, ipc))
                    continue
                try:
                    samples[key].append(await plugins[key].measure())
                except Exception as exc:  # one subject failing must not lose the others
                    errors.setdefault(key, f"{type(exc).__name__}: {exc}")
    finally:
        for plugin in plugins.values():
            await plugin.close()
    labels = {
        "sdk": "sdk source -> SourceChannel.recv",
        "sdk_batch": "same, batching extension on",
        "ekuiper": "eKuiper SDK source -> SourceChannel.recv",
    }
    rows = []
    for key, label in labels.items():
        if key in errors or not samples.get(key):
            rows.append(error_row(f"source.{key}", "2", label, errors.get(key, "no samples")))
            continue
        goal = {"sdk": GOAL, "sdk_batch": BATCH_GOAL}.get(key, 0.0)
        row = ratio_row(f"source.{key}", "2", label, samples[key], "rec/s", CEILING_A, samples["ceiling"], goal)
        if key == "ekuiper":  # the yardstick, not ours to tune: no goal
            row.goal, row.ok = "", None
        rows.append(row)
    if "sdk" not in errors and samples.get("sdk") and len(samples["sdk"]) == len(samples["wire"]):
        row = ratio_row(
            "source.sdk_vs_wire",
            "2",
            "sdk source vs. its bare transport (diagnostic)",
            samples["sdk"],
            "rec/s",
            WIRE,
            samples["wire"],
            0.0,
            note="what the sdk and the host's decoding cost per record over the bare dialer and listener",
        )
        row.goal, row.ok = "", None
        rows.append(row)
    return rows


def measure(run: Run) -> list[Row]:
    return asyncio.run(_scenario(run))
