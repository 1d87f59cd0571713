"""Termination conditions: crash and geofence terminate; only the time limit truncates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flyby.config import cfg_field


@dataclass(kw_only=True)
class TerminationCfg:
    """Crash and geofence limits."""

    # m, buildings are grown by this for collisions (Iris span ~0.55 m)
    drone_radius_m: float = cfg_field(0.35, ge=0.0)
    min_altitude_m: float = cfg_field(0.5, ge=0.0)  # m, below this, once airborne, is a ground crash
    max_altitude_m: float = cfg_field(120.0, gt=0.0)  # m, ceiling of the geofence (about the 400 ft rule)
    geofence_margin_m: float = cfg_field(0.0, ge=0.0)  # m, geofence is the area shrunk by this on each side

    def validate(self) -> list[str]:
        if self.max_altitude_m <= self.min_altitude_m:
            return [
                f"max_altitude_m: {self.max_altitude_m} must exceed min_altitude_m ({self.min_altitude_m})"
            ]
        return []


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
