"""Phase 1 gate: render skipping and resolution presets in the full-fidelity env.

The same scripted episode (same seed, same actions) runs twice in ``PX4ISR-v0``:

- (A) rendering every control step at the ``full`` preset (640x480), the evaluation baseline;
- (B) rendering every 4th step at the ``training`` preset (128x128).

B must reach >= 2x A's steps/s measured in the same run and >= 120 steps/s (the
seed plan's floor; both are ``min_fps`` markers with values from
``phase_config.yaml``), and the ground-truth detections at B's rendered sim times
must be identical to A's: render skipping changes what is drawn, never what the
policy observes. B runs first (its loop is timed and counted for the FPS
overlay); A runs second and streams the side-by-side video, A's render time
timed with its step and the encoding outside the timer.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from flyby.config import read_yaml
from flyby.enums import ResolutionPreset, TargetClass
from flyby.envs.px4_env import PX4ISREnv
from flyby.perception.gt import GroundTruthDetector
from flyby.policies import SmoothPatrolPolicy
from flyby.training.evaluation_cfg import load_evaluation_cfg
from pytest_video_plugin import Box, Text, side_by_side

PHASE1_FLOORS = read_yaml(Path(__file__).with_name("phase_config.yaml"))[0]["phase1"]
B_SCALE = 3  # 128x128 drawn at 384x384
COLOURS = {int(TargetClass.VEHICLE): (255, 140, 0), int(TargetClass.PERSON): (255, 60, 200)}


def _run_b(cfg, steps: int, count_steps) -> dict:
    env = PX4ISREnv(cfg, render_mode="rgb_array")
    try:
        obs, info = env.reset(seed=0)
        policy = SmoothPatrolPolicy(1, env.task.layout, seed=0, altitude_frac=0.3)
        # Frame -1 is the one rendered at reset; step k's frame exists when B rendered on step k.
        out = {"frames": {-1: info["camera"].copy()}, "visible": [], "boxes": [], "sim_t": [], "rendered": [],
               "actions": []}
        count_steps(0)  # start the clock: the FPS overlay and min_fps read run B's rate
        t0 = time.perf_counter()
        for _ in range(steps):
            action = policy(obs[None])[0]
            obs, _, terminated, truncated, info = env.step(action)
            count_steps(1)
            out["actions"].append(action)
            out["rendered"].append(info["rendered"])
            if info["rendered"]:
                out["frames"][len(out["rendered"]) - 1] = info["camera"].copy()
            det = env.task.detections
            out["visible"].append(det.visible[0].copy())
            out["boxes"].append(det.boxes_px[0].copy())
            out["sim_t"].append(info["sim_time_s"])
            assert not (terminated or truncated), f"episode ended early at sim time {info['sim_time_s']:.2f} s"
        out["wall_s"] = time.perf_counter() - t0
        out["stack"] = env.flight_stack_label
        return out
    finally:
        env.close()


@pytest.mark.phase1
@pytest.mark.min_fps(float(PHASE1_FLOORS["min_steps_per_s"]), metric="fps")
@pytest.mark.min_fps(float(PHASE1_FLOORS["min_speedup"]), metric="speedup")
def test_phase1_render_skipping(video_recorder, phase1_cfg, stack_strings):
    gate = phase1_cfg
    base = load_evaluation_cfg().px4_env
    cfg_a = replace(base, render_interval=1, render=replace(base.render, preset=ResolutionPreset.FULL))
    cfg_b = replace(base, render_interval=gate.skip_render_interval,
                    render=replace(base.render, preset=ResolutionPreset.TRAINING))

    b = _run_b(cfg_b, gate.steps, video_recorder.count_steps)
    b_fps = gate.steps / b["wall_s"]
    video_recorder.set_header(backend=stack_strings["backend"], flight_stack=b["stack"])

    env = PX4ISREnv(cfg_a, render_mode="rgb_array")
    mismatches = []
    a_wall = 0.0
    try:
        obs, _ = env.reset(seed=0)
        draw_detector = GroundTruthDetector.from_world(env.backend.camera, env.task.world)
        last_b = -1
        for k in range(gate.steps):
            action = b["actions"][k]
            t0 = time.perf_counter()
            obs, _, _, _, info = env.step(action)
            a_wall += time.perf_counter() - t0
            det = env.task.detections
            if b["rendered"][k]:
                last_b = k
                same_time = info["sim_time_s"] == pytest.approx(b["sim_t"][k], abs=1e-9)
                same_det = np.array_equal(det.visible[0], b["visible"][k]) and np.array_equal(
                    det.boxes_px[0], b["boxes"][k])
                if not (same_time and same_det):
                    mismatches.append((k, info["sim_time_s"], b["sim_t"][k]))
            frame, boxes, texts = _compose(env, info["camera"], draw_detector, b, k, last_b)
            a_fps = (k + 1) / a_wall
            video_recorder.add_frame(
                frame, boxes=boxes, texts=texts, rendered=b["rendered"][k],
                metrics={
                    "sim time s": round(info["sim_time_s"], 3),
                    "A steps/s": round(a_fps, 1),
                    "B steps/s": round(b_fps, 1),
                    "speed-up": f"{b_fps / a_fps:.2f}x",
                    "B rendered": f"{sum(b['rendered'][: k + 1])}/{k + 1}",
                    "detections": int(det.visible.sum()),
                },
                footer=(f"A: render every step at full 640x480 | B: every {gate.skip_render_interval} steps at "
                        f"training 128x128 | floor {gate.min_steps_per_s:.0f} steps/s, speed-up >= {gate.min_speedup}x"),
            )
    finally:
        env.close()
    a_fps = gate.steps / a_wall
    speedup = b_fps / a_fps
    video_recorder.record_metric("steps_per_s_A_full_every_step", a_fps)
    video_recorder.record_metric("steps_per_s_B_training_every_4", b_fps)
    video_recorder.record_metric("speedup", speedup)
    print(f"\nPhase 1 ({b['stack']}, {gate.steps} steps of {base.step_dt} s, physics {1 / base.physics_dt:.0f} Hz):"
          f"\n  A render every step at full 640x480    : {a_fps:7.1f} steps/s ({a_fps * base.step_dt:5.1f}x real time)"
          f"\n  B render every {gate.skip_render_interval} steps at training 128x128: {b_fps:7.1f} steps/s "
          f"({b_fps * base.step_dt:5.1f}x real time)\n  speed-up: {speedup:.2f}x")

    # The floors (B >= 120 steps/s, speed-up >= 2x) are the min_fps markers, judged by the plugin after the body.
    assert not mismatches, f"detections differ between A and B at (step, sim_t A, sim_t B): {mismatches[:5]}"


def _compose(env, a_image, detector, b, k, last_b):
    """A's 640x480 frame (left) beside B's latest 128x128 frame at 3x (right), boxes in frame pixels."""
    b_image = np.kron(b["frames"][last_b], np.ones((B_SCALE, B_SCALE, 1), dtype=np.uint8))
    frame = side_by_side(a_image, b_image, pad=6)
    task = env.task
    cam_pos, rot_wc = task.camera_poses()
    det = detector.detect(cam_pos, rot_wc, task.target_pos_w, task.target_yaw_rad, task.world.target_size_m)
    classes = task.world.target_class
    boxes = [Box(*det.boxes_px[0, t], color=COLOURS[int(classes[t])], label="vehicle" if classes[t] == 0 else "person")
             for t in np.flatnonzero(det.visible[0])]
    x0 = a_image.shape[1] + 6
    if last_b >= 0:
        for t in np.flatnonzero(b["visible"][last_b]):
            x1, y1, x2, y2 = b["boxes"][last_b][t] * B_SCALE
            boxes.append(Box(x0 + x1, y1, x0 + x2, y2, color=COLOURS[int(classes[t])]))
    state = "rendered" if b["rendered"][k] else f"skipped (showing the frame of step {last_b})"
    texts = [
        Text(f"A: full preset, rendered, step {k}", x=6, y=16, scale=0.5),
        Text(f"B: training preset, {state}", x=x0 + 6, y=16, scale=0.5),
        Text(f"sim t = {b['sim_t'][k]:.2f} s", x=x0 + 6, y=b_image.shape[0] + 22, scale=0.5),
    ]
    return frame, boxes, texts
