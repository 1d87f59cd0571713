"""The ``flyby`` command line: ``flyby info``, ``flyby bench``, ``flyby record``, ``flyby px4-log``,
``flyby tune``, ``flyby train``, ``flyby evaluate``, ``flyby pipeline``, ``flyby report``, ``flyby export``,
``flyby usd`` and the YOLO commands."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
import time
from pathlib import Path

from flyby.errors import FlybyError


def _cmd_info(args: argparse.Namespace) -> int:
    from flyby.sim.base import select_backend_kind
    from flyby.utils.stack_info import stack_summary

    kind = select_backend_kind(args.backend)
    print(f"backend choice: {kind.value} (explicit > FLYBY_BACKEND > isaac if present with a GPU > mujoco)")
    lines = stack_summary(args.backend, args.flight_stack)
    width = max(map(len, lines))
    for name, line in lines.items():
        print(f"{name:<{width}} : {line}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import gymnasium as gym

    import flyby  # noqa: F401  (registers the envs)
    from flyby.bench import format_table, machine_info, measure_cold_start, measure_single_env, scaling_table
    from flyby.kernels import KERNEL_ENV, kernel_backend

    counts = _parse_drone_counts(args.drones)  # before any measurement
    default_kernel = kernel_backend().value  # also refuses a bad $FLYBY_KERNEL before any work
    kernels = ["numpy", "numba"] if args.kernel == "both" else [args.kernel or default_kernel]
    results: dict = {"machine": machine_info(), "by_kernel": {}}
    print("machine:", ", ".join(f"{k} {v}" for k, v in results["machine"].items()))
    note = f"{args.steps} steps, median of {args.repeats} runs" if args.repeats > 1 else f"{args.steps} steps"

    def median_run(measure):
        runs = sorted((measure() for _ in range(args.repeats)), key=lambda r: r.drone_steps_per_s)
        return runs[len(runs) // 2]

    saved = os.environ.get(KERNEL_ENV)
    try:
        for kernel in kernels:
            os.environ[KERNEL_ENV] = kernel
            print(f"\nDirectISR-v0 (1 drone, training config, no render), kernel {kernel}, {note}:")
            single = median_run(lambda: measure_single_env(gym.make("flyby/DirectISR-v0"), steps=args.steps))
            print(format_table([single]))
            print(
                f"\nMultiDroneISR-v0 (training config: state + ground-truth detections, render skipped), "
                f"kernel {kernel}, {note}:"
            )
            rows = [median_run(lambda n=n: scaling_table([n], steps=args.steps)[0]) for n in counts]
            print(format_table(rows))
            results["by_kernel"][kernel] = {
                "direct": single.as_dict(),
                "multi_drone": [r.as_dict() for r in rows],
            }
    finally:
        if saved is None:
            os.environ.pop(KERNEL_ENV, None)
        else:
            os.environ[KERNEL_ENV] = saved
    shown = results["by_kernel"].get(default_kernel) or results["by_kernel"][kernels[-1]]
    results["direct"], results["multi_drone"] = shown["direct"], shown["multi_drone"]
    if len(kernels) == 2:
        _print_kernel_speedups(results["by_kernel"])
    _print_dynamics_limit(results, counts, args.steps)
    if args.cold_start:
        print(
            "\nJIT cold start (MultiDroneISR-v0, 2 drones: import, reset and first step in a fresh process):"
        )
        cold = results["cold_start"] = measure_cold_start()
        print(
            f"  empty numba cache {cold['cold_s']:.1f} s, warm cache {cold['warm_s']:.1f} s: "
            f"compiling costs {cold['compile_s']:.1f} s once per cache folder"
        )
    if not args.no_render:
        results["render"] = _bench_render(args)
    if not args.no_full_fidelity:
        results["full_fidelity"] = _bench_full_fidelity(args)
    if args.json:
        from flyby.utils.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(results, indent=2))
        print(f"\nwrote {args.json}")
    return 0


def _print_kernel_speedups(by_kernel: dict) -> None:
    """One line per env: the compiled kernel's rate over the numpy reference's, same run."""
    ref, fast = by_kernel["numpy"], by_kernel["numba"]
    print("\nnumba kernel over numpy reference, same run:")
    pairs = [("DirectISR-v0, 1 drone", ref["direct"], fast["direct"])]
    pairs += [
        (f"MultiDroneISR-v0, {a['num_drones']} drones", a, b)
        for a, b in zip(ref["multi_drone"], fast["multi_drone"], strict=True)
    ]
    for name, a, b in pairs:
        ratio = b["drone_steps_per_s"] / a["drone_steps_per_s"]
        print(
            f"  {name:<28} {a['drone_steps_per_s']:>10,.0f} -> {b['drone_steps_per_s']:>10,.0f} "
            f"drone-steps/s ({ratio:.2f}x)"
        )


def _print_dynamics_limit(results: dict, counts: list[int], steps: int) -> None:
    """The direct dynamics alone (compiled) at each drone count, and each env figure as a share of it."""
    from flyby.bench import measure_dynamics_limit

    print(
        "\nmachine limit: the direct dynamics kernel alone (no perception, coverage, rewards, observations):"
    )
    limits = results["dynamics_limit"] = {
        n: measure_dynamics_limit(n, steps=steps) for n in sorted({1, *counts})
    }
    for kernel, figures in results["by_kernel"].items():
        rows = [("DirectISR-v0", figures["direct"])]
        rows += [("MultiDroneISR-v0", r) for r in figures["multi_drone"]]
        for name, r in rows:
            n, rate = r["num_drones"], r["drone_steps_per_s"]
            print(
                f"  {name:<17} {n:>5} drones, kernel {kernel:<5}: {rate:>11,.0f} of {limits[n]:>12,.0f} "
                f"drone-steps/s ({rate / limits[n]:.1%} of the limit)"
            )


def _parse_drone_counts(text: str) -> list[int]:
    """``"1,4,16"`` -> [1, 4, 16]; a ConfigError naming ``--drones`` and the bad entry otherwise."""
    from flyby.errors import ConfigError

    counts = []
    for part in text.split(","):
        try:
            counts.append(int(part))
        except ValueError:
            problem = f"--drones: {part.strip()!r} in {text!r} is not an integer; pass counts such as 1,4,16"
            raise ConfigError([problem]) from None
    return counts


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
    print(
        f"  16 drone cameras at 80x80 : {np.mean(grid_ms):7.1f} ms per grid "
        f"({1e3 / np.mean(grid_ms):.1f} grids/s)"
    )
    print(f"  640x480 overview          : {np.mean(over_ms):7.1f} ms per frame")
    out = {"grid_16x80x80_ms": float(np.mean(grid_ms)), "overview_640x480_ms": float(np.mean(over_ms))}
    try:
        from videokit.encode import H264Writer, require_encoder

        require_encoder()  # PyAV / OpenCV are imported on first use: ask now, not at the first frame
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
    """PX4ISR-v0 steps/s per render setting, for the cascade and (when found) PX4 SITL, in one run."""
    from dataclasses import replace

    import numpy as np

    from flyby.config.evaluation import load_evaluation_cfg
    from flyby.enums import FlightStack, ResolutionPreset
    from flyby.envs.px4_env import FLIGHT_STACK_LABELS, PX4ISREnv, resolve_flight_stack
    from flyby.policies import SmoothPatrolPolicy

    base = load_evaluation_cfg().px4_env
    cases = [
        ("render off", base, None),
        (
            "render every 4th, training 128x128",
            replace(base, render_interval=4, render=replace(base.render, preset=ResolutionPreset.TRAINING)),
            "rgb_array",
        ),
        (
            "render every step, evaluation 320x240",
            replace(base, render_interval=1, render=replace(base.render, preset=ResolutionPreset.EVALUATION)),
            "rgb_array",
        ),
        (
            "render every step, full 640x480",
            replace(base, render_interval=1, render=replace(base.render, preset=ResolutionPreset.FULL)),
            "rgb_array",
        ),
    ]
    stacks = [FlightStack.CASCADE]
    if args.full_fidelity_stacks != "cascade" and resolve_flight_stack("auto", base.px4) is FlightStack.PX4:
        stacks.append(FlightStack.PX4)
    elif args.full_fidelity_stacks == "both":
        resolve_flight_stack("px4", base.px4)  # raises PX4Unavailable with the instruction
    steps = max(50, args.steps // 5)
    warm_up = 10  # untimed steps first: the first compiled calls load the kernels
    rows = []
    rtt_us: list[np.ndarray] = []
    reset_options = {"pos_w": [0.0, 0.0, 40.0], "yaw_rad": 0.0}

    def timed_steps(env, policy, obs, count: int) -> tuple[float, np.ndarray]:
        """Seconds spent in ``count`` env steps (an episode's end resets, untimed) and the last obs."""
        wall = 0.0
        for _ in range(count):
            t0 = time.perf_counter()
            obs, _, terminated, truncated, _ = env.step(policy(obs[None])[0])
            wall += time.perf_counter() - t0
            if terminated or truncated:
                obs, _ = env.reset(options=reset_options)
        return wall, obs

    for stack in stacks:
        for name, cfg, mode in cases:
            env = PX4ISREnv(cfg, flight_stack=stack, render_mode=mode)
            try:
                obs, _ = env.reset(seed=0, options=reset_options)
                policy = SmoothPatrolPolicy(1, env.task.layout, seed=0)
                _, obs = timed_steps(env, policy, obs, warm_up)
                walls = []
                for _ in range(args.repeats):
                    wall, obs = timed_steps(env, policy, obs, steps)
                    walls.append(wall)
                if stack is FlightStack.PX4:
                    ticks = args.repeats * steps * cfg.decimation
                    rtt_us.append(env._controller.round_trip_times_s()[-ticks:] * 1e6)
            finally:
                env.close()
            wall = float(np.median(walls))
            rows.append(
                {
                    "case": name,
                    "flight_stack": stack.value,
                    "flight_stack_label": FLIGHT_STACK_LABELS[stack],
                    "steps": steps,
                    "repeats": args.repeats,
                    "steps_per_s": steps / wall,
                    "real_time_factor": steps * cfg.step_dt / wall,
                }
            )
    print(
        f"\nPX4ISR-v0 full fidelity ({1 / base.physics_dt:.0f} Hz physics, "
        f"{1 / base.step_dt:.0f} Hz control), "
        f"{steps} steps, median of {args.repeats} runs after {warm_up} untimed, env steps/s (x real time):"
    )
    for stack in stacks:
        print(f"  {FLIGHT_STACK_LABELS[stack]}")
        for r in (r for r in rows if r["flight_stack"] == stack.value):
            print(
                f"    {r['case']:<40} {r['steps_per_s']:8.1f} steps/s  "
                f"{r['real_time_factor']:6.1f}x real time"
            )
    if FlightStack.PX4 not in stacks:
        if args.full_fidelity_stacks == "cascade":
            print("  PX4 SITL: not measured (--full-fidelity-stacks cascade)")
        else:
            print("  PX4 SITL: not found (set PX4_DIR to measure it beside the cascade)")
    else:
        rtt = np.concatenate(rtt_us)
        print(
            "  PX4 lockstep round trip (HIL_SENSOR sent -> HIL_ACTUATOR_CONTROLS parsed): "
            f"mean {rtt.mean():.0f} us, "
            f"p50 {np.percentile(rtt, 50):.0f} us, p99 {np.percentile(rtt, 99):.0f} us over {rtt.size} ticks"
        )
        rows.append(
            {
                "case": "px4 lockstep round trip",
                "flight_stack": "px4",
                "rtt_mean_us": float(rtt.mean()),
                "rtt_p99_us": float(np.percentile(rtt, 99)),
            }
        )
    return rows


def _cmd_record(args: argparse.Namespace) -> int:
    if not args.duration > 0:
        print(f"flyby record: --duration must be > 0 seconds, got {args.duration}", file=sys.stderr)
        return 2
    from dataclasses import replace

    from flyby.config.evaluation import load_evaluation_cfg
    from flyby.envs.px4_env import PX4ISREnv
    from flyby.training.record import attach_px4_estimate, excitation_sequences, record_trajectories, save_log

    cfg = load_evaluation_cfg().px4_env
    if args.px4_instance is not None:
        cfg = replace(cfg, px4=replace(cfg.px4, instance=args.px4_instance))
    env = PX4ISREnv(cfg, flight_stack=args.flight_stack)
    try:
        step_dt = env.cfg.step_dt
        commands = excitation_sequences(args.kind, args.duration, step_dt, args.seed)
        print(f"flight stack : {env.flight_stack_label}")
        print(f"excitation   : {args.kind}, {len(commands)} steps of {step_dt} s (seed {args.seed})")
        what = f"{args.kind} {args.duration:g} s seed {args.seed}"
        log = record_trajectories(env, commands, seed=args.seed, progress=True, excitation=what)
    finally:
        env.close()  # stops PX4: its ULogs are written out and kept now
    out = args.out or f"output/logs/excitation_seed{args.seed}.npz"
    if "px4" in log.meta:
        try:
            attach_px4_estimate(log, env.task.dynamics.flight_stack.kept_ulogs[0])
        except FlybyError:
            path = save_log(log, out)
            print(f"wrote {path} without PX4's estimate", file=sys.stderr)
            raise
    path = save_log(log, out)
    print(
        f"recorded     : {log.duration_s:.1f} s in {log.meta['episodes']} episode(s), "
        f"config fingerprint {log.meta['fingerprint']}"
    )
    if log.has_px4_estimate:
        _print_px4_estimate(log)
    print(f"wrote {path}")
    if args.plot:
        if not log.has_px4_estimate:
            print("flyby record: --plot needs --flight-stack px4 (PX4's estimate and ULog)", file=sys.stderr)
            return 2
        from flyby.training.px4_plot import plot_px4_log

        print(f"wrote {plot_px4_log(log, args.plot, log_path=path)}")
    return 0


def _print_px4_estimate(log) -> None:
    s = log.meta["px4_estimate"]
    ulogs = [u for run in log.meta["px4"]["runs"] for u in run.get("ulogs", [])]
    print(
        f"PX4 estimate : EKF2 position error median {s['pos_err_median_m']} m, p95 {s['pos_err_p95_m']} m, "
        f"max {s['pos_err_max_m']} m; velocity error median {s['vel_err_median_mps']} m/s, "
        f"p95 {s['vel_err_p95_mps']} m/s ({s['rows']} rows, {s['rows_without_estimate']} without)"
    )
    print(f"PX4 ULogs    : {', '.join(ulogs)}")


def _cmd_px4_log(args: argparse.Namespace) -> int:
    from flyby.training.record import load_log

    log = load_log(args.log)
    if not log.has_px4_estimate:
        print(
            f"flyby px4-log: {args.log} has no PX4 estimate (flight stack {log.meta.get('flight_stack')!r}); "
            "record one with `flyby record --flight-stack px4`",
            file=sys.stderr,
        )
        return 2
    _print_px4_estimate(log)
    if args.plot:
        from flyby.training.px4_plot import plot_px4_log

        print(f"wrote {plot_px4_log(log, args.plot, log_path=args.log)}")
    return 0


def _cmd_usd(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from flyby.config.evaluation import load_evaluation_cfg
    from flyby.enums import ResolutionPreset
    from flyby.sim.usd_stage import build_usd_stage, save_usd_stage
    from flyby.world import generate_world

    if args.drones < 1:
        print(f"flyby usd: --drones must be >= 1, got {args.drones}", file=sys.stderr)
        return 2
    if Path(args.out).suffix not in (".usd", ".usda", ".usdc"):
        print(f"flyby usd: {args.out!r} must end in .usda (text), .usdc or .usd", file=sys.stderr)
        return 2
    cfg = load_evaluation_cfg().px4_env
    seed = cfg.world_seed if args.world_seed is None else args.world_seed
    preset = cfg.render.preset if args.preset is None else ResolutionPreset(args.preset)
    camera = replace(cfg.camera, preset=preset)
    world = generate_world(cfg.world, seed)
    stage = build_usd_stage(world, args.drones, camera, dynamic=cfg.multirotor if args.dynamic else None)
    path = save_usd_stage(stage, args.out)
    print(
        f"wrote {path}: world seed {seed}, {world.num_buildings} buildings, {world.num_targets} targets, "
        f"{args.drones} drone(s) with {camera.width}x{camera.height} cameras"
        + (", rigid bodies" if args.dynamic else "")
    )
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from flyby.training.tune_dynamics import run_tuning

    run_tuning(
        args.logs,
        held_out=args.held_out,
        out=args.out,
        plot=args.plot,
        dynamics_path=args.dynamics,
        ablation=args.ablation,
    )
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    if args.env == "direct" and (args.flight_stack is not None or args.first_px4_instance is not None):
        print(
            "flyby train: --flight-stack and --first-px4-instance apply to --env full only "
            "(--env direct trains on the direct dynamics)",
            file=sys.stderr,
        )
        return 2
    if args.env == "direct":
        return _train_direct(args)
    return _train_full(args)


def _train_direct(args: argparse.Namespace) -> int:
    """``flyby train`` on MultiDroneISR-v0 with the ``training:`` section of the training config."""
    from dataclasses import replace

    from flyby.config import from_dict, to_dict
    from flyby.config.training import load_training_cfg
    from flyby.training.trainer import train, training_env_cfg

    cfg = load_training_cfg(args.config, args.dynamics_config)
    tc, env_cfg = cfg.training, training_env_cfg(cfg)
    total_steps = args.total_steps if args.total_steps is not None else args.timesteps_cap
    overrides = {
        "algorithm": args.algorithm,
        "total_steps": total_steps,
        "budget_s": args.budget_s,
        "seed": args.seed,
        "num_drones": args.num_envs,
    }
    merged = {**to_dict(tc), **{k: v for k, v in overrides.items() if v is not None}}
    tc = from_dict(type(tc), merged, source="flyby train options")
    if args.episode_length_s is not None:
        env_cfg = replace(env_cfg, episode_length_s=float(args.episode_length_s))
    out = Path(args.out or f"output/models/{tc.algorithm.value.lower()}_seed{tc.seed}")
    budget = f"{tc.total_steps:,} env steps" + (f" or {tc.budget_s:g} s wall clock" if tc.budget_s else "")
    print(
        f"{tc.algorithm.value} on MultiDroneISR-v0 (direct dynamics), {tc.num_drones} drones, {budget}, "
        f"seed {tc.seed} -> {out}{' (resuming)' if args.resume else ''}"
    )
    run = train(tc, out, env_cfg=env_cfg, resume=args.resume, progress=True)
    if run.stopped_by == "already_done":
        print(f"{out} already holds a complete model ({run.env_steps:,} env steps); nothing to train")
        return 0
    print(
        f"trained {run.env_steps:,} env steps in {run.wall_s:.1f} s: "
        f"{run.steps_per_s:,.0f} steps/s end to end "
        f"(env {run.env_s:.1f} s, learner {run.learner_s:.1f} s: "
        f"learner share {100 * run.learner_share:.0f} %), "
        f"stopped by {run.stopped_by}"
    )
    print(
        f"wrote {run.model_path} with its normaliser "
        f"{run.vecnormalize_path.name if run.vecnormalize_path else '-'}, "
        f"model.json, progress.csv, eval.csv and TensorBoard logs in {out / 'tb'}"
    )
    return 0


def _train_full(args: argparse.Namespace) -> int:
    """``flyby train --env full``: PPO on PX4ISR-v0 within a wall-clock budget (the transfer baseline)."""
    from flyby.training.train import (
        FULL_NUM_ENVS,
        check_budget,
        load_ppo_cfg,
        resolve_train_flight_stack,
        save_model,
        train_ppo,
    )

    budget_s = 60.0 if args.budget_s is None else args.budget_s
    check_budget(budget_s)
    if args.resume or args.algorithm not in (None, "PPO"):
        print(
            "flyby train: --resume and --algorithm apply to the direct env; --env full trains PPO "
            "within --budget-s",
            file=sys.stderr,
        )
        return 2
    args.budget_s = budget_s
    args.seed = 0 if args.seed is None else args.seed
    ppo_cfg = load_ppo_cfg(args.ppo_config)
    num_envs = FULL_NUM_ENVS if args.num_envs is None else args.num_envs
    out = args.out or "output/models/full.zip"
    from flyby.config.evaluation import load_evaluation_cfg
    from flyby.training.parallel import check_px4_instances

    cfg = load_evaluation_cfg().px4_env
    first = cfg.px4.instance if args.first_px4_instance is None else args.first_px4_instance
    if args.flight_stack == "px4":
        check_px4_instances(num_envs, first, count_name="--num-envs", first_name="--first-px4-instance")
    stack, stack_label = resolve_train_flight_stack("full", args.flight_stack or "auto", cfg)
    label = f"PX4ISR-v0 ({stack_label}, render off)"
    if stack == "px4":
        check_px4_instances(num_envs, first, count_name="--num-envs", first_name="--first-px4-instance")
        where = (
            f"{num_envs} parallel env(s) in worker processes on PX4 instances {first}..{first + num_envs - 1}"
        )
    else:
        where = f"{num_envs} env(s) stepped in turn"
    print(f"PPO on {label}, {where}, budget {args.budget_s:g} s wall clock, seed {args.seed}")
    result = train_ppo(
        "full",
        budget_s=args.budget_s,
        seed=args.seed,
        total_timesteps_cap=args.timesteps_cap,
        ppo_kwargs=ppo_cfg,
        num_drones=num_envs,
        num_envs_full=num_envs,
        episode_length_s=args.episode_length_s,
        flight_stack=stack,
        first_px4_instance=args.first_px4_instance,
    )
    path = save_model(result, out)
    last = result.learning_curve[-1].mean_return if result.learning_curve else float("nan")
    print(
        f"trained on {result.flight_stack_label}: {result.env_steps:,} env steps, {result.episodes} episodes "
        f"in {result.wall_s:.1f} s ({result.env_steps / result.wall_s:,.0f} steps/s); "
        f"last mean training return {last:+.2f}"
    )
    print(f"wrote {path} (and {path.with_suffix('.json').name}, which records the flight stack)")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from flyby.training.evaluate import (
        POLICY_KEYS,
        eval_env_cfg,
        eval_flight_stack,
        make_baseline,
        parse_seeds,
        reference_return,
        resolve_eval_seeds,
        run_evaluation,
    )
    from flyby.training.parallel import check_px4_instances

    seeds = parse_seeds(args.seeds) if args.seeds is not None else resolve_eval_seeds(args.episodes)
    cfg = eval_env_cfg(args.episode_length_s)
    first = cfg.px4.instance if args.first_px4_instance is None else args.first_px4_instance
    check_px4_instances(
        args.px4_instances, first, count_name="--px4-instances", first_name="--first-px4-instance"
    )
    scripted = args.model in POLICY_KEYS[1:]
    if scripted:
        policy = make_baseline(args.model, cfg.step_dt)
    else:
        from flyby.training.policy_io import eval_spaces, load_policy

        policy = load_policy(
            args.model,
            observation_space=eval_spaces(cfg)[0],
            action_space=eval_spaces(cfg)[1],
            actions=cfg.actions,
        )
    label = policy.label
    baselines = [] if scripted or args.no_references else [b for b in args.baselines.split(",") if b]
    stack, stack_label = eval_flight_stack(
        args.flight_stack, cfg
    )  # resolved once: every figure flies the same
    n_envs = min(args.px4_instances, len(seeds))
    where = "1 env" if n_envs == 1 else f"{n_envs} parallel envs"
    if stack == "px4":
        where += (
            f" on PX4 instance {first}" if n_envs == 1 else f" on PX4 instances {first}..{first + n_envs - 1}"
        )
    seed_text = args.seeds if args.seeds is not None else f"{seeds[0]}..{seeds[-1]} (evaluation_config.yaml)"
    print(
        f"PX4ISR-v0, flight stack: {stack_label}; {where}; {len(seeds)} episode(s), seeds {seed_text}; "
        f"{label} beside {', '.join(baselines) or 'no baselines'}:"
    )
    video = args.video if args.video in (None, True) else Path(args.video)
    run = run_evaluation(
        policy,
        seeds=seeds,
        flight_stack=stack,
        px4_instances=n_envs,
        first_px4_instance=first,
        baselines=baselines,
        record_video=video or False,
        out_dir=args.out,
        progress=True,
        deterministic=not args.stochastic,
        label=label,
        env_cfg=cfg,
    )
    print(run.table())
    results = run.results
    if "random" in results and "zero" in results:
        print(
            f"reference (better of random and zero-action): "
            f"{reference_return(results['random'], results['zero']):+.2f} [{stack_label}]"
        )
    if run.video is not None:
        print(f"wrote {run.video.path} ({run.video.frames} frames, seed {run.video.seed})")
    if args.out:
        print(f"wrote {run.paths['metrics']} and {run.paths['tracks']} (flight stack: {stack_label})")
    if args.json:
        from flyby.utils.atomic import atomic_write_text

        legacy = [
            results[k] for k in ("trained", "random", "zero") if k in results
        ]  # the older file's policies
        atomic_write_text(
            args.json,
            json.dumps(
                {
                    "seeds": seeds,
                    "flight_stack": stack,
                    "flight_stack_label": stack_label,
                    "parallel_envs": n_envs,
                    "results": [r.as_dict() for r in legacy],
                },
                indent=2,
            ),
        )
        print(f"wrote {args.json} (flight stack: {stack_label})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flyby", description=__doc__)
    from flyby.enums import ResolutionPreset

    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print the backend, GL platform and GPU flyby would use")
    info.add_argument("--backend", default=None, help="mujoco or isaac (default: automatic)")
    info.add_argument(
        "--flight-stack",
        default="auto",
        choices=("auto", "px4", "cascade"),
        help="flight stack of PX4ISR-v0 to report (default auto: PX4 SITL when found, else the cascade)",
    )
    info.set_defaults(func=_cmd_info)
    bench = sub.add_parser("bench", help="measure env throughput, render time and encode speed")
    bench.add_argument(
        "--steps", type=int, default=1000, help="timed env steps per measurement (default 1000)"
    )
    bench.add_argument(
        "--drones", default="1,4,16,32", help="comma-separated drone counts (default 1,4,16,32)"
    )
    bench.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs per env throughput figure; the median is printed (default 3)",
    )
    bench.add_argument("--render-frames", type=int, default=20, help="rendered frames to time (default 20)")
    bench.add_argument("--no-render", action="store_true", help="skip the rendering and encoding figures")
    bench.add_argument("--no-full-fidelity", action="store_true", help="skip the PX4ISR-v0 figures")
    bench.add_argument(
        "--full-fidelity-stacks",
        default="auto",
        choices=("auto", "cascade", "both"),
        help="PX4ISR-v0 flight stacks: auto (cascade, and PX4 SITL when found; default), "
        "cascade, or both (fail without PX4)",
    )
    bench.add_argument(
        "--kernel",
        default="both",
        choices=("numba", "numpy", "both"),
        help="hot-path implementation of the env figures: numba (compiled), numpy (reference) or "
        "both, with the speed-up of one over the other (default both)",
    )
    bench.add_argument(
        "--cold-start",
        action="store_true",
        help="also time the JIT cold start (a fresh process on an empty numba cache)",
    )
    bench.add_argument("--backend", default=None, help="mujoco or isaac (default: automatic)")
    bench.add_argument("--json", default=None, help="also write the figures to this JSON file")
    bench.set_defaults(func=_cmd_bench)
    record = sub.add_parser(
        "record", help="fly the full-fidelity env on an excitation set and log the trajectory"
    )
    record.add_argument("--duration", type=float, default=120.0, help="seconds of excitation (default 120)")
    record.add_argument("--seed", type=int, default=0, help="excitation and reset seed (default 0)")
    record.add_argument(
        "--kind",
        default="all",
        choices=("all", "steps", "ramps", "chirps", "ou"),
        help="excitation kind (default all: every kind in turn)",
    )
    record.add_argument(
        "--flight-stack",
        default="auto",
        choices=("auto", "cascade", "px4"),
        help="flight stack of PX4ISR-v0 (default auto: PX4 when found, else the cascade)",
    )
    record.add_argument(
        "--out", default=None, help="log file (default output/logs/excitation_seed<seed>.npz)"
    )
    record.add_argument(
        "--px4-instance",
        type=int,
        default=None,
        help="PX4 SITL instance i (TCP 4560+i, UDP 14540+i; default: evaluation config's)",
    )
    record.add_argument(
        "--plot",
        default=None,
        help="with PX4: also write the estimator-error / velocity / motor plot to this PNG",
    )
    record.set_defaults(func=_cmd_record)
    px4_log = sub.add_parser(
        "px4-log", help="PX4's estimate in a `flyby record` log: error figures and a plot"
    )
    px4_log.add_argument("log", help="a log recorded with --flight-stack px4 (.npz)")
    px4_log.add_argument(
        "--plot", default=None, help="write the estimator-error / velocity / motor plot to this PNG"
    )
    px4_log.set_defaults(func=_cmd_px4_log)
    usd = sub.add_parser(
        "usd",
        help="write the ISR world, drones and cameras as a USD stage (what the Isaac Sim backend loads)",
        description="Write the evaluation config's world as a USD stage (metres, Z up, class labels, "
        "one camera per drone matching flyby's pinhole model); needs usd-core (pip install 'flyby[usd]').",
    )
    usd.add_argument("out", help="output file: .usda (text), .usdc or .usd")
    usd.add_argument("--drones", type=int, default=1, help="camera drones, in a row at 30 m (default 1)")
    usd.add_argument("--world-seed", type=int, default=None, help="world seed (default: evaluation config's)")
    usd.add_argument(
        "--preset",
        default=None,
        choices=[p.value for p in ResolutionPreset],
        help="drone camera resolution preset (default: evaluation config's render preset)",
    )
    usd.add_argument(
        "--dynamic", action="store_true", help="rigid-body drones with the Iris mass and inertia (physics)"
    )
    usd.set_defaults(func=_cmd_usd)
    tune = sub.add_parser("tune", help="fit the direct dynamics to recorded logs; write dynamics_config.yaml")
    tune.add_argument("logs", nargs="+", help="training logs (.npz from `flyby record`)")
    tune.add_argument("--held-out", required=True, help="log kept out of the fit, for the reported errors")
    tune.add_argument(
        "--out",
        default="output/tuned/dynamics_config.yaml",
        help="tuned YAML to write (default output/tuned/dynamics_config.yaml)",
    )
    tune.add_argument(
        "--plot",
        default="output/tuned/tuning.png",
        help="PNG of matched trajectories (default output/tuned/tuning.png; '' for none)",
    )
    tune.add_argument(
        "--dynamics",
        default="dynamics_config.yaml",
        help="current dynamics config: action scale and noise are kept from it (default: packaged)",
    )
    tune.add_argument(
        "--ablation",
        action="store_true",
        help="also refit with each model extension left out and print what each one buys (slower)",
    )
    tune.set_defaults(func=_cmd_tune)
    train = sub.add_parser(
        "train",
        help="train a policy: PPO or SAC on MultiDroneISR-v0 (direct), or PPO on PX4ISR-v0 (--env full)",
        description="Train on the multi-drone direct env with the training: section of training_config.yaml "
        "(algorithm, total_steps, batch_size, learning_rate, ...): observation normaliser beside the "
        "model, progress.csv, eval.csv and TensorBoard logs, checkpoints; --resume continues an "
        "interrupted run. --env full trains PPO on PX4ISR-v0 within a wall-clock budget instead.",
    )
    train.add_argument(
        "--env",
        default="direct",
        choices=("direct", "full"),
        help="direct (default): MultiDroneISR-v0 (direct dynamics); full: PX4ISR-v0 (render off) on the "
        "flight stack of --flight-stack",
    )
    train.add_argument(
        "--config",
        default="training_config.yaml",
        help="training config YAML (default: the packaged training_config.yaml)",
    )
    train.add_argument(
        "--dynamics-config",
        default="dynamics_config.yaml",
        help="dynamics config YAML (default: the packaged dynamics_config.yaml, fitted to PX4)",
    )
    train.add_argument(
        "--algorithm",
        default=None,
        choices=("PPO", "SAC"),
        help="override training.algorithm (direct env only)",
    )
    train.add_argument(
        "--total-steps", type=int, default=None, help="override training.total_steps (env steps)"
    )
    train.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="wall-clock budget in s (direct: overrides training.budget_s, stops at whichever budget "
        "comes first; full: default 60)",
    )
    train.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the algorithm and the envs (direct default: training.seed; full default 0)",
    )
    train.add_argument(
        "--out",
        default=None,
        help="direct: run folder (default output/models/<algorithm>_seed<seed>); full: model zip "
        "(default output/models/full.zip)",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its newest checkpoint (same config required)",
    )
    train.add_argument(
        "--num-envs",
        type=int,
        default=None,
        help="parallel envs: drones for direct (default training.num_drones), PX4ISR-v0 copies for "
        "full (default 4; with PX4 one worker process and one PX4 instance each, at most 10)",
    )
    train.add_argument(
        "--flight-stack",
        default=None,
        choices=("auto", "px4", "cascade"),
        help="--env full only: flight stack of PX4ISR-v0 (default auto: PX4 SITL when found, "
        "else the built-in cascade)",
    )
    train.add_argument(
        "--first-px4-instance",
        type=int,
        default=None,
        help="--env full with PX4: PX4 instance of the first env; env j flies instance first+j "
        "(TCP 4560+i, UDP 14540+i; instances 0..9; default: evaluation_config.yaml's px4.instance)",
    )
    train.add_argument(
        "--episode-length-s",
        type=float,
        default=None,
        help="training episode length in s (default: the env config's)",
    )
    train.add_argument(
        "--timesteps-cap",
        type=int,
        default=None,
        help="also stop after this many env steps (full; for direct the same as --total-steps)",
    )
    train.add_argument(
        "--ppo-config",
        default="ppo_config.yaml",
        help="--env full: YAML with a ppo: section (default: the packaged ppo_config.yaml)",
    )
    train.set_defaults(func=_cmd_train)
    evaluate = sub.add_parser(
        "evaluate",
        help="score a model in PX4ISR-v0 over fixed seeds beside the scripted "
        "baselines (mean return and 95%% CI, success, targets, coverage)",
    )
    evaluate.add_argument(
        "model",
        help="model zip from `flyby train` (vecnormalize.pkl and model.json beside it), a "
        "run folder, or 'random' / 'zero' / 'patrol' for a scripted policy",
    )
    evaluate.add_argument(
        "--seeds",
        default=None,
        help="episode seeds: '0..9' (inclusive), '1,4,7' (default: evaluation_config.yaml's "
        "evaluation.seeds, 1000..1009, apart from the training seeds)",
    )
    evaluate.add_argument(
        "--episodes",
        type=int,
        default=None,
        help="without --seeds: the first N of evaluation.seeds (default: all of them)",
    )
    evaluate.add_argument(
        "--episode-length-s",
        type=float,
        default=None,
        help="episode length in s (default: evaluation_config.yaml's)",
    )
    evaluate.add_argument(
        "--flight-stack",
        default="auto",
        choices=("auto", "px4", "cascade"),
        help="flight stack of PX4ISR-v0 (default auto: PX4 SITL when found, else the built-in "
        "cascade); printed beside every figure and written to the JSON",
    )
    evaluate.add_argument(
        "--px4-instances",
        type=int,
        default=1,
        help="parallel PX4ISR-v0 envs the episodes are spread over, each in its own worker "
        "process and (with PX4) on its own PX4 instance, 1..10; episode k runs seed k "
        "whatever the count, so results equal the serial ones (default 1)",
    )
    evaluate.add_argument(
        "--first-px4-instance",
        type=int,
        default=None,
        help="PX4 instance of the first env; env j flies instance first+j (TCP 4560+i, "
        "UDP 14540+i; instances 0..9; default: evaluation_config.yaml's px4.instance)",
    )
    evaluate.add_argument(
        "--stochastic", action="store_true", help="sample actions instead of the mean action"
    )
    evaluate.add_argument(
        "--no-references", action="store_true", help="skip the scripted baselines (zero, random, patrol)"
    )
    evaluate.add_argument(
        "--baselines",
        default="zero,random,patrol",
        help="comma-separated scripted baselines run on the same seeds (default zero,random,patrol)",
    )
    evaluate.add_argument(
        "--out",
        default=None,
        help="write metrics.json (schema flyby.evaluation/1, docs/evaluation_metrics.md) and "
        "tracks.json into this folder",
    )
    evaluate.add_argument(
        "--video",
        nargs="?",
        const=True,
        default=None,
        help="also record the validation video of the model's first seed: to PATH, or with no "
        "PATH to <--out>/validation.mp4 (output/videos/validation.mp4 without --out)",
    )
    evaluate.add_argument(
        "--json",
        default=None,
        help="also write the older per-episode results file (the model, random and zero-action)",
    )
    evaluate.set_defaults(func=_cmd_evaluate)
    from flyby.pipeline.run import add_pipeline_parser

    add_pipeline_parser(sub)
    from flyby.pipeline.report import add_report_parser

    add_report_parser(sub)
    from flyby.training.export import add_export_parser

    add_export_parser(sub)
    from flyby.training.compare import add_compare_parser

    add_compare_parser(sub)
    from flyby.perception.yolo_cli import add_yolo_parsers  # yolo-dataset, yolo-train, yolo-eval

    add_yolo_parsers(sub)
    return parser


