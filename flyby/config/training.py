"""The training configuration file (``training_config.yaml``): typed configs and loader.

``training_config.yaml`` holds the two training envs (``direct_env``, ``multi_drone_env``,
typed in :mod:`flyby.config.envs`) and the ``training:`` section (:class:`TrainerCfg`): which
RL algorithm, how long, how it logs. The seed plan's training file names ``algorithm``,
``total_steps``, ``batch_size`` and ``learning_rate``; they sit at the top of the section, the
algorithm-specific settings below them in ``ppo:`` and ``sac:`` (stable-baselines3 names). Both
budgets work, alone or together: training stops at ``total_steps`` env steps or after
``budget_s`` seconds of wall clock, whichever comes first. The dynamics come from
``dynamics_config.yaml`` (:mod:`flyby.config.dynamics`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from flyby.config.core import cfg_field, from_dict, load_yaml, read_yaml
from flyby.config.dynamics import DYNAMICS_CONFIG, DirectDynamicsCfg
from flyby.config.envs import DirectEnvCfg, MultiDroneEnvCfg
from flyby.errors import ConfigError


class Algorithm(str, Enum):
    """RL algorithm from stable-baselines3."""

    PPO = "PPO"
    SAC = "SAC"


@dataclass(kw_only=True)
class PPOSection:
    """PPO-only settings (stable-baselines3 names)."""

    # env steps per env per rollout (rollout = n_steps * num_drones samples)
    n_steps: int = cfg_field(256, ge=1)
    n_epochs: int = cfg_field(4, ge=1)  # passes over each rollout
    # discount per control step (0.995 at 20 Hz: a 10 s horizon)
    gamma: float = cfg_field(0.995, gt=0.0, le=1.0)
    gae_lambda: float = cfg_field(0.95, ge=0.0, le=1.0)  # GAE lambda
    ent_coef: float = cfg_field(0.0, ge=0.0)  # entropy bonus weight
    clip_range: float = cfg_field(0.2, gt=0.0, le=1.0)  # PPO ratio clip
    net_arch: tuple[int, ...] = cfg_field((128, 128), ge=1)  # units per hidden layer (policy and value MLPs)
    log_std_init: float = cfg_field(-1.0, ge=-5.0, le=1.0)  # initial log std of the Gaussian policy


@dataclass(kw_only=True)
class SACSection:
    """SAC-only settings (stable-baselines3 names)."""

    buffer_size: int = cfg_field(1_000_000, ge=1)  # transitions in the replay buffer
    learning_starts: int = cfg_field(10_000, ge=0)  # env steps of random actions before learning
    tau: float = cfg_field(0.005, gt=0.0, le=1.0)  # target network soft-update rate
    gamma: float = cfg_field(0.99, gt=0.0, le=1.0)  # discount per control step
    train_freq: int = cfg_field(1, ge=1)  # vector-env steps between updates
    gradient_steps: int = cfg_field(1, ge=1)  # gradient steps per update
    net_arch: tuple[int, ...] = cfg_field((256, 256), ge=1)  # units per hidden layer (actor and critics)


@dataclass(kw_only=True)
class TrainerCfg:
    """How ``flyby train`` trains a policy on ``flyby/MultiDroneISR-v0`` (direct dynamics).

    Observation normalisation (SB3 ``VecNormalize``) is saved beside the model as
    ``vecnormalize.pkl``; a loaded model always gets it (:mod:`flyby.training.policy_io`).
    """

    algorithm: Algorithm = Algorithm.PPO  # PPO or SAC (stable-baselines3)
    # env steps (agent transitions over all drones) to train for
    total_steps: int = cfg_field(4_000_000, ge=1)
    # s of wall clock to stop after as well; null: steps only
    budget_s: float | None = cfg_field(None, gt=0.0)
    batch_size: int = cfg_field(2048, ge=2)  # samples per minibatch (PPO) or per gradient step (SAC)
    learning_rate: float = cfg_field(3e-4, gt=0.0, le=1.0)  # Adam step size
    num_drones: int = cfg_field(32, ge=1, le=4096)  # drones of MultiDroneISR-v0 = parallel envs
    seed: int = cfg_field(0, ge=0)  # seeds torch, numpy, the policy and the envs
    normalize_obs: bool = True  # VecNormalize observation statistics (saved beside the model)
    normalize_reward: bool = True  # VecNormalize return scaling during training (not used at evaluation)
    clip_obs: float = cfg_field(10.0, gt=0.0)  # normalised observations are clipped to +-clip_obs
    eval_freq_steps: int = cfg_field(500_000, ge=1)  # env steps between evaluation callbacks
    # episodes per evaluation callback (a separate env, seed + 10_000)
    eval_episodes: int = cfg_field(16, ge=1)
    checkpoint_freq_steps: int = cfg_field(250_000, ge=1)  # env steps between checkpoints (resume points)
    keep_checkpoints: int = cfg_field(2, ge=1)  # newest checkpoints kept on disk (older ones are replaced)
    # torch intra-op threads while collecting rollouts (policy inference on one batch of drones
    # per step: a second thread costs more in hand-over than it saves)
    torch_threads: int = cfg_field(1, ge=1)
    # torch threads during the learner's update (PPO's minibatch epochs, SAC's gradient steps);
    # null: torch_threads. benchmarks/bench_learner.py: 2 threads update ~1.2x faster on 2 cores.
    update_torch_threads: int | None = cfg_field(None, ge=1)
    match_eval_env: bool = (
        True  # train with PX4ISR-v0's perception camera and control rate (evaluation_config.yaml)
    )
    # m, buildings grow by this more in training only
    collision_margin_m: float = cfg_field(0.0, ge=0.0, le=50.0)
    # Reward term weights (rewards.terms.<name>.weight) overriding the env's in training only (shaping);
    # evaluation keeps the shared reward. Names must be terms of multi_drone_env.rewards.terms.
    reward_scales: dict[str, float] = field(default_factory=dict)
    # Domain randomization: each drone's commanded horizontal velocity is multiplied by a gain drawn
    # uniformly from this range at every episode start (training only); (1, 1) turns it off.
    action_gain_range: tuple[float, float] = cfg_field((1.0, 1.0), gt=0.0, le=3.0)
    ppo: PPOSection = field(default_factory=PPOSection)  # algorithm: PPO
    sac: SACSection = field(default_factory=SACSection)  # algorithm: SAC

    def validate(self) -> list[str]:
        problems = []
        lo, hi = self.action_gain_range
        if lo > hi:
            problems.append(f"action_gain_range: low {lo} is above high {hi}")
        if self.algorithm is Algorithm.PPO and (self.ppo.n_steps * self.num_drones) < self.batch_size:
            problems.append(
                f"batch_size: {self.batch_size} is larger than one PPO rollout "
                f"(ppo.n_steps {self.ppo.n_steps} x num_drones {self.num_drones} = "
                f"{self.ppo.n_steps * self.num_drones}); lower batch_size or raise ppo.n_steps"
            )
        return problems

    def sb3_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the SB3 algorithm class."""
        if self.algorithm is Algorithm.PPO:
            p = self.ppo
            return {
                "n_steps": p.n_steps,
                "batch_size": self.batch_size,
                "learning_rate": self.learning_rate,
                "gamma": p.gamma,
                "gae_lambda": p.gae_lambda,
                "ent_coef": p.ent_coef,
                "n_epochs": p.n_epochs,
                "clip_range": p.clip_range,
                "policy_kwargs": {"net_arch": list(p.net_arch), "log_std_init": p.log_std_init},
            }
        s = self.sac
        return {
            "buffer_size": s.buffer_size,
            "learning_starts": s.learning_starts,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "tau": s.tau,
            "gamma": s.gamma,
            "train_freq": s.train_freq,
            "gradient_steps": s.gradient_steps,
            "policy_kwargs": {"net_arch": list(s.net_arch)},
        }

    @property
    def gamma(self) -> float:
        """Discount of the chosen algorithm (VecNormalize scales returns with it)."""
        return self.ppo.gamma if self.algorithm is Algorithm.PPO else self.sac.gamma


TRAINING_CONFIG = "training_config.yaml"


@dataclass(kw_only=True)
class TrainingCfg:
    """Everything ``training_config.yaml`` holds."""

    direct_env: DirectEnvCfg = field(default_factory=DirectEnvCfg)  # flyby/DirectISR-v0
    multi_drone_env: MultiDroneEnvCfg = field(default_factory=MultiDroneEnvCfg)  # flyby/MultiDroneISR-v0
    training: TrainerCfg = field(default_factory=TrainerCfg)  # flyby train: algorithm, budgets, logging

    def validate(self) -> list[str]:
        return reward_scale_problems(self.training.reward_scales, self.multi_drone_env.rewards.terms)


def reward_scale_problems(reward_scales: dict[str, float], terms: dict) -> list[str]:
    """``training.reward_scales`` names that are not reward terms of the env trained on (``terms``)."""
    return [
        f"training.reward_scales.{k}: unknown reward term (known: {', '.join(terms)})"
        for k in sorted(set(reward_scales) - set(terms))
    ]


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
