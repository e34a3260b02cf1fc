"""The supervisor's decisions with a fake runner, channel and clock: no process, no real time.

Backoff, the crash-loop window, hang detection, probation pass and fail,
rollback, a swap arriving during backoff and a stop racing a launch, each
driven step by step.
"""

from __future__ import annotations

import asyncio
import itertools
import threading

import pytest

from loader.plugins.states import TRANSITIONS, IllegalTransition, Lifecycle, PluginState, check_move
from loader.plugins.status import StatusBoard
from loader.plugins.supervisor import PluginSupervisor, RestartPolicy
from tests.support.fakes import FakeChannel, FakeClock, FakeRunner, Plan, config, settle, spec_of

S = PluginState


class Rig:
    """A supervisor wired to fakes, plus what the test looks at."""

    def __init__(self, plans: dict[str, Plan] | None = None, **settings) -> None:
        self.clock = FakeClock()
        self.channel = FakeChannel(self.clock)
        self.runner = FakeRunner(self.clock, self.channel, plans or {})
        self.board = StatusBoard()
        self.good: list[str] = []
        self.supervisor = PluginSupervisor(
            spec_of("v1"),
            config(**settings),
            self.board,
            lifecycle=Lifecycle("p", self.board),
            runner=self.runner,
            clock=self.clock,
            channel=self.channel,  # type: ignore[arg-type]
            on_good=lambda spec: self.good.append(spec.version),
        )

    @property
    def state(self) -> PluginState:
        return self.supervisor.state

    @property
    def history(self) -> list[PluginState]:
        return self.supervisor.lifecycle.history

    async def start(self) -> bool:
        await self.supervisor.open()
        return await self.supervisor.start()

    def later(self, coro) -> asyncio.Task:
        return asyncio.get_running_loop().create_task(coro)


def run(scenario) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 5))


def test_probation_passes_after_the_period_and_keeps_the_version():
    async def scenario():
        rig = Rig()
        assert await rig.start() is True
        assert rig.state is S.PROBATION and rig.good == []
        await rig.clock.advance(9.9)
        assert rig.state is S.PROBATION
        await rig.clock.advance(0.2)
        assert rig.state is S.RUNNING and rig.good == ["v1"]
        assert rig.board.get("p").state == "running"  # the board shows it, never the other way round
        assert rig.history == [S.STARTING, S.PROBATION, S.RUNNING]
        await rig.supervisor.stop()
        assert rig.state is S.STOPPED and rig.runner.alive() == []

    run(scenario)


def test_backoff_doubles_to_the_cap_and_a_crash_loop_is_declared():
    async def scenario():
        rig = Rig({"v1": Plan(exit_after_s=0.0)})
        await rig.start()
        await rig.clock.advance(40)
        starts = [t for t, _ in rig.runner.started]
        gaps = [round(b - a, 3) for a, b in itertools.pairwise(starts)]
        assert gaps[:5] == [1.0, 2.0, 4.0, 8.0, 8.0]
        failures = [state for state in rig.history if state in (S.RESTARTING, S.CRASHLOOP)]
        assert failures[:4] == [S.RESTARTING, S.RESTARTING, S.CRASHLOOP, S.CRASHLOOP]  # 3 within the window
        assert rig.good == []
        await rig.supervisor.stop()

    run(scenario)


def test_crash_loop_window_forgets_old_failures():
    settings = config(crashloop_restarts=3, crashloop_window_s=60, stable_after_s=1000).supervisor
    policy = RestartPolicy()
    assert policy.failed(0, 0, settings) == (1.0, False)
    assert policy.failed(0, 50, settings) == (2.0, False)
    assert policy.failed(0, 100, settings) == (4.0, False)  # the first failure fell out of the window
    assert policy.failed(0, 101, settings) == (8.0, True)
    stable = config(stable_after_s=30).supervisor
    policy = RestartPolicy()
    policy.failed(0, 1, stable)
    policy.failed(1, 2, stable)
    assert policy.failed(100, 140, stable) == (1.0, False)  # a 40 s run starts the count over


