"""Full-fidelity motion: velocity setpoint -> flight stack -> rotors -> rigid-body physics.

Per control step of ``dt = decimation * physics_dt`` seconds, for every physics
substep (250 Hz by default, PX4 SITL's lockstep rate)::

    u     = flight_stack.update(vel_sp_w, yaw_rate_sp, state, physics_dt)   # motor commands in [0, 1]
    omega = rotors.step(u, armed, physics_dt)                               # first-order motor lag
    force_b, torque_b = rotors.wrench_b(omega, lin_vel_b)                   # thrust, reaction torque, drag
    backend.apply_body_wrench(force_b, torque_b); backend.step_physics(1)   # MuJoCo: contacts, integration
    state = backend.drone_state()

With ``FLYBY_KERNEL=numba`` (the default), the built-in cascade and rotor model on MuJoCo run
the first three lines as one compiled call per physics step
(:func:`flyby.control.cascade_kernel.cascade_rotors_into`, reading the state from MjData and
writing the wrench into it), the reference's numbers to rounding; the state is copied out once
per control step.

The flight stack is the built-in cascade (:class:`flyby.control.cascade.CascadeController`)
or PX4 SITL over MAVLink lockstep (:class:`flyby.px4.flight_stack.PX4FlightStack`);
both take the same velocity + yaw-rate setpoint the direct model takes, so a
policy transfers unchanged.

Resets: the cascade has no estimator, so :meth:`FlightStackMotion.reset` places its drones
at the start pose at rest. A flight stack with ``starts_on_ground = True`` (PX4: its
estimator must boot at rest and cannot follow a teleported vehicle) is reset on the ground
below the start pose instead; it boots and arms there, and a take-off phase
(:meth:`FlightStackMotion.take_off`) climbs to the start pose unless the start is a ground
start. The take-off runs inside ``reset``: it is not part of the episode.
"""

from __future__ import annotations

import math

import numpy as np

from flyby.control.cascade import CascadeController
from flyby.dynamics.multirotor import RotorModel
from flyby.enums import KernelBackend
from flyby.geometry import quat_wxyz_to_rot, rotate_inverse, yaw_from_quat_wxyz, yaw_quat_wxyz
from flyby.kernels import kernel_backend
from flyby.mdp.actions import ActionCfg

_ARG_OMEGA = 9  # index of the rotor speeds in FlightStackMotion._compiled_substep_args()


