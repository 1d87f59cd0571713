"""flyby.geometry: each function against an independent computation (scipy, or the maths written out),
the wrap boundaries, and one definition of each constant and of the angle wrap in flyby/."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import flyby.sensors
from flyby.geometry import (
    EARTH_RADIUS_M,
    STANDARD_GRAVITY,
    enu_to_geodetic,
    geodetic_to_enu,
    quat_mul,
    quat_wxyz_to_rot,
    rotate_inverse,
    rotation_to_quat_wxyz,
    wrap_pi,
    wrap_pi_scalar,
    yaw_from_quat_wxyz,
    yaw_quat_wxyz,
    yaw_rotation,
)

FLYBY = Path(__file__).resolve().parents[1] / "flyby"
RNG = np.random.default_rng(13)


def _quats(n: int) -> np.ndarray:
    q = RNG.normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def _scipy(q_wxyz: np.ndarray) -> Rotation:
    """scipy's rotation of wxyz quaternions (scipy stores xyzw)."""
    return Rotation.from_quat(np.asarray(q_wxyz)[..., [1, 2, 3, 0]])


def _same_rotation(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """|q1 . q2| = 1: the same rotation (q and -q are one rotation)."""
    return np.abs(np.sum(q1 * q2, axis=-1))


# --- constants -----------------------------------------------------------------------------------


def test_constants_and_their_public_aliases():
    assert STANDARD_GRAVITY == 9.80665  # ISO 80000-3 g_n, PX4 CONSTANTS_ONE_G
    assert EARTH_RADIUS_M == 6_371_000.0  # PX4 CONSTANTS_RADIUS_OF_EARTH
    assert flyby.sensors.EARTH_RADIUS_M is EARTH_RADIUS_M
    assert flyby.sensors.local_to_geodetic is enu_to_geodetic


# --- wrap_pi -------------------------------------------------------------------------------------


def test_wrap_pi_boundaries():
    assert wrap_pi(math.pi) == -math.pi
    assert wrap_pi(-math.pi) == -math.pi
    assert wrap_pi(0.0) == 0.0
    assert wrap_pi(3 * math.pi) == -math.pi
    assert wrap_pi(math.pi - 1e-9) == pytest.approx(math.pi - 1e-9, abs=1e-15)
    assert wrap_pi(-math.pi + 1e-9) == pytest.approx(-math.pi + 1e-9, abs=1e-15)
    # Within an ulp of the seam, the sum with pi rounds onto it: either end, the same angle.
    assert wrap_pi(np.nextafter(math.pi, 0.0)) == -math.pi
    assert wrap_pi(np.nextafter(-math.pi, -4.0)) == math.pi
    assert wrap_pi(2 * math.pi) == pytest.approx(0.0, abs=1e-15)
    np.testing.assert_allclose(
        wrap_pi([0.5 + 2 * math.pi * k for k in (-1000, -3, 1, 7, 1000)]), 0.5, atol=1e-10
    )


def test_wrap_pi_is_the_nearest_equivalent_angle():
    a = np.concatenate([RNG.uniform(-1e4, 1e4, 5000), RNG.uniform(-10, 10, 5000)])
    w = wrap_pi(a)
    assert w.dtype == np.float64 and w.shape == a.shape
    assert (w >= -math.pi).all() and (w < math.pi).all()
    # math.remainder: the IEEE remainder, an independent route to the same angle in [-pi, pi].
    ref = np.array([math.remainder(x, 2 * math.pi) for x in a])
    np.testing.assert_allclose(np.cos(w), np.cos(ref), atol=1e-9)
    np.testing.assert_allclose(np.sin(w), np.sin(ref), atol=1e-9)
    np.testing.assert_allclose(w, ref, atol=1e-9)


def test_wrap_pi_is_the_formula_it_replaced_bit_for_bit():
    a = np.concatenate([RNG.uniform(-50, 50, 5000), [math.pi, -math.pi, 2 * math.pi, 1e6, -1e6, 0.0, -0.0]])
    np.testing.assert_array_equal(wrap_pi(a), (a + np.pi) % (2 * np.pi) - np.pi)
    scalar = np.array([wrap_pi_scalar(float(x)) for x in a])
    np.testing.assert_array_equal(scalar, wrap_pi(a))
    assert wrap_pi(np.float32(1.0)).dtype == np.float64 and wrap_pi(4).dtype == np.float64


# --- quaternions and rotations -------------------------------------------------------------------


def test_quat_mul_composes_rotations():
    q1, q2 = _quats(200), _quats(200)
    expected = (_scipy(q1) * _scipy(q2)).as_quat()[:, [3, 0, 1, 2]]
    np.testing.assert_allclose(_same_rotation(quat_mul(q1, q2), expected), 1.0, atol=1e-12)
    # Written out: the Hamilton product of the basis units, i * j = k, j * i = -k.
    i, j, k = np.eye(4)[1], np.eye(4)[2], np.eye(4)[3]
    np.testing.assert_array_equal(quat_mul(i, j), k)
    np.testing.assert_array_equal(quat_mul(j, i), -k)
    assert quat_mul(q1[:, None], q2[None, :5]).shape == (200, 5, 4)  # broadcasts


def test_quat_wxyz_to_rot_and_rotate_inverse_match_scipy():
    q = _quats(300)
    v_w = RNG.normal(size=(300, 3))
    np.testing.assert_allclose(quat_wxyz_to_rot(q), _scipy(q).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(rotate_inverse(q, v_w), _scipy(q).apply(v_w, inverse=True), atol=1e-12)


def test_quat_wxyz_to_rot_known_cases():
    yaw90 = np.array([[math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)]])
    np.testing.assert_allclose(quat_wxyz_to_rot(yaw90)[0] @ [1.0, 0, 0], [0, 1, 0], atol=1e-12)  # x north
    np.testing.assert_allclose(rotate_inverse(yaw90, np.array([[0.0, 1.0, 0.0]])), [[1.0, 0, 0]], atol=1e-12)
    roll90 = np.array([[math.cos(math.pi / 4), math.sin(math.pi / 4), 0.0, 0.0]])
    np.testing.assert_allclose(quat_wxyz_to_rot(roll90)[0] @ [0, 0, 1.0], [0, -1, 0], atol=1e-12)
    r = quat_wxyz_to_rot(_quats(8))
    np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (8, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)


@pytest.mark.parametrize(
    "rot",
    [
        *Rotation.from_quat(RNG.normal(size=(20, 4))).as_matrix(),  # mostly trace > 0
        np.diag([1.0, -1.0, -1.0]),  # half turns: trace -1, each diagonal branch
        np.diag([-1.0, 1.0, -1.0]),
        np.diag([-1.0, -1.0, 1.0]),
        Rotation.from_rotvec([0.1, 3.0, -0.2]).as_matrix(),
        Rotation.from_rotvec([0.2, -0.1, 3.1]).as_matrix(),
    ],
)
def test_rotation_to_quat_wxyz_matches_scipy(rot):
    q = rotation_to_quat_wxyz(rot)
    assert q.shape == (4,) and q.dtype == np.float64 and q[0] >= 0.0
    assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-15)
    expected = Rotation.from_matrix(rot).as_quat()[[3, 0, 1, 2]]
    assert _same_rotation(q, expected) == pytest.approx(1.0, abs=1e-12)


