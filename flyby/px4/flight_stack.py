"""PX4 SITL as a flyby flight stack: the same ``update`` as the built-in cascade controller.

:class:`PX4FlightStack` runs one PX4 SITL instance per drone (instance ``i0 + k`` for
drone ``k``) and exposes :class:`flyby.control.cascade.CascadeController`'s interface::

    u = stack.update(vel_sp_w, yaw_rate_sp, state, dt)   # (N, 4) rotor commands in [0, 1]
    stack.armed                                           # (N,) bool: PX4's arming state
    stack.reset(ids)                                      # next update boots fresh PX4s for ids
    stack.close()

Call :meth:`~PX4FlightStack.update` once per physics step (``dt`` = ``physics_dt``, 4 ms
at PX4's 250 Hz lockstep): each call is one lockstep step. It advances each PX4's clock
by ``dt``, sends HIL_STATE_QUATERNION (ground truth, when due, ``ground_truth_rate_hz``),
HIL_GPS (when due, ``gps_rate_hz``),
the velocity setpoint on the offboard link (when due, ``setpoint_rate_hz``) and
HIL_SENSOR, then waits (bounded) for every PX4's HIL_ACTUATOR_CONTROLS.

Start-up: the first ``update`` after construction or :meth:`~PX4FlightStack.reset` runs
PX4's start-up while holding every drone at rest at the pose in ``state`` (sensors are
synthesised from that pose; physics does not step): HIL_SENSOR at real-time pace until
PX4's first reply, then lockstep as fast as PX4 answers while :mod:`flyby.px4.startup`'s
sequence runs one step per tick: its onboard MAVLink link is up, the SITL parameters
(:mod:`flyby.px4.params`) are confirmed, OFFBOARD is engaged with a zero-velocity setpoint
streaming and the vehicle is armed (PX4 refuses until its estimator has converged). All of
it is bounded by ``startup_timeout_s``; the error names the step it was in, PX4's STATUSTEXT
lines and its log path. A parameter PX4 refuses (its console
says ``unknown param: NAME`` or ``param types mismatch param: NAME``; PX4 sends nothing back
on MAVLink) fails the start-up at once with :class:`~flyby.errors.PX4ParamRejected` naming
it. Drones should start on the ground: PX4 arms there and takes off from the velocity
setpoints.

A reset restarts the PX4 processes of the reset drones (a fresh working directory each
time): PX4's estimator cannot follow a teleported vehicle.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from flyby.errors import PX4ParamRejected, PX4Timeout, PX4Unavailable
from flyby.geometry import STANDARD_GRAVITY, rotate_inverse
from flyby.px4.bridge import DEFAULT_HOME, LockstepBridge
from flyby.px4.launcher import MAX_PX4_INSTANCE, PX4Launcher
from flyby.px4.offboard import OffboardClient
from flyby.px4.params import SITL_PARAMS, telemetry_intervals_us
from flyby.px4.startup import StartupSequence, Step

log = logging.getLogger(__name__)

# Per thread: the CPU set the thread had before the open flight stacks moved it off their PX4s'
# CPUs (``before``), and how many open stacks did (``holders``). See PX4FlightStack._keep_off_px4_cpus.
_lockstep_cpus = threading.local()


def _thread_cpus() -> set[int] | None:
    """This thread's CPUs as they were before any open flight stack narrowed them (None: unknown)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    before = getattr(_lockstep_cpus, "before", None)
    return set(before) if before is not None else os.sched_getaffinity(0)


class LauncherLike(Protocol):
    """What the flight stack needs from a PX4 process (:class:`PX4Launcher`, or a CI test double)."""

    def start(self) -> Any: ...

    def stop(self) -> Any: ...

    def poll(self) -> int | None: ...

    def describe(self) -> str: ...


# Optional on a launcher: ``log_tail(max_lines) -> str``, PX4's latest console lines (PX4Launcher has
# it). The start-up reads it for PX4's parameter rejections, which PX4 only prints there.

