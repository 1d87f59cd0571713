"""Evaluation in the full-fidelity env (``flyby/PX4ISR-v0``) over fixed seeds, and the transfer criterion.

Every policy, learned or not, is scored the same way: one episode per seed in
``PX4ISR-v0`` (built-in cascade flight stack unless told otherwise), episode
``k`` reset with ``seed=seeds[k]`` so every policy meets the same spawns, the
same target motion and the same noise. Returns come with a Student-t 95 %
confidence interval of the mean. Every result names the flight stack that
produced it (:attr:`EvalResult.flight_stack_label`).

Parallel evaluation (``px4_instances=N``): the episodes are spread over N
``PX4ISR-v0`` copies in worker processes (:mod:`flyby.training.parallel`), copy
``j`` on PX4 instance ``first + j`` (TCP 4560 + i, UDP 14540 + i). Episode ``k``
still runs seed ``seeds[k]`` from a fresh reset, with its own copy of the policy,
so the results are those of the serial evaluation, in seed order, whatever N.

Reference policies: :class:`RandomPolicy` (uniform actions in the action box,
seeded per episode) and :class:`ZeroPolicy` (zero velocity and yaw rate: hover
in place). A policy that learned nothing scores about as well as the better of
the two; see :func:`transfer_criterion`.

Evaluation with baselines (:func:`evaluate_policy`, ``flyby evaluate``): a trained policy
bundle (loaded with its normaliser by :func:`flyby.training.policy_io.load_policy`) beside the
scripted baselines ``zero``, ``random`` and ``patrol`` on the same fixed seeds
(``evaluation.seeds`` of ``evaluation_config.yaml``, from 1000) and the same flight stack,
summarised as ``metrics.json`` (schema ``"flyby.evaluation/1"``: returns with 95 % intervals,
success rate, targets found, coverage, crashes, geofence exits, episode lengths, detection
precision/recall, flight stack and PX4 version) and ``tracks.json`` (top-down tracks); see
``docs/evaluation_metrics.md``. An episode *succeeds* when it reaches the time limit with no crash
and no geofence exit and finds at least ``evaluation.success_min_targets`` targets.

Example::

    from flyby.training.evaluate import evaluate_policy, evaluate_policy_full_fidelity

    result = evaluate_policy_full_fidelity(PPO.load("output/models/direct.zip"), seeds=range(10))
    print(result.describe())
    metrics = evaluate_policy("output/runs/demo/training/model.zip", num_episodes=10,
                              out_dir="output/runs/demo/evaluation")
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from flyby.errors import ConfigError
from flyby.mdp.actions import ACTION_DIM

logger = logging.getLogger(__name__)

TRANSFER_FRACTION = 0.9  # the seed plan: the direct-trained policy reaches >= 90 % of the baseline


class RandomPolicy:
    """Uniform random actions in [-1, 1]^4, reseeded at every episode (``reset(seed)``) so runs repeat."""

    label = "random"

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng([int(seed), 0x5EED])

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, ACTION_DIM).astype(np.float32)


class ZeroPolicy:
    """Zero velocity and yaw rate: hover where the episode starts."""

    label = "zero-action"

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return np.zeros(ACTION_DIM, dtype=np.float32)


def policy_payload(policy) -> tuple[str, Any]:
    """``policy`` packed for worker processes: ``("sb3", (class, zip bytes))`` for an SB3 model
    (saved with ``model.save``, so no training env travels with it), else ``("pickle", bytes)``
    (cloudpickle: closures, lambdas and classes defined in scripts travel by value).

    A :class:`~flyby.training.policy_io.LoadedPolicy` travels as ``("loaded", bytes of its model zip,
    normaliser and summary)`` and is rebuilt with its normaliser in the worker.

    Raises:
        TypeError: the policy cannot be pickled (the message says to use ``px4_instances=1``).
    """
    from flyby.training.policy_io import LoadedPolicy

    if isinstance(policy, LoadedPolicy):
        return "loaded", policy.to_bytes()
    if hasattr(policy, "predict") and hasattr(policy, "save") and hasattr(type(policy), "load"):
        import io

        buf = io.BytesIO()
        policy.save(buf)
        return "sb3", (type(policy), buf.getvalue())
    import cloudpickle

    try:
        return "pickle", cloudpickle.dumps(policy)
    except Exception as exc:  # any pickling failure means the same thing here
        raise TypeError(
            f"policy {type(policy).__name__} cannot be sent to the parallel env workers ({exc}); "
            "evaluate it with px4_instances=1 (in this process) or make it picklable"
        ) from exc


def load_policy_payload(payload: tuple[str, Any]):
    """Inverse of :func:`policy_payload` (in a worker; SB3 models load on cpu, torch with 1 thread)."""
    kind, data = payload
    if kind == "loaded":
        import torch

        from flyby.training.policy_io import LoadedPolicy

        torch.set_num_threads(1)
        return LoadedPolicy.from_bytes(*data)
    if kind == "sb3":
        import io

        import torch

        torch.set_num_threads(1)
        cls, blob = data
        return cls.load(io.BytesIO(blob), device="cpu")
    import cloudpickle

    return cloudpickle.loads(data)


def _worker_install_policy(env, state: dict, payload) -> None:
    """Worker side of parallel evaluation: unpack the policy once."""
    state["policy"] = load_policy_payload(payload)


def _worker_run_episode(
    env, state: dict, seed: int, deterministic: bool, track_interval_s: float | None = None
) -> EpisodeStats:
    """Worker side of parallel evaluation: one episode of the installed policy."""
    return run_episode(
        env, state["policy"], seed, deterministic=deterministic, track_interval_s=track_interval_s
    )


class EpisodeStats(NamedTuple):
    """One evaluation episode."""

    seed: int  # the reset seed
    ret: float  # undiscounted return
    steps: int  # control steps
    targets_seen: int  # distinct targets seen in the episode
    coverage: float  # fraction of the area's ground cells covered, [0, 1]
    crashed: bool  # ended by a crash (building or ground)
    geofence: bool  # ended by leaving the geofence
    # With run_episode(track_interval_s=...) only (empty otherwise), metres, world ENU:
    track_xy: tuple[tuple[float, float], ...] = ()  # drone xy at reset, every track interval and at the end
    found_xy: tuple[tuple[float, float], ...] = ()  # where each target found was when first seen, in order

    def summary(self) -> dict[str, Any]:
        """The scalar fields (no track), as plain JSON values."""
        return {k: v for k, v in self._asdict().items() if k not in ("track_xy", "found_xy")}


@dataclass
class EvalResult:
    """Returns of one policy over fixed seeds in the full-fidelity env.

    Attributes:
        returns: (n,) float64 episode returns, in seed order.
        mean: mean return.
        ci95: (lo, hi) Student-t 95 % confidence interval of the mean (NaN, NaN for n = 1).
        episodes: per-episode :class:`EpisodeStats` (targets seen, coverage, crash, geofence).
        label: the policy's name in reports.
        flight_stack: ``"px4"`` or ``"cascade"``: what flew every episode ("" when unknown).
        flight_stack_label: the same in words (``PX4ISREnv.flight_stack_label``).
        parallel_envs: ``PX4ISR-v0`` copies the episodes were spread over (1 = serial).
        px4_instances: the PX4 instances that flew (empty for the cascade).
    """

    returns: np.ndarray
    mean: float
    ci95: tuple[float, float]
    episodes: list[EpisodeStats] = field(default_factory=list)
    label: str = ""
    flight_stack: str = ""
    flight_stack_label: str = ""
    parallel_envs: int = 1
    px4_instances: list[int] = field(default_factory=list)

    @property
    def seeds(self) -> list[int]:
        return [e.seed for e in self.episodes]

    @property
    def targets_seen(self) -> np.ndarray:
        """(n,) int distinct targets seen per episode."""
        return np.array([e.targets_seen for e in self.episodes], dtype=np.int64)

    @property
    def coverage(self) -> np.ndarray:
        """(n,) float covered fraction of the ground per episode."""
        return np.array([e.coverage for e in self.episodes])

    @property
    def crashes(self) -> int:
        """Episodes ended by a crash."""
        return sum(e.crashed for e in self.episodes)

    @property
    def geofence_exits(self) -> int:
        """Episodes ended by leaving the geofence."""
        return sum(e.geofence for e in self.episodes)

    def describe(self) -> str:
        """One line: mean return with its 95 % CI, the per-episode extras and the flight stack."""
        lo, hi = self.ci95
        stack = f"  [{self.flight_stack_label}]" if self.flight_stack_label else ""
        return (
            f"{self.label or 'policy':<16} return {self.mean:+8.2f}  95% CI [{lo:+8.2f}, {hi:+8.2f}]  "
            f"(n={self.returns.size}; targets seen {self.targets_seen.mean():.1f}, "
            f"coverage {100 * self.coverage.mean():.1f} %, crashes {self.crashes}, "
            f"geofence exits {self.geofence_exits}){stack}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "flight_stack": self.flight_stack,
            "flight_stack_label": self.flight_stack_label,
            "parallel_envs": self.parallel_envs,
            "px4_instances": list(self.px4_instances),
            "mean": self.mean,
            "ci95": list(self.ci95),
            "returns": self.returns.tolist(),
            "episodes": [e.summary() for e in self.episodes],
        }


def mean_ci95(values: Sequence[float] | np.ndarray) -> tuple[float, tuple[float, float]]:
    """Mean and Student-t 95 % confidence interval of the mean.

    ``mean +- t_{0.975, n-1} * s / sqrt(n)`` with ``s`` the sample standard deviation (ddof=1).

    Args:
        values: n >= 1 finite numbers.

    Returns:
        (mean, (lo, hi)); the interval is (NaN, NaN) for n = 1 (no spread to estimate).

    Raises:
        ValueError: no values, or NaN/inf among them.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("mean_ci95 needs at least one value, got none")
    if not np.isfinite(x).all():
        raise ValueError(f"mean_ci95 needs finite values, got {x.tolist()}")
    mean = float(x.mean())
    if x.size == 1:
        return mean, (math.nan, math.nan)
    from scipy import stats

    half = float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, (mean - half, mean + half)


