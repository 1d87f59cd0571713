"""ENU/FLU <-> NED/FRD conversions: known cases and round trips (flyby/px4/frames.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flyby.geometry import EARTH_RADIUS_M, enu_to_geodetic, geodetic_to_enu, quat_mul, yaw_quat_wxyz
from flyby.px4 import frames

RNG = np.random.default_rng(7)


def _random_quats(n: int) -> np.ndarray:
    q = RNG.normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def _rot(q: np.ndarray) -> np.ndarray:
    """R (3, 3) with v_world = R v_body, straight from the quaternion algebra (independent of frames.py)."""
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def _same_rotation(q1: np.ndarray, q2: np.ndarray) -> bool:
    return bool(np.isclose(abs(float(np.dot(q1, q2))), 1.0, atol=1e-9))


def test_vectors_known_cases():
    np.testing.assert_allclose(frames.enu_to_ned([1.0, 2.0, 3.0]), [2.0, 1.0, -3.0])
    np.testing.assert_allclose(frames.ned_to_enu([2.0, 1.0, -3.0]), [1.0, 2.0, 3.0])
    np.testing.assert_allclose(frames.flu_to_frd([1.0, 2.0, 3.0]), [1.0, -2.0, -3.0])
    np.testing.assert_allclose(frames.frd_to_flu([1.0, -2.0, -3.0]), [1.0, 2.0, 3.0])
    # Accelerometer at rest, level: +g up in FLU is -g along FRD's z (down).
    np.testing.assert_allclose(frames.flu_to_frd([0.0, 0.0, 9.81]), [0.0, 0.0, -9.81])


def test_vectors_round_trip_batched():
    v = RNG.normal(size=(5, 7, 3))
    np.testing.assert_allclose(frames.ned_to_enu(frames.enu_to_ned(v)), v)
    np.testing.assert_allclose(frames.frd_to_flu(frames.flu_to_frd(v)), v)
    assert frames.enu_to_ned(v).shape == v.shape


def test_yaw_zero_east_is_ned_yaw_plus_90():
    q_enu = np.array([1.0, 0.0, 0.0, 0.0])  # ENU yaw 0: facing east
    q_ned = frames.quat_enu_flu_to_ned_frd(q_enu)
    np.testing.assert_allclose(q_ned, [math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)], atol=1e-12)
    roll, pitch, yaw = frames.quat_to_euler_ned_frd(q_ned)
    assert abs(roll) < 1e-12 and abs(pitch) < 1e-12
    assert yaw == pytest.approx(math.pi / 2)
    assert frames.yaw_enu_to_ned(0.0) == pytest.approx(math.pi / 2)


@pytest.mark.parametrize("yaw_enu_deg", [-170.0, -90.0, 0.0, 30.0, 90.0, 180.0])
def test_yaw_headings_match_quaternions(yaw_enu_deg):
    yaw_enu = math.radians(yaw_enu_deg)
    q_ned = frames.quat_enu_flu_to_ned_frd(yaw_quat_wxyz(np.array([yaw_enu]))[0])
    _, _, yaw_ned = frames.quat_to_euler_ned_frd(q_ned)
    expected = frames.yaw_enu_to_ned(yaw_enu)
    assert math.remainder(float(yaw_ned) - float(expected), 2 * math.pi) == pytest.approx(0.0, abs=1e-9)


def test_north_facing_and_nose_up_known_cases():
    # ENU yaw +90 deg faces north: NED yaw 0, identity attitude.
    q = frames.quat_enu_flu_to_ned_frd(yaw_quat_wxyz(np.array([math.pi / 2]))[0])
    assert _same_rotation(q, np.array([1.0, 0.0, 0.0, 0.0]))
    # Facing north, pitched nose-up by 10 deg: FLU pitch is about body +y (left), which is
    # rotation about -y of FRD, so PX4 sees pitch +10 deg (nose up is positive in both).
    a = math.radians(10.0)
    q_yaw = yaw_quat_wxyz(np.array([math.pi / 2]))[0]
    q_pitch_flu = np.array([math.cos(-a / 2), 0.0, math.sin(-a / 2), 0.0])  # nose up: -a about left axis
    q_enu = quat_mul(q_yaw, q_pitch_flu)
    roll, pitch, yaw = frames.quat_to_euler_ned_frd(frames.quat_enu_flu_to_ned_frd(q_enu))
    assert pitch == pytest.approx(a)
    assert roll == pytest.approx(0.0, abs=1e-12) and yaw == pytest.approx(0.0, abs=1e-12)


def test_quaternion_round_trip_and_vector_consistency():
    q_enu = _random_quats(200)
    q_ned = frames.quat_enu_flu_to_ned_frd(q_enu)
    back = frames.quat_ned_frd_to_enu_flu(q_ned)
    for a, b in zip(q_enu, back):
        assert _same_rotation(a, b)
    # Rotating a body vector then converting == converting then rotating in the other frames.
    v_flu = RNG.normal(size=(200, 3))
    for q1, q2, v in zip(q_enu, q_ned, v_flu):
        v_enu = _rot(q1) @ v
        v_ned = _rot(q2) @ frames.flu_to_frd(v)
        np.testing.assert_allclose(frames.enu_to_ned(v_enu), v_ned, atol=1e-12)
    assert np.all(q_ned[:, 0] >= 0.0)
    np.testing.assert_allclose(np.linalg.norm(q_ned, axis=1), 1.0)


def test_euler_round_trip():
    roll = RNG.uniform(-1.5, 1.5, 100)
    pitch = RNG.uniform(-1.5, 1.5, 100)
    yaw = RNG.uniform(-3.1, 3.1, 100)
    r2, p2, y2 = frames.quat_to_euler_ned_frd(frames.euler_ned_frd_to_quat(roll, pitch, yaw))
    np.testing.assert_allclose(r2, roll, atol=1e-9)
    np.testing.assert_allclose(p2, pitch, atol=1e-9)
    np.testing.assert_allclose(y2, yaw, atol=1e-9)


def test_angular_rates_and_yaw_rate():
    # Yawing counter-clockwise seen from above (ENU +z rate) is a negative NED yaw rate and a
    # negative FRD body z rate.
    assert frames.yaw_rate_enu_to_ned(0.5) == pytest.approx(-0.5)
    assert frames.yaw_rate_ned_to_enu(-0.5) == pytest.approx(0.5)
    np.testing.assert_allclose(frames.flu_to_frd([0.1, 0.2, 0.5]), [0.1, -0.2, -0.5])


def test_geodetic_round_trip_and_scale():
    home = (47.397742, 8.545594, 488.0)
    pos = np.array([[0.0, 0.0, 0.0], [100.0, 0.0, 5.0], [0.0, 100.0, -2.0], [-350.0, 820.0, 40.0]])
    lat, lon, alt = enu_to_geodetic(pos, *home)
    assert (
        lat[0] == pytest.approx(home[0])
        and lon[0] == pytest.approx(home[1])
        and alt[0] == pytest.approx(488.0)
    )
    # 100 m north is 100 / (R * pi / 180) degrees of latitude; 100 m east moves longitude only.
    assert lat[2] - home[0] == pytest.approx(100.0 / (EARTH_RADIUS_M * math.pi / 180.0), rel=1e-6)
    assert lat[1] == pytest.approx(home[0], abs=1e-7) and lon[1] > home[1]  # great circle: 1 mm south
    back = geodetic_to_enu(lat, lon, alt, *home)
    np.testing.assert_allclose(back, pos, atol=1e-6)