# --- yaw -----------------------------------------------------------------------------------------


def test_yaw_from_quat_wxyz_is_the_zyx_yaw():
    q = _quats(300)
    np.testing.assert_allclose(yaw_from_quat_wxyz(q), _scipy(q).as_euler("ZYX")[:, 0], atol=1e-12)
    # Independent of the roll and pitch: the heading of body x projected on the world xy plane.
    x_w = quat_wxyz_to_rot(q)[:, :, 0]
    np.testing.assert_allclose(yaw_from_quat_wxyz(q), np.arctan2(x_w[:, 1], x_w[:, 0]), atol=1e-12)
    assert yaw_from_quat_wxyz(q.reshape(3, 100, 4)).shape == (3, 100)  # leading axes


def test_yaw_rotation_and_yaw_quat_match_scipy():
    yaw = RNG.uniform(-4.0, 4.0, 100)
    np.testing.assert_allclose(
        yaw_rotation(yaw), Rotation.from_euler("z", yaw[:, None]).as_matrix(), atol=1e-15
    )
    expected = Rotation.from_euler("z", yaw[:, None]).as_quat()[:, [3, 0, 1, 2]]
    np.testing.assert_allclose(_same_rotation(yaw_quat_wxyz(yaw), expected), 1.0, atol=1e-15)
    assert yaw_rotation(0.5).shape == (1, 3, 3)  # a scalar is one drone


def test_yaw_round_trips():
    yaw = np.concatenate([RNG.uniform(-10.0, 10.0, 500), [math.pi, -math.pi, 0.0]])
    q = yaw_quat_wxyz(yaw)
    back = yaw_from_quat_wxyz(q)
    np.testing.assert_allclose(np.cos(back - yaw), 1.0, atol=1e-12)
    np.testing.assert_allclose(back[:-3], wrap_pi(yaw[:-3]), atol=1e-12)
    np.testing.assert_allclose(quat_wxyz_to_rot(q), yaw_rotation(yaw), atol=1e-15)
    np.testing.assert_allclose(
        yaw_from_quat_wxyz(np.array([rotation_to_quat_wxyz(r) for r in yaw_rotation(yaw)])), back, atol=1e-12
    )


# --- geodetic ------------------------------------------------------------------------------------

HOMES = [(47.397742, 8.545594, 488.0), (0.0, 0.0, 0.0), (-33.9, 151.2, 10.0), (88.9, -179.5, 5.0)]


