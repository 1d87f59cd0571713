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


def scaling_table(drone_counts=(1, 4, 16, 32), *, steps: int = 500, warmup: int = 50, cfg=None) -> list[Throughput]:
    """Measure ``MultiDroneISR-v0`` at each drone count on the training configuration."""
    from flyby.envs.multi_drone_env import MultiDroneISREnv

    rows = []
    for n in drone_counts:
        env = MultiDroneISREnv(num_drones=n, cfg=cfg)
        rows.append(measure_vector_env(env, steps=steps, warmup=warmup))
        env.close()
    return rows


def machine_info() -> dict[str, str]:
    """CPU, core count, Python and numpy versions: printed beside every figure."""
    import os

    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def format_table(rows: list[Throughput]) -> str:
    """A plain-text table of throughput rows."""
    lines = [f"{'drones':>6} {'steps':>6} {'wall s':>8} {'drone-steps/s':>14} {'x real time':>12}"]
    for r in rows:
        lines.append(
            f"{r.num_drones:>6} {r.steps:>6} {r.wall_s:>8.3f} {r.drone_steps_per_s:>14,.0f} {r.sim_s_per_wall_s:>12,.0f}"
        )
    return "\n".join(lines)
