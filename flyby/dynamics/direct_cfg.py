"""Configuration of the direct (no flight controller) dynamics model."""

from __future__ import annotations

from dataclasses import dataclass

from flyby.config import cfg_field


@dataclass(kw_only=True)
class DirectDynamicsCfg:
    """First-order velocity-response model; defaults are the seed plan's values.

    ``velocity_damping`` is the per-step retention ``d`` in
    ``v <- d * v + (1 - d) * v_target`` for a step of ``damping_reference_dt``;
    other step sizes use ``d ** (dt / damping_reference_dt)`` so the response
    time constant ``tau = -damping_reference_dt / ln(d)`` (about 0.97 s for the
    defaults) does not depend on the control rate.
    """

    max_velocity: float = cfg_field(10.0, gt=0.0)  # m/s, horizontal speed at action +-1 (per axis)
    max_vertical_velocity: float = cfg_field(5.0, gt=0.0)  # m/s, vertical speed at action +-1
    max_yaw_rate: float = cfg_field(90.0, gt=0.0)  # deg/s, yaw rate at action +-1
    velocity_damping: float = cfg_field(0.95, ge=0.0, lt=1.0)  # 1, velocity retained per reference step
    damping_reference_dt: float = cfg_field(0.05, gt=0.0)  # s, step the damping is defined for (20 Hz control)
    position_noise_std: float = cfg_field(0.02, ge=0.0)  # m, Gaussian position noise per reference step
    velocity_noise_std: float = cfg_field(0.1, ge=0.0)  # m/s, Gaussian velocity noise per reference step
