"""Sensors for the flight stack (IMU, magnetometer, barometer, GPS) in flyby frames (ENU/FLU)."""

from __future__ import annotations

from flyby.geometry import EARTH_RADIUS_M
from flyby.geometry import enu_to_geodetic as local_to_geodetic  # this package's name for PX4's projection
from flyby.sensors.suite import (
    GpsFix,
    SensorCfg,
    SensorSuite,
    isa_altitude_m,
    isa_pressure_hpa,
)

__all__ = [
    "EARTH_RADIUS_M",
    "GpsFix",
    "SensorCfg",
    "SensorSuite",
    "isa_altitude_m",
    "isa_pressure_hpa",
    "local_to_geodetic",
]