class FlightStackMotion:
    """A :class:`~flyby.dynamics.motion.MotionModel` backed by a flight stack and MuJoCo physics.

    Args:
        backend: a MuJoCo backend built in dynamic mode (free-joint drones).
        flight_stack: object with ``update(vel_sp_w, yaw_rate_sp, state, dt) -> u (N, 4)``
            and ``reset(ids=None)``; optional ``armed`` (N,) bool and ``seed(seed)``.
        rotors: a :class:`flyby.dynamics.multirotor.RotorModel`.
        actions: the shared action scale (:class:`flyby.mdp.actions.ActionCfg`).
        physics_dt: seconds per physics step.
        decimation: physics steps per control step.

    Args (take-off, used only when ``flight_stack.starts_on_ground``):
        takeoff: a :class:`flyby.config.envs.TakeoffCfg` (tolerances, gains, limits, timeout).
        surface_height: ``f(xy (n, 2)) -> (n,)`` metres, the height of what the drone rests on
            (ground or roof), e.g. ``ISRWorld.height_at``; None: flat ground at z = 0.
        rest_height_m: m, centre of mass above the surface when resting (the collision box's
            half height).
    """

    def __init__(
        self,
        backend,
        flight_stack,
        rotors,
        actions: ActionCfg,
        physics_dt: float,
        decimation: int,
        *,
        takeoff=None,
        surface_height=None,
        rest_height_m: float = 0.055,
    ):
        self.backend = backend
        self.flight_stack = flight_stack
        self.rotors = rotors
        self.actions = actions
        self.physics_dt = float(physics_dt)
        self.decimation = int(decimation)
        self.num_drones = backend.num_drones
        self.starts_on_ground = bool(getattr(flight_stack, "starts_on_ground", False))
        if takeoff is None:
            from flyby.config.envs import TakeoffCfg

            takeoff = TakeoffCfg()
        self.takeoff = takeoff
        self.surface_height = surface_height
        self.rest_height_m = float(rest_height_m)
        self.last_takeoff_s = 0.0  # s of sim time the last reset's take-off phase took (0: none)
        self._state = backend.drone_state()
        self._compiled_args: tuple | None = None  # built on the first compiled control step
        self._wrench_limit = math.inf

    @property
    def state(self):
        """The latest :class:`flyby.dynamics.multirotor.DroneState`."""
        return self._state

    @property
    def pos_w(self) -> np.ndarray:
        return self._state.pos_w

    @property
    def lin_vel_w(self) -> np.ndarray:
        return self._state.lin_vel_w

    @property
    def yaw_rad(self) -> np.ndarray:
        return yaw_from_quat_wxyz(self._state.quat_wxyz)

    @property
    def rot_wb(self) -> np.ndarray:
        return quat_wxyz_to_rot(self._state.quat_wxyz)

    def seed(self, seed) -> None:
        seeder = getattr(self.flight_stack, "seed", None)
        if callable(seeder):
            seeder(seed)

    def reset(self, pos_w: np.ndarray, yaw_rad: np.ndarray, ids: np.ndarray | None = None) -> None:
        """Start drones ``ids`` (all when None) at rest at ``pos_w`` (n, 3) m ENU, ``yaw_rad`` (n,).

        With a flight stack that starts on the ground (PX4), the drones are placed on the
        surface below ``pos_w``, the flight stack boots and arms, and, for starts higher than
        ``takeoff.ground_start_below_m`` above the surface, :meth:`take_off` climbs to
        ``pos_w``. Other drones hold zero velocity meanwhile.

        Raises:
            PX4Unavailable: the flight stack did not start, or the take-off did not reach the
                start within ``takeoff.timeout_s`` of sim time.
        """
        pos_w = np.asarray(pos_w, dtype=np.float64).reshape(-1, 3)
        yaw_rad = np.atleast_1d(np.asarray(yaw_rad, dtype=np.float64))
        self.last_takeoff_s = 0.0
        if not self.starts_on_ground:
            self.backend.reset_drone_states(pos_w, yaw_quat_wxyz(yaw_rad), ids)
            self.rotors.reset(ids)
            self.flight_stack.reset(ids)
            self._state = self.backend.drone_state()
            return
        surface = (
            np.zeros(len(pos_w))
            if self.surface_height is None
            else np.asarray(self.surface_height(pos_w[:, :2]), float)
        )
        on_ground = pos_w.copy()
        on_ground[:, 2] = surface + self.rest_height_m
        self.backend.reset_drone_states(on_ground, yaw_quat_wxyz(yaw_rad), ids)
        self.rotors.reset(ids)
        self.flight_stack.reset(ids)
        self._state = self.backend.drone_state()
        rows = np.arange(self.num_drones) if ids is None else np.atleast_1d(np.asarray(ids, dtype=np.intp))
        airborne_start = pos_w[:, 2] - surface > self.takeoff.ground_start_below_m
        target = np.where(airborne_start[:, None], pos_w, on_ground)
        self.take_off(rows, target, climb=airborne_start)

    def take_off(self, rows: np.ndarray, target_pos_w: np.ndarray, climb: np.ndarray | None = None) -> float:
        """Boot and arm the flight stack, then fly drones ``rows`` to ``target_pos_w`` (n, 3) m ENU.

        One control step with zero setpoints runs the flight stack's start-up (PX4: boot,
        parameters, OFFBOARD, arming); then, while any drone with ``climb`` True is farther
        than ``takeoff.position_tolerance_m`` from its target or faster than
        ``takeoff.speed_tolerance_mps``, the position loop of :class:`TakeoffCfg` commands
        velocities. Drones not in ``rows`` hold zero velocity. Yaw is held (zero yaw rate).

        Returns:
            s of sim time the take-off took (also in :attr:`last_takeoff_s`).

        Raises:
            PX4Unavailable: not reached within ``takeoff.timeout_s`` of sim time (the message
                names the drone, where it is, and the flight stack's log).
        """
        from flyby.errors import PX4Unavailable

        cfg = self.takeoff
        rows = np.atleast_1d(np.asarray(rows, dtype=np.intp))
        climb = np.ones(len(rows), dtype=bool) if climb is None else np.asarray(climb, dtype=bool)
        vel_sp = np.zeros((self.num_drones, 3))
        yaw_rate_sp = np.zeros(self.num_drones)
        step_dt = self.decimation * self.physics_dt
        elapsed = 0.0
        self._control_step(vel_sp, yaw_rate_sp)  # start-up, at rest
        elapsed += step_dt
        while True:
            err = target_pos_w - self.pos_w[rows]
            speed = np.linalg.norm(self.lin_vel_w[rows], axis=1)
            done = ~climb | (
                (np.linalg.norm(err, axis=1) < cfg.position_tolerance_m) & (speed < cfg.speed_tolerance_mps)
            )
            if done.all():
                break
            if elapsed > cfg.timeout_s:
                k = int(np.flatnonzero(~done)[0])
                where = getattr(self.flight_stack, "describe", lambda: "")()
                raise PX4Unavailable(
                    f"take-off of drone {int(rows[k])} did not reach its start "
                    f"{target_pos_w[k].round(2).tolist()} m within {cfg.timeout_s:g} s of sim time: "
                    f"it is at {self.pos_w[rows[k]].round(2).tolist()} m, {speed[k]:.2f} m/s "
                    f"(tolerances {cfg.position_tolerance_m} m, {cfg.speed_tolerance_mps} m/s); "
                    f"raise px4.takeoff.timeout_s or start lower. {where}".rstrip()
                )
            cmd = cfg.gain_per_s * err
            horizontal = np.linalg.norm(cmd[:, :2], axis=1, keepdims=True)
            cmd[:, :2] *= np.minimum(1.0, cfg.max_horizontal_speed_mps / np.maximum(horizontal, 1e-9))
            cmd[:, 2] = np.clip(cmd[:, 2], -cfg.max_descent_mps, cfg.max_climb_mps)
            vel_sp[:] = 0.0
            vel_sp[rows] = np.where(climb[:, None], cmd, 0.0)
            self._control_step(vel_sp, yaw_rate_sp)
            elapsed += step_dt
        self.last_takeoff_s = elapsed
        return elapsed

    def step(self, actions: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
        expected = self.decimation * self.physics_dt
        if not math.isclose(dt, expected, rel_tol=1e-9, abs_tol=1e-12):
            raise ValueError(
                f"dt {dt} s must equal decimation x physics_dt = "
                f"{self.decimation} x {self.physics_dt} = {expected} s"
            )
        # ``actions`` were checked and clipped once by the env (flyby.mdp.actions.validate_actions).
        vel_sp_w, yaw_rate_sp = self.actions.scale(actions)
        self._control_step(vel_sp_w, yaw_rate_sp)
        return self.pos_w, self.yaw_rad

    def _control_step(self, vel_sp_w: np.ndarray, yaw_rate_sp: np.ndarray) -> None:
        """``decimation`` physics steps holding one velocity (N, 3) m/s ENU + yaw-rate (N,) rad/s setpoint."""
        compiled = self._compiled_substep_args()
        if compiled is not None:
            self._control_step_compiled(vel_sp_w, yaw_rate_sp, compiled)
            return
        for _ in range(self.decimation):
            u = self.flight_stack.update(vel_sp_w, yaw_rate_sp, self._state, self.physics_dt)
            armed = getattr(self.flight_stack, "armed", None)
            if armed is None:
                armed = np.ones(self.num_drones, dtype=bool)
            omega = self.rotors.step(u, armed, self.physics_dt)
            lin_vel_b = rotate_inverse(self._state.quat_wxyz, self._state.lin_vel_w)
            force_b, torque_b = self.rotors.wrench_b(omega, lin_vel_b)
            self.backend.apply_body_wrench(force_b, torque_b)
            self.backend.step_physics(1)
            self._state = self.backend.drone_state()

    def _compiled_substep_args(self) -> tuple | None:
        """The arguments of :func:`flyby.control.cascade_kernel.cascade_rotors_into` after the
        setpoints, or None where the compiled substep does not apply.

        It applies with ``FLYBY_KERNEL=numba`` to the built-in cascade and rotor model
        themselves (a subclass may override ``update`` or ``step``, which the kernel would skip)
        on a backend with :meth:`~flyby.sim.mujoco_backend.MujocoBackend.free_body_views`.
        """
        if kernel_backend() is not KernelBackend.NUMBA:
            return None
        args = self._compiled_args
        if args is not None and args[_ARG_OMEGA] is self.rotors.omega:  # the rotors' own array
            return args
        if (
            type(self.flight_stack) is not CascadeController
            or type(self.rotors) is not RotorModel
            or not callable(getattr(self.backend, "free_body_views", None))
        ):
            return None
        views = self.backend.free_body_views()
        self._wrench_limit = views.max_value
        n = self.num_drones
        self._compiled_args = (
            views.qpos, views.qvel, *self.flight_stack.kernel_args(), self.physics_dt,
            np.empty((n, 4)), np.ones(n, dtype=bool), *self.rotors.kernel_params(self.physics_dt), views.ctrl,
        )  # fmt: skip
        return self._compiled_args

    def _control_step_compiled(self, vel_sp_w: np.ndarray, yaw_rate_sp: np.ndarray, args: tuple) -> None:
        """:meth:`_control_step` with the cascade and the rotors in one compiled call per physics
        step (the numpy reference's numbers to rounding: tests/dynamics/test_flight_stack_motion.py)."""
        from flyby.control.cascade_kernel import cascade_rotors_into

        n = self.num_drones
        vel_sp = np.asarray(vel_sp_w, dtype=np.float64)
        yaw_rate = np.asarray(yaw_rate_sp, dtype=np.float64)
        if vel_sp.shape != (n, 3) or yaw_rate.shape != (n,):  # the cascade's own check
            raise ValueError(
                f"expected vel_sp_w ({n}, 3) and yaw_rate_sp ({n},); got {vel_sp.shape} and {yaw_rate.shape}"
            )
        backend = self.backend
        for _ in range(self.decimation):
            worst = cascade_rotors_into(vel_sp, yaw_rate, *args)
            if not worst < self._wrench_limit:  # the backend's own check raises, and clears the wrench
                ctrl = args[-1]
                backend.apply_body_wrench(ctrl[:, :3].copy(), ctrl[:, 3:].copy())
            backend.step_physics(1)
        self._state = backend.drone_state()
