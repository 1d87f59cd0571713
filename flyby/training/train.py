"""PPO training on the direct (multi-drone) env or the full-fidelity env, under a wall-clock budget.

Both kinds train the same stable-baselines3 ``PPO("MlpPolicy")`` with the same
hyper-parameters (:class:`PPOCfg`, from the ``ppo:`` section of the packaged
``ppo_config.yaml``) and stop when the same wall-clock budget is spent, so what
differs between them is only what a second of compute buys:

- ``"direct"``: ``flyby/MultiDroneISR-v0`` through
  :class:`~flyby.envs.sb3_vec_env.SB3VecEnvAdapter`, ``num_drones`` drones on
  the direct dynamics acting as that many parallel envs (thousands of steps/s);
- ``"full"``: ``flyby/PX4ISR-v0`` with the built-in cascade flight stack, render
  off, in SB3's ``DummyVecEnv`` (hundreds of steps/s).

Example::

    from flyby.training.train import train_ppo, save_model

    result = train_ppo("direct", budget_s=60.0, seed=0)
    save_model(result, "output/models/direct.zip")

Needs the ``train`` extra (``pip install "flyby[train]"``); CPU torch is enough.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from flyby.config import cfg_field, load_yaml, to_dict
from flyby.errors import ConfigError, DependencyNotInstalled

logger = logging.getLogger(__name__)

PPO_CONFIG = "ppo_config.yaml"
ENV_KINDS = ("direct", "full")
MODELS_DIR = Path("output") / "models"
# PX4ISR-v0 copies the full kind steps in turn: a 4 x n_steps rollout decorrelates the samples a little
# and costs no throughput (the copies run one after another on one core, as one copy would).
FULL_NUM_ENVS = 4
# learn()'s step target when only the wall clock stops training (SB3 needs a number).
_UNBOUNDED_TIMESTEPS = 10**12


@dataclass(kw_only=True)
class PPOCfg:
    """PPO hyper-parameters (stable-baselines3 names); identical for both env kinds of a comparison."""

    n_steps: int = cfg_field(128, ge=1)  # env steps per env per rollout (rollout = n_steps * num_envs samples)
    batch_size: int = cfg_field(256, ge=2)  # samples per minibatch
    learning_rate: float = cfg_field(3e-4, gt=0.0, le=1.0)  # Adam step size
    gamma: float = cfg_field(0.99, gt=0.0, le=1.0)  # discount per control step
    gae_lambda: float = cfg_field(0.95, ge=0.0, le=1.0)  # GAE lambda
    ent_coef: float = cfg_field(0.0, ge=0.0)  # entropy bonus weight
    n_epochs: int = cfg_field(5, ge=1)  # passes over each rollout
    net_arch: tuple[int, ...] = cfg_field((64, 64), ge=1)  # units per hidden layer (policy and value MLPs)
    log_std_init: float = cfg_field(-1.0, ge=-5.0, le=1.0)  # initial log std of the Gaussian policy

    def sb3_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``stable_baselines3.PPO``."""
        return {
            "n_steps": self.n_steps,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "gamma": self.gamma,
            "gae_lambda": self.gae_lambda,
            "ent_coef": self.ent_coef,
            "n_epochs": self.n_epochs,
            "policy_kwargs": {"net_arch": list(self.net_arch), "log_std_init": self.log_std_init},
        }


def load_ppo_cfg(path: str | Path = PPO_CONFIG) -> PPOCfg:
    """Load the ``ppo:`` section of a YAML file (default: the packaged ``ppo_config.yaml``).

    Raises:
        ConfigError: missing file or section, unknown keys, or out-of-range values, by dotted path.
    """
    return load_yaml(PPOCfg, path, section="ppo")


@dataclass(frozen=True)
class LearningPoint:
    """One point of a learning curve, taken at the end of each rollout."""

    env_steps: int  # agent transitions collected so far (all parallel envs)
    wall_s: float  # s since the budget clock started
    mean_return: float  # mean return of the last (up to) 100 finished episodes; NaN before the first


