"""Rotor-level multirotor model: PX4's Iris quadrotor (airframe 10016 ``none_iris``).

This module holds the airframe constants, the motor model (rotor speed from a
normalised motor command with first-order lag) and the rotor wrench (thrust,
torques, linear drag) on the body. The rigid body itself is integrated by the
simulator (MuJoCo free joints, see :mod:`flyby.sim.mujoco_backend`).

Frames (flyby-wide, :mod:`flyby.geometry`): world ENU, body FLU (x forward, y left,
z up), quaternions wxyz rotating body into world. Rotor order is PX4's quad-x motor order::

        front
      3(CW)  1(CCW)          x (forward)
          \\  /                ^
           \\/                 |
           /\\          y <----+  (z up, out of the page)
          /  \\
      2(CCW) 4(CW)

i.e. index 0 = motor 1 front-right CCW, 1 = motor 2 back-left CCW,
2 = motor 3 front-left CW, 3 = motor 4 back-right CW (CCW / CW seen from above).

Per rotor ``i`` with speed ``w_i`` (rad/s), thrust ``T_i = k_f * w_i**2`` along
+z_b and a reaction (drag) torque about z_b of ``-s_i * k_m * T_i`` where
``s_i = +1`` for a CCW rotor: a rotor spinning CCW pushes the body CW. Arm
torques are ``r_i x (0, 0, T_i)``. Linear body drag is ``-D * v_b`` (element-wise).

Sources: PX4 SITL Gazebo-classic ``models/iris/iris.sdf`` (mass, inertia, rotor
poses, ``motorConstant``, ``momentConstant``, ``timeConstantUp/Down``,
``maxRotVelocity``, ``rotorDragCoefficient``, mavlink_interface channels
``input_scaling`` 1000 and ``zero_position_armed`` 100) and ``shared/DESIGN.md``
(PX4 SITL facts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from flyby.config import cfg_field, check
from flyby.geometry import STANDARD_GRAVITY

__all__ = [
    "DroneState",
    "MultirotorCfg",
    "RotorModel",
]


@dataclass(kw_only=True)
class MultirotorCfg:
    """PX4 Iris (airframe 10016 ``none_iris``) rigid body, rotors and motors.

    Every default cites its source. Rotor arrays are in PX4 motor order
    (see the module docstring) and the body frame is FLU.
    """

    # Sources: PX4 SITL Gazebo-classic models/iris/iris.sdf ("sdf") and shared/DESIGN.md.
    mass_kg: float = cfg_field(1.5, gt=0.0)  # kg, sdf base_link <mass> (DESIGN.md: 1.5 kg)
    # Principal moments of inertia (ixx, iyy, izz) of the sdf base_link:
    inertia_kgm2: tuple[float, float, float] = cfg_field((0.029125, 0.029125, 0.055225), gt=0.0)  # kg m^2
    rotor_pos_b: tuple[tuple[float, float, float], ...] = (
        (0.13, -0.22, 0.023),  # motor 1 front-right: sdf rotor_0_joint pose
        (-0.13, 0.20, 0.023),  # motor 2 back-left: sdf rotor_1_joint pose
        (0.13, 0.22, 0.023),  # motor 3 front-left: sdf rotor_2_joint pose
        (-0.13, -0.20, 0.023),  # motor 4 back-right: sdf rotor_3_joint pose
    )  # m, rotor centres in the body frame (FLU, origin at the centre of mass)
    rotor_dir: tuple[int, int, int, int] = (1, 1, -1, -1)  # +1 CCW / -1 CW from above; sdf turningDirection
    k_f: float = cfg_field(5.84e-6, gt=0.0)  # N/(rad/s)^2, thrust = k_f w^2; sdf motorConstant, DESIGN.md
    k_m: float = cfg_field(0.06, ge=0.0)  # m, yaw torque = k_m * thrust; sdf momentConstant, DESIGN.md
    motor_tau_up_s: float = cfg_field(0.0125, gt=0.0)  # s, spin-up time constant; sdf timeConstantUp
    motor_tau_down_s: float = cfg_field(0.025, gt=0.0)  # s, spin-down time constant; sdf timeConstantDown
    omega_per_u: float = cfg_field(1000.0, gt=0.0)  # rad/s per unit command; sdf input_scaling, DESIGN.md
    omega_idle: float = cfg_field(100.0, ge=0.0)  # rad/s at u = 0 when armed; sdf zero_position_armed
    omega_max: float = cfg_field(1100.0, gt=0.0)  # rad/s, sdf maxRotVelocity
    # Linear drag from the sdf rotorDragCoefficient 1.75e-4 x 4 rotors x hover speed 794 rad/s:
    drag_coeff_b: tuple[float, float, float] = cfg_field((0.56, 0.56, 0.0), ge=0.0)  # N/(m/s), body x, y, z
    # Collision box of the sdf base_link: 0.47 x 0.47 x 0.11 m.
    collision_half_extent_m: tuple[float, float, float] = cfg_field((0.235, 0.235, 0.055), gt=0.0)  # m

    def validate(self) -> list[str]:
        problems = []
        if len(self.rotor_pos_b) != 4 or any(len(p) != 3 for p in self.rotor_pos_b):
            problems.append(f"rotor_pos_b: expected 4 (x, y, z) rotor positions, got {self.rotor_pos_b!r}")
        if len(self.rotor_dir) != 4 or any(d not in (-1, 1) for d in self.rotor_dir):
            problems.append(f"rotor_dir: expected 4 values of +1 (CCW) or -1 (CW), got {self.rotor_dir!r}")
        if self.omega_idle >= self.omega_max:
            problems.append(f"omega_idle: {self.omega_idle} must be below omega_max ({self.omega_max})")
        if self.max_total_thrust_n <= self.mass_kg * STANDARD_GRAVITY:
            problems.append(
                f"k_f: {self.k_f} gives {self.max_total_thrust_n:.2f} N of thrust at omega_max, "
                f"not enough to lift mass_kg={self.mass_kg}"
            )
        return problems

    @property
    def max_rotor_thrust_n(self) -> float:
        """N, thrust of one rotor at ``omega_max`` (7.07 N for the Iris)."""
        return self.k_f * self.omega_max**2

    @property
    def max_total_thrust_n(self) -> float:
        """N, thrust of all four rotors at ``omega_max``."""
        return 4.0 * self.max_rotor_thrust_n

    @property
    def hover_omega(self) -> float:
        """rad/s, rotor speed at which four rotors carry the weight (794 rad/s for the Iris)."""
        return math.sqrt(self.mass_kg * STANDARD_GRAVITY / (4.0 * self.k_f))

    @property
    def hover_u(self) -> float:
        """Normalised motor command that gives :attr:`hover_omega` (0.694 for the Iris)."""
        return (self.hover_omega - self.omega_idle) / self.omega_per_u


class DroneState(NamedTuple):
    """Batched rigid-body state of N drones, as the simulator reports it.

    Attributes:
        pos_w: (N, 3) float64, metres, world ENU, centre of mass.
        quat_wxyz: (N, 4) float64, unit quaternion rotating body FLU into world ENU.
        lin_vel_w: (N, 3) float64, m/s, world ENU.
        ang_vel_b: (N, 3) float64, rad/s, body FLU.
        specific_force_b: (N, 3) float64, m/s^2, body FLU: what an ideal accelerometer
            reads, (acceleration - gravity) in the body frame; (0, 0, +9.81) at rest, level.
        contact: (N,) bool, touching the ground or a building.
    """

    pos_w: np.ndarray
    quat_wxyz: np.ndarray
    lin_vel_w: np.ndarray
    ang_vel_b: np.ndarray
    specific_force_b: np.ndarray
    contact: np.ndarray


class RotorModel:
    """Batched motor + rotor model for ``num_drones`` Iris quadrotors.

    Motor: the commanded speed is ``w_ref = omega_per_u * u + omega_idle`` when
    armed (0 when disarmed), ``u`` clipped to [0, 1]; the rotor speed follows it
    with a first-order lag, time constant ``motor_tau_up_s`` when speeding up
    and ``motor_tau_down_s`` when slowing down (exact discretisation for a
    step of ``dt``). Rotor: see the module docstring.

    Args:
        cfg: airframe constants.
        num_drones: N >= 1.

    Raises:
        ConfigError: ``cfg`` is invalid.
        ValueError: ``num_drones`` < 1.
    """

    def __init__(self, cfg: MultirotorCfg, num_drones: int) -> None:
        self.cfg = check(cfg)
        if int(num_drones) < 1:
            raise ValueError(f"num_drones must be >= 1, got {num_drones}")
        self.num_drones = int(num_drones)
        self.omega = np.zeros((self.num_drones, 4))
        self._dt: float | None = None  # step of the cached lag factors
        self._alpha_up = self._alpha_down = 0.0
        pos = np.asarray(cfg.rotor_pos_b, dtype=np.float64)  # (4, 3)
        spin = np.asarray(cfg.rotor_dir, dtype=np.float64)  # (4,)
        # torque_b = thrust (N, 4) @ _torque_per_thrust (4, 3): arm (y T, -x T, 0), reaction -s k_m T on z.
        self._torque_per_thrust = np.stack([pos[:, 1], -pos[:, 0], -spin * cfg.k_m], axis=1)
        self._drag = np.asarray(cfg.drag_coeff_b, dtype=np.float64)

    def reset(self, ids: np.ndarray | None = None, omega: np.ndarray | float = 0.0) -> None:
        """Set the rotor speeds of drones ``ids`` (all when None).

        Args:
            ids: (k,) int drone indices, or None for all.
            omega: rad/s, a scalar or (k, 4); default 0 (rotors stopped). Use
                ``cfg.hover_omega`` to start a drone already hovering.
        """
        idx = slice(None) if ids is None else np.asarray(ids)
        self.omega[idx] = omega

    def step(self, u: np.ndarray, armed: np.ndarray | bool, dt: float) -> np.ndarray:
        """Advance the motors by ``dt`` seconds.

        Args:
            u: (N, 4) normalised motor commands in PX4 motor order; clipped to [0, 1].
            armed: (N,) bool, or one bool for all drones. Disarmed rotors spin down to 0.
            dt: step, seconds, > 0.

        Returns:
            (N, 4) float64 rotor speeds, rad/s (a copy).
        """
        cfg = self.cfg
        u = np.asarray(u, dtype=np.float64)
        if u.shape != self.omega.shape:
            raise ValueError(f"u must have shape {self.omega.shape}, got {u.shape}")
        if dt != self._dt:
            if not dt > 0:
                raise ValueError(f"dt must be > 0 seconds, got {dt}")
            self._dt = dt
            self._alpha_up = 1.0 - math.exp(-dt / cfg.motor_tau_up_s)
            self._alpha_down = 1.0 - math.exp(-dt / cfg.motor_tau_down_s)
        ref = np.minimum(np.maximum(u, 0.0), 1.0)
        ref *= cfg.omega_per_u
        ref += cfg.omega_idle
        if isinstance(armed, (bool, np.bool_)):
            if not armed:
                ref[:] = 0.0
        else:
            ref *= np.asarray(armed, dtype=bool).reshape(-1, 1)
        ref -= self.omega  # the speed error
        ref *= np.where(ref > 0.0, self._alpha_up, self._alpha_down)
        self.omega += ref
        return self.omega.copy()

    def kernel_params(self, dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The compiled rotors' arguments (:func:`flyby.dynamics.multirotor_kernel.rotors_into`).

        Args:
            dt: the step, seconds, > 0 (the lag factors are those of :meth:`step`).

        Returns:
            ``(omega, params, torque_per_thrust)``: this model's (N, 4) float64 rotor speeds
            (rad/s, the array itself: the kernel advances it in place), the
            (``NUM_ROTOR_PARAMS``,) float64 constants and the (4, 3) float64 N m per N of thrust.

        Raises:
            ValueError: ``dt`` <= 0.
        """
        from flyby.dynamics import multirotor_kernel as kk

        if not dt > 0:
            raise ValueError(f"dt must be > 0 seconds, got {dt}")
        cfg = self.cfg
        p = np.zeros(kk.NUM_ROTOR_PARAMS)
        p[kk.R_OMEGA_PER_U], p[kk.R_OMEGA_IDLE], p[kk.R_K_F] = cfg.omega_per_u, cfg.omega_idle, cfg.k_f
        p[kk.R_ALPHA_UP] = 1.0 - math.exp(-dt / cfg.motor_tau_up_s)  # as step()
        p[kk.R_ALPHA_DOWN] = 1.0 - math.exp(-dt / cfg.motor_tau_down_s)
        p[kk.R_DRAG : kk.R_DRAG + 3] = self._drag
        return self.omega, p, np.ascontiguousarray(self._torque_per_thrust)

    def thrust(self, omega: np.ndarray) -> np.ndarray:
        """(N, 4) rotor thrusts, N, from rotor speeds (N, 4) rad/s."""
        omega = np.asarray(omega, dtype=np.float64)
        return self.cfg.k_f * omega * omega

    def wrench_b(
        self, omega: np.ndarray, lin_vel_b: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Total force and torque of the rotors (and drag) on the body, at the centre of mass.

        Args:
            omega: (N, 4) rotor speeds, rad/s, PX4 motor order.
            lin_vel_b: (N, 3) body-frame velocity relative to the air, m/s, for the
                linear drag; None means no drag.

        Returns:
            force_b: (N, 3) float64, N, body FLU.
            torque_b: (N, 3) float64, N m, body FLU.
        """
        thrust = self.thrust(omega)
        n = thrust.shape[0]
        force_b = np.zeros((n, 3))
        force_b[:, 2] = thrust.sum(axis=1)
        if lin_vel_b is not None:
            force_b -= self._drag * np.asarray(lin_vel_b, dtype=np.float64)
        torque_b = thrust @ self._torque_per_thrust
        return force_b, torque_b