# Integer options and their least allowed value, per command: a bad value ends the command with
# exit status 2 and one line naming the option and the value, before any work. Options a command
# already checks before its work, with every problem at once, are left to it: pipeline's, yolo-*'s,
# export --opset, and evaluate's --px4-instances / --first-px4-instance (check_px4_instances).
_INT_MIN: dict[str, dict[str, int]] = {
    "bench": {"steps": 1, "repeats": 1, "render_frames": 1},
    "record": {"seed": 0, "px4_instance": 0},
    "train": {"total_steps": 1, "seed": 0, "num_envs": 1, "first_px4_instance": 0, "timesteps_cap": 1},
    "evaluate": {"episodes": 1},
}

# Output options per command: "file" (a file path; its folder must take a file) or "dir" (a folder,
# made if missing). Checked before any work (flyby.utils.atomic.check_output_file / _dir), so
# a destination that cannot be written ends the command at once rather than after training.
_OUTPUTS: dict[str, dict[str, str]] = {
    "bench": {"json": "file"},
    "record": {"out": "file", "plot": "file"},
    "px4-log": {"plot": "file"},
    "tune": {"out": "file", "plot": "file"},
    "train": {"out": "dir"},  # --env full: the model zip, a file
    "evaluate": {"out": "dir", "json": "file", "video": "file"},
    "pipeline": {"output_dir": "dir"},
    "report": {"out": "file"},
    "export": {"out": "dir"},
    "compare": {"out": "file"},
    "yolo-dataset": {"out": "dir"},
    "yolo-train": {"out": "file", "run_dir": "dir"},
    "yolo-eval": {"json": "file"},
}


