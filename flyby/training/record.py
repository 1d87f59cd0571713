"""Trajectory recording: fly the full-fidelity env on an excitation set and log what it does.

The recorded logs are the data :mod:`flyby.training.tune_dynamics` fits the
direct model to, and the held-out data the phase-2 parity gate measures it on.

Excitation (:func:`excitation_sequences`): normalised ``[vx, vy, vz, yaw_rate]``
commands in [-1, 1] at the env's control rate, built from segments of 4-8 s,
each exciting one, two or all four channels (one alone separates the axes):

| kind    | what                                                                         |
|---------|------------------------------------------------------------------------------|
| `steps` | piecewise-constant levels held 1-5 s (long enough to reach cruise); a quarter |
|         | zeros, a quarter at +-1 (the box's corners), the rest uniform                 |
| `ramps` | piecewise-linear ramps between such levels over 1-3 s                         |
| `chirps`| exponential sine sweeps 0.1 <-> 1.5 Hz, amplitude 0.3-1; the slope 2 pi f A is |
|         | kept below 1 action scale per second (10 m/s^2 horizontally): beyond it the   |
|         | vehicle only saturates                                                        |
| `ou`    | smooth random: Ornstein-Uhlenbeck noise (correlation time 0.4-1.5 s) through  |
|         | a second first-order filter, clipped to the box                               |

Recording (:func:`record_trajectories`) flies ``flyby/PX4ISR-v0`` (the built-in
cascade or PX4 SITL, whichever the env runs) from a safe start above the area
centre, high above every building. Before flying, a kinematic prediction of
the commands (commanded velocity integrated, vertical speed clamped to the
flight stack's limits) marks where the drone would leave a safe box inside the
geofence; the sequence is split there into episodes that each restart at the
centre after a short hover. During flight the real position is checked too,
and leaving the box also starts a new episode.

Log layout (:class:`TrajectoryLog`), one row per control step ``k``: the state
at the *start* of the step and the command held during it, so the state in row
``k + 1`` of the same episode is the response to ``commands[k]``. The state
after an episode's last command is not logged.

PX4's own view (PX4 flights only, optional arrays that older readers ignore): each
episode is one PX4 run whose ULog PX4 writes when it stops;
:func:`attach_px4_estimate` reads them and puts EKF2's position and velocity
estimate on the rows (``px4_est_pos_w``, ``px4_est_vel_w``, world ENU, through the
origin PX4 states: :data:`PX4_ORIGIN_NOTE`), beside the ground truth, with the
ULog paths in ``meta["px4"]``. :mod:`flyby.training.px4_plot` plots them.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flyby.config import to_dict
from flyby.errors import TuningDataError
from flyby.mdp.actions import ACT_VEL, ACTION_DIM, ActionCfg
from flyby.utils.atomic import atomic_write_bytes

logger = logging.getLogger(__name__)

EXCITATION_KINDS = ("steps", "ramps", "chirps", "ou")
_PX4_ARRAYS = {"px4_time_s": 0, "px4_est_pos_w": 3, "px4_est_vel_w": 3}  # optional: name -> width (0: (T,))
LOG_DIR = Path("output/logs")
LOG_FORMAT_VERSION = 1
_SEGMENT_S = (4.0, 8.0)  # s, min/max length of one excitation segment
STEP_HOLD_S = (1.0, 5.0)  # s, min/max hold of a step level (long holds reach steady cruise)
CHIRP_HZ = (0.1, 1.5)  # Hz, sweep range of the chirps
MAX_SLOPE_PER_S = 1.0  # 1/s, chirp slope bound: action scale per second (10 m/s^2 horizontal, 5 vertical)
OU_TAU_S = (0.4, 1.5)  # s, correlation time of the smooth random sequences


@dataclass
class TrajectoryLog:
    """A recorded flight: commands and the full-fidelity response, one row per control step.

    Attributes:
        time_s: (T,) float64, seconds: the command's time in the excitation sequence
            (row k of the sequence is at ``k * step_dt``; rows skipped between episodes leave gaps).
        commands: (T, 4) float32 normalised ``[vx, vy, vz, yaw_rate]`` in [-1, 1], held during the step.
        pos_w: (T, 3) float64, metres, world ENU, at the start of the step.
        lin_vel_w: (T, 3) float64, m/s, world ENU, at the start of the step.
        yaw_rad: (T,) float64, radians in [-pi, pi), at the start of the step.
        episode: (T,) int32 episode index (non-decreasing); rollouts never cross an episode boundary.
        meta: flight stack, step_dt, action scale, config fingerprint, seed (see :func:`log_metadata`);
            with PX4, ``meta["px4"]`` too (see :func:`attach_px4_estimate`).

    Optional, PX4 flights only (None otherwise; readers that do not know them ignore them):
        px4_time_s: (T,) float64, s of PX4 time (the ULog's clock, restarting at each episode's PX4
            start) at which PX4 is told the row's state.
        px4_est_pos_w: (T, 3) float64, metres, world ENU: PX4's EKF2 position estimate at that time
            (:func:`attach_px4_estimate`; NaN where the ULog has no estimate).
        px4_est_vel_w: (T, 3) float64, m/s, world ENU: EKF2's velocity estimate.
    """

    time_s: np.ndarray
    commands: np.ndarray
    pos_w: np.ndarray
    lin_vel_w: np.ndarray
    yaw_rad: np.ndarray
    episode: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def actions(self) -> ActionCfg:
        """The action scale the commands were flown with (``meta["action_scale"]``; the default if absent)."""
        return ActionCfg(**self.meta["action_scale"]) if "action_scale" in self.meta else ActionCfg()

    px4_time_s: np.ndarray | None = None
    px4_est_pos_w: np.ndarray | None = None
    px4_est_vel_w: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.time_s = np.asarray(self.time_s, dtype=np.float64).reshape(-1)
        t = self.time_s.shape[0]
        self.commands = np.asarray(self.commands, dtype=np.float32).reshape(t, ACTION_DIM)
        self.pos_w = np.asarray(self.pos_w, dtype=np.float64).reshape(t, 3)
        self.lin_vel_w = np.asarray(self.lin_vel_w, dtype=np.float64).reshape(t, 3)
        self.yaw_rad = np.asarray(self.yaw_rad, dtype=np.float64).reshape(t)
        self.episode = np.asarray(self.episode, dtype=np.int32).reshape(t)
        for name, width in _PX4_ARRAYS.items():
            value = getattr(self, name)
            if value is not None:
                shape = (t,) if width == 0 else (t, width)
                setattr(self, name, np.asarray(value, dtype=np.float64).reshape(shape))

    @property
    def has_px4_estimate(self) -> bool:
        """True when the log carries PX4's estimate (``px4_est_pos_w`` and ``px4_est_vel_w``)."""
        return self.px4_est_pos_w is not None and self.px4_est_vel_w is not None

    def __len__(self) -> int:
        return int(self.time_s.shape[0])

    @property
    def step_dt(self) -> float:
        """Control period of the log, seconds."""
        return float(self.meta["step_dt"])

    @property
    def duration_s(self) -> float:
        """Flown time covered by the rows, seconds (``len * step_dt``)."""
        return len(self) * self.step_dt if self.meta.get("step_dt") else 0.0

    def episode_bounds(self) -> list[tuple[int, int]]:
        """``[(first_row, last_row), ...]`` of each episode, inclusive."""
        if len(self) == 0:
            return []
        cuts = np.flatnonzero(np.diff(self.episode) != 0) + 1
        starts = np.concatenate([[0], cuts])
        ends = np.concatenate([cuts - 1, [len(self) - 1]])
        return [(int(a), int(b)) for a, b in zip(starts, ends)]


