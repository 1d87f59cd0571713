"""Shared geometry and physical constants: frames, rotations, yaw, angle wrapping, gravity, the Earth.

The one home of these; every other flyby module imports them from here.

Frames and conventions (flyby-wide):

- World ``w``: ENU, metres: x east, y north, z up; the ground is ``z = 0``.
- Body ``b``: FLU: x forward, y left, z up.
- Yaw ``yaw_rad``: rotation about world z, radians, 0 = body x facing east,
  counter-clockwise positive.
- Rotation matrices are ``R_ab``: columns are the axes of frame ``b`` expressed in
  frame ``a``, so ``p_a = R_ab @ p_b``. An attitude is ``R_wb``, body to world.
- Quaternions are wxyz (scalar first, as Isaac Sim and MuJoCo), Hamilton product,
  unit norm, rotating body vectors into the world: ``v_w = q * v_b * q^-1``.
- NED/FRD exist only at the MAVLink boundary, :mod:`flyby.px4.frames`.

Units: metres, seconds, radians, m/s^2; arrays are float64.

Constants:

- :data:`STANDARD_GRAVITY` = 9.80665 m/s^2: the standard acceleration of gravity
  g_n (ISO 80000-3; CODATA), PX4's ``CONSTANTS_ONE_G``.
- :data:`EARTH_RADIUS_M` = 6,371,000 m: PX4's ``CONSTANTS_RADIUS_OF_EARTH``
  (``src/lib/geo``), the sphere of its local-frame map projection.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "EARTH_RADIUS_M",
    "STANDARD_GRAVITY",
    "enu_to_geodetic",
    "geodetic_to_enu",
    "quat_mul",
    "quat_wxyz_to_rot",
    "rotate_inverse",
    "rotation_to_quat_wxyz",
    "wrap_pi",
    "wrap_pi_scalar",
    "yaw_from_quat_wxyz",
    "yaw_quat_wxyz",
    "yaw_rotation",
]

#: m/s^2, standard gravity g_n (ISO 80000-3, CODATA; PX4 ``CONSTANTS_ONE_G``).
STANDARD_GRAVITY = 9.80665

#: m, radius of PX4's spherical Earth (``CONSTANTS_RADIUS_OF_EARTH``, ``src/lib/geo``).
EARTH_RADIUS_M = 6_371_000.0


# --- angles --------------------------------------------------------------------------------------


def wrap_pi(angle_rad: np.ndarray) -> np.ndarray:
    """Angles wrapped to [-pi, pi): ``(angle + pi) % (2 pi) - pi``.

    ``pi`` maps to ``-pi``. At the seam the sum with ``pi`` rounds: the float just below
    ``pi`` gives ``-pi`` and the float just below ``-pi`` gives ``+pi`` (the same angle).

    Args:
        angle_rad: (...,) radians, any shape; scalars and lists are accepted.

    Returns:
        (...,) float64 radians, same shape.
    """
    return (np.asarray(angle_rad, dtype=np.float64) + math.pi) % (2.0 * math.pi) - math.pi


def wrap_pi_scalar(angle_rad: float) -> float:
    """One angle wrapped to [-pi, pi), radians: :func:`wrap_pi` for a Python float, same numbers."""
    return (angle_rad + math.pi) % (2.0 * math.pi) - math.pi


# --- quaternions and rotations -------------------------------------------------------------------


def quat_mul(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Hamilton product ``q1 * q2`` of wxyz quaternions.

    Args:
        q1, q2: (..., 4) wxyz quaternions, broadcast over leading axes.

    Returns:
        (..., 4) float64 wxyz. For rotations, ``q1 * q2`` applies ``q2`` first.
    """
    a = np.asarray(q1, dtype=np.float64)
    b = np.asarray(q2, dtype=np.float64)
    w1, x1, y1, z1 = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    w2, x2, y2, z2 = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack(
        (
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ),
        axis=-1,
    )


