"""Functions check: fly the full-fidelity env through named flight profiles, on video.

    pytest tests/fullstack -m functions_check --flight-profile detection

Profiles: ``takeoff`` (ground to 10 m), ``hover`` (hold 10 m for 10 s), ``box``
(square waypoint pattern), ``detection`` (fly towards vehicles until each is
detected, boxes drawn). Each writes ``output/videos/functions_check_<profile>.mp4``
and asserts its own flight criteria. The flight stack is ``--flight-stack``:
``auto`` (default) PX4 SITL when found, else the built-in cascade; ``px4`` or
``cascade`` to choose. The video header, the footer and the metrics say which.

    pytest tests/fullstack -m functions_check --flight-stack px4
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from gate_overlays import class_box, class_legend

from flyby.config.evaluation import load_evaluation_cfg
from flyby.enums import ResolutionPreset, TargetClass
from flyby.envs.px4_env import PX4ISREnv
from flyby.mdp.terminations import TerminationCfg
from pytest_video_plugin import Text


def _clear_spot(world, radius_m: float = 12.0) -> np.ndarray:
    """An (x, y) point with no building within ``radius_m``, nearest the area centre (deterministic)."""
    xs = np.arange(-60.0, 61.0, 4.0)
    grid = np.array([(x, y) for x in xs for y in xs])
    grid = grid[np.argsort(np.linalg.norm(grid, axis=1), kind="stable")]
    for xy in grid:
        ring = xy + radius_m * np.array([[np.cos(a), np.sin(a)] for a in np.linspace(0, 2 * np.pi, 16)])
        if world.height_at(np.vstack([xy, ring])).max() == 0:
            return xy
    raise AssertionError("no clear take-off spot in the world")


class Pilot:
    """Position-hold autopilot on top of the env's velocity action: waypoints -> normalised actions."""

    def __init__(self, env: PX4ISREnv, gain: float = 0.6, speed_mps: float = 5.0):
        self.env = env
        self.gain = gain
        self.speed = speed_mps
        self.scale = env.cfg.actions.vel_scale
        self.yaw_rate_max = np.radians(env.cfg.actions.max_yaw_rate)

    def action(self, target_w: np.ndarray, yaw_target: float | None = None) -> np.ndarray:
        task = self.env.task
        err = target_w - task.pos_w[0]
        vel = self.gain * err
        horiz = np.linalg.norm(vel[:2])
        if horiz > self.speed:
            vel[:2] *= self.speed / horiz
        a = np.zeros(4)
        a[:3] = np.clip(vel / self.scale, -1, 1)
        if yaw_target is not None:
            dyaw = (yaw_target - task.yaw_rad[0] + np.pi) % (2 * np.pi) - np.pi
            a[3] = np.clip(1.5 * dyaw / self.yaw_rate_max, -1, 1)
        return a.astype(np.float32)


def _env(profile: str, flight_stack: str) -> PX4ISREnv:
    base = load_evaluation_cfg().px4_env
    cfg = replace(
        base,
        render_interval=2,
        render=replace(base.render, preset=ResolutionPreset.EVALUATION),
        episode_length_s=120.0,
        # Take-off starts on the ground: only buildings count as a crash here.
        terminations=TerminationCfg(min_altitude_m=0.0, max_altitude_m=base.terminations.max_altitude_m),
    )
    return PX4ISREnv(cfg, flight_stack=flight_stack, render_mode="rgb_array")


def _record(recorder, env, info, profile, extra_boxes=(), **metrics):
    recorder.count_steps(1)  # FPS footer: control steps per wall second, rendering and encoding included
    if not info.get("rendered"):
        return
    task = env.task
    pos = task.pos_w[0]
    det = task.detections
    frame = info["camera"]
    sx = frame.shape[1] / task.cfg.camera.width
    sy = frame.shape[0] / task.cfg.camera.height
    boxes = [
        class_box(*(det.boxes_px[0, t] * [sx, sy, sx, sy]), task.world.target_class[t])
        for t in np.flatnonzero(det.visible[0])
    ]
    recorder.add_frame(
        frame,
        boxes=boxes + list(extra_boxes),
        texts=[
            Text(f"{profile}  t={info['sim_time_s']:.2f} s", x=6, y=16, scale=0.5),
            *class_legend(6, frame.shape[0] - 8, scale=0.45),
        ],
        metrics={
            "x m": round(float(pos[0]), 2),
            "y m": round(float(pos[1]), 2),
            "alt m": round(float(pos[2]), 2),
            "speed m/s": round(float(np.linalg.norm(task.dynamics.lin_vel_w[0])), 2),
            "detections": int(det.visible[0].sum()),
            **metrics,
        },
        footer=f"functions check: {profile} | {env.flight_stack_label}",
    )


def fly_takeoff(env, recorder):
    start = _clear_spot(env.task.world)
    env.reset(seed=0, options={"pos_w": [start[0], start[1], 0.12], "yaw_rad": 0.0})
    pilot = Pilot(env)
    target = np.array([start[0], start[1], 10.0])
    alt = []
    for _ in range(int(12.0 / env.cfg.step_dt)):
        _, _, terminated, _, info = env.step(pilot.action(target))
        alt.append(env.task.pos_w[0, 2])
        _record(recorder, env, info, "takeoff", target_alt_m=10.0)
        assert not terminated, "crashed during take-off"
    alt = np.array(alt)
    settled = alt[-int(2.0 / env.cfg.step_dt) :]
    assert np.abs(settled - 10.0).max() < 0.5, (
        f"altitude after take-off {settled.min():.2f}..{settled.max():.2f} m, wanted 10 +- 0.5 m"
    )
    return {"final_alt_m": float(alt[-1])}


