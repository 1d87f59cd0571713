"""Box matching and precision/recall (flyby.perception.matching): pure numpy, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from flyby.perception.matching import DetectionTally, box_iou, match_boxes, precision_recall


def test_box_iou_by_hand() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 2, 2]], dtype=np.float32)
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]])
    iou = box_iou(a, b)
    assert iou.shape == (2, 3)
    np.testing.assert_allclose(iou[0], [50 / 150, 1.0, 0.0])
    np.testing.assert_allclose(iou[1], [0.0, 4 / 100, 0.0])


def test_box_iou_degenerate_and_empty() -> None:
    assert box_iou(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)
    assert box_iou([[1, 1, 1, 1]], [[1, 1, 1, 1]])[0, 0] == 0.0  # empty union: 0, not NaN


def test_match_is_class_aware() -> None:
    gt = [[0, 0, 10, 10]]
    m = match_boxes([[0, 0, 10, 10]], [1], gt, [0])
    assert m.pred_to_gt.tolist() == [-1] and m.gt_to_pred.tolist() == [-1]
    assert (m.tp, m.fp, m.fn) == (0, 1, 1)
    m = match_boxes([[0, 0, 10, 10]], [0], gt, [0])
    assert (m.tp, m.fp, m.fn) == (1, 0, 0)
    assert m.iou[0] == pytest.approx(1.0)


def test_match_threshold_is_inclusive() -> None:
    # IoU exactly 0.5: boxes [0,10]x[0,10] and [0,10]x[0,5] -> 50 / 100.
    m = match_boxes([[0, 0, 10, 5]], None, [[0, 0, 10, 10]], None, iou_threshold=0.5)
    assert m.tp == 1
    m = match_boxes([[0, 0, 10, 5]], None, [[0, 0, 10, 10]], None, iou_threshold=0.51)
    assert m.tp == 0


def test_greedy_by_confidence_one_gt_per_prediction() -> None:
    gt = [[0, 0, 10, 10]]
    preds = [[1, 0, 10, 10], [0, 0, 10, 10]]  # the second overlaps more but is less confident
    m = match_boxes(preds, [0, 0], gt, [0], pred_conf=[0.9, 0.3])
    assert m.pred_to_gt.tolist() == [0, -1]  # the confident one takes the box; the duplicate is a FP
    assert (m.tp, m.fp, m.fn) == (1, 1, 0)
    m = match_boxes(preds, [0, 0], gt, [0], pred_conf=[0.3, 0.9])
    assert m.pred_to_gt.tolist() == [-1, 0]


def test_each_prediction_takes_its_best_free_gt() -> None:
    gt = [[0, 0, 10, 10], [8, 0, 18, 10]]
    preds = [[7, 0, 17, 10], [0, 0, 10, 10]]  # first: IoU 0.82 with gt 1, 0.18 with gt 0
    m = match_boxes(preds, None, gt, None)
    assert m.pred_to_gt.tolist() == [1, 0]
    assert m.gt_to_pred.tolist() == [1, 0]


def test_empty_frames() -> None:
    m = match_boxes(np.zeros((0, 4)), [], [[0, 0, 1, 1]], [0])
    assert (m.tp, m.fp, m.fn) == (0, 0, 1)
    m = match_boxes([[0, 0, 1, 1]], [0], np.zeros((0, 4)), [])
    assert (m.tp, m.fp, m.fn) == (0, 1, 0)


def test_precision_recall_accumulates_over_frames() -> None:
    frames = [
        ([[0, 0, 10, 10]], [0], [[0, 0, 10, 10]], [0]),  # TP
        ([[0, 0, 10, 10], [50, 50, 60, 60]], [1, 1], [[0, 0, 10, 10]], [1], [0.9, 0.8]),  # TP + FP
        (np.zeros((0, 4)), [], [[5, 5, 9, 9]], [0]),  # FN
    ]
    pr = precision_recall(frames)
    assert pr == {
        "precision": 2 / 3,
        "recall": 2 / 3,
        "tp": 2,
        "fp": 1,
        "fn": 1,
        "frames": 3,
        "iou_threshold": 0.5,
    }


def test_tally_conventions_and_counts() -> None:
    tally = DetectionTally()
    assert tally.precision == 1.0 and tally.recall == 1.0  # nothing predicted, nothing to find
    tally.add_counts(3, 1, 2, frames=4)
    assert tally.as_dict() == {
        "precision": 0.75,
        "recall": 0.6,
        "tp": 3,
        "fp": 1,
        "fn": 2,
        "frames": 4,
        "iou_threshold": 0.5,
    }
    tally.add([[0, 0, 4, 4]], [0], np.zeros((0, 4)), [])
    assert (tally.fp, tally.frames) == (2, 5)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: match_boxes([[0, 0, 1]], None, [[0, 0, 1, 1]], None),
            r"pred_boxes: expected shape \(M, 4\)",
        ),
        (
            lambda: match_boxes([[0, 0, 1, 1]], [0, 1], [[0, 0, 1, 1]], None),
            "pred_cls: 2 class ids for 1 boxes",
        ),
        (lambda: match_boxes([[0, 0, 1, 1]], None, [[0, np.nan, 1, 1]], None), "gt_boxes: contains NaN"),
        (
            lambda: match_boxes([[0, 0, 1, 1]], None, [[0, 0, 1, 1]], None, iou_threshold=0.0),
            r"within \(0, 1\]",
        ),
        (
            lambda: match_boxes([[0, 0, 1, 1]], None, [[0, 0, 1, 1]], None, pred_conf=[0.1, 0.2]),
            "pred_conf: 2",
        ),
        (lambda: precision_recall([([[0, 0, 1, 1]], [0])]), "frame 0: expected"),
        (lambda: DetectionTally(iou_threshold=1.5), r"within \(0, 1\]"),
        (lambda: DetectionTally().add_counts(-1, 0, 0), "counts must be >= 0"),
    ],
)
def test_bad_input_raises_clear_errors(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
