"""The phase gates' configuration: one typed schema for ``phase_config.yaml`` and its one loader.

Every threshold, run length, tolerance and repetition count that a phase gate judges or measures with
lives in ``phase_config.yaml`` (beside this module, each value with its unit and source) and is read
through :func:`load_gate_cfg` into :class:`GateCfg`: the gates take it from the session fixture
``gate_cfg`` (``conftest.py``), and the two gates whose floors are pytest markers (Phase 2 parity,
Phase 3) call :func:`load_gate_cfg` at import, because markers are evaluated at collection.

Every field is required: a key missing from the YAML is an error, never a default hidden here, so
the YAML is the one place a threshold is written. Unknown keys, values of the wrong type or out of
range, and failed cross-field checks (each config's ``validate()``) are reported together, by
dotted path (``phase3.scaling_drones: ...``), in one :class:`~flyby.errors.ConfigError`.

Example::

    from gate_cfg import load_gate_cfg
    gate = load_gate_cfg()              # the packaged tests/fullstack/phase_config.yaml
    gate.phase3.min_drone_steps_per_s   # 10000.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flyby.config import cfg_field, from_dict, read_yaml
from flyby.enums import KernelBackend

__all__ = [
    "PHASE_CONFIG",
    "JUDGED_HORIZON_S",
    "GateCfg",
    "Phase1GateCfg",
    "Phase2ParityGateCfg",
    "Phase2TransferGateCfg",
    "Phase3GateCfg",
    "Phase4GateCfg",
    "Phase4RunCfg",
    "TransferRunCfg",
    "load_gate_cfg",
]

#: The packaged gate configuration.
PHASE_CONFIG = Path(__file__).with_name("phase_config.yaml")


@dataclass(frozen=True, kw_only=True)
class Phase1GateCfg:
    """Phase 1: render skipping and resolution presets in the full-fidelity env (one per flight stack)."""

    steps: int = cfg_field(ge=8)  # control steps of the scripted episode
    min_speedup: float = cfg_field(gt=0.0)  # x, B steps/s over A steps/s, same run
    min_steps_per_s: float = cfg_field(gt=0.0)  # steps/s, floor of run B
    skip_render_interval: int = cfg_field(ge=2)  # control steps between renders of run B
    timing_segments: int = cfg_field(ge=1)  # judged rates: medians over this many equal step segments
    sim_time_tol_s: float = cfg_field(ge=0.0)  # s, A's and B's sim times at the same step must agree within

    def validate(self) -> list[str]:
        if self.steps % (self.timing_segments * self.skip_render_interval) == 0:
            return []
        return [
            (
                f"steps: {self.steps} does not split into timing_segments={self.timing_segments} segments of "
                f"whole render intervals ({self.skip_render_interval} steps); e.g. steps 200 with 5 segments"
            )
        ]


#: The open-loop horizon, s, judged by ``max_tuned_error_5s_m`` and ``min_error_reduction`` (as they say).
JUDGED_HORIZON_S = 5.0


@dataclass(frozen=True, kw_only=True)
class Phase2ParityGateCfg:
    """Phase 2, parity: the tuned direct dynamics against the full-fidelity flight, and its throughput."""

    held_out_seeds: tuple[int, ...] = cfg_field(ge=0)  # excitation seeds never used for tuning
    held_out_duration_s: float = cfg_field(gt=0.0)  # s of held-out flight per seed
    error_horizons_s: tuple[float, ...] = cfg_field(gt=0.0)  # s, open-loop error horizons reported
    max_tuned_error_5s_m: float = cfg_field(gt=0.0)  # m, pooled mean tuned error after 5 s (ceiling)
    min_error_reduction: float = cfg_field(gt=0.0)  # x, seed model's 5 s error over the tuned one's (floor)
    start_pos_w: tuple[float, float, float] = cfg_field()  # m, world ENU, start of timed and filmed flights
    min_direct_fps: float = cfg_field(gt=0.0)  # steps/s of DirectISR-v0, one drone (floor)
    min_speedup: float = cfg_field(gt=0.0)  # x, direct (16 drones) over full fidelity (evaluation config)
    direct_steps: int = cfg_field(ge=1)  # timed vector-env steps of each direct measurement
    direct_warmup_steps: int = cfg_field(ge=0)  # untimed steps before each direct measurement
    throughput_steps: int = cfg_field(ge=1)  # timed full-fidelity steps per configuration and round
    throughput_rounds: int = cfg_field(ge=1)  # interleaved rounds; ratios are medians over rounds
    throughput_command_seed: int = cfg_field(ge=0)  # excitation seed of the timed full-fidelity commands
    video_seconds: float = cfg_field(gt=0.0)  # s of the side-by-side video
    kernel: KernelBackend = KernelBackend.NUMBA  # hot-path implementation measured (FLYBY_KERNEL)

    def validate(self) -> list[str]:
        problems = []
        if not self.held_out_seeds:
            problems.append("held_out_seeds: empty; give at least one held-out excitation seed")
        if JUDGED_HORIZON_S not in self.error_horizons_s:
            problems.append(
                f"error_horizons_s: {list(self.error_horizons_s)} lacks {JUDGED_HORIZON_S}, the horizon that "
                "max_tuned_error_5s_m and min_error_reduction judge; add it"
            )
        elif self.held_out_duration_s <= max(self.error_horizons_s):
            problems.append(
                f"held_out_duration_s: {self.held_out_duration_s} s leaves no open-loop window of the "
                f"longest horizon ({max(self.error_horizons_s)} s); make it longer"
            )
        return problems


@dataclass(frozen=True, kw_only=True)
class TransferRunCfg:
    """One configuration (``quick`` or ``slow``) of the policy-transfer gate."""

    budget_s: float = cfg_field(gt=0.0)  # s, wall-clock training budget per policy
    eval_episodes: int = cfg_field(ge=2)  # evaluation episodes per policy (>= 2 for an interval)


@dataclass(frozen=True, kw_only=True)
class Phase2TransferGateCfg:
    """Phase 2, policy transfer: direct-trained against full-fidelity-trained, scored in PX4ISR-v0."""

    seed: int = cfg_field(ge=0)  # PPO, policy and training-env seed
    episode_length_s: float = cfg_field(gt=0.0)  # s, training and evaluation episodes
    first_eval_seed: int = cfg_field(ge=0)  # first evaluation seed
    num_drones: int = cfg_field(ge=1)  # direct run's parallel envs
    full_num_envs: int = cfg_field(ge=1)  # baseline run's PX4ISR-v0 copies (cascade)
    full_num_envs_px4: int = cfg_field(
        ge=1, le=10
    )  # baseline run's parallel PX4 instances (and evaluation's)
    min_fraction: float = cfg_field(gt=0.0, le=1.0)  # share of the baseline's gain to keep
    video_render_interval: int = cfg_field(ge=1)  # control steps between rendered video frames
    return_tol: float = cfg_field(ge=0.0)  # return units, recorded vs evaluated return of one seed (cascade)
    quick: TransferRunCfg = field()  # CI configuration
    slow: TransferRunCfg = field()  # -m slow


@dataclass(frozen=True, kw_only=True)
class Phase3GateCfg:
    """Phase 3: multi-drone throughput and tiled cameras."""

    num_drones: int = cfg_field(ge=1)  # drones in the throughput gate and the grid video
    min_drone_steps_per_s: float = cfg_field(gt=0.0)  # drone-steps/s floor
    max_vram_gb: float = cfg_field(gt=0.0)  # GB, peak GPU memory ceiling
    warmup_steps: int = cfg_field(ge=0)  # untimed env steps before the headline measurement
    measure_steps: int = cfg_field(ge=1)  # timed env steps of the headline measurement
    scaling_drones: tuple[int, ...] = cfg_field(ge=1)  # drone counts of the scaling table
    slow_scaling_drones: tuple[int, ...] = cfg_field(ge=1)  # drone counts of the -m slow scaling rows
    slow_scaling_steps: int = cfg_field(ge=1)  # timed env steps per slow row
    slow_scaling_warmup_steps: int = cfg_field(ge=0)  # untimed env steps per slow row
    scaling_steps: int = cfg_field(ge=1)  # timed env steps per scaling row
    scaling_warmup_steps: int = cfg_field(ge=0)  # untimed env steps per scaling row
    min_batching_gain: float = cfg_field(gt=0.0)  # x, drone-steps/s at num_drones over at 1 drone
    video_frames: int = cfg_field(ge=1)  # rendered frames in the grid video
    kernel: KernelBackend = KernelBackend.NUMBA  # hot-path implementation measured (FLYBY_KERNEL)

    def validate(self) -> list[str]:
        missing = [n for n in (1, self.num_drones) if n not in self.scaling_drones]
        if not missing:
            return []
        return [
            (
                f"scaling_drones: {list(self.scaling_drones)} lacks {missing}: the batching check "
                f"(min_batching_gain) compares the rows of 1 drone and of num_drones={self.num_drones}; "
                "add them"
            )
        ]


@dataclass(frozen=True, kw_only=True)
class Phase4RunCfg:
    """One configuration (``quick`` or ``slow``) of the pipeline gate."""

    total_steps: int = cfg_field(ge=1)  # env steps of training
    budget_s: float = cfg_field(gt=0.0)  # s of training wall clock at most
    eval_episodes: int = cfg_field(ge=2)  # evaluation episodes per policy


@dataclass(frozen=True, kw_only=True)
class Phase4GateCfg:
    """Phase 4: the pipeline."""

    first_eval_seed: int = cfg_field(ge=0)  # first evaluation seed
    px4_instances: int = cfg_field(ge=1, le=10)  # parallel evaluation envs
    max_onnx_diff: float = cfg_field(gt=0.0)  # max |ONNX - SB3| action difference
    quick: Phase4RunCfg = field()  # CI configuration
    slow: Phase4RunCfg = field()  # -m slow


@dataclass(frozen=True, kw_only=True)
class GateCfg:
    """Every phase gate's configuration: the sections of ``phase_config.yaml``."""

    phase1: Phase1GateCfg = field()  # Phase 1 with the built-in cascade
    phase1_px4: Phase1GateCfg = field()  # Phase 1 with PX4 SITL in lockstep
    phase2: Phase2ParityGateCfg = field()  # Phase 2, parity and throughput
    phase2_transfer: Phase2TransferGateCfg = field()  # Phase 2, policy transfer
    phase3: Phase3GateCfg = field()  # Phase 3, multi-drone throughput
    phase4: Phase4GateCfg = field()  # Phase 4, the pipeline

    def phase1_for(self, flight_stack: str) -> Phase1GateCfg:
        """Phase 1's section for ``flight_stack`` (``"cascade"`` or ``"px4"``).

        Raises:
            ValueError: another flight stack.
        """
        by_stack = {"cascade": self.phase1, "px4": self.phase1_px4}
        if flight_stack not in by_stack:
            raise ValueError(f"flight_stack must be 'cascade' or 'px4', got {flight_stack!r}")
        return by_stack[flight_stack]


def load_gate_cfg(path: str | Path = PHASE_CONFIG) -> GateCfg:
    """Load and check the phase gates' configuration.

    Args:
        path: the YAML file; the packaged ``tests/fullstack/phase_config.yaml`` by default.

    Returns:
        The typed configuration of every gate.

    Raises:
        ConfigError: the file is missing or not YAML, or lists every problem at once by dotted path:
            unknown keys, missing keys, wrong types, values out of range, failed cross-field checks.
    """
    data, resolved = read_yaml(Path(path))
    return from_dict(GateCfg, data, source=str(resolved))