def test_a_hung_process_is_restarted():
    async def scenario():
        rig = Rig({"v1": Plan(keepalives=True)}, probation_s=0)
        await rig.start()
        first = rig.runner.started[0][1]
        await rig.clock.advance(2.9)
        assert first.returncode is None and len(rig.runner.started) == 1
        await rig.clock.advance(0.35)
        assert first in rig.runner.stopped
        assert S.RESTARTING in rig.history
        await rig.clock.advance(1.0)
        assert len(rig.runner.started) == 2
        await rig.supervisor.stop()

    run(scenario)


def test_a_mark_from_a_data_plane_thread_restarts_at_once_without_polling():
    """Sinks and functions call mark_unhealthy from their own threads; no fake time passes here."""

    async def scenario():
        rig = Rig(probation_s=0)
        await rig.start()
        await settle()
        first = rig.runner.started[0][1]
        sleeps_before = rig.clock.sleeps
        marker = threading.Thread(target=rig.supervisor.mark_unhealthy, args=("sink s of rule r: stalled",))
        marker.start()
        marker.join()
        for _ in range(100):
            if first in rig.runner.stopped:
                break
            await asyncio.sleep(0.01)
        assert first in rig.runner.stopped and S.RESTARTING in rig.history
        assert rig.clock.sleeps - sleeps_before <= 2  # the restart's backoff, not a poll
        await rig.supervisor.stop()

    run(scenario)


def test_a_healthy_idle_plugin_is_checked_per_keepalive_period_not_polled():
    async def scenario():
        rig = Rig({"v1": Plan(keepalives=True)}, probation_s=0)
        await rig.start()
        sleeps_before = rig.clock.sleeps
        for _ in range(60):  # a keepalive every second for a minute
            await rig.clock.advance(1.0)
            rig.channel.handshake(keepalives=True)
        assert len(rig.runner.started) == 1 and rig.state is S.RUNNING
        assert rig.clock.sleeps - sleeps_before <= 25  # one check per hung_after_s (3 s), not ten a second
        await rig.supervisor.stop()

    run(scenario)


def test_a_new_version_failing_probation_is_rolled_back():
    async def scenario():
        rig = Rig({"v2": Plan(exit_after_s=2.0, exit_code=3)})
        await rig.start()
        await rig.clock.advance(10)
        assert rig.state is S.RUNNING
        swap = rig.later(rig.supervisor.swap(spec_of("v2")))
        await settle()
        assert rig.state is S.PROBATION and rig.supervisor.spec.version == "v2"
        await rig.clock.advance(2.0)
        assert await swap is False
        assert rig.state is S.ROLLED_BACK and rig.supervisor.spec.version == "v1"
        assert rig.runner.versions() == ["v1", "v2", "v1"] and len(rig.runner.alive()) == 1
        failed, error = rig.supervisor.failed
        assert failed.version == "v2" and "exit code 3" in error
        status = rig.board.get("p")
        assert status.failed_version == "v2" and "exit code 3" in status.failed_error
        assert status.version == "v1" and "rolled back" in status.last_error
        assert rig.good == ["v1"]
        # No restart of v1 came from a backoff: the rollback is immediate.
        assert rig.runner.started[2][0] == rig.runner.started[1][0] + 2.0
        rig.supervisor.accept_folder()  # the folder holds v1 again
        assert rig.state is S.RUNNING and rig.board.get("p").failed_version is None
        await rig.supervisor.stop()

    run(scenario)


def test_a_new_version_that_never_handshakes_is_rolled_back():
    async def scenario():
        rig = Rig({"v2": Plan(handshake=False)})
        await rig.start()
        await rig.clock.advance(10)
        swap = rig.later(rig.supervisor.swap(spec_of("v2")))
        await rig.clock.advance(5.1)
        assert await swap is False
        assert rig.state is S.ROLLED_BACK and "no handshake within 5s" in rig.supervisor.failed[1]
        await rig.supervisor.stop()

    run(scenario)


