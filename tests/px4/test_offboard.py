"""OffboardClient against the MAVLink test double: parameters, OFFBOARD, arming, setpoints, telemetry."""

from __future__ import annotations

import math
import struct
import time

import numpy as np
import pytest
from mavlink_double import MavlinkDouble

from flyby.errors import PX4Unavailable
from flyby.px4 import frames
from flyby.px4.mavlink import dialect, param_from_wire, param_to_wire
from flyby.px4.offboard import SITL_PARAMS, OffboardClient


@pytest.fixture
def link():
    """(client, double) on free loopback ports; the double runs on wall time (no lockstep link)."""
    client = OffboardClient(0, port=0, timeout_s=5.0, retry_s=0.05)
    double = MavlinkDouble(None, client.port, arm_after_s=0.0).start()
    yield client, double
    double.stop()
    client.close()


def test_param_bit_cast():
    m = dialect()
    value, kind = param_to_wire(4)
    assert kind == m.MAV_PARAM_TYPE_INT32
    assert struct.pack("<f", value) == struct.pack("<i", 4)  # the bits are the int32, not 4.0
    assert value != 4.0 and value < 1e-40  # 4 as float bits is a denormal
    assert param_from_wire(value, kind) == 4
    neg, kind = param_to_wire(-1)
    assert param_from_wire(neg, kind) == -1
    real, kind = param_to_wire(-1.0)
    assert kind == m.MAV_PARAM_TYPE_REAL32 and real == -1.0


def test_set_params_confirmed_and_bit_cast(link):
    client, double = link
    client.wait_heartbeat()
    assert client.target_system == 1 and client.target_component == 1
    client.set_params()
    assert double.params == pytest.approx(SITL_PARAMS, abs=1e-6)  # floats travel as float32
    assert client.params == pytest.approx(SITL_PARAMS, abs=1e-6)
    assert all(isinstance(double.params[k], int) for k in ("COM_RCL_EXCEPT", "NAV_RCL_ACT", "NAV_DLL_ACT"))
    assert double.violations == []


def test_double_flags_an_int_param_sent_as_float(link):
    client, double = link
    client.wait_heartbeat()
    client.send_param("COM_RCL_EXCEPT", 4.0)  # wrong: a float, not bit-cast int32
    deadline = time.monotonic() + 2.0
    while not double.violations:
        assert time.monotonic() < deadline
        client.poll(0.01)
    assert "COM_RCL_EXCEPT" in double.violations[0] and "INT32" in double.violations[0]


def test_offboard_needs_setpoints_first(link):
    client, _double = link
    m = dialect()
    client.wait_heartbeat()
    client.request_offboard()
    deadline = time.monotonic() + 2.0
    while m.MAV_CMD_DO_SET_MODE not in client.acks:
        assert time.monotonic() < deadline
        client.poll(0.01)
    assert client.acks[m.MAV_CMD_DO_SET_MODE] == m.MAV_RESULT_TEMPORARILY_REJECTED
    assert not client.offboard
    assert any("Offboard" in line for line in client.statustext)


def test_offboard_arm_and_velocity_stream(link):
    client, double = link
    m = dialect()
    client.wait_heartbeat()
    client.set_offboard((1.0, 2.0, 3.0), 0.5)
    assert client.offboard and double.offboard
    set_mode = [p for cmd, p in double.commands if cmd == m.MAV_CMD_DO_SET_MODE]
    assert set_mode and all(p[0] == 1 and p[1] == 6 for p in set_mode)  # param1 = 1, param2 = 6 (not 6 << 16)
    assert client.acks[m.MAV_CMD_DO_SET_MODE] == m.MAV_RESULT_ACCEPTED
    client.arm((1.0, 2.0, 3.0), 0.5)
    assert client.armed and double.armed
    arm = [p for cmd, p in double.commands if cmd == m.MAV_CMD_COMPONENT_ARM_DISARM]
    assert arm and arm[-1][0] == 1
    type_mask, frame, v_ned, yaw_rate_ned = double.setpoints[-1]
    assert type_mask == 1479 and frame == m.MAV_FRAME_LOCAL_NED
    np.testing.assert_allclose(v_ned, [2.0, 1.0, -3.0])  # ENU (east 1, north 2, up 3) -> NED
    assert yaw_rate_ned == pytest.approx(-0.5)  # CCW seen from above is negative about NED down
    assert double.violations == []


def test_arming_retried_until_estimator_ready(link):
    client, double = link
    double.arm_after_s = 0.4
    client.wait_heartbeat()
    client.set_offboard()
    t0 = time.monotonic()
    client.arm()
    assert client.armed and time.monotonic() - t0 > 0.1
    assert any("Preflight Fail" in line for line in client.statustext)


def test_waits_are_bounded_with_px4_messages():
    client = OffboardClient(0, port=0, timeout_s=0.2)
    try:
        t0 = time.monotonic()
        with pytest.raises(PX4Unavailable, match="HEARTBEAT"):
            client.wait_heartbeat()
        assert time.monotonic() - t0 < 1.0
        with pytest.raises(PX4Unavailable, match="wait_heartbeat"):
            client.stream_velocity(np.zeros(3), 0.0)  # nowhere to send yet
    finally:
        client.close()


def test_arm_refused_error_quotes_px4(link):
    client, double = link
    double.arm_after_s = 1e9  # never ready
    client.wait_heartbeat()
    client.set_offboard()
    with pytest.raises(PX4Unavailable, match="arming not confirmed.*Preflight Fail: ekf2 not ready"):
        client.arm(timeout_s=0.3)


def test_telemetry_converted_to_enu_flu(make_rig):
    rig, _double = make_rig()
    yaw = math.radians(120.0)
    rig.sim.pos_w[0] = [3.0, 4.0, 10.0]
    rig.sim.vel_w[0] = [0.5, -1.0, 0.2]
    rig.sim.quat[0] = [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]
    rig.sim.omega_b[0] = [0.0, 0.0, 0.3]
    st = rig.sim.state()
    accel, gyro = rig.sensors.imu(st)
    mag = rig.sensors.mag(st)
    baro = tuple(float(b[0]) for b in rig.sensors.baro(st))

    def frozen_step():  # the same state every step: ground truth and sensors, no physics
        rig.time_usec += 4000
        rig.bridge.send_ground_truth(rig.time_usec, st, 0)
        rig.bridge.send_sensors(rig.time_usec, (accel[0], gyro[0]), mag[0], baro)
        rig.bridge.receive_actuators()

    rig.client.wait_heartbeat(step=frozen_step, timeout_s=5.0)
    deadline = time.monotonic() + 2.0
    while rig.client.local_position() is None or rig.client.attitude() is None:
        assert time.monotonic() < deadline
        frozen_step()
        rig.client.poll(0.001)
    lp, att = rig.client.local_position(), rig.client.attitude()
    np.testing.assert_allclose(lp.pos_w, [3.0, 4.0, 10.0], atol=0.02)
    np.testing.assert_allclose(lp.lin_vel_w, [0.5, -1.0, 0.2], atol=0.01)
    q = att.quat_wxyz
    yaw_back = math.atan2(2 * (q[0] * q[3] + q[1] * q[2]), 1 - 2 * (q[2] ** 2 + q[3] ** 2))
    assert math.degrees(yaw_back) == pytest.approx(120.0, abs=1e-3)
    np.testing.assert_allclose(att.ang_vel_b, [0.0, 0.0, 0.3], atol=1e-6)  # FLU, counter-clockwise positive
    assert frames.yaw_enu_to_ned(yaw) == pytest.approx(math.radians(-30.0))
