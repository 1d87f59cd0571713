"""Lockstep MAVLink bridge to one PX4 SITL instance: the simulator side of ``simulator_mavlink``.

Protocol (DESIGN.md, "PX4 SITL facts the bridge must respect"; PX4
``src/modules/simulation/simulator_mavlink/``):

- The simulator is the TCP *server* on ``4560 + i``; PX4 instance ``i`` connects to it.
- PX4 holds its start-up until the first HIL_SENSOR with ``id`` 0, and its clock is
  exactly that message's ``time_usec`` (strictly increasing, starting above 0): only
  HIL_SENSOR id 0 advances PX4's time. So sensors go first, every physics step.
- HIL_SENSOR: body FRD, SI units, accelerometer = specific force ((0, 0, -9.81) at rest,
  level), magnetometer in gauss, pressures in hPa, ``fields_updated`` 7167.
- HIL_GPS at 5-10 Hz: degE7, mm, cm/s, eph/epv in cm, fix type 3, >= 10 satellites.
- HIL_STATE_QUATERNION: ground truth (PX4 publishes it as ``*_groundtruth`` topics only).
- PX4 answers each HIL_SENSOR with HIL_ACTUATOR_CONTROLS once its outputs run:
  ``controls[0..3]`` are the four rotors in [0, 1] (PX4 motor order), armed when
  ``mode & 128``, ``time_usec`` = PX4's clock = the HIL_SENSOR time it answers.
- One write per step: HIL_STATE_QUATERNION and HIL_GPS are queued and go out in the same
  TCP segment as the step's HIL_SENSOR (last), so PX4 sees them before its clock advances.
- Lockstep: after the first reply, wait for the reply to each HIL_SENSOR before stepping
  physics. The wait is bounded: on timeout the last command is kept (and counted). PX4's
  process exiting or the connection closing raises :class:`~flyby.errors.PX4Died`; no
  reply for ``dead_after_s`` in a row (PX4 frozen, e.g. SIGSTOP) raises
  :class:`~flyby.errors.PX4Timeout`; both name PX4's log. Never a hang.

Everything here is for one PX4 instance; :class:`flyby.px4.flight_stack.PX4FlightStack`
drives one bridge per drone. Inputs are flyby frames (ENU world, FLU body); the
conversion to NED/FRD is :mod:`flyby.px4.frames`.
"""

from __future__ import annotations

import logging
import math
import select
import socket
import time
from collections import deque
from typing import NamedTuple, Protocol

import numpy as np

from flyby.errors import PX4Died, PX4Timeout, PX4Unavailable
from flyby.geometry import STANDARD_GRAVITY, enu_to_geodetic
from flyby.px4 import frames
from flyby.px4.mavlink import (
    HIL_SENSOR_FIELDS_ACCEL_GYRO_MAG_BARO,
    MAV_MODE_FLAG_SAFETY_ARMED,
    SIM_BASE_PORT,
    SIM_COMPONENT_ID,
    SIM_SYSTEM_ID,
    bind_error,
    dialect,
    make_link,
)

log = logging.getLogger(__name__)

EXIT_GRACE_S = 0.5  # s: after the connection drops, how long to wait for PX4's exit code for the message
DEFAULT_HOME = (47.397742, 8.545594, 488.0)  # PX4 SITL's default home: lat deg, lon deg, alt m AMSL (Zurich)
_INT16 = 32767


class ProcessLike(Protocol):
    """What the bridge needs from a launcher: exit state and a description with the log path."""

    def poll(self) -> int | None: ...

    def describe(self) -> str: ...


class ActuatorReply(NamedTuple):
    """The latest HIL_ACTUATOR_CONTROLS.

    controls: (4,) float64 rotor commands in [0, 1], PX4 motor order.
    armed: PX4 is armed (``mode & 128``).
    time_usec: PX4's clock when it sent the reply (0 before any reply).
    fresh: True when this reply answers the latest HIL_SENSOR; False when the wait
        timed out (or PX4 has not started answering) and the last command is kept.
    """

    controls: np.ndarray
    armed: bool
    time_usec: int
    fresh: bool