def _check_int_options(args: argparse.Namespace) -> str | None:
    """The first integer option below its least value, as a message; None when all are in range."""
    for dest, least in _INT_MIN.get(args.command, {}).items():
        value = getattr(args, dest, None)
        if value is not None and value < least:
            return f"--{dest.replace('_', '-')} must be >= {least}, got {value}"
    return None


def _output_paths(args: argparse.Namespace) -> list[tuple[str, str, Path]]:
    """(option, kind, path) for every output the command will write, as the command resolves them."""
    found = []
    for dest, kind in _OUTPUTS.get(args.command, {}).items():
        value = getattr(args, dest, None)
        option = f"--{dest.replace('_', '-')}"
        if args.command == "record" and dest == "out" and value is None:
            from flyby.training.record import LOG_DIR

            value = LOG_DIR / f"excitation_seed{args.seed}.npz"
        if args.command == "evaluate" and dest == "video" and value is True:
            value = Path(args.out or "output/videos") / "validation.mp4"
        if value is None or value is False or value == "":
            continue
        path = Path(value)
        if args.command == "train" and getattr(args, "env", None) == "full":
            kind = "file"
            if path.suffix != ".zip":  # save_model appends .zip
                found.append((option, kind, path))
                path = path.with_name(path.name + ".zip")
        if args.command == "record" and dest == "out" and path.suffix != ".npz":  # save_log's suffix
            found.append((option, kind, path))
            path = path.with_suffix(".npz")
        found.append((option, kind, path))
    return found


