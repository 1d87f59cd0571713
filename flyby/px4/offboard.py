"""Offboard MAVLink client for one PX4 SITL instance: parameters, OFFBOARD mode, arming, setpoints.

PX4 SITL's onboard MAVLink instance for instance ``i`` listens on UDP ``14580 + i``
and sends to UDP ``14540 + i``; this client listens on ``14540 + i`` and answers the
address PX4's packets come from (DESIGN.md, "PX4 SITL facts the bridge must respect"):

- Setpoints: SET_POSITION_TARGET_LOCAL_NED, ``type_mask`` 1479 (velocity + yaw rate),
  ``MAV_FRAME_LOCAL_NED``, streamed at >= 2 Hz before and during OFFBOARD.
- OFFBOARD: COMMAND_LONG MAV_CMD_DO_SET_MODE, ``param1`` = 1 (custom mode enabled),
  ``param2`` = 6 (PX4 main mode OFFBOARD; not ``6 << 16``).
- Arm: COMMAND_LONG MAV_CMD_COMPONENT_ARM_DISARM, ``param1`` = 1.
- Parameters: PARAM_SET; integer parameters travel bit-cast into the float field.

The start-up helpers (:meth:`OffboardClient.wait_heartbeat`, ``set_params``, ``set_offboard``,
``arm``) each run one step of :mod:`flyby.px4.startup`'s sequence, the one the flight stack runs.
PX4 runs in lockstep with the simulator, so nothing on this link happens unless
the simulation steps. The blocking helpers therefore take a ``step`` callable that
advances the simulation by one step between polls; without one they wait in wall
time (for a PX4 or a test peer that runs on its own clock). Every wait is bounded.

Inputs and outputs are flyby frames (ENU world, FLU body); :mod:`flyby.px4.frames`
converts.
"""

from __future__ import annotations

import logging
import select
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np

from flyby.errors import PX4Timeout, PX4Unavailable
from flyby.px4 import frames
from flyby.px4.mavlink import (
    GCS_COMPONENT_ID,
    GCS_SYSTEM_ID,
    MAV_MODE_FLAG_CUSTOM_MODE_ENABLED,
    MAV_MODE_FLAG_SAFETY_ARMED,
    OFFBOARD_BASE_PORT,
    PX4_CUSTOM_MAIN_MODE_OFFBOARD,
    TYPE_MASK_VELOCITY_YAW_RATE,
    bind_error,
    dialect,
    make_link,
    param_from_wire,
    param_id_str,
    param_to_wire,
    px4_main_mode,
)
from flyby.px4.params import SITL_PARAMS  # the parameters set at start-up (flyby.px4.params)
from flyby.px4.startup import StartupSequence, Step

log = logging.getLogger(__name__)


class LocalPosition(NamedTuple):
    """PX4's estimate from LOCAL_POSITION_NED, in flyby frames.

    time_boot_ms: PX4 time, ms. pos_w: (3,) m, world ENU relative to PX4's local origin.
    lin_vel_w: (3,) m/s, world ENU.
    """

    time_boot_ms: int
    pos_w: np.ndarray
    lin_vel_w: np.ndarray


class Attitude(NamedTuple):
    """PX4's estimate from ATTITUDE, in flyby frames.

    time_boot_ms: PX4 time, ms. quat_wxyz: (4,) body FLU -> world ENU.
    ang_vel_b: (3,) rad/s, body FLU.
    """

    time_boot_ms: int
    quat_wxyz: np.ndarray
    ang_vel_b: np.ndarray


