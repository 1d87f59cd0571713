"""Benchmark identical ``PX4ISR-v0`` envs in one process, stepped in turn: do they run alike?

The Phase 1 gate steps three envs in turn (A, B and the render-off ceiling), each with its own
PX4 SITL, and divides their rates. That is fair only if identical envs run alike. This script
builds ``--envs`` identical render-off envs in one thread, on the PX4 instances
``flyby.px4.launcher.shared_cpu_instances`` picks (``px4_cpu`` pins them to one CPU, as in the
gate), steps them in turn with the same scripted actions (the order rotating every step) and
prints each env's steps/s. Before flyby kept each thread's CPU set across flight stacks, only
the first env's PX4 was pinned and it read 5-13 % slower than the others.

    PX4_DIR=/path/to/PX4-Autopilot python benchmarks/bench_px4_envs_in_turn.py
    python benchmarks/bench_px4_envs_in_turn.py --envs 3 --steps 200 --repeats 3 --flight-stack cascade
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Steps/s of identical PX4ISR-v0 envs (render off) stepped in turn in one process.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--envs", type=int, default=3, help="identical envs stepped in turn (1..5)")
    p.add_argument("--steps", type=int, default=200, help="timed control steps per env")
    p.add_argument("--repeats", type=int, default=3, help="runs, each with fresh envs and PX4s")
    p.add_argument(
        "--flight-stack", default="px4", choices=("px4", "cascade"), help="flight stack of every env"
    )
    args = p.parse_args(argv)
    problems = [
        f"--{name.replace('_', '-')}: {value} must be >= {low}"
        for name, value, low in (
            ("envs", args.envs, 1),
            ("steps", args.steps, 1),
            ("repeats", args.repeats, 1),
        )
        if value < low
    ]
    if args.envs > 5:
        problems.append(
            f"--envs: {args.envs} must be <= 5 (PX4 instances are spaced by the CPU count, up to 9)"
        )
    if problems:
        p.error("; ".join(problems))
    return args


def run_once(n_envs: int, steps: int, flight_stack: str) -> list[float]:
    """Steps/s of each of ``n_envs`` identical envs stepped in turn."""
    import numpy as np

    from flyby.config.evaluation import load_evaluation_cfg
    from flyby.envs.px4_env import PX4ISREnv
    from flyby.policies import SmoothPatrolPolicy
    from flyby.px4.launcher import shared_cpu_instances

    base = load_evaluation_cfg().px4_env
    instances = shared_cpu_instances(n_envs, first=base.px4.instance)
    with ExitStack() as closing:
        envs = []
        for i in instances:
            env = PX4ISREnv(replace(base, px4=replace(base.px4, instance=i)), flight_stack=flight_stack)
            closing.callback(env.close)
            envs.append(env)
        obs = [env.reset(seed=0)[0] for env in envs]
        policy = SmoothPatrolPolicy(1, envs[0].task.layout, seed=0, altitude_frac=0.3)
        wall = np.zeros(n_envs)
        for k in range(steps):
            action = policy(obs[0][None])[0]
            for j in range(n_envs):
                e = (k + j) % n_envs
                t0 = time.perf_counter()
                obs[e] = envs[e].step(action)[0]
                wall[e] += time.perf_counter() - t0
    return [steps / w for w in wall]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT))
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(
        f"{args.envs} identical PX4ISR-v0 envs (render off, flight stack {args.flight_stack}) stepped in "
        f"turn, {args.steps} steps each; CPUs {cpus}"
    )
    for r in range(args.repeats):
        rates = run_once(args.envs, args.steps, args.flight_stack)
        spread = (max(rates) - min(rates)) / max(rates) * 100
        print(
            f"  run {r + 1}: " + " / ".join(f"{x:.1f}" for x in rates) + f" steps/s (spread {spread:.1f} %)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