def transfer_criterion(
    direct: float, baseline: float, reference: float, fraction: float = TRANSFER_FRACTION
) -> bool:
    """Does the direct-trained policy reach ``fraction`` (90 %) of the baseline's return?

    Returns of this task can be negative (crash, geofence and jerk penalties), so "90 % of the
    return" is taken relative to the return of a policy that learned nothing, ``reference``:

        (direct - reference) >= fraction * (baseline - reference)

    i.e. the direct-trained policy keeps at least 90 % of the baseline's improvement over the
    reference. This reads the same for any sign of the returns and any constant offset of the
    reward (adding c to every return changes nothing), and it reduces to the plain
    ``direct >= 0.9 * baseline`` when the reference scores 0. When the baseline is no better than
    the reference (``baseline <= reference``) it still holds the direct policy to at most 90 % of
    the baseline's shortfall, which is stricter than ``direct >= baseline``.

    ``reference`` should be the better of the random-policy and zero-action returns on the same
    seeds (:func:`reference_return`): random actions pay a large jerk penalty, so against random
    alone any policy that merely holds still would look like a large "improvement", and 90 % of it
    would be easy to reach without learning anything.

    Args:
        direct, baseline, reference: mean returns on the same seeds in the same env.
        fraction: the share of the baseline's improvement to keep, in (0, 1].

    Raises:
        ValueError: a non-finite return or a fraction outside (0, 1].
    """
    for name, v in (("direct", direct), ("baseline", baseline), ("reference", reference)):
        if not math.isfinite(v):
            raise ValueError(f"transfer_criterion: {name} return must be finite, got {v}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"transfer_criterion: fraction must be in (0, 1], got {fraction}")
    return (direct - reference) >= fraction * (baseline - reference)


def transfer_ratio(direct: float, baseline: float, reference: float) -> float:
    """The direct policy's share of the baseline's improvement over ``reference`` (NaN when the
    baseline does not improve on it): ``(direct - reference) / (baseline - reference)``."""
    gain = baseline - reference
    return (direct - reference) / gain if gain > 0 else math.nan


def reference_return(random: EvalResult, zero: EvalResult) -> float:
    """The reference return of :func:`transfer_criterion`: the better of two policies that learn nothing."""
    return max(random.mean, zero.mean)


def parse_seeds(text: str) -> list[int]:
    """``"0..9"`` (inclusive), ``"3,5,8"`` or a mix (``"0..4,10"``) -> list of ints, order kept.

    Raises:
        ConfigError: empty, malformed, negative or repeated seeds.
    """
    seeds: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        try:
            lo, hi = (int(p) for p in part.split("..")) if ".." in part else (int(part), int(part))
        except ValueError:
            raise ConfigError(
                [f"seeds: {part!r} in {text!r} is not a seed or an inclusive range like 0..9"]
            ) from None
        if hi < lo:
            raise ConfigError([f"seeds: range {part!r} in {text!r} runs backwards; write low..high"])
        seeds.extend(range(lo, hi + 1))
    return _check_seeds(seeds)


def _check_seeds(seeds: Iterable[int]) -> list[int]:
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            raise ConfigError([f"seeds: {s!r} is not a non-negative integer"])
        out.append(int(s))
    if not out:
        raise ConfigError(["seeds: no seeds given; pass at least one (e.g. range(10) or '0..9')"])
    if len(set(out)) != len(out):
        raise ConfigError([f"seeds: {out} repeats a seed; each seed is one distinct episode"])
    return out


def as_action_fn(policy, deterministic: bool = True) -> Callable[[np.ndarray], np.ndarray]:
    """``obs (obs_dim,) -> action (4,)`` from an SB3 model (anything with ``predict``) or a callable."""
    if hasattr(policy, "predict"):
        return lambda obs: policy.predict(obs, deterministic=deterministic)[0]
    if callable(policy):
        return policy
    raise TypeError(
        f"policy must be an SB3 model (with .predict) or a callable obs -> action, got "
        f"{type(policy).__name__}"
    )


def eval_env_cfg(episode_length_s: float | None = None, env_cfg=None):
    """The ``PX4EnvCfg`` evaluation runs on: ``env_cfg`` (default: the packaged evaluation config)
    with ``episode_length_s`` when given."""
    if env_cfg is None:
        from flyby.config.evaluation import load_evaluation_cfg

        env_cfg = load_evaluation_cfg().px4_env
    if episode_length_s is not None:
        env_cfg = replace(env_cfg, episode_length_s=float(episode_length_s))
    return env_cfg


def make_eval_env(
    episode_length_s: float | None = None,
    env_cfg=None,
    *,
    render_mode: str | None = None,
    render_interval: int | None = None,
    flight_stack: str = "cascade",
):
    """A ``PX4ISR-v0`` for evaluation; render off unless ``render_mode="rgb_array"``.

    Rendering never changes observations (ground-truth detections use the perception camera), so
    an episode recorded on video returns what the same seed returns without rendering.
    """
    from flyby.envs.px4_env import PX4ISREnv

    cfg = eval_env_cfg(episode_length_s, env_cfg)
    if render_interval is not None:
        cfg = replace(cfg, render_interval=int(render_interval))
    return PX4ISREnv(cfg, flight_stack=flight_stack, render_mode=render_mode)


def run_episode(
    env,
    policy,
    seed: int,
    *,
    deterministic: bool = True,
    on_step: Callable[[int, float, dict], None] | None = None,
    track_interval_s: float | None = None,
) -> EpisodeStats:
    """Run one episode of ``env`` reset with ``seed`` until it terminates or is truncated.

    Args:
        env: a ``PX4ISR-v0`` (or any single-drone flyby env).
        policy: SB3 model or callable; a ``reset(seed)`` method, if any, is called first.
        on_step: called after every step with (step index, return so far, info).
        track_interval_s: s of sim time between recorded drone xy points (rounded to whole control
            steps); None records no track. With it, :attr:`EpisodeStats.track_xy` holds the drone's
            xy at reset, every interval and at the end, and :attr:`EpisodeStats.found_xy` where each
            target was when it was first seen (targets in view at the spawn first), metres, world ENU.
    """
    reset = getattr(policy, "reset", None)
    if callable(reset):
        reset(seed)
    act = as_action_fn(policy, deterministic)
    obs, _ = env.reset(seed=int(seed))
    task = env.unwrapped.task
    track: list[tuple[float, float]] | None = None
    if track_interval_s is not None:
        if not track_interval_s > 0:
            raise ValueError(f"track_interval_s must be > 0 s, got {track_interval_s!r}")
        every = max(1, round(float(track_interval_s) / task.step_dt))
        track = [_xy(task.pos_w[0])]
        seen_before = task.seen[0].copy()
        found = [_xy(task.target_pos_w[t]) for t in np.flatnonzero(seen_before)]
    ret, steps = 0.0, 0
    while True:
        obs, reward, terminated, truncated, info = env.step(
            np.asarray(act(obs), dtype=np.float32).reshape(ACTION_DIM)
        )
        ret += reward
        steps += 1
        if track is not None:
            seen = task.seen[0]
            if seen.sum() != seen_before.sum():
                found.extend(_xy(task.target_pos_w[t]) for t in np.flatnonzero(seen & ~seen_before))
                seen_before = seen.copy()
            if steps % every == 0 or terminated or truncated:
                track.append(_xy(task.pos_w[0]))
        if on_step is not None:
            on_step(steps, ret, info)
        if terminated or truncated:
            log = info.get("log", {})
            return EpisodeStats(
                seed=int(seed),
                ret=float(ret),
                steps=steps,
                targets_seen=int(task.seen[0].sum()),
                coverage=float(task.covered[0].mean()),
                crashed=bool(log.get("Episode_Termination/crash", 0)),
                geofence=bool(log.get("Episode_Termination/geofence", 0)),
                track_xy=tuple(track) if track is not None else (),
                found_xy=tuple(found) if track is not None else (),
            )


def _xy(pos) -> tuple[float, float]:
    """(x, y) of a position, metres, rounded to centimetres (plain floats for JSON)."""
    return round(float(pos[0]), 2), round(float(pos[1]), 2)


def eval_flight_stack(flight_stack: str = "cascade", env_cfg=None) -> tuple[str, str]:
    """The flight stack an evaluation with ``flight_stack`` flies: ``(value, label)``, e.g.
    ``("px4", "PX4 SITL (lockstep over MAVLink)")``; ``"auto"`` is PX4 when found, else the cascade.

    Raises:
        PX4Unavailable: ``"px4"`` and no PX4 binary (the message says how to set ``PX4_DIR``).
        ValueError: an unknown flight stack name.
    """
    from flyby.envs.px4_env import FLIGHT_STACK_LABELS, resolve_flight_stack

    cfg = eval_env_cfg(None, env_cfg)
    stack = resolve_flight_stack(flight_stack, cfg.px4)
    return stack.value, FLIGHT_STACK_LABELS[stack]


def evaluate_policy_full_fidelity(
    policy,
    seeds: Iterable[int],
    *,
    episode_length_s: float | None = None,
    env_cfg=None,
    deterministic: bool = True,
    label: str | None = None,
    flight_stack: str = "cascade",
    progress: bool = False,
    px4_instances: int = 1,
    first_px4_instance: int | None = None,
    track_interval_s: float | None = None,
    env=None,
    pool=None,
) -> EvalResult:
    """Score ``policy`` in ``PX4ISR-v0`` (render off), one episode per seed, on one or N parallel envs.

    Args:
        policy: an SB3 model (``predict(obs, deterministic=...)``) or any callable
            ``obs (obs_dim,) float32 -> action (4,)`` in [-1, 1]. A policy that keeps state between
            steps must reset it in ``reset(seed)`` (called before each episode), as
            :class:`RandomPolicy` does: parallel envs each act with their own copy of it.
        seeds: distinct non-negative reset seeds (same seeds -> same episodes for every policy).
        episode_length_s: s, overrides the config's episode length.
        env_cfg: ``PX4EnvCfg`` (default: ``px4_env`` of the packaged ``evaluation_config.yaml``).
        deterministic: SB3 models act with their mean action (sampled actions are not seeded
            per episode, so only deterministic results repeat).
        label: name in reports (default: the policy's ``label`` or its class name).
        flight_stack: ``"cascade"`` (default), ``"px4"`` or ``"auto"`` (resolved once for all envs).
        progress: show a tqdm bar over the episodes.
        px4_instances: N, parallel ``PX4ISR-v0`` copies in worker processes (1..10; 1 = in this
            process). With PX4 each flies its own PX4 SITL instance. Results equal the serial ones.
        first_px4_instance: PX4 instance of copy 0 (copy ``j`` flies ``first + j``, TCP 4560 + i,
            UDP 14540 + i); None: ``env_cfg.px4.instance``. Instances 0..9 only.
        track_interval_s: s between recorded drone xy points of each episode
            (:attr:`EpisodeStats.track_xy`, :attr:`EpisodeStats.found_xy`); None: no tracks.
        env: an already built ``PX4ISR-v0`` to run every episode in, serially (it is not closed;
            ``episode_length_s``, ``env_cfg``, ``flight_stack`` and the PX4 options are then its own
            and ignored). Lets several policies share one env (:func:`run_evaluation`).
        pool: an already started :class:`~flyby.training.parallel.EnvPool` of at least
            ``px4_instances`` workers built with this ``env_cfg`` and flight stack
            (:func:`~flyby.training.parallel.make_px4_pool`; not closed here), for parallel
            evaluation of several policies without restarting the workers.

    Returns:
        :class:`EvalResult` (per-seed returns in seed order, mean, Student-t 95 % CI, targets seen,
        coverage, crashes, and the flight stack that flew them).

    Raises:
        ConfigError: no seeds, a negative / repeated / non-integer seed, ``px4_instances`` outside
            1..10 or an instance range past instance 9.
        TypeError: ``policy`` is neither an SB3 model nor callable, or (parallel) cannot be pickled.
        PX4Unavailable: PX4 requested but not found, or a PX4 failed (all workers are stopped first).
    """
    from flyby.training.parallel import check_px4_instances

    seeds = _check_seeds(seeds)
    as_action_fn(policy, deterministic)  # type check before building the env
    cfg = eval_env_cfg(episode_length_s, env_cfg)
    first = cfg.px4.instance if first_px4_instance is None else first_px4_instance
    check_px4_instances(px4_instances, first)
    name = label or getattr(policy, "label", None) or type(policy).__name__
    n_envs = min(int(px4_instances), len(seeds))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(seeds), desc=f"evaluate {label or ''}".strip(), unit="episode")
    try:
        if env is not None:  # the caller's env: its config, flight stack and instance
            episodes = []
            for seed in seeds:
                episodes.append(
                    run_episode(
                        env, policy, seed, deterministic=deterministic, track_interval_s=track_interval_s
                    )
                )
                if bar is not None:
                    bar.update(1)
            stack, stack_label = env.unwrapped.flight_stack.value, env.unwrapped.flight_stack_label
            instances = [int(env.unwrapped.cfg.px4.instance)] if stack == "px4" else []
            n_envs = 1
        elif n_envs == 1:
            if first != cfg.px4.instance:
                cfg = replace(cfg, px4=replace(cfg.px4, instance=int(first)))
            env = make_eval_env(env_cfg=cfg, flight_stack=flight_stack)
            episodes = []
            try:
                for seed in seeds:
                    episodes.append(
                        run_episode(
                            env, policy, seed, deterministic=deterministic, track_interval_s=track_interval_s
                        )
                    )
                    if bar is not None:
                        bar.update(1)
                stack, stack_label = env.flight_stack.value, env.flight_stack_label
            finally:
                env.close()
            instances = [int(first)] if stack == "px4" else []
        else:
            stack, stack_label = eval_flight_stack(flight_stack, cfg)
            episodes = _evaluate_parallel(
                policy, seeds, cfg, stack, n_envs, int(first), deterministic, bar, track_interval_s, pool=pool
            )
            instances = list(range(int(first), int(first) + n_envs)) if stack == "px4" else []
    finally:
        if bar is not None:
            bar.close()
    returns = np.array([e.ret for e in episodes])
    mean, ci = mean_ci95(returns)
    return EvalResult(
        returns=returns,
        mean=mean,
        ci95=ci,
        episodes=episodes,
        label=name,
        flight_stack=stack,
        flight_stack_label=stack_label,
        parallel_envs=n_envs,
        px4_instances=instances,
    )