def _quat_rot_coefficients() -> np.ndarray:
    """(16, 9) coefficients c with R_wb.flat[i] = sum_kl c[4k + l, i] q_k q_l (homogeneous in q)."""
    coef = np.zeros((4, 4, 3, 3))
    w, x, y, z = range(4)

    def put(i: int, j: int, terms: list[tuple[float, int, int]]) -> None:
        for value, k, m in terms:
            coef[k, m, i, j] += value

    put(0, 0, [(1, w, w), (1, x, x), (-1, y, y), (-1, z, z)])
    put(0, 1, [(1, x, y), (1, y, x), (-1, w, z), (-1, z, w)])
    put(0, 2, [(1, x, z), (1, z, x), (1, w, y), (1, y, w)])
    put(1, 0, [(1, x, y), (1, y, x), (1, w, z), (1, z, w)])
    put(1, 1, [(1, w, w), (-1, x, x), (1, y, y), (-1, z, z)])
    put(1, 2, [(1, y, z), (1, z, y), (-1, w, x), (-1, x, w)])
    put(2, 0, [(1, x, z), (1, z, x), (-1, w, y), (-1, y, w)])
    put(2, 1, [(1, y, z), (1, z, y), (1, w, x), (1, x, w)])
    put(2, 2, [(1, w, w), (-1, x, x), (-1, y, y), (1, z, z)])
    return coef.reshape(16, 9)


_QUAT_ROT = _quat_rot_coefficients()


def quat_wxyz_to_rot(quat_wxyz: np.ndarray) -> np.ndarray:
    """Rotation matrices R_wb from attitude quaternions.

    Uses the homogeneous quadratic form, so a quaternion of norm s gives s^2 R:
    pass unit quaternions (MuJoCo keeps ``qpos`` quaternions normalised).

    Args:
        quat_wxyz: (N, 4) unit quaternions, wxyz, body to world.

    Returns:
        (N, 3, 3) float64 R_wb.
    """
    q = np.asarray(quat_wxyz, dtype=np.float64)
    n = q.shape[0]
    return ((q[:, :, None] * q[:, None, :]).reshape(n, 16) @ _QUAT_ROT).reshape(n, 3, 3)


def rotate_inverse(quat_wxyz: np.ndarray, v_w: np.ndarray) -> np.ndarray:
    """World vectors expressed in the body frames: ``R_wb^T v_w``.

    Args:
        quat_wxyz: (N, 4) unit quaternions, wxyz, body to world.
        v_w: (N, 3) vectors in the world frame (any unit).

    Returns:
        (N, 3) float64, the same vectors in each body frame, same unit.
    """
    return np.einsum("nji,nj->ni", quat_wxyz_to_rot(quat_wxyz), np.asarray(v_w, dtype=np.float64))


def rotation_to_quat_wxyz(rot: np.ndarray) -> np.ndarray:
    """One rotation matrix to its unit quaternion (Shepperd's method).

    Args:
        rot: (3, 3) rotation matrix R_ab.

    Returns:
        (4,) float64 unit quaternion, wxyz, rotating frame ``b`` into frame ``a``, with ``w >= 0``.
    """
    m = rot
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


# --- yaw -----------------------------------------------------------------------------------------


def yaw_from_quat_wxyz(quat_wxyz: np.ndarray) -> np.ndarray:
    """Heading of attitude quaternions: the angle of body x projected on the world xy plane.

    The ZYX (yaw-pitch-roll) yaw, ``atan2(2 (w z + x y), 1 - 2 (y^2 + z^2))``.

    Args:
        quat_wxyz: (..., 4) unit quaternions, wxyz, body to world.

    Returns:
        (...,) float64 radians in [-pi, pi], counter-clockwise from world x about world z
        (ENU: from east).
    """
    q = np.asarray(quat_wxyz, dtype=np.float64)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def yaw_rotation(yaw_rad: np.ndarray) -> np.ndarray:
    """R_wb for level flight: rotations about world z.

    Args:
        yaw_rad: (N,) radians (a scalar is taken as N = 1).

    Returns:
        (N, 3, 3) float64 R_wb.
    """
    yaw_rad = np.atleast_1d(yaw_rad)
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    rot = np.zeros((yaw_rad.shape[0], 3, 3))
    rot[:, 0, 0], rot[:, 0, 1] = c, -s
    rot[:, 1, 0], rot[:, 1, 1] = s, c
    rot[:, 2, 2] = 1.0
    return rot