def test_a_version_passing_probation_replaces_the_old_one_for_good():
    async def scenario():
        rig = Rig()
        await rig.start()
        await rig.clock.advance(10)
        swap = rig.later(rig.supervisor.swap(spec_of("v2")))
        await rig.clock.advance(10)
        assert await swap is True
        assert rig.state is S.RUNNING and rig.good == ["v1", "v2"] and rig.supervisor.good.version == "v2"
        await rig.supervisor.stop()

    run(scenario)


def test_first_version_failing_probation_is_restarted_not_rolled_back():
    async def scenario():
        rig = Rig({"v1": Plan(exit_after_s=2.0)})
        await rig.start()
        settled = rig.later(rig.supervisor.settled())
        await rig.clock.advance(2.0)
        assert await settled is False
        assert rig.state is S.RESTARTING and rig.supervisor.failed is None
        await rig.supervisor.stop()

    run(scenario)


def test_a_swap_during_backoff_starts_the_new_version_at_once():
    async def scenario():
        rig = Rig({"v1": Plan(exit_after_s=0.0)}, restart_backoff_initial_s=8.0)
        await rig.start()
        await rig.clock.advance(0.01)
        assert rig.state is S.RESTARTING and len(rig.runner.started) == 1
        swap = rig.later(rig.supervisor.swap(spec_of("v2")))
        await settle()
        assert rig.runner.versions() == ["v1", "v2"] and rig.runner.started[1][0] < 1.0
        await rig.clock.advance(10)
        assert await swap is True and rig.state is S.RUNNING
        await rig.supervisor.stop()

    run(scenario)


def test_a_stop_racing_a_launch_wins_without_waiting_for_the_handshake():
    async def scenario():
        rig = Rig({"v1": Plan(handshake=False)})
        await rig.supervisor.open()
        started = rig.later(rig.supervisor.start())
        await settle()
        assert rig.state is S.STARTING
        await rig.supervisor.stop()  # no time passes: the stop does not wait for the handshake timeout
        assert await started is False
        assert rig.state is S.STOPPED and rig.runner.alive() == [] and rig.channel.closed
        assert rig.clock.now() == 0.0

    run(scenario)


def test_symbols_are_replayed_on_the_rolled_back_process():
    async def scenario():
        rig = Rig({"v2": Plan(exit_after_s=1.0)})
        await rig.start()
        await rig.supervisor.start_symbol("r1/s", {"symbolName": "s"})
        await rig.clock.advance(10)
        swap = rig.later(rig.supervisor.swap(spec_of("v2")))
        await rig.clock.advance(1.0)
        await swap
        assert rig.channel.commands == [("start", "s")] * 3  # v1, v2, v1 again
        await rig.supervisor.stop()

    run(scenario)


def test_illegal_moves_are_refused():
    with pytest.raises(IllegalTransition):
        check_move(S.RESTARTING, S.RUNNING)
    with pytest.raises(IllegalTransition):
        check_move(S.INVALID, S.PROBATION)
    life = Lifecycle("p", StatusBoard())
    with pytest.raises(IllegalTransition):
        life.move(S.RUNNING)
    assert life.state is S.STOPPED
    assert set(TRANSITIONS) == set(PluginState)  # every state has its row


def test_stop_during_a_probation_answers_the_swap_and_can_be_called_twice():
    async def scenario():
        rig = Rig()
        await rig.start()
        await rig.clock.advance(10)
        swap = rig.later(rig.supervisor.swap(spec_of("v2")))
        await settle()
        assert rig.state is S.PROBATION
        await asyncio.gather(rig.supervisor.stop(), rig.supervisor.stop())
        assert await swap is False
        assert rig.state is S.STOPPED and rig.runner.alive() == [] and rig.clock.now() == 10

    run(scenario)