# ---------------------------------------------------------------------------- excitation


def excitation_sequences(kind_or_all: str, duration_s: float, step_dt: float, seed: int) -> np.ndarray:
    """A seeded excitation command sequence covering the action box.

    Args:
        kind_or_all: one of ``"steps"``, ``"ramps"``, ``"chirps"``, ``"ou"``, or ``"all"``
            (segments of every kind, in a seeded random order, each kind equally often).
        duration_s: length of the sequence, seconds (> 0).
        step_dt: control period, seconds (> 0); the sequence has ``round(duration_s / step_dt)`` rows.
        seed: the same seed always gives the same sequence.

    Returns:
        (T, 4) float32 normalised ``[vx, vy, vz, yaw_rate]`` in [-1, 1].

    Raises:
        ValueError: unknown kind, or non-positive ``duration_s`` / ``step_dt``.
    """
    if kind_or_all != "all" and kind_or_all not in EXCITATION_KINDS:
        raise ValueError(f"excitation kind must be one of {EXCITATION_KINDS} or 'all', got {kind_or_all!r}")
    if not (duration_s > 0 and step_dt > 0):
        raise ValueError(f"duration_s and step_dt must be > 0 seconds, got {duration_s} and {step_dt}")
    n = max(1, round(duration_s / step_dt))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    parts: list[np.ndarray] = []
    total = 0
    order: list[str] = []
    while total < n:
        if kind_or_all == "all":
            if not order:
                order = list(rng.permutation(EXCITATION_KINDS))
            kind = order.pop()
        else:
            kind = kind_or_all
        length = max(1, round(rng.uniform(*_SEGMENT_S) / step_dt))
        parts.append(_SEGMENTS[kind](rng, length, step_dt))
        total += length
    seq = np.concatenate(parts)[:n]
    return np.clip(seq, -1.0, 1.0).astype(np.float32)


