"""Write small synthetic ULog files (PX4 ULog format, version 1) for reader tests that run without PX4.

Only what :mod:`flyby.px4.ulog` reads: the file header, the flag-bits message, one format
('F') and subscription ('A') message per topic and its data ('D') messages. Field types are
PX4's (``uint64_t``, ``float``, ``double``, ``bool``, ``float[N]`` arrays); layout follows the
ULog spec (docs.px4.io, "ULog File Format"): little endian, no padding.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

MAGIC = b"ULog\x01\x12\x35"
_CODES = {"uint64_t": "Q", "float": "f", "double": "d", "bool": "?", "uint8_t": "B", "int32_t": "i"}

# Field lists of the topics flyby reads (PX4 v1.16 message definitions, the fields flyby uses).
VEHICLE_LOCAL_POSITION = [
    ("uint64_t", "timestamp"),
    ("uint64_t", "timestamp_sample"),
    ("double", "ref_lat"),
    ("double", "ref_lon"),
    ("float", "x"),
    ("float", "y"),
    ("float", "z"),
    ("float", "vx"),
    ("float", "vy"),
    ("float", "vz"),
    ("float", "ref_alt"),
    ("bool", "xy_valid"),
    ("bool", "z_valid"),
    ("bool", "v_xy_valid"),
    ("bool", "v_z_valid"),
    ("bool", "xy_global"),
    ("bool", "z_global"),
]
TRAJECTORY_SETPOINT = [
    ("uint64_t", "timestamp"),
    ("float[3]", "position"),
    ("float[3]", "velocity"),
    ("float[3]", "acceleration"),
    ("float[3]", "jerk"),
    ("float", "yaw"),
    ("float", "yawspeed"),
]
VEHICLE_LOCAL_POSITION_SETPOINT = [
    ("uint64_t", "timestamp"),
    ("float", "x"),
    ("float", "y"),
    ("float", "z"),
    ("float", "vx"),
    ("float", "vy"),
    ("float", "vz"),
    ("float", "yaw"),
    ("float", "yawspeed"),
]
ACTUATOR_MOTORS = [("uint64_t", "timestamp"), ("uint64_t", "timestamp_sample"), ("float[12]", "control")]
FIELDS = {
    "vehicle_local_position": VEHICLE_LOCAL_POSITION,
    "trajectory_setpoint": TRAJECTORY_SETPOINT,
    "vehicle_local_position_setpoint": VEHICLE_LOCAL_POSITION_SETPOINT,
    "actuator_motors": ACTUATOR_MOTORS,
}


def _message(kind: bytes, payload: bytes) -> bytes:
    return struct.pack("<HB", len(payload), kind[0]) + payload


def _layout(fields: list[tuple[str, str]]) -> tuple[str, list[tuple[str, int]]]:
    """(struct format, [(field name, element count)])."""
    fmt, names = "<", []
    for type_name, name in fields:
        base, _, count = type_name.partition("[")
        n = int(count.rstrip("]")) if count else 1
        fmt += f"{n}{_CODES[base]}" if n > 1 else _CODES[base]
        names.append((name, n))
    return fmt, names


def write_ulog(path: Path, topics: dict[str, dict[str, np.ndarray]], start_usec: int = 1000) -> Path:
    """Write ``topics`` ({name: {field: (K,) or (K, n) values}}) as a ULog at ``path``.

    Field lists come from :data:`FIELDS`; a field left out is written as zero (NaN for floats).
    """
    out = bytearray(MAGIC + b"\x01" + struct.pack("<Q", start_usec))
    out += _message(b"B", bytes(8) + bytes(8) + bytes(24))
    for name in topics:
        spec = ";".join(f"{t} {n}" for t, n in FIELDS[name]) + ";"
        out += _message(b"F", f"{name}:{spec}".encode())
    for msg_id, name in enumerate(topics):
        out += _message(b"A", struct.pack("<BH", 0, msg_id) + name.encode())
    for msg_id, (name, values) in enumerate(topics.items()):
        fmt, layout = _layout(FIELDS[name])
        rows = len(values["timestamp"])
        for k in range(rows):
            flat = []
            for (type_name, field), (_, n) in zip(FIELDS[name], layout):
                base = type_name.partition("[")[0]
                default = np.nan if base in ("float", "double") else 0
                v = np.asarray(values.get(field, np.full((rows, n) if n > 1 else rows, default)))[k]
                items = np.atleast_1d(v).tolist()
                flat.extend(
                    int(x)
                    if base in ("uint64_t", "uint8_t", "int32_t")
                    else bool(x)
                    if base == "bool"
                    else float(x)
                    for x in items
                )
            out += _message(b"D", struct.pack("<H", msg_id) + struct.pack(fmt, *flat))
    path.write_bytes(bytes(out))
    return path
