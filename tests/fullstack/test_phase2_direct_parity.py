"""Phase 2 gate: the tuned direct dynamics matches the full-fidelity flight, and is >= 100x faster.

1. **Parity.** Held-out excitation sequences (steps, ramps, chirps, smooth random
   commands; ``held_out_seeds``, never used for tuning, which flew seeds 0 and 6) are
   flown in ``PX4ISR-v0`` with ``--flight-stack`` (``auto``: PX4 SITL when found, else
   the built-in cascade). From every logged state, the direct model is rolled out open
   loop on the logged commands; the position error after 1 s and 5 s is reported per
   seed and pooled, for the untuned seed model (``DirectDynamicsCfg()``) and the model
   tuned to that flight stack by ``flyby tune``: the packaged
   ``flyby/config/dynamics_config.yaml`` (the PX4 SITL fit) against PX4, and
   ``dynamics_config_cascade.yaml`` against the cascade. Asserted on the pooled
   windows: the tuned mean error after 5 s is below ``max_tuned_error_5s_m`` and >=
   ``min_error_reduction`` times smaller than the seed model's.

   Why 2 m after 5 s, from the data: against PX4 the tuned model's own training
   residual after 5 s is 0.93 m and the five held-out 60 s sequences give 0.78-1.66 m
   per sequence (1.11 m pooled, 3.3x below the seed model's 3.67 m); against the
   cascade, 0.59-1.56 m (0.96 m pooled). 2 m is about twice the pooled figures, so a
   regression of the model or of the flight stack fails the gate while the spread
   between sequences does not. Physically, a 5 s open-loop window at the excitation's
   speeds (up to 10 m/s) covers 20-50 m of flight, and 2 m is a fifth of the
   10 m coverage cell and far inside the camera footprint at patrol altitude
   (about 30 m radius at 40 m): a policy sees the same cells and targets. Closed-loop
   policies correct drift every step, so open-loop error is the pessimistic measure.
   The rollouts are deterministic (noise off, seeded flight): with the cascade the
   figures repeat run to run; PX4 SITL is not bit-reproducible (offboard setpoints
   travel over UDP outside the lockstep), so against PX4 they move by a few percent.

2. **Throughput**, measured in the same run on ``phase2.kernel`` (``FLYBY_KERNEL``,
   named in the header): the seed plan's direct dynamics env, ``DirectISR-v0`` (one
   drone, training configuration, ground-truth observations, no render), asserted
   >= 2,000 steps/s; and the direct dynamics on its training configuration
   (``MultiDroneISR-v0``, 16 drones; FPS = agent transitions per second, as every
   gate counts) against the full-fidelity env in its evaluation configuration
   (flight stack + rotor physics, rendering every step at the ``evaluation`` preset:
   the seed plan's 60-FPS baseline), ratio asserted >= 100x. Reported, not asserted:
   the 16-drone FPS and the render-off ratio (the cost of the flight stack and rotor
   physics alone).

3. **Video**: the direct env (left) and the full-fidelity env (right) fly the same
   held-out command sequence from the same start, each with its reward, the
   position error between them, and a top-down plot of both paths.
"""

from __future__ import annotations

import time
from dataclasses import replace

import cv2
import numpy as np
import pytest
from gate_cfg import JUDGED_HORIZON_S, load_gate_cfg
from gate_overlays import truth_boxes

from flyby.bench import measure_single_env, measure_vector_env
from flyby.config import load_yaml
from flyby.config.dynamics import DirectDynamicsCfg
from flyby.config.evaluation import load_evaluation_cfg
from flyby.config.training import load_training_cfg
from flyby.enums import ResolutionPreset
from flyby.envs.direct_env import DirectISREnv
from flyby.envs.multi_drone_env import MultiDroneISREnv
from flyby.envs.px4_env import PX4ISREnv
from flyby.perception.gt import GroundTruthDetector
from flyby.training.record import excitation_sequences, record_trajectories
from flyby.training.tune_dynamics import open_loop_errors
from pytest_video_plugin import Text, side_by_side

