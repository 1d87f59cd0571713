"""The shared action: a normalised velocity + yaw-rate setpoint, and its one definition.

Action (num_envs, 4) float32 in [-1, 1], scaled by :class:`ActionCfg`:

| index | name       | scaled to                                   | unit  | frame     |
|-------|------------|---------------------------------------------|-------|-----------|
| 0     | vx         | * ActionCfg.max_velocity                    | m/s   | world ENU |
| 1     | vy         | * ActionCfg.max_velocity                    | m/s   | world ENU |
| 2     | vz         | * ActionCfg.max_vertical_velocity           | m/s   | world ENU |
| 3     | yaw_rate   | * ActionCfg.max_yaw_rate (deg/s -> rad/s)   | rad/s | about z   |

These are the quantities PX4 offboard control takes (velocity + yaw rate,
SET_POSITION_TARGET_LOCAL_NED type_mask 1479, after ENU->NED at the MAVLink
boundary), so the direct, multi-drone and full-fidelity envs share one action.
Out-of-range values are clipped to [-1, 1]; NaN/inf or a wrong shape raise
:class:`~flyby.errors.InvalidAction`.

Every env holds one :class:`ActionCfg` (``ISREnvCfg.actions``) and validates a step's actions
once, in :meth:`flyby.envs.isr_task.ISRTask.step`; the motion models (direct dynamics, flight
stack) take the validated batch and scale it with the same :meth:`ActionCfg.scale`. The scale
is not fitted by ``flyby tune``: it is what a policy's outputs mean, so a policy transfers
between envs only when their ``ActionCfg`` agree (a training run records it in its config record).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flyby.config.core import cfg_field
from flyby.enums import KernelBackend
from flyby.errors import InvalidAction
from flyby.kernels import kernel_backend

ACTION_DIM = 4
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
ACT_VEL = slice(0, 3)
ACT_YAW_RATE = 3


def validate_actions(actions: np.ndarray, num_envs: int, *, compiled: bool | None = None) -> np.ndarray:
    """Check and clip a batch of normalised actions.

    Args:
        actions: (num_envs, 4) array-like of floats.
        compiled: take the compiled path for float arrays of the right shape (the same result
            and errors); None: as ``$FLYBY_KERNEL`` selects (:func:`flyby.kernels.kernel_backend`).

    Returns:
        (num_envs, 4) float64 actions clipped to [-1, 1] (a new array).

    Raises:
        InvalidAction: wrong shape, non-numeric, complex, or NaN/inf values.
    """
    if (
        type(actions) is np.ndarray
        and actions.shape == (num_envs, ACTION_DIM)
        and actions.dtype in _FLOAT_DTYPES
        and (kernel_backend() is KernelBackend.NUMBA if compiled is None else compiled)
    ):
        from flyby.mdp.kernels import clip_actions_into

        out = np.empty((num_envs, ACTION_DIM))
        if clip_actions_into(actions, out):
            return out  # finite: the reference's result; otherwise its checks below name the fault
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


@dataclass(kw_only=True)
class ActionCfg:
    """Scale of the shared normalised action: what +-1 on each channel commands.

    Source: the flyby seed plan's direct model (10 m/s, 5 m/s, 90 deg/s). PX4 SITL limits what
    it flies to its own ``MPC_*`` velocity limits (e.g. ``MPC_Z_VEL_MAX_UP`` 3 m/s); the fitted
    direct model reproduces those limits (``max_climb_rate`` etc. in ``dynamics_config.yaml``).
    """

    max_velocity: float = cfg_field(10.0, gt=0.0)  # m/s, horizontal speed per axis at action +-1 (world ENU)
    max_vertical_velocity: float = cfg_field(5.0, gt=0.0)  # m/s, vertical speed at action +-1 (up positive)
    max_yaw_rate: float = cfg_field(90.0, gt=0.0)  # deg/s, yaw rate at action +-1 (about world z)

    @property
    def vel_scale(self) -> np.ndarray:
        """(3,) float64 m/s: velocity at action +1 per axis, ``[max_velocity, max_velocity,
        max_vertical_velocity]``."""
        return np.array([self.max_velocity, self.max_velocity, self.max_vertical_velocity])

    def scale(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Validated normalised actions (N, 4) -> velocity setpoint (N, 3) m/s world ENU, yaw rate (N,) rad/s.

        ``actions`` must come from :func:`validate_actions` (this does not check them again).
        """
        vel_w = actions[:, ACT_VEL] * self.vel_scale
        yaw_rate = actions[:, ACT_YAW_RATE] * math.radians(self.max_yaw_rate)
        return vel_w, yaw_rate

    def as_dict(self) -> dict[str, float]:
        """The scale as plain floats (logs, model metadata, exported policies)."""
        return {
            "max_velocity": float(self.max_velocity),
            "max_vertical_velocity": float(self.max_vertical_velocity),
            "max_yaw_rate": float(self.max_yaw_rate),
        }
