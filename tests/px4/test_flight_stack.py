"""PX4FlightStack (the env's ``flight_stack="px4"``) end to end on MAVLink test doubles instead of PX4."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from mavlink_double import DoubleFactory
from px4_rig import RigidBodySim, make_sensors
from px4_scenarios import assert_took_off_and_hovered, takeoff_hover

from flyby.errors import PX4Unavailable
from flyby.px4.flight_stack import PX4FlightStack
from flyby.px4.params import SITL_PARAMS


def _stack(factory: DoubleFactory, num_drones: int = 1, **kwargs) -> PX4FlightStack:
    return PX4FlightStack(
        num_drones,
        sensors=make_sensors(num_drones),
        launcher_factory=factory,
        ephemeral_ports=True,
        startup_timeout_s=20.0,
        ground_truth_rate_hz=250.0,  # the double flies from HIL_STATE_QUATERNION
        **kwargs,
    )


def test_takeoff_hover_reset_and_close():
    factory = DoubleFactory(arm_after_s=1.0, first_reply_after=10)
    stack = _stack(factory)
    try:
        sim = RigidBodySim(1)
        result = takeoff_hover(stack, sim, climb_s=2.0, hover_s=3.0)
        assert_took_off_and_hovered(result)
        double = factory.doubles[0]
        assert double.violations == []
        assert double.params == pytest.approx(SITL_PARAMS, abs=1e-6)  # float32 on the wire
        assert double.offboard and double.armed and stack.ready.all()
        # Setpoints streamed at 50 Hz of PX4 time, before and during OFFBOARD, none missed. The double
        # stamps each arrival with its lockstep clock, and the offboard socket is read beside the HIL
        # one, so on a loaded machine a setpoint can be stamped a few 4 ms steps late (one CI run saw
        # a 28 ms gap followed by a 12 ms one): the count over the span is exact, each gap is not.
        times = np.asarray(double.setpoint_times_us)
        gaps = np.diff(times)
        assert len(gaps) > 200
        assert np.median(gaps) == 20_000
        # Each arrival lies in its own 20 ms slot (within half a period of the stream's phase): a
        # missed or doubled setpoint shifts every later slot.
        phase = np.median(times - 20_000 * np.arange(len(times)))
        assert np.array_equal(np.rint((times - phase) / 20_000), np.arange(len(times)))
        assert stack.round_trip_times_s().size > 1000

        # A reset restarts the PX4 instance (a fresh boot) and the next update arms it again.
        stack.reset()
        assert double.starts == 2 and not stack.armed.any()
        sim.reset()
        assert_took_off_and_hovered(takeoff_hover(stack, sim, climb_s=1.5, hover_s=2.0), min_alt_m=0.9)
        assert double.violations == []
    finally:
        stack.close()
    stack.close()  # idempotent
    assert factory.doubles[0].poll() is not None
    with pytest.raises(PX4Unavailable, match="closed"):
        stack.update(np.zeros((1, 3)), np.zeros(1), sim.state(), 0.004)


def test_two_drones_two_instances():
    factory = DoubleFactory(arm_after_s=0.5)
    with _stack(factory, num_drones=2) as stack:
        sim = RigidBodySim(2, pos_w=[[0.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
        vel = np.zeros((2, 3))
        for k in range(500):
            vel[:, 2] = [1.0, 0.0] if k < 300 else [0.0, 0.0]  # drone 0 climbs, drone 1 stays down
            u = stack.update(vel, np.zeros(2), sim.state(), 0.004)
            sim.step(u, stack.armed, 0.004)
        assert set(factory.doubles) == {0, 1}
        assert sim.pos_w[0, 2] > 0.6 and sim.pos_w[1, 2] < 0.05
        assert factory.violations() == []


def test_px4_dying_mid_episode_is_a_clear_error():
    factory = DoubleFactory(arm_after_s=0.2, die_after=600)
    with _stack(factory) as stack:
        sim = RigidBodySim(1)
        t0 = time.monotonic()
        with pytest.raises(PX4Unavailable) as info:
            takeoff_hover(stack, sim, climb_s=5.0, hover_s=5.0)
        assert time.monotonic() - t0 < 15.0
        assert "MAVLink test double instance 0" in str(info.value)


def test_peer_never_connecting_fails_at_construction():
    class Silent:
        def start(self):
            return self

        def stop(self):
            return None

        def poll(self):
            return None

        def describe(self):
            return "silent peer; log: /nowhere.log"

    t0 = time.monotonic()
    with pytest.raises(PX4Unavailable, match="did not connect.*/nowhere.log"):
        PX4FlightStack(1, sensors=make_sensors(1), launcher_factory=lambda *a: Silent(), ephemeral_ports=True,
                       connect_timeout_s=0.3)  # fmt: skip
    assert time.monotonic() - t0 < 2.0


def test_missing_px4_fails_at_construction(monkeypatch, tmp_path):
    monkeypatch.delenv("PX4_DIR", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PX4Unavailable, match="PX4_DIR"):
        PX4FlightStack(1, sensors=make_sensors(1))
    # Nothing leaked: the fixed ports are free again.
    with pytest.raises(PX4Unavailable, match="PX4_DIR"):
        PX4FlightStack(1, sensors=make_sensors(1))
    assert "PX4_DIR" not in os.environ


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs 2+ CPUs (Linux)"
)
def test_stacks_in_one_thread_pin_from_the_same_cpus_and_the_last_gives_them_back():
    """A second stack in the thread sees the CPU set from before the first narrowed it (so its PX4s
    are pinned as the first's were, not left unpinned), and the thread gets its CPUs back when the
    last open stack closes, not the first."""
    from flyby.px4.flight_stack import _thread_cpus

    before = os.sched_getaffinity(0)
    cpu = max(before)

    def pinned_to_cpu(factory: DoubleFactory):
        def make(*args):
            double = factory(*args)
            double.cpu = cpu  # what PX4Launcher sets: the CPU its PX4 runs on
            return double

        return make

    first = _stack(pinned_to_cpu(DoubleFactory()))
    try:
        assert os.sched_getaffinity(0) == before - {cpu} and _thread_cpus() == before
        second = _stack(pinned_to_cpu(DoubleFactory()))
        try:
            assert _thread_cpus() == before  # what the default launcher factory pins from
            first.close()
            assert os.sched_getaffinity(0) == before - {cpu}  # the second stack is still open
        finally:
            second.close()
        assert os.sched_getaffinity(0) == before and _thread_cpus() == before
    finally:
        first.close()
        os.sched_setaffinity(0, before)