@dataclass
class TrainResult:
    """What :func:`train_ppo` returns.

    Attributes:
        model: the trained ``stable_baselines3.PPO`` (device cpu).
        wall_s: s of wall clock from the start of env construction to the end of learning.
        setup_s: s of that spent building the envs and the model, before the first env step.
        env_steps: agent transitions collected (summed over the parallel envs).
        episodes: episodes finished during training.
        learning_curve: one :class:`LearningPoint` per completed rollout.
    """

    model: Any
    wall_s: float
    env_steps: int
    episodes: int
    learning_curve: list[LearningPoint] = field(default_factory=list)
    setup_s: float = 0.0
    kind: str = ""
    budget_s: float = 0.0
    seed: int = 0
    num_envs: int = 1
    ppo: PPOCfg = field(default_factory=PPOCfg)

    def summary(self) -> dict[str, Any]:
        """Plain-JSON description of the run (everything but the model)."""
        return {
            "kind": self.kind,
            "budget_s": self.budget_s,
            "seed": self.seed,
            "num_envs": self.num_envs,
            "wall_s": self.wall_s,
            "setup_s": self.setup_s,
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "ppo": to_dict(self.ppo),
            "learning_curve": [  # NaN (no finished episode yet) as null: strict JSON
                {**asdict(p), "mean_return": None if math.isnan(p.mean_return) else p.mean_return}
                for p in self.learning_curve
            ],
        }


def require_sb3():
    try:
        import stable_baselines3
        import torch
    except ImportError as exc:
        raise DependencyNotInstalled("stable-baselines3 and torch", "train") from exc
    return stable_baselines3, torch


