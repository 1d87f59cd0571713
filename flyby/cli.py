"""The ``flyby`` command line: ``flyby info``, ``flyby bench``, ``flyby record``, ``flyby tune``,
``flyby train``, ``flyby evaluate``."""

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
    note = f"{args.steps} steps, median of {args.repeats} runs" if args.repeats > 1 else f"{args.steps} steps"

    def median_run(measure):
        runs = sorted((measure() for _ in range(args.repeats)), key=lambda r: r.drone_steps_per_s)
        return runs[len(runs) // 2]

    print(f"\nDirectISR-v0 (1 drone, training config, no render), {note}:")
    single = median_run(lambda: measure_single_env(gym.make("flyby/DirectISR-v0"), steps=args.steps))
    print(format_table([single]))
    counts = [int(c) for c in args.drones.split(",")]
    print(f"\nMultiDroneISR-v0 (training config: state + ground-truth detections, render skipped), {note}:")
    rows = [median_run(lambda n=n: scaling_table([n], steps=args.steps)[0]) for n in counts]
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


def _cmd_record(args: argparse.Namespace) -> int:
    if not args.duration > 0:
        print(f"flyby record: --duration must be > 0 seconds, got {args.duration}", file=sys.stderr)
        return 2
    from flyby.envs.px4_env import PX4ISREnv
    from flyby.training.record import excitation_sequences, record_trajectories, save_log

    env = PX4ISREnv(flight_stack=args.flight_stack)
    try:
        step_dt = env.cfg.step_dt
        commands = excitation_sequences(args.kind, args.duration, step_dt, args.seed)
        print(f"flight stack : {env.flight_stack_label}")
        print(f"excitation   : {args.kind}, {len(commands)} steps of {step_dt} s (seed {args.seed})")
        what = f"{args.kind} {args.duration:g} s seed {args.seed}"
        log = record_trajectories(env, commands, seed=args.seed, progress=True, excitation=what)
    finally:
        env.close()
    path = save_log(log, args.out or f"output/logs/excitation_seed{args.seed}.npz")
    print(f"recorded     : {log.duration_s:.1f} s in {log.meta['episodes']} episode(s), "
          f"config fingerprint {log.meta['fingerprint']}")
    print(f"wrote {path}")
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from flyby.training.tune_dynamics import run_tuning

    run_tuning(
        args.logs, held_out=args.held_out, out=args.out, plot=args.plot, dynamics_path=args.dynamics,
        ablation=args.ablation,
    )
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from flyby.training.train import FULL_NUM_ENVS, check_budget, load_ppo_cfg, save_model, train_ppo

    check_budget(args.budget_s)
    ppo_cfg = load_ppo_cfg(args.ppo_config)
    num_envs = args.num_envs or (16 if args.env == "direct" else FULL_NUM_ENVS)
    out = args.out or f"output/models/{args.env}.zip"
    label = "MultiDroneISR-v0 (direct dynamics)" if args.env == "direct" else "PX4ISR-v0 (cascade, render off)"
    print(f"PPO on {label}, {num_envs} parallel env(s), budget {args.budget_s:g} s wall clock, seed {args.seed}")
    result = train_ppo(
        args.env, budget_s=args.budget_s, seed=args.seed, total_timesteps_cap=args.timesteps_cap,
        ppo_kwargs=ppo_cfg, num_drones=num_envs, num_envs_full=num_envs, episode_length_s=args.episode_length_s,
    )
    path = save_model(result, out)
    last = result.learning_curve[-1].mean_return if result.learning_curve else float("nan")
    print(f"trained: {result.env_steps:,} env steps, {result.episodes} episodes in {result.wall_s:.1f} s "
          f"({result.env_steps / result.wall_s:,.0f} steps/s); last mean training return {last:+.2f}")
    print(f"wrote {path} (and {path.with_suffix('.json').name})")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from flyby.training.evaluate import (
        RandomPolicy, ZeroPolicy, evaluate_policy_full_fidelity, parse_seeds, reference_return,
    )

    seeds = parse_seeds(args.seeds)
    if args.model in ("random", "zero"):
        policy, label = (RandomPolicy(), "random") if args.model == "random" else (ZeroPolicy(), "zero-action")
    else:
        if not Path(args.model).is_file():
            print(f"flyby evaluate: no model at {args.model!r}; train one with `flyby train` "
                  "or pass 'random' / 'zero'", file=sys.stderr)
            return 2
        from flyby.training.train import require_sb3

        require_sb3()
        from stable_baselines3 import PPO

        policy, label = PPO.load(args.model, device="cpu"), Path(args.model).stem
    kw = {"episode_length_s": args.episode_length_s, "flight_stack": args.flight_stack}
    print(f"PX4ISR-v0 ({args.flight_stack}), {len(seeds)} episode(s), seeds {args.seeds}:")
    results = [evaluate_policy_full_fidelity(policy, seeds, deterministic=not args.stochastic, label=label,
                                             progress=True, **kw)]
    print(results[0].describe())
    if not args.no_references and args.model not in ("random", "zero"):
        for ref in (RandomPolicy(), ZeroPolicy()):
            results.append(evaluate_policy_full_fidelity(ref, seeds, label=ref.label, **kw))
            print(results[-1].describe())
        print(f"reference (better of random and zero-action): {reference_return(results[1], results[2]):+.2f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"seeds": seeds, "results": [r.as_dict() for r in results]}, indent=2))
        print(f"wrote {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flyby", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print the backend, GL platform and GPU flyby would use")
    info.add_argument("--backend", default=None, help="mujoco or isaac (default: automatic)")
    info.set_defaults(func=_cmd_info)
    bench = sub.add_parser("bench", help="measure env throughput, render time and encode speed")
    bench.add_argument("--steps", type=int, default=1000, help="timed env steps per measurement (default 1000)")
    bench.add_argument("--drones", default="1,4,16,32", help="comma-separated drone counts (default 1,4,16,32)")
    bench.add_argument("--repeats", type=int, default=3,
                       help="runs per env throughput figure; the median is printed (default 3)")
    bench.add_argument("--render-frames", type=int, default=20, help="rendered frames to time (default 20)")
    bench.add_argument("--no-render", action="store_true", help="skip the rendering and encoding figures")
    bench.add_argument("--no-full-fidelity", action="store_true", help="skip the PX4ISR-v0 (cascade) figures")
    bench.add_argument("--backend", default=None, help="mujoco or isaac (default: automatic)")
    bench.add_argument("--json", default=None, help="also write the figures to this JSON file")
    bench.set_defaults(func=_cmd_bench)
    record = sub.add_parser("record", help="fly the full-fidelity env on an excitation set and log the trajectory")
    record.add_argument("--duration", type=float, default=120.0, help="seconds of excitation (default 120)")
    record.add_argument("--seed", type=int, default=0, help="excitation and reset seed (default 0)")
    record.add_argument("--kind", default="all", choices=("all", "steps", "ramps", "chirps", "ou"),
                        help="excitation kind (default all: every kind in turn)")
    record.add_argument("--flight-stack", default="auto", choices=("auto", "cascade", "px4"),
                        help="flight stack of PX4ISR-v0 (default auto: PX4 when found, else the cascade)")
    record.add_argument("--out", default=None, help="log file (default output/logs/excitation_seed<seed>.npz)")
    record.set_defaults(func=_cmd_record)
    tune = sub.add_parser("tune", help="fit the direct dynamics to recorded logs; write dynamics_config.yaml")
    tune.add_argument("logs", nargs="+", help="training logs (.npz from `flyby record`)")
    tune.add_argument("--held-out", required=True, help="log kept out of the fit, for the reported errors")
    tune.add_argument("--out", default="output/tuned/dynamics_config.yaml", help="tuned YAML to write (default output/tuned/dynamics_config.yaml)")
    tune.add_argument("--plot", default="output/tuned/tuning.png", help="PNG of matched trajectories (default output/tuned/tuning.png; '' for none)")
    tune.add_argument("--dynamics", default="dynamics_config.yaml",
                      help="current dynamics config: action scale and noise are kept from it (default: packaged)")
    tune.add_argument("--ablation", action="store_true",
                      help="also refit with each model extension left out and print what each one buys (slower)")
    tune.set_defaults(func=_cmd_tune)
    train = sub.add_parser("train", help="train PPO on the direct or full-fidelity env within a wall-clock budget")
    train.add_argument("--env", required=True, choices=("direct", "full"),
                       help="direct: MultiDroneISR-v0 (direct dynamics); full: PX4ISR-v0 (cascade, render off)")
    train.add_argument("--budget-s", type=float, default=60.0, help="wall-clock training budget in s (default 60)")
    train.add_argument("--seed", type=int, default=0, help="seed of PPO and the training envs (default 0)")
    train.add_argument("--out", default=None, help="model zip to write (default output/models/<env>.zip)")
    train.add_argument("--num-envs", type=int, default=None,
                       help="parallel envs: drones for direct (default 16), PX4ISR-v0 copies for full (default 4)")
    train.add_argument("--episode-length-s", type=float, default=None,
                       help="training episode length in s (default: the env config's)")
    train.add_argument("--timesteps-cap", type=int, default=None, help="also stop after this many env steps")
    train.add_argument("--ppo-config", default="ppo_config.yaml",
                       help="YAML with a ppo: section (default: the packaged ppo_config.yaml)")
    train.set_defaults(func=_cmd_train)
    evaluate = sub.add_parser("evaluate", help="score a model in PX4ISR-v0 over fixed seeds (mean return, 95%% CI)")
    evaluate.add_argument("model", help="model zip from `flyby train`, or 'random' / 'zero' for a reference policy")
    evaluate.add_argument("--seeds", default="0..9", help="episode seeds: '0..9' (inclusive), '1,4,7' (default 0..9)")
    evaluate.add_argument("--episode-length-s", type=float, default=None,
                          help="episode length in s (default: evaluation_config.yaml's)")
    evaluate.add_argument("--flight-stack", default="cascade", choices=("cascade", "px4", "auto"),
                          help="flight stack of PX4ISR-v0 (default cascade)")
    evaluate.add_argument("--stochastic", action="store_true", help="sample actions instead of the mean action")
    evaluate.add_argument("--no-references", action="store_true",
                          help="skip the random-policy and zero-action references")
    evaluate.add_argument("--json", default=None, help="also write the per-episode results to this JSON file")
    evaluate.set_defaults(func=_cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("steps", "repeats"):
        if getattr(args, name, 1) < 1:
            print(f"flyby: --{name} must be >= 1, got {getattr(args, name)}", file=sys.stderr)
            return 2
    try:
        return args.func(args)
    except FlybyError as exc:
        print(f"flyby {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
