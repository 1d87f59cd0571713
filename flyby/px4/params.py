"""Every PX4 parameter flyby sets on a SITL instance, in one place, each with its source and reason.

PX4 keeps parameters in its working directory; flyby gives every instance a fresh one
(:mod:`flyby.px4.launcher`), so these are set at every start-up, before OFFBOARD and arming
(:class:`flyby.px4.flight_stack.PX4FlightStack`). Anything not listed keeps PX4 v1.16's
default for airframe 10016 ``none_iris``.

Values were checked against PX4 SITL v1.16.2 (``../shared/px4/``, README "How it starts"):

- ``MPC_THR_HOVER`` is the take-off prior. PX4's default 0.5 is the Gazebo Iris's; flyby's
  Iris (``flyby.dynamics.multirotor.MultirotorCfg``: 1.5 kg, ``k_f`` 5.84e-6, omega = 1000 u + 100)
  needs ``hover_u`` = 0.694. With 0.5, PX4's take-off ramp (``MPC_TKO_RAMP_T`` 3 s) starts from
  too little thrust and a climb command shorter than about 3.3 s never lifts the drone off
  (measured); a zero setpoint on the ground then holds 0.48 and the drone stays down. PX4's
  hover-thrust estimator (``MPC_USE_HTE``, on by default) still refines it in flight.
  ``MPC_TKO_RAMP_T`` keeps PX4's default: take-off stays PX4's own logic.
- The failsafe exceptions make a SITL run with no RC and no ground station legal in OFFBOARD
  (PX4 parameter reference, v1.16): ``COM_RCL_EXCEPT`` bit 2 ignores RC loss in OFFBOARD,
  ``NAV_RCL_ACT`` / ``NAV_DLL_ACT`` 0 disable the RC-loss and data-link-loss actions.
- ``COM_DISARM_PRFLT`` < 0 stops PX4 disarming a drone that sits armed on the ground before
  take-off (a ground-start episode may wait for its policy to climb).

Logging needs no parameter here (checked on v1.16.2): PX4's SITL start script
(``ROMFS/px4fmu_common/init.d-posix/rcS``) already sets ``SDLOG_MODE`` 1 (log from boot until
the first disarm; a later arming starts a new file) and ``SDLOG_PROFILE`` 131 (default +
estimator replay + vision topics: ``vehicle_local_position`` at about 125 Hz, setpoints and
``actuator_motors`` at 5-10 Hz). Both are read once when the logger starts, before flyby's
MAVLink link is up, so setting them here would have no effect on that boot anyway.
:mod:`flyby.px4.launcher` keeps the ULog; :mod:`flyby.px4.ulog` reads it.
"""

from __future__ import annotations

from flyby.dynamics.multirotor import MultirotorCfg


def sitl_params(multirotor: MultirotorCfg | None = None) -> dict[str, int | float]:
    """The parameters flyby sets on PX4 SITL for a drone of ``multirotor`` (default: the Iris).

    Integers are PX4 INT32 parameters (sent bit-cast over MAVLink), floats FLOAT parameters.

    Returns:
        ``{name: value}``; ``MPC_THR_HOVER`` is ``multirotor.hover_u`` rounded to 3 decimals.
    """
    cfg = multirotor if multirotor is not None else MultirotorCfg()
    return {
        "COM_RCL_EXCEPT": 4,  # int32 bitmask: bit 2 = ignore RC loss in OFFBOARD
        "COM_DISARM_PRFLT": -1.0,  # s: < 0 disables disarming before take-off
        "NAV_RCL_ACT": 0,  # int32: RC-loss failsafe action off
        "NAV_DLL_ACT": 0,  # int32: data-link-loss failsafe action off
        "MPC_THR_HOVER": round(float(cfg.hover_u), 3),  # [0, 1]: the model's hover thrust (0.694)
    }


SITL_PARAMS: dict[str, int | float] = sitl_params()
"""The parameters for the default Iris (``sitl_params()``)."""


# Telemetry flyby does not read, turned off on the offboard link at every start-up
# (MAV_CMD_SET_MESSAGE_INTERVAL, interval -1). PX4 SITL starts that link in "onboard" mode
# (ROMFS init.d-posix/px4-rc.mavlink), which streams about 420 messages per second of sim time
# (measured on v1.16.2: ATTITUDE at 100 Hz, HIGHRES_IMU, ATTITUDE_QUATERNION and
# GLOBAL_POSITION_INT at 50 Hz, ...). flyby reads HEARTBEAT, COMMAND_ACK, PARAM_VALUE,
# STATUSTEXT, LOCAL_POSITION_NED and ATTITUDE only; parsing the rest cost about 40 us of each
# 4 ms lockstep tick on flyby's side. The two it reads drop to ``ESTIMATE_INTERVAL_US``.
TELEMETRY_OFF: tuple[str, ...] = (
    "ATTITUDE_QUATERNION", "HIGHRES_IMU", "GLOBAL_POSITION_INT", "ODOMETRY", "GPS_RAW_INT", "ALTITUDE",
    "ATTITUDE_TARGET", "POSITION_TARGET_LOCAL_NED", "SERVO_OUTPUT_RAW", "VFR_HUD", "EXTENDED_SYS_STATE",
    "SYS_STATUS", "ESTIMATOR_STATUS", "SCALED_PRESSURE", "VIBRATION", "BATTERY_STATUS",
    "OPEN_DRONE_ID_LOCATION", "OPEN_DRONE_ID_SYSTEM",
)  # fmt: skip
TELEMETRY_OFF_IDS: tuple[int, ...] = (290, 291)  # ESC_INFO, ESC_STATUS (development dialect, not in common)
ESTIMATE_INTERVAL_US = (
    100_000  # us: LOCAL_POSITION_NED and ATTITUDE at 10 Hz (PX4 onboard mode: 30 and 100 Hz)
)


def telemetry_intervals_us() -> dict[int, float]:
    """``{MAVLink message id: interval_us}`` flyby requests on the offboard link (-1 turns a stream off)."""
    from flyby.px4.mavlink import dialect

    m = dialect()
    intervals = {int(getattr(m, f"MAVLINK_MSG_ID_{name}")): -1.0 for name in TELEMETRY_OFF}
    intervals.update({message_id: -1.0 for message_id in TELEMETRY_OFF_IDS})
    for name in ("LOCAL_POSITION_NED", "ATTITUDE"):
        intervals[int(getattr(m, f"MAVLINK_MSG_ID_{name}"))] = float(ESTIMATE_INTERVAL_US)
    return intervals