def _levels(rng: np.random.Generator, size: int) -> np.ndarray:
    """Random levels that cover the box: a quarter zeros, a quarter at +-1, the rest uniform."""
    u = rng.uniform(-1.0, 1.0, size)
    pick = rng.uniform(size=size)
    u[pick < 0.25] = 0.0
    corner = pick > 0.75
    u[corner] = np.sign(u[corner]) + (u[corner] == 0)
    return u


def _hold_times(
    rng: np.random.Generator, length: int, step_dt: float, lo_s: float, hi_s: float
) -> np.ndarray:
    """Row indices where a new level starts (0 first), spaced lo_s..hi_s apart."""
    starts = [0]
    while starts[-1] < length:
        starts.append(starts[-1] + max(1, round(rng.uniform(lo_s, hi_s) / step_dt)))
    return np.asarray(starts[:-1])


def _active_channels(rng: np.random.Generator) -> np.ndarray:
    """(4,) bool: which channels a segment excites (at least one; often one alone, to separate axes)."""
    k = rng.choice([1, 2, 4], p=[0.4, 0.3, 0.3])
    mask = np.zeros(ACTION_DIM, dtype=bool)
    mask[rng.choice(ACTION_DIM, size=k, replace=False)] = True
    return mask


def _steps(rng: np.random.Generator, length: int, step_dt: float) -> np.ndarray:
    out = np.zeros((length, ACTION_DIM))
    active = _active_channels(rng)
    for ch in np.flatnonzero(active):
        starts = _hold_times(rng, length, step_dt, *STEP_HOLD_S)
        levels = _levels(rng, starts.size)
        idx = np.searchsorted(starts, np.arange(length), side="right") - 1
        out[:, ch] = levels[idx]
    return out


def _ramps(rng: np.random.Generator, length: int, step_dt: float) -> np.ndarray:
    out = np.zeros((length, ACTION_DIM))
    active = _active_channels(rng)
    for ch in np.flatnonzero(active):
        knots = np.append(_hold_times(rng, length, step_dt, 1.0, 3.0), length - 1)
        levels = _levels(rng, knots.size)
        levels[0] = 0.0 if rng.uniform() < 0.5 else levels[0]
        out[:, ch] = np.interp(np.arange(length), knots, levels)
    return out


def _chirps(rng: np.random.Generator, length: int, step_dt: float) -> np.ndarray:
    out = np.zeros((length, ACTION_DIM))
    t = np.arange(length) * step_dt
    span = max(t[-1], step_dt)
    f0, f1 = CHIRP_HZ
    active = _active_channels(rng)
    for ch in np.flatnonzero(active):
        amp = rng.uniform(0.3, 1.0)
        up = rng.uniform() < 0.5
        a, b = (f0, f1) if up else (f1, f0)
        # Exponential sweep: phase = 2 pi a T / ln(b/a) (exp(t ln(b/a) / T) - 1).
        k = math.log(b / a) / span
        freq = a * np.exp(k * t)
        phase = 2 * math.pi * a * (np.exp(k * t) - 1.0) / k + rng.uniform(0, 2 * math.pi)
        # Band limit: the command's slope 2 pi f A stays within MAX_SLOPE_PER_S.
        out[:, ch] = np.minimum(amp, MAX_SLOPE_PER_S / (2 * math.pi * freq)) * np.sin(phase)
    return out


