"""Train PPO or SAC on ``flyby/MultiDroneISR-v0``: normalised, logged, checkpointed, resumable.

What a run folder holds (``out_dir``, written by :func:`train`)::

    train_config.json        the trainer and env configs and their fingerprint (a rerun must match)
    model.zip                the final SB3 model (model.save)
    vecnormalize.pkl         its observation normaliser (SB3 VecNormalize, pickled); always beside the model
    model.json               summary: algorithm, spaces, normaliser, env steps, timings, flight stack
    progress.csv             one row per rollout: env steps, wall s, steps/s, return, length, targets found,
                             Episode_Reward/<term> (IsaacLab's: episode sum / episode_length_s)
                             and Episode_Return/<term> (the episode sum) for every reward term
    eval.csv                 one row per evaluation callback (deterministic policy, separate env)
    tb/                      TensorBoard event files (the same figures)
    checkpoints/             ckpt_<steps>.zip + .vecnormalize.pkl + .json: resume points

Every file is written atomically (:mod:`flyby.utils.atomic`), so a kill at any moment leaves
either the previous file or the new one. An interrupted run (Ctrl-C, SIGTERM) saves a checkpoint
before it stops; ``train(..., resume=True)`` continues from the newest checkpoint that loads,
with its normaliser statistics, step count and the wall clock already spent.

Timing: the env's share and the learner's share of the wall clock are measured per rollout
(collection between SB3's rollout start and end callbacks; the rest is the learner) and
reported in ``model.json`` as ``env_s`` and ``learner_s``.

Example::

    from flyby.training.trainer import train
    from flyby.config.training import load_training_cfg

    cfg = load_training_cfg()
    run = train(cfg.training, "output/models/ppo", env_cfg=cfg.multi_drone_env)
    print(run.env_steps, run.steps_per_s, run.learner_share)

Needs the ``train`` extra (stable-baselines3, torch; tensorboard for the event files).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import pickle
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from flyby.config import cfg_hash, check, to_dict
from flyby.config.training import Algorithm, TrainerCfg, reward_scale_problems
from flyby.errors import ConfigError, TrainingError
from flyby.mdp.rewards import REWARD_TERMS
from flyby.utils.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text, check_writable

logger = logging.getLogger(__name__)

ENV_ID = "flyby/MultiDroneISR-v0"


def progress_columns(reward_terms) -> tuple[str, ...]:
    """Columns of ``progress.csv`` for an env with these reward term names (``rewards.terms``).

    Per term: ``Episode_Reward/<k>`` (IsaacLab's meaning: the mean episode sum of the weighted term
    divided by ``episode_length_s``) and ``Episode_Return/<k>`` (the mean episode sum itself).
    """
    return (
        "env_steps",
        "wall_s",
        "fps",
        "ep_rew_mean",
        "ep_len_mean",
        "targets_found_mean",
        *(f"Episode_Reward/{k}" for k in reward_terms),
        *(f"Episode_Return/{k}" for k in reward_terms),
    )


PROGRESS_COLUMNS = progress_columns(REWARD_TERMS)  # the columns with the built-in reward terms
EVAL_COLUMNS = (
    "env_steps",
    "wall_s",
    "mean_return",
    "std_return",
    "targets_found_mean",
    "crashes",
    "geofence_exits",
)
EVAL_SEED_OFFSET = 10_000  # the evaluation callback's env seed = training seed + this


@dataclass
class TrainRun:
    """What :func:`train` returns.

    Attributes:
        out_dir: the run folder.
        model_path, vecnormalize_path: the final model zip and its normaliser.
        env_steps: agent transitions trained on (all drones, all sessions of a resumed run).
        wall_s: s of wall clock over all sessions (setup included).
        env_s, learner_s: s spent collecting rollouts (env + policy inference) and in gradient updates.
        stopped_by: ``"total_steps"``, ``"budget_s"`` or ``"already_done"``.
        resumed_from: checkpoint step count this session started from (None: fresh).
        summary: the ``model.json`` content.
    """

    out_dir: Path
    model_path: Path
    vecnormalize_path: Path | None
    env_steps: int
    wall_s: float
    env_s: float
    learner_s: float
    stopped_by: str
    resumed_from: int | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def steps_per_s(self) -> float:
        """End-to-end training throughput (env + learner), agent transitions per s."""
        return self.env_steps / self.wall_s if self.wall_s > 0 else math.nan

    @property
    def learner_share(self) -> float:
        """Fraction of the training time (env + learner) spent in the learner."""
        total = self.env_s + self.learner_s
        return self.learner_s / total if total > 0 else math.nan


def _require():
    from flyby.training.train import require_sb3

    return require_sb3()


def _space_dict(space) -> dict[str, Any]:
    return {
        "type": type(space).__name__,
        "shape": list(space.shape),
        "low": float(np.min(space.low)),
        "high": float(np.max(space.high)),
        "dtype": str(space.dtype),
    }


def _default_env_cfg():
    from flyby.config.training import load_training_cfg

    return training_env_cfg(load_training_cfg())


def training_env_cfg(training_cfg, evaluation_cfg=None):
    """The ``MultiDroneEnvCfg`` a :class:`~flyby.config.training.TrainingCfg` trains on.

    With ``training.match_eval_env`` (the default), the multi-drone env takes the full-fidelity
    env's perception camera (resolution preset, field of view, mount pitch) and control period
    (``step_dt``) from ``evaluation_config.yaml`` (or ``evaluation_cfg``): the policy then sees
    detections and acts at the rate it will be evaluated with. Measured on the packaged configs:
    the scripted patrol finds 33.8 of 40 targets per 60 s episode with the evaluation camera
    (128 x 128) and 23.2 with the multi-drone tile camera (80 x 80, whose 2-pixel detection floor
    drops the small targets), so a policy trained on the tiles would be judged on another task.

    ``training.reward_scales`` overrides reward term weights for training only (shaping: the packaged
    config pays 2 per new target instead of 1, so the search is for targets first and ground second;
    evaluation always scores the shared reward).

    ``training.collision_margin_m`` grows every building by that much more for collisions in
    training only (``terminations.drone_radius_m``), so the policy keeps clear of roofs and walls by
    a margin the direct model's differences from PX4 cannot eat. Measured: a policy trained without
    it skimmed a 34.1 m roof at 33.7 m and crashed in 1 of 8 evaluation episodes under PX4 SITL and
    the cascade (seed 1004), where the direct model, accelerating more slowly while climbing, had
    cleared it.
    """
    from dataclasses import replace as _replace

    env = training_cfg.multi_drone_env
    margin = training_cfg.training.collision_margin_m
    reward_scales = training_cfg.training.reward_scales
    if reward_scales:
        problems = reward_scale_problems(reward_scales, env.rewards.terms)
        if problems:
            raise ConfigError(problems)
        terms = {
            k: _replace(t, weight=float(reward_scales[k])) if k in reward_scales else t
            for k, t in env.rewards.terms.items()
        }
        env = _replace(env, rewards=_replace(env.rewards, terms=terms))
    if margin:
        terms = env.terminations
        env = _replace(env, terminations=_replace(terms, drone_radius_m=terms.drone_radius_m + margin))
    if not training_cfg.training.match_eval_env:
        return check(env)
    if evaluation_cfg is None:
        from flyby.config.evaluation import load_evaluation_cfg

        evaluation_cfg = load_evaluation_cfg()
    px4 = evaluation_cfg.px4_env
    return check(_replace(env, camera=px4.camera, step_dt=px4.step_dt))


def make_vec_env(
    cfg: TrainerCfg, env_cfg, *, seed: int, num_drones: int | None = None, training: bool = True
):
    """``MultiDroneISR-v0`` as an SB3 ``VecEnv``: adapter -> ``VecMonitor`` -> ``VecNormalize``."""
    _require()
    from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

    from flyby.envs.multi_drone_env import MultiDroneISREnv
    from flyby.envs.sb3_vec_env import SB3VecEnvAdapter

    venv = VecMonitor(
        SB3VecEnvAdapter(MultiDroneISREnv(num_drones=num_drones or cfg.num_drones, cfg=env_cfg))
    )
    venv.seed(seed)
    if training and tuple(cfg.action_gain_range) != (1.0, 1.0):
        venv = ActionGainRandomization(venv, cfg.action_gain_range, seed=seed)
    return VecNormalize(
        venv,
        training=training,
        norm_obs=cfg.normalize_obs,
        norm_reward=cfg.normalize_reward and training,
        clip_obs=cfg.clip_obs,
        gamma=cfg.gamma,
    )


def _action_gain_wrapper():
    from stable_baselines3.common.vec_env import VecEnvWrapper

    class ActionGainRandomization(VecEnvWrapper):
        """Domain randomization of the velocity response: each env's horizontal velocity command is
        multiplied by a gain drawn from ``gain_range`` at its episode start (training only).

        The direct model and the full-fidelity flight stacks differ most in how fast the drone
        gets up to the commanded speed from a hover; a policy trained on one response keeps no
        margin for another. The gain makes it meet a spread of responses. Actions stay in [-1, 1].
        """

        def __init__(self, venv, gain_range: tuple[float, float], seed: int = 0) -> None:
            super().__init__(venv)
            self.lo, self.hi = float(gain_range[0]), float(gain_range[1])
            self.rng = np.random.default_rng([int(seed), 0x6A1])
            self.gain = self.rng.uniform(self.lo, self.hi, self.num_envs)

        def reset(self):
            self.gain = self.rng.uniform(self.lo, self.hi, self.num_envs)
            return self.venv.reset()

        def step_async(self, actions: np.ndarray) -> None:
            scaled = np.array(actions, dtype=np.float32, copy=True)
            scaled[:, :2] = np.clip(scaled[:, :2] * self.gain[:, None], -1.0, 1.0)
            self.venv.step_async(scaled)

        def step_wait(self):
            obs, rewards, dones, infos = self.venv.step_wait()
            if dones.any():
                self.gain[dones] = self.rng.uniform(self.lo, self.hi, int(dones.sum()))
            return obs, rewards, dones, infos

    return ActionGainRandomization


# A function named like the class it builds on demand (SB3 is imported lazily).
def ActionGainRandomization(venv, gain_range, seed: int = 0):
    """:class:`VecEnvWrapper` randomizing each drone's horizontal velocity gain per episode (see the
    class)."""
    return _action_gain_wrapper()(venv, gain_range, seed)


def _algo_class(algorithm: Algorithm):
    from stable_baselines3 import PPO, SAC

    return PPO if algorithm is Algorithm.PPO else SAC


def evaluate_in_training(model, vecnorm, env_cfg, *, episodes: int, seed: int) -> dict[str, float]:
    """One deterministic episode on each of ``episodes`` drones of a separate ``MultiDroneISR-v0``.

    Observations are normalised with the training statistics (frozen). Returns mean/std return,
    mean targets found, and how many drones crashed or left the geofence.
    """
    from flyby.envs.multi_drone_env import MultiDroneISREnv

    env = MultiDroneISREnv(num_drones=episodes, cfg=env_cfg)
    try:
        task = env.task
        obs, _ = env.reset(seed=seed)
        ret = np.zeros(episodes)
        alive = np.ones(episodes, dtype=bool)
        found = np.zeros(episodes)
        crashed = np.zeros(episodes, dtype=bool)
        outside = np.zeros(episodes, dtype=bool)
        for _ in range(task.max_episode_length):
            action, _ = model.predict(
                vecnorm.normalize_obs(obs) if vecnorm is not None else obs, deterministic=True
            )
            res = task.step(np.asarray(action), autoreset=False)  # no autoreset: each drone flies one episode
            obs = res.obs
            ret += np.where(alive, res.reward, 0.0)
            ended = (res.terminated | res.truncated) & alive
            found[ended] = task.seen.sum(axis=1)[ended]
            crashed |= ended & task._crashed
            outside |= ended & task._outside
            alive &= ~ended
            if not alive.any():
                break
        found[alive] = task.seen.sum(axis=1)[alive]
    finally:
        env.close()
    return {
        "mean_return": float(ret.mean()),
        "std_return": float(ret.std()),
        "targets_found_mean": float(found.mean()),
        "crashes": int(crashed.sum()),
        "geofence_exits": int(outside.sum()),
    }


class _CsvLog:
    """Append rows with a fixed header; the file is rewritten atomically each time (small files)."""

    def __init__(self, path: Path, columns: tuple[str, ...]) -> None:
        self.path, self.columns = path, columns
        self.rows: list[dict[str, Any]] = []
        if path.exists():
            with path.open(newline="") as fh:
                self.rows = list(csv.DictReader(fh))

    def truncate_after(self, env_steps: int) -> None:
        """Drop rows past a resume point (they belong to work the checkpoint does not hold)."""
        self.rows = [r for r in self.rows if int(float(r["env_steps"])) <= env_steps]

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(
            {
                k: (
                    ""
                    if row.get(k) is None or (isinstance(row.get(k), float) and math.isnan(row[k]))
                    else row[k]
                )
                for k in self.columns
            }
        )
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())


def _make_callback(run: _RunState):
    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    def use_threads(count: int) -> None:
        # SAC calls the rollout hooks every env step: set only on a change.
        if torch.get_num_threads() != count:
            torch.set_num_threads(count)

    class FlybyTrainingCallback(BaseCallback):
        """Budget, timing, per-term logging, CSV/TensorBoard rows, evaluation and checkpoints."""

        def _on_training_start(self) -> None:
            run.session_start = time.perf_counter()
            run.t_mark = run.session_start
            if run.progress:
                from tqdm.auto import tqdm

                total = run.cfg.total_steps
                run.bar = tqdm(
                    total=total,
                    initial=min(self.num_timesteps, total),
                    unit="step",
                    unit_scale=True,
                    desc=f"train {run.cfg.algorithm.value}",
                    mininterval=1.0,
                    dynamic_ncols=True,
                )

        def _on_rollout_start(self) -> None:
            use_threads(run.cfg.torch_threads)  # collection: env + inference on small batches
            now = time.perf_counter()
            if run.rollout_end is not None:
                run.learner_s += now - run.rollout_end
            run.t_mark = now

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", ()):
                log = info.get("log")
                if log:
                    run.episode_logs.append(log)
            if run.cfg.budget_s is not None and run.wall_s() >= run.cfg.budget_s:
                run.stopped_by = "budget_s"
                return False
            return True

        def _on_rollout_end(self) -> None:
            now = time.perf_counter()
            run.env_s += now - run.t_mark
            run.rollout_end = now
            steps = int(self.num_timesteps)
            run.rollout_steps = steps
            buf = self.model.ep_info_buffer
            row: dict[str, Any] = {
                "env_steps": steps,
                "wall_s": round(run.wall_s(), 3),
                "fps": round(steps / max(run.wall_s(), 1e-9), 1),
                "ep_rew_mean": float(np.mean([e["r"] for e in buf])) if buf else None,
                "ep_len_mean": float(np.mean([e["l"] for e in buf])) if buf else None,
            }
            if run.episode_logs:
                logs = run.episode_logs
                row["targets_found_mean"] = float(
                    np.mean([lg.get("Episode/targets_seen", np.nan) for lg in logs])
                )
                for prefix in ("Episode_Reward/", "Episode_Return/"):
                    for k in run.env_cfg.rewards.terms:
                        row[prefix + k] = float(np.mean([lg.get(prefix + k, 0.0) for lg in logs]))
                run.episode_logs = []
            for key, value in row.items():
                if key not in ("env_steps",) and value is not None:
                    self.logger.record(key if "/" in key else f"rollout/{key}", value)
            run.progress_csv.append(row)
            if steps >= run.next_eval:
                run.next_eval = steps + run.cfg.eval_freq_steps
                t0 = time.perf_counter()
                ev = evaluate_in_training(
                    self.model,
                    run.vecnorm,
                    run.env_cfg,
                    episodes=run.cfg.eval_episodes,
                    seed=run.cfg.seed + EVAL_SEED_OFFSET,
                )
                run.eval_s += time.perf_counter() - t0
                for key, value in ev.items():
                    self.logger.record(f"eval/{key}", value)
                run.eval_csv.append({"env_steps": steps, "wall_s": round(run.wall_s(), 3), **ev})
                run.last_eval = ev
            if steps >= run.next_checkpoint:
                run.next_checkpoint = steps + run.cfg.checkpoint_freq_steps
                run.save_checkpoint(self.model)
            self.logger.dump(steps)
            # evaluation and checkpoints count as neither env nor learner
            run.rollout_end = time.perf_counter()
            if run.bar is not None:
                ret = row["ep_rew_mean"]
                run.bar.set_postfix_str(f"return {ret:+.1f}" if ret is not None else "", refresh=False)
                run.bar.update(min(steps, run.bar.total) - run.bar.n)
            use_threads(run.cfg.update_torch_threads or run.cfg.torch_threads)  # the update next

        def _on_training_end(self) -> None:
            if run.bar is not None:
                run.bar.close()
                run.bar = None

    return FlybyTrainingCallback()


@dataclass
class _RunState:
    """Mutable state shared by :func:`train` and its callback."""

    cfg: TrainerCfg
    env_cfg: Any
    out_dir: Path
    vecnorm: Any
    progress: bool
    wall_before_s: float = 0.0  # wall clock of earlier sessions (resume)
    env_before_s: float = 0.0
    learner_before_s: float = 0.0
    session_start: float = 0.0
    t_mark: float = 0.0
    rollout_end: float | None = None
    env_s: float = 0.0
    learner_s: float = 0.0
    eval_s: float = 0.0
    stopped_by: str = "total_steps"
    next_eval: int = 0
    next_checkpoint: int = 0
    rollout_steps: int | None = None  # env steps at the end of the last complete rollout
    episode_logs: list = field(default_factory=list)
    last_eval: dict | None = None
    bar: Any = None
    progress_csv: Any = None
    eval_csv: Any = None

    def wall_s(self) -> float:
        return self.wall_before_s + (time.perf_counter() - self.session_start if self.session_start else 0.0)

    def timing(self) -> dict[str, float]:
        return {
            "wall_s": round(self.wall_s(), 3),
            "env_s": round(self.env_before_s + self.env_s, 3),
            "learner_s": round(self.learner_before_s + self.learner_s, 3),
            "eval_s": round(self.eval_s, 3),
        }

    def save_checkpoint(self, model) -> Path:
        """ckpt_<steps>.zip + .vecnormalize.pkl + .json, each atomic; the json is written last (it marks
        the checkpoint complete). Older checkpoints beyond ``keep_checkpoints`` are removed."""
        folder = self.out_dir / "checkpoints"
        steps = int(model.num_timesteps)
        stem = folder / f"ckpt_{steps:012d}"
        _save_model_atomic(model, stem.with_suffix(".zip"))
        atomic_write_bytes(stem.with_suffix(".vecnormalize.pkl"), pickle.dumps(self.vecnorm))
        atomic_write_json(stem.with_suffix(".json"), {"env_steps": steps, **self.timing()})
        complete = sorted(folder.glob("ckpt_*.json"))
        for old in complete[: -self.cfg.keep_checkpoints]:
            for suffix in (".zip", ".vecnormalize.pkl", ".json"):
                old.with_suffix(suffix).unlink(missing_ok=True)
        return stem


def _save_model_atomic(model, path: Path) -> Path:
    buf = io.BytesIO()
    model.save(buf)
    return atomic_write_bytes(path, buf.getvalue())


def _checkpoints(out_dir: Path) -> list[Path]:
    """Complete checkpoints (their .json exists), newest first."""
    return sorted((out_dir / "checkpoints").glob("ckpt_*.json"), reverse=True)


def _config_record(cfg: TrainerCfg, env_cfg) -> dict[str, Any]:
    return {
        "trainer": to_dict(cfg),
        "env": to_dict(env_cfg),
        "hash": cfg_hash(_resume_invariant(cfg), env_cfg),
    }


def _resume_invariant(cfg: TrainerCfg) -> TrainerCfg:
    """The config without the fields a resumed run may change (how long to train, how often to log)."""
    return replace(
        cfg, total_steps=1, budget_s=None, eval_freq_steps=1, checkpoint_freq_steps=1, keep_checkpoints=1
    )


def _check_run_folder(out_dir: Path, record: dict[str, Any], resume: bool) -> None:
    cfg_path = out_dir / "train_config.json"
    if (out_dir / "model.zip").exists() and not resume:
        raise TrainingError(
            f"{out_dir / 'model.zip'} already exists; it is kept. Pass --resume to continue that run "
            "(or to reuse it when it is complete), or choose another output folder"
        )
    if not cfg_path.exists():
        if resume and _checkpoints(out_dir):
            raise TrainingError(
                f"{out_dir} has checkpoints but no train_config.json; cannot tell what they were "
                "trained with. Choose another output folder"
            )
        return
    try:
        old = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TrainingError(f"{cfg_path} is unreadable ({exc}); choose another output folder") from exc
    if old.get("hash") != record["hash"]:
        diffs = _diff_keys(old.get("trainer", {}), record["trainer"], "training") + _diff_keys(
            old.get("env", {}), record["env"], "multi_drone_env"
        )
        diffs = [
            d
            for d in diffs
            if d.split(":")[0].rsplit(".", 1)[-1]
            not in ("total_steps", "budget_s", "eval_freq_steps", "checkpoint_freq_steps", "keep_checkpoints")
        ]
        raise TrainingError(
            f"{out_dir} holds a run trained with another config "
            f"({'; '.join(diffs[:6]) or 'fingerprint differs'}); "
            "it is never mixed with this one. Use another output folder, or the original config"
        )
    if not resume and (_checkpoints(out_dir) or (out_dir / "progress.csv").exists()):
        raise TrainingError(
            f"{out_dir} holds an unfinished run with this config; pass --resume to continue it "
            "from its newest checkpoint, or choose another output folder"
        )


def _diff_keys(old: Any, new: Any, path: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += _diff_keys(old.get(k), new.get(k), f"{path}.{k}")
        return out
    return [] if old == new else [f"{path}: {old!r} -> {new!r}"]


def train(
    cfg: TrainerCfg, out_dir: str | Path, *, env_cfg=None, resume: bool = False, progress: bool = True
) -> TrainRun:
    """Train ``cfg.algorithm`` on ``MultiDroneISR-v0`` until ``total_steps`` or ``budget_s`` into ``out_dir``.

    Args:
        cfg: the ``training:`` section (:class:`TrainerCfg`).
        out_dir: the run folder (layout in the module docstring); checked writable before anything starts.
        env_cfg: ``MultiDroneEnvCfg`` (default: the packaged ``training_config.yaml``'s ``multi_drone_env``).
        resume: continue from the newest loadable checkpoint in ``out_dir`` (same config required); with a
            complete model already there, return it without training.
        progress: tqdm bar over env steps.

    Returns:
        :class:`TrainRun`.

    Raises:
        ConfigError: ``cfg`` is invalid (every problem by dotted path).
        OutputError: ``out_dir`` is not writable (checked first) or a save fails (old files intact).
        TrainingError: a model already exists there and ``resume`` is False; the folder holds a run with
            another config; no checkpoint loads.
        DependencyNotInstalled: stable-baselines3/torch are missing.
    """
    cfg = check(cfg)
    _, torch = _require()
    from stable_baselines3.common.logger import configure

    from flyby.config.envs import MultiDroneEnvCfg

    env_cfg = check(env_cfg) if env_cfg is not None else _default_env_cfg()
    if not isinstance(env_cfg, MultiDroneEnvCfg):
        raise TrainingError(f"env_cfg must be a MultiDroneEnvCfg, got {type(env_cfg).__name__}")
    out_dir = check_writable(out_dir)
    record = _config_record(cfg, env_cfg)
    _check_run_folder(out_dir, record, resume)
    if resume and (out_dir / "model.json").exists() and (out_dir / "model.zip").exists():
        summary = json.loads((out_dir / "model.json").read_text())
        if summary.get("env_steps", 0) >= cfg.total_steps or summary.get("stopped_by") == "budget_s":
            logger.info(
                "%s is complete (%d env steps); nothing to train", out_dir, summary.get("env_steps", 0)
            )
            return _run_from_summary(out_dir, summary, "already_done")
    atomic_write_json(out_dir / "train_config.json", record)

    algo_cls = _algo_class(cfg.algorithm)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.torch_threads)
    try:
        vecnorm = make_vec_env(cfg, env_cfg, seed=cfg.seed)
        state = _RunState(cfg=cfg, env_cfg=env_cfg, out_dir=out_dir, vecnorm=vecnorm, progress=progress)
        state.progress_csv = _CsvLog(out_dir / "progress.csv", progress_columns(env_cfg.rewards.terms))
        state.eval_csv = _CsvLog(out_dir / "eval.csv", EVAL_COLUMNS)
        model, resumed_from = None, None
        if resume:
            model, resumed_from = _load_checkpoint(state, algo_cls, vecnorm)
        if model is None:
            state.progress_csv.truncate_after(0)
            state.eval_csv.truncate_after(0)
            model = algo_cls("MlpPolicy", vecnorm, seed=cfg.seed, device="cpu", verbose=0, **cfg.sb3_kwargs())
        done = int(model.num_timesteps)
        state.next_eval = done + cfg.eval_freq_steps
        state.next_checkpoint = done + cfg.checkpoint_freq_steps
        model.set_logger(configure(str(out_dir / "tb"), ["tensorboard"]))
        remaining = cfg.total_steps - done
        try:
            if remaining > 0 and (cfg.budget_s is None or state.wall_before_s < cfg.budget_s):
                model.learn(
                    total_timesteps=remaining,
                    callback=_make_callback(state),
                    reset_num_timesteps=False,
                    progress_bar=False,
                )
            elif remaining <= 0:
                state.stopped_by = "total_steps"
            else:
                state.stopped_by = "budget_s"
        except KeyboardInterrupt:
            if state.bar is not None:
                state.bar.close()
            if cfg.algorithm is Algorithm.PPO and state.rollout_steps is not None:
                # PPO's weights are those of the last complete rollout: the partial one was never trained
                # on, so the checkpoint counts only the steps its weights learned from.
                model.num_timesteps = state.rollout_steps
            stem = state.save_checkpoint(model)
            logger.warning(
                "interrupted at %d env steps; checkpoint %s saved: rerun with --resume to continue",
                model.num_timesteps,
                stem.name,
            )
            raise
        finally:
            vecnorm.close()
        summary = _summary(cfg, model, vecnorm, state, resumed_from)
        _save_model_atomic(model, out_dir / "model.zip")
        atomic_write_bytes(out_dir / "vecnormalize.pkl", pickle.dumps(vecnorm))
        atomic_write_json(out_dir / "model.json", summary)  # last: marks the model complete
    finally:
        torch.set_num_threads(old_threads)
    run = _run_from_summary(out_dir, summary, state.stopped_by)
    run.resumed_from = resumed_from
    logger.info(
        "%s: %d env steps in %.1f s (%.0f steps/s; learner %.0f %%)",
        cfg.algorithm.value,
        run.env_steps,
        run.wall_s,
        run.steps_per_s,
        100 * run.learner_share,
    )
    return run


def _load_checkpoint(state: _RunState, algo_cls, vecnorm):
    """Newest checkpoint that loads (a corrupt one is skipped with a warning); (None, None) when none."""
    from stable_baselines3.common.vec_env import VecNormalize

    for meta_path in _checkpoints(state.out_dir):
        try:
            meta = json.loads(meta_path.read_text())
            stats = VecNormalize.load(str(meta_path.with_suffix(".vecnormalize.pkl")), vecnorm.venv)
            vecnorm.obs_rms, vecnorm.ret_rms = stats.obs_rms, stats.ret_rms
            model = algo_cls.load(meta_path.with_suffix(".zip"), env=vecnorm, device="cpu")
        except Exception as exc:  # any unreadable checkpoint is skipped the same way
            logger.warning("checkpoint %s does not load (%s); trying an older one", meta_path.stem, exc)
            continue
        steps = int(meta["env_steps"])
        state.wall_before_s = float(meta.get("wall_s", 0.0))
        state.env_before_s = float(meta.get("env_s", 0.0))
        state.learner_before_s = float(meta.get("learner_s", 0.0))
        state.progress_csv.truncate_after(steps)
        state.eval_csv.truncate_after(steps)
        model.num_timesteps = steps
        logger.info(
            "resuming from %s (%d env steps, %.0f s spent)", meta_path.stem, steps, state.wall_before_s
        )
        return model, steps
    if _checkpoints(state.out_dir):
        raise TrainingError(
            f"no checkpoint in {state.out_dir / 'checkpoints'} loads; start a fresh run in another "
            "output folder"
        )
    return None, None


def _summary(cfg: TrainerCfg, model, vecnorm, state: _RunState, resumed_from: int | None) -> dict[str, Any]:
    import stable_baselines3
    import torch

    from flyby.training.train import DIRECT_LABEL

    timing = state.timing()
    steps = int(model.num_timesteps)
    return {
        "algorithm": cfg.algorithm.value,
        "env_id": ENV_ID,
        "num_drones": cfg.num_drones,
        "seed": cfg.seed,
        "observation_space": _space_dict(vecnorm.observation_space),
        "action_space": _space_dict(vecnorm.action_space),
        "normalize": {"obs": cfg.normalize_obs, "clip_obs": cfg.clip_obs, "epsilon": float(vecnorm.epsilon)},
        "flight_stack": "direct",
        "flight_stack_label": DIRECT_LABEL,
        # what the policy's outputs mean (flyby.mdp.actions.ActionCfg); load_policy refuses another scale
        "action_scale": state.env_cfg.actions.as_dict(),
        "env_steps": steps,
        "total_steps": cfg.total_steps,
        "budget_s": cfg.budget_s,
        "stopped_by": state.stopped_by,
        "resumed_from": resumed_from,
        **timing,
        "steps_per_s": round(steps / timing["wall_s"], 1) if timing["wall_s"] > 0 else None,
        "learner_share": (
            round(timing["learner_s"] / (timing["env_s"] + timing["learner_s"]), 4)
            if timing["env_s"] + timing["learner_s"] > 0
            else None
        ),
        "last_eval": state.last_eval,
        "config_hash": _config_record(cfg, state.env_cfg)["hash"],
        "versions": {"stable_baselines3": stable_baselines3.__version__, "torch": torch.__version__},
    }


def _run_from_summary(out_dir: Path, summary: dict[str, Any], stopped_by: str) -> TrainRun:
    pkl = out_dir / "vecnormalize.pkl"
    return TrainRun(
        out_dir=out_dir,
        model_path=out_dir / "model.zip",
        vecnormalize_path=pkl if pkl.exists() else None,
        env_steps=int(summary.get("env_steps", 0)),
        wall_s=float(summary.get("wall_s", 0.0)),
        env_s=float(summary.get("env_s", 0.0)),
        learner_s=float(summary.get("learner_s", 0.0)),
        stopped_by=stopped_by,
        resumed_from=summary.get("resumed_from"),
        summary=summary,
    )
