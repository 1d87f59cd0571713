"""Phase 1 gate: render skipping and resolution presets in the full-fidelity env.

The same scripted episode (same seed, same actions) runs in ``PX4ISR-v0`` in three envs, once
per flight stack variant (``cascade``, the built-in PX4-style cascade, and ``px4``, PX4 SITL in
lockstep: the seed plan's Phase 1, "within the current PX4 architecture"):

- (B) rendering every 4th step at the ``training`` preset (128x128): the training setting;
- (A) rendering every control step at the ``full`` preset (640x480), the evaluation baseline;
- (ceiling) rendering off: the env's rate with the flight stack, rotor physics and perception
  alone, which no render setting can pass. With PX4 it is the lockstep rate.

The three envs are stepped in turn, one step each (B, A, ceiling; then A, ceiling, B; ...), and
each ``env.step`` is timed on its own, so the three rates are measured over the same seconds of
the machine. A 2-core CI machine's speed wanders by tens of per cent within a minute (PX4's
lockstep rate: 66-130 steps/s on one machine in one hour); measured one after the other, A, B and
the ceiling each caught a different stretch of it: one CI run read B/A 1.84x beside a
ceiling/A of 2.18x, B at 75 % of the ceiling. Stepped in turn, B runs within a few per cent of
the ceiling (B's 128x128 render every 4th step is all that differs). With PX4 each env has its
own PX4, and the three PX4s are pinned to one CPU (``flyby.px4.launcher.shared_cpu_instances``):
only one of them works at a time (lockstep: a PX4 waits for its next HIL_SENSOR; an idle one
uses about 1 % of a core), as one PX4 does in a single env
(``benchmarks/bench_px4_envs_in_turn.py`` shows identical envs stepped so run alike).

Floors (``phase_config.yaml``, ``phase1`` for the cascade and ``phase1_px4`` for PX4, the seed
plan's numbers for both): B >= 2x A and B >= 120 steps/s, judged by the plugin's ``check_floor``.
The judged figures are medians over ``timing_segments`` equal segments of each run (5 of 40 steps,
each a whole number of B's render intervals), ratios paired segment by segment (the same steps,
actions and seconds), as the parity gate takes the median of its rounds: one stall in one segment
then moves one segment, not the verdict. The whole-run figures are printed beside them.
Reachability is judged on the *slowest* segment of the render-off run (and the lowest segment
ceiling/A): a floor is "reachable" only when this machine's ceiling cleared it throughout the run.
With PX4 on a 2-core CI machine the lockstep ceiling itself wanders around 120 steps/s, so a
ceiling of 125 beside a B of 117 is the machine, not the code; on a machine whose ceiling clears
the floor in every segment (the cascade here: 220-460 steps/s) the gate judges B as before.
A floor that the ceiling of the same run puts out of reach (ceiling < 120 steps/s, or ceiling /
A < 2) reads "not reachable here" with both numbers: neither passed nor failed. It is never
lowered.

Detections: render skipping changes what is drawn, never what the policy observes.

- cascade: the flight is deterministic, so the ground-truth detections at B's rendered sim
  times must be identical to A's (same step, same sim time).
- PX4: PX4 SITL is not bit-reproducible from run to run (the offboard setpoints travel over
  UDP outside the lockstep, so PX4 takes them up a tick earlier or later: two runs of the same
  script end some 0.05 m apart), so A and B fly slightly different paths. The check is then
  that every observation's detections equal a fresh ground-truth detection of the drone pose
  it was taken at, in A and in B, at the same sim times; the A-B path difference is printed.

B's steps are counted for the FPS overlay (with their own timed seconds); A streams the
side-by-side video, A's render time timed with its step and the drawing and encoding outside
every timer.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import replace

import numpy as np
import pytest
from gate_overlays import class_box, class_name

from flyby.config.evaluation import load_evaluation_cfg
from flyby.enums import ResolutionPreset
from flyby.envs.px4_env import PX4ISREnv
from flyby.perception.camera import camera_poses_w
from flyby.perception.gt import GroundTruthDetector
from flyby.policies import SmoothPatrolPolicy
from flyby.px4.launcher import shared_cpu_instances
from pytest_video_plugin import Text, side_by_side

B_SCALE = 3  # 128x128 drawn at 384x384 (display only)


def _fresh_detection(detector, world, pos_w, rot_wb, sim_t, camera) -> tuple[np.ndarray, np.ndarray]:
    """(visible (T,), boxes (T, 4)) of a fresh ground-truth detection at one drone pose and sim time."""
    cam_pos, rot_wc = camera_poses_w(pos_w[None], rot_wb[None], camera)
    targets, yaws = world.target_poses(sim_t)
    det = detector.detect(cam_pos, rot_wc, targets, yaws, world.target_size_m)
    return det.visible[0], det.boxes_px[0]


def _same(det_visible, det_boxes, visible, boxes) -> bool:
    return bool(np.array_equal(det_visible, visible) and np.array_equal(det_boxes, boxes))


ROUND_ROBIN = ("B", "A", "ceiling")  # stepped in turn, one step each; the order rotates every step


def segment_rates(step_s, segments: int) -> np.ndarray:
    """Steps/s of each of ``segments`` equal consecutive segments of per-step wall times (s)."""
    step_s = np.asarray(step_s, dtype=np.float64)
    return step_s.size / segments / step_s.reshape(segments, -1).sum(axis=1)


@pytest.mark.phase1
@pytest.mark.parametrize("stack", ["cascade", pytest.param("px4", marks=pytest.mark.px4)])
def test_phase1_render_skipping(stack, request, video_recorder, gate_cfg, stack_strings):
    if stack == "px4":
        request.getfixturevalue("px4_binary")  # skips with the build instruction (fails in CI) without PX4
    gate = gate_cfg.phase1_for(stack)
    # The seed plan's name in the people's latest view (output/videos/); PX4 is the seed plan's Phase 1.
    video_recorder.set_latest_name(
        "render_skip_validation" if stack == "px4" else "render_skip_validation_cascade"
    )
    base = load_evaluation_cfg().px4_env
    cfgs = {
        "A": replace(base, render_interval=1, render=replace(base.render, preset=ResolutionPreset.FULL)),
        "B": replace(
            base,
            render_interval=gate.skip_render_interval,
            render=replace(base.render, preset=ResolutionPreset.TRAINING),
        ),
        "ceiling": base,
    }
    instances = dict(zip(ROUND_ROBIN, shared_cpu_instances(3, first=base.px4.instance), strict=True))
    step_s = {name: [] for name in ROUND_ROBIN}  # wall seconds of each env.step, per run
    # B's record by step; frames[k] exists when B rendered on step k, frames[-1] is the one rendered at reset
    b = {"frames": {}, "rendered": [], "visible": [], "boxes": [], "sim_t": [], "pos": []}
    a_pos = []
    mismatches = []  # (step, sim_t A, sim_t B) where the rendered-step detection check fails
    a_return = b_return = 0.0
    with ExitStack() as closing:
        envs = {}
        for name in ROUND_ROBIN:
            cfg = replace(cfgs[name], px4=replace(cfgs[name].px4, instance=instances[name]))
            envs[name] = PX4ISREnv(
                cfg, flight_stack=stack, render_mode=None if name == "ceiling" else "rgb_array"
            )
            closing.callback(envs[name].close)
        env_a, env_b = envs["A"], envs["B"]
        obs, info = env_b.reset(seed=0)
        b["frames"][-1] = info["camera"].copy()
        env_a.reset(seed=0)
        envs["ceiling"].reset(seed=0)
        b_label = env_b.flight_stack_label
        video_recorder.set_header(backend=stack_strings["backend"], flight_stack=b_label)
        policy = SmoothPatrolPolicy(1, env_b.task.layout, seed=0, altitude_frac=0.3)
        world = env_a.task.world
        draw_detector = GroundTruthDetector.from_world(env_a.backend.camera, world)
        fresh = GroundTruthDetector.from_world(env_a.task.cfg.camera, world)
        camera = env_a.task.cfg.camera
        last_b = -1
        for k in range(gate.steps):
            action = policy(obs[None])[0]
            results = {}
            for i in range(len(ROUND_ROBIN)):  # B, A, ceiling; then A, ceiling, B; ...
                name = ROUND_ROBIN[(k + i) % len(ROUND_ROBIN)]
                t0 = time.perf_counter()
                results[name] = envs[name].step(action)
                step_s[name].append(time.perf_counter() - t0)
            video_recorder.count_steps(1, seconds=step_s["B"][-1])  # the FPS overlay reads run B's rate
            obs, reward_b, terminated, truncated, info_b = results["B"]
            _, reward_a, _, _, info_a = results["A"]
            assert not (terminated or truncated), (
                f"episode ended early at sim time {info_b['sim_time_s']:.2f} s"
            )
            b_return += float(reward_b)
            a_return += float(reward_a)
            det_b, det_a = env_b.task.detections, env_a.task.detections
            b["rendered"].append(info_b["rendered"])
            b["visible"].append(det_b.visible[0].copy())
            b["boxes"].append(det_b.boxes_px[0].copy())
            b["sim_t"].append(info_b["sim_time_s"])
            b["pos"].append(env_b.task.pos_w[0].copy())
            a_pos.append(env_a.task.pos_w[0].copy())
            if info_b["rendered"]:
                b["frames"][k] = info_b["camera"].copy()
                last_b = k
                same_time = info_a["sim_time_s"] == pytest.approx(b["sim_t"][k], abs=gate.sim_time_tol_s)
                if stack == "cascade":  # deterministic: A's detections are B's
                    same_det = _same(det_a.visible[0], det_a.boxes_px[0], b["visible"][k], b["boxes"][k])
                else:  # A's and B's against the ground truth of their own poses
                    truth_a = _fresh_detection(
                        fresh, world, a_pos[k], env_a.task.dynamics.rot_wb[0], info_a["sim_time_s"], camera
                    )
                    truth_b = _fresh_detection(
                        fresh, world, b["pos"][k], env_b.task.dynamics.rot_wb[0], b["sim_t"][k], camera
                    )
                    same_det = _same(det_a.visible[0], det_a.boxes_px[0], *truth_a) and _same(
                        b["visible"][k], b["boxes"][k], *truth_b
                    )
                if not (same_time and same_det):
                    mismatches.append((k, info_a["sim_time_s"], b["sim_t"][k]))
            frame, boxes, texts = _compose(env_a, info_a["camera"], draw_detector, b, k, last_b)
            a_fps, b_fps = (k + 1) / sum(step_s["A"]), (k + 1) / sum(step_s["B"])
            video_recorder.add_frame(
                frame,
                boxes=boxes,
                texts=texts,
                rendered=b["rendered"][k],
                metrics={
                    "step": k + 1,
                    "sim time s": round(info_a["sim_time_s"], 3),
                    "return A": round(a_return, 2),
                    "return B": round(b_return, 2),
                    "A steps/s": round(a_fps, 1),
                    "B steps/s": round(b_fps, 1),
                    "speed-up": f"{b_fps / a_fps:.2f}x",
                    "B rendered": f"{sum(b['rendered'])}/{k + 1}",
                    "detections": int(det_a.visible.sum()),
                    "A-B distance m": round(float(np.linalg.norm(a_pos[k] - b["pos"][k])), 3),
                },
                footer=(
                    f"A: render every step at full 640x480 | B: every {gate.skip_render_interval} steps at "
                    f"training 128x128 | floor {gate.min_steps_per_s:.0f} steps/s, "
                    f"speed-up >= {gate.min_speedup}x"
                ),
            )
    whole = {name: gate.steps / sum(times) for name, times in step_s.items()}
    a_fps, b_fps = whole["A"], whole["B"]
    # Judged: medians over segments, ratios paired by segment (same steps, same actions, same seconds).
    seg = {name: segment_rates(times, gate.timing_segments) for name, times in step_s.items()}
    seg_b, seg_a, seg_c = seg["B"], seg["A"], seg["ceiling"]
    b_med, ceiling = float(np.median(seg_b)), float(np.median(seg_c))
    speedup, ceiling_ratio = float(np.median(seg_b / seg_a)), float(np.median(seg_c / seg_a))
    # Reachability: the slowest segment of the ceiling run (see the module docstring).
    ceiling_low, ceiling_ratio_low = float(np.min(seg_c)), float(np.min(seg_c / seg_a))
    divergence = float(np.max(np.linalg.norm(np.array(a_pos) - np.array(b["pos"]), axis=1)))
    video_recorder.record_metric("flight_stack", b_label)
    video_recorder.record_metric("px4_instances", " ".join(f"{n}={i}" for n, i in instances.items()))
    video_recorder.record_metric("steps_per_s_A_full_every_step", a_fps)
    video_recorder.record_metric("steps_per_s_B_training_every_4", b_fps)
    video_recorder.record_metric("steps_per_s_ceiling_render_off", whole["ceiling"])
    video_recorder.record_metric("speedup", b_fps / a_fps)
    video_recorder.record_metric("segments", gate.timing_segments)
    video_recorder.record_metric("segment_median_steps_per_s_A", float(np.median(seg_a)))
    video_recorder.record_metric("segment_median_steps_per_s_B", b_med)
    video_recorder.record_metric("segment_median_steps_per_s_ceiling", ceiling)
    video_recorder.record_metric("segment_median_speedup", speedup)
    video_recorder.record_metric("segment_median_ceiling_over_a", ceiling_ratio)
    video_recorder.record_metric("segment_slowest_steps_per_s_ceiling", ceiling_low)
    video_recorder.record_metric("segment_slowest_ceiling_over_a", ceiling_ratio_low)
    video_recorder.record_metric("max_a_b_distance_m", divergence)
    print(
        f"\nPhase 1 ({b_label}, {gate.steps} steps of {base.step_dt} s, "
        f"physics {1 / base.physics_dt:.0f} Hz; A, B and the ceiling stepped in turn):"
        f"\n  A render every step at full 640x480    : {a_fps:7.1f} steps/s "
        f"({a_fps * base.step_dt:5.1f}x real time)"
        f"\n  B render every {gate.skip_render_interval} steps at training 128x128: {b_fps:7.1f} steps/s "
        f"({b_fps * base.step_dt:5.1f}x real time)"
        f"\n  ceiling, render off                   : {whole['ceiling']:7.1f} steps/s"
        f"\n  speed-up B/A {b_fps / a_fps:.2f}x; A-B paths at most {divergence:.3f} m apart"
        f"\n  judged, medians of {gate.timing_segments} segments: B {b_med:.1f} steps/s, "
        f"ceiling {ceiling:.1f} steps/s, B/A {speedup:.2f}x, ceiling/A {ceiling_ratio:.2f}x"
        f"\n  segment B/A: {' '.join(f'{r:.2f}' for r in seg_b / seg_a)}"
        f"\n  segment ceiling steps/s: {' '.join(f'{r:.1f}' for r in seg_c)} (slowest {ceiling_low:.1f}; "
        f"ceiling/A slowest {ceiling_ratio_low:.2f}x): reachability is judged on the slowest"
    )

    # Floors judged by the plugin after the body: pass, fail, or "not reachable here" with the ceiling.
    video_recorder.check_floor(
        "B steps/s", measured=b_med, floor=gate.min_steps_per_s, ceiling=ceiling_low, unit="steps/s"
    )
    video_recorder.check_floor(
        "speed-up B/A", measured=speedup, floor=gate.min_speedup, ceiling=ceiling_ratio_low, unit="x"
    )
    assert not mismatches, f"detections differ between A and B at (step, sim_t A, sim_t B): {mismatches[:5]}"


def _compose(env, a_image, detector, b, k, last_b):
    """A's 640x480 frame (left) beside B's latest 128x128 frame at 3x (right), boxes in frame pixels."""
    b_image = np.kron(b["frames"][last_b], np.ones((B_SCALE, B_SCALE, 1), dtype=np.uint8))
    frame = side_by_side(a_image, b_image, pad=6)
    task = env.task
    cam_pos, rot_wc = task.camera_poses()
    det = detector.detect(cam_pos, rot_wc, task.target_pos_w, task.target_yaw_rad, task.world.target_size_m)
    classes = task.world.target_class
    boxes = [
        class_box(*det.boxes_px[0, t], classes[t], label=class_name(classes[t]))
        for t in np.flatnonzero(det.visible[0])
    ]
    x0 = a_image.shape[1] + 6
    if last_b >= 0:
        for t in np.flatnonzero(b["visible"][last_b]):
            x1, y1, x2, y2 = b["boxes"][last_b][t] * B_SCALE
            boxes.append(class_box(x0 + x1, y1, x0 + x2, y2, classes[t]))
    state = "rendered" if b["rendered"][k] else f"skipped (showing the frame of step {last_b})"
    texts = [
        Text(f"A: full preset, rendered, step {k}", x=6, y=16, scale=0.5),
        Text(f"B: training preset, {state}", x=x0 + 6, y=16, scale=0.5),
        Text(f"sim t = {b['sim_t'][k]:.2f} s", x=x0 + 6, y=b_image.shape[0] + 22, scale=0.5),
    ]
    return frame, boxes, texts


def test_segment_rates_are_per_segment(gate_cfg):
    """The judged figures: one stall moves one segment's rate, not the median. (That the config's steps split
    into whole segments is checked by the schema: test_gate_cfg.py.)"""
    step_s = [0.01] * 8 + [0.5] + [0.01] * 7  # one stall in the second of two segments
    rates = segment_rates(step_s, 2)
    assert rates[0] == pytest.approx(100.0) and rates[1] == pytest.approx(8 / 0.57)
    assert float(np.median(segment_rates(step_s + [0.01] * 24, 5))) == pytest.approx(
        100.0
    )  # 1 stalled of 5: median holds
    assert gate_cfg.phase1_px4.timing_segments == gate_cfg.phase1.timing_segments == 5
