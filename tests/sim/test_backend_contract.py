"""The backend contract: what every simulator backend must do the same way, parametrised over backends.

MuJoCo runs here; the ``isaac`` cases skip with "Isaac Sim not importable: run inside the
container (podman/README.md)" and run in the container. Both must pass:

- the same world gives the same targets and the camera the config asked for;
- renders are (n, H, W, 3) uint8 at the preset resolution, rows in the requested drone order;
- the rendered targets sit where the analytic ground truth puts them: for every visible target
  whose box touches no other target's and no building hides a corner of, the box of its
  target-coloured pixels has IoU >= 0.7 with the ground-truth box (measured on MuJoCo: 0.74 to
  0.96, median 0.87, over 11 targets seen from 3 poses; the rest is pixel rounding of boxes a few
  pixels wide);
- bad poses are refused with the shapes named;
- on Isaac Sim, Replicator's ``bounding_box_2d_tight`` (a second ground truth) agrees with the
  analytic boxes (median IoU >= 0.7 over the same poses).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from flyby.enums import ResolutionPreset
from flyby.geometry import yaw_quat_wxyz, yaw_rotation
from flyby.perception.camera import CameraCfg, PinholeIntrinsics, camera_poses_w
from flyby.perception.gt import GroundTruthDetector
from flyby.sim.base import make_backend

IOU_MIN = 0.7  # pixel box vs ground-truth box, per isolated visible target
CHROMA_MIN = 0.6  # (max - min) / max channel of a target-coloured pixel (the palettes are saturated)
CAMERA = CameraCfg(preset=ResolutionPreset.EVALUATION, pitch_deg=45.0)
# Drone poses (x, y, z m; yaw rad) that look over parts of the seed-0 world with several targets.
POSES = [((0.0, -60.0, 30.0), 1.57), ((-50.0, 0.0, 25.0), 0.0), ((40.0, 40.0, 35.0), -2.4)]


@pytest.fixture(params=["mujoco", pytest.param("isaac", marks=pytest.mark.isaac)], scope="module")
def backend(request, world):
    be = make_backend(request.param, world, 2, CAMERA)
    yield be
    be.close()


def test_same_world_same_targets_and_camera(backend, world):
    assert backend.num_drones == 2
    assert backend.world.num_targets == world.num_targets and backend.world.seed == world.seed
    assert backend.camera == CAMERA
    intr = PinholeIntrinsics.from_cfg(backend.camera)
    assert (intr.width, intr.height) == (320, 240)


def test_render_shapes_dtypes_and_drone_order(backend, world):
    backend.set_target_poses(*world.target_poses(0.0))
    pos = np.array([[0.0, -60.0, 30.0], [40.0, 40.0, 35.0]])
    backend.set_drone_poses(pos, yaw_quat_wxyz(np.array([1.57, -2.4])))
    both = backend.render_cameras()
    assert both.shape == (2, 240, 320, 3) and both.dtype == np.uint8
    second = backend.render_cameras(np.array([1]))
    assert second.shape == (1, 240, 320, 3)
    # Row i is drone ids[i]: drone 1's view, not drone 0's (a viewport of another size may move a
    # few edge pixels: MuJoCo differs in 7 of 230,400 values).
    differ = lambda a, b: np.mean(np.any(a != b, axis=-1))  # noqa: E731
    assert differ(second[0], both[1]) < 0.001 < 0.2 < differ(second[0], both[0])
    overview = backend.render_overview()
    assert overview.ndim == 3 and overview.shape[2] == 3 and overview.dtype == np.uint8


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _corners_hidden(cam, centre, yaw, size, world) -> bool:
    """Whether a building blocks the sight line to any of the target box's corners (slab test)."""
    c, s = np.cos(yaw), np.sin(yaw)
    half = 0.45 * np.asarray(size)  # just inside the box, so a corner on the ground is not "hidden"
    signs = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], dtype=float)
    local = signs * half
    corners = centre + np.stack(
        [c * local[:, 0] - s * local[:, 1], s * local[:, 0] + c * local[:, 1], local[:, 2]], 1
    )
    d = corners - cam  # (8, 3) segments cam -> corner, parameter in [0, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        t0 = (world.building_min_w[None] - cam) / d[:, None]  # (8, B, 3)
        t1 = (world.building_max_w[None] - cam) / d[:, None]
    enter = np.nanmax(np.minimum(t0, t1), axis=2)
    leave = np.nanmin(np.maximum(t0, t1), axis=2)
    return bool((np.maximum(enter, 0.0) <= np.minimum(leave, 1.0)).any())