def yaw_quat_wxyz(yaw_rad: np.ndarray) -> np.ndarray:
    """Quaternions of level attitudes: rotations about world z.

    Args:
        yaw_rad: (N,) radians.

    Returns:
        (N, 4) float64 unit quaternions, wxyz, body to world: ``(cos(yaw/2), 0, 0, sin(yaw/2))``.
    """
    half = 0.5 * np.asarray(yaw_rad, dtype=np.float64)
    q = np.zeros((half.shape[0], 4))
    q[:, 0] = np.cos(half)
    q[:, 3] = np.sin(half)
    return q


# --- geodetic ------------------------------------------------------------------------------------


def enu_to_geodetic(
    pos_w: np.ndarray, home_lat_deg: float, home_lon_deg: float, home_alt_m: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local ENU positions about a home point -> latitude, longitude, altitude.

    Inverse azimuthal equidistant projection on a sphere of radius :data:`EARTH_RADIUS_M`,
    the projection PX4 uses for its local frame (``lib/geo`` ``MapProjection``), so PX4's
    local position equals flyby's world position (x east, y north).

    Args:
        pos_w: (..., 3) metres, world ENU; the origin is the home point.
        home_lat_deg, home_lon_deg: degrees, WGS84, of the origin.
        home_alt_m: metres above mean sea level of ``z = 0``.

    Returns:
        lat_deg, lon_deg (degrees) and alt_m (metres above mean sea level): three (...,) float64.
    """
    p = np.asarray(pos_w, dtype=np.float64)
    x_rad = p[..., 1] / EARTH_RADIUS_M  # north
    y_rad = p[..., 0] / EARTH_RADIUS_M  # east
    lat0, lon0 = math.radians(home_lat_deg), math.radians(home_lon_deg)
    sin_lat0, cos_lat0 = math.sin(lat0), math.cos(lat0)
    c = np.hypot(x_rad, y_rad)
    sin_c, cos_c = np.sin(c), np.cos(c)
    safe_c = np.where(c > 0.0, c, 1.0)
    lat = np.where(
        c > 0.0, np.arcsin(np.clip(cos_c * sin_lat0 + x_rad * sin_c * cos_lat0 / safe_c, -1, 1)), lat0
    )
    lon = np.where(
        c > 0.0, lon0 + np.arctan2(y_rad * sin_c, c * cos_lat0 * cos_c - x_rad * sin_lat0 * sin_c), lon0
    )
    return np.degrees(lat), np.degrees(lon), home_alt_m + p[..., 2]


def geodetic_to_enu(
    lat_deg: np.ndarray,
    lon_deg: np.ndarray,
    alt_m: np.ndarray,
    home_lat_deg: float,
    home_lon_deg: float,
    home_alt_m: float,
) -> np.ndarray:
    """Latitude, longitude, altitude -> local ENU positions about a home point.

    Forward azimuthal equidistant projection on a sphere of radius :data:`EARTH_RADIUS_M`
    (PX4's local-frame projection); the inverse of :func:`enu_to_geodetic`.

    Args:
        lat_deg, lon_deg: (...,) degrees, WGS84.
        alt_m: (...,) metres above mean sea level.
        home_lat_deg, home_lon_deg, home_alt_m: the origin, as in :func:`enu_to_geodetic`.

    Returns:
        (..., 3) float64 metres, world ENU.
    """
    lat = np.radians(np.asarray(lat_deg, dtype=np.float64))
    lon = np.radians(np.asarray(lon_deg, dtype=np.float64))
    lat0, lon0 = math.radians(home_lat_deg), math.radians(home_lon_deg)
    sin_lat0, cos_lat0 = math.sin(lat0), math.cos(lat0)
    sin_lat, cos_lat = np.sin(lat), np.cos(lat)
    cos_dlon = np.cos(lon - lon0)
    arg = np.clip(sin_lat0 * sin_lat + cos_lat0 * cos_lat * cos_dlon, -1.0, 1.0)
    c = np.arccos(arg)
    k = np.where(np.abs(c) > 0.0, c / np.where(np.abs(c) > 0.0, np.sin(c), 1.0), 1.0)
    north = k * (cos_lat0 * sin_lat - sin_lat0 * cos_lat * cos_dlon) * EARTH_RADIUS_M
    east = k * cos_lat * np.sin(lon - lon0) * EARTH_RADIUS_M
    up = np.asarray(alt_m, dtype=np.float64) - home_alt_m
    return np.stack(np.broadcast_arrays(east, north, up), axis=-1)
