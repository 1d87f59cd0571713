"""The training configuration file (``training_config.yaml``) and its loader."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flyby.config import from_dict, load_yaml, read_yaml
from flyby.dynamics.direct_cfg import DirectDynamicsCfg
from flyby.envs.direct_env_cfg import DirectEnvCfg
from flyby.envs.multi_drone_env_cfg import MultiDroneEnvCfg
from flyby.errors import ConfigError
from flyby.training.trainer_cfg import TrainerCfg

TRAINING_CONFIG = "training_config.yaml"
DYNAMICS_CONFIG = "dynamics_config.yaml"


@dataclass(kw_only=True)
class TrainingCfg:
    """Everything ``training_config.yaml`` holds."""

    direct_env: DirectEnvCfg = field(default_factory=DirectEnvCfg)  # flyby/DirectISR-v0
    multi_drone_env: MultiDroneEnvCfg = field(default_factory=MultiDroneEnvCfg)  # flyby/MultiDroneISR-v0
    training: TrainerCfg = field(default_factory=TrainerCfg)  # flyby train: algorithm, budgets, logging


def load_training_cfg(
    path: str | Path = TRAINING_CONFIG, dynamics_path: str | Path = DYNAMICS_CONFIG
) -> TrainingCfg:
    """Load the training config and put the dynamics file's model into both envs.

    Args:
        path: a YAML path or the name of a packaged config.
        dynamics_path: likewise, for ``dynamics_config.yaml``.

    Raises:
        ConfigError: every bad value in either file, by dotted path. A
            ``dynamics`` key inside the training file is refused (the model
            lives in the dynamics file only, so tuning has one place to write).
    """
    data, p = read_yaml(path)
    data = data or {}
    problems = []
    if isinstance(data, dict):
        for section in ("direct_env", "multi_drone_env"):
            if isinstance(data.get(section), dict) and "dynamics" in data[section]:
                problems.append(f"{section}.dynamics: set the dynamics in {DYNAMICS_CONFIG}, not here")
    if problems:
        raise ConfigError(problems, str(p))
    cfg = from_dict(TrainingCfg, data, source=str(p))
    dynamics = load_yaml(DirectDynamicsCfg, dynamics_path)
    cfg.direct_env.dynamics = dynamics
    cfg.multi_drone_env.dynamics = dynamics
    return cfg