def test_rendered_targets_match_the_ground_truth_boxes(backend, world):
    detector = GroundTruthDetector.from_world(CAMERA, world)
    # Every target in the frame, occluded and tiny ones too: no buildings, no smallest box.
    open_sky = GroundTruthDetector(replace(CAMERA, min_box_px=0.0), np.zeros((0, 3)), np.zeros((0, 3)))
    tpos, tyaw = world.target_poses(0.0)
    backend.set_target_poses(tpos, tyaw)
    scores = []
    for (x, y, z), yaw in POSES:
        pos, yaws = np.array([[x, y, z]]), np.array([yaw])
        backend.set_drone_poses(np.repeat(pos, 2, 0), yaw_quat_wxyz(np.repeat(yaws, 2)))
        rgb = backend.render_cameras(np.array([0]))[0].astype(int)
        hi, lo = rgb.max(axis=2), rgb.min(axis=2)
        # Target colours are saturated hues; their shaded faces keep the hue, so chroma relative to
        # the brightest channel (grey ground, roads and buildings stay far below).
        target_px = (hi > 24) & (hi - lo > CHROMA_MIN * hi)
        cam_pos, rot_wc = camera_poses_w(pos, yaw_rotation(yaws), CAMERA)
        det = detector.detect(cam_pos, rot_wc, tpos, tyaw, world.target_size_m)
        framed = open_sky.detect(cam_pos, rot_wc, tpos, tyaw, world.target_size_m)  # occluded ones too
        every_box = framed.boxes_px[0][framed.visible[0]]
        for t in np.flatnonzero(det.visible[0]):
            box = det.boxes_px[0, t]
            grown = box + np.array([-4.0, -4.0, 4.0, 4.0])  # the region searched for this target's pixels
            touching = sum(iou(grown, o) > 0 for o in every_box) - 1
            hidden = _corners_hidden(cam_pos[0], tpos[t], tyaw[t], world.target_size_m[t], world)
            if touching or min(box[2] - box[0], box[3] - box[1]) < 4 or hidden:
                continue  # its pixels cannot be told apart, or a building covers part of it
            x1, y1 = (int(max(v, 0)) for v in grown[:2])
            x2, y2 = int(min(grown[2], 320)), int(min(grown[3], 240))
            ys, xs = np.nonzero(target_px[y1:y2, x1:x2])
            assert xs.size, f"pose {(x, y, z, yaw)}: no target pixels in the box {box.round(1).tolist()}"
            pixel_box = [x1 + xs.min(), y1 + ys.min(), x1 + xs.max() + 1, y1 + ys.max() + 1]
            scores.append(iou(pixel_box, box))
    assert len(scores) >= 5, f"only {len(scores)} isolated visible targets: move the poses"
    assert min(scores) >= IOU_MIN, f"IoU per target: {np.round(scores, 3).tolist()}"


def test_bad_poses_are_refused_with_the_shapes(backend, world):
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        backend.set_drone_poses(np.zeros((2, 2)), yaw_quat_wxyz(np.zeros(2)))
    with pytest.raises(ValueError, match="finite"):
        backend.set_drone_poses(np.full((2, 3), np.nan), yaw_quat_wxyz(np.zeros(2)))
    t = world.num_targets
    with pytest.raises(ValueError, match=rf"\({t}, 3\)"):
        backend.set_target_poses(np.zeros((t - 1, 3)), np.zeros(t - 1))


@pytest.mark.isaac
def test_isaac_annotator_boxes_agree_with_the_analytic_ones(world):
    """Isaac Sim only: Replicator's bounding_box_2d_tight, a second ground truth, against the analytic
    detector on the same poses (unoccluded targets; same IoU floor as the pixel check)."""
    be = make_backend("isaac", world, 1, CAMERA)
    try:
        detector = GroundTruthDetector.from_world(CAMERA, world)
        tpos, tyaw = world.target_poses(0.0)
        be.set_target_poses(tpos, tyaw)
        scores = []
        for (x, y, z), yaw in POSES:
            pos, yaws = np.array([[x, y, z]]), np.array([yaw])
            be.set_drone_poses(pos, yaw_quat_wxyz(yaws))
            cam_pos, rot_wc = camera_poses_w(pos, yaw_rotation(yaws), CAMERA)
            det = detector.detect(cam_pos, rot_wc, tpos, tyaw, world.target_size_m)
            found = be.annotator_boxes(0)
            targets = found["boxes"][
                np.isin(found["labels"], ["vehicle", "person"]) & (found["occlusion"] < 0.05)
            ]
            for box in det.boxes_px[0][det.visible[0]]:
                if len(targets):
                    scores.append(max(iou(box, other) for other in targets))
        assert len(scores) >= 5 and np.median(scores) >= IOU_MIN, np.round(scores, 3).tolist()
    finally:
        be.close()
