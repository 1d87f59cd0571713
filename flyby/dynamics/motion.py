"""The motion-model protocol: what turns a batch of normalised actions into drone poses.

:class:`~flyby.envs.isr_task.ISRTask` runs on any motion model, which is how the
direct, multi-drone and full-fidelity envs share one task definition:

- :class:`~flyby.dynamics.direct.DirectDynamics`: first-order velocity response, no flight stack;
- :class:`~flyby.dynamics.flight_stack_motion.FlightStackMotion`: flight stack (built-in cascade
  or PX4 SITL) -> rotor model -> rigid-body physics at 250 Hz.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class MotionModel(Protocol):
    """Batched drone motion, world ENU, metres and radians.

    Attributes:
        num_drones: batch size N.
        pos_w: (N, 3) float64 positions.
        lin_vel_w: (N, 3) float64 velocities, m/s.
        yaw_rad: (N,) float64 yaw angles in [-pi, pi).
        rot_wb: (N, 3, 3) float64 body (FLU) to world rotations.
    """

    num_drones: int

    @property
    def pos_w(self) -> np.ndarray: ...

    @property
    def lin_vel_w(self) -> np.ndarray: ...

    @property
    def yaw_rad(self) -> np.ndarray: ...

    @property
    def rot_wb(self) -> np.ndarray: ...

    def seed(self, seed: int | np.random.SeedSequence | None) -> None:
        """Reseed any randomness (noise, sensor errors)."""

    def reset(self, pos_w: np.ndarray, yaw_rad: np.ndarray, ids: np.ndarray | None = None) -> None:
        """Place drones ``ids`` (all when None) at rest at ``pos_w`` (k, 3) with ``yaw_rad`` (k,)."""

    def step(self, actions: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """Apply clipped normalised actions (N, 4) for ``dt`` seconds; return (pos_w, yaw_rad)."""
