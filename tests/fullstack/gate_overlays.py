"""Detection boxes for the gate videos: ground truth in the rendered frame beside what the policy observed.

The seed plan asks every gate video for detection boxes with the ground-truth comparison. A gate
frame shows a render camera (the evaluation or full preset), while the policy observes the
detections of its perception camera (``task.detections``, possibly another resolution). Each box
here is a ground-truth box of a target in view of the render camera, dashed, coloured by class, and
labelled with whether the policy's observation holds that target ("in obs") or not ("not in obs").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flyby.enums import TargetClass
from flyby.perception.gt import GroundTruthDetector
from pytest_video_plugin import Box

#: Box colour by target class, RGB (the Phase 1 gate's colours).
COLOURS = {int(TargetClass.VEHICLE): (255, 140, 0), int(TargetClass.PERSON): (255, 60, 200)}
NAMES = {int(TargetClass.VEHICLE): "vehicle", int(TargetClass.PERSON): "person"}


@dataclass(frozen=True)
class TruthBox:
    """One target's ground-truth box in a rendered frame, pixels of that frame (before any scaling)."""

    x1: float
    y1: float
    x2: float
    y2: float
    target_class: int
    in_obs: bool

    def box(self, *, dx: float = 0.0, dy: float = 0.0, scale: float = 1.0) -> Box:
        """The overlay box, scaled by ``scale`` then shifted by (``dx``, ``dy``) px (its place in a composite)."""
        x1, y1, x2, y2 = (np.array([self.x1, self.y1, self.x2, self.y2]) * scale + [dx, dy, dx, dy]).tolist()
        label = f"{NAMES[self.target_class]} {'in obs' if self.in_obs else 'not in obs'}"
        return Box(x1, y1, x2, y2, label=label, color=COLOURS[self.target_class], style="dashed")


def truth_boxes(task, detector: GroundTruthDetector, drone: int = 0) -> list[TruthBox]:
    """Ground-truth boxes of the targets ``detector``'s camera sees from drone ``drone``, now.

    Args:
        task: the env's ``ISRTask`` (its pose, targets and last ``detections``).
        detector: a ground-truth detector built on the *render* camera, e.g.
            ``GroundTruthDetector.from_world(env.backend.camera, task.world)``; the drone's
            perception camera pose is used (the render camera shares its mount).
        drone: drone index.

    Returns:
        One :class:`TruthBox` per target in view, ``in_obs`` True when the policy's detections
        (``task.detections``, its perception camera) hold that target too.
    """
    cam_pos, rot_wc = task.camera_poses()
    det = detector.detect(cam_pos, rot_wc, task.target_pos_w, task.target_yaw_rad, task.world.target_size_m)
    observed = task.detections.visible[drone]
    classes = task.world.target_class
    return [
        TruthBox(*map(float, det.boxes_px[drone, t]), target_class=int(classes[t]), in_obs=bool(observed[t]))
        for t in np.flatnonzero(det.visible[drone])
    ]
