"""The ``flyby`` command line: ``flyby info``, ``flyby bench``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from flyby.errors import FlybyError


def _cmd_info(args: argparse.Namespace) -> int:
    from flyby.sim.base import select_backend_kind
    from flyby.utils.gpu import gpu_summary

    kind = select_backend_kind(args.backend)
    print(f"backend      : {kind.value} (explicit > FLYBY_BACKEND > isaac if present with a GPU > mujoco)")
    if kind.value == "mujoco":
        from flyby.sim.gl import gl_platform

        print(f"MuJoCo GL    : {gl_platform()}")
    print("flight stack : direct dynamics in the training envs (no PX4 in the loop)")
    print(f"GPU          : {gpu_summary()}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import gymnasium as gym

    import flyby  # noqa: F401  (registers the envs)
    from flyby.bench import format_table, machine_info, measure_single_env, scaling_table

    results: dict = {"machine": machine_info()}
    print("machine:", ", ".join(f"{k} {v}" for k, v in results["machine"].items()))
    print(f"\nDirectISR-v0 (1 drone, training config, no render), {args.steps} steps:")
    single = measure_single_env(gym.make("flyby/DirectISR-v0"), steps=args.steps)
    print(format_table([single]))
    counts = [int(c) for c in args.drones.split(",")]
    print(f"\nMultiDroneISR-v0 (training config: state + ground-truth detections, render skipped), {args.steps} steps:")
    rows = scaling_table(counts, steps=args.steps)
    print(format_table(rows))
    results["direct"] = single.as_dict()
    results["multi_drone"] = [r.as_dict() for r in rows]
    if not args.no_render:
        results["render"] = _bench_render(args)
    if not args.no_full_fidelity:
        results["full_fidelity"] = _bench_full_fidelity(args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
        print(f"\nwrote {args.json}")
    return 0


def _bench_render(args: argparse.Namespace) -> dict:
    import numpy as np

    from flyby.envs.multi_drone_env import MultiDroneISREnv
    from flyby.policies import SmoothPatrolPolicy

    env = MultiDroneISREnv(num_drones=16, render_mode="rgb_array", backend=args.backend)
    obs, _ = env.reset(seed=0)
    policy = SmoothPatrolPolicy(16, env.task.layout)
    renderer = env.renderer
    grid_ms, over_ms = [], []
    frames = []
    for i in range(args.render_frames + 2):
        for _ in range(env.cfg.render_interval):
            obs, *_ = env.step(policy(obs))
        t0 = time.perf_counter()
        tiles, _ = renderer.cameras()
        t1 = time.perf_counter()
        overview = renderer.overview()
        t2 = time.perf_counter()
        if i >= 2:  # first renders build GL state
            grid_ms.append((t1 - t0) * 1e3)
            over_ms.append((t2 - t1) * 1e3)
        frames.append(overview)
    print(f"\nrendering ({renderer.backend.description}):")
    print(f"  16 drone cameras at 80x80 : {np.mean(grid_ms):7.1f} ms per grid ({1e3 / np.mean(grid_ms):.1f} grids/s)")
    print(f"  640x480 overview          : {np.mean(over_ms):7.1f} ms per frame")
    out = {"grid_16x80x80_ms": float(np.mean(grid_ms)), "overview_640x480_ms": float(np.mean(over_ms))}
    try:
        from pytest_video_plugin.encode import H264Writer
    except ImportError:
        print("  MP4 encode: skipped (pip install 'flyby[video]')")
    else:
        import tempfile

        clip = frames[2:] * max(1, 120 // max(len(frames) - 2, 1))
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            with H264Writer(Path(tmp) / "bench.mp4", fps=15) as writer:
                for frame in clip:
                    writer.write(frame)
            fps = len(clip) / (time.perf_counter() - t0)
        print(f"  H.264 encode 640x480      : {fps:7.0f} frames/s ({len(clip)} frames)")
        out["encode_640x480_fps"] = fps
    env.close()
    return out


def _bench_full_fidelity(args: argparse.Namespace) -> list[dict]:
    from dataclasses import replace

    from flyby.enums import ResolutionPreset
    from flyby.envs.px4_env import PX4ISREnv
    from flyby.policies import SmoothPatrolPolicy
    from flyby.training.evaluation_cfg import load_evaluation_cfg

    base = load_evaluation_cfg().px4_env
    cases = [
        ("render off", base, None),
        ("render every 4th, training 128x128", replace(
            base, render_interval=4, render=replace(base.render, preset=ResolutionPreset.TRAINING)), "rgb_array"),
        ("render every step, evaluation 320x240", replace(
            base, render_interval=1, render=replace(base.render, preset=ResolutionPreset.EVALUATION)), "rgb_array"),
        ("render every step, full 640x480", replace(
            base, render_interval=1, render=replace(base.render, preset=ResolutionPreset.FULL)), "rgb_array"),
    ]
    steps = max(50, args.steps // 5)
    rows = []
    label = None
    for name, cfg, mode in cases:
        env = PX4ISREnv(cfg, flight_stack="cascade", render_mode=mode)
        label = env.flight_stack_label
        obs, _ = env.reset(seed=0, options={"pos_w": [0.0, 0.0, 40.0], "yaw_rad": 0.0})
        policy = SmoothPatrolPolicy(1, env.task.layout, seed=0)
        t0 = time.perf_counter()
        for _ in range(steps):
            obs, *_ = env.step(policy(obs[None])[0])
        wall = time.perf_counter() - t0
        env.close()
        rows.append({"case": name, "steps": steps, "steps_per_s": steps / wall,
                     "real_time_factor": steps * cfg.step_dt / wall})
    print(f"\nPX4ISR-v0 full fidelity ({label}; {1 / base.physics_dt:.0f} Hz physics, "
          f"{1 / base.step_dt:.0f} Hz control), {steps} steps:")
    for r in rows:
        print(f"  {r['case']:<40} {r['steps_per_s']:8.1f} steps/s  {r['real_time_factor']:6.1f}x real time")
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flyby", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print the backend, GL platform and GPU flyby would use")
    info.add_argument("--backend", default=None, help="mujoco or isaac (default: automatic)")
    info.set_defaults(func=_cmd_info)
    bench = sub.add_parser("bench", help="measure env throughput, render time and encode speed")
    bench.add_argument("--steps", type=int, default=1000, help="timed env steps per measurement (default 1000)")
    bench.add_argument("--drones", default="1,4,16,32", help="comma-separated drone counts (default 1,4,16,32)")
    bench.add_argument("--render-frames", type=int, default=20, help="rendered frames to time (default 20)")
    bench.add_argument("--no-render", action="store_true", help="skip the rendering and encoding figures")
    bench.add_argument("--no-full-fidelity", action="store_true", help="skip the PX4ISR-v0 (cascade) figures")
    bench.add_argument("--backend", default=None, help="mujoco or isaac (default: automatic)")
    bench.add_argument("--json", default=None, help="also write the figures to this JSON file")
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "steps", 1) < 1:
        print(f"flyby: --steps must be >= 1, got {args.steps}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except FlybyError as exc:
        print(f"flyby {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
