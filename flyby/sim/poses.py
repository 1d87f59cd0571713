"""Validation of drone ids and poses shared by every backend (no simulator import)."""

from __future__ import annotations

import numpy as np

__all__ = ["check_drone_ids", "check_drone_poses", "check_target_poses"]


def check_drone_ids(ids: np.ndarray | None, num_drones: int) -> np.ndarray:
    """Drone indices: (n,) int in ``[0, num_drones)``, or ``arange(num_drones)`` for None.

    Raises:
        ValueError: ``ids`` not a 1-D integer array, or out of range.
    """
    if ids is None:
        return np.arange(num_drones)
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be a 1-D integer array; got shape {ids.shape}, dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= num_drones):
        raise ValueError(f"ids must lie in [0, {num_drones}); got min {ids.min()}, max {ids.max()}")
    return ids


def check_drone_poses(
    pos_w: np.ndarray, quat_wxyz: np.ndarray, ids: np.ndarray | None, num_drones: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated (ids, pos (k, 3), unit quat (k, 4)) for ``set_drone_poses``/``reset_drone_states``.

    Raises:
        ValueError: wrong shapes, ids out of range, non-finite values or a zero quaternion.
    """
    ids = check_drone_ids(ids, num_drones)
    pos = np.asarray(pos_w, dtype=np.float64)
    quat = np.asarray(quat_wxyz, dtype=np.float64)
    if pos.shape != (ids.size, 3) or quat.shape != (ids.size, 4):
        raise ValueError(
            f"expected pos_w ({ids.size}, 3) and quat_wxyz ({ids.size}, 4); got {pos.shape} and {quat.shape}"
        )
    norm = np.linalg.norm(quat, axis=1, keepdims=True)
    if not (np.isfinite(pos).all() and np.isfinite(quat).all() and (norm > 1e-9).all()):
        raise ValueError("drone poses must be finite and quaternions non-zero")
    return ids, pos, quat / norm


def check_target_poses(
    pos_w: np.ndarray, yaw_rad: np.ndarray, num_targets: int
) -> tuple[np.ndarray, np.ndarray]:
    """Validated (pos (T, 3) float64 m ENU, yaw (T,) float64 rad) for ``set_target_poses``.

    Raises:
        ValueError: wrong shapes (both named) or non-finite values.
    """
    t = num_targets
    pos = np.asarray(pos_w, dtype=np.float64)
    yaw = np.asarray(yaw_rad, dtype=np.float64)
    if pos.shape != (t, 3) or yaw.shape != (t,):
        raise ValueError(f"expected pos_w ({t}, 3) and yaw_rad ({t},); got {pos.shape} and {yaw.shape}")
    if not (np.isfinite(pos).all() and np.isfinite(yaw).all()):
        raise ValueError("target poses must be finite")
    return pos, yaw
