"""Termination conditions: crash and geofence terminate; only the time limit truncates.

:class:`TerminationCfg` ``.terms`` names every condition as a :class:`~flyby.mdp.terms.DoneTerm`:
the built-ins (``DONE_TERMS``: ``crash``, ``geofence`` terminate, ``time_out`` truncates;
``func=None``) are computed together each step from this module's functions; a term of your
own (``DoneTerm(func=..., time_out=False)``) runs beside them and ends the episodes where it
returns True (terminated, or truncated when ``time_out``). The env logs, per term, how many of
the envs that ended did so by it (``Episode_Termination/<k>``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from flyby.config import cfg_field
from flyby.mdp.terms import DoneTerm, term_dict_problems

TERMINATE_TERMS = ("crash", "geofence")  # built-ins that terminate
DONE_TERMS = (*TERMINATE_TERMS, "time_out")  # the built-in terms; time_out truncates


def _default_terms() -> dict[str, DoneTerm]:
    return {
        "crash": DoneTerm(),  # below min_altitude_m once airborne, or inside a (grown) building
        "geofence": DoneTerm(),  # outside the area (shrunk by geofence_margin_m) or above max_altitude_m
        "time_out": DoneTerm(time_out=True),  # episode_length_s reached (truncation)
    }


@dataclass(kw_only=True)
class TerminationCfg:
    """Termination terms, and the crash and geofence limits of the built-in ones.

    ``terms`` given here (or in YAML) are merged onto the three built-ins, which are always on;
    an entry with a new name is a term of your own and must give ``func``.
    """

    # name -> term; the built-ins crash, geofence (terminate) and time_out (truncates) are always on
    terms: dict[str, DoneTerm] = field(default_factory=_default_terms)

    # m, buildings are grown by this for collisions (Iris span ~0.55 m)
    drone_radius_m: float = cfg_field(0.35, ge=0.0)
    min_altitude_m: float = cfg_field(0.5, ge=0.0)  # m, below this, once airborne, is a ground crash
    max_altitude_m: float = cfg_field(120.0, gt=0.0)  # m, ceiling of the geofence (about the 400 ft rule)
    geofence_margin_m: float = cfg_field(0.0, ge=0.0)  # m, geofence is the area shrunk by this on each side

    def __post_init__(self) -> None:
        self.terms = {**_default_terms(), **self.terms}

    def validate(self) -> list[str]:
        problems = []
        if self.max_altitude_m <= self.min_altitude_m:
            problems.append(
                f"max_altitude_m: {self.max_altitude_m} must exceed min_altitude_m ({self.min_altitude_m})"
            )

        def clash(name: str, term: DoneTerm) -> str | None:
            kind = name == "time_out"
            if term.func is None and not term.params and term.time_out in (None, kind):
                return None
            return f"{'truncates' if kind else 'terminates'}; its limits are fields of this config"

        return problems + term_dict_problems(self.terms, DoneTerm, DONE_TERMS, clash)


def crashed(
    pos_w: np.ndarray, in_building: np.ndarray, cfg: TerminationCfg, airborne: np.ndarray | None = None
) -> np.ndarray:
    """(N,) bool: below the minimum altitude after having been airborne, or inside a (grown) building.

    A drone that starts its episode on the ground (a PX4 ground start: PX4 arms there and
    takes off from the policy's climb setpoints) is not crashed while it has not yet risen
    to ``min_altitude_m``; coming back below it afterwards is a ground crash.

    Args:
        pos_w: (N, 3) metres, world ENU.
        in_building: (N,) bool from ``ISRWorld.points_in_buildings(pos_w, cfg.drone_radius_m)``.
        airborne: (N,) bool, the drone has been at or above ``min_altitude_m`` this episode;
            None: every drone is airborne.
    """
    low = pos_w[:, 2] < cfg.min_altitude_m
    if airborne is not None:
        low &= airborne
    return low | in_building


def outside_geofence(pos_w: np.ndarray, half_extent: np.ndarray, cfg: TerminationCfg) -> np.ndarray:
    """(N,) bool: outside the area (shrunk by the margin) or above the ceiling."""
    lim = half_extent - cfg.geofence_margin_m if cfg.geofence_margin_m else half_extent  # skip x - 0.0 == x
    out_xy = np.abs(pos_w[:, :2]) > lim
    return out_xy[:, 0] | out_xy[:, 1] | (pos_w[:, 2] > cfg.max_altitude_m)  # cheaper than .any(axis=1)


def time_out(episode_step: np.ndarray, max_episode_length: int) -> np.ndarray:
    """(N,) bool: the episode reached its step limit (truncation)."""
    return episode_step >= max_episode_length