def _evaluate_parallel(
    policy,
    seeds: list[int],
    cfg,
    stack: str,
    n_envs: int,
    first: int,
    deterministic: bool,
    bar,
    track_interval_s: float | None = None,
    pool=None,
) -> list[EpisodeStats]:
    """Episodes of ``seeds`` on ``n_envs`` worker envs (of ``pool``, or of a pool started and stopped
    here): each idle worker takes the next seed."""
    from flyby.training.parallel import make_px4_pool

    if pool is not None:
        return _run_on_pool(pool, policy, seeds, n_envs, deterministic, bar, track_interval_s)
    with make_px4_pool(cfg, stack, n_envs, first) as own:
        return _run_on_pool(own, policy, seeds, n_envs, deterministic, bar, track_interval_s)


def _run_on_pool(
    pool, policy, seeds: list[int], n_envs: int, deterministic: bool, bar, track_interval_s: float | None
) -> list[EpisodeStats]:
    """Install ``policy`` in every worker of ``pool``, then run ``seeds`` on its first ``n_envs`` workers."""
    payload = policy_payload(policy)
    episodes: dict[int, EpisodeStats] = {}
    pool.broadcast("run", _worker_install_policy, (payload,))
    todo = list(enumerate(seeds))[::-1]
    running: dict[int, int] = {}  # worker -> episode index

    def give(j: int) -> None:
        k, seed = todo.pop()
        running[j] = k
        pool.send(j, "run", _worker_run_episode, (seed, deterministic, track_interval_s))

    for j in range(n_envs):
        give(j)
    while running:
        j, stats = pool.recv_any(list(running))
        episodes[running.pop(j)] = stats
        if bar is not None:
            bar.update(1)
        if todo:
            give(j)
    return [episodes[k] for k in range(len(seeds))]