def _ou(rng: np.random.Generator, length: int, step_dt: float) -> np.ndarray:
    """Ornstein-Uhlenbeck noise passed through a second first-order filter of the same time constant."""
    out = np.zeros((length, ACTION_DIM))
    active = _active_channels(rng)
    for ch in np.flatnonzero(active):
        tau = rng.uniform(*OU_TAU_S)  # s, correlation time
        amp = rng.uniform(0.5, 1.3)  # stationary std of the OU process before filtering and clipping
        phi = math.exp(-step_dt / tau)
        x = rng.uniform(-amp, amp)
        y = x
        noise = rng.standard_normal(length) * amp * math.sqrt(1.0 - phi * phi)
        for i in range(length):
            x = phi * x + noise[i]
            y = phi * y + (1.0 - phi) * x
            out[i, ch] = y
        # The second filter lowers the spread; restore the drawn amplitude.
        out[:, ch] *= amp / max(float(np.std(out[:, ch])), 1e-6) if length > 10 else 1.0
    return np.clip(out, -1.0, 1.0)


_SEGMENTS = {"steps": _steps, "ramps": _ramps, "chirps": _chirps, "ou": _ou}


# ---------------------------------------------------------------------------- metadata


def config_fingerprint(env_cfg) -> str:
    """16 hex digits of SHA-256 over the config fields that shape the flight.

    Covers ``physics_dt``, ``decimation``, ``multirotor``, ``cascade`` and the
    action scale (``actions``) of a :class:`~flyby.config.envs.PX4EnvCfg`;
    not rendering, perception, rewards or the direct model's own parameters
    (which tuning changes), so a log stays valid after the model is tuned.
    """
    data = {
        "physics_dt": float(env_cfg.physics_dt),
        "decimation": int(env_cfg.decimation),
        "multirotor": to_dict(env_cfg.multirotor),
        "cascade": to_dict(env_cfg.cascade),
        "action_scale": env_cfg.actions.as_dict(),
    }
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def log_metadata(env, seed: int | None = None, excitation: str = "") -> dict[str, Any]:
    """Metadata of a log flown in ``env`` (a ``flyby/PX4ISR-v0`` instance)."""
    cfg = env.cfg
    return {
        "format_version": LOG_FORMAT_VERSION,
        "flight_stack": env.flight_stack.value,
        "flight_stack_label": env.flight_stack_label,
        "step_dt": float(cfg.step_dt),
        "physics_dt": float(cfg.physics_dt),
        "decimation": int(cfg.decimation),
        "action_scale": cfg.actions.as_dict(),
        "fingerprint": config_fingerprint(cfg),
        "seed": seed,
        "excitation": excitation,
    }


# ---------------------------------------------------------------------------- recording


@dataclass(kw_only=True)
class SafeBox:
    """Where recording keeps the drone: inside the geofence, above every building.

    Attributes:
        lo: (3,) lower corner, metres ENU.  hi: (3,) upper corner.  start: (3,) episode start.
    """

    lo: np.ndarray
    hi: np.ndarray
    start: np.ndarray

    def contains(self, pos_w: np.ndarray) -> bool:
        return bool(np.all(pos_w >= self.lo) and np.all(pos_w <= self.hi))


def safe_box(
    env, edge_margin_m: float = 12.0, building_clearance_m: float = 8.0, ceiling_margin_m: float = 8.0
) -> SafeBox:
    """The recording box of ``env``'s world; episodes start at its centre (area centre, mid altitude).

    Raises:
        TuningDataError: the world leaves no room between the tallest building and the ceiling.
    """
    world = env.task.world
    half = world.half_extent
    floor = float(np.max(world.height_map_m)) + building_clearance_m
    ceiling = env.cfg.terminations.max_altitude_m - ceiling_margin_m
    if ceiling - floor < 10.0:
        raise TuningDataError(
            f"no room to record: tallest building + {building_clearance_m} m = {floor:.1f} m, "
            f"ceiling - {ceiling_margin_m} m = {ceiling:.1f} m; raise terminations.max_altitude_m"
        )
    lo = np.array([-half[0] + edge_margin_m, -half[1] + edge_margin_m, floor])
    hi = np.array([half[0] - edge_margin_m, half[1] - edge_margin_m, ceiling])
    start = np.array([0.0, 0.0, 0.5 * (floor + ceiling)])
    return SafeBox(lo=lo, hi=hi, start=start)


