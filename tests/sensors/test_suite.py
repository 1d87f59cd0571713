"""Sensor suite: IMU, magnetometer, barometer and GPS in flyby frames, noise and bias, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flyby.config import check
from flyby.dynamics.multirotor import DroneState
from flyby.errors import ConfigError
from flyby.geometry import EARTH_RADIUS_M, STANDARD_GRAVITY, yaw_quat_wxyz
from flyby.sensors import SensorCfg, SensorSuite, isa_altitude_m, isa_pressure_hpa, local_to_geodetic

NOISELESS = {
    "accel_noise_std": 0.0,
    "gyro_noise_std": 0.0,
    "mag_noise_std": 0.0,
    "baro_noise_std": 0.0,
    "gps_xy_noise_std": 0.0,
    "gps_z_noise_std": 0.0,
    "gps_vel_noise_std": 0.0,
}


def state(n: int = 1, pos=None, yaw=None, vel=None, rate=None, accel=None) -> DroneState:
    return DroneState(
        pos_w=np.zeros((n, 3)) if pos is None else np.asarray(pos, dtype=float).reshape(n, 3),
        quat_wxyz=yaw_quat_wxyz(np.zeros(n) if yaw is None else np.asarray(yaw, dtype=float)),
        lin_vel_w=np.zeros((n, 3)) if vel is None else np.asarray(vel, dtype=float).reshape(n, 3),
        ang_vel_b=np.zeros((n, 3)) if rate is None else np.asarray(rate, dtype=float).reshape(n, 3),
        specific_force_b=np.tile([0.0, 0.0, STANDARD_GRAVITY], (n, 1))
        if accel is None
        else np.asarray(accel, dtype=float),
        contact=np.zeros(n, dtype=bool),
    )


def test_defaults_are_valid_and_rates_match_px4():
    cfg = check(SensorCfg())
    assert cfg.gps_rate_hz == 10.0
    with pytest.raises(TypeError, match="imu_rate_hz"):  # PX4's IMU rate is 1 / physics_dt, not a setting
        SensorCfg(imu_rate_hz=100.0)
    assert cfg.home_lat_deg == pytest.approx(47.397742) and cfg.home_alt_m == 488.0
    with pytest.raises(ConfigError, match="accel_noise_std"):
        check(SensorCfg(accel_noise_std=-1.0))
    with pytest.raises(ValueError, match="num_drones"):
        SensorSuite(SensorCfg(), 0)


def test_imu_at_rest_reads_plus_g_flu_with_configured_noise_and_bias():
    n = 4000
    cfg = SensorCfg(
        accel_noise_std=0.05,
        gyro_noise_std=0.01,
        accel_bias_b=(0.1, -0.2, 0.3),
        gyro_bias_b=(0.01, 0.0, -0.02),
    )
    suite = SensorSuite(cfg, n, seed=0)
    accel, gyro = suite.imu(state(n))
    np.testing.assert_allclose(accel.mean(axis=0), [0.1, -0.2, STANDARD_GRAVITY + 0.3], atol=0.005)
    np.testing.assert_allclose(accel.std(axis=0), 0.05, rtol=0.05)
    np.testing.assert_allclose(gyro.mean(axis=0), [0.01, 0.0, -0.02], atol=0.001)
    np.testing.assert_allclose(gyro.std(axis=0), 0.01, rtol=0.05)


def test_noiseless_imu_passes_the_state_through():
    suite = SensorSuite(SensorCfg(**NOISELESS), 2)
    st = state(2, rate=[[0.1, -0.2, 0.3], [0, 0, 1.0]], accel=[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    accel, gyro = suite.imu(st)
    np.testing.assert_array_equal(accel, st.specific_force_b)
    np.testing.assert_array_equal(gyro, st.ang_vel_b)


def test_same_seed_same_readings():
    a = SensorSuite(SensorCfg(), 3, seed=42)
    b = SensorSuite(SensorCfg(), 3, seed=42)
    st = state(3)
    for _ in range(3):
        np.testing.assert_array_equal(a.imu(st)[0], b.imu(st)[0])
        np.testing.assert_array_equal(a.gps(st).lat_deg, b.gps(st).lat_deg)
    b.reseed(7)
    assert not np.array_equal(a.mag(st), b.mag(st))


def test_magnetometer_rotates_the_world_field_into_the_body():
    field = (0.02, 0.2, -0.43)
    suite = SensorSuite(SensorCfg(**NOISELESS, mag_field_w=field), 2)
    mag = suite.mag(state(2, yaw=[0.0, math.pi / 2]))
    np.testing.assert_allclose(mag[0], field, atol=1e-12)  # facing east: body x = east, y = north
    # Facing north: body x = north, body y = west.
    np.testing.assert_allclose(mag[1], [field[1], -field[0], field[2]], atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(mag, axis=1), np.linalg.norm(field))
    # The default field points north and down, about half a gauss (Zurich).
    default = np.asarray(SensorCfg().mag_field_w)
    assert default[1] > 0 and default[2] < 0 and 0.4 < np.linalg.norm(default) < 0.6


def test_barometer_follows_the_isa_model():
    suite = SensorSuite(SensorCfg(**NOISELESS), 3)
    pressure, alt, temp = suite.baro(state(3, pos=[[0, 0, 0.0], [0, 0, 100.0], [50, 50, -488.0]]))
    assert pressure[2] == pytest.approx(1013.25)  # sea level
    assert pressure[0] == pytest.approx(isa_pressure_hpa(488.0))
    assert 11.0 < pressure[0] - pressure[1] < 12.0  # about 1.1 hPa per 10 m near the ground
    np.testing.assert_allclose(alt, [488.0, 588.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(temp, [15.0 - 6.5 * 0.488, 15.0 - 6.5 * 0.588, 15.0])
    assert isa_altitude_m(isa_pressure_hpa(np.array([1234.5])))[0] == pytest.approx(1234.5)
    biased = SensorSuite(SensorCfg(**{**NOISELESS, "baro_bias_hpa": -1.0}), 1)
    assert biased.baro(state(1))[0][0] == pytest.approx(pressure[0] - 1.0)


def test_gps_at_home_and_around_it():
    cfg = SensorCfg(**NOISELESS)
    suite = SensorSuite(cfg, 3)
    fix = suite.gps(state(3, pos=[[0, 0, 0.0], [0, 1000.0, 20.0], [300.0, -400.0, 5.0]], vel=[[1, 2, 3]] * 3))
    assert fix.lat_deg[0] == cfg.home_lat_deg and fix.lon_deg[0] == cfg.home_lon_deg
    np.testing.assert_allclose(fix.alt_m, [488.0, 508.0, 493.0])
    np.testing.assert_allclose(fix.vel_enu, [[1, 2, 3]] * 3)
    # 1 km north is 1000 / R radians of latitude, same longitude.
    assert fix.lat_deg[1] == pytest.approx(cfg.home_lat_deg + math.degrees(1000.0 / EARTH_RADIUS_M), abs=1e-9)
    assert fix.lon_deg[1] == pytest.approx(cfg.home_lon_deg, abs=1e-12)
    # Azimuthal equidistant: the great-circle distance and bearing from home are preserved.
    lat0, lon0 = math.radians(cfg.home_lat_deg), math.radians(cfg.home_lon_deg)
    lat, lon = math.radians(fix.lat_deg[2]), math.radians(fix.lon_deg[2])
    hav = math.sin((lat - lat0) / 2) ** 2 + math.cos(lat0) * math.cos(lat) * math.sin((lon - lon0) / 2) ** 2
    assert 2 * EARTH_RADIUS_M * math.asin(math.sqrt(hav)) == pytest.approx(500.0, abs=1e-6)
    bearing = math.atan2(
        math.sin(lon - lon0) * math.cos(lat),
        math.cos(lat0) * math.sin(lat) - math.sin(lat0) * math.cos(lat) * math.cos(lon - lon0),
    )
    assert bearing == pytest.approx(math.atan2(300.0, -400.0), abs=1e-9)  # east over north


def test_gps_noise_has_the_configured_spread():
    n = 4000
    suite = SensorSuite(
        SensorCfg(gps_xy_noise_std=1.0, gps_z_noise_std=2.0, gps_vel_noise_std=0.3), n, seed=3
    )
    fix = suite.gps(state(n))
    cfg = suite.cfg
    north_m = np.radians(fix.lat_deg - cfg.home_lat_deg) * EARTH_RADIUS_M
    assert north_m.std() == pytest.approx(1.0, rel=0.05)
    assert (fix.alt_m - cfg.home_alt_m).std() == pytest.approx(2.0, rel=0.05)
    assert fix.vel_enu.std() == pytest.approx(0.3, rel=0.05)


def test_local_to_geodetic_is_continuous_at_the_origin():
    lat, lon, alt = local_to_geodetic(np.array([[0.0, 0.0, 0.0], [1e-6, 1e-6, 0.0]]), 10.0, 20.0, 0.0)
    assert np.isfinite(lat).all() and np.isfinite(lon).all()
    assert abs(lat[1] - 10.0) < 1e-10 and abs(lon[1] - 20.0) < 1e-10
    np.testing.assert_array_equal(alt, [0.0, 0.0])
