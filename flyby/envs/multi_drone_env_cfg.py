"""Configuration of ``flyby/MultiDroneISR-v0``."""

from __future__ import annotations

from dataclasses import dataclass, field

from flyby.config import cfg_field
from flyby.enums import ResolutionPreset
from flyby.envs.isr_env_cfg import ISREnvCfg
from flyby.perception.camera import CameraCfg


@dataclass(kw_only=True)
class MultiDroneEnvCfg(ISREnvCfg):
    """N drones in one shared world; 80x80 tiled cameras rendered every 4th step (seed plan)."""

    num_drones: int = cfg_field(16, ge=1, le=4096)  # drones sharing the world
    camera: CameraCfg = field(default_factory=lambda: CameraCfg(preset=ResolutionPreset.MULTI))
