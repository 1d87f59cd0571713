"""A PX4-side MAVLink test double for CI (test code only; no PX4 needed).

:class:`MavlinkDouble` plays both PX4 links for one instance, the way PX4 SITL does:

- lockstep link: it *connects* to the bridge's TCP port (PX4 is the client), sends a
  HEARTBEAT, checks every HIL_SENSOR (strictly increasing ``time_usec`` > 0, id 0,
  ``fields_updated`` 7167, plausible units, FRD specific force about (0, 0, -9.81) when the
  ground truth says the vehicle is at rest and level), checks HIL_GPS units, and answers
  each HIL_SENSOR with HIL_ACTUATOR_CONTROLS (``time_usec`` = that sensor time, ``mode`` 129
  armed / 1 disarmed, ``flags`` 1 = lockstep) computed by the built-in cascade controller
  from the ground truth (HIL_STATE_QUATERNION) and the latest offboard velocity setpoint;
- offboard link: from its own UDP port it sends HEARTBEAT (base mode, PX4 custom mode
  OFFBOARD = 6 << 16), LOCAL_POSITION_NED and ATTITUDE (from the ground truth) to the
  client's port, and answers PARAM_SET (PARAM_VALUE echo), DO_SET_MODE and
  COMPONENT_ARM_DISARM (COMMAND_ACK), and takes SET_POSITION_TARGET_LOCAL_NED. Like PX4
  v1.16, a PARAM_SET of a name it does not know or of the wrong type gets no reply, only a
  console line (``ERROR [mavlink] unknown param: NAME`` / ``param types mismatch param: NAME``)
  in its log (:meth:`MavlinkDouble.log_tail`, as :class:`flyby.px4.launcher.PX4Launcher`).

Its clock is PX4's: the latest HIL_SENSOR time (wall time before any sensor, for
offboard-only tests). Protocol mistakes are recorded in :attr:`violations` for the tests
to assert on. Faults for tests: ``first_reply_after`` (PX4 still booting), ``drop_replies``
(sensor indices left unanswered), ``hang_after`` (stop answering, keep the connection),
``die_after`` (close everything, like a crash), ``arm_after_s`` (estimator not ready).

It is also launcher-like (``start``/``stop``/``poll``/``describe``), so
:class:`flyby.px4.flight_stack.PX4FlightStack` can run on it through ``launcher_factory``;
each ``start`` is a fresh boot, as a restarted PX4 would be.
"""

from __future__ import annotations

import math
import select
import socket
import threading
import time
from collections import deque

import numpy as np

from flyby.geometry import STANDARD_GRAVITY, geodetic_to_enu
from flyby.px4 import frames
from flyby.px4.bridge import DEFAULT_HOME
from flyby.px4.mavlink import (
    HIL_SENSOR_FIELDS_ACCEL_GYRO_MAG_BARO,
    PX4_CUSTOM_MAIN_MODE_OFFBOARD,
    TYPE_MASK_VELOCITY_YAW_RATE,
    dialect,
    make_link,
    param_from_wire,
    param_id_str,
)

INT_PARAMS = {"COM_RCL_EXCEPT", "NAV_RCL_ACT", "NAV_DLL_ACT"}  # PX4 INT32 parameters the bridge sets
FLOAT_PARAMS = {"COM_DISARM_PRFLT", "MPC_THR_HOVER"}  # PX4 FLOAT parameters the bridge sets


def _known_params() -> dict[str, bool]:
    """Parameter name -> is INT32, for every parameter the double knows (others are unknown, as in PX4)."""
    from flyby.px4.params import SITL_PARAMS

    known = {name: not isinstance(value, float) for name, value in SITL_PARAMS.items()}
    known.update({name: True for name in INT_PARAMS})
    known.update({name: False for name in FLOAT_PARAMS})
    return known


OFFBOARD_LOSS_S = 0.5  # s of PX4 time: setpoints must arrive at >= 2 Hz during OFFBOARD


def make_cascade(num_drones: int = 1):
    """The built-in cascade controller with default PX4 gains and the Iris airframe."""
    from flyby.control.cascade import CascadeCfg, CascadeController
    from flyby.dynamics.multirotor import MultirotorCfg

    return CascadeController(CascadeCfg(), MultirotorCfg(), num_drones)


