"""PX4's own view of a flight: read the ULog PX4 SITL writes, in flyby's frames and units.

PX4 logs uORB topics in NED/FRD with microsecond timestamps of its own clock. In lockstep
SITL that clock is exactly the ``time_usec`` flyby sends in HIL_SENSOR (DESIGN.md, "PX4 SITL
facts"), so a ULog timestamp is simulation time since that PX4 started (it restarts at 0
with every PX4 start, i.e. every env reset). This module turns the topics flyby compares
against its ground truth into numpy arrays in world ENU, seconds of PX4 time, through
:mod:`flyby.px4.frames` (the only module that knows NED):

| topic                               | what                                                  | rate (SITL) |
|-------------------------------------|-------------------------------------------------------|-------------|
| ``vehicle_local_position``          | EKF2's position/velocity estimate and its local origin | ~125 Hz     |
| ``trajectory_setpoint``             | the setpoint PX4 flies (flyby's offboard velocity)    | ~5 Hz       |
| ``vehicle_local_position_setpoint`` | the position controller's setpoint after its limits   | ~10 Hz      |
| ``actuator_motors``                 | the mixer's normalised motor commands in [0, 1]       | ~10 Hz      |

PX4's local frame: NED axes about an origin PX4 picks itself, the GNSS position when the
estimator first got a fix (the drone is on the ground below its start then), stated in
every ``vehicle_local_position`` sample as ``ref_lat``/``ref_lon``/``ref_alt``.
:meth:`LocalPosition.pos_w` adds that origin, projected into flyby's world about flyby's
home point (the same azimuthal equidistant projection PX4 uses), to get PX4's estimate in
flyby's world frame.

Usage::

    flight = read_ulog("output/logs/px4_0_20260101-120000.ulg")
    est_pos_w = flight.local_position.pos_w(home=(47.397742, 8.545594, 488.0))   # (M, 3) m ENU
    t = flight.local_position.time_s                                              # (M,) s PX4 time

Errors are :class:`flyby.errors.ULogError` naming the file (and the topic); ``pyulog``
(``pip install "flyby[px4]"``) is imported only here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from flyby.errors import DependencyNotInstalled, ULogError
from flyby.geometry import geodetic_to_enu
from flyby.px4 import frames

TOPIC_LOCAL_POSITION = "vehicle_local_position"
TOPIC_TRAJECTORY_SETPOINT = "trajectory_setpoint"
TOPIC_LOCAL_POSITION_SETPOINT = "vehicle_local_position_setpoint"
TOPIC_MOTORS = "actuator_motors"
TOPICS = (TOPIC_LOCAL_POSITION, TOPIC_TRAJECTORY_SETPOINT, TOPIC_LOCAL_POSITION_SETPOINT, TOPIC_MOTORS)
REQUIRED_TOPICS = (TOPIC_LOCAL_POSITION, TOPIC_TRAJECTORY_SETPOINT, TOPIC_MOTORS)
NUM_MOTORS = 4  # quadrotor (airframe 10016 none_iris): actuator_motors control[0..3]
ULOG_MAGIC = b"ULog\x01\x12\x35"  # first 7 bytes of every ULog file (ULog file format, "File Header")


class LocalPosition(NamedTuple):
    """EKF2's estimate (``vehicle_local_position``), M samples.

    Attributes:
        time_s: (M,) float64, s of PX4 time: ``timestamp_sample``, the IMU sample the estimate is for.
        pos_local_w: (M, 3) float64, m: position in ENU axes relative to PX4's local origin.
        vel_w: (M, 3) float64, m/s, world ENU.
        ref_geodetic: (M, 3) float64: the local origin as (lat deg, lon deg, alt m AMSL); NaN
            where PX4 has none yet (``xy_global`` / ``z_global`` false).
        xy_valid, z_valid, v_xy_valid, v_z_valid: (M,) bool, PX4's validity flags.
    """

    time_s: np.ndarray
    pos_local_w: np.ndarray
    vel_w: np.ndarray
    ref_geodetic: np.ndarray
    xy_valid: np.ndarray
    z_valid: np.ndarray
    v_xy_valid: np.ndarray
    v_z_valid: np.ndarray

    def origin_w(self, home: tuple[float, float, float]) -> np.ndarray:
        """PX4's local origin per sample in flyby's world, (M, 3) float64 m ENU (NaN where it has none).

        Args:
            home: (lat deg, lon deg, alt m AMSL) of flyby's world origin, the home the bridge
                and sensors project positions about (:attr:`flyby.px4.flight_stack.PX4FlightStack.home`).
        """
        ref = self.ref_geodetic
        return geodetic_to_enu(ref[:, 0], ref[:, 1], ref[:, 2], *home)

    def pos_w(
        self, home: tuple[float, float, float], fallback_origin_w: np.ndarray | None = None
    ) -> np.ndarray:
        """EKF2's position estimate in flyby's world: (M, 3) float64 m ENU.

        ``origin_w(home) + pos_local_w``: the origin PX4 states in each sample, so a reset of
        PX4's origin mid-flight is followed. Where PX4 has no origin yet, ``fallback_origin_w``
        ((3,) m ENU, e.g. where PX4 booted) is used, else the rows are NaN.
        """
        origin = self.origin_w(home)
        if fallback_origin_w is not None:
            missing = ~np.isfinite(origin).all(axis=1)
            origin[missing] = np.asarray(fallback_origin_w, dtype=np.float64).reshape(3)
        return origin + self.pos_local_w


class VelocitySetpoint(NamedTuple):
    """A velocity setpoint topic, K samples.

    Attributes:
        time_s: (K,) float64, s of PX4 time (``timestamp``).
        vel_w: (K, 3) float64, m/s, world ENU; NaN where PX4 does not control that axis by velocity.
        yaw_rate_rad_s: (K,) float64, rad/s about world up (ENU sign); NaN where not set.
    """

    time_s: np.ndarray
    vel_w: np.ndarray
    yaw_rate_rad_s: np.ndarray


class MotorOutputs(NamedTuple):
    """``actuator_motors``, K samples.

    Attributes:
        time_s: (K,) float64, s of PX4 time (``timestamp``).
        controls: (K, 4) float64 in [0, 1], PX4 motor order (what PX4 sends back in
            HIL_ACTUATOR_CONTROLS ``controls[0..3]``); NaN while disarmed.
    """

    time_s: np.ndarray
    controls: np.ndarray


@dataclass(frozen=True)
class PX4ULog:
    """What flyby reads from one PX4 ULog.

    Attributes:
        path: the file.
        start_time_s, end_time_s: s of PX4 time covered by the log.
        local_position: EKF2's estimate.
        trajectory_setpoint: the setpoint PX4 flies (flyby's offboard velocity setpoint in OFFBOARD).
        local_position_setpoint: the position controller's setpoint after PX4's limits; None when
            the log has no such topic.
        motors: motor commands.
    """

    path: Path
    start_time_s: float
    end_time_s: float
    local_position: LocalPosition
    trajectory_setpoint: VelocitySetpoint
    local_position_setpoint: VelocitySetpoint | None
    motors: MotorOutputs


def read_ulog(path: str | Path) -> PX4ULog:
    """Read the topics flyby compares against ground truth from a PX4 ULog.

    Args:
        path: a ``.ulg`` file PX4 wrote (kept by :class:`flyby.px4.launcher.PX4Launcher` in ``output/logs/``).

    Returns:
        :class:`PX4ULog`, every array in world ENU / seconds of PX4 time.

    Raises:
        ULogError: the file is missing, is not a ULog, or has no ``vehicle_local_position``,
            ``trajectory_setpoint`` or ``actuator_motors`` data (the message names file and topic).
        DependencyNotInstalled: pyulog is missing (``pip install "flyby[px4]"``).
    """
    path = Path(path)
    ulog = _parse(path)
    datasets: dict[str, dict[str, np.ndarray]] = {}
    for d in sorted(ulog.data_list, key=lambda d: d.multi_id):
        if d.name not in datasets and len(d.data.get("timestamp", ())) > 0:
            datasets[d.name] = d.data  # the first instance (multi_id 0) of each topic
    for topic in REQUIRED_TOPICS:
        if topic not in datasets:
            have = ", ".join(sorted(datasets)) or "none"
            raise ULogError(
                f"ULog {path} has no {topic!r} data (topics with data: {have}); flyby needs PX4 SITL's "
                "default logging (SDLOG_PROFILE 131, see flyby.px4.params) and a flight that ran past boot",
                path=path,
                topic=topic,
            )
    lps = datasets.get(TOPIC_LOCAL_POSITION_SETPOINT)
    return PX4ULog(
        path=path,
        start_time_s=float(ulog.start_timestamp) * 1e-6,
        end_time_s=float(ulog.last_timestamp) * 1e-6,
        local_position=_local_position(datasets[TOPIC_LOCAL_POSITION], path),
        trajectory_setpoint=_trajectory_setpoint(datasets[TOPIC_TRAJECTORY_SETPOINT], path),
        local_position_setpoint=None if lps is None else _local_position_setpoint(lps, path),
        motors=_motors(datasets[TOPIC_MOTORS], path),
    )


# ---------------------------------------------------------------------------- parsing


def _parse(path: Path) -> Any:
    """pyulog's ``ULog`` of ``path``, only :data:`TOPICS` loaded; ULogError for a missing/bad file."""
    try:
        from pyulog import ULog
    except ImportError as exc:  # pragma: no cover - pyulog is in the px4 extra
        raise DependencyNotInstalled("pyulog", "px4") from exc
    if not path.is_file():
        raise ULogError(
            f"ULog {path} does not exist; PX4 keeps one per flight in output/logs/ "
            "(px4_<instance>_<stamp>.ulg, next to its text log) once its PX4 has stopped",
            path=path,
        )
    with open(path, "rb") as f:
        head = f.read(len(ULOG_MAGIC))
    if head != ULOG_MAGIC:
        raise ULogError(
            f"{path} is not a PX4 ULog: it starts with {head!r}, a ULog starts with {ULOG_MAGIC!r}",
            path=path,
        )
    try:
        return ULog(str(path), list(TOPICS), disable_str_exceptions=True)
    except Exception as exc:  # pyulog raises bare Exceptions (ULogException, struct.error, IndexError, ...)
        raise ULogError(
            f"ULog {path} is corrupt or cut short: pyulog says {type(exc).__name__}: {exc}", path=path
        ) from exc


def _field(data: dict[str, np.ndarray], name: str, path: Path, topic: str) -> np.ndarray:
    try:
        return np.asarray(data[name], dtype=np.float64)
    except KeyError:
        raise ULogError(
            f"ULog {path}: topic {topic!r} has no field {name!r} (fields: {', '.join(sorted(data))}); "
            "flyby reads the PX4 v1.16 message definitions",
            path=path,
            topic=topic,
        ) from None


def _vec3(data: dict[str, np.ndarray], names: tuple[str, str, str], path: Path, topic: str) -> np.ndarray:
    """NED vector fields -> (K, 3) float64 ENU."""
    ned = np.stack([_field(data, n, path, topic) for n in names], axis=-1)
    return frames.ned_to_enu(ned)


def _flag(data: dict[str, np.ndarray], name: str) -> np.ndarray:
    n = len(data["timestamp"])
    return np.asarray(data[name], dtype=bool) if name in data else np.ones(n, dtype=bool)


def _local_position(data: dict[str, np.ndarray], path: Path) -> LocalPosition:
    topic = TOPIC_LOCAL_POSITION
    stamp = "timestamp_sample" if "timestamp_sample" in data else "timestamp"
    time_s = _field(data, stamp, path, topic) * 1e-6
    ref = np.stack([_field(data, k, path, topic) for k in ("ref_lat", "ref_lon", "ref_alt")], axis=-1)
    ref[~_flag(data, "xy_global"), :2] = np.nan
    ref[~_flag(data, "z_global"), 2] = np.nan
    order = np.argsort(time_s, kind="stable")
    out = LocalPosition(
        time_s=time_s,
        pos_local_w=_vec3(data, ("x", "y", "z"), path, topic),
        vel_w=_vec3(data, ("vx", "vy", "vz"), path, topic),
        ref_geodetic=ref,
        xy_valid=_flag(data, "xy_valid"),
        z_valid=_flag(data, "z_valid"),
        v_xy_valid=_flag(data, "v_xy_valid"),
        v_z_valid=_flag(data, "v_z_valid"),
    )
    return LocalPosition(*(a[order] for a in out))


def _trajectory_setpoint(data: dict[str, np.ndarray], path: Path) -> VelocitySetpoint:
    topic = TOPIC_TRAJECTORY_SETPOINT
    return VelocitySetpoint(
        time_s=_field(data, "timestamp", path, topic) * 1e-6,
        vel_w=_vec3(data, ("velocity[0]", "velocity[1]", "velocity[2]"), path, topic),
        yaw_rate_rad_s=frames.yaw_rate_ned_to_enu(_field(data, "yawspeed", path, topic)),
    )


def _local_position_setpoint(data: dict[str, np.ndarray], path: Path) -> VelocitySetpoint:
    topic = TOPIC_LOCAL_POSITION_SETPOINT
    return VelocitySetpoint(
        time_s=_field(data, "timestamp", path, topic) * 1e-6,
        vel_w=_vec3(data, ("vx", "vy", "vz"), path, topic),
        yaw_rate_rad_s=frames.yaw_rate_ned_to_enu(_field(data, "yawspeed", path, topic)),
    )


def _motors(data: dict[str, np.ndarray], path: Path) -> MotorOutputs:
    topic = TOPIC_MOTORS
    controls = np.stack([_field(data, f"control[{i}]", path, topic) for i in range(NUM_MOTORS)], axis=-1)
    return MotorOutputs(time_s=_field(data, "timestamp", path, topic) * 1e-6, controls=controls)


# ---------------------------------------------------------------------------- resampling


def resample(
    time_s: np.ndarray, values: np.ndarray, at_s: np.ndarray, *, max_gap_s: float = 0.1
) -> np.ndarray:
    """Linear interpolation of samples onto other times, NaN where there is no data to interpolate.

    Args:
        time_s: (M,) increasing sample times, s.
        values: (M,) or (M, D) samples.
        at_s: (T,) times to evaluate at, s (same clock).
        max_gap_s: s; a time between two samples farther apart than this, or outside the samples, is NaN.

    Returns:
        (T,) or (T, D) float64.
    """
    t = np.asarray(time_s, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    at = np.asarray(at_s, dtype=np.float64)
    flat = v.reshape(len(t), -1)
    out = np.full((len(at), flat.shape[1]), np.nan)
    if len(t) >= 1:
        hi = np.searchsorted(t, at, side="left")
        inside = (at >= t[0]) & (at <= t[-1])
        lo = np.clip(hi - 1, 0, len(t) - 1)
        hi = np.clip(hi, 0, len(t) - 1)
        ok = inside & ((t[hi] - t[lo]) <= max_gap_s)
        for d in range(flat.shape[1]):
            finite = np.isfinite(flat[:, d])
            if finite.sum() >= 1:
                out[ok, d] = np.interp(at[ok], t[finite], flat[finite, d])
    return out.reshape((len(at),) + v.shape[1:])


def concat_local_positions(parts: list[LocalPosition]) -> LocalPosition:
    """Join the estimates of several ULogs of one PX4 run (one clock) in time order."""
    if not parts:
        raise ValueError("concat_local_positions needs at least one LocalPosition")
    joined = LocalPosition(*(np.concatenate(arrays) for arrays in zip(*parts)))
    order = np.argsort(joined.time_s, kind="stable")
    return LocalPosition(*(a[order] for a in joined))