def plan_episodes(
    commands: np.ndarray, env, box: SafeBox, min_episode_s: float = 6.0, margin_m: float = 10.0
) -> list[tuple[int, int]]:
    """Split ``commands`` into episodes ``[(first, end_exclusive), ...]`` that stay inside ``box``.

    The prediction integrates the commanded velocity (vertical clamped to the
    cascade's climb/descent limits), which overestimates how far the drone flies
    (it lags its setpoint), so the real flight stays inside. An episode is cut a
    step before its predicted exit, but never shorter than ``min_episode_s``
    (commands can move at most ``max speed x min_episode_s`` from the start,
    which the box's size covers).
    """
    v = commands[:, ACT_VEL].astype(np.float64) * env.cfg.actions.vel_scale
    casc = env.cfg.cascade
    v[:, 2] = np.clip(v[:, 2], -casc.mpc_z_vel_max_dn, casc.mpc_z_vel_max_up)
    dt = float(env.cfg.step_dt)
    min_steps = max(1, round(min_episode_s / dt))
    episodes = []
    first = 0
    n = len(commands)
    while first < n:
        pos = box.start + np.cumsum(v[first:] * dt, axis=0)
        outside = np.flatnonzero(np.any((pos < box.lo + margin_m) | (pos > box.hi - margin_m), axis=1))
        end = n if outside.size == 0 else first + max(int(outside[0]), min_steps)
        end = min(end, n)
        episodes.append((first, end))
        first = end
    return episodes


def record_trajectories(
    env,
    commands: np.ndarray,
    seed: int = 0,
    *,
    settle_s: float = 1.0,
    progress: bool = False,
    excitation: str = "",
) -> TrajectoryLog:
    """Fly ``commands`` in the full-fidelity env and log the response.

    Each episode (see :func:`plan_episodes`) resets the drone at rest above the
    area centre (mid-way between the tallest building and the ceiling, yaw drawn
    from ``seed``), hovers ``settle_s`` seconds (not logged; the rotors spin up
    from rest after a reset), then flies its commands. A drone that leaves the
    safe box anyway ends its episode there; the next one continues the sequence.

    With PX4 (each reset restarts it: one PX4 run, and its own ULog, per episode) every row
    also gets ``px4_time_s`` and ``meta["px4"]`` names each episode's PX4 run (its text log)
    and where it booted; PX4 writes the ULog out only when it stops, so call
    :func:`attach_px4_estimate` after ``env.close()`` to add PX4's estimate.

    Args:
        env: a ``flyby/PX4ISR-v0`` env (:class:`flyby.envs.px4_env.PX4ISREnv`), any flight stack.
        commands: (T, 4) normalised commands in [-1, 1] at ``env.cfg.step_dt``.
        seed: seeds the env resets and start headings.
        settle_s: hover time after each reset, seconds.
        progress: show a tqdm progress bar.
        excitation: free-text description stored in the metadata.

    Returns:
        The :class:`TrajectoryLog`, with :func:`log_metadata`.

    Raises:
        ValueError: ``commands`` is not (T, 4) or holds values outside [-1, 1] or NaN.
    """
    cmd = np.asarray(commands, dtype=np.float32)
    if cmd.ndim != 2 or cmd.shape[1] != ACTION_DIM or len(cmd) == 0:
        raise ValueError(f"commands must be (T, 4) [vx, vy, vz, yaw_rate], T >= 1, got {cmd.shape}")
    if not np.all(np.isfinite(cmd)) or np.abs(cmd).max() > 1.0:
        raise ValueError("commands must be finite and in [-1, 1]; build them with excitation_sequences()")
    box = safe_box(env)
    dt = float(env.cfg.step_dt)
    settle = max(0, round(settle_s / dt))
    plan = plan_episodes(cmd, env, box)
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {
        k: [] for k in ("time_s", "commands", "pos_w", "lin_vel_w", "yaw_rad", "episode")
    }
    dyn = env.task.dynamics
    stack = getattr(dyn, "flight_stack", None)
    px4 = stack is not None and hasattr(stack, "px4_time_s")  # PX4FlightStack (or a stand-in of it)
    px4_time: list[float] = []
    px4_runs: dict[int, dict[str, Any]] = {}  # raw episode index -> its PX4 run
    hover = np.zeros(ACTION_DIM, dtype=np.float32)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(cmd), desc=f"recording ({env.flight_stack.value})", unit="step")
    episode = 0
    queue = list(plan)
    try:
        while queue:
            first, end = queue.pop(0)
            env.reset(
                seed=int(rng.integers(2**31)),
                options={"pos_w": box.start.tolist(), "yaw_rad": float(rng.uniform(-math.pi, math.pi))},
            )
            for _ in range(settle):
                env.step(hover)
            if px4:
                px4_runs[episode] = _px4_run(env, stack, box.start)
            for k in range(first, end):
                pos = dyn.pos_w[0].copy()
                if not box.contains(pos):
                    logger.info("drone left the safe box at %s m (row %d); starting a new episode", pos, k)
                    queue.insert(0, (k, end))
                    break
                rows["time_s"].append(k * dt)
                rows["commands"].append(cmd[k])
                rows["pos_w"].append(pos)
                rows["lin_vel_w"].append(dyn.lin_vel_w[0].copy())
                rows["yaw_rad"].append(float(dyn.yaw_rad[0]))
                rows["episode"].append(episode)
                if px4:
                    # PX4 is told this state with the next HIL_SENSOR, one physics step on.
                    px4_time.append(float(stack.px4_time_s[0]) + float(env.cfg.physics_dt))
                _, _, terminated, _, _ = env.step(cmd[k])
                if bar is not None:
                    bar.update(1)
                if terminated:
                    logger.warning("episode terminated (crash or geofence) at row %d; starting a new one", k)
                    # The step that ended it is unusable: drop its row, resume after it.
                    for v in rows.values():
                        v.pop()
                    if px4:
                        px4_time.pop()
                    if k + 1 < end:
                        queue.insert(0, (k + 1, end))
                    break
            episode += 1
    finally:
        if bar is not None:
            bar.close()
    log = TrajectoryLog(
        time_s=np.asarray(rows["time_s"]),
        commands=np.asarray(rows["commands"], dtype=np.float32).reshape(-1, ACTION_DIM),
        pos_w=np.asarray(rows["pos_w"]).reshape(-1, 3),
        lin_vel_w=np.asarray(rows["lin_vel_w"]).reshape(-1, 3),
        yaw_rad=np.asarray(rows["yaw_rad"]),
        episode=_renumber(np.asarray(rows["episode"], dtype=np.int32)),
        meta=log_metadata(env, seed, excitation),
    )
    log.meta["episodes"] = len(log.episode_bounds())
    if px4:
        raw = np.asarray(rows["episode"], dtype=np.int32)
        kept = [int(e) for e in raw[np.r_[True, np.diff(raw) != 0]]] if raw.size else []
        log.px4_time_s = np.asarray(px4_time, dtype=np.float64)
        log.meta["px4"] = {
            "home": [float(h) for h in getattr(stack, "home", ())],
            "runs": [px4_runs[e] for e in kept],  # one per episode of the log, in order
        }
    return log