# ------------------------------------------------------------------ evaluation with baselines (metrics.json)

METRICS_SCHEMA = "flyby.evaluation/1"
EVAL_ENV_ID = "flyby/PX4ISR-v0"
POLICY_KEYS = ("trained", "zero", "random", "patrol")  # metrics.json "policies" keys, trained first
SUCCESS_DEFINITION = (
    "An episode succeeds when it reaches the time limit (episode_length_s) with no crash and no "
    "geofence exit AND finds at least {n} distinct targets (targets_found: targets seen by the "
    "ground-truth detector of the perception camera at any time in the episode, those in view at the "
    "spawn included)."
)
DETECTION_NOTE_GT = (
    "perception ran in ground_truth mode: the detections are the analytic ground truth, so precision "
    "and recall are 1 by construction and are not reported; evaluate with perception mode yolo for "
    "detection figures"
)


def make_baseline(name: str, step_dt: float = 0.04):
    """The scripted baseline ``name``: ``"zero"`` (:class:`ZeroPolicy`, hover), ``"random"``
    (:class:`RandomPolicy`) or ``"patrol"`` (:class:`flyby.policies.PatrolPolicy` with ``dt = step_dt``, s).

    Raises:
        ConfigError: an unknown name (the message lists the baselines).
    """
    from flyby.policies import PatrolPolicy

    if name == "zero":
        return ZeroPolicy()
    if name == "random":
        return RandomPolicy()
    if name == "patrol":
        return PatrolPolicy(dt=step_dt)
    raise ConfigError([f"baselines: {name!r} is not a baseline; choose from {list(POLICY_KEYS[1:])}"])