class LockstepBridge:
    """TCP server on ``4560 + instance`` that PX4 instance ``instance`` connects to.

    Args:
        instance: PX4 instance ``i``.
        timeout_s: s, bound on each wait for a HIL_ACTUATOR_CONTROLS reply (then keep last).
        port: TCP port; None: ``4560 + instance``; 0: any free port (tests; see :attr:`port`).
        host: listen address (loopback by default).
        dead_after_s: s without any fresh reply (consecutive timeouts) before PX4 counts as dead.
        process: the PX4 launcher (``poll()``, ``describe()``), checked on every timeout so a
            PX4 that exited is reported at once with its log path.
        home: (lat deg, lon deg, alt m AMSL) of the world origin, for HIL_STATE_QUATERNION.

    Raises:
        PX4PortInUse: the TCP port is taken (the message says how to find the holder).

    Attributes:
        rtt_s: recent lockstep round-trip times (HIL_SENSOR sent -> its reply parsed), seconds.
        replies, timeouts: counts of fresh replies and of waits that timed out.
    """

    def __init__(
        self,
        instance: int,
        timeout_s: float = 0.5,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        dead_after_s: float = 5.0,
        process: ProcessLike | None = None,
        home: tuple[float, float, float] = DEFAULT_HOME,
    ) -> None:
        if timeout_s <= 0 or dead_after_s <= 0:
            raise ValueError(f"timeout_s ({timeout_s}) and dead_after_s ({dead_after_s}) must be > 0 s")
        self.instance = int(instance)
        self.timeout_s = float(timeout_s)
        self.dead_after_s = float(dead_after_s)
        self.process = process
        self.home = tuple(float(h) for h in home)
        self._m = dialect()
        self._link = make_link(SIM_SYSTEM_ID, SIM_COMPONENT_ID)
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        wanted = SIM_BASE_PORT + self.instance if port is None else int(port)
        try:
            self._server.bind((host, wanted))
        except OSError as exc:
            self._server.close()
            raise bind_error("TCP", host, wanted, self.instance, "the simulator port", exc) from exc
        self._server.listen(1)
        self._server.setblocking(False)
        self.port = self._server.getsockname()[1]
        self._sock: socket.socket | None = None
        self._out = bytearray()  # queued HIL_GPS / HIL_STATE_QUATERNION, sent with the next HIL_SENSOR
        self._peer: tuple[str, int] | None = None
        self._last_sensor_time_usec = 0
        self._sensor_sent_at = 0.0
        self._answered = True
        self._arrival_matching = False
        self._last = ActuatorReply(np.zeros(4), False, 0, False)
        self._first_reply = False
        self._missed_since_s = 0.0
        self.rtt_s: deque[float] = deque(maxlen=100_000)
        self.replies = 0
        self.timeouts = 0

    # -- connection -------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True once PX4 has connected (until :meth:`close`)."""
        return self._sock is not None

    @property
    def started(self) -> bool:
        """True once PX4 has sent its first HIL_ACTUATOR_CONTROLS (lockstep waits from then on)."""
        return self._first_reply

    def accept(self) -> bool:
        """Accept PX4's connection if it is waiting (never blocks). Returns :attr:`connected`."""
        if self._sock is not None:
            return True
        try:
            sock, peer = self._server.accept()
        except (BlockingIOError, InterruptedError):
            return False
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.dead_after_s)  # bounds sendall when PX4 stops reading
        self._sock, self._peer = sock, peer
        log.info("PX4 instance %d connected from %s:%d on TCP %d", self.instance, *peer, self.port)
        return True

    def wait_for_connection(self, timeout_s: float = 30.0) -> None:
        """Wait (bounded) until PX4 connects.

        Raises:
            PX4Timeout: no connection within ``timeout_s`` (message names PX4's log).
            PX4Died: PX4's process exited meanwhile.
        """
        deadline = time.monotonic() + timeout_s
        while not self.accept():
            self._check_process("while waiting for PX4 to connect")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PX4Timeout(
                    f"PX4 instance {self.instance} did not connect to TCP 127.0.0.1:{self.port} within "
                    f"{timeout_s:g} s{self._where()}"
                )
            select.select([self._server], [], [], min(remaining, 0.1))

    # -- outgoing ---------------------------------------------------------------------------------

    def send_sensors(
        self,
        time_usec: int,
        imu: tuple[np.ndarray, np.ndarray],
        mag: np.ndarray,
        baro: tuple[float, float, float],
    ) -> None:
        """Send HIL_SENSOR id 0 (advances PX4's clock to ``time_usec``).

        Args:
            time_usec: PX4 time, microseconds, > 0 and strictly increasing.
            imu: (accel_b, gyro_b), each (3,): specific force m/s^2 and angular rate rad/s, body FLU.
            mag: (3,) magnetic field, gauss, body FLU.
            baro: (abs_pressure_hpa, pressure_alt_m, temperature_c).

        Raises:
            ValueError: ``time_usec`` not above the previous one (PX4's clock cannot go back).
            PX4Unavailable: the connection is gone.
        """
        time_usec = int(time_usec)
        if time_usec <= self._last_sensor_time_usec:
            raise ValueError(
                f"HIL_SENSOR time_usec {time_usec} must be > 0 and above the previous "
                f"{self._last_sensor_time_usec} "
                "(PX4's lockstep clock is exactly this field)"
            )
        accel_frd = frames.flu_to_frd(imu[0])
        gyro_frd = frames.flu_to_frd(imu[1])
        mag_frd = frames.flu_to_frd(mag)
        abs_pressure_hpa, pressure_alt_m, temperature_c = (float(v) for v in baro)
        msg = self._m.MAVLink_hil_sensor_message(
            time_usec,
            float(accel_frd[0]),
            float(accel_frd[1]),
            float(accel_frd[2]),
            float(gyro_frd[0]),
            float(gyro_frd[1]),
            float(gyro_frd[2]),
            float(mag_frd[0]),
            float(mag_frd[1]),
            float(mag_frd[2]),
            abs_pressure_hpa,
            0.0,
            pressure_alt_m,
            temperature_c,
            HIL_SENSOR_FIELDS_ACCEL_GYRO_MAG_BARO,
            0,
        )
        self._queue(msg)
        self._sensor_sent_at = time.perf_counter()  # the round trip includes the write itself
        self.flush()
        self._last_sensor_time_usec = time_usec
        self._answered = False

    def send_gps(
        self,
        time_usec: int,
        lat_deg: float,
        lon_deg: float,
        alt_m: float,
        vel_enu: np.ndarray,
        *,
        eph_m: float = 0.3,
        epv_m: float = 0.4,
        satellites: int = 10,
    ) -> None:
        """Queue HIL_GPS (call at 5-10 Hz of sim time); it goes out with the next HIL_SENSOR.

        Args:
            time_usec: the current PX4 time, microseconds.
            lat_deg, lon_deg: WGS84 degrees; alt_m: metres AMSL.
            vel_enu: (3,) velocity, m/s, world ENU.
            eph_m, epv_m: horizontal/vertical position accuracy, m (sent in cm).
            satellites: satellites visible (PX4's EKF wants >= 6; flyby sends >= 10).
        """
        v_ned = frames.enu_to_ned(vel_enu)
        ground_speed = math.hypot(v_ned[0], v_ned[1])
        cog_cdeg = round(math.degrees(math.atan2(v_ned[1], v_ned[0])) % 360.0 * 100.0) % 36000
        if ground_speed < 0.05:
            cog_cdeg = 65535  # unknown
        msg = self._m.MAVLink_hil_gps_message(
            int(time_usec),
            3,  # 3D fix
            round(lat_deg * 1e7),
            round(lon_deg * 1e7),
            round(alt_m * 1000.0),
            _u16(eph_m * 100.0),
            _u16(epv_m * 100.0),
            _u16(ground_speed * 100.0),
            _i16(v_ned[0] * 100.0),
            _i16(v_ned[1] * 100.0),
            _i16(v_ned[2] * 100.0),
            cog_cdeg,
            int(satellites),
            0,
            0,
        )
        self._queue(msg)

    def send_ground_truth(self, time_usec: int, state, row: int = 0) -> None:
        """Queue HIL_STATE_QUATERNION for drone ``row`` of a :class:`~flyby.dynamics.multirotor.DroneState`.

        Goes out with the next HIL_SENSOR (or :meth:`flush`). PX4 publishes it as ground-truth
        topics only (its estimator uses HIL_SENSOR/HIL_GPS); the CI test double flies from it.
        """
        q_ned_frd = frames.quat_enu_flu_to_ned_frd(np.asarray(state.quat_wxyz[row], dtype=np.float64))
        rates_frd = frames.flu_to_frd(state.ang_vel_b[row])
        v_ned = frames.enu_to_ned(state.lin_vel_w[row])
        acc_frd = frames.flu_to_frd(state.specific_force_b[row])
        lat, lon, alt = enu_to_geodetic(np.asarray(state.pos_w[row], dtype=np.float64), *self.home)
        msg = self._m.MAVLink_hil_state_quaternion_message(
            int(time_usec),
            [float(c) for c in q_ned_frd],
            float(rates_frd[0]),
            float(rates_frd[1]),
            float(rates_frd[2]),
            round(float(lat) * 1e7),
            round(float(lon) * 1e7),
            round(float(alt) * 1000.0),
            _i16(v_ned[0] * 100.0),
            _i16(v_ned[1] * 100.0),
            _i16(v_ned[2] * 100.0),
            _u16(math.hypot(v_ned[0], v_ned[1]) * 100.0),
            _u16(float(np.linalg.norm(v_ned)) * 100.0),
            _i16(acc_frd[0] / STANDARD_GRAVITY * 1000.0),  # mG
            _i16(acc_frd[1] / STANDARD_GRAVITY * 1000.0),
            _i16(acc_frd[2] / STANDARD_GRAVITY * 1000.0),
        )
        self._queue(msg)

    def _queue(self, msg) -> None:
        if self._sock is None:
            raise PX4Unavailable(
                f"PX4 instance {self.instance} is not connected to TCP {self.port}{self._where()}"
            )
        self._out += msg.pack(self._link)

    def flush(self) -> None:
        """Send the queued messages now (one write; :meth:`send_sensors` calls it).

        Raises:
            PX4Died: the connection is gone (PX4 exited or closed it).
            PX4Timeout: PX4 stopped reading for ``dead_after_s`` (frozen).
        """
        if not self._out:
            return
        if self._sock is None:
            raise PX4Unavailable(
                f"PX4 instance {self.instance} is not connected to TCP {self.port}{self._where()}"
            )
        data, self._out = bytes(self._out), bytearray()
        try:
            self._sock.sendall(data)
        except TimeoutError as exc:
            raise PX4Timeout(
                f"PX4 instance {self.instance} stopped answering: it took no simulator data for "
                f"{self.dead_after_s:g} s (frozen, e.g. SIGSTOP, or starved of CPU){self._where()}"
            ) from exc
        except OSError as exc:
            self._close_socket()
            raise self._died(f"its simulator connection failed ({exc})") from exc

    # -- incoming ---------------------------------------------------------------------------------

    def receive_actuators(self, timeout_s: float | None = None) -> ActuatorReply:
        """The reply to the latest HIL_SENSOR: wait (bounded) once PX4 has started answering.

        Before PX4's first reply (it is booting) this never waits and returns the last
        (zero, disarmed) command. After it, it waits up to ``timeout_s`` (default
        :attr:`timeout_s`) for the reply whose ``time_usec`` is the latest HIL_SENSOR's;
        on timeout it keeps the last command (``fresh=False``).

        Raises:
            PX4Died: the connection closed or PX4's process exited.
            PX4Timeout: no fresh reply for ``dead_after_s`` in a row (PX4 frozen or starved).
            Both messages name PX4's log.
        """
        self.flush()
        if self._sock is None:
            raise PX4Unavailable(
                f"PX4 instance {self.instance} is not connected to TCP {self.port}{self._where()}"
            )
        if not self._first_reply or self._answered:
            self._read(0.0)
            if self._answered or not self._first_reply:
                return self._last._replace(fresh=self._answered and self._first_reply)
        wait_s = self.timeout_s if timeout_s is None else float(timeout_s)
        deadline = time.perf_counter() + wait_s
        while not self._answered:
            remaining = deadline - time.perf_counter()
            if remaining <= 0.0:
                return self._on_timeout(wait_s)
            self._read(remaining)
        self._missed_since_s = 0.0
        return self._last

    def _on_timeout(self, waited_s: float) -> ActuatorReply:
        self.timeouts += 1
        self._missed_since_s += waited_s
        self._answered = True  # a late reply to this HIL_SENSOR must not count for the next one
        self._check_process("while waiting for HIL_ACTUATOR_CONTROLS")
        if self._missed_since_s >= self.dead_after_s:
            raise PX4Timeout(
                f"PX4 instance {self.instance} stopped answering: no HIL_ACTUATOR_CONTROLS for "
                f"{self._missed_since_s:.1f} s (dead_after_s {self.dead_after_s:g} s, lockstep time "
                f"{self._last_sensor_time_usec} us); it is frozen (e.g. SIGSTOP) or starved of CPU"
                f"{self._where()}"
            )
        log.warning(
            "PX4 instance %d: no HIL_ACTUATOR_CONTROLS within %.3f s at time_usec %d; "
            "keeping the last command",
            self.instance,
            waited_s,
            self._last_sensor_time_usec,
        )
        return self._last._replace(fresh=False)

    def _read(self, timeout_s: float) -> None:
        """Read and parse what PX4 sent, waiting at most ``timeout_s`` for the first bytes."""
        sock = self._sock
        assert sock is not None
        ready, _, _ = select.select([sock], [], [], max(timeout_s, 0.0))
        while ready:
            try:
                data = sock.recv(65536, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._close_socket()
                raise self._died(f"its simulator connection failed ({exc})") from exc
            if not data:
                self._close_socket()
                raise self._died("it closed the simulator connection")
            for msg in self._link.parse_buffer(data) or ():
                self._handle(msg)
            if len(data) < 65536:
                return

    def _handle(self, msg) -> None:
        mid = msg.get_msgId()
        if mid == self._m.MAVLINK_MSG_ID_HIL_ACTUATOR_CONTROLS:
            now = time.perf_counter()
            t = int(msg.time_usec)
            if not self._first_reply:
                self._first_reply = True
                if not 0 < t <= self._last_sensor_time_usec:
                    # PX4 stamps replies with its lockstep clock (= HIL_SENSOR time); if this one does
                    # not, match replies to sensors by arrival order instead.
                    self._arrival_matching = True
                    log.warning(
                        "PX4 instance %d: reply time_usec %d is not on the sensor clock", self.instance, t
                    )
                log.info("PX4 instance %d answered its first HIL_SENSOR (time_usec %d)", self.instance, t)
            fresh = not self._answered and (self._arrival_matching or t >= self._last_sensor_time_usec)
            controls = np.clip(np.asarray(msg.controls[:4], dtype=np.float64), 0.0, 1.0)
            armed = bool(msg.mode & MAV_MODE_FLAG_SAFETY_ARMED)
            self._last = ActuatorReply(controls, armed, t, True)
            if fresh:
                self._answered = True
                self.replies += 1
                self.rtt_s.append(now - self._sensor_sent_at)

    # -- shutdown and diagnostics -----------------------------------------------------------------

    def _check_process(self, doing: str) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise PX4Died(f"PX4 instance {self.instance} exited {doing}: {self.process.describe()}")

    def _died(self, what: str) -> PX4Died:
        """The error for a lost connection: waits up to EXIT_GRACE_S for PX4's exit state to report it."""
        if self.process is not None:
            deadline = time.monotonic() + EXIT_GRACE_S
            while self.process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            if self.process.poll() is not None:
                return PX4Died(f"PX4 instance {self.instance} exited: {what}; {self.process.describe()}")
        return PX4Died(f"PX4 instance {self.instance} dropped the simulator link: {what}{self._where()}")

    def _where(self) -> str:
        return f"; {self.process.describe()}" if self.process is not None else ""

    def _close_socket(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def disconnect(self) -> None:
        """Drop PX4's connection and forget the lockstep state (PX4 restarts connect again)."""
        self._close_socket()
        self._out = bytearray()
        self._last_sensor_time_usec = 0
        self._answered = True
        self._first_reply = False
        self._arrival_matching = False
        self._missed_since_s = 0.0
        self._last = ActuatorReply(np.zeros(4), False, 0, False)
        self._link = make_link(SIM_SYSTEM_ID, SIM_COMPONENT_ID)

    def close(self) -> None:
        """Close the connection and the listening socket. Idempotent."""
        self._close_socket()
        self._server.close()

    def __enter__(self) -> LockstepBridge:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _i16(x: float) -> int:
    return int(max(-_INT16, min(_INT16, round(float(x)))))


def _u16(x: float) -> int:
    return int(max(0, min(65534, round(float(x)))))