def make_budget_callback(budget_s: float, *, start_s: float | None = None, progress: bool = True):
    """An SB3 callback that stops ``learn`` once ``budget_s`` seconds of wall clock are spent.

    The clock starts at ``start_s`` (a ``time.perf_counter()`` value) or, when None, at the start
    of ``learn``. SB3 asks the callback after every env step of a rollout; when it says stop, the
    partial rollout is dropped and ``learn`` returns. Training (the gradient epochs of the last full
    rollout) cannot be interrupted, so learning ends at most one training phase plus one env step
    after the budget. Progress (seconds spent, env steps, mean return) goes to a tqdm bar.

    Raises:
        ConfigError: ``budget_s`` is not a positive finite number.
    """
    check_budget(budget_s)
    require_sb3()
    from stable_baselines3.common.callbacks import BaseCallback

    class WallClockBudget(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.budget_s = float(budget_s)
            self.start_s = start_s
            self.episodes = 0
            self.learning_curve: list[LearningPoint] = []
            self.stopped_by_budget = False
            self.setup_s = 0.0  # s from the clock's start to the start of learning (env and model construction)
            self._bar = None

        def elapsed_s(self) -> float:
            return time.perf_counter() - self.start_s

        def _on_training_start(self) -> None:
            if self.start_s is None:
                self.start_s = time.perf_counter()
            self.setup_s = self.elapsed_s()
            if progress:
                from tqdm.auto import tqdm

                self._bar = tqdm(total=round(self.budget_s, 1), unit="s", desc="PPO (wall-clock budget)",
                                 mininterval=1.0, bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s{postfix}")

        def _on_step(self) -> bool:
            dones = self.locals.get("dones")
            if dones is not None:
                self.episodes += int(dones.sum())
            if self.elapsed_s() >= self.budget_s:
                self.stopped_by_budget = True
                return False
            return True

        def _on_rollout_end(self) -> None:
            buf = self.model.ep_info_buffer
            mean_return = float(sum(e["r"] for e in buf) / len(buf)) if buf else math.nan
            point = LearningPoint(int(self.num_timesteps), self.elapsed_s(), mean_return)
            self.learning_curve.append(point)
            if self._bar is not None:
                self._bar.set_postfix_str(f"{point.env_steps:,} env steps, return {mean_return:+.1f}", refresh=False)
                self._bar.update(min(round(point.wall_s, 1), self._bar.total) - self._bar.n)  # redraws at most 1/s

        def _on_training_end(self) -> None:
            if self._bar is not None:
                self._bar.n = min(round(self.elapsed_s(), 1), self._bar.total)
                self._bar.close()
                self._bar = None

    return WallClockBudget()


def check_budget(budget_s: float) -> None:
    """Raise ``ConfigError`` unless ``budget_s`` is a finite number of seconds > 0."""
    if isinstance(budget_s, bool) or not isinstance(budget_s, (int, float)) or not (
        math.isfinite(budget_s) and budget_s > 0
    ):
        raise ConfigError([f"budget_s: {budget_s!r} must be a finite number of seconds > 0"])


def make_train_env(kind: str, *, seed: int, env_cfg=None, num_drones: int = 16, num_envs_full: int = FULL_NUM_ENVS):
    """The SB3 ``VecEnv`` a kind trains on, wrapped in ``VecMonitor`` (episode returns and lengths).

    Args:
        kind: ``"direct"`` (``MultiDroneISR-v0`` with ``num_drones`` drones) or ``"full"``
            (``num_envs_full`` copies of ``PX4ISR-v0``, cascade flight stack, render off).
        env_cfg: ``MultiDroneEnvCfg`` (direct) or ``PX4EnvCfg`` (full); default: the packaged one.

    Raises:
        ConfigError: unknown kind, or a config of the wrong type.
    """
    _check_kind(kind)
    require_sb3()
    from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

    if kind == "direct":
        from flyby.envs.multi_drone_env import MultiDroneISREnv
        from flyby.envs.multi_drone_env_cfg import MultiDroneEnvCfg
        from flyby.envs.sb3_vec_env import SB3VecEnvAdapter

        _check_cfg_type(env_cfg, MultiDroneEnvCfg, kind)
        venv = SB3VecEnvAdapter(MultiDroneISREnv(num_drones=num_drones, cfg=env_cfg))
    else:
        from flyby.envs.px4_env import PX4ISREnv
        from flyby.envs.px4_env_cfg import PX4EnvCfg

        _check_cfg_type(env_cfg, PX4EnvCfg, kind)
        if env_cfg is None:
            from flyby.training.evaluation_cfg import load_evaluation_cfg

            env_cfg = load_evaluation_cfg().px4_env
        if int(num_envs_full) < 1:
            raise ConfigError([f"num_envs_full: {num_envs_full!r} must be >= 1"])
        cfg = env_cfg
        venv = DummyVecEnv([lambda: PX4ISREnv(cfg, flight_stack="cascade", render_mode=None)] * int(num_envs_full))
    venv.seed(seed)
    return VecMonitor(venv)


def _check_kind(kind: str) -> None:
    if kind not in ENV_KINDS:
        raise ConfigError([f"kind: {kind!r} is not one of {', '.join(map(repr, ENV_KINDS))} "
                           "(direct = MultiDroneISR-v0 on the direct dynamics, full = PX4ISR-v0 with the cascade)"])


def _check_cfg_type(env_cfg, cls, kind: str) -> None:
    if env_cfg is not None and not isinstance(env_cfg, cls):
        raise ConfigError([f"env_cfg: kind {kind!r} needs a {cls.__name__}, got {type(env_cfg).__name__}"])


def train_ppo(
    kind: str,
    *,
    budget_s: float,
    seed: int,
    total_timesteps_cap: int | None = None,
    ppo_kwargs: PPOCfg | dict[str, Any] | None = None,
    env_cfg=None,
    num_drones: int = 16,
    num_envs_full: int = FULL_NUM_ENVS,
    episode_length_s: float | None = None,
    torch_threads: int | None = 1,
    progress: bool = True,
    save_path: str | Path | None = None,
) -> TrainResult:
    """Train PPO ("MlpPolicy", cpu) on one env kind until ``budget_s`` seconds of wall clock are spent.

    The clock starts before the training env is built, so env construction counts against the
    budget as well; imports (torch) come before it. Learning stops at the first env step after the
    budget (see :func:`make_budget_callback`) or after ``total_timesteps_cap`` env steps.

    Args:
        kind: ``"direct"`` or ``"full"`` (see the module docstring).
        budget_s: s, wall-clock budget (> 0).
        seed: seeds torch, numpy, the policy and the envs.
        total_timesteps_cap: optional cap on env steps (summed over the parallel envs).
        ppo_kwargs: a :class:`PPOCfg`, or a mapping of :class:`PPOCfg` fields overriding the
            packaged ``ppo_config.yaml``; None: the packaged values.
        env_cfg: ``MultiDroneEnvCfg`` (direct) or ``PX4EnvCfg`` (full); default: packaged config.
        num_drones: drones (= parallel envs) of the direct kind.
        num_envs_full: ``PX4ISR-v0`` copies in the full kind's ``DummyVecEnv`` (stepped in turn).
        episode_length_s: s, overrides the env config's episode length (train on the length the
            policy is evaluated on).
        torch_threads: torch intra-op threads while training (restored afterwards); None: unchanged.
            One thread: these MLPs are too small to gain from intra-op threads, and both runs of a
            comparison then use the same compute on a shared machine.
        progress: show a tqdm progress bar.
        save_path: also save the model there (see :func:`save_model`).

    Returns:
        :class:`TrainResult`.

    Raises:
        ConfigError: unknown kind, ``budget_s <= 0``, a bad cap, or bad PPO settings.
        DependencyNotInstalled: stable-baselines3/torch are missing (the ``train`` extra).
    """
    _check_kind(kind)
    check_budget(budget_s)
    if total_timesteps_cap is not None and (isinstance(total_timesteps_cap, bool) or int(total_timesteps_cap) < 1):
        raise ConfigError([f"total_timesteps_cap: {total_timesteps_cap!r} must be a positive integer or None"])
    ppo_cfg = _resolve_ppo_cfg(ppo_kwargs)
    _, torch = require_sb3()
    from stable_baselines3 import PPO

    if episode_length_s is not None:
        if env_cfg is None:
            env_cfg = _default_env_cfg(kind)
        env_cfg = replace(env_cfg, episode_length_s=float(episode_length_s))

    old_threads = torch.get_num_threads()
    if torch_threads is not None:
        torch.set_num_threads(int(torch_threads))
    try:
        start = time.perf_counter()
        venv = make_train_env(kind, seed=seed, env_cfg=env_cfg, num_drones=num_drones, num_envs_full=num_envs_full)
        try:
            model = PPO("MlpPolicy", venv, seed=seed, device="cpu", verbose=0, **ppo_cfg.sb3_kwargs())
            budget = make_budget_callback(budget_s, start_s=start, progress=progress)
            total = _UNBOUNDED_TIMESTEPS if total_timesteps_cap is None else int(total_timesteps_cap)
            model.learn(total_timesteps=total, callback=budget, log_interval=None)
            wall_s = time.perf_counter() - start
        finally:
            venv.close()
    finally:
        torch.set_num_threads(old_threads)
    result = TrainResult(
        model=model,
        wall_s=wall_s,
        env_steps=int(model.num_timesteps),
        episodes=budget.episodes,
        learning_curve=budget.learning_curve,
        setup_s=budget.setup_s,
        kind=kind,
        budget_s=float(budget_s),
        seed=int(seed),
        num_envs=venv.num_envs,
        ppo=ppo_cfg,
    )
    logger.info("PPO on %s: %d env steps, %d episodes in %.1f s (budget %.1f s)",
                kind, result.env_steps, result.episodes, wall_s, budget_s)
    if save_path is not None:
        save_model(result, save_path)
    return result


def _default_env_cfg(kind: str):
    if kind == "direct":
        from flyby.training.training_cfg import load_training_cfg

        return load_training_cfg().multi_drone_env
    from flyby.training.evaluation_cfg import load_evaluation_cfg

    return load_evaluation_cfg().px4_env


def _resolve_ppo_cfg(ppo_kwargs: PPOCfg | dict[str, Any] | None) -> PPOCfg:
    if isinstance(ppo_kwargs, PPOCfg):
        from flyby.config import check

        return check(ppo_kwargs)
    base = to_dict(load_ppo_cfg())
    if ppo_kwargs:
        base.update(ppo_kwargs)
    from flyby.config import from_dict

    return from_dict(PPOCfg, base, source="ppo_kwargs")


def save_model(result: TrainResult, path: str | Path) -> Path:
    """Save the model as an SB3 zip at ``path`` and the run's summary beside it (``<path>.json``).

    Returns:
        the zip's path.
    """
    path = Path(path)
    if path.suffix != ".zip":
        path = path.with_name(path.name + ".zip")
    path.parent.mkdir(parents=True, exist_ok=True)
    result.model.save(path)
    path.with_suffix(".json").write_text(json.dumps(result.summary(), indent=2))
    return path
