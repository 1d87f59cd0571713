"""Scripted policies: baselines for videos and throughput runs (no learning)."""

from __future__ import annotations

import numpy as np

from flyby.mdp.observations import ObsLayout


class SmoothPatrolPolicy:
    """Smooth random patrol from observations alone.

    Horizontal velocity follows an Ornstein-Uhlenbeck process (smooth, random,
    mean-reverting to zero), altitude is held near ``altitude_frac`` of the
    geofence ceiling (above the buildings), and drones turn back towards the
    centre when they come within ``edge_frac`` of the geofence. Yaw rate follows
    its own OU process so the cameras sweep.

    Args:
        num_envs: batch size N.
        layout: observation layout of the env (for the named slices).
        altitude_frac: target altitude as a fraction of the ceiling (0.4 x 120 m = 48 m).
        speed: typical normalised horizontal command (0..1).
        seed: seed of the OU noise.

    ``__call__(obs (N, obs_dim)) -> actions (N, 4) float32`` in [-1, 1].
    """

    def __init__(
        self,
        num_envs: int,
        layout: ObsLayout,
        *,
        altitude_frac: float = 0.4,
        speed: float = 0.6,
        edge_frac: float = 0.75,
        seed: int = 0,
        dt: float = 0.05,
    ) -> None:
        self.layout = layout
        self.altitude_frac = altitude_frac
        self.speed = speed
        self.edge_frac = edge_frac
        self.dt = dt
        self.rng = np.random.default_rng(seed)
        heading = self.rng.uniform(-np.pi, np.pi, num_envs)
        self._vel = speed * np.column_stack([np.cos(heading), np.sin(heading)])
        self._yaw_rate = np.zeros(num_envs)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        n = obs.shape[0]
        theta, sigma = 0.3, 0.5 * self.speed
        sq = np.sqrt(self.dt)
        self._vel += -theta * self._vel * self.dt + sigma * sq * self.rng.standard_normal((n, 2))
        norm = np.linalg.norm(self._vel, axis=1, keepdims=True)
        self._vel *= np.minimum(np.maximum(self.speed / np.maximum(norm, 1e-6), 0.5), 1.5)
        self._yaw_rate += -theta * self._yaw_rate * self.dt + 0.6 * sq * self.rng.standard_normal(n)
        pos = obs[:, self.layout.pos]
        out_x = np.abs(pos[:, :2]) > self.edge_frac
        toward_centre = -np.sign(pos[:, :2]) * self.speed
        self._vel = np.where(out_x, toward_centre, self._vel)
        actions = np.empty((n, 4), dtype=np.float32)
        actions[:, :2] = self._vel
        actions[:, 2] = 4.0 * (self.altitude_frac - pos[:, 2])
        actions[:, 3] = 0.5 * np.tanh(2.0 * self._yaw_rate)
        np.maximum(actions, -1.0, out=actions)
        np.minimum(actions, 1.0, out=actions)
        return actions
