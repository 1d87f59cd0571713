"""``perception.mode: yolo`` in PX4ISR-v0 (flyby.perception.yolo_env): what YOLO finds is what counts.

Most tests swap YOLO for a scripted detector that sees the render camera's ground truth
(optionally dropping, adding or mislabelling boxes), so the rules are checked exactly; one
test runs the shipped weights for real.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace

import numpy as np
import pytest

import flyby.perception.yolo_env as yolo_env
from flyby.config.evaluation import load_evaluation_cfg
from flyby.enums import PerceptionMode, ResolutionPreset
from flyby.envs.px4_env import PX4ISREnv
from flyby.geometry import yaw_rotation
from flyby.mdp.observations import DET_FIELDS, DET_NEW, DET_PERSON, DET_PRESENT, DET_VEHICLE
from flyby.perception.camera import CameraCfg, PinholeIntrinsics, camera_poses_w
from flyby.perception.gt import GroundTruthDetector
from flyby.perception.yolo import WeightsError, YoloBoxes
from flyby.world import generate_world


@pytest.fixture(scope="module")
def gt_cfg():
    return load_evaluation_cfg().px4_env


@pytest.fixture(scope="module")
def start(gt_cfg):
    """A start pose (pos_w, yaw_rad) whose perception camera sees several targets."""
    world = generate_world(gt_cfg.world, gt_cfg.world_seed)
    det = GroundTruthDetector.from_world(gt_cfg.camera, world)
    tpos, tyaw = world.target_poses(0.0)
    best = None
    for t in range(world.num_targets):
        for bearing in np.linspace(-np.pi, np.pi, 8, endpoint=False):
            pos = tpos[t] - 22.0 * np.array([np.cos(bearing), np.sin(bearing), 0.0])
            pos[2] = 28.0
            if np.abs(pos[:2]).max() > 80 or world.height_at(pos[None, :2])[0] > 20:
                continue
            cam, rot = camera_poses_w(pos[None], yaw_rotation(np.array([bearing])), gt_cfg.camera)
            n = int(det.detect(cam, rot, tpos, tyaw, world.target_size_m).visible.sum())
            if best is None or n > best[0]:
                best = (n, pos, bearing)
    assert best[0] >= 3
    return best[1], best[2]


class ScriptedDetector:
    """Stands in for YoloDetector: returns the render camera's ground truth, edited by ``edit``."""

    task = None  # set after the env is built
    edit = staticmethod(lambda boxes: boxes)

    def __init__(self, *args, **kwargs) -> None:
        self.calls = 0

    def detect(self, frames: np.ndarray) -> list[YoloBoxes]:
        self.calls += 1
        task = self.task
        assert frames.shape[1:] == (240, 320, 3) and frames.dtype == np.uint8
        pos, rot = camera_poses_w(task.dynamics.pos_w, task.dynamics.rot_wb, task.render_camera)
        det = task.render_detector.detect(
            pos, rot, task.target_pos_w, task.target_yaw_rad, task.world.target_size_m
        )
        out = []
        for i in range(frames.shape[0]):
            vis = np.flatnonzero(det.visible[i])
            cls = task.world.target_class[vis].astype(np.int64)
            boxes = YoloBoxes(det.boxes_px[i, vis], cls, np.linspace(0.9, 0.5, vis.size).astype(np.float32))
            out.append(type(self).edit(boxes))
        return out


def make_env(cfg, monkeypatch, edit=None, render_mode=None):
    class Stub(ScriptedDetector):
        pass

    if edit is not None:
        Stub.edit = staticmethod(edit)
    monkeypatch.setattr(yolo_env, "YoloDetector", Stub)
    ycfg = replace(cfg, perception=replace(cfg.perception, mode=PerceptionMode.YOLO))
    env = PX4ISREnv(ycfg, flight_stack="cascade", render_mode=render_mode)
    Stub.task = env.task
    return env


def rollout(env, start, steps=12):
    pos, yaw = start
    obs, info = env.reset(seed=3, options={"pos_w": pos, "yaw_rad": yaw})
    out = [(obs, 0.0, info)]
    for k in range(steps):
        action = np.array([0.2, 0.0, 0.0, 0.3 if k % 4 < 2 else -0.3], np.float32)
        obs, reward, term, trunc, info = env.step(action)
        out.append((obs, reward, info))
        assert not term and not trunc
    return out


