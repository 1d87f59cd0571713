"""The class colours of every overlay flyby draws: the evaluation video and the gate videos.

One table each, RGB, keyed by class id (:class:`flyby.enums.TargetClass`: 0 vehicle, 1 person;
YOLO's class ids are the same, :data:`flyby.perception.yolo.CLASS_NAMES`):

- :data:`CLASS_RGB`: ground-truth boxes (vehicle orange, person sky blue);
- :data:`YOLO_RGB`: YOLO detections (vehicle red-orange, person magenta), told apart from the
  ground truth beside them by hue.
"""

from __future__ import annotations

__all__ = ["CLASS_RGB", "YOLO_RGB"]

#: Ground-truth box colour per target class, RGB.
CLASS_RGB: dict[int, tuple[int, int, int]] = {0: (255, 170, 40), 1: (80, 200, 255)}
#: YOLO box colour per class id, RGB.
YOLO_RGB: dict[int, tuple[int, int, int]] = {0: (255, 80, 40), 1: (230, 60, 230)}