def _px4_run(env, stack, start_w: np.ndarray) -> dict[str, Any]:
    """The PX4 run flying the current episode: its text log, and where it booted (m, world ENU).

    PX4 boots at rest on the surface below the episode's start (``FlightStackMotion.reset``):
    ``start_w``'s x, y at the surface height plus the resting height of the drone's centre.
    """
    dyn = env.task.dynamics
    boot = np.asarray(start_w, dtype=np.float64).copy()
    surface = 0.0 if dyn.surface_height is None else float(np.asarray(dyn.surface_height(boot[None, :2]))[0])
    boot[2] = surface + float(dyn.rest_height_m)
    text_log = stack.log_paths[0]
    return {"text_log": None if text_log is None else str(text_log), "boot_pos_w": boot.round(4).tolist()}


def _renumber(episode: np.ndarray) -> np.ndarray:
    """Consecutive episode indices 0, 1, ... (episodes that logged no row leave no gap)."""
    if episode.size == 0:
        return episode
    return np.concatenate([[0], np.cumsum(np.diff(episode) != 0)]).astype(np.int32)


# ---------------------------------------------------------------------------- PX4's estimate

PX4_ORIGIN_NOTE = (
    "PX4's local NED frame is about the origin EKF2 set from its first GNSS fix, on the ground below the "
    "episode's start where PX4 booted; each vehicle_local_position sample states it (ref_lat, ref_lon, "
    "ref_alt), projected here into flyby's world about meta.px4.home with PX4's own projection, so "
    "px4_est_pos_w = origin + local estimate is PX4's global estimate in world ENU; where PX4 had no "
    "origin yet the boot position stands in"
)


