"""Configuration of ``flyby/PX4ISR-v0``, the full-fidelity env."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from flyby.config import cfg_field
from flyby.control.cascade import CascadeCfg
from flyby.dynamics.multirotor import MultirotorCfg
from flyby.enums import ResolutionPreset
from flyby.envs.isr_env_cfg import ISREnvCfg
from flyby.perception.camera import CameraCfg
from flyby.sensors import SensorCfg


@dataclass(kw_only=True)
class RenderCfg:
    """Headless rendering, gathered in one place. Rendering never changes physics or observations."""

    preset: ResolutionPreset = ResolutionPreset.EVALUATION  # rendered image size (training, evaluation, full)
    shadows: bool = False  # shadow maps (several x slower on CPU rendering)
    antialias: bool = False  # 4x MSAA (about 2-3x slower on CPU rendering)

    def validate(self) -> list[str]:
        if self.preset is ResolutionPreset.MULTI:
            return ["preset: 'multi' is the multi-drone tile size; use training, evaluation or full"]
        return []


@dataclass(kw_only=True)
class PX4Cfg:
    """Where PX4 SITL is and how long to wait for it."""

    px4_dir: str = ""  # PX4-Autopilot checkout with build/px4_sitl_default; empty: $PX4_DIR, then `px4` on PATH
    instance: int = cfg_field(0, ge=0, le=99)  # PX4 instance i: TCP 4560+i, UDP 14540+i
    timeout_s: float = cfg_field(5.0, gt=0.0)  # s, bound on every wait for PX4 (replies, start-up, shutdown)


@dataclass(kw_only=True)
class PX4EnvCfg(ISREnvCfg):
    """Full fidelity: flight stack -> rotors -> rigid-body physics at ``1 / physics_dt`` Hz.

    ``step_dt`` must equal ``physics_dt * decimation`` (checked; the error gives the numbers).
    The perception camera (``camera``) is what the policy observes and never depends on the
    render preset, so render skipping and resolution presets cannot change observations.
    """

    camera: CameraCfg = field(default_factory=lambda: CameraCfg(preset=ResolutionPreset.TRAINING))  # perception camera
    physics_dt: float = cfg_field(0.004, gt=0.0, le=0.02)  # s, physics step (250 Hz, PX4 SITL lockstep rate)
    decimation: int = cfg_field(10, ge=1)  # physics steps per control step
    step_dt: float = cfg_field(0.04, gt=0.0, le=1.0)  # s, control period = physics_dt * decimation (25 Hz)
    render_interval: int = cfg_field(1, ge=1)  # control steps between renders (1 = every step)
    render: RenderCfg = field(default_factory=RenderCfg)  # headless rendering settings
    multirotor: MultirotorCfg = field(default_factory=MultirotorCfg)  # Iris rigid body and rotors
    cascade: CascadeCfg = field(default_factory=CascadeCfg)  # built-in flight stack (PX4 default gains)
    sensors: SensorCfg = field(default_factory=SensorCfg)  # IMU, magnetometer, barometer, GPS
    px4: PX4Cfg = field(default_factory=PX4Cfg)  # PX4 SITL

    def validate(self) -> list[str]:
        problems = super().validate()
        expected = self.physics_dt * self.decimation
        if not math.isclose(self.step_dt, expected, rel_tol=1e-9):
            problems.append(
                f"step_dt: {self.step_dt} s must equal physics_dt * decimation = {self.physics_dt} * "
                f"{self.decimation} = {expected:g} s; change decimation or physics_dt instead"
            )
        return problems
