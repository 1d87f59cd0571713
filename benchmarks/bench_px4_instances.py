"""Benchmark ``PX4ISR-v0`` throughput at 1, 2 and 4 parallel PX4 SITL instances.

Each count N starts N ``PX4ISR-v0`` envs in worker processes (render off), env ``j`` on PX4
instance ``first + j`` (TCP 4560 + i, UDP 14540 + i), as parallel evaluation
(``flyby evaluate --px4-instances N``) and PX4 training (``flyby train --env full``) run
them. It prints the flight stack, the env steps/s summed over the instances (free-running,
as evaluation steps them, and in lockstep, as SB3's VecEnv steps them in training) and each
instance's own rate. Every PX4 is stopped after each count, also on errors and Ctrl-C.

PX4 SITL lockstep runs as fast as the CPU allows, so the sum grows with N only while free
cores remain (one PX4 plus one env process per instance); numbers on a shared machine are
indicative.

    PX4_DIR=/path/to/PX4-Autopilot python benchmarks/bench_px4_instances.py
    python benchmarks/bench_px4_instances.py --px4-instances 1,2,4 --first-instance 2 --steps 500 \\
        --json output/metrics/px4_instances.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="PX4ISR-v0 env steps/s (render off, summed over instances) at several counts of parallel "
        "PX4 SITL instances.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--px4-instances",
        default="1,2,4",
        help="comma-separated counts of parallel instances (each 1..10; first + N - 1 <= 9)",
    )
    p.add_argument(
        "--first-instance",
        type=int,
        default=None,
        help="PX4 instance of the first env (default: evaluation_config.yaml's px4.instance, 0)",
    )
    p.add_argument("--steps", type=int, default=500, help="timed env steps per env, per run")
    p.add_argument("--warmup", type=int, default=25, help="untimed env steps per env after the reset")
    p.add_argument(
        "--flight-stack",
        choices=("auto", "px4", "cascade"),
        default="auto",
        help="auto: PX4 SITL when found (PX4_DIR or px4 on PATH), else the built-in cascade",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT))
    from flyby.bench import format_instance_table, machine_info, measure_px4_instances
    from flyby.errors import FlybyError

    try:
        counts = [int(c) for c in args.px4_instances.split(",") if c.strip()]
    except ValueError:
        print(
            f"bench_px4_instances: --px4-instances {args.px4_instances!r} must be comma-separated integers "
            "like 1,2,4",
            file=sys.stderr,
        )
        return 2
    if not counts:
        print("bench_px4_instances: --px4-instances is empty; pass counts like 1,2,4", file=sys.stderr)
        return 2
    machine = machine_info()
    print("machine:", ", ".join(f"{k} {v}" for k, v in machine.items()))
    try:
        rows = measure_px4_instances(
            counts,
            steps=args.steps,
            warmup=args.warmup,
            flight_stack=args.flight_stack,
            first_instance=args.first_instance,
            progress=True,
        )
    except FlybyError as exc:
        print(f"bench_px4_instances: {exc}", file=sys.stderr)
        return 2
    print(
        f"\nPX4ISR-v0, render off, flight stack: {rows[0].flight_stack_label}; "
        f"{args.steps} timed steps per env "
        "(free-running sum, lockstep sum as SB3 training steps, each instance's own rate):"
    )
    print(format_instance_table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine, "rows": [r.as_dict() for r in rows]}, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
