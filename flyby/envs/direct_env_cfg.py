"""Configuration of ``flyby/DirectISR-v0``."""

from __future__ import annotations

from dataclasses import dataclass, field

from flyby.enums import ResolutionPreset
from flyby.envs.isr_env_cfg import ISREnvCfg
from flyby.perception.camera import CameraCfg


@dataclass(kw_only=True)
class DirectEnvCfg(ISREnvCfg):
    """One drone on the direct dynamics; camera at the ``training`` preset (128x128)."""

    camera: CameraCfg = field(default_factory=lambda: CameraCfg(preset=ResolutionPreset.TRAINING))
