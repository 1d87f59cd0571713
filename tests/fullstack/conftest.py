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
    from flyby.utils.stack_info import backend_summary

    # "MuJoCo 4.0.0 (EGL offscreen)" or "Isaac Sim 5.1.0 (RTX renderer)": the same line as the report's
    # Environment table (flyby.utils.stack_info).
    return {
        "backend": backend_summary(backend_kind),
        "flight_stack": "none: direct dynamics (no PX4 in the loop)",
    }
