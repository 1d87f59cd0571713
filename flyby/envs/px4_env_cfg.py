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
from flyby.perception.yolo import PerceptionCfg
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
class TakeoffCfg:
    """The automatic take-off that brings a PX4 drone from the ground to an episode's start pose.

    PX4's estimator must boot at rest, so a PX4 episode never starts by teleporting the drone
    into the air: :meth:`flyby.envs.px4_env.PX4ISREnv.reset` places it on the ground below
    the requested start, PX4 boots and arms there, and, unless the start is on the ground
    (within ``ground_start_below_m`` of the surface), a position loop on top of PX4's velocity
    control climbs to the start. None of that is part of the episode: not its return, not
    its length, not a crash. The loop commands ``gain_per_s * error``, clipped to PX4's
    default velocity limits (``MPC_Z_VEL_MAX_UP`` 3 m/s, ``MPC_Z_VEL_MAX_DN`` 1.5 m/s,
    horizontal ``max_horizontal_speed_mps``), until the drone is within the tolerances.
    """

    ground_start_below_m: float = cfg_field(
        1.0, ge=0.0
    )  # m above the surface: a start this low is a ground start
    position_tolerance_m: float = cfg_field(0.5, gt=0.0)  # m, take-off done within this of the start
    speed_tolerance_mps: float = cfg_field(0.3, gt=0.0)  # m/s, ... and slower than this
    gain_per_s: float = cfg_field(1.0, gt=0.0)  # 1/s, velocity setpoint per metre of position error
    max_climb_mps: float = cfg_field(3.0, gt=0.0)  # m/s, PX4 MPC_Z_VEL_MAX_UP default
    max_descent_mps: float = cfg_field(1.5, gt=0.0)  # m/s, PX4 MPC_Z_VEL_MAX_DN default
    max_horizontal_speed_mps: float = cfg_field(5.0, gt=0.0)  # m/s, (the drone climbs straight up)
    timeout_s: float = cfg_field(90.0, gt=0.0)  # s of sim time; then the reset fails with PX4Unavailable


@dataclass(kw_only=True)
class PX4Cfg:
    """Where PX4 SITL is and how long to wait for it."""

    px4_dir: str = (
        ""  # PX4-Autopilot checkout with build/px4_sitl_default; empty: $PX4_DIR, then `px4` on PATH
    )
    instance: int = cfg_field(0, ge=0, le=99)  # PX4 instance i: TCP 4560+i, UDP 14540+i
    timeout_s: float = cfg_field(5.0, gt=0.0)  # s, bound on every wait for PX4 (replies, start-up, shutdown)
    keep_ulogs: bool = True  # keep PX4's ULog of every run in output/logs (about 0.35 MB per PX4-second); training turns it off
    takeoff: TakeoffCfg = field(default_factory=TakeoffCfg)  # how a PX4 episode gets to its start pose


@dataclass(kw_only=True)
class PX4EnvCfg(ISREnvCfg):
    """Full fidelity: flight stack -> rotors -> rigid-body physics at ``1 / physics_dt`` Hz.

    ``step_dt`` must equal ``physics_dt * decimation`` (checked; the error gives the numbers).
    The perception camera (``camera``) is what the policy observes and never depends on the
    render preset, so render skipping and resolution presets cannot change observations.
    """

    camera: CameraCfg = field(
        default_factory=lambda: CameraCfg(preset=ResolutionPreset.TRAINING)
    )  # perception camera
    physics_dt: float = cfg_field(0.004, gt=0.0, le=0.02)  # s, physics step (250 Hz, PX4 SITL lockstep rate)
    decimation: int = cfg_field(10, ge=1)  # physics steps per control step
    step_dt: float = cfg_field(0.04, gt=0.0, le=1.0)  # s, control period = physics_dt * decimation (25 Hz)
    render_interval: int = cfg_field(1, ge=1)  # control steps between renders (1 = every step)
    render: RenderCfg = field(default_factory=RenderCfg)  # headless rendering settings
    multirotor: MultirotorCfg = field(default_factory=MultirotorCfg)  # Iris rigid body and rotors
    cascade: CascadeCfg = field(default_factory=CascadeCfg)  # built-in flight stack (PX4 default gains)
    sensors: SensorCfg = field(default_factory=SensorCfg)  # IMU, magnetometer, barometer, GPS
    px4: PX4Cfg = field(default_factory=PX4Cfg)  # PX4 SITL
    perception: PerceptionCfg = field(
        default_factory=PerceptionCfg
    )  # detections: ground_truth (analytic) or yolo

    def validate(self) -> list[str]:
        problems = super().validate()
        expected = self.physics_dt * self.decimation
        if not math.isclose(self.step_dt, expected, rel_tol=1e-9):
            problems.append(
                f"step_dt: {self.step_dt} s must equal physics_dt * decimation = {self.physics_dt} * "
                f"{self.decimation} = {expected:g} s; change decimation or physics_dt instead"
            )
        return problems
