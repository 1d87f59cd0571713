"""Direct dynamics: a batched first-order velocity-response model (no PX4 in the loop).

The policy's normalised action ``a = [vx, vy, vz, yaw_rate]`` in ``[-1, 1]`` is a
velocity setpoint in the world ENU frame plus a yaw-rate setpoint, the same
quantities PX4 offboard control takes (SET_POSITION_TARGET_LOCAL_NED with
type_mask 1479), so a policy trained here drives the full-fidelity env
unchanged. Per drone and step of length ``dt``::

    v_target = a[:3] * (v_max, v_max, v_z_max)            # m/s, world ENU
    d_dt     = d ** (dt / dt_ref)                         # damping for this step
    v       <- d_dt * v + (1 - d_dt) * v_target + n_v     # n_v ~ N(0, s_v^2 * dt/dt_ref)
    p       <- p + v * dt + n_p                           # n_p ~ N(0, s_p^2 * dt/dt_ref)
    yaw     <- wrap(yaw + a[3] * yaw_rate_max * dt)        # rad, in [-pi, pi)

Noise variances scale with ``dt / dt_ref`` so the random walk per second does
not depend on the control rate. Noise is domain randomization, drawn from the
generator seeded by :meth:`DirectDynamics.reset`.

Source: the flyby seed plan's direct model (max_velocity 10 m/s,
max_vertical_velocity 5 m/s, max_yaw_rate 90 deg/s, velocity_damping 0.95,
position_noise_std 0.02 m, velocity_noise_std 0.1 m/s).
"""

from __future__ import annotations

import math

import numpy as np

from flyby.config import check
from flyby.dynamics.direct_cfg import DirectDynamicsCfg
from flyby.mdp.actions import scale_actions, validate_actions
from flyby.perception.camera import yaw_rotation


class DirectDynamics:
    """Batched direct dynamics for ``num_drones`` drones.

    State (float64 internally, world ENU):
        pos_w: (N, 3) metres.
        lin_vel_w: (N, 3) m/s.
        yaw_rad: (N,) radians in [-pi, pi).

    Args:
        cfg: model parameters.
        num_drones: batch size N >= 1.

    Raises:
        ConfigError: ``cfg`` has out-of-range values.
        ValueError: ``num_drones`` < 1.
    """

    def __init__(self, cfg: DirectDynamicsCfg, num_drones: int) -> None:
        self.cfg = check(cfg)
        if int(num_drones) < 1:
            raise ValueError(f"num_drones must be >= 1, got {num_drones}")
        self.num_drones = int(num_drones)
        self.pos_w = np.zeros((self.num_drones, 3))
        self.lin_vel_w = np.zeros((self.num_drones, 3))
        self.yaw_rad = np.zeros(self.num_drones)
        self.rng = np.random.default_rng()

    @property
    def rot_wb(self) -> np.ndarray:
        """(N, 3, 3) body-to-world rotations; the direct model flies level (yaw only)."""
        return yaw_rotation(self.yaw_rad)

    def seed(self, seed: int | np.random.SeedSequence | None) -> None:
        """Reseed the domain-randomization noise."""
        self.rng = np.random.default_rng(seed)

    def reset(
        self,
        pos_w: np.ndarray,
        yaw_rad: np.ndarray,
        ids: np.ndarray | None = None,
        *,
        lin_vel_w: np.ndarray | None = None,
        seed: int | None = None,
    ) -> None:
        """Place drones ``ids`` (all when None) at rest at ``pos_w`` (k, 3) with ``yaw_rad`` (k,).

        Args:
            seed: reseeds the noise generator (whole batch) when given.
        """
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        idx = slice(None) if ids is None else ids
        self.pos_w[idx] = pos_w
        self.yaw_rad[idx] = _wrap(np.asarray(yaw_rad, dtype=np.float64))
        self.lin_vel_w[idx] = 0.0 if lin_vel_w is None else lin_vel_w

    def step(self, actions: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """Advance every drone by ``dt`` seconds.

        Args:
            actions: (N, 4) normalised ``[vx, vy, vz, yaw_rate]``; values outside
                [-1, 1] are clipped (documented behaviour, as PX4 clamps
                setpoints to its limits).
            dt: step length, seconds, > 0.

        Returns:
            pos_w: (N, 3) float64 view of the new positions, metres, world ENU.
            yaw_rad: (N,) float64 view of the new yaw angles.

        Raises:
            InvalidAction: wrong shape, or NaN/inf values.
        """
        a = validate_actions(actions, self.num_drones)
        if not dt > 0:
            raise ValueError(f"dt must be > 0 seconds, got {dt}")
        cfg = self.cfg
        ratio = dt / cfg.damping_reference_dt
        d = cfg.velocity_damping**ratio
        v_target, yaw_rate = scale_actions(a, cfg.max_velocity, cfg.max_vertical_velocity, cfg.max_yaw_rate)
        v = self.lin_vel_w
        v *= d
        v += (1.0 - d) * v_target
        noise_scale = math.sqrt(ratio)
        if cfg.velocity_noise_std > 0 or cfg.position_noise_std > 0:
            n = self.rng.standard_normal((self.num_drones, 6))
            v += n[:, :3] * (cfg.velocity_noise_std * noise_scale)
            self.pos_w += v * dt + n[:, 3:] * (cfg.position_noise_std * noise_scale)
        else:
            self.pos_w += v * dt
        self.yaw_rad = _wrap(self.yaw_rad + yaw_rate * dt)
        return self.pos_w, self.yaw_rad


def _wrap(angle: np.ndarray) -> np.ndarray:
    """Wrap radians to [-pi, pi)."""
    return (angle + np.pi) % (2 * np.pi) - np.pi
