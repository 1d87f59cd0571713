"""The lockstep bridge end to end against the MAVLink test double over loopback (no PX4 needed).

The double connects like PX4, checks every HIL_SENSOR/HIL_GPS it receives, and answers
with HIL_ACTUATOR_CONTROLS from the built-in cascade controller; the test closes the loop
through the Iris rotor model and a rigid body.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from px4_rig import wait_until

from flyby.errors import PX4Died, PX4Timeout, PX4Unavailable
from flyby.px4 import frames
from flyby.px4.bridge import LockstepBridge


def test_sensors_first_then_lockstep(make_rig):
    rig, double = make_rig(first_reply_after=25)
    t0 = time.perf_counter()
    early = [rig.step() for _ in range(25)]
    # PX4 is "booting": the bridge sends HIL_SENSOR without waiting for anything back.
    assert all(not r.fresh and not r.armed for r in early)
    assert time.perf_counter() - t0 < 25 * rig.bridge.timeout_s / 2
    wait_until(lambda: len(double.sensor_times) == 25, what="the double receiving 25 HIL_SENSORs")
    assert double.replies_sent == 0
    assert double.sensor_times[0] == 4000  # PX4's clock starts above 0
    rig.step()  # HIL_SENSOR #25: the double's first reply
    wait_until(lambda: double.replies_sent == 1, what="the double's first reply")
    later = [rig.step() for _ in range(50)]
    # From the first reply on, lockstep: each reply answers the HIL_SENSOR just sent (same time_usec).
    assert rig.bridge.started and all(r.fresh for r in later)
    assert [r.time_usec for r in later] == double.sensor_times[26:76]
    assert double.violations == []


def test_takeoff_and_hover_end_to_end(make_rig, capsys):
    rig, double = make_rig(arm_after_s=0.3)
    rig.bring_up()
    assert rig.client.armed and rig.client.offboard
    assert double.params == {
        "COM_RCL_EXCEPT": 4,
        "COM_DISARM_PRFLT": -1.0,
        "NAV_RCL_ACT": 0,
        "NAV_DLL_ACT": 0,
        "MPC_THR_HOVER": pytest.approx(0.694, abs=1e-6),  # the Iris model's hover thrust (flyby.px4.params)
    }
    rig.client.takeoff(2.0, step=lambda: rig.step((0.0, 0.0, 1.0)), timeout_s=20.0)
    heights = []
    for _ in range(750):  # 3 s hover
        rig.step()
        heights.append(rig.sim.pos_w[0, 2])
    heights = np.array(heights[250:])
    assert 1.8 < heights.mean() < 2.5 and np.ptp(heights) < 0.2, heights
    assert np.linalg.norm(rig.sim.pos_w[0, :2]) < 0.2
    # The double's checks: strictly increasing time, fields_updated 7167, units, FRD at rest.
    assert double.violations == []
    times = np.array(double.sensor_times)
    assert np.all(np.diff(times) == 4000) and times[0] > 0
    assert double.rest_checks > 50  # FRD specific force at rest was checked (about (0, 0, -9.81))
    assert double.gps_received > 10 and np.all(np.diff(double.gps_times) == 100_000)  # 10 Hz
    assert rig.bridge.timeouts == 0
    rtt_us = np.asarray(rig.bridge.rtt_s) * 1e6
    with capsys.disabled():
        print(
            f"\nlockstep round trip vs test double ({len(rtt_us)} steps): mean {rtt_us.mean():.0f} us, "
            f"p50 {np.percentile(rtt_us, 50):.0f} us, p99 {np.percentile(rtt_us, 99):.0f} us"
        )
    assert np.percentile(rtt_us, 50) < 20_000


def test_ground_truth_round_trips_through_the_wire(make_rig):
    rig, double = make_rig()
    rig.sim.pos_w[0] = [12.5, -40.0, 30.0]
    rig.sim.vel_w[0] = [1.0, -2.0, 0.5]
    yaw = np.radians(30.0)
    rig.sim.quat[0] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
    rig.sim.omega_b[0] = [0.1, -0.2, 0.3]
    st = rig.sim.state()
    rig.bridge.send_ground_truth(4000, st, 0)
    rig.bridge.send_sensors(
        4000, (np.array([0, 0, 9.8]), np.zeros(3)), np.array([0.0, 0.2, -0.4]), (955.0, 488.0, 12.0)
    )
    wait_until(lambda: double.ground_truth_received > 0, what="ground truth at the double")
    gt = double._gt
    np.testing.assert_allclose(gt["pos_w"], st.pos_w[0], atol=0.02)  # degE7 / mm on the wire
    np.testing.assert_allclose(gt["lin_vel_w"], st.lin_vel_w[0], atol=0.01)  # cm/s
    np.testing.assert_allclose(gt["ang_vel_b"], st.ang_vel_b[0], atol=1e-6)
    assert abs(np.dot(gt["quat_wxyz"], st.quat_wxyz[0])) == pytest.approx(1.0, abs=1e-6)
    _, _, yaw_ned = frames.quat_to_euler_ned_frd(frames.quat_enu_flu_to_ned_frd(gt["quat_wxyz"]))
    assert np.degrees(yaw_ned) == pytest.approx(60.0)  # ENU 30 deg CCW from east = 60 deg CW from north


def test_timeout_keeps_last_command_then_resyncs(make_rig):
    rig, double = make_rig(first_reply_after=2)
    rig.bridge.timeout_s = 0.05
    rig.bring_up()
    drop = len(double.sensor_times) + 20  # the 21st HIL_SENSOR from here goes unanswered
    double.drop_replies.add(drop)
    replies = [rig.step((0.0, 0.0, 1.0)) for _ in range(60)]
    sent = double.sensor_times[-60:]
    missed = [i for i, r in enumerate(replies) if not r.fresh]
    assert missed == [20]
    assert np.array_equal(replies[20].controls, replies[19].controls)  # last command kept
    assert replies[20].time_usec == sent[19] and replies[20].armed
    assert rig.bridge.timeouts == 1
    # After the miss every reply again answers its own HIL_SENSOR (no off-by-one lag).
    assert [r.time_usec for r in replies[21:]] == sent[21:]
    assert double.violations == []


def test_double_dying_raises_clear_error_not_a_hang(make_rig):
    rig, _double = make_rig(first_reply_after=1, die_after=30)
    t0 = time.monotonic()
    with pytest.raises(PX4Died) as info:
        for _ in range(1000):
            rig.step()
    assert time.monotonic() - t0 < 3.0
    message = str(info.value)
    assert "closed the simulator connection" in message or "simulator connection failed" in message
    assert "MAVLink test double instance 0" in message  # the process description (a log path for PX4)


def test_hung_peer_raises_after_bound(make_rig):
    rig, _double = make_rig(timeout_s=0.05, dead_after_s=0.3, first_reply_after=1, hang_after=20)
    t0 = time.monotonic()
    with pytest.raises(PX4Timeout, match="stopped answering: no HIL_ACTUATOR_CONTROLS for"):
        for _ in range(1000):
            rig.step()
    assert time.monotonic() - t0 < 3.0
    assert rig.bridge.timeouts >= 6


def test_nobody_connects_times_out():
    with LockstepBridge(0, 0.1, port=0) as bridge:
        t0 = time.monotonic()
        with pytest.raises(PX4Unavailable, match="did not connect"):
            bridge.wait_for_connection(timeout_s=0.3)
        assert time.monotonic() - t0 < 1.5


def test_time_must_strictly_increase(make_rig):
    rig, _ = make_rig()
    rig.step()
    with pytest.raises(ValueError, match="strictly|above the previous"):
        rig.bridge.send_sensors(rig.time_usec, (np.zeros(3), np.zeros(3)), np.zeros(3), (1000.0, 0.0, 15.0))


def test_port_in_use_is_a_clear_error():
    with (
        LockstepBridge(0, 0.1, port=0) as first,
        pytest.raises(PX4Unavailable, match=f"127.0.0.1:{first.port}"),
    ):
        LockstepBridge(0, 0.1, port=first.port)
