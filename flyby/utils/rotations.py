"""Batched rotation helpers. Quaternions are wxyz, rotating body vectors into the world frame."""

from __future__ import annotations

import numpy as np


def quat_to_rotation(quat_wxyz: np.ndarray) -> np.ndarray:
    """(N, 4) unit quaternions (wxyz) -> (N, 3, 3) rotation matrices R_wb."""
    q = np.asarray(quat_wxyz, dtype=np.float64)
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    rot = np.empty((q.shape[0], 3, 3))
    rot[:, 0, 0] = 1 - 2 * (y * y + z * z)
    rot[:, 0, 1] = 2 * (x * y - w * z)
    rot[:, 0, 2] = 2 * (x * z + w * y)
    rot[:, 1, 0] = 2 * (x * y + w * z)
    rot[:, 1, 1] = 1 - 2 * (x * x + z * z)
    rot[:, 1, 2] = 2 * (y * z - w * x)
    rot[:, 2, 0] = 2 * (x * z - w * y)
    rot[:, 2, 1] = 2 * (y * z + w * x)
    rot[:, 2, 2] = 1 - 2 * (x * x + y * y)
    return rot


def yaw_from_quat(quat_wxyz: np.ndarray) -> np.ndarray:
    """(N, 4) wxyz quaternions -> (N,) yaw (rotation about world z of the body x axis), radians in [-pi, pi]."""
    q = np.asarray(quat_wxyz, dtype=np.float64)
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    return np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
