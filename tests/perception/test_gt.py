"""Tests of the ground-truth detector (flyby/perception/gt.py).

Geometry tests build camera poses with ``camera_poses_w(pos, yaw_rotation(yaw), cfg)``
so that the detector is checked against the camera conventions of camera.py;
the batched detector is compared with a per-pair reference written for
clarity, not speed. Every test runs on both implementations of ``detect`` (``$FLYBY_KERNEL``:
the numpy reference and the compiled kernel); ``test_gt_kernel.py`` compares the two directly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from flyby.enums import ResolutionPreset
from flyby.errors import ConfigError
from flyby.geometry import yaw_rotation
from flyby.perception import (
    CameraCfg,
    Detections,
    GroundTruthDetector,
    PinholeIntrinsics,
    camera_poses_w,
)
from flyby.world import generate_world

VEHICLE = (4.5, 1.8, 1.5)
PERSON = (0.5, 0.5, 1.8)
NO_BUILDINGS = (np.zeros((0, 3)), np.zeros((0, 3)))


@pytest.fixture(autouse=True, params=["numpy", "numba"])
def kernel(request, monkeypatch) -> str:
    """Run the test on one implementation of ``GroundTruthDetector.detect``."""
    monkeypatch.setenv("FLYBY_KERNEL", request.param)
    return request.param


def pose(cfg: CameraCfg, pos_w, yaw_rad: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Camera pose (1, 3), (1, 3, 3) of one level drone at ``pos_w`` with heading ``yaw_rad``."""
    return camera_poses_w(np.asarray([pos_w], dtype=float), yaw_rotation(np.array([yaw_rad])), cfg)