def fly_hover(env, recorder):
    start = _clear_spot(env.task.world)
    hold = np.array([start[0], start[1], 10.0])
    env.reset(seed=0, options={"pos_w": hold, "yaw_rad": 0.3})
    hold = env.task.pos_w[0].copy()  # where the episode starts (PX4: where its take-off phase settled)
    err = []
    for _ in range(int(10.0 / env.cfg.step_dt)):
        _, _, terminated, _, info = env.step(np.zeros(4, dtype=np.float32))  # zero velocity setpoint: hold
        err.append(np.linalg.norm(env.task.pos_w[0] - hold))
        _record(recorder, env, info, "hover", drift_m=round(float(err[-1]), 3))
        assert not terminated
    assert max(err) < 0.5, f"hover drifted {max(err):.2f} m from its start (limit 0.5 m)"
    return {"max_drift_m": float(max(err))}


def fly_box(env, recorder):
    start = _clear_spot(env.task.world)
    alt = 15.0
    env.reset(seed=0, options={"pos_w": [start[0], start[1], alt], "yaw_rad": 0.0})
    side = 20.0
    corners = start + np.array([[side, 0], [side, side], [0, side], [0, 0]]) - side / 2
    waypoints = [np.array([c[0], c[1], alt]) for c in corners]
    pilot = Pilot(env, speed_mps=5.0)
    reached = []
    steps = 0
    for wp in waypoints:
        while np.linalg.norm(env.task.pos_w[0] - wp) > 1.5 and steps < int(60.0 / env.cfg.step_dt):
            _, _, terminated, _, info = env.step(pilot.action(wp))
            steps += 1
            _record(recorder, env, info, "box", waypoint=len(reached))
            assert not terminated, "crashed flying the box"
        reached.append(bool(np.linalg.norm(env.task.pos_w[0] - wp) <= 1.5))
    assert all(reached), f"waypoints reached: {reached}"
    return {"waypoints": len(reached), "time_s": steps * env.cfg.step_dt}


def fly_detection(env, recorder):
    world = env.task.world
    static_vehicles = np.flatnonzero((world.target_class == TargetClass.VEHICLE) & ~world.moving)
    centre_first = static_vehicles[
        np.argsort(np.linalg.norm(world.target_pos0_w[static_vehicles, :2], axis=1))
    ]
    targets = centre_first[:3]
    start = _clear_spot(world)
    alt = 40.0  # above every building (max 35 m)
    env.reset(seed=0, options={"pos_w": [start[0], start[1], alt], "yaw_rad": 0.0})
    pilot = Pilot(env, speed_mps=6.0)
    # Stand off so the target is seen 20 deg steeper than the optical axis (70 deg below the horizon with the
    # default 50 deg pitch and 70 deg FOV): a steep line of sight clears the buildings around the target.
    depression = np.radians(min(env.cfg.camera.pitch_deg + 20.0, 85.0))
    look_ahead = alt / np.tan(depression)
    found = {}
    steps = 0
    for t in targets:
        stand_off, yaw = _clear_vantage(world, world.target_pos0_w[t], alt, look_ahead)
        while t not in found and steps < int(90.0 / env.cfg.step_dt):
            _, _, terminated, _, info = env.step(pilot.action(np.array([*stand_off, alt]), yaw_target=yaw))
            steps += 1
            _record(recorder, env, info, "detection", targets_found=len(found))
            assert not terminated
            if env.task.detections.visible[0, t]:
                found[int(t)] = info["sim_time_s"]
    assert set(found) == {int(t) for t in targets}, f"detected {sorted(found)} of targets {targets.tolist()}"
    return {f"target_{t}_detected_at_s": s for t, s in found.items()}


def _clear_vantage(world, target_w: np.ndarray, alt: float, look_ahead: float) -> tuple[np.ndarray, float]:
    """A stand-off point ``look_ahead`` m from the target, at ``alt``, whose line of sight clears every
    building (8 bearings tried in order), and the yaw that faces the target from there."""
    for bearing in np.arange(8) * (np.pi / 4):
        facing = np.array([np.cos(bearing), np.sin(bearing)])
        cam = np.array([*(target_w[:2] - look_ahead * facing), alt])
        ray = cam[None] + np.linspace(0.0, 0.97, 60)[:, None] * (target_w - cam)[None]
        if not world.points_in_buildings(ray, margin_m=0.3).any():
            return cam[:2], float(bearing)
    raise AssertionError(f"no clear line of sight to the target at {target_w.round(1).tolist()}")


PROFILE_FUNCS = {"takeoff": fly_takeoff, "hover": fly_hover, "box": fly_box, "detection": fly_detection}


@pytest.mark.functions_check
@pytest.mark.parametrize("profile", list(PROFILE_FUNCS))
def test_functions_check(profile, flight_stack, video_recorder, stack_strings):
    video_recorder.set_name(f"functions_check_{profile}")
    env = _env(profile, flight_stack)
    try:
        video_recorder.set_header(backend=stack_strings["backend"], flight_stack=env.flight_stack_label)
        results = PROFILE_FUNCS[profile](env, video_recorder)
    finally:
        env.close()
    video_recorder.record_metric("flight_stack", env.flight_stack_label)
    for key, value in results.items():
        video_recorder.record_metric(key, value)
    print(f"\nfunctions check {profile} ({env.flight_stack_label}): {results}")
