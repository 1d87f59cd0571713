"""Simulator backends: one protocol, an embedded MuJoCo default, Isaac Sim in the container.

Importing this package imports no simulator; :func:`make_backend` imports the
chosen backend module (``flyby.sim.mujoco_backend``) when a backend is built.
"""

from __future__ import annotations

from flyby.sim.base import BACKEND_ENV_VAR, SimBackend, make_backend, nvidia_gpu_visible, select_backend_kind
from flyby.sim.tiling import grid_shape, tile_images

__all__ = [
    "BACKEND_ENV_VAR",
    "SimBackend",
    "grid_shape",
    "make_backend",
    "nvidia_gpu_visible",
    "select_backend_kind",
    "tile_images",
]
