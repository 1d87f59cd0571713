"""Phase-gate fixtures: the phase config, and the header strings of every gate video."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from flyby.config import cfg_field, load_yaml

PHASE_CONFIG = Path(__file__).with_name("phase_config.yaml")


@dataclass(kw_only=True)
class Phase3GateCfg:
    """Phase 3: multi-drone throughput and tiled cameras."""

    num_drones: int = cfg_field(16, ge=1)  # drones in the throughput gate
    min_drone_steps_per_s: float = cfg_field(10_000.0, gt=0.0)  # drone-steps/s floor
    max_vram_gb: float = cfg_field(20.0, gt=0.0)  # GB, peak GPU memory ceiling
    warmup_steps: int = cfg_field(100, ge=0)  # untimed steps
    measure_steps: int = cfg_field(1000, ge=1)  # timed steps
    scaling_drones: tuple[int, ...] = cfg_field((1, 4, 16, 32), ge=1)  # scaling table rows
    scaling_steps: int = cfg_field(400, ge=1)  # timed steps per row
    video_frames: int = cfg_field(60, ge=1)  # rendered frames in the video


@dataclass(kw_only=True)
class Phase1GateCfg:
    """Phase 1: render skipping and resolution presets in the full-fidelity env."""

    steps: int = cfg_field(200, ge=8)  # control steps of the scripted episode
    min_speedup: float = cfg_field(2.0, gt=0.0)  # B steps/s over A steps/s, same run
    min_steps_per_s: float = cfg_field(120.0, gt=0.0)  # B steps/s floor
    skip_render_interval: int = cfg_field(4, ge=2)  # run B's render interval
    timing_segments: int = cfg_field(5, ge=1)  # judged rates: medians over this many equal step segments

    def validate(self) -> list[str]:
        if self.steps % (self.timing_segments * self.skip_render_interval) == 0:
            return []
        return [
            f"steps: {self.steps} does not split into timing_segments={self.timing_segments} segments of whole "
            f"render intervals ({self.skip_render_interval} steps); e.g. steps 200 with 5 segments"
        ]


@pytest.fixture(scope="session")
def phase1_cfgs() -> dict[str, Phase1GateCfg]:
    """Phase 1 floors by flight stack: ``cascade`` (section ``phase1``) and ``px4`` (``phase1_px4``)."""
    return {
        "cascade": load_yaml(Phase1GateCfg, PHASE_CONFIG, section="phase1"),
        "px4": load_yaml(Phase1GateCfg, PHASE_CONFIG, section="phase1_px4"),
    }


@pytest.fixture(scope="session")
def phase3_cfg() -> Phase3GateCfg:
    return load_yaml(Phase3GateCfg, PHASE_CONFIG, section="phase3")


@pytest.fixture(scope="session")
def stack_strings(backend_kind) -> dict[str, str]:
    """Backend and flight-stack strings for video headers (the plugin adds the GPU); never claims PX4 when PX4 is not running."""
    if backend_kind == "mujoco":
        from importlib.metadata import version

        from flyby.sim.gl import gl_platform

        backend = f"MuJoCo {version('mujoco')} ({gl_platform().upper()} offscreen)"
    else:
        backend = "Isaac Sim"
    return {"backend": backend, "flight_stack": "none: direct dynamics (no PX4 in the loop)"}