_PX4_VERSION_CACHE: dict[tuple[str, int, int], str | None] = {}


def px4_version(px4_dir: str | None = None) -> str | None:
    """The version tag of the PX4 SITL binary flyby would start (e.g. ``"v1.16.2"``), or None.

    PX4 compiles its git tag (``PX4_GIT_TAG_STR``, what ``ver all`` prints) into the binary as a
    NUL-terminated string; this scans the binary (``find_px4``: ``px4_dir``, ``$PX4_DIR``, PATH) for
    NUL-delimited tags ``vX.Y.Z[-...]`` and leaves out the tags quoted by PX4's own version-parser
    self-tests. Reading the 4 MB binary takes about 10 ms; the answer is cached per binary
    (path, size, mtime). No PX4 is started.

    Returns:
        the tag when exactly one remains, else None (also when no PX4 is found).
    """
    import re

    from flyby.errors import PX4Unavailable
    from flyby.px4.launcher import find_px4

    try:
        binary, _ = find_px4(px4_dir or None)
        st = binary.stat()
    except (PX4Unavailable, OSError):
        return None
    key = (str(binary), st.st_size, st.st_mtime_ns)
    if key not in _PX4_VERSION_CACHE:
        try:
            data = binary.read_bytes()
        except OSError:
            return None
        tags = set(re.findall(rb"\x00(v\d+\.\d+\.\d+(?:-[0-9A-Za-z.\-]+)?)\x00", data))
        tags -= set(re.findall(rb'"(v\d+\.\d+\.\d+[^"]*)"', data))  # the self-tests' sample tags
        _PX4_VERSION_CACHE[key] = tags.pop().decode() if len(tags) == 1 else None
    return _PX4_VERSION_CACHE[key]