def check_outputs(args: argparse.Namespace) -> None:
    """Check every output path of a parsed command before it starts (nothing is created).

    Raises:
        OutputError: a folder where a file is needed, a file where a folder is needed, or a
            destination that cannot be created or written; one line naming the option, the path
            and the fix.
    """
    from flyby.utils.atomic import check_output_dir, check_output_file

    for option, kind, path in _output_paths(args):
        (check_output_file if kind == "file" else check_output_dir)(path, option=option)


def main(argv: list[str] | None = None) -> int:
    """Run the ``flyby`` command line; returns the exit status (2: bad input, nothing done).

    Integer options below their least value and unwritable output paths are refused before a
    command starts; any :class:`~flyby.errors.FlybyError` the command raises is printed as
    ``flyby <command>: <message>`` with status 2. Argparse's own errors exit with status 2.
    """
    args = build_parser().parse_args(argv)
    problem = _check_int_options(args)
    if problem is not None:
        print(f"flyby {args.command}: {problem}", file=sys.stderr)
        return 2
    try:
        check_outputs(args)
        return args.func(args)
    except FlybyError as exc:
        print(f"flyby {args.command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # A file-system refusal raised by a writer that does not wrap it yet (a full disk, a read-only
        # folder): one line naming the file, not a traceback. Other OSErrors (sockets, PX4) propagate.
        if exc.errno not in _FILE_SYSTEM_ERRNOS or exc.filename is None:
            raise
        logging.getLogger(__name__).debug("flyby %s failed", args.command, exc_info=True)
        print(
            f"flyby {args.command}: {exc.filename}: {exc.strerror} (free space, fix the permissions or pass "
            "another path)",
            file=sys.stderr,
        )
        return 2


_FILE_SYSTEM_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EFBIG,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
}


if __name__ == "__main__":
    sys.exit(main())
