"""Reward terms: pure functions returning (num_envs,) float64, and the reward config.

Two kinds of term, so that a reward means the same at any control rate (the
direct env runs at 20 Hz, the full-fidelity env at 25 Hz, and a policy must
transfer between them):

- **event terms** (``EVENT_TERMS``: a newly seen target, a newly covered cell, a
  crash, leaving the geofence) are counts; each event pays ``weight`` once;
- **rate terms** (``RATE_TERMS``: energy, jerk) are costs per second, paid as
  ``weight * term * step_dt`` each step (the IsaacLab convention).

:class:`RewardCfg` ``.terms`` names every term as a :class:`~flyby.mdp.terms.RewTerm`: the six
built-ins (``REWARD_TERMS``, ``func=None``) are computed together in one batched call,
:func:`builtin_terms`; a term of your own (``RewTerm(func=..., weight=...)``) runs beside them
(see :mod:`flyby.mdp.terms`). The env sums ``weight * term`` (``* step_dt`` for rate terms) into
the step reward and, when an episode ends, logs ``Episode_Return/<k>`` (the episode sum of the
weighted term) and ``Episode_Reward/<k>`` (IsaacLab's meaning: that sum / ``episode_length_s``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from flyby.config import cfg_field
from flyby.mdp.terms import RewTerm, term_dict_problems

EVENT_TERMS = ("new_targets", "coverage", "collision", "geofence")
RATE_TERMS = ("energy", "jerk")
REWARD_TERMS = EVENT_TERMS + RATE_TERMS  # the built-in terms, in the order they are summed


def _default_terms() -> dict[str, RewTerm]:
    return {
        "new_targets": RewTerm(weight=1.0),  # per target first seen this episode
        "coverage": RewTerm(weight=0.1),  # per newly covered ground cell
        "collision": RewTerm(weight=-10.0),  # per crash into a building or the ground
        "geofence": RewTerm(weight=-10.0),  # per exit from the area or the altitude band
        "energy": RewTerm(weight=-0.05),  # per second of squared normalised command
        "jerk": RewTerm(weight=-0.5),  # per second of squared change of the normalised command
    }


@dataclass(kw_only=True)
class RewardCfg:
    """Reward terms and the coverage grid.

    ``terms`` given here (or in YAML) are merged onto the six built-ins: an entry with a
    built-in's name sets that term's ``weight`` (0 turns it off); an entry with a new name is a
    term of your own and must give ``func``.
    """

    MOVED_KEYS: ClassVar[dict[str, str]] = {
        "scales": "set each term's weight as rewards.terms.<name>.weight, e.g. "
        "rewards: {terms: {new_targets: {weight: 1.0}, energy: {weight: -0.05}}} "
        "(flyby.mdp.rewards.RewardCfg)"
    }

    # name -> term; weights per event (EVENT_TERMS) or per second (RATE_TERMS)
    terms: dict[str, RewTerm] = field(default_factory=_default_terms)
    coverage_cell_m: float = cfg_field(10.0, gt=0.0)  # m, side of a coverage cell on the ground
    max_footprint_radius_m: float = cfg_field(40.0, gt=0.0)  # m, cap on the camera footprint radius

    def __post_init__(self) -> None:
        self.terms = {**_default_terms(), **self.terms}

    def validate(self) -> list[str]:
        def clash(name: str, term: RewTerm) -> str | None:
            kind = name in RATE_TERMS
            if term.func is None and not term.params and term.per_second in (None, kind):
                return None
            return f"{'per second' if kind else 'per event'}; set only its weight"

        problems = [
            f"terms.{name}.weight: {term.weight!r} must be a finite number"
            for name, term in self.terms.items()
            if isinstance(term, RewTerm)
            and (not isinstance(term.weight, (int, float)) or not math.isfinite(term.weight))
        ]
        return problems + term_dict_problems(self.terms, RewTerm, REWARD_TERMS, clash)


def builtin_terms(
    names: Sequence[str],
    *,
    newly_seen: np.ndarray,
    new_cells: np.ndarray,
    crashed: np.ndarray,
    outside: np.ndarray,
    actions: np.ndarray,
    prev_actions: np.ndarray,
) -> np.ndarray:
    """The built-in terms ``names`` (a subset of ``REWARD_TERMS``, any order) in one batched call.

    Args:
        newly_seen: (N, T) bool, targets seen for the first time this step.
        new_cells: (N,) int, ground cells covered for the first time this step.
        crashed: (N,) bool, a crash this step.
        outside: (N,) bool, left the geofence this step (and did not crash).
        actions, prev_actions: (N, 4) normalised commands of this and the previous step.

    Returns:
        (len(names), N) float64, unweighted, row ``i`` the term ``names[i]``.

    Raises:
        KeyError: a name that is not a built-in term.
    """
    rows = []
    for k in names:
        if k == "new_targets":
            rows.append(new_targets(newly_seen))
        elif k == "coverage":
            rows.append(coverage(new_cells))
        elif k == "collision":
            rows.append(collision(crashed))
        elif k == "geofence":
            rows.append(geofence(outside))
        elif k == "energy":
            rows.append(energy(actions))
        elif k == "jerk":
            rows.append(jerk(actions, prev_actions))
        else:
            raise KeyError(f"{k!r} is not a built-in reward term ({', '.join(REWARD_TERMS)})")
    return np.array(rows).reshape(len(names), actions.shape[0])


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