def detection_slots(obs: np.ndarray, env) -> np.ndarray:
    return obs[env.task.layout.detections].reshape(-1, DET_FIELDS)


def test_a_perfect_detector_reproduces_ground_truth_mode(gt_cfg, start, monkeypatch) -> None:
    """Scripted YOLO = render ground truth: observations, rewards and found targets equal GT mode's."""
    gt_env = PX4ISREnv(gt_cfg, flight_stack="cascade")
    gt_run = rollout(gt_env, start)
    gt_seen = gt_env.task.seen.copy()
    gt_env.close()
    env = make_env(gt_cfg, monkeypatch)
    run = rollout(env, start)
    assert gt_seen.sum() >= 3
    np.testing.assert_array_equal(env.task.seen, gt_seen)
    for (o_gt, r_gt, _), (o, r, info) in zip(gt_run, run):
        np.testing.assert_allclose(o, o_gt, atol=1e-4)
        assert r == pytest.approx(r_gt, abs=1e-9)
        assert info["perception_fresh"] is True
        assert info["detection_counts"]["fp"] == 0 and info["detection_counts"]["fn"] == 0
    assert env.task.yolo.calls == len(run)  # one YOLO call per perception step (interval 1), reset included
    env.close()


def test_missed_targets_are_not_found(gt_cfg, start, monkeypatch) -> None:
    env = make_env(gt_cfg, monkeypatch, edit=lambda b: YoloBoxes.empty())
    run = rollout(env, start, steps=4)
    assert not env.task.seen.any()
    for obs, _reward, info in run:
        assert not detection_slots(obs, env)[:, DET_PRESENT].any()
        c = info["detection_counts"]
        assert c["tp"] == 0 and c["fp"] == 0 and c["fn"] == len(info["gt_boxes"]) > 0
    env.close()


def test_wrong_class_boxes_are_false_positives(gt_cfg, start, monkeypatch) -> None:
    """Class-aware matching: a right box with the wrong class finds nothing, but fills a slot as YOLO says."""
    env = make_env(gt_cfg, monkeypatch, edit=lambda b: b._replace(cls=1 - b.cls))
    run = rollout(env, start, steps=2)
    assert not env.task.seen.any()
    obs, _, info = run[-1]
    slots = detection_slots(obs, env)
    assert info["detection_counts"]["fp"] == len(info["gt_boxes"]) and info["detection_counts"]["tp"] == 0
    assert slots[:, DET_PRESENT].sum() >= 1
    assert not slots[:, DET_NEW].any()  # a false positive is never a new target
    env.close()


def test_false_positive_fills_a_slot_but_is_never_found(gt_cfg, start, monkeypatch) -> None:
    # mid-image, clear of the first frame's targets
    fake = np.array([[140.0, 100.0, 180.0, 140.0]], np.float32)

    def add_fp(b: YoloBoxes) -> YoloBoxes:
        return YoloBoxes(
            np.concatenate([b.boxes_px, fake]),
            np.concatenate([b.cls, [1]]),
            np.concatenate([b.conf, [0.99]]).astype(np.float32),
        )

    env = make_env(gt_cfg, monkeypatch, edit=add_fp)
    gt_env = PX4ISREnv(gt_cfg, flight_stack="cascade")
    run = rollout(env, start, steps=3)
    rollout(gt_env, start, steps=3)
    np.testing.assert_array_equal(env.task.seen, gt_env.task.seen)  # the extra box found nothing
    gt_env.close()
    obs, _, info = run[-1]
    assert info["detection_counts"]["fp"] == 1
    assert env.task.fp_valid[0].sum() == 1
    slots = detection_slots(obs, env)
    # The fake person box, mapped into the 128x128 perception camera:
    # centre (160, 120) render px -> image centre.
    fp_slot = [s for s in slots if s[DET_PRESENT] and s[DET_PERSON] and abs(s[4]) < 0.05 and abs(s[5]) < 0.05]
    assert len(fp_slot) == 1 and fp_slot[0][DET_NEW] == 0 and fp_slot[0][DET_VEHICLE] == 0
    env.close()


