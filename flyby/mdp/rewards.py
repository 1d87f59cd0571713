"""Reward terms: pure functions returning (num_envs,) float64.

Two kinds of term, so that a reward means the same at any control rate (the
direct env runs at 20 Hz, the full-fidelity env at 25 Hz, and a policy must
transfer between them):

- **event terms** (``EVENT_TERMS``: a newly seen target, a newly covered cell, a
  crash, leaving the geofence) are counts; each event pays ``scales[k]`` once;
- **rate terms** (``RATE_TERMS``: energy, jerk) are costs per second, paid as
  ``scales[k] * term * step_dt`` each step (the IsaacLab convention).

The env sums them into the step reward and logs each term's episode sum as
``Episode_Reward/<k>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from flyby.config import cfg_field

EVENT_TERMS = ("new_targets", "coverage", "collision", "geofence")
RATE_TERMS = ("energy", "jerk")
REWARD_TERMS = EVENT_TERMS + RATE_TERMS


def _default_scales() -> dict[str, float]:
    return {
        "new_targets": 1.0,  # per target first seen this episode
        "coverage": 0.1,  # per newly covered ground cell
        "collision": -10.0,  # per crash into a building or the ground
        "geofence": -10.0,  # per exit from the area or the altitude band
        "energy": -0.05,  # per second of squared normalised command
        "jerk": -0.5,  # per second of squared change of the normalised command
    }


@dataclass(kw_only=True)
class RewardCfg:
    """Reward scales and the coverage grid."""

    # per event (EVENT_TERMS) or per second (RATE_TERMS)
    scales: dict[str, float] = field(default_factory=_default_scales)
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
