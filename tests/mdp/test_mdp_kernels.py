"""The compiled coverage and observation-encoding loops (flyby/mdp/kernels.py) against the numpy reference.

Each function runs on both paths (``$FLYBY_KERNEL`` switched per call) on the same random inputs,
and the results must be equal bit for bit: the loops do the reference's IEEE operations in its
order, and counts and selections are exact. Inputs cover cameras that do not look down, NaN and
far-away positions, drones outside the area, subsets of rows, ties in the top-k ranking and
fewer targets than slots.
"""

from __future__ import annotations

import numpy as np
import pytest

from flyby.enums import TargetClass
from flyby.geometry import yaw_rotation
from flyby.mdp import coverage as cov
from flyby.mdp import observations as obs_mdp
from flyby.perception import CameraCfg, camera_poses_w


def both(monkeypatch, fn, *args, copy_first: int | None = None):
    """(reference result, kernel result); ``copy_first``: arg index updated in place (given a copy each)."""
    results = []
    for kernel in ("numpy", "numba"):
        monkeypatch.setenv("FLYBY_KERNEL", kernel)
        call_args = list(args)
        if copy_first is not None:
            call_args[copy_first] = call_args[copy_first].copy()
        out = fn(*call_args)
        results.append((out, call_args[copy_first]) if copy_first is not None else out)
    return results


def assert_identical(a, b) -> None:
    if isinstance(a, tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_identical(x, y)
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
    np.testing.assert_array_equal(a, b)


def grid(half: float = 100.0, cell: float = 10.0, max_radius: float = 40.0, far: float = 150.0):
    return cov.make_grid(np.array([half, half]), cell, max_radius, 70.0, far)


def cameras(rng, n: int):
    cfg = CameraCfg()
    pos = np.c_[rng.uniform(-130, 130, (n, 2)), rng.uniform(-5, 90, n)]
    cam, rot = camera_poses_w(pos, yaw_rotation(rng.uniform(-np.pi, np.pi, n)), cfg)
    flip = rng.uniform(size=n) < 0.2  # some cameras look up or level: no footprint
    q, _ = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    rot[flip] = (q * np.sign(np.linalg.det(q))[:, None, None])[flip]
    cam[rng.uniform(size=n) < 0.05] = np.nan
    return cam, rot


# The reference warns on NaN camera positions (cast of a NaN cell index it then masks out).
@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("half, cell", [(100.0, 10.0), (400.0, 10.0), (55.0, 7.5)])
@pytest.mark.parametrize("n", [1, 3, 64])
@pytest.mark.parametrize("seed", range(3))
def test_footprints_and_marking_are_identical(monkeypatch, seed, n, half, cell):
    g = grid(half, cell)
    rng = np.random.default_rng(seed)
    covered = rng.uniform(size=(n, g.num_cells)) < 0.3
    for step in range(4):  # a few steps on the same episode grid
        cam, rot = cameras(rng, n)
        (ref_ground, ref_r2), (ground, r2) = both(monkeypatch, cov.footprints, g, cam, rot)
        assert_identical((ref_ground, ref_r2), (ground, r2))
        ids = None if step % 2 == 0 else np.sort(rng.choice(n, size=max(1, n // 2), replace=False))
        k = slice(None) if ids is None else ids
        (ref_new, ref_cov), (new, got_cov) = both(
            monkeypatch, cov.mark_covered, g, covered, ids, ground[k], r2[k], copy_first=1
        )
        assert_identical(ref_new, new)
        assert_identical(ref_cov, got_cov)
        covered = got_cov
    assert covered.any()


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the reference squares 1e300
def test_marking_far_away_and_nan_footprints_marks_nothing(monkeypatch):
    g = grid()
    covered = np.zeros((3, g.num_cells), dtype=bool)
    ground = np.array([[1e300, 0.0], [np.nan, 5.0], [-1e18, 1e18]])
    (ref_new, ref_cov), (new, got) = both(
        monkeypatch, cov.mark_covered, g, covered, None, ground, np.full(3, 1600.0), copy_first=1
    )
    assert_identical(ref_new, new)
    assert not got.any() and not ref_cov.any()


@pytest.mark.parametrize("block", [1, 2, 4, 5])
@pytest.mark.parametrize("seed", range(3))
def test_coverage_patch_is_identical(monkeypatch, seed, block):
    rng = np.random.default_rng(seed)
    gx, gy, n = 20, 17, 40
    covered = rng.uniform(size=(n, gx * gy)) < rng.uniform(0, 1, (n, 1))
    cell_xy = rng.integers(-30, 50, (n, 2))  # inside, at the edges and far outside
    ref, got = both(monkeypatch, obs_mdp.coverage_patch, covered, (gx, gy), cell_xy, block)
    assert_identical(ref, got)
    assert ((got >= 0) & (got <= 1)).all()


def detections(rng, n: int, t: int, dtype=np.float32, ties: bool = False):
    visible = rng.uniform(size=(n, t)) < 0.4
    xy = rng.uniform(0, 100, (n, t, 2))
    wh = rng.uniform(1, 30, (n, t, 2))
    if ties:  # equal boxes: equal scores, ranked by target index
        wh[:] = 10.0
    boxes = np.concatenate([xy, xy + wh], axis=2).astype(dtype)
    boxes[~visible] = 0.0
    new = visible & (rng.uniform(size=(n, t)) < 0.3)
    target_class = rng.choice([int(TargetClass.VEHICLE), int(TargetClass.PERSON)], t)
    return visible, boxes, new, target_class


@pytest.mark.parametrize("ties", [False])  # ties: the reference keeps argpartition's order
@pytest.mark.parametrize("n, t, k", [(1, 40, 5), (16, 40, 5), (8, 3, 5), (4, 5, 5), (64, 120, 8)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_top_k_and_encoding_are_identical(monkeypatch, n, t, k, dtype, ties):
    rng = np.random.default_rng(n * 1000 + t)
    visible, boxes, new, target_class = detections(rng, n, t, dtype, ties)
    (ref_idx, ref_valid), (idx, valid) = both(monkeypatch, obs_mdp.select_top_k, visible, boxes, new, k)
    assert_identical(ref_valid, valid)
    assert_identical(np.where(ref_valid, ref_idx, 0), np.where(valid, idx, 0))  # arbitrary where not valid
    ref, got = both(monkeypatch, obs_mdp.encode_detections, idx, valid, boxes, new, target_class, 128, 96)
    assert_identical(ref, got)
    assert valid.sum() == np.minimum(visible.sum(axis=1), k).sum()
    # New targets rank first, then larger boxes.
    first = idx[valid[:, 0], 0]
    rows = np.flatnonzero(valid[:, 0])
    assert (new[rows, first] | ~new[rows].any(axis=1)).all()


def test_nothing_visible_encodes_zeros(monkeypatch):
    rng = np.random.default_rng(0)
    visible, boxes, new, cls = detections(rng, 5, 10)
    visible[:] = False
    (ref_idx, ref_valid), (idx, valid) = both(monkeypatch, obs_mdp.select_top_k, visible, boxes, new, 5)
    assert_identical(ref_valid, valid)
    ref, got = both(monkeypatch, obs_mdp.encode_detections, idx, valid, boxes, new, cls, 80, 80)
    assert_identical(ref, got)
    assert not got.any()
