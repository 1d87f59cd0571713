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


def policy_payload(policy) -> tuple[str, Any]:
    """``policy`` packed for worker processes: ``("sb3", (class, zip bytes))`` for an SB3 model
    (saved with ``model.save``, so no training env travels with it), else ``("pickle", bytes)``
    (cloudpickle: closures, lambdas and classes defined in scripts travel by value).

    Raises:
        TypeError: the policy cannot be pickled (the message says to use ``px4_instances=1``).
    """
    if hasattr(policy, "predict") and hasattr(policy, "save") and hasattr(type(policy), "load"):
        import io

        buf = io.BytesIO()
        policy.save(buf)
        return "sb3", (type(policy), buf.getvalue())
    import cloudpickle

    try:
        return "pickle", cloudpickle.dumps(policy)
    except Exception as exc:  # noqa: BLE001 - any pickling failure means the same thing here
        raise TypeError(
            f"policy {type(policy).__name__} cannot be sent to the parallel env workers ({exc}); "
            "evaluate it with px4_instances=1 (in this process) or make it picklable"
        ) from exc


def load_policy_payload(payload: tuple[str, Any]):
    """Inverse of :func:`policy_payload` (in a worker; SB3 models load on cpu, torch with 1 thread)."""
    kind, data = payload
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


def _worker_run_episode(env, state: dict, seed: int, deterministic: bool) -> EpisodeStats:
    """Worker side of parallel evaluation: one episode of the installed policy."""
    return run_episode(env, state["policy"], seed, deterministic=deterministic)


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
        return (f"{self.label or 'policy':<16} return {self.mean:+8.2f}  95% CI [{lo:+8.2f}, {hi:+8.2f}]  "
                f"(n={self.returns.size}; targets seen {self.targets_seen.mean():.1f}, "
                f"coverage {100 * self.coverage.mean():.1f} %, crashes {self.crashes}, "
                f"geofence exits {self.geofence_exits}){stack}")

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
        if n_envs == 1:
            if first != cfg.px4.instance:
                cfg = replace(cfg, px4=replace(cfg.px4, instance=int(first)))
            env = make_eval_env(env_cfg=cfg, flight_stack=flight_stack)
            episodes = []
            try:
                for seed in seeds:
                    episodes.append(run_episode(env, policy, seed, deterministic=deterministic))
                    if bar is not None:
                        bar.update(1)
                stack, stack_label = env.flight_stack.value, env.flight_stack_label
            finally:
                env.close()
            instances = [int(first)] if stack == "px4" else []
        else:
            stack, stack_label = eval_flight_stack(flight_stack, cfg)
            episodes = _evaluate_parallel(policy, seeds, cfg, stack, n_envs, int(first), deterministic, bar)
            instances = list(range(int(first), int(first) + n_envs)) if stack == "px4" else []
    finally:
        if bar is not None:
            bar.close()
    returns = np.array([e.ret for e in episodes])
    mean, ci = mean_ci95(returns)
    return EvalResult(returns=returns, mean=mean, ci95=ci, episodes=episodes, label=name, flight_stack=stack,
                      flight_stack_label=stack_label, parallel_envs=n_envs, px4_instances=instances)


def _evaluate_parallel(policy, seeds: list[int], cfg, stack: str, n_envs: int, first: int,
                       deterministic: bool, bar) -> list[EpisodeStats]:
    """Episodes of ``seeds`` on ``n_envs`` worker envs: each idle worker takes the next seed."""
    from flyby.training.parallel import make_px4_pool

    payload = policy_payload(policy)
    episodes: dict[int, EpisodeStats] = {}
    with make_px4_pool(cfg, stack, n_envs, first) as pool:
        pool.broadcast("run", _worker_install_policy, (payload,))
        todo = list(enumerate(seeds))[::-1]
        running: dict[int, int] = {}  # worker -> episode index

        def give(j: int) -> None:
            k, seed = todo.pop()
            running[j] = k
            pool.send(j, "run", _worker_run_episode, (seed, deterministic))

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