@dataclass
class EvaluationRun:
    """Everything one :func:`run_evaluation` produced.

    Attributes:
        metrics: the ``metrics.json`` dict (schema ``flyby.evaluation/1``, docs/evaluation_metrics.md).
        tracks: the ``tracks.json`` dict (top-down tracks of every episode, the world's layout).
        results: policy key (``"trained"``, ``"zero"``, ``"random"``, ``"patrol"``) -> :class:`EvalResult`.
        video: the validation video's :class:`~flyby.training.validation_video.VideoResult`, or None.
        paths: files written (``"metrics"``, ``"tracks"``, ``"video"``), when any.
    """

    metrics: dict[str, Any]
    tracks: dict[str, Any]
    results: dict[str, EvalResult]
    video: Any = None
    paths: dict[str, str] = field(default_factory=dict)

    def table(self) -> str:
        """The trained policy beside the baselines: one row each with intervals, and the flight stack."""
        m = self.metrics

        def ci(pair, fmt: str) -> str:
            return "(n=1: no CI)" if pair is None else f"[{pair[0]:{fmt}}, {pair[1]:{fmt}}]"

        rows = [
            (
                f"{'policy':<24} {'return, 95% CI':<28} {'success':>7}  {'targets, 95% CI':<22} "
                f"{'coverage':>8} {'crashes':>8} {'geofence':>8}"
            )
        ]
        for key, p in m["policies"].items():
            tf = p["targets_found"]
            name = key if p["label"] in (key, "") else f"{key} ({p['label']})"
            rows.append(
                f"{name[:24]:<24} {p['mean_return']:+8.2f} {ci(p['ci95'], '+.2f'):<19} "
                f"{100 * p['success_rate']:6.0f}%  {tf['mean']:5.1f} {ci(tf['ci95'], '.1f'):<16} "
                f"{100 * p['coverage']['mean']:7.1f}% {p['crashes']:>4}/{p['n']:<3} "
                f"{p['geofence_exits']:>4}/{p['n']:<3}"
            )
        version = f" {m['px4_version']}" if m["px4_version"] else ""
        rows.append(
            f"flight stack: {m['flight_stack_label']}{version}; seeds {m['seeds'][0]}..{m['seeds'][-1]} "
            f"({len(m['seeds'])} episodes of {m['episode_length_s']:g} s per policy, "
            "the same for every policy)"
        )
        rows.append(f"success: {m['success_definition']}")
        det = m["detection"]
        if det is not None:
            rows.append(
                f"detection ({det['mode']}, validation episode): precision {det['precision']:.3f}, "
                f"recall {det['recall']:.3f} (tp {det['tp']}, fp {det['fp']}, fn {det['fn']}, "
                f"{det['frames']} frames, IoU >= {det['iou_threshold']})"
            )
        elif m.get("detection_note"):
            rows.append(f"detection: {m['detection_note']}")
        return "\n".join(rows)


def resolve_eval_seeds(
    num_episodes: int | None = None, seeds: Iterable[int] | None = None, protocol=None
) -> list[int]:
    """The evaluation seeds: ``seeds`` when given, else the first ``num_episodes`` of the config's
    ``evaluation.seeds`` (more than it lists continue after its last seed; None: all of them).

    Raises:
        ConfigError: ``num_episodes < 1``, or bad / repeated seeds.
    """
    if seeds is not None:
        return _check_seeds(seeds)
    if protocol is None:
        from flyby.config.evaluation import load_evaluation_cfg

        protocol = load_evaluation_cfg().evaluation
    base = list(protocol.seeds)
    if num_episodes is None:
        return _check_seeds(base)
    if isinstance(num_episodes, bool) or not isinstance(num_episodes, (int, np.integer)) or num_episodes < 1:
        raise ConfigError([f"num_episodes: {num_episodes!r} must be an integer >= 1"])
    n = int(num_episodes)
    out = base[:n]
    nxt = max(base) + 1
    while len(out) < n:
        out.append(nxt)
        nxt += 1
    if n > len(base):
        logger.info(
            "evaluation: %d episodes asked, evaluation.seeds lists %d; seeds continue from %d",
            n,
            len(base),
            max(base) + 1,
        )
    return _check_seeds(out)


