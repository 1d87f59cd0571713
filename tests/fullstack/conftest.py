"""Phase-gate fixtures: the gates' configuration, and the header strings of every gate video."""

from __future__ import annotations

import pytest
from gate_cfg import GateCfg, load_gate_cfg


@pytest.fixture(scope="session")
def gate_cfg() -> GateCfg:
    """Every gate's thresholds and run lengths, from ``phase_config.yaml`` (see ``gate_cfg.py``).

    Raises:
        ConfigError: the YAML has unknown or missing keys or bad values (all of them, by dotted path).
    """
    return load_gate_cfg()


@pytest.fixture(scope="session")
def stack_strings(backend_kind) -> dict[str, str]:
    """Backend and flight-stack strings for video headers (the plugin adds the GPU).

    Never claims PX4 when PX4 is not running.
    """
    if backend_kind == "mujoco":
        from importlib.metadata import version

        from flyby.sim.gl import ensure_gl_platform

        backend = f"MuJoCo {version('mujoco')} ({ensure_gl_platform().upper()} offscreen)"
    else:
        backend = "Isaac Sim"
    return {"backend": backend, "flight_stack": "none: direct dynamics (no PX4 in the loop)"}