def targets(*specs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pos (T, 3), yaw (T,), size (T, 3)) from ``(pos, yaw, size)`` triples."""
    pos = np.array([s[0] for s in specs], dtype=float).reshape(-1, 3)
    yaw = np.array([s[1] for s in specs], dtype=float).reshape(-1)
    size = np.array([s[2] for s in specs], dtype=float).reshape(-1, 3)
    return pos, yaw, size


# --------------------------------------------------------------- reference


def segment_hits_box(p0, p1, lo, hi) -> bool:
    """Slab test of the segment p0 -> p1 against the box [lo, hi] (touching counts)."""
    s0, s1 = 0.0, 1.0
    for a in range(3):
        d = p1[a] - p0[a]
        if d == 0.0:
            if p0[a] < lo[a] or p0[a] > hi[a]:
                return False
            continue
        ta, tb = (lo[a] - p0[a]) / d, (hi[a] - p0[a]) / d
        s0, s1 = max(s0, min(ta, tb)), min(s1, max(ta, tb))
        if s0 > s1:
            return False
    return True


def reference_detect(cfg, bmin, bmax, cam_pos_w, rot_wc, tpos, tyaw, tsize) -> dict[str, np.ndarray]:
    """One (camera, target) pair at a time, straight from the visibility rules in gt.py."""
    k = PinholeIntrinsics.from_cfg(cfg)
    n, t = len(cam_pos_w), len(tpos)
    out = {
        "visible": np.zeros((n, t), bool),
        "in_frustum": np.zeros((n, t), bool),
        "occluded": np.zeros((n, t), bool),
        "boxes_px": np.zeros((n, t, 4)),
        "depth_m": np.full((n, t), np.inf),
    }
    for i in range(n):
        r, c = rot_wc[i], cam_pos_w[i]
        for j in range(t):
            depth = (r.T @ (tpos[j] - c))[2]
            if not cfg.near_m <= depth <= cfg.far_m:
                continue
            cy, sy = math.cos(tyaw[j]), math.sin(tyaw[j])
            us, vs, behind = [], [], False
            for sl in (-0.5, 0.5):
                for sw in (-0.5, 0.5):
                    for sh in (-0.5, 0.5):
                        lx, ly, lz = sl * tsize[j, 0], sw * tsize[j, 1], sh * tsize[j, 2]
                        corner_w = tpos[j] + np.array([cy * lx - sy * ly, sy * lx + cy * ly, lz])
                        x, y, z = r.T @ (corner_w - c)
                        behind |= z < cfg.near_m
                        if z > 0:
                            us.append(k.fx * x / z + k.cx)
                            vs.append(k.fy * y / z + k.cy)
            if behind:
                continue
            x1, x2 = min(max(min(us), 0.0), k.width), min(max(max(us), 0.0), k.width)
            y1, y2 = min(max(min(vs), 0.0), k.height), min(max(max(vs), 0.0), k.height)
            if x2 - x1 <= 0 or y2 - y1 <= 0:
                continue
            out["in_frustum"][i, j] = True
            if min(x2 - x1, y2 - y1) < cfg.min_box_px:
                continue
            if any(segment_hits_box(c, tpos[j], lo, hi) for lo, hi in zip(bmin, bmax)):
                out["occluded"][i, j] = True
                continue
            out["visible"][i, j] = True
            out["boxes_px"][i, j] = (x1, y1, x2, y2)
            out["depth_m"][i, j] = depth
    return out


def assert_matches_reference(det: Detections, ref: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(det.in_frustum, ref["in_frustum"])
    np.testing.assert_array_equal(det.occluded, ref["occluded"])
    np.testing.assert_array_equal(det.visible, ref["visible"])
    np.testing.assert_allclose(det.boxes_px, ref["boxes_px"], atol=1e-3, rtol=0)
    np.testing.assert_allclose(det.depth_m, ref["depth_m"], rtol=1e-6)


def random_scene(rng: np.random.Generator, n: int, t: int, b: int, general_rotations: bool, cfg: CameraCfg):
    """Cameras over a 100 m square at 15-60 m, ground targets of both classes, box buildings."""
    pos = np.c_[rng.uniform(-50, 50, (n, 2)), rng.uniform(15, 60, n)]
    cam_pos_w, rot_wc = camera_poses_w(pos, yaw_rotation(rng.uniform(-np.pi, np.pi, n)), cfg)
    if general_rotations:  # any proper rotation, not only level flight
        q, _ = np.linalg.qr(rng.normal(size=(n, 3, 3)))
        rot_wc = q * np.sign(np.linalg.det(q))[:, None, None]
    size = np.where(rng.uniform(size=(t, 1)) < 0.5, VEHICLE, PERSON)
    tpos = np.c_[rng.uniform(-60, 60, (t, 2)), size[:, 2] / 2]
    tyaw = rng.uniform(-np.pi, np.pi, t)
    lo = np.c_[rng.uniform(-50, 40, (b, 2)), np.zeros(b)]
    hi = lo + np.c_[rng.uniform(4, 15, (b, 2)), rng.uniform(5, 35, b)]
    return cam_pos_w, rot_wc, tpos, tyaw, size, lo, hi


# --------------------------------------------------------------- projection


@pytest.mark.parametrize("target_yaw", [0.0, math.pi / 2, math.pi / 3])
@pytest.mark.parametrize("height_m", [12.0, 30.0])
def test_nadir_box_centred_with_pinhole_size(target_yaw: float, height_m: float) -> None:
    cfg = CameraCfg(pitch_deg=90.0)
    cam, rot = pose(cfg, (3.0, -2.0, height_m))
    length, width, box_h = VEHICLE
    tpos, tyaw, tsize = targets(((cam[0, 0], cam[0, 1], box_h / 2), target_yaw, VEHICLE))
    det = GroundTruthDetector(cfg, *NO_BUILDINGS).detect(cam, rot, tpos, tyaw, tsize)

    k = PinholeIntrinsics.from_cfg(cfg)
    assert det.visible[0, 0]
    x1, y1, x2, y2 = det.boxes_px[0, 0]
    assert (x1 + x2) / 2 == pytest.approx(k.cx, abs=1e-3)
    assert (y1 + y2) / 2 == pytest.approx(k.cy, abs=1e-3)
    assert det.depth_m[0, 0] == pytest.approx(cam[0, 2] - box_h / 2, rel=1e-6)
    # The top face (depth = camera height - box height) spans the box. A nadir
    # camera on a drone with yaw 0 has image right = world -y, image down = world -x.
    top_depth = cam[0, 2] - box_h
    c, s = abs(math.cos(target_yaw)), abs(math.sin(target_yaw))
    extent_x_w, extent_y_w = length * c + width * s, length * s + width * c  # footprint AABB
    assert x2 - x1 == pytest.approx(k.fx * extent_y_w / top_depth, abs=1e-3)
    assert y2 - y1 == pytest.approx(k.fy * extent_x_w / top_depth, abs=1e-3)
    # Rule of thumb when the box is shallow against its depth: width ~ fx * L / depth within 1 px.
    if target_yaw == math.pi / 2 and height_m >= 30.0:
        assert x2 - x1 == pytest.approx(k.fx * length / det.depth_m[0, 0], abs=1.0)


def test_target_on_optical_axis_projects_to_image_centre() -> None:
    cfg = CameraCfg(preset=ResolutionPreset.EVALUATION)  # 320 x 240, pitch 50 deg
    cam, rot = pose(cfg, (10.0, 5.0, 25.0), yaw_rad=0.7)
    axis_w = rot[0, :, 2]
    tpos, tyaw, tsize = targets((cam[0] + 30.0 * axis_w, 0.3, PERSON))
    det = GroundTruthDetector(cfg, *NO_BUILDINGS).detect(cam, rot, tpos, tyaw, tsize)
    x1, y1, x2, y2 = det.boxes_px[0, 0]
    assert det.visible[0, 0]
    assert ((x1 + x2) / 2, (y1 + y2) / 2) == pytest.approx((160.0, 120.0), abs=0.5)
    assert det.depth_m[0, 0] == pytest.approx(30.0, rel=1e-6)


def test_frustum_rules() -> None:
    cfg = CameraCfg()  # 128 x 128, fovy 70 deg, near 0.2 m, far 150 m
    cam, rot = pose(cfg, (0.0, 0.0, 40.0), yaw_rad=1.2)
    right_w, axis_w = rot[0, :, 0], rot[0, :, 2]
    half_width_20 = 20.0 * math.tan(math.radians(35.0))
    tpos, tyaw, tsize = targets(
        (cam[0] + 20.0 * axis_w, 0.0, VEHICLE),  # 0: ahead
        (cam[0] - 20.0 * axis_w, 0.0, VEHICLE),  # 1: behind the camera
        (cam[0] + 160.0 * axis_w, 0.0, VEHICLE),  # 2: beyond far_m
        (cam[0] + 20.0 * axis_w + 3 * half_width_20 * right_w, 0.0, VEHICLE),  # 3: outside the FOV
        (cam[0] + 20.0 * axis_w + half_width_20 * right_w, 0.0, VEHICLE),  # 4: on the right edge
        (cam[0] + 1.0 * axis_w, 0.0, VEHICLE),  # 5: crosses the near plane
        (cam[0] + 149.0 * axis_w, 0.0, VEHICLE),  # 6: just inside far_m
    )
    det = GroundTruthDetector(cfg, *NO_BUILDINGS).detect(cam, rot, tpos, tyaw, tsize)
    assert det.visible[0].tolist() == [True, False, False, False, True, False, True]
    assert det.in_frustum[0].tolist() == [True, False, False, False, True, False, True]
    # Half of target 4 is past the right edge: its box is clipped there.
    x1, _, x2, _ = det.boxes_px[0, 4]
    assert x2 == 128.0 and 60.0 < x1 < 128.0
    assert np.all(det.boxes_px[0, [1, 2, 3, 5]] == 0.0)
    assert np.all(np.isinf(det.depth_m[0, [1, 2, 3, 5]]))


def test_min_box_px_filters_far_people() -> None:
    cfg = CameraCfg(min_box_px=2.0)
    cam, rot = pose(cfg, (0.0, 0.0, 30.0))
    axis_w = rot[0, :, 2]
    tpos, tyaw, tsize = targets((cam[0] + 10.0 * axis_w, 0.0, PERSON), (cam[0] + 120.0 * axis_w, 0.0, PERSON))
    det = GroundTruthDetector(cfg, *NO_BUILDINGS).detect(cam, rot, tpos, tyaw, tsize)
    # fx = 64 / tan(35 deg) = 91.4 px: 0.5 m at 120 m is about 0.4 px, at 10 m about 5 px.
    assert det.visible[0].tolist() == [True, False]
    assert det.in_frustum[0].tolist() == [True, True]
    assert not det.occluded[0].any()
    lenient = GroundTruthDetector(CameraCfg(min_box_px=0.0), *NO_BUILDINGS)
    lenient = lenient.detect(cam, rot, tpos, tyaw, tsize)
    assert lenient.visible[0].tolist() == [True, True]


# --------------------------------------------------------------- occlusion


def test_building_between_occludes_and_moving_it_away_clears() -> None:
    cfg = CameraCfg()
    cam, rot = pose(cfg, (0.0, 0.0, 20.0))
    target_w = np.array([25.0, 0.0, 0.75])
    tpos, tyaw, tsize = targets((target_w, 0.0, VEHICLE))
    mid = 0.5 * (cam[0] + target_w)
    between = (mid[None] - 2.0, mid[None] + 2.0)
    det = GroundTruthDetector(cfg, *between).detect(cam, rot, tpos, tyaw, tsize)
    assert det.in_frustum[0, 0] and det.occluded[0, 0] and not det.visible[0, 0]
    assert np.all(det.boxes_px[0, 0] == 0.0) and np.isinf(det.depth_m[0, 0])

    moved = (between[0] + [0.0, 30.0, 0.0], between[1] + [0.0, 30.0, 0.0])
    det = GroundTruthDetector(cfg, *moved).detect(cam, rot, tpos, tyaw, tsize)
    assert det.visible[0, 0] and not det.occluded[0, 0]

    beyond = (target_w[None] + [5.0, -3.0, -0.75], target_w[None] + [9.0, 3.0, 10.0])
    det = GroundTruthDetector(cfg, *beyond).detect(cam, rot, tpos, tyaw, tsize)
    assert det.visible[0, 0]


@pytest.mark.parametrize("heading_rad", [0.0, math.pi / 2, math.pi, -math.pi / 2])
def test_wall_just_in_front_of_a_person_occludes(heading_rad: float) -> None:
    cfg = CameraCfg(min_box_px=0.5)
    cam, rot = pose(cfg, (0.0, 0.0, 20.0), yaw_rad=heading_rad)
    fwd = np.array([math.cos(heading_rad), math.sin(heading_rad), 0.0]).round(12)
    side = np.array([-fwd[1], fwd[0], 0.0])
    tpos, tyaw, tsize = targets((12.0 * fwd + [0.0, 0.0, 0.9], 0.0, PERSON))
    # A 0.4 m thick, 3 m high wall 0.4 m before the person (who is 0.5 m wide).
    a = 11.2 * fwd - 5.0 * side
    b = 11.6 * fwd + 5.0 * side + [0.0, 0.0, 3.0]
    wall = (np.minimum(a, b)[None], np.maximum(a, b)[None])
    det = GroundTruthDetector(cfg, *wall).detect(cam, rot, tpos, tyaw, tsize)
    assert det.occluded[0, 0] and not det.visible[0, 0]
    assert GroundTruthDetector(cfg, *NO_BUILDINGS).detect(cam, rot, tpos, tyaw, tsize).visible[0, 0]


def test_buildings_on_the_line_but_off_the_segment_do_not_occlude() -> None:
    cfg = CameraCfg(pitch_deg=0.0)  # looking level, along body x
    cam, rot = pose(cfg, (0.0, 0.0, 20.0))
    c = cam[0]
    tpos, tyaw, tsize = targets((c + [25.0, 0.0, 0.0], 0.0, VEHICLE))
    behind_camera = (c[None] + [-10.0, -2.0, -2.0], c[None] + [-6.0, 2.0, 2.0])
    beyond_target = (c[None] + [30.0, -2.0, -2.0], c[None] + [34.0, 2.0, 2.0])
    for boxes in (behind_camera, beyond_target):
        det = GroundTruthDetector(cfg, *boxes).detect(cam, rot, tpos, tyaw, tsize)
        assert det.visible[0, 0] and not det.occluded[0, 0]


@pytest.mark.parametrize("pitch_deg", [90.0, 60.0])
def test_person_on_a_roof_and_a_drone_under_an_overhang_are_not_occluded(pitch_deg: float) -> None:
    """The line through camera and target meets these boxes, the segment between them does not."""
    cfg = CameraCfg(pitch_deg=pitch_deg, min_box_px=0.5)
    cam, rot = pose(cfg, (0.0, 0.0, 30.0))
    c = cam[0]
    on_axis = c + 18.0 * rot[0, :, 2]
    roof_h = on_axis[2] - 0.9
    tpos, tyaw, tsize = targets((on_axis, 0.0, PERSON))
    roof = (on_axis[None] + [-6.0, -6.0, -roof_h], on_axis[None] + [6.0, 6.0, -0.9])
    overhang = (c[None] + [-6.0, -6.0, 2.0], c[None] + [6.0, 6.0, 3.0])
    for boxes in (roof, overhang):
        det = GroundTruthDetector(cfg, *boxes).detect(cam, rot, tpos, tyaw, tsize)
        assert det.visible[0, 0] and not det.occluded[0, 0]


def test_camera_inside_a_building_is_occluded() -> None:
    cfg = CameraCfg()
    cam, rot = pose(cfg, (0.0, 0.0, 20.0))
    tpos, tyaw, tsize = targets(((25.0, 0.0, 0.75), 0.0, VEHICLE))
    around_camera = (cam - 1.0, cam + 1.0)
    det = GroundTruthDetector(cfg, *around_camera).detect(cam, rot, tpos, tyaw, tsize)
    assert det.occluded[0, 0] and not det.visible[0, 0]


def test_segment_parallel_to_a_face() -> None:
    # Nadir camera straight above the target: the segment has zero x and y components.
    cfg = CameraCfg(pitch_deg=90.0)
    cam, rot = pose(cfg, (0.0, 0.0, 30.0))
    tpos, tyaw, tsize = targets(((cam[0, 0], cam[0, 1], 0.75), 0.0, VEHICLE))
    c = cam[0]
    awning = (c[None] + [-2.0, -2.0, -20.0], c[None] + [2.0, 2.0, -19.0])  # under the camera
    det = GroundTruthDetector(cfg, *awning).detect(cam, rot, tpos, tyaw, tsize)
    assert det.occluded[0, 0]
    beside = (c[None] + [1.0, -2.0, -20.0], c[None] + [3.0, 2.0, -10.0])  # offset in x only
    det = GroundTruthDetector(cfg, *beside).detect(cam, rot, tpos, tyaw, tsize)
    assert det.visible[0, 0]
    # The segment runs exactly along a face: touching counts as occluded.
    flush = (c[None] + [0.0, -2.0, -20.0], c[None] + [3.0, 2.0, -10.0])
    det = GroundTruthDetector(cfg, *flush).detect(cam, rot, tpos, tyaw, tsize)
    assert det.occluded[0, 0]
    ref = reference_detect(cfg, *flush, cam, rot, tpos, tyaw, tsize)
    assert ref["occluded"][0, 0]


# --------------------------------------------------------------- batched vs reference


@pytest.mark.parametrize("dense_corners", [True, False], ids=["dense", "per-candidate"])
@pytest.mark.parametrize("general_rotations", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_batched_equals_reference(seed: int, general_rotations: bool, dense_corners: bool) -> None:
    cfg = CameraCfg(preset=ResolutionPreset.MULTI)  # 80 x 80: many boxes under min_box_px
    rng = np.random.default_rng(seed)
    cam, rot, tpos, tyaw, tsize, lo, hi = random_scene(rng, 7, 13, 12, general_rotations, cfg)
    detector = GroundTruthDetector(cfg, lo, hi)
    if not dense_corners:
        detector.dense_corner_limit = 0
    det = detector.detect(cam, rot, tpos, tyaw, tsize)
    assert_matches_reference(det, reference_detect(cfg, lo, hi, cam, rot, tpos, tyaw, tsize))


@pytest.mark.parametrize("seed", range(3))
def test_targets_straddling_the_image_border_match_reference(seed: int) -> None:
    """Boxes whose centre is off the image but whose corners poke in: the sphere cull must keep them."""
    cfg = CameraCfg(min_box_px=0.0)
    rng = np.random.default_rng(seed)
    cam, rot = pose(cfg, (0.0, 0.0, 30.0), yaw_rad=rng.uniform(-np.pi, np.pi))
    k = PinholeIntrinsics.from_cfg(cfg)
    t = 240
    # Centre pixels up to 40 px beyond one of the four edges, at depths 8-80 m.
    along = rng.uniform(0, k.width, t)
    beyond = rng.uniform(-40, 0, t)
    edge = rng.integers(0, 4, t)
    u = np.select([edge == 0, edge == 1, edge == 2], [beyond, k.width - beyond, along], along)
    v = np.select([edge == 2, edge == 3], [beyond, k.height - beyond], along)
    depth = rng.uniform(8, 80, t)
    ray_c = np.stack([(u - k.cx) / k.fx, (v - k.cy) / k.fy, np.ones(t)], axis=1) * depth[:, None]
    tpos = cam[0] + ray_c @ rot[0].T
    tyaw = rng.uniform(-np.pi, np.pi, t)
    tsize = np.where(rng.uniform(size=(t, 1)) < 0.5, VEHICLE, PERSON)
    det = GroundTruthDetector(cfg, *NO_BUILDINGS).detect(cam, rot, tpos, tyaw, tsize)
    assert_matches_reference(det, reference_detect(cfg, *NO_BUILDINGS, cam, rot, tpos, tyaw, tsize))
    assert 0 < det.visible.sum() < t  # both outcomes occur


def test_reference_comparison_covers_every_outcome() -> None:
    """The random scenes above exercise visible, occluded, too-small and out-of-view pairs."""
    cfg = CameraCfg(preset=ResolutionPreset.MULTI)
    counts = np.zeros(4, int)
    for seed in range(4):
        rng = np.random.default_rng(seed)
        cam, rot, tpos, tyaw, tsize, lo, hi = random_scene(rng, 7, 13, 12, False, cfg)
        det = GroundTruthDetector(cfg, lo, hi).detect(cam, rot, tpos, tyaw, tsize)
        too_small = det.in_frustum & ~det.visible & ~det.occluded
        counts += [det.visible.sum(), det.occluded.sum(), too_small.sum(), (~det.in_frustum).sum()]
    assert np.all(counts > 0), counts


def test_generated_world_matches_reference() -> None:
    world = generate_world(seed=0)
    cfg = CameraCfg()
    rng = np.random.default_rng(1)
    n = 6
    pos = np.c_[rng.uniform(-80, 80, (n, 2)), rng.uniform(15, 60, n)]
    cam, rot = camera_poses_w(pos, yaw_rotation(rng.uniform(-np.pi, np.pi, n)), cfg)
    tpos, tyaw = world.target_poses(3.0)
    det = GroundTruthDetector.from_world(cfg, world).detect(cam, rot, tpos, tyaw, world.target_size_m)
    ref = reference_detect(
        cfg, world.building_min_w, world.building_max_w, cam, rot, tpos, tyaw, world.target_size_m
    )
    assert_matches_reference(det, ref)
    assert det.visible.any()


# --------------------------------------------------------------- API details


def test_output_shapes_and_dtypes() -> None:
    cfg = CameraCfg()
    rng = np.random.default_rng(0)
    cam, rot, tpos, tyaw, tsize, lo, hi = random_scene(rng, 5, 9, 4, False, cfg)
    det = GroundTruthDetector(cfg, lo, hi).detect(cam, rot, tpos, tyaw, tsize)
    assert det.boxes_px.shape == (5, 9, 4) and det.boxes_px.dtype == np.float32
    assert det.depth_m.shape == (5, 9) and det.depth_m.dtype == np.float32
    for flags in (det.visible, det.in_frustum, det.occluded):
        assert flags.shape == (5, 9) and flags.dtype == bool
    b = det.boxes_px[det.visible]
    assert np.all((b[:, 0] >= 0) & (b[:, 2] <= cfg.width) & (b[:, 1] >= 0) & (b[:, 3] <= cfg.height))
    assert np.all((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1]))
    assert np.all(det.boxes_px[~det.visible] == 0.0)
    assert np.all(np.isinf(det.depth_m[~det.visible]))
    assert np.all(det.depth_m[det.visible] >= cfg.near_m)


@pytest.mark.parametrize("n, t, b", [(3, 0, 2), (0, 4, 2), (0, 0, 0), (3, 4, 0)])
def test_empty_inputs(n: int, t: int, b: int) -> None:
    cfg = CameraCfg()
    rng = np.random.default_rng(0)
    cam, rot, tpos, tyaw, tsize, lo, hi = random_scene(rng, n, t, b, False, cfg)
    det = GroundTruthDetector(cfg, lo, hi).detect(cam, rot, tpos, tyaw, tsize)
    assert det.boxes_px.shape == (n, t, 4)
    assert det.visible.shape == det.depth_m.shape == det.in_frustum.shape == det.occluded.shape == (n, t)
    assert not det.occluded.any()


def test_caches_follow_changing_inputs() -> None:
    """One detector across changing shapes, sizes and yaws gives what a fresh one gives."""
    cfg = CameraCfg(preset=ResolutionPreset.MULTI)
    rng = np.random.default_rng(5)
    _, _, _, _, _, lo, hi = random_scene(rng, 1, 1, 10, False, cfg)
    det = GroundTruthDetector(cfg, lo, hi)
    kept = []
    # Repeats, alternation (all drones / a reset subset) and more shapes than are kept.
    for n, t in [(4, 6), (4, 6), (2, 9), (4, 6), (1, 6), (3, 6), (5, 6), (6, 6), (4, 6), (2, 9)]:
        cam, rot, tpos, tyaw, tsize, _, _ = random_scene(rng, n, t, 0, False, cfg)
        got = det.detect(cam, rot, tpos, tyaw, tsize)
        fresh = GroundTruthDetector(cfg, lo, hi).detect(cam, rot, tpos, tyaw, tsize)
        for a, b in zip(got, fresh):
            np.testing.assert_array_equal(a, b)
        kept.append((got, fresh))
        # Same sizes, new yaws; then sizes changed in place.
        tyaw = tyaw + 0.4
        tsize[0] = tsize[0] * 1.7
        got = det.detect(cam, rot, tpos, tyaw, tsize)
        fresh = GroundTruthDetector(cfg, lo, hi).detect(cam, rot, tpos, tyaw, tsize)
        for a, b in zip(got, fresh):
            np.testing.assert_array_equal(a, b)
    # Earlier results are not overwritten by later calls.
    for got, fresh in kept:
        for a, b in zip(got, fresh):
            np.testing.assert_array_equal(a, b)


def test_accepts_lists_and_float32() -> None:
    cfg = CameraCfg()
    cam, rot = pose(cfg, (0.0, 0.0, 20.0))
    tpos, tyaw, tsize = targets(((25.0, 0.0, 0.75), 0.0, VEHICLE))
    det = GroundTruthDetector(cfg, [[100.0, 100.0, 0.0]], [[110.0, 110.0, 10.0]])
    a = det.detect(cam, rot, tpos, tyaw, tsize)
    f32 = np.float32
    b = det.detect(cam.astype(f32), rot.astype(f32), tpos.tolist(), [0.0], tsize.astype(f32))
    assert a.visible[0, 0] and b.visible[0, 0]
    np.testing.assert_allclose(a.boxes_px, b.boxes_px, atol=1e-3)


def test_nan_camera_is_not_visible() -> None:
    cfg = CameraCfg()
    cam, rot = pose(cfg, (0.0, 0.0, 20.0))
    cam = np.vstack([cam, [np.nan, 0.0, 20.0]])
    rot = np.concatenate([rot, rot])
    tpos, tyaw, tsize = targets(((25.0, 0.0, 0.75), 0.0, VEHICLE))
    det = GroundTruthDetector(cfg, *NO_BUILDINGS).detect(cam, rot, tpos, tyaw, tsize)
    assert det.visible[:, 0].tolist() == [True, False]


def _valid_args(n: int = 2, t: int = 3) -> dict[str, np.ndarray]:
    return {
        "cam_pos_w": np.zeros((n, 3)),
        "rot_wc": np.broadcast_to(np.eye(3), (n, 3, 3)).copy(),
        "target_pos_w": np.ones((t, 3)),
        "target_yaw_rad": np.zeros(t),
        "target_size_m": np.ones((t, 3)),
    }


@pytest.mark.parametrize(
    "name, bad, expected",
    [
        ("cam_pos_w", np.zeros((2, 2)), "(N, 3)"),
        ("cam_pos_w", np.zeros(3), "(N, 3)"),
        ("rot_wc", np.zeros((3, 3, 3)), "(N=2, 3, 3)"),
        ("rot_wc", np.zeros((2, 9)), "(N=2, 3, 3)"),
        ("target_pos_w", np.zeros((3, 2)), "(T, 3)"),
        ("target_yaw_rad", np.zeros((3, 1)), "(T=3,)"),
        ("target_size_m", np.zeros((4, 3)), "(T=3, 3)"),
    ],
)
def test_bad_shapes_raise_value_error(name: str, bad: np.ndarray, expected: str) -> None:
    det = GroundTruthDetector(CameraCfg(), *NO_BUILDINGS)
    args = _valid_args()
    args[name] = bad
    with pytest.raises(ValueError) as info:
        det.detect(**args)
    msg = str(info.value)
    assert msg.startswith(f"{name}:") and expected in msg and str(bad.shape) in msg


def test_bad_buildings_raise() -> None:
    cfg = CameraCfg()
    with pytest.raises(ValueError, match=r"building_max_w: expected shape \(B=2, 3\).*got \(3, 3\)"):
        GroundTruthDetector(cfg, np.zeros((2, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"building_min_w: expected shape \(B, 3\).*got \(2, 2\)"):
        GroundTruthDetector(cfg, np.zeros((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="building 1 has min"):
        GroundTruthDetector(cfg, np.array([[0, 0, 0], [5, 0, 0]]), np.array([[1, 1, 1], [4, 1, 1]]))
    with pytest.raises(ValueError, match="NaN or inf"):
        GroundTruthDetector(cfg, np.array([[0, 0, np.nan]]), np.ones((1, 3)))
    with pytest.raises(ConfigError, match="far_m"):
        GroundTruthDetector(CameraCfg(near_m=10.0, far_m=5.0), *NO_BUILDINGS)