LauncherFactory = Callable[[int, int, int], LauncherLike]
"""``factory(instance, sim_tcp_port, offboard_udp_port) -> launcher``."""


class Phase(enum.Enum):
    """Start-up phase of one PX4 instance: the lockstep link's, then the offboard link's sequence.

    In ``OFFBOARD_LINK`` the instance's :class:`~flyby.px4.startup.StartupSequence` runs (HEARTBEAT,
    parameters, OFFBOARD, arming), one step per lockstep tick.
    """

    CONNECTING = "waiting for PX4 to connect to the simulator port"
    BOOTING = "waiting for PX4's first HIL_ACTUATOR_CONTROLS"
    OFFBOARD_LINK = "starting up on the offboard link"
    READY = "armed in OFFBOARD"


@dataclass
class _Instance:
    row: int
    px4_instance: int
    bridge: LockstepBridge
    client: OffboardClient
    process: LauncherLike
    startup: StartupSequence = field(init=False)  # the offboard link's start-up, made with the client
    phase: Phase = Phase.CONNECTING
    time_usec: int = 0
    next_gps_usec: int = 0
    next_ground_truth_usec: int = 0
    next_setpoint_usec: int = 0
    stream_since_usec: int | None = None
    used: bool = False
    warned_disarm: bool = False

    def where(self) -> str:
        return self.process.describe()

    def doing(self) -> str:
        """What the start-up waits on (the offboard step, with unconfirmed parameters), for errors."""
        return self.startup.describe() if self.phase is Phase.OFFBOARD_LINK else self.phase.value