def run_evaluation(
    policy,
    *,
    seeds: Iterable[int],
    flight_stack: str = "auto",
    px4_instances: int | None = None,
    first_px4_instance: int | None = None,
    episode_length_s: float | None = None,
    baselines: Sequence[str] = ("zero", "random", "patrol"),
    record_video: bool | str | os.PathLike = False,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    deterministic: bool = True,
    label: str | None = None,
    env_cfg=None,
    protocol=None,
) -> EvaluationRun:
    """Evaluate ``policy`` and the scripted baselines on the same seeds and flight stack.

    The work behind :func:`evaluate_policy` (and ``flyby evaluate``), for any policy object: an
    SB3 model, a :class:`~flyby.training.policy_io.LoadedPolicy` or a callable ``obs -> action``.
    ``flight_stack="auto"`` is resolved once, so every policy flies the same stack, and
    :attr:`EvaluationRun.metrics` says which (``flight_stack``, ``flight_stack_label``, and
    ``px4_version`` only when PX4 flew).

    Args:
        policy: the policy scored under the key ``"trained"``.
        seeds: distinct non-negative reset seeds, one episode each, for every policy.
        flight_stack: ``"auto"`` (PX4 SITL when found, else the built-in cascade), ``"px4"``, ``"cascade"``.
        px4_instances: parallel ``PX4ISR-v0`` copies in worker processes (1..10; None: 1).
        first_px4_instance: PX4 instance of copy 0 (None: the config's).
        episode_length_s: s, overrides the config's episode length.
        baselines: any of ``"zero"``, ``"random"``, ``"patrol"``, in the order given.
        record_video: False; True (the validation video of the trained policy's first seed into
            ``out_dir/validation.mp4``, or ``output/videos/validation.mp4`` without ``out_dir``); or a path.
        out_dir: write ``metrics.json`` and ``tracks.json`` there (atomically); None: write nothing
            but the video.
        progress: tqdm bars over the episodes (and the video's steps).
        deterministic: SB3 models act with their mean action.
        label: the trained policy's name (default: its ``label`` or class name).
        env_cfg: ``PX4EnvCfg`` (default: ``px4_env`` of ``evaluation_config.yaml``).
        protocol: ``EvalProtocolCfg`` (default: ``evaluation`` of ``evaluation_config.yaml``):
            success bar and track interval.

    Returns:
        :class:`EvaluationRun` (metrics, tracks, per-policy :class:`EvalResult`, video).

    Raises:
        ConfigError: bad seeds, baselines or PX4 instance range.
        PX4Unavailable: ``"px4"`` and PX4 is not found, or a PX4 failed.
        OutputError: ``out_dir`` or the video's folder is not writable (checked before any episode runs).
    """
    import time

    t0 = time.perf_counter()
    if env_cfg is None or protocol is None:
        from flyby.config.evaluation import load_evaluation_cfg

        loaded = load_evaluation_cfg()
        env_cfg = loaded.px4_env if env_cfg is None else env_cfg
        protocol = loaded.evaluation if protocol is None else protocol
    cfg = eval_env_cfg(episode_length_s, env_cfg)
    seeds = _check_seeds(seeds)
    baselines = list(baselines)
    for name in baselines:
        make_baseline(name)  # unknown names fail before anything runs
    if len(set(baselines)) != len(baselines):
        raise ConfigError([f"baselines: {baselines} repeats a baseline"])
    n_envs = 1 if px4_instances is None else int(px4_instances)
    first = cfg.px4.instance if first_px4_instance is None else int(first_px4_instance)
    from flyby.training.parallel import check_px4_instances

    check_px4_instances(n_envs, first)
    from flyby.utils.atomic import check_output_file, check_writable

    if out_dir is not None:
        check_writable(out_dir)
    if record_video:  # the video comes after every episode: its destination is checked first too
        check_output_file(_video_path(record_video, out_dir))
    stack, stack_label = eval_flight_stack(flight_stack, cfg)  # resolved once for every policy
    name = label or getattr(policy, "label", None) or type(policy).__name__
    policies = {"trained": (policy, name)}
    for b in baselines:
        base = make_baseline(b, cfg.step_dt)
        policies[b] = (base, base.label)
    kw = {
        "episode_length_s": None,
        "env_cfg": cfg,
        "flight_stack": stack,
        "progress": progress,
        "px4_instances": n_envs,
        "first_px4_instance": first,
        "track_interval_s": protocol.track_interval_s,
    }
    world = None
    if min(n_envs, len(seeds)) == 1:  # serial: every policy flies in one env, built once
        env_cfg_1 = cfg if first == cfg.px4.instance else replace(cfg, px4=replace(cfg.px4, instance=first))
        env = make_eval_env(env_cfg=env_cfg_1, flight_stack=stack)
        try:
            results = {
                key: evaluate_policy_full_fidelity(
                    p, seeds, deterministic=deterministic, label=lab, env=env, **kw
                )
                for key, (p, lab) in policies.items()
            }
            world = env.unwrapped.task.world
        finally:
            env.close()
    else:  # parallel: one pool of workers (and PX4 instances) serves every policy
        from flyby.training.parallel import make_px4_pool

        with make_px4_pool(cfg, stack, min(n_envs, len(seeds)), first) as pool:
            results = {
                key: evaluate_policy_full_fidelity(
                    p, seeds, deterministic=deterministic, label=lab, pool=pool, **kw
                )
                for key, (p, lab) in policies.items()
            }

    video = None
    paths: dict[str, str] = {}
    if record_video:
        from flyby.training.validation_video import record_validation_video

        video = record_validation_video(
            policy,
            seeds[0],
            _video_path(record_video, out_dir),
            flight_stack=stack,
            env_cfg=cfg,
            progress=progress,
            label=name,
        )
        paths["video"] = str(video.path)

    metrics = _metrics(
        results,
        seeds=seeds,
        cfg=cfg,
        protocol=protocol,
        stack=stack,
        stack_label=stack_label,
        video=video,
        wall_s=time.perf_counter() - t0,
    )
    tracks = _tracks(results, cfg, world)
    if out_dir is not None:
        from flyby.utils.atomic import atomic_write_json

        paths["metrics"] = str(atomic_write_json(Path(out_dir) / "metrics.json", metrics))
        paths["tracks"] = str(atomic_write_json(Path(out_dir) / "tracks.json", tracks))
        logger.info("wrote %s and %s", paths["metrics"], paths["tracks"])
    return EvaluationRun(metrics=metrics, tracks=tracks, results=results, video=video, paths=paths)


def _video_path(record_video: bool | str | os.PathLike, out_dir: str | os.PathLike | None) -> Path:
    """Where :func:`run_evaluation` writes the validation video (``record_video`` True or a path)."""
    if record_video is True:
        return Path(out_dir if out_dir is not None else "output/videos") / "validation.mp4"
    return Path(record_video)