class MavlinkDouble:
    """PX4-side peer of one instance, in a thread, with bounded waits everywhere.

    Args:
        sim_port: the bridge's TCP port to connect to.
        offboard_port: the offboard client's UDP port to send to (None: no offboard link).
        instance: PX4 instance number it pretends to be (system id 1 + instance).
        first_reply_after: HIL_SENSORs left unanswered at start (PX4 booting).
        drop_replies: indices (0-based) of HIL_SENSORs never answered.
        reply_delay_s: s of wall time to wait before each reply.
        hang_after: after this many HIL_SENSORs, stop answering (connection stays up).
        die_after: after this many HIL_SENSORs, close both sockets and end the thread.
        arm_after_s: s of PX4 time before arming is accepted (PX4's estimator converging).
        telemetry_rate_hz: Hz of PX4 time for LOCAL_POSITION_NED and ATTITUDE.
        home: world origin (lat deg, lon deg, alt m), as the bridge's.
        connect_timeout_s: s, bound on connecting to the bridge.
        controller: object with ``update(vel_sp_w, yaw_rate_sp, state, dt) -> u`` for one drone;
            None: :func:`make_cascade`.
    """

    def __init__(
        self,
        sim_port: int | None,
        offboard_port: int | None = None,
        *,
        instance: int = 0,
        first_reply_after: int = 3,
        drop_replies: set[int] | frozenset[int] = frozenset(),
        reply_delay_s: float = 0.0,
        hang_after: int | None = None,
        die_after: int | None = None,
        arm_after_s: float = 0.5,
        telemetry_rate_hz: float = 50.0,
        home: tuple[float, float, float] = DEFAULT_HOME,
        connect_timeout_s: float = 10.0,
        controller=None,
    ) -> None:
        self.sim_port = sim_port
        self.offboard_port = offboard_port
        self.instance = instance
        self.first_reply_after = first_reply_after
        self.drop_replies = set(drop_replies)
        self.reply_delay_s = reply_delay_s
        self.hang_after = hang_after
        self.die_after = die_after
        self.arm_after_s = arm_after_s
        self.telemetry_period_us = int(1e6 / telemetry_rate_hz)
        self.home = home
        self.connect_timeout_s = connect_timeout_s
        self._controller_arg = controller
        self._m = dialect()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.starts = 0
        self.log_path = None
        self._reset_state()

    # -- state ------------------------------------------------------------------------------------

    def _reset_state(self) -> None:
        self.violations: list[str] = []
        self.log_lines: deque[str] = deque(maxlen=1000)  # what PX4 would print on its console
        self.sensor_times: list[int] = []
        self.replies_sent = 0
        self.gps_received = 0
        self.gps_times: list[int] = []
        self.ground_truth_received = 0
        self.rest_checks = 0
        self.params: dict[str, int | float] = {}
        self.setpoints: deque[tuple[int, int, np.ndarray, float]] = deque(maxlen=100_000)
        self.setpoint_times_us: list[int] = []
        self.commands: list[tuple[int, tuple[float, ...]]] = []
        self.armed = False
        self.offboard = False
        self.exit_code: int | None = None
        self.error: BaseException | None = None
        self._vel_sp_w = np.zeros(3)
        self._yaw_rate_sp = 0.0
        self._gt: dict | None = None
        self._still_count = 0
        self._last_accel_flu = np.array([0.0, 0.0, STANDARD_GRAVITY])
        self._last_sensor_us = 0
        self._last_setpoint_us: int | None = None
        self._next_heartbeat_us = 0
        self._next_telemetry_us = 0
        self._wall0 = time.monotonic()
        self._controller = self._controller_arg if self._controller_arg is not None else make_cascade(1)
        if hasattr(self._controller, "reset"):
            self._controller.reset()
        self._tcp: socket.socket | None = None
        self._udp: socket.socket | None = None
        self._tcp_link = make_link(1 + self.instance, 1)
        self._udp_link = make_link(1 + self.instance, 1)
        self._client_addr = None if self.offboard_port is None else ("127.0.0.1", self.offboard_port)

    def now_us(self) -> int:
        """The double's clock: PX4 time = latest HIL_SENSOR time; wall time before any sensor."""
        if self._last_sensor_us > 0:
            return self._last_sensor_us
        return int((time.monotonic() - self._wall0) * 1e6) + 1

    def _violation(self, text: str) -> None:
        if len(self.violations) < 200:
            self.violations.append(text)

    # -- launcher-like ----------------------------------------------------------------------------

    def start(self) -> MavlinkDouble:
        """(Re)start: a fresh boot in a new thread (stops the previous one first)."""
        self.stop()
        self._stop.clear()
        self._reset_state()
        self.starts += 1
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind(("127.0.0.1", 0))
        self._udp.setblocking(False)
        self._thread = threading.Thread(target=self._run, name=f"mavlink-double-{self.instance}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> int | None:
        """Stop the thread (bounded join) and close the sockets. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            assert not self._thread.is_alive(), "test double thread did not stop"
            self._thread = None
        self._close()
        return self.exit_code

    def poll(self) -> int | None:
        """None while the double runs; its exit code after (1 = it 'crashed' via die_after)."""
        if self._thread is not None and self._thread.is_alive():
            return None
        return self.exit_code

    def describe(self) -> str:
        return (
            f"MAVLink test double instance {self.instance} (exit code {self.poll()}), "
            f"sim port {self.sim_port}"
        )

    def log_tail(self, max_lines: int = 20) -> str:
        """The last ``max_lines`` console lines, like :meth:`flyby.px4.launcher.PX4Launcher.log_tail`."""
        return "\n".join(list(self.log_lines)[-max_lines:])

    def __enter__(self) -> MavlinkDouble:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _close(self) -> None:
        for s in (self._tcp, self._udp):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        self._tcp = None
        self._udp = None

    # -- thread -----------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            if self.sim_port is not None:
                self._connect()
            self.exit_code = self._loop()
        except BaseException as exc:  # recorded for the test, never lost in the thread
            self.error = exc
            self._violation(f"double crashed: {exc!r}")
            self.exit_code = 2
        finally:
            self._close()

    def _connect(self) -> None:
        deadline = time.monotonic() + self.connect_timeout_s
        while not self._stop.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", self.sim_port), timeout=0.2)
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"bridge on TCP {self.sim_port} did not accept within {self.connect_timeout_s} s"
                    ) from exc
                self._stop.wait(0.01)
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(2.0)
            self._tcp = sock
            hb = self._m.MAVLink_heartbeat_message(
                self._m.MAV_TYPE_QUADROTOR, self._m.MAV_AUTOPILOT_PX4, 0, 0, 0, 3
            )
            sock.sendall(hb.pack(self._tcp_link))
            return

    def _loop(self) -> int:
        while not self._stop.is_set():
            socks = [s for s in (self._tcp, self._udp) if s is not None]
            ready, _, _ = select.select(socks, [], [], 0.02)
            if self._tcp is not None and self._tcp in ready:
                data = self._tcp.recv(65536)
                if not data:
                    return 0  # the bridge closed the connection
                for msg in self._tcp_link.parse_buffer(data) or ():
                    code = self._on_sim_message(msg)
                    if code is not None:
                        return code
            if self._udp is not None and self._udp in ready:
                self._drain_udp()
            self._periodic()
        return 0

    # -- lockstep link ----------------------------------------------------------------------------

    def _on_sim_message(self, msg) -> int | None:
        mid = msg.get_msgId()
        m = self._m
        if mid == m.MAVLINK_MSG_ID_HIL_STATE_QUATERNION:
            self._on_ground_truth(msg)
        elif mid == m.MAVLINK_MSG_ID_HIL_GPS:
            self._check_gps(msg)
        elif mid == m.MAVLINK_MSG_ID_HIL_SENSOR:
            return self._on_sensor(msg)
        elif msg.get_type() == "BAD_DATA":
            self._violation("bad MAVLink data on the simulator link")
        return None

    def _on_ground_truth(self, msg) -> None:
        q_ned = np.asarray(msg.attitude_quaternion, dtype=np.float64)
        if abs(np.linalg.norm(q_ned) - 1.0) > 1e-3:
            self._violation(f"HIL_STATE_QUATERNION quaternion not unit: {q_ned}")
        pos_w = geodetic_to_enu(msg.lat / 1e7, msg.lon / 1e7, msg.alt / 1e3, *self.home)
        gt = {
            "time_usec": int(msg.time_usec),
            "pos_w": pos_w,
            "quat_wxyz": frames.quat_ned_frd_to_enu_flu(q_ned),
            "lin_vel_w": frames.ned_to_enu(np.array([msg.vx, msg.vy, msg.vz]) / 100.0),
            "ang_vel_b": frames.frd_to_flu([msg.rollspeed, msg.pitchspeed, msg.yawspeed]),
        }
        # Ground-truth specific force (mG, body FRD): (0, 0, -1000) when not accelerating, level.
        gt_acc_frd = np.array([msg.xacc, msg.yacc, msg.zacc]) * (STANDARD_GRAVITY / 1000.0)
        still = (
            np.linalg.norm(gt["lin_vel_w"]) < 0.005
            and np.linalg.norm(gt["ang_vel_b"]) < 0.01
            and q_ned[1] ** 2 + q_ned[2] ** 2 < (math.sin(math.radians(2.0) / 2)) ** 2
            and np.linalg.norm(gt_acc_frd - np.array([0.0, 0.0, -STANDARD_GRAVITY])) < 0.3
        )
        # At rest = still (no velocity, no rotation, level, not accelerating) for 10 ground-truth
        # messages in a row (40 ms at 250 Hz).
        self._still_count = self._still_count + 1 if still else 0
        gt["at_rest"] = self._still_count >= 10
        self._gt = gt
        self.ground_truth_received += 1  # after _gt: readers wait on this counter, then read _gt

    def _check_gps(self, msg) -> None:
        self.gps_times.append(int(msg.time_usec))
        if msg.fix_type != 3:
            self._violation(f"HIL_GPS fix_type {msg.fix_type} != 3")
        if msg.satellites_visible < 10:
            self._violation(f"HIL_GPS satellites_visible {msg.satellites_visible} < 10")
        if not (-90e7 <= msg.lat <= 90e7 and -180e7 <= msg.lon <= 180e7) or abs(msg.lat) < 1e5:
            self._violation(f"HIL_GPS lat/lon not in degE7: {msg.lat}, {msg.lon}")
        if not -1e6 < msg.alt < 1e7:  # mm: -1 km .. 10 km
            self._violation(f"HIL_GPS alt not in mm: {msg.alt}")
        if not 0 < msg.eph < 1000 or not 0 < msg.epv < 1000:  # cm
            self._violation(f"HIL_GPS eph/epv not in cm: {msg.eph}, {msg.epv}")
        if self._gt is not None:
            v_ned = np.array([msg.vn, msg.ve, msg.vd]) / 100.0
            v_gt = frames.enu_to_ned(self._gt["lin_vel_w"])
            if np.linalg.norm(v_ned - v_gt) > 1.0:
                self._violation(f"HIL_GPS velocity {v_ned} (NED m/s) far from ground truth {v_gt}")
        self.gps_received += 1  # last: a reader that sees the count also sees its checks

    def _on_sensor(self, msg) -> int | None:
        t = int(msg.time_usec)
        k = len(self.sensor_times)
        if msg.id != 0:
            self._violation(f"HIL_SENSOR id {msg.id} != 0")
        if t <= 0 or (self.sensor_times and t <= self.sensor_times[-1]):
            self._violation(
                f"HIL_SENSOR time_usec {t} not strictly increasing (previous {self._last_sensor_us})"
            )
        if msg.fields_updated != HIL_SENSOR_FIELDS_ACCEL_GYRO_MAG_BARO:
            self._violation(f"HIL_SENSOR fields_updated {msg.fields_updated} != 7167")
        self._check_units(msg)
        dt = (t - self._last_sensor_us) / 1e6 if self._last_sensor_us > 0 else 0.004
        self.sensor_times.append(t)
        self._last_sensor_us = max(self._last_sensor_us, t)
        self._last_accel_flu = frames.frd_to_flu([msg.xacc, msg.yacc, msg.zacc])
        if self.die_after is not None and k + 1 >= self.die_after:
            self._close()
            return 1
        if k < self.first_reply_after or k in self.drop_replies:
            return None
        if self.hang_after is not None and k >= self.hang_after:
            return None
        if self.reply_delay_s > 0:
            self._stop.wait(self.reply_delay_s)
        self._check_offboard_stream()
        controls = np.zeros(16)
        if self.armed and self._gt is not None:
            controls[:4] = self._control(max(dt, 1e-4))
        mode = 1 | (128 if self.armed else 0)
        reply = self._m.MAVLink_hil_actuator_controls_message(t, controls.tolist(), mode, 1)
        assert self._tcp is not None
        self._tcp.sendall(reply.pack(self._tcp_link))
        self.replies_sent += 1
        return None

    def _check_units(self, msg) -> None:
        acc = np.array([msg.xacc, msg.yacc, msg.zacc])
        gyro = np.array([msg.xgyro, msg.ygyro, msg.zgyro])
        mag = np.array([msg.xmag, msg.ymag, msg.zmag])
        if not np.all(np.isfinite(np.concatenate([acc, gyro, mag]))):
            self._violation("HIL_SENSOR has NaN/inf")
            return
        if np.linalg.norm(acc) > 16 * STANDARD_GRAVITY:
            self._violation(f"HIL_SENSOR accel {acc} m/s^2 beyond 16 g (not SI?)")
        if np.linalg.norm(gyro) > math.radians(2000.0):
            self._violation(f"HIL_SENSOR gyro {gyro} beyond 2000 deg/s (degrees instead of rad/s?)")
        if not 0.1 < np.linalg.norm(mag) < 1.0:
            self._violation(f"HIL_SENSOR mag |{mag}| not Earth-like in gauss (0.25-0.65)")
        if not 300.0 < msg.abs_pressure < 1100.0:
            self._violation(f"HIL_SENSOR abs_pressure {msg.abs_pressure} not in hPa")
        else:
            isa_alt = 44330.0 * (1.0 - (msg.abs_pressure / 1013.25) ** 0.190263)
            if abs(isa_alt - msg.pressure_alt) > 100.0:
                self._violation(
                    f"HIL_SENSOR pressure_alt {msg.pressure_alt} m inconsistent with {msg.abs_pressure} hPa"
                )
        if not -40.0 < msg.temperature < 85.0:
            self._violation(f"HIL_SENSOR temperature {msg.temperature} not in deg C")
        gt = self._gt
        if gt is not None and gt["at_rest"]:
            self.rest_checks += 1
            if np.linalg.norm(acc - np.array([0.0, 0.0, -STANDARD_GRAVITY])) > 1.0:
                self._violation(f"HIL_SENSOR at rest, level: accel {acc} (FRD) is not about (0, 0, -9.81)")

    def _control(self, dt: float) -> np.ndarray:
        from flyby.dynamics.multirotor import DroneState

        gt = self._gt
        assert gt is not None
        state = DroneState(
            pos_w=np.asarray(gt["pos_w"], dtype=np.float64)[None],
            quat_wxyz=np.asarray(gt["quat_wxyz"])[None],
            lin_vel_w=np.asarray(gt["lin_vel_w"])[None],
            ang_vel_b=np.asarray(gt["ang_vel_b"])[None],
            specific_force_b=self._last_accel_flu[None],
            contact=np.array([False]),
        )
        vel = self._vel_sp_w if self.offboard else np.zeros(3)
        yaw_rate = self._yaw_rate_sp if self.offboard else 0.0
        u = self._controller.update(vel[None], np.array([yaw_rate]), state, dt)
        return np.clip(np.asarray(u, dtype=np.float64)[0], 0.0, 1.0)

    def _check_offboard_stream(self) -> None:
        if not self.offboard:
            return
        now = self.now_us()
        if self._last_setpoint_us is None or now - self._last_setpoint_us > OFFBOARD_LOSS_S * 1e6:
            self._violation(f"offboard setpoint stream below 2 Hz during OFFBOARD at PX4 time {now} us")
            self.offboard = False  # PX4's offboard-loss failsafe

    # -- offboard link ----------------------------------------------------------------------------

    def _drain_udp(self) -> None:
        while self._udp is not None:
            try:
                data, addr = self._udp.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            self._client_addr = addr
            for msg in self._udp_link.parse_buffer(data) or ():
                self._on_offboard_message(msg)

    def _send_udp(self, msg) -> None:
        if self._udp is None or self._client_addr is None:
            return
        try:
            self._udp.sendto(msg.pack(self._udp_link), self._client_addr)
        except OSError:
            pass  # client not listening yet: UDP, like PX4

    def _on_offboard_message(self, msg) -> None:
        m = self._m
        mid = msg.get_msgId()
        if mid == m.MAVLINK_MSG_ID_SET_POSITION_TARGET_LOCAL_NED:
            now = self.now_us()
            if msg.type_mask != TYPE_MASK_VELOCITY_YAW_RATE:
                self._violation(f"SET_POSITION_TARGET_LOCAL_NED type_mask {msg.type_mask} != 1479")
            if msg.coordinate_frame != m.MAV_FRAME_LOCAL_NED:
                self._violation(
                    f"SET_POSITION_TARGET_LOCAL_NED frame {msg.coordinate_frame} != MAV_FRAME_LOCAL_NED"
                )
            if msg.target_system != 1 + self.instance:
                self._violation(
                    f"SET_POSITION_TARGET_LOCAL_NED target_system {msg.target_system} != {1 + self.instance}"
                )
            v_ned = np.array([msg.vx, msg.vy, msg.vz], dtype=np.float64)
            self.setpoints.append((msg.type_mask, msg.coordinate_frame, v_ned, float(msg.yaw_rate)))
            if (
                self.offboard
                and self._last_setpoint_us is not None
                and now - self._last_setpoint_us > OFFBOARD_LOSS_S * 1e6
            ):
                self._violation(
                    f"offboard setpoint gap {(now - self._last_setpoint_us) / 1e6:.2f} s during OFFBOARD"
                )
            self._last_setpoint_us = now
            self.setpoint_times_us.append(now)
            self._vel_sp_w = frames.ned_to_enu(v_ned)
            self._yaw_rate_sp = float(frames.yaw_rate_ned_to_enu(msg.yaw_rate))
        elif mid == m.MAVLINK_MSG_ID_PARAM_SET:
            self._on_param_set(msg)
        elif mid == m.MAVLINK_MSG_ID_COMMAND_LONG:
            self._on_command(msg)

    def _on_param_set(self, msg) -> None:
        m = self._m
        name = param_id_str(msg.param_id)
        value = param_from_wire(msg.param_value, msg.param_type)
        known = _known_params()
        if name not in known:
            self.log_lines.append(f"ERROR [mavlink] unknown param: {name}")  # PX4 sends no reply
            return
        if known[name]:
            if msg.param_type != m.MAV_PARAM_TYPE_INT32:
                self._violation(f"PARAM_SET {name}: type {msg.param_type}, PX4 has it as INT32")
            elif not -1_000_000 < int(value) < 1_000_000:
                self._violation(f"PARAM_SET {name}: int32 {value} looks like a float converted, not bit-cast")
        elif msg.param_type != m.MAV_PARAM_TYPE_REAL32:
            self._violation(f"PARAM_SET {name}: type {msg.param_type}, PX4 has it as REAL32")
        if msg.param_type != (m.MAV_PARAM_TYPE_INT32 if known[name] else m.MAV_PARAM_TYPE_REAL32):
            self.log_lines.append(f"ERROR [mavlink] param types mismatch param: {name}")  # not set, no reply
            return
        self.params[name] = value
        self._send_udp(
            m.MAVLink_param_value_message(name.encode("ascii"), msg.param_value, msg.param_type, 1000, 0)
        )

    def _on_command(self, msg) -> None:
        m = self._m
        params = (msg.param1, msg.param2, msg.param3, msg.param4, msg.param5, msg.param6, msg.param7)
        self.commands.append((msg.command, params))
        result = m.MAV_RESULT_UNSUPPORTED
        now = self.now_us()
        if msg.command == m.MAV_CMD_DO_SET_MODE:
            if msg.param1 != 1 or msg.param2 != PX4_CUSTOM_MAIN_MODE_OFFBOARD:
                self._violation(f"DO_SET_MODE param1={msg.param1} param2={msg.param2}; PX4 OFFBOARD is 1, 6")
                result = m.MAV_RESULT_DENIED
            elif self._last_setpoint_us is None or now - self._last_setpoint_us > 1e6:
                result = m.MAV_RESULT_TEMPORARILY_REJECTED  # PX4: no offboard setpoints yet
                self._statustext("Switching to Offboard is currently not available")
            else:
                self.offboard = True
                result = m.MAV_RESULT_ACCEPTED
        elif msg.command == m.MAV_CMD_COMPONENT_ARM_DISARM:
            if msg.param1 == 1:
                if now < self.arm_after_s * 1e6:
                    result = m.MAV_RESULT_TEMPORARILY_REJECTED
                    self._statustext("Preflight Fail: ekf2 not ready")
                else:
                    self.armed = True
                    result = m.MAV_RESULT_ACCEPTED
            elif msg.param1 == 0:
                self.armed = False
                result = m.MAV_RESULT_ACCEPTED
            else:
                self._violation(f"COMPONENT_ARM_DISARM param1={msg.param1}")
                result = m.MAV_RESULT_DENIED
        self._send_udp(
            m.MAVLink_command_ack_message(
                msg.command, result, 0, 0, msg.get_srcSystem(), msg.get_srcComponent()
            )
        )
        self._send_heartbeat()

    def _statustext(self, text: str) -> None:
        self._send_udp(self._m.MAVLink_statustext_message(self._m.MAV_SEVERITY_CRITICAL, text.encode()))

    def _send_heartbeat(self) -> None:
        m = self._m
        base_mode = m.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED | (m.MAV_MODE_FLAG_SAFETY_ARMED if self.armed else 0)
        custom_mode = (PX4_CUSTOM_MAIN_MODE_OFFBOARD if self.offboard else 2) << 16  # 2 = ALTCTL
        state = m.MAV_STATE_ACTIVE if self.armed else m.MAV_STATE_STANDBY
        self._send_udp(
            m.MAVLink_heartbeat_message(
                m.MAV_TYPE_QUADROTOR, m.MAV_AUTOPILOT_PX4, base_mode, custom_mode, state, 3
            )
        )

    def _periodic(self) -> None:
        now = self.now_us()
        if now >= self._next_heartbeat_us:
            self._next_heartbeat_us = now + 1_000_000 // 5  # 5 Hz of PX4 time
            self._send_heartbeat()
        if self._gt is not None and now >= self._next_telemetry_us:
            self._next_telemetry_us = now + self.telemetry_period_us
            gt = self._gt
            p = frames.enu_to_ned(gt["pos_w"])
            v = frames.enu_to_ned(gt["lin_vel_w"])
            ms = now // 1000
            self._send_udp(self._m.MAVLink_local_position_ned_message(ms, *map(float, p), *map(float, v)))
            roll, pitch, yaw = frames.quat_to_euler_ned_frd(frames.quat_enu_flu_to_ned_frd(gt["quat_wxyz"]))
            rates = frames.flu_to_frd(gt["ang_vel_b"])
            self._send_udp(
                self._m.MAVLink_attitude_message(
                    ms, float(roll), float(pitch), float(yaw), *map(float, rates)
                )
            )


class DoubleFactory:
    """``launcher_factory`` for PX4FlightStack: one :class:`MavlinkDouble` per instance, kept for
    assertions."""

    def __init__(self, **double_kwargs) -> None:
        self.kwargs = double_kwargs
        self.doubles: dict[int, MavlinkDouble] = {}

    def __call__(self, instance: int, sim_port: int, offboard_port: int) -> MavlinkDouble:
        double = MavlinkDouble(sim_port, offboard_port, instance=instance, **self.kwargs)
        self.doubles[instance] = double
        return double

    def violations(self) -> list[str]:
        return [f"instance {i}: {v}" for i, d in self.doubles.items() for v in d.violations]
