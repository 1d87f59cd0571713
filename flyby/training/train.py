"""PPO training on the direct (multi-drone) env or the full-fidelity env, under a wall-clock budget.

Both kinds train the same stable-baselines3 ``PPO("MlpPolicy")`` with the same
hyper-parameters (:class:`PPOCfg`, from the ``ppo:`` section of the packaged
``ppo_config.yaml``) and stop when the same wall-clock budget is spent, so what
differs between them is only what a second of compute buys:

- ``"direct"``: ``flyby/MultiDroneISR-v0`` through
  :class:`~flyby.envs.sb3_vec_env.SB3VecEnvAdapter`, ``num_drones`` drones on
  the direct dynamics acting as that many parallel envs (thousands of steps/s);
- ``"full"``: ``flyby/PX4ISR-v0``, render off, ``num_envs_full`` copies (hundreds of
  steps/s each). With the built-in cascade flight stack (``flight_stack="cascade"``,
  the default of :func:`train_ppo`) they step in turn in SB3's ``DummyVecEnv``; with
  PX4 (``"px4"``, or ``"auto"`` when PX4 is found) each copy runs in its own worker
  process and flies its own PX4 SITL instance (``first + j``, TCP 4560 + i, UDP
  14540 + i; :class:`~flyby.training.pool_vec_env.PoolVecEnv`), so the copies step in
  parallel and every PX4 is stopped with the env, on errors and Ctrl-C too.

The flight stack that produced the samples is recorded in :class:`TrainResult`, in
the summary JSON beside a saved model and in the model itself (``model.flyby_training``).

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
# PX4ISR-v0 copies the full kind steps in turn: a 4 x n_steps rollout decorrelates the samples a little
# and costs no throughput (the copies run one after another on one core, as one copy would).
FULL_NUM_ENVS = 4
# learn()'s step target when only the wall clock stops training (SB3 needs a number).
_UNBOUNDED_TIMESTEPS = 10**12


@dataclass(kw_only=True)
class PPOCfg:
    """PPO hyper-parameters (stable-baselines3 names); identical for both env kinds of a comparison."""

    # env steps per env per rollout (rollout = n_steps * num_envs samples)
    n_steps: int = cfg_field(128, ge=1)
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
    flight_stack: str = ""  # "direct" (direct kind), "cascade" or "px4" (full kind)
    flight_stack_label: str = ""  # the same in words, as in reports and video headers
    px4_instances: list[int] = field(default_factory=list)  # PX4 instances that flew (empty without PX4)

    def summary(self) -> dict[str, Any]:
        """Plain-JSON description of the run (everything but the model)."""
        return {
            "kind": self.kind,
            "flight_stack": self.flight_stack,
            "flight_stack_label": self.flight_stack_label,
            "px4_instances": list(self.px4_instances),
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
            self.setup_s = (
                0.0  # s from the clock's start to the start of learning (env and model construction)
            )
            self._bar = None

        def elapsed_s(self) -> float:
            return time.perf_counter() - self.start_s

        def _on_training_start(self) -> None:
            if self.start_s is None:
                self.start_s = time.perf_counter()
            self.setup_s = self.elapsed_s()
            if progress:
                from tqdm.auto import tqdm

                self._bar = tqdm(
                    total=round(self.budget_s, 1),
                    unit="s",
                    desc="PPO (wall-clock budget)",
                    mininterval=1.0,
                    bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s{postfix}",
                )

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
                self._bar.set_postfix_str(
                    f"{point.env_steps:,} env steps, return {mean_return:+.1f}", refresh=False
                )
                # redraws at most 1/s
                self._bar.update(min(round(point.wall_s, 1), self._bar.total) - self._bar.n)

        def _on_training_end(self) -> None:
            if self._bar is not None:
                self._bar.n = min(round(self.elapsed_s(), 1), self._bar.total)
                self._bar.close()
                self._bar = None

    return WallClockBudget()


def check_budget(budget_s: float) -> None:
    """Raise ``ConfigError`` unless ``budget_s`` is a finite number of seconds > 0."""
    if (
        isinstance(budget_s, bool)
        or not isinstance(budget_s, (int, float))
        or not (math.isfinite(budget_s) and budget_s > 0)
    ):
        raise ConfigError([f"budget_s: {budget_s!r} must be a finite number of seconds > 0"])


DIRECT_LABEL = "direct dynamics (first-order velocity response, no flight controller)"


def resolve_train_flight_stack(kind: str, flight_stack: str | None, env_cfg=None) -> tuple[str, str]:
    """What a kind trains on: ``(flight stack, label)``.

    ``"direct"`` for the direct kind; for the full kind ``"cascade"`` or ``"px4"`` from
    ``flight_stack`` (None = ``"cascade"``; ``"auto"`` = PX4 when found, else the cascade).

    Raises:
        ConfigError: unknown kind, or a flight stack other than None/``"direct"`` for the direct kind.
        PX4Unavailable: ``"px4"`` and no PX4 binary (the message says how to set ``PX4_DIR``).
        ValueError: an unknown flight stack name.
    """
    _check_kind(kind)
    if kind == "direct":
        if flight_stack not in (None, "direct"):
            raise ConfigError(
                [
                    f"flight_stack: {flight_stack!r} applies to kind 'full' only; the direct kind "
                    "trains on the direct dynamics (pass None)"
                ]
            )
        return "direct", DIRECT_LABEL
    from flyby.envs.px4_env import FLIGHT_STACK_LABELS, resolve_flight_stack

    cfg = env_cfg if env_cfg is not None else _default_env_cfg("full")
    stack = resolve_flight_stack("cascade" if flight_stack is None else flight_stack, cfg.px4)
    return stack.value, FLIGHT_STACK_LABELS[stack]


def make_train_env(
    kind: str,
    *,
    seed: int,
    env_cfg=None,
    num_drones: int = 16,
    num_envs_full: int = FULL_NUM_ENVS,
    flight_stack: str | None = None,
    first_px4_instance: int | None = None,
):
    """The SB3 ``VecEnv`` a kind trains on, wrapped in ``VecMonitor`` (episode returns and lengths).

    Args:
        kind: ``"direct"`` (``MultiDroneISR-v0`` with ``num_drones`` drones) or ``"full"``
            (``num_envs_full`` copies of ``PX4ISR-v0``, render off).
        env_cfg: ``MultiDroneEnvCfg`` (direct) or ``PX4EnvCfg`` (full); default: the packaged one.
        flight_stack: full kind: ``"cascade"`` (None, the default; ``DummyVecEnv``), ``"px4"`` or
            ``"auto"``. With PX4, each copy is a worker process flying its own PX4 instance
            (:class:`~flyby.training.pool_vec_env.PoolVecEnv`); at most 10, instances 0..9.
        first_px4_instance: PX4 instance of copy 0 (copy ``j`` flies ``first + j``); None:
            ``env_cfg.px4.instance``.

    Raises:
        ConfigError: unknown kind, a config of the wrong type, ``num_envs_full < 1``, or (PX4) more
            than 10 copies or an instance range past instance 9.
        PX4Unavailable: ``"px4"`` and PX4 is not found or a PX4 does not start (all are stopped).
    """
    _check_kind(kind)
    require_sb3()
    from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

    if kind == "direct":
        from flyby.config.envs import MultiDroneEnvCfg
        from flyby.envs.multi_drone_env import MultiDroneISREnv
        from flyby.envs.sb3_vec_env import SB3VecEnvAdapter

        _check_cfg_type(env_cfg, MultiDroneEnvCfg, kind)
        resolve_train_flight_stack(kind, flight_stack)
        venv = SB3VecEnvAdapter(MultiDroneISREnv(num_drones=num_drones, cfg=env_cfg))
    else:
        from flyby.config.envs import PX4EnvCfg
        from flyby.envs.px4_env import PX4ISREnv
        from flyby.training.parallel import check_px4_instances

        _check_cfg_type(env_cfg, PX4EnvCfg, kind)
        if env_cfg is None:
            env_cfg = _default_env_cfg(kind)
        _check_num_envs_full(num_envs_full)
        first = env_cfg.px4.instance if first_px4_instance is None else first_px4_instance
        if flight_stack == "px4":  # refuse a bad instance range before looking for PX4
            check_px4_instances(int(num_envs_full), first, count_name="num_envs_full")
        stack, _ = resolve_train_flight_stack(kind, flight_stack, env_cfg)
        cfg = env_cfg
        if stack == "px4":
            from dataclasses import replace

            from flyby.training.parallel import make_px4_pool

            # Every training episode restarts PX4 (a new ULog, 5-35 MB each): training keeps none.
            cfg = replace(cfg, px4=replace(cfg.px4, keep_ulogs=False))
            from flyby.training.pool_vec_env import PoolVecEnv

            check_px4_instances(int(num_envs_full), first, count_name="num_envs_full")
            venv = PoolVecEnv(make_px4_pool(cfg, stack, int(num_envs_full), first))
        else:
            venv = DummyVecEnv(
                [lambda: PX4ISREnv(cfg, flight_stack="cascade", render_mode=None)] * int(num_envs_full)
            )
    venv.seed(seed)
    return VecMonitor(venv)


def _check_num_envs_full(num_envs_full) -> None:
    if isinstance(num_envs_full, bool) or not isinstance(num_envs_full, int) or num_envs_full < 1:
        raise ConfigError([f"num_envs_full: {num_envs_full!r} must be an integer >= 1"])


def _check_kind(kind: str) -> None:
    if kind not in ENV_KINDS:
        raise ConfigError(
            [
                f"kind: {kind!r} is not one of {', '.join(map(repr, ENV_KINDS))} "
                "(direct = MultiDroneISR-v0 on the direct dynamics, full = PX4ISR-v0 with the cascade "
                "or PX4)"
            ]
        )


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
    flight_stack: str | None = None,
    first_px4_instance: int | None = None,
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
        num_envs_full: ``PX4ISR-v0`` copies of the full kind: stepped in turn (cascade) or in
            parallel worker processes, one PX4 instance each (PX4; 1..10).
        episode_length_s: s, overrides the env config's episode length (train on the length the
            policy is evaluated on).
        torch_threads: torch intra-op threads while training (restored afterwards); None: unchanged.
            One thread: these MLPs are too small to gain from intra-op threads, and both runs of a
            comparison then use the same compute on a shared machine.
        progress: show a tqdm progress bar.
        save_path: also save the model there (see :func:`save_model`).
        flight_stack: full kind only: ``"cascade"`` (None, the default), ``"px4"`` or ``"auto"``
            (PX4 when found, else the cascade); see :func:`make_train_env`.
        first_px4_instance: PX4 instance of the first copy (None: ``env_cfg.px4.instance``).

    Returns:
        :class:`TrainResult` (with the flight stack that flew the samples).

    Raises:
        ConfigError: unknown kind, ``budget_s <= 0``, a bad cap, bad PPO settings, a flight stack
            for the direct kind, or a bad PX4 instance range.
        DependencyNotInstalled: stable-baselines3/torch are missing (the ``train`` extra).
        PX4Unavailable: PX4 requested and not found, or a PX4 failed (every PX4 is stopped).
    """
    _check_kind(kind)
    check_budget(budget_s)
    if total_timesteps_cap is not None and (
        isinstance(total_timesteps_cap, bool) or int(total_timesteps_cap) < 1
    ):
        raise ConfigError(
            [f"total_timesteps_cap: {total_timesteps_cap!r} must be a positive integer or None"]
        )
    ppo_cfg = _resolve_ppo_cfg(ppo_kwargs)
    _, torch = require_sb3()
    from stable_baselines3 import PPO

    if episode_length_s is not None:
        if env_cfg is None:
            env_cfg = _default_env_cfg(kind)
        env_cfg = replace(env_cfg, episode_length_s=float(episode_length_s))
    first = None
    if kind == "full":
        from flyby.config.envs import PX4EnvCfg
        from flyby.training.parallel import check_px4_instances

        _check_cfg_type(env_cfg, PX4EnvCfg, kind)
        _check_num_envs_full(num_envs_full)
        if env_cfg is None:
            env_cfg = _default_env_cfg(kind)
        first = env_cfg.px4.instance if first_px4_instance is None else first_px4_instance
        if flight_stack == "px4":  # a bad instance range is refused before looking for PX4
            check_px4_instances(num_envs_full, first, count_name="num_envs_full")
    # Resolved once ("auto" -> px4 or cascade): what is recorded is what flies.
    stack, stack_label = resolve_train_flight_stack(kind, flight_stack, env_cfg)
    if stack == "px4":
        check_px4_instances(num_envs_full, first, count_name="num_envs_full")
    px4_instances = list(range(int(first), int(first) + int(num_envs_full))) if stack == "px4" else []

    old_threads = torch.get_num_threads()
    if torch_threads is not None:
        torch.set_num_threads(int(torch_threads))
    try:
        start = time.perf_counter()
        venv = make_train_env(
            kind,
            seed=seed,
            env_cfg=env_cfg,
            num_drones=num_drones,
            num_envs_full=num_envs_full,
            flight_stack=None if kind == "direct" else stack,
            first_px4_instance=first,
        )
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
        flight_stack=stack,
        flight_stack_label=stack_label,
        px4_instances=px4_instances,
    )
    model.flyby_training = {  # saved inside the model zip with the rest of the model's attributes
        "kind": kind,
        "flight_stack": stack,
        "flight_stack_label": stack_label,
        "px4_instances": px4_instances,
    }
    logger.info(
        "PPO on %s (%s): %d env steps, %d episodes in %.1f s (budget %.1f s)",
        kind,
        stack_label,
        result.env_steps,
        result.episodes,
        wall_s,
        budget_s,
    )
    if save_path is not None:
        save_model(result, save_path)
    return result


def _default_env_cfg(kind: str):
    if kind == "direct":
        from flyby.config.training import load_training_cfg

        return load_training_cfg().multi_drone_env
    from flyby.config.evaluation import load_evaluation_cfg

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

    Both files are written atomically (:mod:`flyby.utils.atomic`): the model is serialised in
    memory, written to a temporary file in the same folder and renamed onto ``path``, so a full
    disk or a kill never leaves a truncated zip; a model already at ``path`` stays intact until
    the new one is complete.

    Returns:
        the zip's path (``.zip`` appended when ``path`` has another suffix).

    Raises:
        OutputError: the folder cannot be created or a file cannot be written; names the path.
    """
    import io

    from flyby.utils.atomic import atomic_write_bytes, atomic_write_text

    path = Path(path)
    if path.suffix != ".zip":
        path = path.with_name(path.name + ".zip")
    buf = io.BytesIO()
    result.model.save(buf)
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_text(path.with_suffix(".json"), json.dumps(result.summary(), indent=2))
    return path
