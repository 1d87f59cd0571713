"""Typed configs of the ISR envs: the task every env shares, and each registered env's own.

- :class:`ISREnvCfg` (with :class:`SpawnCfg`): world, timing, camera, actions, observations,
  rewards, terminations, spawns; every env's config derives from it.
- :class:`DirectEnvCfg`: ``flyby/DirectISR-v0``, one drone on the direct dynamics.
- :class:`MultiDroneEnvCfg`: ``flyby/MultiDroneISR-v0``, N drones sharing one world.
- :class:`PX4EnvCfg` (with :class:`RenderCfg`, :class:`PX4Cfg`, :class:`TakeoffCfg`):
  ``flyby/PX4ISR-v0``, flight stack + rotor physics.

The YAML files that fill them: ``training_config.yaml`` (direct and multi-drone envs) and
``evaluation_config.yaml`` (the PX4 env), loaded by :mod:`flyby.config.training` and
:mod:`flyby.config.evaluation`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from flyby.config.core import cfg_field
from flyby.config.dynamics import DirectDynamicsCfg
from flyby.control.cascade import CascadeCfg
from flyby.dynamics.multirotor import MultirotorCfg
from flyby.enums import ResolutionPreset
from flyby.mdp.actions import ActionCfg
from flyby.mdp.observations import ObservationCfg
from flyby.mdp.rewards import RewardCfg
from flyby.mdp.terminations import TerminationCfg
from flyby.perception.camera import CameraCfg
from flyby.perception.yolo import PerceptionCfg
from flyby.sensors import SensorCfg
from flyby.world.world import WorldCfg


@dataclass(kw_only=True)
class SpawnCfg:
    """Where drones start an episode."""

    # m, min/max start altitude above ground
    altitude_m: tuple[float, float] = cfg_field((20.0, 45.0), gt=0.0)
    # m, start at least this high above the building below
    building_clearance_m: float = cfg_field(5.0, ge=0.0)
    # m, ... and above every building within this horizontal distance (a 5 x 5 grid of height samples);
    # 0: only the one below. Without it a drone can start 1 m beside a wall 10 m taller than itself.
    clearance_radius_m: float = cfg_field(15.0, ge=0.0)
    edge_margin_m: float = cfg_field(15.0, ge=0.0)  # m, keep starts this far inside the geofence

    def validate(self) -> list[str]:
        lo, hi = self.altitude_m
        return [f"altitude_m: min {lo} is greater than max {hi}"] if lo > hi else []


@dataclass(kw_only=True)
class ISREnvCfg:
    """The ISR task: world, timing, camera, perception, observations, rewards, terminations.

    Timing is derived, never duplicated: ``step_dt`` is the control period and
    ``max_episode_length = ceil(episode_length_s / step_dt)`` steps.
    """

    world: WorldCfg = field(default_factory=WorldCfg)  # the procedural area
    world_seed: int = cfg_field(0, ge=0)  # seed of the world layout (episodes are seeded separately)
    # the direct model, filled from dynamics_config.yaml by the loaders
    dynamics: DirectDynamicsCfg = field(default_factory=DirectDynamicsCfg)
    actions: ActionCfg = field(default_factory=ActionCfg)  # what action +-1 commands (the same in every env)
    camera: CameraCfg = field(default_factory=CameraCfg)  # drone camera
    step_dt: float = cfg_field(0.05, gt=0.0, le=1.0)  # s, control period (20 Hz)
    episode_length_s: float = cfg_field(60.0, gt=0.0)  # s, time limit of an episode (truncation)
    perception_interval: int = cfg_field(1, ge=1)  # steps between ground-truth detection updates
    render_interval: int = cfg_field(4, ge=1)  # steps between camera renders when images are requested
    observations: ObservationCfg = field(default_factory=ObservationCfg)  # observation encoding
    rewards: RewardCfg = field(default_factory=RewardCfg)  # reward terms (weights) and the coverage grid
    terminations: TerminationCfg = field(default_factory=TerminationCfg)  # crash and geofence limits
    spawn: SpawnCfg = field(default_factory=SpawnCfg)  # episode starts

    @property
    def max_episode_length(self) -> int:
        """Steps per episode, ``ceil(episode_length_s / step_dt)``."""
        return math.ceil(self.episode_length_s / self.step_dt - 1e-9)

    def validate(self) -> list[str]:
        problems = []
        if self.episode_length_s < self.step_dt:
            problems.append(
                f"episode_length_s: {self.episode_length_s} s is shorter than one step (step_dt = "
                f"{self.step_dt} s)"
            )
        if self.spawn.altitude_m[1] >= self.terminations.max_altitude_m:
            problems.append(
                f"spawn.altitude_m: max {self.spawn.altitude_m[1]} m is at or above "
                f"terminations.max_altitude_m ({self.terminations.max_altitude_m} m)"
            )
        return problems


@dataclass(kw_only=True)
class DirectEnvCfg(ISREnvCfg):
    """One drone on the direct dynamics; camera at the ``training`` preset (128x128)."""

    camera: CameraCfg = field(default_factory=lambda: CameraCfg(preset=ResolutionPreset.TRAINING))


@dataclass(kw_only=True)
class MultiDroneEnvCfg(ISREnvCfg):
    """N drones in one shared world; 80x80 tiled cameras rendered every 4th step (seed plan)."""

    num_drones: int = cfg_field(16, ge=1, le=4096)  # drones sharing the world
    camera: CameraCfg = field(default_factory=lambda: CameraCfg(preset=ResolutionPreset.MULTI))


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

    # m above the surface: a start this low is a ground start
    ground_start_below_m: float = cfg_field(1.0, ge=0.0)
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
    # keep PX4's ULog of every run in output/logs (about 0.35 MB per PX4-second); training turns it off
    keep_ulogs: bool = True
    takeoff: TakeoffCfg = field(default_factory=TakeoffCfg)  # how a PX4 episode gets to its start pose


@dataclass(kw_only=True)
class PX4EnvCfg(ISREnvCfg):
    """Full fidelity: flight stack -> rotors -> rigid-body physics at ``1 / physics_dt`` Hz.

    ``step_dt`` must equal ``physics_dt * decimation`` (checked; the error gives the numbers).
    The perception camera (``camera``) is what the policy observes and never depends on the
    render preset, so render skipping and resolution presets cannot change observations.
    """

    # perception camera
    camera: CameraCfg = field(default_factory=lambda: CameraCfg(preset=ResolutionPreset.TRAINING))
    physics_dt: float = cfg_field(0.004, gt=0.0, le=0.02)  # s, physics step (250 Hz, PX4 SITL lockstep rate)
    decimation: int = cfg_field(10, ge=1)  # physics steps per control step
    step_dt: float = cfg_field(0.04, gt=0.0, le=1.0)  # s, control period = physics_dt * decimation (25 Hz)
    render_interval: int = cfg_field(1, ge=1)  # control steps between renders (1 = every step)
    render: RenderCfg = field(default_factory=RenderCfg)  # headless rendering settings
    multirotor: MultirotorCfg = field(default_factory=MultirotorCfg)  # Iris rigid body and rotors
    cascade: CascadeCfg = field(default_factory=CascadeCfg)  # built-in flight stack (PX4 default gains)
    sensors: SensorCfg = field(default_factory=SensorCfg)  # IMU, magnetometer, barometer, GPS
    px4: PX4Cfg = field(default_factory=PX4Cfg)  # PX4 SITL
    # detections: ground_truth (analytic) or yolo
    perception: PerceptionCfg = field(default_factory=PerceptionCfg)

    def validate(self) -> list[str]:
        problems = super().validate()
        expected = self.physics_dt * self.decimation
        if not math.isclose(self.step_dt, expected, rel_tol=1e-9):
            problems.append(
                f"step_dt: {self.step_dt} s must equal physics_dt * decimation = {self.physics_dt} * "
                f"{self.decimation} = {expected:g} s; change decimation or physics_dt instead"
            )
        return problems
