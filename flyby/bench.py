"""Throughput measurement shared by the phase gates, benchmarks and ``flyby bench``.

"FPS" is agent transitions per second: drones x env steps / wall second,
measured over a fixed number of steps after a warm-up. The timed loop is what
a training loop does minus learning: a scripted policy (microseconds) and
``env.step``.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Throughput:
    """One throughput measurement."""

    env_id: str
    num_drones: int
    steps: int  # env steps timed (each advances every drone)
    wall_s: float  # seconds inside env.step over the timed steps
    drone_steps_per_s: float  # num_drones * steps / wall_s
    sim_s_per_wall_s: float  # simulated drone-seconds per wall second, all drones (real-time factor)

    def as_dict(self) -> dict:
        return asdict(self)


def measure_vector_env(
    env, *, steps: int = 1000, warmup: int = 100, seed: int = 0, policy=None, on_step=None
) -> Throughput:
    """Time ``steps`` env steps (policy + ``env.step``) after ``warmup`` untimed ones.

    Args:
        env: a ``MultiDroneISREnv`` (or any VectorEnv exposing ``task``).
        policy: ``obs -> actions``; default: :class:`~flyby.policies.SmoothPatrolPolicy`.
        on_step: called with the number of agent transitions after each timed
            step (e.g. ``video_recorder.count_steps``), inside the timed loop so
            both read the same rate.
    """
    from flyby.policies import SmoothPatrolPolicy

    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    n = env.num_envs
    policy = policy or SmoothPatrolPolicy(n, env.task.layout, seed=seed)
    obs, _ = env.reset(seed=seed)
    for _ in range(warmup):
        obs, *_ = env.step(policy(obs))
    t0 = time.perf_counter()
    for _ in range(steps):
        obs, *_ = env.step(policy(obs))
        if on_step is not None:
            on_step(n)
    elapsed = time.perf_counter() - t0
    step_dt = env.task.step_dt
    return Throughput(
        env_id="flyby/MultiDroneISR-v0",
        num_drones=n,
        steps=steps,
        wall_s=elapsed,
        drone_steps_per_s=n * steps / elapsed,
        sim_s_per_wall_s=n * steps * step_dt / elapsed,
    )


def measure_single_env(env, *, steps: int = 1000, warmup: int = 100, seed: int = 0) -> Throughput:
    """Time ``env.step`` of a single-drone Gymnasium env (resetting when an episode ends, untimed)."""
    from flyby.policies import SmoothPatrolPolicy

    base = env.unwrapped
    policy = SmoothPatrolPolicy(1, base.task.layout, seed=seed)
    obs, _ = env.reset(seed=seed)
    elapsed, done_steps = 0.0, 0
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        obs, _, terminated, truncated, _ = env.step(policy(obs[None])[0])
        if i >= warmup:
            elapsed += time.perf_counter() - t0
            done_steps += 1
        if terminated or truncated:
            obs, _ = env.reset()  # untimed, as the vector env's autoreset is part of its step
    return Throughput(
        env_id="flyby/DirectISR-v0",
        num_drones=1,
        steps=done_steps,
        wall_s=elapsed,
        drone_steps_per_s=done_steps / elapsed,
        sim_s_per_wall_s=done_steps * base.task.step_dt / elapsed,
    )


def scaling_table(
    drone_counts=(1, 4, 16, 32), *, steps: int = 500, warmup: int = 50, cfg=None
) -> list[Throughput]:
    """Measure ``MultiDroneISR-v0`` at each drone count on the training configuration."""
    from flyby.envs.multi_drone_env import MultiDroneISREnv

    rows = []
    for n in drone_counts:
        env = MultiDroneISREnv(num_drones=n, cfg=cfg)
        rows.append(measure_vector_env(env, steps=steps, warmup=warmup))
        env.close()
    return rows


def measure_dynamics_limit(num_drones: int, *, steps: int = 1000, warmup: int = 100) -> float:
    """The machine's limit for the envs' figures: drone-steps/s of the direct dynamics alone.

    The training configuration's tuned model (:class:`~flyby.dynamics.direct.DirectDynamics`) on
    the compiled kernel (:mod:`flyby.dynamics.direct_kernel`), stepped from Python with fixed
    actions: what an env step costs before any perception, coverage, reward or observation.
    An env figure divided by this one is the fraction of the limit the env reaches.

    Returns:
        drone-steps per wall second (median of 3 timed runs of ``steps`` steps).
    """
    import os

    from flyby.config.training import load_training_cfg
    from flyby.dynamics.direct import DirectDynamics
    from flyby.kernels import KERNEL_ENV

    if num_drones < 1 or steps < 1:
        raise ValueError(f"num_drones and steps must be >= 1, got {num_drones} and {steps}")
    cfg = load_training_cfg().multi_drone_env
    dyn = DirectDynamics(cfg.dynamics, num_drones, cfg.actions)
    dyn.reset(np.zeros((num_drones, 3)), np.zeros(num_drones), seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (num_drones, 4))
    saved = os.environ.get(KERNEL_ENV)
    os.environ[KERNEL_ENV] = "numba"
    try:
        for _ in range(warmup):
            dyn.step(actions, cfg.step_dt)
        rates = []
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(steps):
                dyn.step(actions, cfg.step_dt)
            rates.append(num_drones * steps / (time.perf_counter() - t0))
    finally:
        if saved is None:
            os.environ.pop(KERNEL_ENV, None)
        else:
            os.environ[KERNEL_ENV] = saved
    return sorted(rates)[1]


def machine_info() -> dict[str, str]:
    """CPU, core count, Python, numpy and numba versions, and the kernel: printed beside every figure."""
    import os
    from importlib.metadata import PackageNotFoundError, version

    from flyby.kernels import kernel_backend

    try:
        numba_version = version("numba")
    except PackageNotFoundError:  # pragma: no cover - numba is a dependency
        numba_version = "not installed"
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba_version,
        "kernel": kernel_backend().value,
    }


_COLD_START_SCRIPT = """
import json, time
t0 = time.perf_counter()
import numpy as np
from flyby.envs.multi_drone_env import MultiDroneISREnv
env = MultiDroneISREnv(num_drones=2)
env.reset(seed=0)
env.step(np.zeros((2, 4), dtype=np.float32))
print(json.dumps({"first_step_s": time.perf_counter() - t0}))
"""


def measure_cold_start(timeout_s: float = 300.0) -> dict[str, float]:
    """JIT cold start of the compiled kernels: a fresh process's import, reset and first step.

    Runs ``MultiDroneISR-v0`` (2 drones) in two child processes with ``FLYBY_KERNEL=numba`` and a
    new, empty numba cache folder: the first compiles every kernel (cold), the second loads them
    from that cache (warm). Their difference is the compile time a user's first run pays once.

    Returns:
        ``{"cold_s", "warm_s", "compile_s"}``, seconds.

    Raises:
        RuntimeError: a child process failed (its stderr is in the message).
    """
    import json
    import os
    import subprocess
    import sys
    import tempfile

    times = []
    with tempfile.TemporaryDirectory(prefix="flyby-numba-") as cache:
        env = {**os.environ, "FLYBY_KERNEL": "numba", "NUMBA_CACHE_DIR": cache}
        for _ in range(2):
            run = subprocess.run(
                [sys.executable, "-c", _COLD_START_SCRIPT],
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
            if run.returncode != 0:
                raise RuntimeError(f"cold-start child exited {run.returncode}: {run.stderr[-2000:]}")
            times.append(json.loads(run.stdout.strip().splitlines()[-1])["first_step_s"])
    return {"cold_s": times[0], "warm_s": times[1], "compile_s": times[0] - times[1]}


def format_table(rows: list[Throughput]) -> str:
    """A plain-text table of throughput rows."""
    lines = [f"{'drones':>6} {'steps':>6} {'wall s':>8} {'drone-steps/s':>14} {'x real time':>12}"]
    for r in rows:
        lines.append(
            f"{r.num_drones:>6} {r.steps:>6} {r.wall_s:>8.3f} "
            f"{r.drone_steps_per_s:>14,.0f} {r.sim_s_per_wall_s:>12,.0f}"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class InstanceThroughput:
    """``PX4ISR-v0`` throughput of N parallel envs (worker processes; one PX4 instance each with PX4)."""

    num_instances: int  # parallel envs (= PX4 instances with PX4)
    flight_stack: str  # "px4" or "cascade"
    flight_stack_label: str  # the same in words
    px4_instances: tuple[int, ...]  # instances that flew (empty for the cascade)
    steps: int  # timed env steps per env
    env_steps_per_s: (
        float  # sum over the envs, free-running: steps * N / wall s from start to the last env done
    )
    per_instance_steps_per_s: tuple[float, ...]  # each env's own rate while free-running
    lockstep_env_steps_per_s: float  # sum over the envs when stepped together, as SB3's VecEnv steps them

    def as_dict(self) -> dict:
        return asdict(self)


def _bench_prepare(env, state: dict, seed: int, warmup: int) -> None:
    """Worker side: reset at 40 m (PX4: after its take-off phase), then ``warmup`` untimed steps."""
    from flyby.policies import SmoothPatrolPolicy

    state["seed"] = seed
    state["obs"], _ = env.reset(seed=seed, options={"pos_w": [0.0, 0.0, 40.0], "yaw_rad": 0.0})
    state["policy"] = SmoothPatrolPolicy(1, env.task.layout, seed=seed)
    for _ in range(warmup):
        _bench_step(env, state)


def _bench_step(env, state: dict) -> float:
    """Worker side: one policy step; an episode end resets (untimed). Returns s spent in ``env.step``."""
    t0 = time.perf_counter()
    obs, _, terminated, truncated, _ = env.step(state["policy"](state["obs"][None])[0])
    spent = time.perf_counter() - t0
    if terminated or truncated:
        obs, _ = env.reset(options={"pos_w": [0.0, 0.0, 40.0], "yaw_rad": 0.0})
    state["obs"] = obs
    return spent


def _bench_free_run(env, state: dict, steps: int) -> float:
    """Worker side: ``steps`` timed steps on its own; returns s spent in ``env.step``."""
    return sum(_bench_step(env, state) for _ in range(steps))


def measure_px4_instances(
    counts=(1, 2, 4),
    *,
    steps: int = 500,
    warmup: int = 25,
    flight_stack: str = "auto",
    first_instance: int | None = None,
    env_cfg=None,
    progress: bool = False,
) -> list[InstanceThroughput]:
    """``PX4ISR-v0`` env steps/s (render off) at each count of parallel envs, one PX4 instance each.

    For each N: an :class:`~flyby.training.parallel.EnvPool` of N ``PX4ISREnv`` (worker
    processes, PX4 instances ``first .. first + N - 1``) is started, every env resets at 40 m
    (PX4's take-off phase, untimed) and steps ``warmup`` times with
    :class:`~flyby.policies.SmoothPatrolPolicy`. Then two timed runs of ``steps`` steps per env:

    - free-running: every env steps on its own (as parallel evaluation runs); the sum is
      ``N * steps`` over the wall time from the start to the last env done; each env's own rate
      counts its time inside ``env.step``;
    - lockstep: all envs step together, one command round per step through the pipes (as SB3's
      ``VecEnv`` steps them in training), so the slowest env sets the pace.

    Episode ends inside a run reset the env untimed (in lockstep the others wait for it).

    Args:
        counts: parallel env counts (each 1..10; first + N - 1 <= 9).
        steps: timed env steps per env and run.
        warmup: untimed steps per env after the reset.
        flight_stack: ``"auto"`` (PX4 when found), ``"px4"`` or ``"cascade"``; resolved once.
        first_instance: PX4 instance of env 0; None: ``env_cfg.px4.instance``.
        env_cfg: ``PX4EnvCfg`` (default: the packaged evaluation config, render off); its episode
            length is raised so no episode ends within the runs.
        progress: a tqdm bar over the counts.

    Raises:
        ConfigError: a bad count or instance range (before anything starts), ``steps < 1``.
        PX4Unavailable: ``"px4"`` without PX4, or a PX4 that fails (every PX4 is stopped first).
    """
    from dataclasses import replace

    from flyby.envs.px4_env import FLIGHT_STACK_LABELS, resolve_flight_stack
    from flyby.errors import ConfigError
    from flyby.training.parallel import check_px4_instances, make_px4_pool

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1 or warmup < 0:
        raise ConfigError([f"steps: {steps!r} must be an integer >= 1 and warmup {warmup!r} >= 0"])
    if env_cfg is None:
        from flyby.config.evaluation import load_evaluation_cfg

        env_cfg = load_evaluation_cfg().px4_env
    first = env_cfg.px4.instance if first_instance is None else first_instance
    counts = [int(n) if not isinstance(n, bool) else n for n in counts]
    for n in counts:
        check_px4_instances(n, first)
    length_s = max(env_cfg.episode_length_s, 1.5 * (warmup + 2 * steps) * env_cfg.step_dt)
    cfg = replace(env_cfg, episode_length_s=length_s, render_interval=1)
    stack = resolve_flight_stack(flight_stack, cfg.px4)
    rows = []
    it = counts
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(counts, desc="PX4ISR-v0 parallel instances", unit="count")
    for n in it:
        with make_px4_pool(cfg, stack.value, n, first) as pool:
            for j in range(n):
                pool.send(j, "run", _bench_prepare, (j, warmup))
            for j in range(n):
                pool.recv(j)
            t0 = time.perf_counter()
            for j in range(n):
                pool.send(j, "run", _bench_free_run, (steps,))
            inside = [pool.recv(j) for j in range(n)]
            free_wall = time.perf_counter() - t0
            t0 = time.perf_counter()
            for _ in range(steps):
                for j in range(n):
                    pool.send(j, "run", _bench_step, ())
                for j in range(n):
                    pool.recv(j)
            lock_wall = time.perf_counter() - t0
        rows.append(
            InstanceThroughput(
                num_instances=n,
                flight_stack=stack.value,
                flight_stack_label=FLIGHT_STACK_LABELS[stack],
                px4_instances=tuple(range(first, first + n)) if stack.value == "px4" else (),
                steps=steps,
                env_steps_per_s=n * steps / free_wall,
                per_instance_steps_per_s=tuple(steps / s for s in inside),
                lockstep_env_steps_per_s=n * steps / lock_wall,
            )
        )
    return rows


def format_instance_table(rows: list[InstanceThroughput]) -> str:
    """A plain-text table of :func:`measure_px4_instances` rows."""
    lines = [
        f"{'envs':>4}  {'PX4 instances':<14} {'env steps/s (sum)':>17} {'lockstep sum':>13}  per instance"
    ]
    for r in rows:
        inst = (
            f"{r.px4_instances[0]}..{r.px4_instances[-1]}"
            if len(r.px4_instances) > 1
            else str(r.px4_instances[0])
            if r.px4_instances
            else "none (cascade)"
        )
        per = ", ".join(f"{v:.0f}" for v in r.per_instance_steps_per_s)
        lines.append(
            f"{r.num_instances:>4}  {inst:<14} {r.env_steps_per_s:>17.1f} "
            f"{r.lockstep_env_steps_per_s:>13.1f}  {per}"
        )
    return "\n".join(lines)
