"""Configuration of the direct (no flight controller) dynamics model: ``dynamics_config.yaml``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from flyby.config.core import cfg_field

DYNAMICS_CONFIG = (
    "dynamics_config.yaml"  # the packaged PX4 SITL fit (dynamics_config_cascade.yaml: the cascade fit)
)


@dataclass(kw_only=True)
class DirectDynamicsCfg:
    """First-order velocity-response model; defaults are the seed plan's values.

    ``velocity_damping`` is the per-step retention ``d`` in
    ``v <- d * v + (1 - d) * v_target`` for a step of ``damping_reference_dt``;
    other step sizes use ``d ** (dt / damping_reference_dt)`` so the response
    time constant ``tau = -damping_reference_dt / ln(d)`` (about 0.97 s for the
    defaults) does not depend on the control rate. Every other ``*_damping``
    field works the same way.

    It holds only what ``flyby tune`` fits, plus the domain-randomization noise.
    The *action scale* (what action +-1 commands) is not dynamics: it is
    :class:`flyby.mdp.actions.ActionCfg`, the env config's ``actions``. The
    fields after ``velocity_noise_std`` are the phase-2
    extensions fitted by ``flyby tune`` (equations and evidence in
    :mod:`flyby.dynamics.direct`); each defaults to the value that reproduces
    the seed model exactly.
    """

    MOVED_KEYS: ClassVar[dict[str, str]] = {
        k: f"set it as actions.{k} in the env config (flyby.mdp.actions.ActionCfg; training_config.yaml "
        "direct_env/multi_drone_env, evaluation_config.yaml px4_env), "
        "or leave it out for the shared default; "
        "the dynamics file holds only what flyby tune fits"
        for k in ("max_velocity", "max_vertical_velocity", "max_yaw_rate")
    }

    velocity_damping: float = cfg_field(0.95, ge=0.0, lt=1.0)  # 1, velocity retained per reference step
    # s, step the damping is defined for (20 Hz control)
    damping_reference_dt: float = cfg_field(0.05, gt=0.0)
    position_noise_std: float = cfg_field(0.02, ge=0.0)  # m, Gaussian position noise per reference step
    velocity_noise_std: float = cfg_field(0.1, ge=0.0)  # m/s, Gaussian velocity noise per reference step
    # Phase-2 extensions (flyby tune); the defaults reproduce the seed model.
    # 1, vertical velocity retained per reference step; null: velocity_damping
    vertical_velocity_damping: float | None = cfg_field(None, ge=0.0, lt=1.0)
    velocity_gain: float = cfg_field(1.0, gt=0.0)  # 1, horizontal velocity target per commanded velocity
    # 1, vertical velocity target per commanded velocity
    vertical_velocity_gain: float = cfg_field(1.0, gt=0.0)
    # m/s, norm limit of the horizontal setpoint (PX4 MPC_XY_VEL_MAX); null: none
    max_horizontal_speed: float | None = cfg_field(None, gt=0.0)
    # m/s, upward target limit (MPC_Z_VEL_MAX_UP); null: none
    max_climb_rate: float | None = cfg_field(None, gt=0.0)
    # m/s, downward target limit (MPC_Z_VEL_MAX_DN); null: none
    max_descent_rate: float | None = cfg_field(None, gt=0.0)
    # m/s^2, norm limit of the horizontal thrust acceleration (tilt limit); null: none
    max_horizontal_acceleration: float | None = cfg_field(None, gt=0.0)
    drag_coefficient: float = cfg_field(0.0, ge=0.0)  # 1/s, linear drag, outside max_horizontal_acceleration
    # 1, horizontal acceleration retained per reference step (attitude lag); 0: none
    acceleration_damping: float = cfg_field(0.0, ge=0.0, lt=1.0)
    # m/s^3, norm limit of the horizontal acceleration's rate (tilt rate); null: none
    max_horizontal_jerk: float | None = cfg_field(None, gt=0.0)
    yaw_coupling_s: float = cfg_field(0.0, ge=0.0)  # s, acceleration turned by yaw rate x this (attitude lag)
    # m/s^2, downward limit of the vertical acceleration (MPC_THR_MIN); null: none
    max_downward_acceleration: float | None = cfg_field(None, gt=0.0)
    # 1, horizontal thrust scaled by 1 + this x a_z / g (PX4's decoupled tilt); 0: none
    thrust_coupling: float = cfg_field(0.0, ge=0.0, le=2.0)
    # 1/s, integrator taking up the horizontal acceleration not delivered (PX4 anti-windup); 0: none
    antiwindup_gain: float = cfg_field(0.0, ge=0.0)
    # 1, anti-windup integrator retained per reference step (its leak back to zero); 0: no memory
    antiwindup_damping: float = cfg_field(0.0, ge=0.0, lt=1.0)
    yaw_rate_gain: float = cfg_field(1.0, gt=0.0)  # 1, yaw rate per commanded yaw rate
    # 1, yaw rate kept per reference step; 0: instant
    yaw_rate_damping: float = cfg_field(0.0, ge=0.0, lt=1.0)

    def validate(self) -> list[str]:
        problems = []
        if self.drag_coefficient > 0.0 and self.max_horizontal_acceleration is None:
            problems.append(
                f"drag_coefficient: {self.drag_coefficient} acts only inside the thrust limit; "
                "set max_horizontal_acceleration too (or drag_coefficient: 0)"
            )
        if (
            self.antiwindup_gain > 0.0
            and self.max_horizontal_acceleration is None
            and self.thrust_coupling == 0.0
        ):
            problems.append(
                f"antiwindup_gain: {self.antiwindup_gain} integrates what the thrust limits do not deliver; "
                "set max_horizontal_acceleration or thrust_coupling too (or antiwindup_gain: 0)"
            )
        return problems