def test_info_carries_render_pixels_and_the_video_frame(gt_cfg, start, monkeypatch) -> None:
    env = make_env(gt_cfg, monkeypatch, render_mode="rgb_array")
    _, info = env.reset(seed=0, options={"pos_w": start[0], "yaw_rad": start[1]})
    for key in ("yolo_boxes", "gt_boxes", "gt_cls", "detection_counts", "perception_fresh", "camera"):
        assert key in info
    assert isinstance(info["yolo_boxes"], YoloBoxes)
    assert info["gt_boxes"].dtype == np.float32 and info["gt_boxes"].shape[1] == 4
    assert (info["gt_boxes"][:, 2] <= 320).all() and (info["gt_boxes"][:, 3] <= 240).all()
    assert info["gt_cls"].shape == (len(info["gt_boxes"]),)
    assert info["camera"].shape == (240, 320, 3)
    frame0 = info["camera"].copy()
    _, _, _, _, info1 = env.step(np.array([0.0, 0.0, 0.0, 1.0], np.float32))
    assert not np.array_equal(info1["camera"], frame0)  # a fresh frame per step (the yaw moved the view)
    np.testing.assert_array_equal(info["camera"], frame0)  # ... and the earlier one was not overwritten
    assert env.renderer.rendered == 0  # the perception render is reused for the video
    env.close()


def test_perception_interval_reuses_detections(gt_cfg, start, monkeypatch) -> None:
    cfg = replace(gt_cfg, perception_interval=3)
    env = make_env(cfg, monkeypatch)
    run = rollout(env, start, steps=6)
    assert [info["perception_fresh"] for _, _, info in run] == [True, False, False, True, False, False, True]
    assert env.task.yolo.calls == 3
    env.close()


def test_render_boxes_map_onto_the_perception_camera() -> None:
    """Ground truth at the 320x240 render camera, mapped, equals ground truth at the 128x128 camera."""
    world = generate_world(seed=1)
    percept = CameraCfg(preset=ResolutionPreset.TRAINING)
    render = replace(percept, preset=ResolutionPreset.EVALUATION)
    tpos, tyaw = world.target_poses(0.0)
    rng = np.random.default_rng(0)
    pos = np.column_stack([rng.uniform(-80, 80, (64, 2)), rng.uniform(30, 45, 64)])
    cam, rot = camera_poses_w(pos, yaw_rotation(rng.uniform(-np.pi, np.pi, 64)), percept)
    d_p = GroundTruthDetector.from_world(percept, world).detect(cam, rot, tpos, tyaw, world.target_size_m)
    d_r = GroundTruthDetector.from_world(render, world).detect(cam, rot, tpos, tyaw, world.target_size_m)
    mapped, keep = yolo_env.render_to_perception_px(
        d_r.boxes_px[d_r.visible],
        PinholeIntrinsics.from_cfg(render),
        PinholeIntrinsics.from_cfg(percept),
        2.0,
    )
    both = d_p.visible[d_r.visible]
    assert both.sum() > 20
    np.testing.assert_allclose(mapped[both], d_p.boxes_px[d_p.visible], atol=1e-3)
    assert (keep == both).mean() > 0.98  # only boxes a hair around the 2 px size rule may differ
    assert not (d_p.visible & ~d_r.visible).any()  # the render camera sees everything the perception one does


def test_missing_weights_fail_at_construction_and_release_the_backend(gt_cfg, tmp_path, monkeypatch) -> None:
    from flyby.sim.mujoco_backend import MujocoBackend

    closed = []
    original = MujocoBackend.close
    monkeypatch.setattr(MujocoBackend, "close", lambda self: (closed.append(self), original(self))[1])
    cfg = replace(
        gt_cfg,
        perception=replace(gt_cfg.perception, mode=PerceptionMode.YOLO, weights=str(tmp_path / "no.pt")),
    )
    with pytest.raises(WeightsError, match="no.pt.*flyby yolo-train"):
        PX4ISREnv(cfg, flight_stack="cascade")
    assert len(closed) == 1 and closed[0].closed


def test_shipped_weights_run_in_the_env(gt_cfg, start) -> None:
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip('ultralytics is not installed: pip install "flyby[yolo]"')
    cfg = replace(gt_cfg, perception=replace(gt_cfg.perception, mode=PerceptionMode.YOLO))
    env = PX4ISREnv(cfg, flight_stack="cascade")
    run = rollout(env, start, steps=3)
    counts = np.array([[i["detection_counts"][k] for k in ("tp", "fp", "fn")] for _, _, i in run])
    assert counts[:, 0].sum() >= 1  # the trained detector finds targets in view
    assert env.task.seen.sum() >= 1
    assert all(env.observation_space.contains(o) for o, _, _ in run)
    env.close()
