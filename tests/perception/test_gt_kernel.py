"""The compiled ground-truth detector (flyby/perception/gt_kernel.py) against the numpy reference.

Both paths run on the same inputs in one process (``$FLYBY_KERNEL`` switched per call). Flags
must be equal; boxes and depths, float32 outputs of float64 arithmetic that differs only in the
summation order of dot products, within 1e-4 px and 1e-6 relative. Scenes: random cameras (level
and any rotation) over random buildings and targets, the packaged world along a flight, 256
cameras against both of the reference's corner paths, targets straddling the image border and NaN
poses.
"""

from __future__ import annotations

import numpy as np
import pytest

from flyby.enums import ResolutionPreset
from flyby.geometry import yaw_rotation
from flyby.perception import CameraCfg, GroundTruthDetector, camera_poses_w
from flyby.world import generate_world

VEHICLE = np.array([4.5, 1.9, 1.5])
PERSON = np.array([0.5, 0.5, 1.8])


def both(monkeypatch, detector: GroundTruthDetector, *args):
    monkeypatch.setenv("FLYBY_KERNEL", "numpy")
    ref = detector.detect(*args)
    monkeypatch.setenv("FLYBY_KERNEL", "numba")
    return ref, detector.detect(*args)


def assert_same(ref, got) -> None:
    for name in ("visible", "in_frustum", "occluded"):
        np.testing.assert_array_equal(getattr(got, name), getattr(ref, name), err_msg=name)
    np.testing.assert_allclose(got.boxes_px, ref.boxes_px, atol=1e-4, rtol=0)
    np.testing.assert_allclose(got.depth_m, ref.depth_m, rtol=1e-6)
    for name in ref._fields:
        assert getattr(got, name).dtype == getattr(ref, name).dtype, name


def scene(rng, n: int, t: int, b: int, general_rotations: bool, cfg: CameraCfg):
    pos = np.c_[rng.uniform(-60, 60, (n, 2)), rng.uniform(3, 60, n)]
    cam, rot = camera_poses_w(pos, yaw_rotation(rng.uniform(-np.pi, np.pi, n)), cfg)
    if general_rotations:
        q, _ = np.linalg.qr(rng.normal(size=(n, 3, 3)))
        rot = q * np.sign(np.linalg.det(q))[:, None, None]
    size = np.where(rng.uniform(size=(t, 1)) < 0.5, VEHICLE, PERSON) * rng.uniform(0.5, 2.0, (t, 1))
    tpos = np.c_[
        rng.uniform(-70, 70, (t, 2)), size[:, 2] / 2 + rng.uniform(0, 20, t) * (rng.uniform(size=t) < 0.2)
    ]
    tyaw = rng.uniform(-np.pi, np.pi, t)
    lo = np.c_[rng.uniform(-60, 50, (b, 2)), np.zeros(b)]
    hi = lo + np.c_[rng.uniform(3, 20, (b, 2)), rng.uniform(4, 40, b)]
    return cam, rot, tpos, tyaw, size, lo, hi