class OffboardClient:
    """MAVLink offboard link to PX4 instance ``instance`` over UDP.

    Args:
        instance: PX4 instance ``i`` (listens on UDP ``14540 + i``).
        port: UDP port; None: ``14540 + instance``; 0: any free port (tests; see :attr:`port`).
        host: listen address (loopback).
        timeout_s: s, default bound of the blocking helpers.
        retry_s: s (wall), how often the blocking helpers resend unanswered requests.

    Raises:
        PX4PortInUse: the UDP port is taken (the message says how to find the holder).

    Attributes:
        target_system, target_component: PX4's ids, learned from its HEARTBEAT.
        armed, offboard: from PX4's latest HEARTBEAT.
        acks: latest COMMAND_ACK result per MAV_CMD.
        params: parameter values PX4 reported (PARAM_VALUE), by name.
        statustext: recent STATUSTEXT lines from PX4 (pre-flight failures, failsafes).
    """

    def __init__(
        self,
        instance: int,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        timeout_s: float = 10.0,
        retry_s: float = 0.5,
    ) -> None:
        self.instance = int(instance)
        self.timeout_s = float(timeout_s)
        self.retry_s = float(retry_s)
        self._m = dialect()
        self._link = make_link(GCS_SYSTEM_ID, GCS_COMPONENT_ID)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        wanted = OFFBOARD_BASE_PORT + self.instance if port is None else int(port)
        try:
            self._sock.bind((host, wanted))
        except OSError as exc:
            self._sock.close()
            raise bind_error("UDP", host, wanted, self.instance, "the offboard port", exc) from exc
        self._sock.setblocking(False)
        self.port = self._sock.getsockname()[1]
        self._peer: tuple[str, int] | None = None
        self.target_system = 0
        self.target_component = 0
        self.armed = False
        self.offboard = False
        self.heartbeats = 0
        self.acks: dict[int, int] = {}
        self.params: dict[str, int | float] = {}
        self.statustext: deque[str] = deque(maxlen=50)
        self._local_position: LocalPosition | None = None
        self._attitude: Attitude | None = None

    # -- receiving --------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True once PX4's HEARTBEAT has been received."""
        return self._peer is not None and self.heartbeats > 0

    def poll(self, timeout_s: float = 0.0) -> int:
        """Read every datagram waiting (waiting at most ``timeout_s`` for the first). Returns messages
        handled."""
        n = 0
        ready, _, _ = select.select([self._sock], [], [], max(timeout_s, 0.0))
        while ready:
            try:
                data, addr = self._sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # ICMP port unreachable from an earlier send: PX4 not up yet
                continue
            for msg in self._link.parse_buffer(data) or ():
                n += self._handle(msg, addr)
        return n

    def _handle(self, msg, addr) -> int:
        m = self._m
        mid = msg.get_msgId()
        if mid == m.MAVLINK_MSG_ID_HEARTBEAT:
            if msg.get_srcComponent() != m.MAV_COMP_ID_AUTOPILOT1 or msg.type == m.MAV_TYPE_GCS:
                return 1
            self._peer = addr
            self.target_system = msg.get_srcSystem()
            self.target_component = msg.get_srcComponent()
            self.armed = bool(msg.base_mode & MAV_MODE_FLAG_SAFETY_ARMED)
            self.offboard = bool(msg.base_mode & MAV_MODE_FLAG_CUSTOM_MODE_ENABLED) and (
                px4_main_mode(msg.custom_mode) == PX4_CUSTOM_MAIN_MODE_OFFBOARD
            )
            self.heartbeats += 1
        elif mid == m.MAVLINK_MSG_ID_COMMAND_ACK:
            self.acks[int(msg.command)] = int(msg.result)
        elif mid == m.MAVLINK_MSG_ID_PARAM_VALUE:
            self.params[param_id_str(msg.param_id)] = param_from_wire(msg.param_value, msg.param_type)
        elif mid == m.MAVLINK_MSG_ID_LOCAL_POSITION_NED:
            self._local_position = LocalPosition(
                int(msg.time_boot_ms),
                frames.ned_to_enu((msg.x, msg.y, msg.z)),
                frames.ned_to_enu((msg.vx, msg.vy, msg.vz)),
            )
        elif mid == m.MAVLINK_MSG_ID_ATTITUDE:
            q_ned_frd = frames.euler_ned_frd_to_quat(msg.roll, msg.pitch, msg.yaw)
            self._attitude = Attitude(
                int(msg.time_boot_ms),
                frames.quat_ned_frd_to_enu_flu(q_ned_frd),
                frames.frd_to_flu((msg.rollspeed, msg.pitchspeed, msg.yawspeed)),
            )
        elif mid == m.MAVLINK_MSG_ID_STATUSTEXT:
            text = msg.text if isinstance(msg.text, str) else msg.text.decode(errors="replace")
            self.statustext.append(text.rstrip("\x00"))
            log.debug("PX4 instance %d: %s", self.instance, text)
        return 1

    def local_position(self) -> LocalPosition | None:
        """PX4's latest LOCAL_POSITION_NED in ENU (None before the first)."""
        return self._local_position

    def attitude(self) -> Attitude | None:
        """PX4's latest ATTITUDE as a FLU -> ENU quaternion and FLU body rates (None before the first)."""
        return self._attitude

    # -- sending ----------------------------------------------------------------------------------

    def _send(self, msg) -> None:
        if self._peer is None:
            raise PX4Unavailable(
                f"PX4 instance {self.instance} has not sent a HEARTBEAT to UDP {self.port} yet; "
                f"wait_heartbeat() first"
            )
        try:
            self._sock.sendto(msg.pack(self._link), self._peer)
        except OSError as exc:
            raise PX4Unavailable(
                f"cannot send to PX4 instance {self.instance} at {self._peer}: {exc}"
            ) from exc

    def send_param(self, name: str, value: int | float) -> None:
        """PARAM_SET ``name`` = ``value`` (``int`` bit-cast as INT32, ``float`` as REAL32). Non-blocking."""
        if len(name) > 16:
            raise ValueError(f"PX4 parameter names have at most 16 characters, got {name!r}")
        wire_value, wire_type = param_to_wire(value)
        self._send(
            self._m.MAVLink_param_set_message(
                self.target_system, self.target_component, name.encode("ascii"), wire_value, wire_type
            )
        )

    def stream_velocity(self, vel_enu: np.ndarray, yaw_rate: float, *, time_boot_ms: int = 0) -> None:
        """Send one velocity + yaw-rate setpoint (call it at >= 2 Hz of PX4 time before and during OFFBOARD).

        Args:
            vel_enu: (3,) m/s, world ENU.
            yaw_rate: rad/s about world up (counter-clockwise positive), flyby's convention.
            time_boot_ms: sender time, ms (PX4 ignores it).
        """
        v_ned = frames.enu_to_ned(vel_enu)
        yaw_rate_ned = float(frames.yaw_rate_enu_to_ned(yaw_rate))
        self._send(
            self._m.MAVLink_set_position_target_local_ned_message(
                int(time_boot_ms) & 0xFFFFFFFF,
                self.target_system,
                self.target_component,
                self._m.MAV_FRAME_LOCAL_NED,
                TYPE_MASK_VELOCITY_YAW_RATE,
                0.0, 0.0, 0.0,
                float(v_ned[0]), float(v_ned[1]), float(v_ned[2]),
                0.0, 0.0, 0.0,
                0.0, yaw_rate_ned,
            )
        )  # fmt: skip

    def _command(self, command: int, *params: float) -> None:
        p = list(params) + [0.0] * (7 - len(params))
        self.acks.pop(command, None)
        self._send(
            self._m.MAVLink_command_long_message(self.target_system, self.target_component, command, 0, *p)
        )

    def request_offboard(self) -> None:
        """MAV_CMD_DO_SET_MODE param1 = 1 (custom), param2 = 6 (OFFBOARD). Non-blocking."""
        self._command(
            self._m.MAV_CMD_DO_SET_MODE, MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, PX4_CUSTOM_MAIN_MODE_OFFBOARD
        )

    def request_arm(self, arm: bool = True) -> None:
        """MAV_CMD_COMPONENT_ARM_DISARM param1 = 1 (arm) or 0 (disarm). Non-blocking."""
        self._command(self._m.MAV_CMD_COMPONENT_ARM_DISARM, 1.0 if arm else 0.0)

    def set_message_interval(self, message_id: int, interval_us: float) -> None:
        """MAV_CMD_SET_MESSAGE_INTERVAL: stream ``message_id`` every ``interval_us`` us (-1: off).
        Non-blocking."""
        self._command(self._m.MAV_CMD_SET_MESSAGE_INTERVAL, float(message_id), float(interval_us))

    # -- blocking helpers (bounded) ---------------------------------------------------------------

    def _wait(
        self,
        done: Callable[[], bool],
        what: str,
        *,
        step: Callable[[], None] | None,
        timeout_s: float | None,
        advance: Callable[[float], object] | None = None,
        stream: Callable[[], None] | None = None,
    ) -> None:
        """The bounded loop of every blocking helper: stream, ``advance(now)`` (send what is due),
        step or wait, read; until ``done()`` or ``PX4Timeout`` naming ``what`` after the bound."""
        limit = self.timeout_s if timeout_s is None else float(timeout_s)
        start = time.monotonic()
        while True:
            if stream is not None:
                stream()
            if advance is not None:
                advance(time.monotonic())
            if step is not None:
                step()
                self.poll(0.0)
            else:
                self.poll(min(0.02, self.retry_s))
            if done():
                return
            if time.monotonic() - start > limit:
                recent = "; ".join(list(self.statustext)[-5:]) or "none"
                raise PX4Timeout(
                    f"PX4 instance {self.instance}: {what} not confirmed within {limit:g} s "
                    f"(armed={self.armed}, offboard={self.offboard}; PX4 said: {recent})"
                )

    def _start_up(
        self,
        step_of_startup: Step,
        what: str,
        *,
        step: Callable[[], None] | None,
        timeout_s: float | None,
        params: Mapping[str, int | float] = SITL_PARAMS,
        stream: Callable[[], None] | None = None,
    ) -> None:
        """One step of :mod:`flyby.px4.startup`'s sequence, blocking (bounded); resends every ``retry_s``."""
        sequence = StartupSequence(self, params=params, steps=(step_of_startup,), request_period=self.retry_s)
        self._wait(
            lambda: sequence.sync(time.monotonic()),
            what,
            step=step,
            timeout_s=timeout_s,
            advance=sequence.advance,
            stream=stream,
        )

    def wait_heartbeat(
        self, *, step: Callable[[], None] | None = None, timeout_s: float | None = None
    ) -> None:
        """Wait (bounded) for PX4's HEARTBEAT; learns its address and ids (start-up step ``HEARTBEAT``).

        Raises:
            PX4Timeout: none within the bound.
        """
        self._start_up(Step.HEARTBEAT, f"HEARTBEAT on UDP {self.port}", step=step, timeout_s=timeout_s)

    def set_params(
        self,
        params: Mapping[str, int | float] = SITL_PARAMS,
        *,
        step: Callable[[], None] | None = None,
        timeout_s: float | None = None,
    ) -> None:
        """Set parameters and wait (bounded) until PX4 echoes each value in PARAM_VALUE (step ``PARAMS``).

        Integer values (Python ``int``) go bit-cast as INT32, floats as REAL32.

        Raises:
            PX4Timeout: a value not confirmed within the bound.
        """
        what = f"parameters {sorted(params)}"
        self._start_up(Step.PARAMS, what, step=step, timeout_s=timeout_s, params=params)

    def set_offboard(
        self,
        vel_enu: np.ndarray = (0.0, 0.0, 0.0),
        yaw_rate: float = 0.0,
        *,
        step: Callable[[], None] | None = None,
        timeout_s: float | None = None,
    ) -> None:
        """Stream ``vel_enu``/``yaw_rate`` and switch to OFFBOARD; wait (bounded) for the HEARTBEAT to say so.

        Start-up step ``OFFBOARD``.

        Raises:
            PX4Timeout: not in OFFBOARD within the bound (PX4's last STATUSTEXT lines in the message).
        """
        self._start_up(
            Step.OFFBOARD,
            "OFFBOARD mode",
            step=step,
            timeout_s=timeout_s,
            stream=lambda: self.stream_velocity(vel_enu, yaw_rate),
        )

    def arm(
        self,
        vel_enu: np.ndarray = (0.0, 0.0, 0.0),
        yaw_rate: float = 0.0,
        *,
        step: Callable[[], None] | None = None,
        timeout_s: float | None = None,
    ) -> None:
        """Keep streaming the setpoint and arm; wait (bounded) for the HEARTBEAT to say armed (step ``ARM``).

        Raises:
            PX4Timeout: not armed within the bound (PX4's pre-flight messages in the message).
        """
        self._start_up(
            Step.ARM,
            "arming",
            step=step,
            timeout_s=timeout_s,
            stream=lambda: self.stream_velocity(vel_enu, yaw_rate),
        )

    def takeoff(
        self,
        altitude_m: float,
        *,
        climb_rate_mps: float = 1.0,
        step: Callable[[], None] | None = None,
        timeout_s: float | None = None,
    ) -> None:
        """Offboard takeoff: climb at ``climb_rate_mps`` until PX4's local altitude reaches ``altitude_m``.

        Leaves a zero-velocity (hover) setpoint behind. Needs OFFBOARD and armed first
        (:meth:`set_offboard`, :meth:`arm`); altitude is PX4's estimate (LOCAL_POSITION_NED).

        Raises:
            PX4Timeout: altitude not reached within the bound.
        """

        def reached() -> bool:
            lp = self._local_position
            return lp is not None and lp.pos_w[2] >= altitude_m

        self._wait(
            reached,
            f"takeoff to {altitude_m:g} m",
            step=step,
            timeout_s=timeout_s,
            stream=lambda: self.stream_velocity((0.0, 0.0, climb_rate_mps), 0.0),
        )
        self.stream_velocity((0.0, 0.0, 0.0), 0.0)

    def close(self) -> None:
        """Close the socket. Idempotent."""
        self._sock.close()

    def __enter__(self) -> OffboardClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
