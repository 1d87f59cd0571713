"""Perception: the pinhole camera model and ground-truth (analytic) target detection."""

from __future__ import annotations

from flyby.perception.camera import CameraCfg, PinholeIntrinsics, camera_poses_w
from flyby.perception.gt import Detections, GroundTruthDetector

__all__ = [
    "CameraCfg",
    "PinholeIntrinsics",
    "camera_poses_w",
    "Detections",
    "GroundTruthDetector",
]
