"""Full-fidelity motion: velocity setpoint -> flight stack -> rotors -> rigid-body physics.

Per control step of ``dt = decimation * physics_dt`` seconds, for every physics
substep (250 Hz by default, PX4 SITL's lockstep rate)::

    u     = flight_stack.update(vel_sp_w, yaw_rate_sp, state, physics_dt)   # motor commands in [0, 1]
    omega = rotors.step(u, armed, physics_dt)                               # first-order motor lag
    force_b, torque_b = rotors.wrench_b(omega, lin_vel_b)                   # thrust, reaction torque, drag
    backend.apply_body_wrench(force_b, torque_b); backend.step_physics(1)   # MuJoCo: contacts, integration
    state = backend.drone_state()

The flight stack is the built-in cascade (:class:`flyby.control.cascade.CascadeController`)
or PX4 SITL over MAVLink lockstep (:class:`flyby.px4.flight_stack.PX4FlightStack`);
both take the same velocity + yaw-rate setpoint the direct model takes, so a
policy transfers unchanged.
"""

from __future__ import annotations

import math

import numpy as np

from flyby.dynamics.direct_cfg import DirectDynamicsCfg
from flyby.mdp.actions import scale_actions, validate_actions
from flyby.perception.camera import yaw_quat_wxyz
from flyby.dynamics.multirotor import quat_wxyz_to_rot, rotate_inverse, yaw_from_quat_wxyz


class FlightStackMotion:
    """A :class:`~flyby.dynamics.motion.MotionModel` backed by a flight stack and MuJoCo physics.

    Args:
        backend: a MuJoCo backend built in dynamic mode (free-joint drones).
        flight_stack: object with ``update(vel_sp_w, yaw_rate_sp, state, dt) -> u (N, 4)``
            and ``reset(ids=None)``; optional ``armed`` (N,) bool and ``seed(seed)``.
        rotors: a :class:`flyby.dynamics.multirotor.RotorModel`.
        action_scale: the shared action scaling (max velocities, yaw rate).
        physics_dt: seconds per physics step.
        decimation: physics steps per control step.
    """

    def __init__(self, backend, flight_stack, rotors, action_scale: DirectDynamicsCfg, physics_dt: float, decimation: int):
        self.backend = backend
        self.flight_stack = flight_stack
        self.rotors = rotors
        self.action_scale = action_scale
        self.physics_dt = float(physics_dt)
        self.decimation = int(decimation)
        self.num_drones = backend.num_drones
        self.physics_steps = 0
        self._state = backend.drone_state()

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
        self.backend.reset_drone_states(np.asarray(pos_w, float), yaw_quat_wxyz(np.atleast_1d(yaw_rad)), ids)
        self.rotors.reset(ids)
        self.flight_stack.reset(ids)
        self._state = self.backend.drone_state()

    def step(self, actions: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
        expected = self.decimation * self.physics_dt
        if not math.isclose(dt, expected, rel_tol=1e-9, abs_tol=1e-12):
            raise ValueError(
                f"dt {dt} s must equal decimation x physics_dt = {self.decimation} x {self.physics_dt} = {expected} s"
            )
        a = validate_actions(actions, self.num_drones)
        cfg = self.action_scale
        vel_sp_w, yaw_rate_sp = scale_actions(a, cfg.max_velocity, cfg.max_vertical_velocity, cfg.max_yaw_rate)
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
            self.physics_steps += 1
        return self.pos_w, self.yaw_rad