def _sensors_local_to_geodetic_before_issue_13(pos_w, home_lat_deg, home_lon_deg, home_alt_m):
    """flyby.sensors.suite.local_to_geodetic as it was before it became flyby.geometry.enu_to_geodetic."""
    pos = np.asarray(pos_w, dtype=np.float64)
    lat0, lon0 = math.radians(home_lat_deg), math.radians(home_lon_deg)
    x_rad = pos[:, 1] / 6371000.0  # north
    y_rad = pos[:, 0] / 6371000.0  # east
    c = np.hypot(x_rad, y_rad)
    sin_c, cos_c = np.sin(c), np.cos(c)
    safe_c = np.where(c > 0.0, c, 1.0)
    lat = np.arcsin(cos_c * math.sin(lat0) + x_rad * sin_c * math.cos(lat0) / safe_c)
    lon = lon0 + np.arctan2(y_rad * sin_c, c * math.cos(lat0) * cos_c - x_rad * math.sin(lat0) * sin_c)
    lat = np.where(c > 0.0, lat, lat0)
    lon = np.where(c > 0.0, lon, lon0)
    return np.degrees(lat), np.degrees(lon), home_alt_m + pos[:, 2]


def _positions(n: int) -> np.ndarray:
    """ENU positions from 1 um to 1000 km, and the origin."""
    scale = 10.0 ** RNG.integers(-6, 7, (n, 1))
    return np.concatenate([RNG.normal(size=(n, 3)) * scale, np.zeros((1, 3))])


@pytest.mark.parametrize("home", HOMES)
def test_enu_to_geodetic_gives_the_sensor_suites_former_numbers_bit_for_bit(home):
    """The GPS model's own copy of the projection was merged into this one: same numbers."""
    pos = _positions(3000)
    for got, before in zip(
        enu_to_geodetic(pos, *home), _sensors_local_to_geodetic_before_issue_13(pos, *home)
    ):
        np.testing.assert_array_equal(got, before)


@pytest.mark.parametrize("home", HOMES)
def test_geodetic_projection_is_azimuthal_equidistant(home):
    pos = np.c_[RNG.uniform(-2e4, 2e4, (200, 2)), RNG.uniform(-50, 500, 200)]
    lat, lon, alt = enu_to_geodetic(pos, *home)
    # Great-circle distance (haversine) and initial bearing from home are the local ones.
    lat0, lon0, la, lo = (np.radians(a) for a in (home[0], home[1], lat, lon))
    hav = np.sin((la - lat0) / 2) ** 2 + np.cos(lat0) * np.cos(la) * np.sin((lo - lon0) / 2) ** 2
    np.testing.assert_allclose(
        2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(hav)), np.hypot(pos[:, 0], pos[:, 1]), rtol=1e-9
    )
    bearing = np.arctan2(
        np.sin(lo - lon0) * np.cos(la),
        np.cos(lat0) * np.sin(la) - np.sin(lat0) * np.cos(la) * np.cos(lo - lon0),
    )
    np.testing.assert_allclose(np.cos(bearing - np.arctan2(pos[:, 0], pos[:, 1])), 1.0, atol=1e-12)
    np.testing.assert_allclose(alt, home[2] + pos[:, 2], rtol=0, atol=1e-9)
    np.testing.assert_allclose(geodetic_to_enu(lat, lon, alt, *home), pos, atol=1e-6)
    assert enu_to_geodetic(pos[0], *home)[0].shape == ()  # one position, no batch axis


# --- one definition each -------------------------------------------------------------------------

NOT_YET = {"geometry.py"}  # the one home of each
DUPLICATES = {
    "standard gravity": re.compile(r"9\.80665"),
    "Earth radius": re.compile(r"6_?371_?000|6\.371e6|6371e3"),
    "angle wrap": re.compile(
        r"%\s*\(?\s*2(\.0)?\s*\*\s*(math\.|np\.|numpy\.)?pi\b|%\s*(math|np|numpy)\.tau\b"
    ),
}


def test_the_duplicate_patterns_match_what_they_replaced():
    for text in (
        "(a + math.pi) % (2.0 * math.pi) - math.pi",
        "(a + np.pi) % (2 * np.pi) - np.pi",
        "a % math.tau",
    ):
        assert DUPLICATES["angle wrap"].search(text)
    assert DUPLICATES["Earth radius"].search("R = 6371000.0") and DUPLICATES["Earth radius"].search(
        "6_371_000.0"
    )
    assert not DUPLICATES["angle wrap"].search("rng.uniform(0, 2 * math.pi)")


def test_no_module_defines_its_own_gravity_earth_radius_or_angle_wrap():
    offenders = []
    for path in sorted(FLYBY.rglob("*.py")):
        rel = path.relative_to(FLYBY).as_posix()
        if rel in NOT_YET:
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            offenders += [
                f"flyby/{rel}:{lineno}: {what}: {line.strip()}"
                for what, pattern in DUPLICATES.items()
                if pattern.search(line)
            ]
    assert not offenders, "use flyby.geometry instead:\n" + "\n".join(offenders)