# The gate's floors, for the plugin's threshold markers (evaluated at collection; the test reads the same
# section from the gate_cfg fixture).
PHASE2 = load_gate_cfg().phase2
CASCADE_FIT = "dynamics_config_cascade.yaml"  # packaged: the direct model fitted to the built-in cascade
DYNAMICS_FILES = {"px4": "dynamics_config.yaml", "cascade": CASCADE_FIT}


def _time_full_fidelity(cfg, gate, render: bool, flight_stack: str) -> float:
    """Steps/s of ``gate.throughput_steps`` full-fidelity steps of the timing excitation (wall clock)."""
    steps = gate.throughput_steps
    env = PX4ISREnv(cfg, flight_stack=flight_stack, render_mode="rgb_array" if render else None)
    try:
        env.reset(seed=0, options={"pos_w": np.array(gate.start_pos_w), "yaw_rad": 0.0})
        commands = excitation_sequences(
            "all", steps * cfg.step_dt, cfg.step_dt, seed=gate.throughput_command_seed
        )
        t0 = time.perf_counter()
        for k in range(steps):
            env.step(commands[k])
        return steps / (time.perf_counter() - t0)
    finally:
        env.close()


@pytest.mark.phase2
@pytest.mark.min_fps(PHASE2.min_direct_fps, metric="direct_fps")
@pytest.mark.min_fps(PHASE2.min_speedup, metric="speedup_vs_full_eval")
def test_phase2_direct_parity(flight_stack, video_recorder, stack_strings, gate_cfg, monkeypatch):
    gate = gate_cfg.phase2
    monkeypatch.setenv("FLYBY_KERNEL", gate.kernel.value)  # every env below, timed or not
    video_recorder.set_latest_name("parity_comparison")  # the seed plan's name in output/videos/
    train = load_training_cfg()
    # The model tuned to the flight stack that flies the held-out sequences.
    tuned = train.direct_env.dynamics if flight_stack == "px4" else load_yaml(DirectDynamicsCfg, CASCADE_FIT)
    seed_model = DirectDynamicsCfg()  # the seed plan's model (the action scale is the env's ActionCfg)
    eval_cfg = load_evaluation_cfg().px4_env
    step_dt = eval_cfg.step_dt

    # 1. Parity on held-out commands, per sequence and pooled over every window.
    seeds = list(gate.held_out_seeds)
    duration_s = gate.held_out_duration_s
    horizons_s = gate.error_horizons_s
    env = PX4ISREnv(eval_cfg, flight_stack=flight_stack)
    errors = {name: {h: [] for h in horizons_s} for name in ("untuned", "tuned")}
    try:
        stack_label = env.flight_stack_label
        video_recorder.set_header(
            backend=stack_strings["backend"],
            flight_stack=stack_label,
            config=f"FLYBY_KERNEL={gate.kernel.value}",
        )
        video_recorder.record_metric("flight_stack", stack_label)
        video_recorder.record_metric("tuned_model", DYNAMICS_FILES[flight_stack])
        print(
            f"\nPhase 2 parity ({stack_label}, tuned model {DYNAMICS_FILES[flight_stack]}; "
            f"held-out seeds {seeds}, {duration_s:.0f} s each): "
            f"open-loop position error after {' / '.join(f'{h:g}' for h in horizons_s)} s, mean over windows"
        )
        for seed in seeds:
            log = record_trajectories(
                env, excitation_sequences("all", duration_s, step_dt, seed=seed), seed=seed
            )
            row = []
            for name, cfg in (("untuned", seed_model), ("tuned", tuned)):
                by_h = open_loop_errors(cfg, log, horizons_s=horizons_s)
                for h, e in by_h.items():
                    errors[name][h].append(e)
                row.append(f"{name} " + " / ".join(f"{by_h[h].mean():4.2f}" for h in horizons_s) + " m")
            print(f"  seed {seed:>3} ({len(by_h[JUDGED_HORIZON_S])} windows): " + "   ".join(row))
    finally:
        env.close()
    pooled = {name: {h: np.concatenate(e) for h, e in by_h.items()} for name, by_h in errors.items()}
    for name, by_h in pooled.items():
        cells = "   ".join(
            f"{h:.0f} s: {e.mean():5.2f} (p95 {np.percentile(e, 95):5.2f}) m" for h, e in by_h.items()
        )
        print(f"  pooled {name:<8} {cells}")
        for h, e in by_h.items():
            video_recorder.record_metric(f"error_{name}_{h:.0f}s_m", float(e.mean()))
    tuned_5, seed_5 = pooled["tuned"][JUDGED_HORIZON_S].mean(), pooled["untuned"][JUDGED_HORIZON_S].mean()
    video_recorder.record_metric("error_reduction_5s", float(seed_5 / tuned_5))
    print(
        f"  5 s error reduction: {seed_5 / tuned_5:.2f}x (floor {gate.min_error_reduction}x); "
        f"tuned {tuned_5:.2f} m (ceiling {gate.max_tuned_error_5s_m} m)"
    )

    # 2. Throughput, same run, in interleaved rounds. The ratio is the median of the per-round
    # ratios: a load spike on a shared machine lands in one round, and hits both sides of it alike.
    eval_render = replace(
        eval_cfg, render_interval=1, render=replace(eval_cfg.render, preset=ResolutionPreset.EVALUATION)
    )
    rounds = {"direct": [], "single": [], "full_eval": [], "full_off": []}
    direct_run = {"steps": gate.direct_steps, "warmup": gate.direct_warmup_steps}
    for _ in range(gate.throughput_rounds):
        multi_env, single_env = MultiDroneISREnv(cfg=train.multi_drone_env), DirectISREnv(train.direct_env)
        try:
            rounds["direct"].append(measure_vector_env(multi_env, **direct_run).drone_steps_per_s)
            rounds["single"].append(measure_single_env(single_env, **direct_run).drone_steps_per_s)
        finally:
            multi_env.close()
            single_env.close()
        rounds["full_eval"].append(_time_full_fidelity(eval_render, gate, True, flight_stack))
        rounds["full_off"].append(_time_full_fidelity(eval_cfg, gate, False, flight_stack))
    med = {k: float(np.median(v)) for k, v in rounds.items()}
    direct_fps, multi_fps, full_eval, full_off = (
        med["single"],
        med["direct"],
        med["full_eval"],
        med["full_off"],
    )
    speedup = float(np.median(np.divide(rounds["direct"], rounds["full_eval"])))
    speedup_off = float(np.median(np.divide(rounds["direct"], rounds["full_off"])))
    video_recorder.record_metric("direct_fps", direct_fps)  # DirectISR-v0, one drone: judged
    video_recorder.record_metric("direct_multi_drone_fps", multi_fps)
    video_recorder.record_metric("full_eval_steps_per_s", full_eval)
    video_recorder.record_metric("full_render_off_steps_per_s", full_off)
    video_recorder.record_metric("speedup_vs_full_eval", speedup)
    video_recorder.record_metric("speedup_vs_full_render_off", speedup_off)
    print(
        f"Phase 2 throughput (same run, FLYBY_KERNEL={gate.kernel.value}, medians of "
        f"{len(rounds['direct'])} interleaved rounds):\n"
        f"  direct dynamics, DirectISR-v0 single drone               : {direct_fps:9,.0f} steps/s "
        f"(floor {gate.min_direct_fps:,.0f})\n"
        f"  direct dynamics, MultiDroneISR-v0 x16 (training config)  : {multi_fps:9,.0f} FPS\n"
        f"  full fidelity, evaluation config (render every step 320x240): {full_eval:7,.1f} steps/s\n"
        f"  full fidelity, render off (reported)                     : {full_off:9,.1f} steps/s\n"
        f"  ratio vs evaluation config: {speedup:,.0f}x (floor {gate.min_speedup:g}x); "
        f"vs render off: {speedup_off:,.0f}x (per-round ratios: "
        f"{', '.join(f'{r:.0f}' for r in np.divide(rounds['direct'], rounds['full_eval']))})"
    )

    # 3. Side-by-side video on the same command sequence.
    commands = excitation_sequences("all", gate.video_seconds, step_dt, seed=seeds[0])
    _record_side_by_side(video_recorder, gate, train.direct_env, eval_cfg, tuned, commands, flight_stack)

    assert tuned_5 <= gate.max_tuned_error_5s_m, (
        f"tuned open-loop error after 5 s is {tuned_5:.2f} m > {gate.max_tuned_error_5s_m} m"
    )
    assert seed_5 >= gate.min_error_reduction * tuned_5, (
        f"tuning reduced the 5 s error only {seed_5 / tuned_5:.1f}x ({seed_5:.2f} -> {tuned_5:.2f} m), "
        f"need {gate.min_error_reduction}x"
    )


