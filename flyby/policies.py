"""Scripted policies: baselines for videos and throughput runs (no learning)."""

from __future__ import annotations

import numpy as np

from flyby.enums import KernelBackend
from flyby.kernels import kernel_backend
from flyby.mdp.observations import ObsLayout

_FLOAT32 = np.dtype(np.float32)  # compared per call: faster than comparing with the type


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
        self._consts: np.ndarray | None = None  # the compiled path's constants, built on first use

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        if obs.dtype == _FLOAT32 and kernel_backend() is KernelBackend.NUMBA:
            return self._call_kernel(obs)
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

    def _call_kernel(self, obs: np.ndarray) -> np.ndarray:
        """:meth:`__call__` with the same draws and the arithmetic in one compiled call
        (:func:`flyby.mdp.kernels.patrol_into`): bit-identical actions, a tenth of the time."""
        from flyby.mdp.kernels import patrol_into

        n = obs.shape[0]
        # The reference's two draws, (n, 2) then (n,), as one: the generator's stream is the same.
        noise = self.rng.standard_normal(3 * n)
        noise_v, noise_y = noise[: 2 * n].reshape(n, 2), noise[2 * n :]
        if self._consts is None:
            sq = np.sqrt(self.dt)
            self._consts = np.array(
                [
                    0.3,
                    0.5 * self.speed * sq,
                    0.6 * sq,
                    self.dt,
                    self.speed,
                    self.edge_frac,
                    self.altitude_frac,
                ]
            )
        actions = np.empty((n, 4), dtype=np.float32)
        pos = obs[:, self.layout.pos]  # float32 (checked by the caller), a view
        patrol_into(self._vel, self._yaw_rate, noise_v, noise_y, pos, self._consts, actions)
        return actions


class PatrolPolicy:
    """Single-drone patrol baseline: :class:`SmoothPatrolPolicy` for one drone, reseeded per episode.

    A scripted ISR baseline for evaluation (``flyby/PX4ISR-v0``, ``flyby/DirectISR-v0``): it holds
    about 40 % of the ceiling, wanders with smooth random horizontal velocity, sweeps the camera with
    a random yaw rate and turns back before the geofence. It reads only the drone's position from the
    observation (``ObsLayout.pos``, normalised), so it works for any ``top_k``.

    ``reset(seed)`` restarts the patrol from a generator seeded by ``seed`` (evaluation calls it before
    every episode), so the same seed flies the same patrol. The object is plain Python and numpy:
    it pickles, and parallel evaluation workers each act with their own copy.

    Args:
        dt: s, control period of the env it drives (the OU noise integrates over it);
            PX4ISR-v0's ``step_dt`` = 0.004 s x 10 = 0.04 s by default.
        seed: seed used until the first ``reset``.
        altitude_frac, speed, edge_frac: as in :class:`SmoothPatrolPolicy`.

    ``__call__(obs (obs_dim,) float32) -> action (4,) float32`` in [-1, 1].

    Raises:
        ValueError: ``dt`` not > 0, or (call) an observation that is not one 1-D vector.
    """

    label = "patrol"

    def __init__(
        self,
        *,
        dt: float = 0.04,
        seed: int = 0,
        altitude_frac: float = 0.4,
        speed: float = 0.6,
        edge_frac: float = 0.75,
    ) -> None:
        if not dt > 0:
            raise ValueError(f"PatrolPolicy dt must be the env's step_dt in s (> 0), got {dt!r}")
        self.dt = float(dt)
        self._kwargs = {"altitude_frac": altitude_frac, "speed": speed, "edge_frac": edge_frac}
        self.reset(seed)

    def reset(self, seed: int) -> None:
        """Restart the patrol from ``seed`` (same seed, same patrol)."""
        self.seed = int(seed)
        self._patrol = SmoothPatrolPolicy(
            1, ObsLayout(5), seed=[self.seed, 0xBA7201], dt=self.dt, **self._kwargs
        )  # only ObsLayout.pos is read, which does not depend on top_k

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs)
        if obs.ndim != 1:
            raise ValueError(
                f"PatrolPolicy drives one drone: obs must be 1-D (obs_dim,), got shape {obs.shape}"
            )
        return self._patrol(obs[None])[0]