def attach_px4_estimate(
    log: TrajectoryLog, ulogs: Mapping[str | Path, Sequence[str | Path]], *, max_gap_s: float = 0.1
) -> TrajectoryLog:
    """Add PX4's EKF2 estimate, from the ULogs of its runs, to a PX4 log beside the ground truth.

    Each episode of ``log`` was flown by one PX4 run (``meta["px4"]["runs"]``, in episode
    order); its ULogs (one, or several if PX4 was re-armed) share that run's clock. The
    ``vehicle_local_position`` samples are put in flyby's world (see :data:`PX4_ORIGIN_NOTE`:
    PX4's stated origin plus its local estimate, NED -> ENU through :mod:`flyby.px4.frames`)
    and interpolated linearly at each row's ``px4_time_s``.

    Sets ``log.px4_est_pos_w`` (T, 3) m and ``log.px4_est_vel_w`` (T, 3) m/s, world ENU (NaN
    for rows outside the ULog's samples or in a gap over ``max_gap_s``); adds to each run of
    ``meta["px4"]["runs"]`` its ``ulogs``, PX4's ``origin_w`` (m ENU, at the episode's first
    row) and ``origin_minus_boot_m``; and sets ``meta["px4_estimate"]`` (:func:`px4_estimate_summary`).

    Args:
        log: from :func:`record_trajectories` with PX4 (has ``px4_time_s`` and ``meta["px4"]``).
        ulogs: text log of a PX4 run -> the ULogs kept from it, e.g.
            ``env.task.dynamics.flight_stack.kept_ulogs[0]`` once ``env.close()`` has stopped PX4.
        max_gap_s: s, the largest gap between ULog samples to interpolate across.

    Returns:
        ``log`` (changed in place).

    Raises:
        TuningDataError: ``log`` was not flown with PX4 (no ``px4_time_s`` / ``meta["px4"]``).
        flyby.errors.ULogError: a run has no ULog in ``ulogs``, or a ULog is missing, not a ULog
            or lacks a topic (the message names the file and the topic).
    """
    from flyby.errors import ULogError
    from flyby.px4.ulog import concat_local_positions, read_ulog, resample

    info = log.meta.get("px4")
    runs = None if info is None else info.get("runs")
    bounds = log.episode_bounds()
    if log.px4_time_s is None or runs is None or len(runs) != len(bounds):
        raise TuningDataError(
            f"this log has no PX4 run per episode (flight stack {log.meta.get('flight_stack')!r}, "
            f"{len(bounds)} episode(s), {0 if runs is None else len(runs)} PX4 run(s)); "
            "record it with `flyby record --flight-stack px4`"
        )
    home = tuple(float(h) for h in info["home"])
    by_run = {Path(k).resolve(): [Path(p) for p in v] for k, v in ulogs.items()}
    est_pos = np.full((len(log), 3), np.nan)
    est_vel = np.full((len(log), 3), np.nan)
    for (a, b), run in zip(bounds, runs):
        text_log = run.get("text_log")
        paths = by_run.get(Path(text_log).resolve()) if text_log else None
        if not paths:
            raise ULogError(
                f"no ULog kept for PX4 run {text_log} (episode rows {a}..{b}); PX4 writes it out when it "
                "stops: call attach_px4_estimate after env.close()",
                path=text_log,
            )
        lp = concat_local_positions([read_ulog(p).local_position for p in paths])
        boot = np.asarray(run["boot_pos_w"], dtype=np.float64)
        t = log.px4_time_s[a : b + 1]
        pos_w = lp.pos_w(home, fallback_origin_w=boot)
        est_pos[a : b + 1] = resample(lp.time_s, pos_w, t, max_gap_s=max_gap_s)
        est_vel[a : b + 1] = resample(lp.time_s, lp.vel_w, t, max_gap_s=max_gap_s)
        origin = resample(lp.time_s, lp.origin_w(home), t[:1], max_gap_s=max_gap_s)[0]
        run["ulogs"] = [str(p) for p in paths]
        run["origin_w"] = None if not np.isfinite(origin).all() else origin.round(4).tolist()
        run["origin_minus_boot_m"] = None if run["origin_w"] is None else (origin - boot).round(4).tolist()
    log.px4_est_pos_w = est_pos
    log.px4_est_vel_w = est_vel
    log.meta["px4_estimate"] = px4_estimate_summary(log)
    return log


