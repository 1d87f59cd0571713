"""The one place flyby imports pymavlink, lazily, plus the MAVLink constants and helpers PX4 needs.

pymavlink is optional (``pip install "flyby[px4]"``); :func:`dialect` raises
:class:`~flyby.errors.DependencyNotInstalled` naming that extra when it is missing.
Messages use the MAVLink 2 ``common`` dialect (HIL_SENSOR's ``id`` and HIL_GPS's
``id`` are MAVLink 2 extension fields).
"""

from __future__ import annotations

import struct
from functools import lru_cache
from types import ModuleType

from flyby.errors import DependencyNotInstalled

# PX4 custom modes (px4_custom_mode.h): HEARTBEAT.custom_mode = main << 16 | sub << 24.
PX4_CUSTOM_MAIN_MODE_OFFBOARD = 6
MAV_MODE_FLAG_CUSTOM_MODE_ENABLED = 1  # MAVLink MAV_MODE_FLAG
MAV_MODE_FLAG_SAFETY_ARMED = 128  # MAVLink MAV_MODE_FLAG; HIL_ACTUATOR_CONTROLS.mode uses the same bit

# HIL_SENSOR.fields_updated: accel xyz, gyro xyz, mag xyz (bits 0-8), abs pressure (9),
# pressure altitude (11), temperature (12) = 7167; bit 10 (differential pressure) unset.
HIL_SENSOR_FIELDS_ACCEL_GYRO_MAG_BARO = 0b1_1011_1111_1111
assert HIL_SENSOR_FIELDS_ACCEL_GYRO_MAG_BARO == 7167

# SET_POSITION_TARGET_LOCAL_NED.type_mask 1479 = ignore position (1|2|4), acceleration (64|128|256)
# and yaw (1024): use velocity (vx, vy, vz) and yaw rate only.
TYPE_MASK_VELOCITY_YAW_RATE = 1 | 2 | 4 | 64 | 128 | 256 | 1024
assert TYPE_MASK_VELOCITY_YAW_RATE == 1479

SIM_BASE_PORT = 4560  # PX4 simulator_mavlink connects to TCP 4560 + instance
OFFBOARD_BASE_PORT = 14540  # PX4's onboard/offboard MAVLink instance sends to UDP 14540 + instance
GCS_SYSTEM_ID = 255  # our system id on the offboard link
GCS_COMPONENT_ID = 190  # MAV_COMP_ID_MISSIONPLANNER
SIM_SYSTEM_ID = 1  # system id of the simulator side of the lockstep link (PX4 does not check it)
SIM_COMPONENT_ID = 51  # arbitrary, not an autopilot id


@lru_cache(maxsize=1)
def dialect() -> ModuleType:
    """The pymavlink MAVLink 2 ``common`` dialect module.

    Raises:
        DependencyNotInstalled: pymavlink is missing (``pip install "flyby[px4]"``).
    """
    try:
        from pymavlink.dialects.v20 import common
    except ImportError as exc:  # pragma: no cover - exercised only without pymavlink
        raise DependencyNotInstalled("pymavlink", "px4") from exc
    return common


def make_link(system_id: int, component_id: int):
    """A pymavlink ``MAVLink`` encoder/decoder (no file; ``msg.pack(link)`` gives the bytes).

    Robust parsing is on: corrupt bytes come back as ``BAD_DATA`` messages, never raise.
    """
    link = dialect().MAVLink(None, srcSystem=system_id, srcComponent=component_id)
    link.robust_parsing = True
    return link


def param_to_wire(value: int | float) -> tuple[float, int]:
    """A parameter value -> (PARAM_SET.param_value float, MAV_PARAM_TYPE).

    PX4 expects integer parameters bit-cast into the float field (MAVLink's "bytewise"
    parameter encoding), not converted: ``COM_RCL_EXCEPT = 4`` travels as the float whose
    bits are the int32 4. Python ``int`` (and ``bool``) -> INT32, ``float`` -> REAL32.
    """
    m = dialect()
    if isinstance(value, (bool, int)):
        (as_float,) = struct.unpack("<f", struct.pack("<i", int(value)))
        return as_float, m.MAV_PARAM_TYPE_INT32
    return float(value), m.MAV_PARAM_TYPE_REAL32


def param_from_wire(param_value: float, param_type: int) -> int | float:
    """Inverse of :func:`param_to_wire`: PARAM_VALUE/PARAM_SET fields -> the Python value."""
    m = dialect()
    int_types = {
        m.MAV_PARAM_TYPE_UINT8: "<B",
        m.MAV_PARAM_TYPE_INT8: "<b",
        m.MAV_PARAM_TYPE_UINT16: "<H",
        m.MAV_PARAM_TYPE_INT16: "<h",
        m.MAV_PARAM_TYPE_UINT32: "<I",
        m.MAV_PARAM_TYPE_INT32: "<i",
    }
    fmt = int_types.get(param_type)
    if fmt is None:
        return float(param_value)
    raw = struct.pack("<f", param_value)
    return struct.unpack(fmt, raw[: struct.calcsize(fmt)])[0]


def param_id_str(param_id: bytes | str) -> str:
    """PARAM_VALUE/PARAM_SET ``param_id`` (16 chars, NUL padded) -> str."""
    if isinstance(param_id, bytes):
        param_id = param_id.decode("ascii", errors="replace")
    return param_id.split("\x00", 1)[0]


def px4_main_mode(custom_mode: int) -> int:
    """PX4 main mode from HEARTBEAT.custom_mode (``(custom_mode >> 16) & 0xFF``; 6 = OFFBOARD)."""
    return (int(custom_mode) >> 16) & 0xFF


def bind_error(protocol: str, host: str, port: int, instance: int, link: str, exc: OSError):
    """The error for a port flyby could not listen on for PX4 instance ``instance``.

    Args:
        protocol: ``"TCP"`` or ``"UDP"``; ``link``: what the port is for (in the message).
        exc: the ``bind`` error.

    Returns:
        :class:`~flyby.errors.PX4PortInUse` for ``EADDRINUSE`` (the message says how to find the
        holder and to pick another instance), else :class:`~flyby.errors.PX4Unavailable`.
    """
    import errno

    from flyby.errors import PX4PortInUse, PX4Unavailable

    where = f"{protocol} {host}:{port} ({link} of PX4 instance {instance})"
    if exc.errno != errno.EADDRINUSE:
        return PX4Unavailable(f"cannot listen on {where}: {exc}")
    option = "ltnp" if protocol == "TCP" else "lunp"
    return PX4PortInUse(
        f"cannot listen on {where}: the port is already in use ({exc}). Another flyby run, simulator or "
        f"MAVLink tool on instance {instance} holds it: stop it (`ss -{option} 'sport = :{port}'` names the "
        f"process), or run on another PX4 instance (px4.instance, 0..9; instance i uses "
        f"TCP {SIM_BASE_PORT}+i and UDP {OFFBOARD_BASE_PORT}+i)",
        protocol,
        port,
    )
