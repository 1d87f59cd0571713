"""Match predicted boxes to ground-truth boxes; precision and recall over many frames. Pure numpy.

Boxes are ``x1, y1, x2, y2`` in pixels of one image (any float dtype; computed in
float64). A prediction is a **true positive** when it is matched to a ground-truth box
of the same class with IoU >= ``iou_threshold``; each ground-truth box takes at most one
prediction. Matching is greedy, as COCO/PASCAL VOC evaluation does it: predictions in
order of decreasing confidence (input order when no confidences are given), each taking
the unmatched same-class ground-truth box it overlaps most. Unmatched predictions are
**false positives**; unmatched ground-truth boxes are **false negatives**.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = ["DetectionTally", "Match", "box_iou", "match_boxes", "precision_recall"]


def _boxes(a: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name}: expected shape (M, 4) x1, y1, x2, y2 pixels, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or inf; give finite pixel coordinates")
    return arr


def _classes(c: np.ndarray | None, m: int, name: str) -> np.ndarray:
    if c is None:
        return np.zeros(m, dtype=np.int64)
    arr = np.asarray(c).reshape(-1)
    if arr.shape[0] != m:
        raise ValueError(f"{name}: {arr.shape[0]} class ids for {m} boxes; give one per box")
    return arr.astype(np.int64)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every pair of boxes.

    Args:
        a: (M, 4) ``x1, y1, x2, y2`` pixels.
        b: (K, 4) ``x1, y1, x2, y2`` pixels.

    Returns:
        (M, K) float64 in [0, 1]; 0 where a union is empty (degenerate boxes).

    Raises:
        ValueError: a shape is not (., 4) or a value is not finite.
    """
    a = _boxes(a, "a")
    b = _boxes(b, "b")
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0.0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0.0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


class Match(NamedTuple):
    """Result of :func:`match_boxes` for one frame.

    Attributes:
        pred_to_gt: (M,) int64, the ground-truth index each prediction matched, -1 if none.
        gt_to_pred: (K,) int64, the prediction index each ground-truth box matched, -1 if none.
        iou: (M,) float64, IoU of each prediction with its match (0 where unmatched).
    """

    pred_to_gt: np.ndarray
    gt_to_pred: np.ndarray
    iou: np.ndarray

    @property
    def tp(self) -> int:
        """Matched predictions."""
        return int((self.pred_to_gt >= 0).sum())

    @property
    def fp(self) -> int:
        """Unmatched predictions."""
        return int((self.pred_to_gt < 0).sum())

    @property
    def fn(self) -> int:
        """Unmatched ground-truth boxes."""
        return int((self.gt_to_pred < 0).sum())


def match_boxes(
    pred_boxes: np.ndarray,
    pred_cls: np.ndarray | None,
    gt_boxes: np.ndarray,
    gt_cls: np.ndarray | None,
    iou_threshold: float = 0.5,
    pred_conf: np.ndarray | None = None,
) -> Match:
    """Greedy, class-aware one-to-one matching of predictions to ground truth (module docstring).

    Args:
        pred_boxes: (M, 4) predicted ``x1, y1, x2, y2`` pixels.
        pred_cls: (M,) predicted class ids (None: all one class).
        gt_boxes: (K, 4) ground-truth boxes, same pixels.
        gt_cls: (K,) ground-truth class ids (None: all one class).
        iou_threshold: least IoU of a match, in (0, 1].
        pred_conf: (M,) confidences; predictions are matched highest first (None: input order).

    Returns:
        :class:`Match`.

    Raises:
        ValueError: wrong shapes, non-finite values, or ``iou_threshold`` outside (0, 1].
    """
    if not 0.0 < float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold={iou_threshold} must be within (0, 1]; 0.5 is the PASCAL VOC value")
    pb = _boxes(pred_boxes, "pred_boxes")
    gb = _boxes(gt_boxes, "gt_boxes")
    m, k = pb.shape[0], gb.shape[0]
    pc = _classes(pred_cls, m, "pred_cls")
    gc = _classes(gt_cls, k, "gt_cls")
    pred_to_gt = np.full(m, -1, dtype=np.int64)
    gt_to_pred = np.full(k, -1, dtype=np.int64)
    best_iou = np.zeros(m)
    if m == 0 or k == 0:
        return Match(pred_to_gt, gt_to_pred, best_iou)
    if pred_conf is None:
        order = np.arange(m)
    else:
        conf = np.asarray(pred_conf, dtype=np.float64).reshape(-1)
        if conf.shape[0] != m:
            raise ValueError(f"pred_conf: {conf.shape[0]} confidences for {m} boxes; give one per box")
        order = np.argsort(-conf, kind="stable")
    iou = box_iou(pb, gb)
    iou[pc[:, None] != gc[None, :]] = -1.0  # class-aware: another class never matches
    for p in order:
        row = iou[p]
        g = int(np.argmax(row))
        if row[g] >= iou_threshold:
            pred_to_gt[p] = g
            gt_to_pred[g] = p
            best_iou[p] = row[g]
            iou[:, g] = -1.0  # taken
    return Match(pred_to_gt, gt_to_pred, best_iou)


