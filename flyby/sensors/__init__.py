"""Sensors for the flight stack (IMU, magnetometer, barometer, GPS) in flyby frames (ENU/FLU)."""

from __future__ import annotations

from flyby.sensors.suite import (
    EARTH_RADIUS_M,
    GpsFix,
    SensorCfg,
    SensorSuite,
    isa_altitude_m,
    isa_pressure_hpa,
    local_to_geodetic,
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
