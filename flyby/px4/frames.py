"""ENU/FLU <-> NED/FRD conversions at the MAVLink boundary: the only flyby module that knows NED/FRD.

flyby works in world ENU (x east, y north, z up) and body FLU (x forward, y left,
z up) everywhere (see :mod:`flyby.geometry`). PX4 and MAVLink use world
NED (x north, y east, z down) and body FRD (x forward, y right, z down). Every
conversion between the two lives here, and every function is batched over
leading axes (``(..., 3)`` vectors, ``(..., 4)`` quaternions, ``(...,)`` angles).

Quaternions are wxyz (Hamilton), rotating body vectors into the world frame
(``v_w = q * v_b * q^-1``), in flyby and in PX4 alike; only the frames differ:

    q_ned_frd = q_ned_enu * q_enu_flu * q_flu_frd

with ``q_ned_enu`` a half turn about the (east + north) axis and ``q_flu_frd`` a
half turn about body x. Known case: ENU yaw 0 (facing east) is NED yaw +90 deg.

Yaw angles and yaw rates: ENU yaw is counter-clockwise from east, NED yaw is
clockwise from north, so ``yaw_ned = pi/2 - yaw_enu`` and ``yaw_rate_ned = -yaw_rate_enu``.
Body angular rates convert like any body vector (:func:`flu_to_frd`).

Geodetic positions (ENU metres <-> lat/lon about a home point) involve no NED and live in
:mod:`flyby.geometry` (:func:`~flyby.geometry.enu_to_geodetic`,
:func:`~flyby.geometry.geodetic_to_enu`): PX4's own local-frame projection, so a position
sent as lat/lon comes back in PX4's LOCAL_POSITION_NED as the same metres.
"""

from __future__ import annotations

import math

import numpy as np

from flyby.geometry import wrap_pi, yaw_from_quat_wxyz

_HALF_SQRT2 = math.sqrt(0.5)
_SWAP_XY_FLIP_Z = np.array([1.0, 1.0, -1.0])
_FLIP_YZ = np.array([1.0, -1.0, -1.0])


# --- vectors -------------------------------------------------------------------------------------


def enu_to_ned(v_enu: np.ndarray) -> np.ndarray:
    """World vectors ENU -> NED: ``(e, n, u) -> (n, e, -u)``. ``v_enu``: (..., 3); returns float64 (...,
    3)."""
    v = np.asarray(v_enu, dtype=np.float64)
    return v[..., [1, 0, 2]] * _SWAP_XY_FLIP_Z


def ned_to_enu(v_ned: np.ndarray) -> np.ndarray:
    """World vectors NED -> ENU: ``(n, e, d) -> (e, n, -d)``. ``v_ned``: (..., 3); returns float64 (...,
    3)."""
    v = np.asarray(v_ned, dtype=np.float64)
    return v[..., [1, 0, 2]] * _SWAP_XY_FLIP_Z


def flu_to_frd(v_flu: np.ndarray) -> np.ndarray:
    """Body vectors FLU -> FRD: ``(x, y, z) -> (x, -y, -z)``; also body angular rates. (..., 3) float64."""
    return np.asarray(v_flu, dtype=np.float64) * _FLIP_YZ


def frd_to_flu(v_frd: np.ndarray) -> np.ndarray:
    """Body vectors FRD -> FLU: ``(x, y, z) -> (x, -y, -z)``; also body angular rates. (..., 3) float64."""
    return np.asarray(v_frd, dtype=np.float64) * _FLIP_YZ


# --- quaternions ---------------------------------------------------------------------------------


def _canonical(q: np.ndarray) -> np.ndarray:
    """Unit quaternion with ``w >= 0`` (q and -q are the same rotation); float64, new array."""
    norm = np.sqrt(np.sum(q * q, axis=-1, keepdims=True))
    return q * (np.where(q[..., :1] < 0.0, -1.0, 1.0) / norm)


def quat_enu_flu_to_ned_frd(q_wxyz: np.ndarray) -> np.ndarray:
    """Attitude body FLU -> world ENU  to  body FRD -> world NED (both wxyz, body to world).

    ``q_ned_frd = q_ned_enu * q * q_flu_frd`` expands to
    ``(w + z, x + y, x - y, w - z) / sqrt(2)`` (up to sign); the map is its own inverse.

    Args:
        q_wxyz: (..., 4) unit quaternions, flyby's ``quat_wxyz``.

    Returns:
        (..., 4) float64 unit quaternions with ``w >= 0``: PX4's ``q`` (HIL_STATE_QUATERNION
        ``attitude_quaternion``, ATTITUDE_QUATERNION).
    """
    q = np.asarray(q_wxyz, dtype=np.float64)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    out = np.empty(q.shape)
    out[..., 0] = w + z
    out[..., 1] = x + y
    out[..., 2] = x - y
    out[..., 3] = w - z
    out *= _HALF_SQRT2
    return _canonical(out)


def quat_ned_frd_to_enu_flu(q_wxyz: np.ndarray) -> np.ndarray:
    """Inverse of :func:`quat_enu_flu_to_ned_frd`: PX4 attitude (FRD -> NED) to flyby's (FLU -> ENU), wxyz.

    Both constant rotations are half turns (their own inverses), so this is the same map.
    """
    return quat_enu_flu_to_ned_frd(q_wxyz)


def euler_ned_frd_to_quat(roll: np.ndarray, pitch: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """PX4/MAVLink Euler angles (ZYX: yaw about NED down, then pitch, then roll; radians) -> wxyz (..., 4)."""
    r, p, y = (np.asarray(a, dtype=np.float64) * 0.5 for a in (roll, pitch, yaw))
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    q = np.stack(
        (
            cr * cp * cy + sr * sp * sy,
            sr * cp * cy - cr * sp * sy,
            cr * sp * cy + sr * cp * sy,
            cr * cp * sy - sr * sp * cy,
        ),
        axis=-1,
    )
    return _canonical(q)


def quat_to_euler_ned_frd(q_wxyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PX4 attitude quaternion (FRD -> NED, wxyz) -> (roll, pitch, yaw) radians, ZYX as in MAVLink
    ATTITUDE."""
    q = np.asarray(q_wxyz, dtype=np.float64)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    roll = np.arctan2(2.0 * (w * x + y * z), 1.0 - 2.0 * (x * x + y * y))
    pitch = np.arcsin(np.clip(2.0 * (w * y - z * x), -1.0, 1.0))
    return roll, pitch, yaw_from_quat_wxyz(q)


def yaw_enu_to_ned(yaw_enu_rad: np.ndarray) -> np.ndarray:
    """Heading ENU (CCW from east) -> NED (CW from north), radians wrapped to [-pi, pi)."""
    return wrap_pi(0.5 * math.pi - np.asarray(yaw_enu_rad, dtype=np.float64))


def yaw_rate_enu_to_ned(yaw_rate_enu: np.ndarray) -> np.ndarray:
    """World yaw rate about ENU up -> about NED down (rad/s): the sign flips."""
    return -np.asarray(yaw_rate_enu, dtype=np.float64)


def yaw_rate_ned_to_enu(yaw_rate_ned: np.ndarray) -> np.ndarray:
    """World yaw rate about NED down -> about ENU up (rad/s): the sign flips."""
    return -np.asarray(yaw_rate_ned, dtype=np.float64)