def _record_side_by_side(recorder, gate, direct_cfg, eval_cfg, tuned, commands, flight_stack):
    preset = ResolutionPreset.EVALUATION
    noiseless = replace(tuned, position_noise_std=0.0, velocity_noise_std=0.0)
    dcfg = replace(
        direct_cfg,
        dynamics=noiseless,
        render_interval=1,
        step_dt=eval_cfg.step_dt,
        camera=replace(direct_cfg.camera, preset=preset),
    )
    fcfg = replace(eval_cfg, render_interval=1, render=replace(eval_cfg.render, preset=preset))
    direct = DirectISREnv(dcfg, render_mode="rgb_array")
    full = PX4ISREnv(fcfg, flight_stack=flight_stack, render_mode="rgb_array")
    try:
        for env in (direct, full):
            env.reset(seed=0, options={"pos_w": np.array(gate.start_pos_w), "yaw_rad": 0.0})
        # Ground truth in each rendered view (direct renders its perception camera, full fidelity its render
        # camera).
        truth_d = GroundTruthDetector.from_world(direct.task.cfg.camera, direct.task.world)
        truth_f = GroundTruthDetector.from_world(full.backend.camera, full.task.world)
        path_d, path_f, ret_d, ret_f = [], [], 0.0, 0.0
        recorder.count_steps(
            0
        )  # the FPS counter: control steps of this side-by-side run (both envs, rendering)
        for k in range(int(gate.video_seconds / eval_cfg.step_dt)):
            _, r_d, *_ = direct.step(commands[k])
            _, r_f, _, _, info = full.step(commands[k])
            recorder.count_steps(1)
            ret_d += r_d
            ret_f += r_f
            p_d, p_f = direct.task.pos_w[0].copy(), full.task.pos_w[0].copy()
            path_d.append(p_d)
            path_f.append(p_f)
            if k % 2:
                continue  # every other control step is plenty for the video
            view_d = direct.render()
            frame = side_by_side(
                side_by_side(view_d, info["camera"], pad=4), _top_down(path_d, path_f, size=240), pad=4
            )
            x_f = view_d.shape[1] + 4
            boxes = [b.box() for b in truth_boxes(direct.task, truth_d)]
            boxes += [b.box(dx=x_f) for b in truth_boxes(full.task, truth_f)]
            recorder.add_frame(
                frame,
                boxes=boxes,
                texts=[
                    Text("direct (tuned model)", x=6, y=16, scale=0.45),
                    Text("full fidelity", x=x_f + 6, y=16, scale=0.45),
                ],
                metrics={
                    "step": k + 1,
                    "sim time s": round((k + 1) * eval_cfg.step_dt, 2),
                    "return direct": round(ret_d, 2),
                    "return full": round(ret_f, 2),
                    "position error m": round(float(np.linalg.norm(p_d - p_f)), 2),
                    "command": "[" + ", ".join(f"{c:+.2f}" for c in commands[k]) + "]",
                },
                footer="same held-out command sequence, same start; top-down: blue direct, orange full "
                "fidelity; boxes: ground truth, labelled by whether the env's observation holds the target",
            )
    finally:
        direct.close()
        full.close()


def _top_down(path_d, path_f, size: int) -> np.ndarray:
    """Both paths seen from above, auto-scaled, as a (size, size, 3) uint8 image."""
    img = np.full((size, size, 3), 30, np.uint8)
    pts = np.concatenate([np.asarray(path_d)[:, :2], np.asarray(path_f)[:, :2]])
    lo, hi = pts.min(0) - 5.0, pts.max(0) + 5.0
    scale = (size - 20) / float((hi - lo).max())

    def px(p):
        xy = (np.asarray(p)[:, :2] - lo) * scale + 10
        return np.column_stack([xy[:, 0], size - xy[:, 1]]).astype(np.int32)  # north up

    for path, colour in ((path_f, (255, 150, 40)), (path_d, (80, 160, 255))):
        cv2.polylines(img, [px(path)], False, colour, 2, cv2.LINE_AA)
    return img
