from __future__ import annotations

import numpy as np
import pytest

from flyby.enums import TargetClass
from flyby.errors import InvalidAction
from flyby.mdp import observations as om
from flyby.mdp import rewards as rw
from flyby.mdp import terminations as tm
from flyby.mdp.actions import ActionCfg, validate_actions


def test_layout_slices_are_contiguous_and_named():
    layout = om.ObsLayout(top_k=5)
    parts = [
        layout.pos,
        layout.vel,
        layout.yaw,
        layout.clearance,
        layout.detections,
        layout.progress,
        layout.last_action,
        layout.coverage,
    ]
    assert parts[0].start == 0
    for a, b in zip(parts, parts[1:]):
        assert a.stop == b.start
    assert layout.dim == 3 + 3 + 2 + 9 + 5 * om.DET_FIELDS + 3 + 4 + 9 == 73


def test_top_k_puts_new_targets_first_then_larger_boxes():
    visible = np.array([[True, True, True, False, True]])
    boxes = np.zeros((1, 5, 4))
    boxes[0, :, 2] = [10, 30, 20, 99, 5]  # widths; heights 1
    boxes[0, :, 3] = 1
    new = np.array([[False, False, False, False, True]])
    idx, valid = om.select_top_k(visible, boxes, new, k=3)
    assert idx[0].tolist() == [4, 1, 2] and valid.all()
    idx, valid = om.select_top_k(visible, boxes, new, k=7)  # more slots than targets
    assert valid[0].tolist() == [True] * 4 + [False] * 3
    assert 3 not in idx[0][valid[0]]  # never an invisible target


def test_detection_encoding_is_normalised_to_the_image():
    boxes = np.array([[[30.0, 20.0, 50.0, 60.0]]])
    enc = om.encode_detections(
        np.array([[0, 0]]),
        np.array([[True, False]]),
        boxes,
        np.array([[True]]),
        np.array([TargetClass.PERSON], dtype=np.int8),
        width=80,
        height=80,
    ).reshape(1, 2, om.DET_FIELDS)
    slot = enc[0, 0]
    assert slot[om.DET_PRESENT] == 1 and slot[om.DET_PERSON] == 1 and slot[om.DET_VEHICLE] == 0
    assert slot[om.DET_NEW] == 1
    np.testing.assert_allclose(slot[[om.DET_CX, om.DET_CY, om.DET_W, om.DET_H]], [0.0, 0.0, 0.25, 0.5])
    assert (enc[0, 1] == 0).all()


def test_reward_terms_are_pure_and_batched():
    a = np.array([[1.0, 0, 0, 0], [0, 0, 0, 0]])
    prev = np.zeros((2, 4))
    np.testing.assert_array_equal(rw.energy(a), [1.0, 0.0])
    np.testing.assert_array_equal(rw.jerk(a, prev), [1.0, 0.0])
    np.testing.assert_array_equal(rw.new_targets(np.array([[True, True], [False, True]])), [2.0, 1.0])
    np.testing.assert_array_equal(rw.collision(np.array([True, False])), [1.0, 0.0])
    assert tuple(rw.RewardCfg().terms) == rw.REWARD_TERMS
    names = ("new_targets", "coverage", "collision", "geofence", "energy", "jerk")
    batch = rw.builtin_terms(
        names,
        newly_seen=np.array([[True, True], [False, True]]),
        new_cells=np.array([3, 0]),
        crashed=np.array([True, False]),
        outside=np.array([False, True]),
        actions=a,
        prev_actions=prev,
    )
    assert batch.shape == (6, 2) and batch.tolist() == [[2, 1], [3, 0], [1, 0], [0, 1], [1, 0], [1, 0]]


def test_terminations():
    cfg = tm.TerminationCfg()
    pos = np.array([[0, 0, 10.0], [0, 0, 0.2], [150, 0, 10], [0, 0, 130]])
    crashed = tm.crashed(pos, np.array([False, False, False, False]), cfg)
    assert crashed.tolist() == [False, True, False, False]
    out = tm.outside_geofence(pos, np.array([100.0, 100.0]), cfg)
    assert out.tolist() == [False, False, True, True]
    assert tm.time_out(np.array([5, 1200]), 1200).tolist() == [False, True]


def test_action_scaling_units():
    vel, yaw_rate = ActionCfg(max_velocity=10.0, max_vertical_velocity=5.0, max_yaw_rate=90.0).scale(
        np.array([[1.0, -0.5, 1.0, -1.0]])
    )
    np.testing.assert_allclose(vel, [[10.0, -5.0, 5.0]])
    np.testing.assert_allclose(yaw_rate, [-np.pi / 2])