def evaluate_policy(
    policy_path,
    num_episodes: int = 10,
    record_video: bool | str | os.PathLike = False,
    *,
    seeds: Iterable[int] | None = None,
    flight_stack: str = "auto",
    px4_instances: int | None = None,
    episode_length_s: float | None = None,
    baselines: Sequence[str] = ("zero", "random", "patrol"),
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a trained policy bundle in ``flyby/PX4ISR-v0`` beside the scripted baselines.

    The trained policy (loaded with its normaliser by :func:`flyby.training.policy_io.load_policy`)
    and every baseline (``zero``: hover, ``random``: uniform actions, ``patrol``: scripted patrol)
    fly one episode per seed, the same seeds, on the same flight stack (``"auto"`` is resolved once:
    PX4 SITL when found, else the built-in cascade; the result says which).

    Success (also in the JSON as ``success_definition``): an episode succeeds when it reaches the
    time limit with no crash and no geofence exit AND finds at least
    ``evaluation.success_min_targets`` targets (``evaluation_config.yaml``; 20 of the world's 40
    by default: hovering finds at most 11 in 60 s, the scripted patrol 33-40).

    Args:
        policy_path: the model zip (``training/model.zip``; ``vecnormalize.pkl`` and
            ``model.json`` beside it), a run folder, or an already loaded policy object.
        num_episodes: episodes per policy: the first n of ``evaluation.seeds`` (fixed seeds from
            1000, apart from the training seeds). Ignored when ``seeds`` is given.
        record_video: False, True (``out_dir/validation.mp4``: the trained policy's first seed,
            with detections drawn) or the video's path.
        seeds: explicit reset seeds.
        flight_stack: ``"auto"``, ``"px4"`` or ``"cascade"``.
        px4_instances: parallel envs in worker processes, one PX4 instance each (None: 1).
        episode_length_s: s, overrides ``px4_env.episode_length_s`` (60 s).
        baselines: which scripted baselines to run.
        out_dir: also write ``metrics.json`` and ``tracks.json`` there, atomically.
        progress: tqdm progress bars.

    Returns:
        the metrics dict, schema ``"flyby.evaluation/1"`` (docs/evaluation_metrics.md).

    Raises:
        ModelLoadError: missing, corrupt or incompatible model (spaces or normaliser).
        ConfigError: bad seeds, episode count, baselines or PX4 instances.
        PX4Unavailable: ``"px4"`` and PX4 is not found, or a PX4 failed.
    """
    from flyby.config.evaluation import load_evaluation_cfg

    loaded = load_evaluation_cfg()
    env_cfg = eval_env_cfg(episode_length_s, loaded.px4_env)
    if isinstance(policy_path, (str, os.PathLike)):
        from flyby.training.policy_io import eval_spaces, load_policy

        obs_space, act_space = eval_spaces(env_cfg)
        policy = load_policy(
            policy_path, observation_space=obs_space, action_space=act_space, actions=env_cfg.actions
        )
    else:
        policy = policy_path
    seed_list = resolve_eval_seeds(num_episodes, seeds, loaded.evaluation)
    run = run_evaluation(
        policy,
        seeds=seed_list,
        flight_stack=flight_stack,
        px4_instances=px4_instances,
        baselines=baselines,
        record_video=record_video,
        out_dir=out_dir,
        progress=progress,
        env_cfg=env_cfg,
        protocol=loaded.evaluation,
    )
    return run.metrics


def _ci(values) -> list[float] | None:
    """[lo, hi] of the Student-t 95 % interval, None for one value (no spread to estimate)."""
    _, (lo, hi) = mean_ci95(values)
    return None if math.isnan(lo) else [float(lo), float(hi)]


def _policy_metrics(result: EvalResult, min_targets: int) -> dict[str, Any]:
    eps = result.episodes
    success = [not e.crashed and not e.geofence and e.targets_seen >= min_targets for e in eps]
    targets = [int(e.targets_seen) for e in eps]
    cover = [float(e.coverage) for e in eps]
    returns = [float(e.ret) for e in eps]
    return {
        "label": result.label,
        "n": len(eps),
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns, ddof=1)) if len(eps) > 1 else 0.0,
        "ci95": _ci(returns),
        "success_rate": float(np.mean(success)),
        "targets_found": {"mean": float(np.mean(targets)), "ci95": _ci(targets), "per_episode": targets},
        "coverage": {"mean": float(np.mean(cover)), "per_episode": cover},
        "crashes": int(result.crashes),
        "geofence_exits": int(result.geofence_exits),
        "episode_lengths": [int(e.steps) for e in eps],
        "returns": returns,
        "episodes": [
            {
                "seed": e.seed,
                "return": float(e.ret),
                "steps": int(e.steps),
                "targets_found": int(e.targets_seen),
                "coverage": float(e.coverage),
                "crashed": bool(e.crashed),
                "geofence": bool(e.geofence),
                "success": bool(ok),
            }
            for e, ok in zip(eps, success)
        ],
    }


def _metrics(
    results: dict[str, EvalResult], *, seeds, cfg, protocol, stack, stack_label, video, wall_s: float
) -> dict[str, Any]:
    import datetime

    detection = None if video is None else video.detection
    mode = _perception_mode(cfg) if video is None else video.perception_mode
    note = None
    if detection is None:
        if mode == "ground_truth":
            note = DETECTION_NOTE_GT
        elif video is None:
            note = "no validation video was recorded (record_video=False): the detection figures come from it"
        else:
            note = video.detection_note
    first = next(iter(results.values()))
    return {
        "schema": METRICS_SCHEMA,
        "env_id": EVAL_ENV_ID,
        "flight_stack": stack,
        "flight_stack_label": stack_label,
        "px4_version": px4_version(cfg.px4.px4_dir) if stack == "px4" else None,
        "perception_mode": mode,
        "seeds": list(seeds),
        "episode_length_s": float(cfg.episode_length_s),
        "success_definition": SUCCESS_DEFINITION.format(n=protocol.success_min_targets),
        "policies": {key: _policy_metrics(r, protocol.success_min_targets) for key, r in results.items()},
        "detection": detection,
        # Extras beyond the fixed schema (readers may ignore them):
        "success_min_targets": int(protocol.success_min_targets),
        "max_episode_steps": int(cfg.max_episode_length),
        "step_dt": float(cfg.step_dt),
        "parallel_envs": first.parallel_envs,
        "px4_instances": list(first.px4_instances),
        "detection_note": note,
        "video": None if video is None else str(video.path),
        "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "wall_s": round(float(wall_s), 2),
    }


def _perception_mode(cfg) -> str:
    mode = getattr(getattr(cfg, "perception", None), "mode", "ground_truth")
    return str(getattr(mode, "value", mode))


def _tracks(results: dict[str, EvalResult], cfg, world=None) -> dict[str, Any]:
    from flyby.enums import TargetClass
    from flyby.world.world import generate_world

    if world is None:
        world = generate_world(cfg.world, cfg.world_seed)
    lo, hi = world.building_min_w, world.building_max_w
    pos0, _ = world.target_poses(0.0)
    return {
        "half_extent_m": [float(v) for v in world.half_extent],
        "buildings": [[*_xy(a), *_xy(b)] for a, b in zip(lo, hi)],
        "targets": [
            {"xy": list(_xy(p)), "cls": TargetClass(int(c)).name.lower()}
            for p, c in zip(pos0, world.target_class)
        ],
        "episodes": [
            {
                "policy": key,
                "seed": e.seed,
                "xy": [list(p) for p in e.track_xy],
                "found": [list(p) for p in e.found_xy],
            }
            for key, r in results.items()
            for e in r.episodes
        ],
    }
