"""PX4 SITL over MAVLink: launcher, lockstep bridge, offboard client and the PX4 flight stack.

- :mod:`flyby.px4.frames`: ENU/FLU <-> NED/FRD, the only module that knows NED/FRD.
- :mod:`flyby.px4.launcher`: :class:`PX4Launcher` starts/stops ``px4`` instance ``i``, logs to
  ``output/logs/``.
- :mod:`flyby.px4.bridge`: :class:`LockstepBridge`, the simulator side (TCP 4560+i): HIL_SENSOR, HIL_GPS,
  HIL_STATE_QUATERNION out, HIL_ACTUATOR_CONTROLS back, bounded lockstep waits.
- :mod:`flyby.px4.offboard`: :class:`OffboardClient` (UDP 14540+i): parameters, OFFBOARD, arming,
  velocity + yaw-rate setpoints, LOCAL_POSITION_NED / ATTITUDE.
- :mod:`flyby.px4.startup`: :class:`~flyby.px4.startup.StartupSequence`, PX4's one start-up sequence on the
  offboard link (HEARTBEAT, parameters, OFFBOARD, arming), stepped by the flight stack and run blocking
  by the offboard client.
- :mod:`flyby.px4.flight_stack`: :class:`PX4FlightStack`, the same ``update`` as the cascade controller.
- :mod:`flyby.px4.ulog`: :func:`~flyby.px4.ulog.read_ulog`, PX4's ULog (EKF2 estimate, setpoints, motors)
  in world ENU and seconds of PX4 time (pyulog; missing -> ``DependencyNotInstalled``).

Importing this package imports neither pymavlink nor PX4: pymavlink loads when a bridge
or client is built (:func:`flyby.px4.mavlink.dialect`; missing -> ``DependencyNotInstalled``).
"""

from __future__ import annotations

__all__ = [
    "LockstepBridge",
    "OffboardClient",
    "PX4FlightStack",
    "PX4Launcher",
    "find_px4",
]


def __getattr__(name: str):
    if name == "LockstepBridge":
        from flyby.px4.bridge import LockstepBridge

        return LockstepBridge
    if name == "OffboardClient":
        from flyby.px4.offboard import OffboardClient

        return OffboardClient
    if name == "PX4FlightStack":
        from flyby.px4.flight_stack import PX4FlightStack

        return PX4FlightStack
    if name in ("PX4Launcher", "find_px4"):
        from flyby.px4 import launcher

        return getattr(launcher, name)
    raise AttributeError(f"module 'flyby.px4' has no attribute {name!r}")