class PX4FlightStack:
    """PX4 SITL flight stack for ``num_drones`` drones (one PX4 instance each).

    Args:
        num_drones: N >= 1.
        px4: object with ``px4_dir`` (str, '' = $PX4_DIR then PATH), ``instance`` (first PX4
            instance), ``timeout_s`` (bound on each reply wait and on shutdown) and optionally
            ``keep_ulogs`` (keep PX4's ULogs in the log folder, default True), e.g.
            :class:`flyby.config.envs.PX4Cfg`; None = defaults ('' / 0 / 5 s).
        sensors: a :class:`flyby.sensors.SensorCfg` (a :class:`flyby.sensors.SensorSuite` is
            built from it and ``seed``), a ready sensor suite, or None (default ``SensorCfg``).
        physics_dt: s, expected ``dt`` of :meth:`update` (PX4's IMU period; 0.004 = 250 Hz).
        seed: sensor-noise seed.
        startup_timeout_s: s (wall), bound on PX4's start-up after it connected (boot, estimator, arming).
        connect_timeout_s: s (wall), bound on PX4 connecting to the simulator port after it starts.
        reply_timeout_s: s, bound on each HIL_ACTUATOR_CONTROLS wait (then the last command is kept);
            None: ``min(px4.timeout_s, 0.5)``.
        setpoint_rate_hz: Hz of sim time, offboard setpoint stream rate (PX4 needs >= 2 Hz).
        ground_truth_rate_hz: Hz of sim time, HIL_STATE_QUATERNION rate. PX4 only republishes it
            as ``*_groundtruth`` topics for its log (its estimator flies on HIL_SENSOR and HIL_GPS),
            and packing it costs about 90 us per lockstep tick, a fifth of flyby's share of the
            tick; 50 Hz is the rate PX4's logger records those topics at. Use the physics rate
            (250) for a peer that flies from it.
        gps_rate_hz: Hz of sim time, HIL_GPS rate (PX4 expects 5-10 Hz); None: the sensor
            config's GPS rate, else 10.
        params: PX4 parameters set at every start-up (ints are sent bit-cast).
        launcher_factory: ``factory(instance, sim_port, offboard_port)`` making a process with
            ``start/stop/poll/describe``; None = :class:`PX4Launcher` (real PX4 SITL).
        ephemeral_ports: listen on any free ports instead of 4560+i / 14540+i (only with a
            ``launcher_factory`` whose peers are told the ports; real PX4 uses the fixed ones).

    Raises:
        PX4Unavailable: PX4 not found (the message says how to set PX4_DIR) or not starting.
        PX4PortInUse: TCP 4560+i or UDP 14540+i is taken (the message says how to find the holder).
        PX4Timeout: PX4 not connecting within ``connect_timeout_s``.
        From :meth:`update`: :class:`~flyby.errors.PX4Died` (PX4 exited or dropped its link),
        :class:`~flyby.errors.PX4Timeout` (PX4 frozen, or start-up not done within
        ``startup_timeout_s``), :class:`~flyby.errors.PX4ParamRejected`; each names PX4's log.
    """

    label = "PX4 SITL (MAVLink lockstep, offboard velocity control)"
    starts_on_ground = True  # PX4's estimator boots at rest and cannot follow a teleported drone

    def __init__(
        self,
        num_drones: int,
        *,
        px4: Any = None,
        sensors: Any = None,
        physics_dt: float = 0.004,
        seed: int = 0,
        startup_timeout_s: float = 120.0,
        connect_timeout_s: float = 30.0,
        reply_timeout_s: float | None = None,
        setpoint_rate_hz: float = 50.0,
        gps_rate_hz: float | None = None,
        ground_truth_rate_hz: float = 50.0,
        params: Mapping[str, int | float] = SITL_PARAMS,
        launcher_factory: LauncherFactory | None = None,
        ephemeral_ports: bool = False,
    ) -> None:
        if int(num_drones) < 1:
            raise ValueError(f"num_drones must be >= 1, got {num_drones}")
        if ephemeral_ports and launcher_factory is None:
            raise ValueError(
                "ephemeral_ports needs a launcher_factory: real PX4 connects to 4560+i and sends to 14540+i"
            )
        self.num_drones = int(num_drones)
        px4_dir = (getattr(px4, "px4_dir", "") or None) if px4 is not None else None
        first_instance = int(getattr(px4, "instance", 0)) if px4 is not None else 0
        self.timeout_s = float(getattr(px4, "timeout_s", 5.0)) if px4 is not None else 5.0
        keep_ulogs = bool(getattr(px4, "keep_ulogs", True)) if px4 is not None else True
        self.physics_dt = float(physics_dt)
        self.startup_timeout_s = float(startup_timeout_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.reply_timeout_s = (
            float(reply_timeout_s) if reply_timeout_s is not None else min(self.timeout_s, 0.5)
        )
        self.params = dict(params)
        self._telemetry = telemetry_intervals_us()
        self._sensor_cfg, self._given_suite = _sensor_source(sensors)
        self._seed = seed
        self.home = _home_of(self._sensor_cfg)
        self._setpoint_period_usec = round(1e6 / float(setpoint_rate_hz))
        if gps_rate_hz is None:
            gps_rate_hz = float(getattr(self._sensor_cfg, "gps_rate_hz", 10.0) or 10.0)
        self._gps_period_usec = round(1e6 / float(gps_rate_hz))
        if not float(ground_truth_rate_hz) > 0:
            raise ValueError(f"ground_truth_rate_hz must be > 0 Hz, got {ground_truth_rate_hz}")
        self._ground_truth_period_usec = round(1e6 / float(ground_truth_rate_hz))
        self._request_period_usec = 1_000_000  # resend start-up requests every second of PX4 time
        if launcher_factory is None:
            last = first_instance + self.num_drones - 1
            if last > MAX_PX4_INSTANCE:
                raise ValueError(
                    f"PX4 instances {first_instance}..{last}: PX4 SITL sends the offboard link of instances "
                    f"above {MAX_PX4_INSTANCE} "
                    "to one shared UDP port (14549), so flyby runs instances 0..9 only"
                )

            def launcher_factory(instance: int, _sim_port: int, _offboard_port: int) -> LauncherLike:
                return PX4Launcher(
                    instance,
                    px4_dir,
                    stop_timeout_s=self.timeout_s,
                    keep_ulogs=keep_ulogs,
                    cpus=_thread_cpus(),
                )

        self._armed = np.zeros(self.num_drones, dtype=bool)
        self._u = np.zeros((self.num_drones, 4))
        self._warned_dt = False
        self._instances: list[_Instance] = []
        self._closed = False
        self._narrowed_thread: int | None = None  # thread whose CPUs this stack narrowed (None: none)
        self._suite_obj = None
        try:
            for k in range(self.num_drones):
                i = first_instance + k
                bridge = LockstepBridge(
                    i,
                    self.reply_timeout_s,
                    port=0 if ephemeral_ports else None,
                    dead_after_s=max(self.timeout_s, self.reply_timeout_s),
                    home=self.home,
                )
                try:
                    client = OffboardClient(i, port=0 if ephemeral_ports else None, timeout_s=self.timeout_s)
                except BaseException:
                    bridge.close()  # not in _instances yet: close() would not free its TCP port
                    raise
                try:
                    process = launcher_factory(i, bridge.port, client.port)
                except BaseException:
                    bridge.close()
                    client.close()
                    raise
                bridge.process = process
                inst = _Instance(k, i, bridge, client, process)
                inst.startup = self._startup_sequence(inst)
                self._instances.append(inst)
            for inst in self._instances:
                inst.process.start()
            self._keep_off_px4_cpus()
            self._wait_connected(self._instances, timeout_s=self.connect_timeout_s)
        except BaseException:
            self.close()
            raise

    # -- public API -------------------------------------------------------------------------------

    @property
    def armed(self) -> np.ndarray:
        """(N,) bool, PX4's arming state from its latest HIL_ACTUATOR_CONTROLS (``mode & 128``)."""
        return self._armed.copy()

    @property
    def ready(self) -> np.ndarray:
        """(N,) bool, the drone's PX4 is armed in OFFBOARD (start-up done)."""
        return np.array([inst.phase is Phase.READY for inst in self._instances])

    @property
    def log_paths(self) -> list[Any]:
        """PX4 log path per drone (None for test doubles without one)."""
        return [getattr(inst.process, "log_path", None) for inst in self._instances]

    @property
    def ulog_paths(self) -> list[list[Any]]:
        """Per drone, the PX4 ULogs kept so far (oldest first; a run's ULog is kept when its PX4 stops:
        at the next :meth:`reset` or :meth:`close`). Empty lists for test doubles without ULogs."""
        return [list(getattr(inst.process, "ulog_paths", [])) for inst in self._instances]

    @property
    def kept_ulogs(self) -> list[dict[Any, list[Any]]]:
        """Per drone, ``{text log of a PX4 run: [its kept ULogs]}`` (see :attr:`PX4Launcher.kept_ulogs`)."""
        return [dict(getattr(inst.process, "kept_ulogs", {})) for inst in self._instances]

    @property
    def px4_time_s(self) -> np.ndarray:
        """(N,) float64, seconds: each PX4's clock, the ``time_usec`` of the last HIL_SENSOR sent.

        PX4 time restarts at 0 with every PX4 start (:meth:`reset`). The state the drone is in
        after an :meth:`update` is the state PX4 is told about at ``px4_time_s + physics_dt``
        (the next update's HIL_SENSOR), which is the time base of PX4's ULog.
        """
        return np.array([inst.time_usec for inst in self._instances], dtype=np.float64) * 1e-6

    @property
    def pids(self) -> list[int | None]:
        """PX4 process id per drone (None when not running, or for test doubles without one)."""
        return [getattr(inst.process, "pid", None) for inst in self._instances]

    def describe(self) -> str:
        """One line for error messages: every instance's state and log path."""
        return "; ".join(inst.where() for inst in self._instances)

    def round_trip_times_s(self) -> np.ndarray:
        """Lockstep round-trip times (HIL_SENSOR sent -> reply parsed) of all instances, seconds."""
        return np.concatenate([np.asarray(inst.bridge.rtt_s, dtype=np.float64) for inst in self._instances])

    def seed(self, seed: int | None) -> None:
        """Reseed the sensor noise."""
        self._seed = seed
        reseed = getattr(self._suite(), "reseed", None)
        if callable(reseed):
            reseed(seed)

    def reset(self, ids: Iterable[int] | np.ndarray | None = None) -> None:
        """Restart the PX4s of drones ``ids`` (all when None); the next :meth:`update` boots and arms them.

        A running PX4 that has not flown since it started is kept as is (no restart cost).

        Raises:
            PX4Unavailable: a restarted PX4 does not start or connect within the bounds.
        """
        self._check_open()
        rows = range(self.num_drones) if ids is None else [int(i) for i in np.atleast_1d(ids)]
        restarted = []
        for r in rows:
            inst = self._instances[r]
            self._armed[r] = False
            self._u[r] = 0.0
            if not inst.used and inst.phase is not Phase.READY and inst.process.poll() is None:
                continue  # a live PX4 that has not flown yet keeps its (partial) start-up
            inst.process.stop()
            inst.bridge.disconnect()
            inst.client.close()
            inst.client = OffboardClient(inst.px4_instance, port=inst.client.port, timeout_s=self.timeout_s)
            inst.startup = self._startup_sequence(inst)
            inst.phase = Phase.CONNECTING
            inst.time_usec = 0
            inst.used = False
            inst.warned_disarm = False
            inst.stream_since_usec = None
            inst.next_gps_usec = inst.next_setpoint_usec = 0
            inst.next_ground_truth_usec = 0
            inst.process.start()
            restarted.append(inst)
        if restarted:
            self._wait_connected(restarted, timeout_s=self.connect_timeout_s)

    def update(self, vel_sp_w: np.ndarray, yaw_rate_sp: np.ndarray, state, dt: float) -> np.ndarray:
        """One lockstep step of every PX4: setpoints and sensors out, rotor commands back.

        Args:
            vel_sp_w: (N, 3) velocity setpoints, m/s, world ENU.
            yaw_rate_sp: (N,) yaw-rate setpoints, rad/s, about world up.
            state: :class:`flyby.dynamics.multirotor.DroneState` at the current time.
            dt: s, the physics step (PX4's clock advances by it; call once per physics step).

        Returns:
            (N, 4) float64 rotor commands in [0, 1], PX4 motor order (zeros while disarmed;
            see :attr:`armed`).

        Raises:
            PX4Died: a PX4 exited or dropped its simulator connection.
            PX4Timeout: a PX4 stopped answering (frozen) or did not finish start-up within
                ``startup_timeout_s`` (the message names parameters never confirmed).
            PX4ParamRejected: PX4 refused a parameter of ``params`` at start-up.
            Every message names the PX4 log.
        """
        self._check_open()
        dt_usec = round(float(dt) * 1e6)
        if dt_usec <= 0:
            raise ValueError(f"dt must be >= 1 us, got {dt} s")
        if not self._warned_dt and abs(dt - self.physics_dt) > 1e-9:
            self._warned_dt = True
            log.warning(
                "PX4FlightStack.update called with dt=%g s, physics_dt=%g s: PX4's IMU runs at 1/dt; "
                "call update once per physics step", dt, self.physics_dt,
            )  # fmt: skip
        vel_sp_w = np.asarray(vel_sp_w, dtype=np.float64).reshape(self.num_drones, 3)
        yaw_rate_sp = np.asarray(yaw_rate_sp, dtype=np.float64).reshape(self.num_drones)
        pending = [inst for inst in self._instances if inst.phase is not Phase.READY]
        if pending:
            self._start_up(pending, state, dt_usec)
        readings = self._read_sensors(state)
        for inst in self._instances:
            self._send_step(inst, state, readings, dt_usec, vel_sp_w[inst.row], float(yaw_rate_sp[inst.row]))
        for inst in self._instances:
            reply = inst.bridge.receive_actuators()
            self._u[inst.row] = reply.controls
            self._armed[inst.row] = reply.armed
            inst.used = True
            if (not reply.armed or not inst.client.offboard) and not inst.warned_disarm:
                inst.warned_disarm = True
                recent = "; ".join(list(inst.client.statustext)[-3:]) or "no message"
                log.warning(
                    "PX4 instance %d left armed OFFBOARD flight (armed=%s, offboard=%s; PX4 said: %s); "
                    "it no longer follows the setpoints; %s",
                    inst.px4_instance, reply.armed, inst.client.offboard, recent, inst.where(),
                )  # fmt: skip
        return self._u.copy()

    def close(self) -> None:
        """Stop every PX4 (SIGINT, then SIGKILL after the bound) and close the sockets. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._give_back_cpus()
        for inst in self._instances:
            for closer in (inst.process.stop, inst.bridge.close, inst.client.close):
                try:
                    closer()
                except Exception:
                    log.exception("closing PX4 instance %d", inst.px4_instance)

    def _keep_off_px4_cpus(self) -> None:
        """Move the calling thread (the lockstep loop) off the CPUs the PX4s are pinned to.

        Each PX4's threads run on one CPU (:func:`flyby.px4.launcher.px4_cpu`); the loop that
        answers them every tick then runs on the others, so the two sides of the lockstep never
        wait for each other's core. The thread's CPU set from before the first open stack
        narrowed it is kept per thread: further stacks in the thread pin their PX4s from that set
        (as the first did, not from the narrowed one, which would leave them unpinned), and the
        last of them to close gives the thread its CPUs back. Nothing changes when no CPU would
        be left, or for stand-in processes without a ``cpu``.
        """
        pinned = {cpu for inst in self._instances if (cpu := getattr(inst.process, "cpu", None)) is not None}
        if not pinned or not hasattr(os, "sched_getaffinity"):
            return
        before = _thread_cpus()
        current = os.sched_getaffinity(0)
        rest = current - pinned
        if not rest or before == rest:
            return
        if not getattr(_lockstep_cpus, "holders", 0):
            _lockstep_cpus.before = current
            _lockstep_cpus.holders = 0
        _lockstep_cpus.holders += 1
        self._narrowed_thread = threading.get_ident()
        if rest != current:
            os.sched_setaffinity(0, rest)

    def _give_back_cpus(self) -> None:
        """The other half of :meth:`_keep_off_px4_cpus` (from :meth:`close`, in the same thread)."""
        if self._narrowed_thread is None:
            return
        if self._narrowed_thread != threading.get_ident():  # closed from another thread (e.g. at exit)
            log.warning("PX4 flight stack closed outside the thread that stepped it; its CPU set is kept")
            self._narrowed_thread = None
            return
        self._narrowed_thread = None
        _lockstep_cpus.holders -= 1
        if _lockstep_cpus.holders:
            return
        before, _lockstep_cpus.before = _lockstep_cpus.before, None
        try:
            os.sched_setaffinity(0, before)
        except OSError:  # pragma: no cover - the CPU set changed under us
            log.warning("could not restore this thread's CPU affinity %s", sorted(before))

    def __enter__(self) -> PX4FlightStack:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- one lockstep step ------------------------------------------------------------------------

    def _send_step(
        self, inst: _Instance, state, readings, dt_usec: int, vel_sp: np.ndarray, yaw_rate: float
    ) -> None:
        accel, gyro, mag, baro, gps = readings
        r = inst.row
        inst.time_usec += dt_usec
        t = inst.time_usec
        bridge = inst.bridge
        if t >= inst.next_ground_truth_usec:
            inst.next_ground_truth_usec = t + self._ground_truth_period_usec
            bridge.send_ground_truth(t, state, r)
        if t >= inst.next_gps_usec:
            inst.next_gps_usec = t + self._gps_period_usec
            fix = gps() if callable(gps) else gps
            bridge.send_gps(
                t, float(fix.lat_deg[r]), float(fix.lon_deg[r]), float(fix.alt_m[r]), fix.vel_enu[r]
            )
        if inst.client.connected and t >= inst.next_setpoint_usec:
            inst.next_setpoint_usec = t + self._setpoint_period_usec
            inst.client.stream_velocity(vel_sp, yaw_rate, time_boot_ms=t // 1000)
            if inst.stream_since_usec is None:
                inst.stream_since_usec = t
            inst.client.poll()
        bridge.send_sensors(t, (accel[r], gyro[r]), mag[r], tuple(float(b[r]) for b in baro))

    # -- sensors ----------------------------------------------------------------------------------

    def _suite(self):
        if self._suite_obj is None:
            if self._given_suite is not None:
                self._suite_obj = self._given_suite
            else:
                from flyby.sensors import SensorSuite

                self._suite_obj = SensorSuite(self._sensor_cfg, self.num_drones, seed=self._seed)
        return self._suite_obj

    def _read_sensors(self, state):
        """(accel_b, gyro_b, mag_b, baro (3 arrays), gps thunk) for all drones, flyby frames."""
        suite = self._suite()
        accel, gyro = suite.imu(state)
        mag = suite.mag(state)
        baro = suite.baro(state)
        return accel, gyro, mag, baro, (lambda: suite.gps(state))

    # -- start-up ---------------------------------------------------------------------------------

    def _wait_connected(self, instances: list[_Instance], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for inst in instances:
            inst.bridge.wait_for_connection(max(0.0, deadline - time.monotonic()))
            inst.phase = Phase.BOOTING

    def _start_up(self, pending: list[_Instance], state, dt_usec: int) -> None:
        """Boot, configure, engage OFFBOARD and arm ``pending`` while holding the drones at rest."""
        t0 = time.monotonic()
        deadline = t0 + self.startup_timeout_s
        zero = np.zeros(3)
        for inst in pending:
            if inst.phase is Phase.CONNECTING:
                inst.bridge.wait_for_connection(max(0.1, deadline - time.monotonic()))
                inst.phase = Phase.BOOTING
        booting_since = time.monotonic()
        booted_usec = {id(inst): inst.time_usec for inst in pending}
        held = _at_rest(state)
        while pending:
            readings = self._read_sensors(held)
            for inst in pending:
                self._send_step(inst, held, readings, dt_usec, zero, 0.0)
            for inst in pending:
                reply = inst.bridge.receive_actuators()
                self._u[inst.row] = reply.controls
                self._armed[inst.row] = reply.armed
                inst.client.poll()
                self._advance(inst)
            pending = [inst for inst in pending if inst.phase is not Phase.READY]
            now = time.monotonic()
            if now > deadline:
                inst = pending[0]
                recent = "; ".join(list(inst.client.statustext)[-5:]) or "none"
                raise PX4Timeout(
                    f"PX4 instance {inst.px4_instance} did not finish start-up within "
                    f"{self.startup_timeout_s:g} s: "
                    f"still {inst.doing()} at PX4 time {inst.time_usec / 1e6:.1f} s "
                    f"(PX4 said: {recent}); {inst.where()}"
                )
            booting = [inst for inst in pending if inst.phase is Phase.BOOTING]
            if booting:
                # Until PX4 answers, pace HIL_SENSOR at real time as a simulator would while PX4 boots.
                sim_s = max((inst.time_usec - booted_usec[id(inst)]) for inst in booting) / 1e6
                ahead_s = sim_s - (now - booting_since)
                if ahead_s > 0:
                    time.sleep(min(ahead_s, 0.05))
        for inst in self._instances:
            log.info(
                "PX4 instance %d ready (armed, OFFBOARD) at PX4 time %.2f s",
                inst.px4_instance,
                inst.time_usec / 1e6,
            )

    def _startup_sequence(self, inst: _Instance) -> StartupSequence:
        """The offboard link's start-up for ``inst`` (its current client), paced in us of PX4 time."""
        return StartupSequence(
            inst.client,
            params=self.params,
            request_period=self._request_period_usec,
            message_intervals=self._telemetry,
            check_params=lambda missing: self._check_param_rejections(inst, missing),
        )

    def _advance(self, inst: _Instance) -> None:
        """Move one instance's start-up on after a lockstep step (its PX4 replies read)."""
        if inst.phase is Phase.BOOTING and inst.bridge.started:
            inst.phase = Phase.OFFBOARD_LINK
        if inst.phase is Phase.OFFBOARD_LINK:
            streaming = inst.stream_since_usec is not None
            if inst.startup.advance(inst.time_usec, streaming=streaming) is Step.DONE:
                inst.phase = Phase.READY

    def _check_param_rejections(self, inst: _Instance, missing: Mapping[str, int | float]) -> None:
        """Raise PX4ParamRejected when PX4's console (its log) says it refused one of ``missing``.

        PX4 v1.16's MAVLink parameter handler answers an unknown name or a PARAM_SET of the
        wrong type with a console line only (``ERROR [mavlink] unknown param: NAME``,
        ``ERROR [mavlink] param types mismatch param: NAME``), no MAVLink reply.
        """
        log_tail = getattr(inst.process, "log_tail", None)
        if not callable(log_tail):
            return
        found: dict[str, str] = {}
        for line in str(log_tail(200)).splitlines():
            for marker in _PARAM_REJECTIONS:
                _, sep, name = line.partition(marker)
                name = name.strip()
                if sep and name in missing and name not in found:
                    found[name] = line.strip()
        if not found:
            return
        problems = []
        for name in (n for n in missing if n in found):
            value = missing[name]
            if _PARAM_TYPE_MISMATCH in found[name]:
                if isinstance(value, float):
                    fix = f"PX4 declares it INT32: write it as an int ({round(value)})"
                else:
                    fix = f"PX4 declares it FLOAT: write it as a float ({float(value)!r})"
                problems.append(f"{name}={value!r} was sent as {_wire_type(value)} but {fix}")
            else:
                problems.append(
                    f"{name}={value!r}: this PX4 build has no such parameter (misspelt, or its module is "
                    "not built); check it against PX4's parameter reference or drop it from params"
                )
        raise PX4ParamRejected(
            f"PX4 instance {inst.px4_instance} rejected {len(problems)} parameter(s) at start-up: "
            + "; ".join(problems)
            + f" (PX4 printed: {'; '.join(found[n] for n in missing if n in found)}); {inst.where()}",
            [n for n in missing if n in found],
        )

    def _check_open(self) -> None:
        if self._closed:
            raise PX4Unavailable("this PX4FlightStack is closed; make a new one")


_PARAM_UNKNOWN = "unknown param: "  # PX4 v1.16 mavlink_parameters.cpp, console only
_PARAM_TYPE_MISMATCH = "param types mismatch param: "  # same; the value was not set
_PARAM_REJECTIONS = (_PARAM_UNKNOWN, _PARAM_TYPE_MISMATCH)


def _wire_type(value: int | float) -> str:
    return "REAL32 (a float)" if isinstance(value, float) else "INT32 (an int)"


def _at_rest(state):
    """The same poses, at rest: zero velocities, accelerometer reading gravity's reaction."""
    n = np.asarray(state.pos_w).shape[0]
    up = np.tile(np.array([0.0, 0.0, STANDARD_GRAVITY]), (n, 1))
    return state._replace(
        lin_vel_w=np.zeros((n, 3)),
        ang_vel_b=np.zeros((n, 3)),
        specific_force_b=rotate_inverse(state.quat_wxyz, up),
    )


def _sensor_source(sensors: Any) -> tuple[Any, Any]:
    """(config or None, ready suite or None) from the ``sensors`` argument."""
    if sensors is not None and callable(getattr(sensors, "imu", None)):
        return getattr(sensors, "cfg", None), sensors
    if sensors is None:
        from flyby.sensors import SensorCfg

        sensors = SensorCfg()
    return sensors, None


def _home_of(cfg: Any) -> tuple[float, float, float]:
    if cfg is None:
        return DEFAULT_HOME
    names = (("home_lat_deg", "lat_deg"), ("home_lon_deg", "lon_deg"), ("home_alt_m", "alt_m"))
    out = []
    for candidates, default in zip(names, DEFAULT_HOME):
        value = next((getattr(cfg, n) for n in candidates if hasattr(cfg, n)), default)
        out.append(float(value))
    return tuple(out)
