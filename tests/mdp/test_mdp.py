from __future__ import annotations

import numpy as np

from flyby.enums import TargetClass
from flyby.mdp import observations as om
from flyby.mdp import rewards as rw
from flyby.mdp import terminations as tm
from flyby.mdp.actions import scale_actions


def test_layout_slices_are_contiguous_and_named():
    layout = om.ObsLayout(top_k=5)
    parts = [layout.pos, layout.vel, layout.yaw, layout.clearance, layout.detections, layout.progress, layout.last_action]
    assert parts[0].start == 0
    for a, b in zip(parts, parts[1:]):
        assert a.stop == b.start
    assert layout.dim == 3 + 3 + 2 + 9 + 5 * om.DET_FIELDS + 3 + 4 == 64


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
        np.array([[0, 0]]), np.array([[True, False]]), boxes, np.array([[True]]),
        np.array([TargetClass.PERSON], dtype=np.int8), width=80, height=80,
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
    assert set(rw.RewardCfg().scales) == set(rw.REWARD_TERMS)
    assert rw.RewardCfg(scales={"bogus": 1.0}).validate() == [
        "scales.bogus: unknown reward term (known: new_targets, coverage, collision, geofence, energy, jerk)"
    ]


def test_terminations():
    cfg = tm.TerminationCfg()
    pos = np.array([[0, 0, 10.0], [0, 0, 0.2], [150, 0, 10], [0, 0, 130]])
    crashed = tm.crashed(pos, np.array([False, False, False, False]), cfg)
    assert crashed.tolist() == [False, True, False, False]
    out = tm.outside_geofence(pos, np.array([100.0, 100.0]), cfg)
    assert out.tolist() == [False, False, True, True]
    assert tm.time_out(np.array([5, 1200]), 1200).tolist() == [False, True]


def test_action_scaling_units():
    vel, yaw_rate = scale_actions(np.array([[1.0, -0.5, 1.0, -1.0]]), 10.0, 5.0, 90.0)
    np.testing.assert_allclose(vel, [[10.0, -5.0, 5.0]])
    np.testing.assert_allclose(yaw_rate, [-np.pi / 2])