def px4_estimate_summary(log: TrajectoryLog) -> dict[str, Any]:
    """Estimator error of a log with PX4's estimate: ``|px4_est - truth|`` over the rows that have one.

    Returns:
        ``{"rows": n, "rows_without_estimate": m, "pos_err_median_m", "pos_err_p95_m", "pos_err_max_m",
        "vel_err_median_mps", "vel_err_p95_mps", "origin": PX4_ORIGIN_NOTE}`` (errors None without rows).

    Raises:
        TuningDataError: the log has no PX4 estimate.
    """
    if not log.has_px4_estimate:
        raise TuningDataError(
            "this log has no PX4 estimate (px4_est_pos_w); record it with `flyby record --flight-stack px4`"
        )
    pos_err = np.linalg.norm(log.px4_est_pos_w - log.pos_w, axis=1)
    vel_err = np.linalg.norm(log.px4_est_vel_w - log.lin_vel_w, axis=1)
    ok = np.isfinite(pos_err) & np.isfinite(vel_err)

    def stat(x: np.ndarray, q: float) -> float | None:
        return round(float(np.percentile(x[ok], q)), 4) if ok.any() else None

    return {
        "rows": int(ok.sum()),
        "rows_without_estimate": int((~ok).sum()),
        "pos_err_median_m": stat(pos_err, 50),
        "pos_err_p95_m": stat(pos_err, 95),
        "pos_err_max_m": stat(pos_err, 100),
        "vel_err_median_mps": stat(vel_err, 50),
        "vel_err_p95_mps": stat(vel_err, 95),
        "origin": PX4_ORIGIN_NOTE,
    }


# ---------------------------------------------------------------------------- files

_ARRAYS = ("time_s", "commands", "pos_w", "lin_vel_w", "yaw_rad", "episode")


def save_log(log: TrajectoryLog, path: str | Path | None = None) -> Path:
    """Write ``log`` as a compressed ``.npz`` (arrays + JSON metadata), atomically; return the path.

    The optional PX4 arrays (``px4_time_s``, ``px4_est_pos_w``, ``px4_est_vel_w``) are written
    when the log has them. The file is written beside ``path`` under a temporary name and
    renamed onto it (:func:`flyby.utils.atomic.atomic_write_bytes`), so a reader never sees half
    a log and a failed write leaves the previous file as it was.

    Args:
        path: file path; default ``output/logs/<flight_stack>_seed<seed>.npz``. Parent folders are created.

    Raises:
        OutputError: the folder cannot be created or the file cannot be written (a file where a
            folder should be, permissions, disk full); names the path.
    """
    if path is None:
        path = LOG_DIR / f"{log.meta.get('flight_stack', 'log')}_seed{log.meta.get('seed', 0)}.npz"
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(".npz")
    arrays = {k: getattr(log, k) for k in _ARRAYS}
    arrays.update({k: getattr(log, k) for k in _PX4_ARRAYS if getattr(log, k) is not None})
    buf = io.BytesIO()
    np.savez_compressed(buf, meta=np.array(json.dumps(log.meta, sort_keys=True)), **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def load_log(path: str | Path) -> TrajectoryLog:
    """Read a log written by :func:`save_log`.

    Raises:
        TuningDataError: the file is missing, not a flyby log, or its arrays disagree in length.
    """
    path = Path(path)
    if not path.exists():
        raise TuningDataError(
            f"trajectory log {path} does not exist; record one with `flyby record --out {path}`"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in (*_ARRAYS, "meta") if k not in data.files]
            if missing:
                raise TuningDataError(f"{path} is not a flyby trajectory log: missing {missing}")
            arrays = {k: data[k] for k in _ARRAYS}
            optional = {k: data[k] for k in _PX4_ARRAYS if k in data.files}
            meta = json.loads(str(data["meta"]))
    except (OSError, ValueError) as exc:
        if isinstance(exc, TuningDataError):
            raise
        raise TuningDataError(f"{path} is not a readable .npz trajectory log: {exc}") from exc
    lengths = {k: len(v) for k, v in {**arrays, **optional}.items()}
    if len(set(lengths.values())) > 1:
        raise TuningDataError(f"{path}: arrays disagree in length: {lengths}")
    try:
        return TrajectoryLog(**arrays, **optional, meta=meta)
    except ValueError as exc:
        raise TuningDataError(f"{path}: malformed arrays: {exc}") from exc