def _reference_top_k_encoding(visible, boxes, new, target_class, k, width, height):
    """select_top_k + encode_detections written plainly (fancy indexing, one field at a time)."""
    n, t = visible.shape
    if not visible.any():  # nothing in view: no ranking, nothing to encode
        return np.zeros((n, k), dtype=np.intp), np.zeros((n, k), dtype=bool), np.zeros((n, k * om.DET_FIELDS))
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    score = np.where(visible, area + new * 1e7, -1.0)
    kk = min(k, t)
    part = np.argpartition(-score, kk - 1, axis=1)[:, :kk] if kk < t else np.tile(np.arange(t), (n, 1))
    rows = np.arange(n)[:, None]
    idx = part[rows, np.argsort(-score[rows, part], axis=1, kind="stable")]
    valid = score[rows, idx] >= 0
    idx = np.concatenate([idx, np.zeros((n, k - kk), dtype=idx.dtype)], axis=1)
    valid = np.concatenate([valid, np.zeros((n, k - kk), dtype=bool)], axis=1)
    out = np.zeros((n, k, om.DET_FIELDS))
    b = boxes[rows, idx]
    cls = target_class[idx]
    out[..., om.DET_PRESENT] = 1.0
    out[..., om.DET_VEHICLE] = cls == TargetClass.VEHICLE
    out[..., om.DET_PERSON] = cls == TargetClass.PERSON
    out[..., om.DET_NEW] = new[rows, idx]
    out[..., om.DET_CX] = (b[..., 0] + b[..., 2]) / width - 1.0
    out[..., om.DET_CY] = (b[..., 1] + b[..., 3]) / height - 1.0
    out[..., om.DET_W] = (b[..., 2] - b[..., 0]) / width
    out[..., om.DET_H] = (b[..., 3] - b[..., 1]) / height
    out *= valid[..., None]
    return idx, valid, out.reshape(n, k * om.DET_FIELDS)


def test_top_k_and_encoding_match_the_plain_reference_bit_for_bit(monkeypatch):
    """The numpy reference (ties in argpartition's order; the kernel's: tests/mdp/test_mdp_kernels.py)."""
    monkeypatch.setenv("FLYBY_KERNEL", "numpy")
    rng = np.random.default_rng(0)
    for trial in range(300):
        n, t, k = int(rng.integers(1, 20)), int(rng.integers(1, 12)), int(rng.integers(1, 8))
        dtype = (np.float32, np.float64)[trial % 2]
        visible = rng.random((n, t)) < 0.5
        x1, y1 = rng.uniform(0, 60, (2, n, t))
        # Integer sizes make equal areas (ties) common.
        w, h = rng.integers(0, 5, (2, n, t)) if trial % 3 == 0 else rng.uniform(0, 30, (2, n, t))
        boxes = np.stack([x1, y1, x1 + w, y1 + h], axis=-1).astype(dtype)
        boxes[~visible] = 0.0  # as the detector reports them
        new = visible & (rng.random((n, t)) < 0.3)
        cls = rng.integers(0, 2, t).astype(np.int8)
        size = ((80, 80), (128, 96), (81.5, 60.0))[trial % 3]
        idx, valid, enc = _reference_top_k_encoding(visible, boxes, new, cls, k, *size)
        got_idx, got_valid = om.select_top_k(visible, boxes, new, k)
        np.testing.assert_array_equal(got_idx, idx)
        np.testing.assert_array_equal(got_valid, valid)
        got = om.encode_detections(got_idx, got_valid, boxes, new, cls, *size)
        assert got.dtype == enc.dtype and got.tobytes() == enc.tobytes(), trial


def test_geofence_margin_shrinks_the_area():
    cfg = tm.TerminationCfg(geofence_margin_m=5.0)
    pos = np.array([[96.0, 0.0, 10.0], [0.0, -94.0, 10.0], [94.0, 94.0, 119.0]])
    assert tm.outside_geofence(pos, np.array([100.0, 100.0]), cfg).tolist() == [True, False, False]


@pytest.mark.parametrize("kernel", ["numpy", "numba"])
def test_validate_actions_clips_huge_values_and_rejects_nan_and_inf(monkeypatch, kernel):
    monkeypatch.setenv("FLYBY_KERNEL", kernel)
    huge = np.array([[1e308, 1e308, -0.5, 2.0]])  # finite (their sum is not)
    np.testing.assert_array_equal(validate_actions(huge, 1), [[1.0, 1.0, -0.5, 1.0]])
    for bad in (np.inf, -np.inf, np.nan):
        a = np.zeros((2, 4))
        a[1, 2] = bad
        with pytest.raises(InvalidAction, match=r"NaN/inf at \(env, channel\) \[\[1, 2\]\]"):
            validate_actions(a, 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_validate_actions_compiled_path_equals_the_reference(monkeypatch, dtype):
    """The numba fast path (float arrays of the right shape) returns the reference's bits, a new
    float64 array each call, and leaves bad values to the reference's checks and messages."""
    rng = np.random.default_rng(5)
    a = rng.uniform(-3, 3, (64, 4)).astype(dtype)
    a[0] = [-0.0, 0.0, 1.0, -1.0]
    a[1] = [np.finfo(dtype).max, -np.finfo(dtype).max, 1.0000001, -0.9999999]
    results, errors = [], []
    for kernel in ("numpy", "numba"):
        monkeypatch.setenv("FLYBY_KERNEL", kernel)
        out = validate_actions(a, 64)
        assert out.dtype == np.float64 and out is not validate_actions(a, 64)
        results.append(out)
        bad = a.copy()
        bad[3, 1], bad[9, 0] = np.nan, np.inf
        with pytest.raises(InvalidAction) as exc:
            validate_actions(bad, 64)
        errors.append(str(exc.value))
    np.testing.assert_array_equal(results[0].view(np.int64), results[1].view(np.int64))
    assert errors[0] == errors[1] and "[[3, 1], [9, 0]]" in errors[0]
