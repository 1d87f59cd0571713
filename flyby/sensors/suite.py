"""Sensors for the flight stack: IMU, magnetometer, barometer and GPS from the true state.

Everything here is in flyby frames: world ENU, body FLU. The MAVLink bridge
(:mod:`flyby.px4`) converts to NED/FRD and to MAVLink units (degE7, mm, cm/s)
in its frames module; this module never does.

Models (per drone, batched):

- IMU: ``accel_b = specific_force_b + accel_bias_b + n_a``,
  ``gyro_b = ang_vel_b + gyro_bias_b + n_g``; white noise per sample.
- Magnetometer: ``mag_b = R_wb^T B_w + mag_bias_b + n_m``, gauss, from a fixed
  world field ``B_w`` (ENU).
- Barometer: International Standard Atmosphere troposphere model at the
  altitude above mean sea level ``home_alt_m + z``:
  ``p = 1013.25 hPa * (1 - 2.25577e-5 h)^5.25588``, ``T = 15 degC - 6.5 K/km h``.
- GPS: position around a configurable home by the azimuthal equidistant
  projection (:func:`flyby.geometry.enu_to_geodetic`, the one PX4's
  ``MapProjection`` uses, so PX4's local position matches flyby's world frame),
  velocity in ENU.

Noise defaults follow PX4 SITL's Gazebo-classic Iris sensor plugins
(``models/iris/iris.sdf``: ``accelerometerNoiseDensity`` 0.00186 m/s^2/sqrt(Hz),
``gyroscopeNoiseDensity`` 0.00018665 rad/s/sqrt(Hz), magnetometer
``noiseDensity`` 0.0004 gauss/sqrt(Hz) at 100 Hz), converted to a per-sample
standard deviation at the sensor rate (``density * sqrt(rate)``). Biases
default to zero. The default home is PX4 SITL's default home (Zurich,
``PX4_HOME_LAT/LON/ALT`` 47.397742, 8.545594, 488 m) with the Earth's field there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from flyby.config import cfg_field, check
from flyby.dynamics.multirotor import DroneState
from flyby.geometry import enu_to_geodetic, rotate_inverse

__all__ = [
    "GpsFix",
    "SensorCfg",
    "SensorSuite",
    "isa_altitude_m",
    "isa_pressure_hpa",
]

_SEA_LEVEL_HPA = 1013.25  # hPa, ISA sea-level pressure
_SEA_LEVEL_C = 15.0  # degC, ISA sea-level temperature
_LAPSE_K_PER_M = 0.0065  # K/m, ISA troposphere lapse rate
_ISA_K = 2.25577e-5  # 1/m, = lapse / T0 (288.15 K)
_ISA_EXP = 5.25588  # g M / (R L)


@dataclass(kw_only=True)
class SensorCfg:
    """Sensor rates, noise and biases, home position and magnetic field."""

    gps_rate_hz: float = cfg_field(10.0, gt=0.0)  # Hz, HIL_GPS rate (PX4 expects 5-10 Hz; DESIGN.md)
    accel_noise_std: float = cfg_field(0.0294, ge=0.0)  # m/s^2 per sample (0.00186/sqrt(Hz) at 250 Hz)
    accel_bias_b: tuple[float, float, float] = (0.0, 0.0, 0.0)  # m/s^2, constant accelerometer bias, FLU
    gyro_noise_std: float = cfg_field(0.00295, ge=0.0)  # rad/s per sample (0.00018665/sqrt(Hz) at 250 Hz)
    gyro_bias_b: tuple[float, float, float] = (0.0, 0.0, 0.0)  # rad/s, constant gyro bias, body FLU
    mag_noise_std: float = cfg_field(0.004, ge=0.0)  # gauss per sample (0.0004/sqrt(Hz) at 100 Hz)
    mag_bias_b: tuple[float, float, float] = (0.0, 0.0, 0.0)  # gauss, constant (hard-iron) bias, FLU
    # Earth field at the default home (Zurich; WMM: 0.479 G, inclination 63.5 deg, declination 2.9 deg E):
    mag_field_w: tuple[float, float, float] = (0.0108, 0.2134, -0.4287)  # gauss, world ENU
    baro_noise_std: float = cfg_field(0.01, ge=0.0)  # hPa per sample (about 8 cm of altitude)
    baro_bias_hpa: float = 0.0  # hPa, constant pressure bias
    gps_xy_noise_std: float = cfg_field(0.1, ge=0.0)  # m, horizontal position noise per fix
    gps_z_noise_std: float = cfg_field(0.2, ge=0.0)  # m, vertical position noise per fix
    gps_vel_noise_std: float = cfg_field(0.05, ge=0.0)  # m/s, velocity noise per fix and axis
    # Home = the world origin; defaults are PX4 SITL's PX4_HOME_LAT / PX4_HOME_LON / PX4_HOME_ALT.
    home_lat_deg: float = cfg_field(47.397742, ge=-89.0, le=89.0)  # deg, latitude of the origin
    home_lon_deg: float = cfg_field(8.545594, ge=-180.0, le=180.0)  # deg, longitude of the origin
    home_alt_m: float = cfg_field(488.0, ge=-400.0, le=9000.0)  # m above mean sea level of z = 0


class GpsFix(NamedTuple):
    """One GPS fix per drone (flyby frames; the bridge converts to HIL_GPS units).

    Attributes:
        lat_deg: (N,) float64, degrees, WGS84 latitude.
        lon_deg: (N,) float64, degrees, WGS84 longitude.
        alt_m: (N,) float64, metres above mean sea level.
        vel_enu: (N, 3) float64, m/s, velocity in world ENU.
    """

    lat_deg: np.ndarray
    lon_deg: np.ndarray
    alt_m: np.ndarray
    vel_enu: np.ndarray


def isa_pressure_hpa(alt_msl_m: np.ndarray) -> np.ndarray:
    """ISA static pressure, hPa, at altitude above mean sea level (troposphere, below 11 km)."""
    return _SEA_LEVEL_HPA * (1.0 - _ISA_K * np.asarray(alt_msl_m, dtype=np.float64)) ** _ISA_EXP


def isa_altitude_m(pressure_hpa: np.ndarray) -> np.ndarray:
    """Altitude above mean sea level, metres, of an ISA static pressure in hPa (ISA inverse)."""
    return (1.0 - (np.asarray(pressure_hpa, dtype=np.float64) / _SEA_LEVEL_HPA) ** (1.0 / _ISA_EXP)) / _ISA_K


class SensorSuite:
    """Noisy sensor readings of ``num_drones`` drones from their true :class:`DroneState`.

    Each call draws fresh noise from one generator seeded by ``seed``, so the
    same sequence of calls gives the same readings. The rates in ``cfg`` say
    how often a caller (the bridge) should sample; the suite itself is
    stateless apart from the generator.

    Args:
        cfg: sensor configuration.
        num_drones: N >= 1.
        seed: seed of the noise generator (None: fresh entropy).

    Raises:
        ConfigError: invalid ``cfg``.
        ValueError: ``num_drones`` < 1.
    """

    def __init__(self, cfg: SensorCfg, num_drones: int, seed: int | None = None) -> None:
        self.cfg = check(cfg)
        if int(num_drones) < 1:
            raise ValueError(f"num_drones must be >= 1, got {num_drones}")
        self.num_drones = int(num_drones)
        self.rng = np.random.default_rng(seed)
        self._accel_bias = np.asarray(cfg.accel_bias_b, dtype=np.float64)
        self._gyro_bias = np.asarray(cfg.gyro_bias_b, dtype=np.float64)
        self._mag_bias = np.asarray(cfg.mag_bias_b, dtype=np.float64)
        self._mag_w = np.asarray(cfg.mag_field_w, dtype=np.float64)

    def reseed(self, seed: int | None) -> None:
        """Restart the noise generator from ``seed``."""
        self.rng = np.random.default_rng(seed)

    def _noise(self, std: float, shape: tuple[int, ...]) -> np.ndarray | float:
        return self.rng.normal(0.0, std, shape) if std > 0.0 else 0.0

    def imu(self, state: DroneState) -> tuple[np.ndarray, np.ndarray]:
        """Accelerometer and gyroscope.

        Returns:
            accel_b: (N, 3) float64, m/s^2, body FLU specific force (about (0, 0, +9.81) at rest, level).
            gyro_b: (N, 3) float64, rad/s, body FLU angular rate.
        """
        n = self.num_drones
        accel = state.specific_force_b + self._accel_bias + self._noise(self.cfg.accel_noise_std, (n, 3))
        gyro = state.ang_vel_b + self._gyro_bias + self._noise(self.cfg.gyro_noise_std, (n, 3))
        return accel, gyro

    def mag(self, state: DroneState) -> np.ndarray:
        """Magnetometer: (N, 3) float64, gauss, the world field seen in body FLU."""
        field_w = np.broadcast_to(self._mag_w, (self.num_drones, 3))
        return (
            rotate_inverse(state.quat_wxyz, field_w)
            + self._mag_bias
            + self._noise(self.cfg.mag_noise_std, (self.num_drones, 3))
        )

    def baro(self, state: DroneState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Barometer from the ISA model.

        Returns:
            abs_pressure_hpa: (N,) float64, hPa, static pressure (with noise and bias).
            pressure_alt_m: (N,) float64, metres above mean sea level that pressure stands for.
            temperature_c: (N,) float64, degC, ISA temperature at the true altitude.
        """
        alt = self.cfg.home_alt_m + np.asarray(state.pos_w, dtype=np.float64)[:, 2]
        pressure = (
            isa_pressure_hpa(alt)
            + self.cfg.baro_bias_hpa
            + self._noise(self.cfg.baro_noise_std, (self.num_drones,))
        )
        return pressure, isa_altitude_m(pressure), _SEA_LEVEL_C - _LAPSE_K_PER_M * alt

    def gps(self, state: DroneState) -> GpsFix:
        """GPS fix: geodetic position around the home point and ENU velocity, with noise."""
        n = self.num_drones
        c = self.cfg
        pos = np.array(state.pos_w, dtype=np.float64)
        if c.gps_xy_noise_std > 0.0:
            pos[:, :2] += self.rng.normal(0.0, c.gps_xy_noise_std, (n, 2))
        if c.gps_z_noise_std > 0.0:
            pos[:, 2] += self.rng.normal(0.0, c.gps_z_noise_std, n)
        lat, lon, alt = enu_to_geodetic(pos, c.home_lat_deg, c.home_lon_deg, c.home_alt_m)
        vel = state.lin_vel_w + self._noise(c.gps_vel_noise_std, (n, 3))
        return GpsFix(lat_deg=lat, lon_deg=lon, alt_m=alt, vel_enu=np.asarray(vel, dtype=np.float64))
