"""Overlays of the gate videos: class colours, class boxes, the class legend, and ground-truth boxes.

Every gate video colours a target's box by its class. The colours and names are flyby's own (the
ground-truth class colours of the evaluation video, :data:`flyby.perception.draw.CLASS_RGB`,
and :data:`flyby.perception.yolo.CLASS_NAMES`), so a vehicle has the same colour in every gate video and
in the validation video; the gates keep no table of their own. :func:`class_box` builds a box in its
class colour, :func:`class_legend` the one-line legend that names each colour.

The seed plan asks every gate video for detection boxes with the ground-truth comparison. A gate
frame shows a render camera (the evaluation or full preset), while the policy observes the
detections of its perception camera (``task.detections``, possibly another resolution). A
:class:`TruthBox` is a ground-truth box of a target in view of the render camera, dashed, coloured by
class, and labelled with whether the policy's observation holds that target ("in obs") or not
("not in obs").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flyby.perception.draw import CLASS_RGB
from flyby.perception.gt import GroundTruthDetector
from flyby.perception.yolo import CLASS_NAMES
from pytest_video_plugin import Box, Text

__all__ = ["TruthBox", "class_box", "class_colour", "class_legend", "class_name", "truth_boxes"]


def class_colour(target_class: int) -> tuple[int, int, int]:
    """Box colour, RGB, of a :class:`~flyby.enums.TargetClass` id.

    Raises:
        KeyError: an id flyby has no colour for (the message lists the known ids).
    """
    try:
        return CLASS_RGB[int(target_class)]
    except KeyError:
        raise KeyError(
            f"no colour for target class {target_class!r}; known classes {sorted(CLASS_RGB)}"
        ) from None


def class_name(target_class: int) -> str:
    """Lower-case name (``"vehicle"``, ``"person"``) of a :class:`~flyby.enums.TargetClass` id.

    Raises:
        KeyError: an id flyby has no name for.
    """
    try:
        return CLASS_NAMES[int(target_class)]
    except KeyError:
        raise KeyError(
            f"no name for target class {target_class!r}; known classes {sorted(CLASS_NAMES)}"
        ) from None


def class_box(
    x1: float,
    y1: float,
    x2: float,
    y2: float,
    target_class: int,
    *,
    label: str | None = None,
    style: str = "solid",
) -> Box:
    """A box in its class colour, corners in frame pixels.

    Args:
        x1, y1, x2, y2: corners, pixels of the frame handed to the recorder.
        target_class: :class:`~flyby.enums.TargetClass` id; sets the colour.
        label: text on the box's tab; ``None`` for none (small tiles: the colour says the class, and
            :func:`class_legend` names it).
        style: ``"solid"`` or ``"dashed"`` (ground truth beside predictions).
    """
    return Box(
        float(x1),
        float(y1),
        float(x2),
        float(y2),
        label=label or "",
        color=class_colour(target_class),
        style=style,
    )


def class_legend(x: float, y: float, *, scale: float = 0.45, title: str = "boxes:") -> list[Text]:
    """One line of text at baseline (``x``, ``y``) px: ``title``, then each class name in its box colour.

    Returns:
        The :class:`Text` items, left to right (the title in white), for ``add_frame(texts=...)``.
    """
    import cv2

    def width(text: str) -> int:  # as videokit draws Text: FONT_HERSHEY_SIMPLEX, thickness 1
        return cv2.getTextSize(text + " ", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0]

    texts = [Text(title, x=x, y=y, scale=scale)]
    x += width(title)
    for target_class in sorted(CLASS_NAMES):
        name = class_name(target_class)
        texts.append(Text(name, x=x, y=y, scale=scale, color=class_colour(target_class)))
        x += width(name)
    return texts


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
        """The overlay box, scaled by ``scale`` then shifted by (``dx``, ``dy``) px (its place in a frame)."""
        x1, y1, x2, y2 = (np.array([self.x1, self.y1, self.x2, self.y2]) * scale + [dx, dy, dx, dy]).tolist()
        label = f"{class_name(self.target_class)} {'in obs' if self.in_obs else 'not in obs'}"
        return class_box(x1, y1, x2, y2, self.target_class, label=label, style="dashed")


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
