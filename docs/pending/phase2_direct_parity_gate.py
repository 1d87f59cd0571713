# PENDING, NOT COLLECTED BY PYTEST: the Phase 2 parity gate (issue 5, still open).
# It works and passed with the tuned model, but two of its checks are not yet robust on a 2-core
# CI machine: the >= 100x throughput ratio measured 81x-106x with the tuned dynamics, and the 3x
# error reduction holds on held-out seed 101 but not on seeds 1 and 4 (1.9x-2.7x). Land it as
# tests/fullstack/test_phase2_direct_parity.py once the direct hot path is faster and the fit
# tighter. It reads the tuned model from flyby/configs/dynamics_config_cascade_tuned.yaml.
"""Phase 2 gate: the tuned direct dynamics matches the full-fidelity flight, and is >= 100x faster.

1. **Parity.** A held-out excitation sequence (steps, ramps, chirps, smooth random
   commands; a seed never used for tuning) is flown in ``PX4ISR-v0`` (PX4 SITL when
   found, else the built-in cascade). From every logged state, the direct model is
   rolled out open loop with the logged commands; the position error after 1 s and
   5 s is reported for the untuned seed model and the tuned model
   (``flyby/configs/dynamics_config.yaml``). The tuned mean error after 5 s must be
   below ``max_tuned_error_5s_m`` and >= ``min_error_reduction`` times smaller
   than the seed model's.

   Why 3 m after 5 s: a 5 s open-loop window at the excitation's typical speeds
   (up to 10 m/s) covers 20-50 m of flight; 3 m is under the 10 m coverage cell
   and well inside the camera footprint at patrol altitude (about 30 m radius at
   40 m), so a policy planning on the direct model sees the same targets and
   cells as in full fidelity. Closed-loop policies also correct drift every step,
   so open-loop error is the pessimistic measure.

2. **Throughput**, measured in the same run: the direct dynamics on its training
   configuration (``MultiDroneISR-v0``, 16 drones, ground-truth observations, no
   render; FPS = agent transitions per second, as every gate counts) against the
   full-fidelity env in its evaluation configuration (flight stack + rotor physics,
   rendering every step at the ``evaluation`` preset: the seed plan's 60-FPS
   baseline). Asserted: ratio >= 100x and direct >= 2,000 FPS. Reported, not
   asserted: the single-drone ``DirectISR-v0`` steps/s and the render-off ratio
   (the cost of the flight stack and rotor physics alone).

3. **Video**: the direct env (left) and the full-fidelity env (right) fly the same
   held-out command sequence from the same start, each with its reward, the
   position error between them, and a top-down plot of both paths.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from flyby.bench import measure_single_env, measure_vector_env
from flyby.config import read_yaml
from flyby.dynamics.direct_cfg import DirectDynamicsCfg
from flyby.enums import ResolutionPreset
from flyby.envs.direct_env import DirectISREnv
from flyby.envs.multi_drone_env import MultiDroneISREnv
from flyby.envs.px4_env import PX4ISREnv
from flyby.training.evaluation_cfg import load_evaluation_cfg
from flyby.training.record import excitation_sequences, record_trajectories
from flyby.training.training_cfg import load_training_cfg
from flyby.training.tune_dynamics import open_loop_errors
from pytest_video_plugin import Text, side_by_side

PHASE2 = read_yaml(Path(__file__).resolve().parents[2] / "tests/fullstack/phase_config.yaml")[0]["phase2"]
TUNED = Path(__file__).resolve().parents[2] / "flyby/configs/dynamics_config_cascade_tuned.yaml"
START = np.array([0.0, 0.0, 40.0])  # above the area centre, above every building


def _time_full_fidelity(cfg, steps: int, render: bool) -> float:
    env = PX4ISREnv(cfg, render_mode="rgb_array" if render else None)
    try:
        env.reset(seed=0, options={"pos_w": START, "yaw_rad": 0.0})
        commands = excitation_sequences("all", steps * cfg.step_dt, cfg.step_dt, seed=7)
        t0 = time.perf_counter()
        for k in range(steps):
            env.step(commands[k])
        return steps / (time.perf_counter() - t0)
    finally:
        env.close()


@pytest.mark.phase2
@pytest.mark.min_fps(float(PHASE2["min_direct_fps"]), metric="direct_fps")
@pytest.mark.min_fps(float(PHASE2["min_speedup"]), metric="speedup_vs_full_eval")
def test_phase2_direct_parity(video_recorder, stack_strings, output_dir):
    train = load_training_cfg(dynamics_path=TUNED)
    tuned = train.direct_env.dynamics
    seed_model = DirectDynamicsCfg()
    eval_cfg = load_evaluation_cfg().px4_env
    step_dt = eval_cfg.step_dt

    # 1. Parity on held-out commands.
    commands = excitation_sequences("all", float(PHASE2["held_out_duration_s"]), step_dt,
                                    seed=int(PHASE2["held_out_seed"]))
    env = PX4ISREnv(eval_cfg)
    try:
        stack_label = env.flight_stack_label
        log = record_trajectories(env, commands, seed=int(PHASE2["held_out_seed"]))
    finally:
        env.close()
    video_recorder.set_header(backend=stack_strings["backend"], flight_stack=stack_label)
    errors = {name: open_loop_errors(cfg, log, horizons_s=(1.0, 5.0)) for name, cfg in
              (("untuned", seed_model), ("tuned", tuned))}
    print(f"\nPhase 2 parity ({stack_label}; held-out seed {PHASE2['held_out_seed']}, "
          f"{len(commands) * step_dt:.0f} s): open-loop position error, mean / p95 over windows")
    for name, by_h in errors.items():
        cells = "   ".join(f"{h:.0f} s: {e.mean():5.2f} / {np.percentile(e, 95):5.2f} m" for h, e in by_h.items())
        print(f"  {name:<8} {cells}")
        for h, e in by_h.items():
            video_recorder.record_metric(f"error_{name}_{h:.0f}s_m", float(e.mean()))
    tuned_5, seed_5 = errors["tuned"][5.0].mean(), errors["untuned"][5.0].mean()

    # 2. Throughput, same run: three interleaved rounds, medians (load changes hit both sides alike).
    steps = int(PHASE2["throughput_steps"])
    eval_render = replace(eval_cfg, render_interval=1,
                          render=replace(eval_cfg.render, preset=ResolutionPreset.EVALUATION))
    rounds = {"direct": [], "single": [], "full_eval": [], "full_off": []}
    for _ in range(3):
        multi_env, single_env = MultiDroneISREnv(cfg=train.multi_drone_env), DirectISREnv(train.direct_env)
        try:
            rounds["direct"].append(measure_vector_env(multi_env, steps=500, warmup=50).drone_steps_per_s)
            rounds["single"].append(measure_single_env(single_env, steps=500, warmup=50).drone_steps_per_s)
        finally:
            multi_env.close()
            single_env.close()
        rounds["full_eval"].append(_time_full_fidelity(eval_render, steps, render=True))
        rounds["full_off"].append(_time_full_fidelity(eval_cfg, steps, render=False))
    med = {k: float(np.median(v)) for k, v in rounds.items()}
    direct_fps, full_eval, full_off = med["direct"], med["full_eval"], med["full_off"]
    speedup = direct_fps / full_eval
    video_recorder.record_metric("direct_fps", direct_fps)
    video_recorder.record_metric("direct_single_drone_steps_per_s", med["single"])
    video_recorder.record_metric("full_eval_steps_per_s", full_eval)
    video_recorder.record_metric("full_render_off_steps_per_s", full_off)
    video_recorder.record_metric("speedup_vs_full_eval", speedup)
    video_recorder.record_metric("speedup_vs_full_render_off", direct_fps / full_off)
    print(f"Phase 2 throughput (same run, medians of 3 interleaved rounds):\n"
          f"  direct dynamics, MultiDroneISR-v0 x16 (training config)  : {direct_fps:9,.0f} FPS\n"
          f"  direct dynamics, DirectISR-v0 single drone (reported)    : {med['single']:9,.0f} steps/s\n"
          f"  full fidelity, evaluation config (render every step 320x240): {full_eval:7,.1f} steps/s\n"
          f"  full fidelity, render off (reported)                     : {full_off:9,.1f} steps/s\n"
          f"  ratio vs evaluation config: {speedup:,.0f}x (floor {PHASE2['min_speedup']}x); "
          f"vs render off: {direct_fps / full_off:,.0f}x")

    # 3. Side-by-side video on the same command sequence.
    _record_side_by_side(video_recorder, train.direct_env, eval_cfg, tuned, commands)

    assert tuned_5 <= float(PHASE2["max_tuned_error_5s_m"]), (
        f"tuned open-loop error after 5 s is {tuned_5:.2f} m > {PHASE2['max_tuned_error_5s_m']} m")
    assert seed_5 >= float(PHASE2["min_error_reduction"]) * tuned_5, (
        f"tuning reduced the 5 s error only {seed_5 / tuned_5:.1f}x ({seed_5:.2f} -> {tuned_5:.2f} m), "
        f"need {PHASE2['min_error_reduction']}x")


def _record_side_by_side(recorder, direct_cfg, eval_cfg, tuned, commands):
    preset = ResolutionPreset.EVALUATION
    noiseless = replace(tuned, position_noise_std=0.0, velocity_noise_std=0.0)
    dcfg = replace(direct_cfg, dynamics=noiseless, render_interval=1, step_dt=eval_cfg.step_dt,
                   camera=replace(direct_cfg.camera, preset=preset))
    fcfg = replace(eval_cfg, render_interval=1, render=replace(eval_cfg.render, preset=preset))
    direct = DirectISREnv(dcfg, render_mode="rgb_array")
    full = PX4ISREnv(fcfg, render_mode="rgb_array")
    try:
        for env in (direct, full):
            env.reset(seed=0, options={"pos_w": START, "yaw_rad": 0.0})
        path_d, path_f, ret_d, ret_f = [], [], 0.0, 0.0
        for k in range(int(PHASE2["video_seconds"] / eval_cfg.step_dt)):
            _, r_d, *_ = direct.step(commands[k])
            _, r_f, _, _, info = full.step(commands[k])
            ret_d += r_d
            ret_f += r_f
            p_d, p_f = direct.task.pos_w[0].copy(), full.task.pos_w[0].copy()
            path_d.append(p_d)
            path_f.append(p_f)
            if k % 2:
                continue  # every other control step is plenty for the video
            frame = side_by_side(side_by_side(direct.render(), info["camera"], pad=4),
                                 _top_down(path_d, path_f, size=240), pad=4)
            recorder.add_frame(
                frame,
                texts=[Text("direct (tuned model)", x=6, y=16, scale=0.45),
                       Text("full fidelity", x=330, y=16, scale=0.45)],
                metrics={"sim time s": round((k + 1) * eval_cfg.step_dt, 2),
                         "return direct": round(ret_d, 2), "return full": round(ret_f, 2),
                         "position error m": round(float(np.linalg.norm(p_d - p_f)), 2),
                         "command": "[" + ", ".join(f"{c:+.2f}" for c in commands[k]) + "]"},
                footer="same held-out command sequence, same start; top-down: blue direct, orange full fidelity",
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
