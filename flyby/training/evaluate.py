"""Evaluation in the full-fidelity env (``flyby/PX4ISR-v0``) over fixed seeds, and the transfer criterion.

Every policy, learned or not, is scored the same way: one episode per seed in
``PX4ISR-v0`` (built-in cascade flight stack unless told otherwise), episode
``k`` reset with ``seed=seeds[k]`` so every policy meets the same spawns, the
same target motion and the same noise. Returns come with a Student-t 95 %
confidence interval of the mean.

Reference policies: :class:`RandomPolicy` (uniform actions in the action box,
seeded per episode) and :class:`ZeroPolicy` (zero velocity and yaw rate: hover
in place). A policy that learned nothing scores about as well as the better of
the two; see :func:`transfer_criterion`.

Example::

    from flyby.training.evaluate import evaluate_policy_full_fidelity

    result = evaluate_policy_full_fidelity(PPO.load("output/models/direct.zip"), seeds=range(10))
    print(result.describe())
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np

from flyby.errors import ConfigError
from flyby.mdp.actions import ACTION_DIM

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


class EpisodeStats(NamedTuple):
    """One evaluation episode."""

    seed: int  # the reset seed
    ret: float  # undiscounted return
    steps: int  # control steps
    targets_seen: int  # distinct targets seen in the episode
    coverage: float  # fraction of the area's ground cells covered, [0, 1]
    crashed: bool  # ended by a crash (building or ground)
    geofence: bool  # ended by leaving the geofence


@dataclass
class EvalResult:
    """Returns of one policy over fixed seeds in the full-fidelity env.

    Attributes:
        returns: (n,) float64 episode returns, in seed order.
        mean: mean return.
        ci95: (lo, hi) Student-t 95 % confidence interval of the mean (NaN, NaN for n = 1).
        episodes: per-episode :class:`EpisodeStats` (targets seen, coverage, crash, geofence).
        label: the policy's name in reports.
    """

    returns: np.ndarray
    mean: float
    ci95: tuple[float, float]
    episodes: list[EpisodeStats] = field(default_factory=list)
    label: str = ""

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
        """One line: mean return with its 95 % CI, and the per-episode extras."""
        lo, hi = self.ci95
        return (f"{self.label or 'policy':<16} return {self.mean:+8.2f}  95% CI [{lo:+8.2f}, {hi:+8.2f}]  "
                f"(n={self.returns.size}; targets seen {self.targets_seen.mean():.1f}, "
                f"coverage {100 * self.coverage.mean():.1f} %, crashes {self.crashes}, "
                f"geofence exits {self.geofence_exits})")

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "mean": self.mean,
            "ci95": list(self.ci95),
            "returns": self.returns.tolist(),
            "episodes": [e._asdict() for e in self.episodes],
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
            raise ConfigError([f"seeds: {part!r} in {text!r} is not a seed or an inclusive range like 0..9"]) from None
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
        f"policy must be an SB3 model (with .predict) or a callable obs -> action, got {type(policy).__name__}"
    )


def eval_env_cfg(episode_length_s: float | None = None, env_cfg=None):
    """The ``PX4EnvCfg`` evaluation runs on: ``env_cfg`` (default: the packaged evaluation config)
    with ``episode_length_s`` when given."""
    if env_cfg is None:
        from flyby.training.evaluation_cfg import load_evaluation_cfg

        env_cfg = load_evaluation_cfg().px4_env
    if episode_length_s is not None:
        env_cfg = replace(env_cfg, episode_length_s=float(episode_length_s))
    return env_cfg


def make_eval_env(episode_length_s: float | None = None, env_cfg=None, *, render_mode: str | None = None,
                  render_interval: int | None = None, flight_stack: str = "cascade"):
    """A ``PX4ISR-v0`` for evaluation; render off unless ``render_mode="rgb_array"``.

    Rendering never changes observations (ground-truth detections use the perception camera), so
    an episode recorded on video returns what the same seed returns without rendering.
    """
    from flyby.envs.px4_env import PX4ISREnv

    cfg = eval_env_cfg(episode_length_s, env_cfg)
    if render_interval is not None:
        cfg = replace(cfg, render_interval=int(render_interval))
    return PX4ISREnv(cfg, flight_stack=flight_stack, render_mode=render_mode)


def run_episode(env, policy, seed: int, *, deterministic: bool = True,
                on_step: Callable[[int, float, dict], None] | None = None) -> EpisodeStats:
    """Run one episode of ``env`` reset with ``seed`` until it terminates or is truncated.

    Args:
        env: a ``PX4ISR-v0`` (or any single-drone flyby env).
        policy: SB3 model or callable; a ``reset(seed)`` method, if any, is called first.
        on_step: called after every step with (step index, return so far, info).
    """
    reset = getattr(policy, "reset", None)
    if callable(reset):
        reset(seed)
    act = as_action_fn(policy, deterministic)
    obs, _ = env.reset(seed=int(seed))
    ret, steps = 0.0, 0
    while True:
        obs, reward, terminated, truncated, info = env.step(np.asarray(act(obs), dtype=np.float32).reshape(ACTION_DIM))
        ret += reward
        steps += 1
        if on_step is not None:
            on_step(steps, ret, info)
        if terminated or truncated:
            log = info.get("log", {})
            return EpisodeStats(
                seed=int(seed),
                ret=float(ret),
                steps=steps,
                targets_seen=int(env.unwrapped.task.seen[0].sum()),
                coverage=float(env.unwrapped.task.covered[0].mean()),
                crashed=bool(log.get("Episode_Termination/crash", 0)),
                geofence=bool(log.get("Episode_Termination/geofence", 0)),
            )


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
) -> EvalResult:
    """Score ``policy`` in ``PX4ISR-v0`` (cascade flight stack, render off), one episode per seed.

    Args:
        policy: an SB3 model (``predict(obs, deterministic=...)``) or any callable
            ``obs (obs_dim,) float32 -> action (4,)`` in [-1, 1].
        seeds: distinct non-negative reset seeds (same seeds -> same episodes for every policy).
        episode_length_s: s, overrides the config's episode length.
        env_cfg: ``PX4EnvCfg`` (default: ``px4_env`` of the packaged ``evaluation_config.yaml``).
        deterministic: SB3 models act with their mean action.
        label: name in reports (default: the policy's ``label`` or its class name).
        flight_stack: ``"cascade"`` (default), ``"px4"`` or ``"auto"``.

    Returns:
        :class:`EvalResult` (per-seed returns, mean, Student-t 95 % CI, targets seen, coverage, crashes).

    Raises:
        ConfigError: no seeds, or a negative / repeated / non-integer seed.
        TypeError: ``policy`` is neither an SB3 model nor callable.
    """
    seeds = _check_seeds(seeds)
    as_action_fn(policy, deterministic)  # type check before building the env
    env = make_eval_env(episode_length_s, env_cfg, flight_stack=flight_stack)
    episodes = []
    try:
        it = seeds
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(seeds, desc=f"evaluate {label or ''}".strip(), unit="episode")
        for seed in it:
            episodes.append(run_episode(env, policy, seed, deterministic=deterministic))
    finally:
        env.close()
    returns = np.array([e.ret for e in episodes])
    mean, ci = mean_ci95(returns)
    name = label or getattr(policy, "label", None) or type(policy).__name__
    return EvalResult(returns=returns, mean=mean, ci95=ci, episodes=episodes, label=name)
