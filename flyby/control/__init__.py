"""Flight controllers: the built-in PX4-style cascade (used when PX4 SITL is absent)."""

from __future__ import annotations

from flyby.control.cascade import CascadeCfg, CascadeController, px4_mixer_matrix

__all__ = ["CascadeCfg", "CascadeController", "px4_mixer_matrix"]
