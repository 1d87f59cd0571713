"""Draw YOLO and ground-truth boxes on a camera frame, in styles told apart by a legend (OpenCV).

Ground truth: thin dashed green rectangles. YOLO: solid rectangles in the class colour
(vehicle orange, person magenta) with ``"<class> <conf>"`` above. A legend box in the
top-left corner names both styles. Used for the evaluation video.
"""

from __future__ import annotations

import numpy as np

from flyby.perception.yolo import CLASS_NAMES, YoloBoxes

__all__ = ["GT_RGB", "YOLO_RGB", "draw_detections"]

#: Ground-truth box colour, RGB.
GT_RGB = (40, 230, 60)
#: YOLO box colour per class id, RGB.
YOLO_RGB = {0: (255, 150, 20), 1: (240, 40, 240)}
_DASH_PX = 4


def _dashed_rect(img: np.ndarray, x1: int, y1: int, x2: int, y2: int, color, dash: int = _DASH_PX) -> None:
    """A 1-px dashed rectangle (dash and gap ``dash`` px) drawn in place."""
    import cv2

    def dashed_line(p, q) -> None:
        length = max(abs(q[0] - p[0]), abs(q[1] - p[1]))
        if length == 0:
            cv2.line(img, p, q, color, 1)
            return
        for s in range(0, length, 2 * dash):
            e = min(s + dash, length)
            a = (p[0] + (q[0] - p[0]) * s // length, p[1] + (q[1] - p[1]) * s // length)
            b = (p[0] + (q[0] - p[0]) * e // length, p[1] + (q[1] - p[1]) * e // length)
            cv2.line(img, a, b, color, 1)

    dashed_line((x1, y1), (x2, y1))
    dashed_line((x2, y1), (x2, y2))
    dashed_line((x2, y2), (x1, y2))
    dashed_line((x1, y2), (x1, y1))


def draw_detections(
    image: np.ndarray,
    yolo: YoloBoxes | None,
    gt_boxes: np.ndarray | None = None,
    gt_cls: np.ndarray | None = None,
    *,
    legend: bool = True,
) -> np.ndarray:
    """A copy of ``image`` with ground-truth and YOLO boxes drawn, plus a legend.

    Args:
        image: (H, W, 3) uint8 RGB.
        yolo: YOLO detections in ``image``'s pixels (None: none drawn).
        gt_boxes: (K, 4) ground-truth ``x1, y1, x2, y2`` pixels (None: none drawn).
        gt_cls: (K,) class ids of ``gt_boxes`` (unused for the style, checked for length).
        legend: draw the legend box (top-left).

    Returns:
        (H, W, 3) uint8 RGB, a new array.

    Raises:
        ValueError: ``image`` is not (H, W, 3) uint8, or box arrays have bad shapes.
    """
    import cv2

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got shape {img.shape} dtype {img.dtype}")
    out = np.ascontiguousarray(img).copy()
    h, w = out.shape[:2]
    if gt_boxes is not None:
        gb = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4) if np.size(gt_boxes) else np.zeros((0, 4))
        if np.asarray(gt_boxes).size and np.asarray(gt_boxes).shape[-1] != 4:
            raise ValueError(f"gt_boxes must be (K, 4), got {np.asarray(gt_boxes).shape}")
        if gt_cls is not None and np.asarray(gt_cls).reshape(-1).shape[0] != gb.shape[0]:
            raise ValueError(f"gt_cls has {np.asarray(gt_cls).size} entries for {gb.shape[0]} boxes")
        for x1, y1, x2, y2 in np.round(gb).astype(int):
            _dashed_rect(out, x1, y1, min(x2, w - 1), min(y2, h - 1), GT_RGB)
    if yolo is not None:
        boxes = np.asarray(yolo.boxes_px, dtype=np.float64).reshape(-1, 4)
        for (x1, y1, x2, y2), c, p in zip(np.round(boxes).astype(int), yolo.cls, yolo.conf):
            color = YOLO_RGB.get(int(c), (255, 255, 255))
            cv2.rectangle(out, (x1, y1), (min(x2, w - 1), min(y2, h - 1)), color, 1)
            label = f"{CLASS_NAMES.get(int(c), str(int(c)))} {float(p):.2f}"
            ty = y1 - 3 if y1 >= 10 else y2 + 9
            cv2.putText(out, label, (x1, ty), cv2.FONT_HERSHEY_PLAIN, 0.7, color, 1, cv2.LINE_AA)
    if legend:
        _legend(out)
    return out


def _legend(img: np.ndarray) -> None:
    """Legend box in the top-left corner: YOLO (solid, per class) and ground truth (dashed)."""
    import cv2

    rows = [
        ("YOLO vehicle", YOLO_RGB[0], False),
        ("YOLO person", YOLO_RGB[1], False),
        ("ground truth", GT_RGB, True),
    ]
    x0, y0, line_h, width = 3, 3, 11, 92
    overlay = img.copy()
    cv2.rectangle(overlay, (x0, y0), (x0 + width, y0 + line_h * len(rows) + 4), (0, 0, 0), -1)
    cv2.addWeighted(overlay, 0.55, img, 0.45, 0, dst=img)
    for i, (text, color, dashed) in enumerate(rows):
        y = y0 + 8 + i * line_h
        if dashed:
            _dashed_rect(img, x0 + 4, y - 4, x0 + 18, y + 1, color, dash=2)
        else:
            cv2.rectangle(img, (x0 + 4, y - 4), (x0 + 18, y + 1), color, 1)
        cv2.putText(img, text, (x0 + 23, y + 2), cv2.FONT_HERSHEY_PLAIN, 0.7, (255, 255, 255), 1, cv2.LINE_AA)