@dataclass
class DetectionTally:
    """True/false positives and false negatives accumulated over frames.

    ``precision = tp / (tp + fp)`` (1.0 when nothing was predicted: no false alarm),
    ``recall = tp / (tp + fn)`` (1.0 when there was nothing to find).

    Example::

        tally = DetectionTally(iou_threshold=0.5)
        for pred, gt in frames:
            tally.add(pred.boxes_px, pred.cls, gt_boxes, gt_cls, pred.conf)
        tally.as_dict()   # {"precision", "recall", "tp", "fp", "fn", "frames", "iou_threshold"}
    """

    iou_threshold: float = 0.5
    tp: int = 0
    fp: int = 0
    fn: int = 0
    frames: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < float(self.iou_threshold) <= 1.0:
            raise ValueError(f"iou_threshold={self.iou_threshold} must be within (0, 1]")

    def add(
        self,
        pred_boxes: np.ndarray,
        pred_cls: np.ndarray | None,
        gt_boxes: np.ndarray,
        gt_cls: np.ndarray | None,
        pred_conf: np.ndarray | None = None,
    ) -> Match:
        """Match one frame (:func:`match_boxes`) and add its counts; returns the match."""
        match = match_boxes(pred_boxes, pred_cls, gt_boxes, gt_cls, self.iou_threshold, pred_conf)
        self.add_counts(match.tp, match.fp, match.fn)
        return match

    def add_counts(self, tp: int, fp: int, fn: int, frames: int = 1) -> None:
        """Add counts matched elsewhere (e.g. an env's per-step ``info``)."""
        if min(tp, fp, fn, frames) < 0:
            raise ValueError(f"counts must be >= 0, got tp={tp} fp={fp} fn={fn} frames={frames}")
        self.tp += int(tp)
        self.fp += int(fp)
        self.fn += int(fn)
        self.frames += int(frames)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    def as_dict(self) -> dict[str, float | int]:
        """``{"precision", "recall", "tp", "fp", "fn", "frames", "iou_threshold"}`` (the metrics.json
        ``detection`` fields)."""
        return {
            "precision": float(self.precision),
            "recall": float(self.recall),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "frames": self.frames,
            "iou_threshold": float(self.iou_threshold),
        }


def precision_recall(frames, iou_threshold: float = 0.5) -> dict[str, float | int]:
    """Precision and recall over frames.

    Args:
        frames: iterable of per-frame tuples ``(pred_boxes, pred_cls, gt_boxes, gt_cls)`` or
            ``(pred_boxes, pred_cls, gt_boxes, gt_cls, pred_conf)`` (see :func:`match_boxes`).
        iou_threshold: least IoU of a true positive.

    Returns:
        ``{"precision", "recall", "tp", "fp", "fn", "frames", "iou_threshold"}``
        (see :class:`DetectionTally` for the empty-denominator convention).

    Raises:
        ValueError: a frame is not a 4- or 5-tuple, or has bad boxes.
    """
    tally = DetectionTally(iou_threshold=iou_threshold)
    for i, frame in enumerate(frames):
        if len(frame) not in (4, 5):
            raise ValueError(
                f"frame {i}: expected (pred_boxes, pred_cls, gt_boxes, gt_cls[, pred_conf]), got "
                f"{len(frame)} items"
            )
        tally.add(*frame)
    return tally.as_dict()