@pytest.mark.parametrize("preset", [ResolutionPreset.MULTI, ResolutionPreset.TRAINING, ResolutionPreset.FULL])
@pytest.mark.parametrize("general_rotations", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_kernel_equals_reference_on_random_scenes(monkeypatch, seed, general_rotations, preset):
    cfg = CameraCfg(preset=preset)
    rng = np.random.default_rng(100 + seed)
    cam, rot, tpos, tyaw, size, lo, hi = scene(rng, 9, 60, 25, general_rotations, cfg)
    ref, got = both(monkeypatch, GroundTruthDetector(cfg, lo, hi), cam, rot, tpos, tyaw, size)
    assert_same(ref, got)


def test_kernel_covers_every_outcome(monkeypatch):
    """The random scenes above hold visible, occluded, too small and out-of-view pairs."""
    counts = np.zeros(4, int)
    cfg = CameraCfg(preset=ResolutionPreset.MULTI)
    for seed in range(6):
        cam, rot, tpos, tyaw, size, lo, hi = scene(np.random.default_rng(100 + seed), 9, 60, 25, False, cfg)
        _, det = both(monkeypatch, GroundTruthDetector(cfg, lo, hi), cam, rot, tpos, tyaw, size)
        small = det.in_frustum & ~det.visible & ~det.occluded
        counts += [det.visible.sum(), det.occluded.sum(), small.sum(), (~det.in_frustum).sum()]
    assert np.all(counts > 0), counts


@pytest.mark.parametrize("dense_corners", [True, False], ids=["dense", "per-candidate"])
def test_many_cameras_equal_reference(monkeypatch, dense_corners):
    """256 cameras, against both corner paths of the reference."""
    cfg = CameraCfg(preset=ResolutionPreset.MULTI)
    rng = np.random.default_rng(7)
    cam, rot, tpos, tyaw, size, lo, hi = scene(rng, 256, 40, 40, False, cfg)
    detector = GroundTruthDetector(cfg, lo, hi)
    if not dense_corners:
        detector.dense_corner_limit = 0
    ref, got = both(monkeypatch, detector, cam, rot, tpos, tyaw, size)
    assert_same(ref, got)
    assert got.visible.sum() > 50


def test_parallel_kernel_equals_the_serial_kernel_bit_for_bit(monkeypatch):
    """Cameras split over numba's threads (FLYBY_PARALLEL_MIN_DRONES at or below N): the same bits."""
    cfg = CameraCfg(preset=ResolutionPreset.MULTI)
    cam, rot, tpos, tyaw, size, lo, hi = scene(np.random.default_rng(11), 300, 40, 40, True, cfg)
    detector = GroundTruthDetector(cfg, lo, hi)
    monkeypatch.setenv("FLYBY_KERNEL", "numba")
    runs = []
    for threshold in ("100000", "300"):
        monkeypatch.setenv("FLYBY_PARALLEL_MIN_DRONES", threshold)
        runs.append(detector.detect(cam, rot, tpos, tyaw, size))
    for serial, parallel in zip(*runs, strict=True):
        assert serial.tobytes() == parallel.tobytes()
    assert runs[0].visible.sum() > 20 and runs[0].occluded.any()


def test_packaged_world_along_a_flight(monkeypatch):
    """The packaged world's buildings and moving targets, 16 drones over 50 control steps."""
    world = generate_world(seed=0)
    cfg = CameraCfg(preset=ResolutionPreset.MULTI)
    detector = GroundTruthDetector.from_world(cfg, world)
    rng = np.random.default_rng(3)
    pos = np.c_[rng.uniform(-90, 90, (16, 2)), rng.uniform(10, 50, 16)]
    vel = rng.normal(0, 5, (16, 3)) * [1, 1, 0.2]
    yaw = rng.uniform(-np.pi, np.pi, 16)
    seen = 0
    for k in range(50):
        cam, rot = camera_poses_w(pos + vel * 0.05 * k, yaw_rotation(yaw + 0.02 * k), cfg)
        tpos, tyaw = world.target_poses(0.05 * k)
        ref, got = both(monkeypatch, detector, cam, rot, tpos, tyaw, world.target_size_m)
        assert_same(ref, got)
        seen += int(got.visible.sum())
    assert seen > 0


def test_border_straddling_and_nan_poses(monkeypatch):
    """Targets whose centre is just off the image; a NaN camera and a NaN target see nothing."""
    cfg = CameraCfg(min_box_px=0.0)
    rng = np.random.default_rng(11)
    cam, rot, tpos, tyaw, size, lo, hi = scene(rng, 6, 200, 0, False, cfg)
    # Push targets near the frustum's side planes of camera 0: centres off the image by up to 40 px.
    k = GroundTruthDetector(cfg, lo, hi).intrinsics
    u = rng.uniform(-40, k.width + 40, 200)
    v = rng.choice([-20.0, k.height + 20.0], 200)
    depth = rng.uniform(5, 80, 200)
    ray = np.stack([(u - k.cx) / k.fx, (v - k.cy) / k.fy, np.ones(200)], axis=1) * depth[:, None]
    tpos = cam[0] + ray @ rot[0].T
    cam[3] = np.nan
    tpos[17] = np.nan
    ref, got = both(monkeypatch, GroundTruthDetector(cfg, lo, hi), cam, rot, tpos, tyaw, size)
    assert_same(ref, got)
    assert not got.visible[3].any() and not got.visible[:, 17].any()
    assert 0 < got.in_frustum[0].sum() < 200


def test_bad_input_gets_the_same_error_on_both_paths(monkeypatch):
    cfg = CameraCfg()
    detector = GroundTruthDetector(cfg, np.zeros((0, 3)), np.zeros((0, 3)))
    cam, rot = camera_poses_w(np.array([[0.0, 0.0, 30.0]]), yaw_rotation(np.zeros(1)), cfg)
    messages = []
    for kernel in ("numpy", "numba"):
        monkeypatch.setenv("FLYBY_KERNEL", kernel)
        with pytest.raises(ValueError) as err:
            detector.detect(cam, rot, np.zeros((4, 2)), np.zeros(4), np.ones((4, 3)))
        messages.append(str(err.value))
    assert messages[0] == messages[1] and "target_pos_w" in messages[0]


def test_unknown_kernel_is_refused_by_name(monkeypatch):
    from flyby.kernels import kernel_backend

    monkeypatch.setenv("FLYBY_KERNEL", "cuda")
    with pytest.raises(ValueError, match=r"FLYBY_KERNEL='cuda'.*numba, numpy"):
        kernel_backend()
    monkeypatch.setenv("FLYBY_KERNEL", " NumPy ")
    assert kernel_backend().value == "numpy"
    monkeypatch.delenv("FLYBY_KERNEL")
    assert kernel_backend().value == "numba"  # the default (flyby/kernels.py)
