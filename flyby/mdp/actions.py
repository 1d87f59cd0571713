"""The shared action: a normalised velocity + yaw-rate setpoint.

Action (num_envs, 4) float32 in [-1, 1]:

| index | name       | scaled to                         | unit  | frame     |
|-------|------------|-----------------------------------|-------|-----------|
| 0     | vx         | * max_velocity                    | m/s   | world ENU |
| 1     | vy         | * max_velocity                    | m/s   | world ENU |
| 2     | vz         | * max_vertical_velocity           | m/s   | world ENU |
| 3     | yaw_rate   | * max_yaw_rate (deg/s -> rad/s)   | rad/s | about z   |

These are the quantities PX4 offboard control takes (velocity + yaw rate,
SET_POSITION_TARGET_LOCAL_NED type_mask 1479, after ENU->NED at the MAVLink
boundary), so the direct, multi-drone and full-fidelity envs share one action.
Out-of-range values are clipped to [-1, 1]; NaN/inf or a wrong shape raise
:class:`~flyby.errors.InvalidAction`.
"""

from __future__ import annotations

import math

import numpy as np

from flyby.errors import InvalidAction

ACTION_DIM = 4
ACT_VEL = slice(0, 3)
ACT_YAW_RATE = 3


def validate_actions(actions: np.ndarray, num_envs: int) -> np.ndarray:
    """Check and clip a batch of normalised actions.

    Args:
        actions: (num_envs, 4) array-like of floats.

    Returns:
        (num_envs, 4) float64 actions clipped to [-1, 1] (a new array).

    Raises:
        InvalidAction: wrong shape, non-numeric, complex, or NaN/inf values.
    """
    try:
        raw = np.asarray(actions)
        if raw.dtype.kind == "c":  # a float conversion would drop the imaginary part with only a warning
            bad = np.argwhere(raw.imag != 0)
            raise InvalidAction(
                f"actions must be real numbers, got dtype {raw.dtype}"
                + (f" with imaginary parts at (env, channel) {bad[:4].tolist()}" if bad.size else "")
                + "; pass the policy's real-valued output (e.g. actions.real if that is what you mean)"
            )
        a = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidAction(f"actions must be numeric, got {type(actions).__name__}: {exc}") from exc
    if a.shape != (num_envs, ACTION_DIM):
        raise InvalidAction(
            f"actions must have shape ({num_envs}, 4) = (num_envs, [vx, vy, vz, yaw_rate]), got {a.shape}"
        )
    if not np.isfinite(a).all():
        bad = np.argwhere(~np.isfinite(a))
        raise InvalidAction(
            f"actions contain NaN/inf at (env, channel) {bad[:4].tolist()}; check the policy output"
        )
    # np.minimum/np.maximum: np.clip costs ~9 us of wrapper overhead per call on this hot path.
    return np.minimum(np.maximum(a, -1.0), 1.0)


def scale_actions(
    actions: np.ndarray, max_velocity: float, max_vertical_velocity: float, max_yaw_rate_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised actions (N, 4) -> velocity setpoint (N, 3) m/s world ENU and yaw rate (N,) rad/s."""
    vel_w = actions[:, ACT_VEL] * np.array([max_velocity, max_velocity, max_vertical_velocity])
    yaw_rate = actions[:, ACT_YAW_RATE] * math.radians(max_yaw_rate_deg)
    return vel_w, yaw_rate
