"""Reward terms: pure functions returning (num_envs,) float64.

The env combines them as ``reward = sum_k scales[k] * term_k * step_dt`` (the
IsaacLab convention, so scales are "per second" rates and do not change with
the control rate) and logs each term's episode sum as ``Episode_Reward/<k>``.
Event terms (a new target, a crash) are counts per step, so their scale is
divided by ``step_dt`` in effect: with ``step_dt = 0.05`` s a scale of 20 pays
1.0 per newly observed target.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from flyby.config import cfg_field

REWARD_TERMS = ("new_targets", "coverage", "collision", "geofence", "energy", "jerk")


def _default_scales() -> dict[str, float]:
    return {
        "new_targets": 20.0,  # per target first seen this episode (1.0 each at 20 Hz)
        "coverage": 2.0,  # per newly covered ground cell (0.1 each at 20 Hz)
        "collision": -200.0,  # crash into a building or the ground (-10 at 20 Hz)
        "geofence": -200.0,  # leaving the area or the altitude band (-10 at 20 Hz)
        "energy": -0.05,  # squared normalised command, per second
        "jerk": -0.5,  # squared change of the normalised command, per second
    }


@dataclass(kw_only=True)
class RewardCfg:
    """Reward scales and the coverage grid."""

    scales: dict[str, float] = field(default_factory=_default_scales)  # 1/s, weight of each term in REWARD_TERMS
    coverage_cell_m: float = cfg_field(10.0, gt=0.0)  # m, side of a coverage cell on the ground
    max_footprint_radius_m: float = cfg_field(40.0, gt=0.0)  # m, cap on the camera footprint radius

    def validate(self) -> list[str]:
        unknown = sorted(set(self.scales) - set(REWARD_TERMS))
        return [f"scales.{k}: unknown reward term (known: {', '.join(REWARD_TERMS)})" for k in unknown]


def new_targets(newly_seen: np.ndarray) -> np.ndarray:
    """Targets seen for the first time this episode. newly_seen: (N, T) bool -> (N,)."""
    return newly_seen.sum(axis=1, dtype=np.float64)


def coverage(new_cells: np.ndarray) -> np.ndarray:
    """Ground cells covered for the first time this episode. new_cells: (N,) int -> (N,)."""
    return new_cells.astype(np.float64)


def collision(collided: np.ndarray) -> np.ndarray:
    """1 where the drone hit a building or the ground. collided: (N,) bool -> (N,)."""
    return collided.astype(np.float64)


def geofence(outside: np.ndarray) -> np.ndarray:
    """1 where the drone left the geofence. outside: (N,) bool -> (N,)."""
    return outside.astype(np.float64)


def energy(actions: np.ndarray) -> np.ndarray:
    """Squared norm of the normalised command (N, 4) -> (N,), a proxy for power draw."""
    return np.einsum("ij,ij->i", actions, actions)


def jerk(actions: np.ndarray, prev_actions: np.ndarray) -> np.ndarray:
    """Squared change of the normalised command between steps, (N, 4) x2 -> (N,)."""
    d = actions - prev_actions
    return np.einsum("ij,ij->i", d, d)
