"""The evaluation configuration file (``evaluation_config.yaml``) and its loader.

Kept apart from the training config so the training envs never import the
rotor-physics and flight-stack modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flyby.config import from_dict, load_yaml, read_yaml
from flyby.dynamics.direct_cfg import DirectDynamicsCfg
from flyby.envs.px4_env_cfg import PX4EnvCfg
from flyby.errors import ConfigError
from flyby.training.training_cfg import DYNAMICS_CONFIG

EVALUATION_CONFIG = "evaluation_config.yaml"


@dataclass(kw_only=True)
class EvaluationCfg:
    """Everything ``evaluation_config.yaml`` holds."""

    px4_env: PX4EnvCfg = field(default_factory=PX4EnvCfg)  # flyby/PX4ISR-v0


def load_evaluation_cfg(
    path: str | Path = EVALUATION_CONFIG, dynamics_path: str | Path = DYNAMICS_CONFIG
) -> EvaluationCfg:
    """Load the evaluation config; the dynamics file supplies the shared action scaling.

    Raises:
        ConfigError: every bad value in either file, by dotted path.
    """
    data, p = read_yaml(path)
    data = data or {}
    if isinstance(data, dict) and isinstance(data.get("px4_env"), dict) and "dynamics" in data["px4_env"]:
        raise ConfigError([f"px4_env.dynamics: set the dynamics in {DYNAMICS_CONFIG}, not here"], str(p))
    cfg = from_dict(EvaluationCfg, data, source=str(p))
    cfg.px4_env.dynamics = load_yaml(DirectDynamicsCfg, dynamics_path)
    return cfg
