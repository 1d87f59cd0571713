"""Configuration shared by every ISR env (direct, multi-drone, full-fidelity)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from flyby.config import cfg_field
from flyby.dynamics.direct_cfg import DirectDynamicsCfg
from flyby.mdp.observations import ObservationCfg
from flyby.mdp.rewards import RewardCfg
from flyby.mdp.terminations import TerminationCfg
from flyby.perception.camera import CameraCfg
from flyby.world.world import WorldCfg


@dataclass(kw_only=True)
class SpawnCfg:
    """Where drones start an episode."""

    altitude_m: tuple[float, float] = cfg_field(
        (20.0, 45.0), gt=0.0
    )  # m, min/max start altitude above ground
    building_clearance_m: float = cfg_field(
        5.0, ge=0.0
    )  # m, start at least this high above the building below
    # m, ... and above every building within this horizontal distance (a 5 x 5 grid of height samples);
    # 0: only the one below. Without it a drone can start 1 m beside a wall 10 m taller than itself.
    clearance_radius_m: float = cfg_field(15.0, ge=0.0)
    edge_margin_m: float = cfg_field(15.0, ge=0.0)  # m, keep starts this far inside the geofence

    def validate(self) -> list[str]:
        lo, hi = self.altitude_m
        return [f"altitude_m: min {lo} is greater than max {hi}"] if lo > hi else []


@dataclass(kw_only=True)
class ISREnvCfg:
    """The ISR task: world, timing, camera, perception, observations, rewards, terminations.

    Timing is derived, never duplicated: ``step_dt`` is the control period and
    ``max_episode_length = ceil(episode_length_s / step_dt)`` steps.
    """

    world: WorldCfg = field(default_factory=WorldCfg)  # the procedural area
    world_seed: int = cfg_field(0, ge=0)  # seed of the world layout (episodes are seeded separately)
    dynamics: DirectDynamicsCfg = field(
        default_factory=DirectDynamicsCfg
    )  # direct model (and action scaling)
    camera: CameraCfg = field(default_factory=CameraCfg)  # drone camera
    step_dt: float = cfg_field(0.05, gt=0.0, le=1.0)  # s, control period (20 Hz)
    episode_length_s: float = cfg_field(60.0, gt=0.0)  # s, time limit of an episode (truncation)
    perception_interval: int = cfg_field(1, ge=1)  # steps between ground-truth detection updates
    render_interval: int = cfg_field(4, ge=1)  # steps between camera renders when images are requested
    observations: ObservationCfg = field(default_factory=ObservationCfg)  # observation encoding
    rewards: RewardCfg = field(default_factory=RewardCfg)  # reward scales
    terminations: TerminationCfg = field(default_factory=TerminationCfg)  # crash and geofence limits
    spawn: SpawnCfg = field(default_factory=SpawnCfg)  # episode starts

    @property
    def max_episode_length(self) -> int:
        """Steps per episode, ``ceil(episode_length_s / step_dt)``."""
        return math.ceil(self.episode_length_s / self.step_dt - 1e-9)

    def validate(self) -> list[str]:
        problems = []
        if self.episode_length_s < self.step_dt:
            problems.append(
                f"episode_length_s: {self.episode_length_s} s is shorter than one step (step_dt = {self.step_dt} s)"
            )
        if self.spawn.altitude_m[1] >= self.terminations.max_altitude_m:
            problems.append(
                f"spawn.altitude_m: max {self.spawn.altitude_m[1]} m is at or above "
                f"terminations.max_altitude_m ({self.terminations.max_altitude_m} m)"
            )
        return problems
