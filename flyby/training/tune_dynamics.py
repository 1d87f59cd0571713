"""Dynamics tuning: fit the direct model to full-fidelity trajectories (``flyby tune``).

The direct model (:mod:`flyby.dynamics.direct`) is fitted with
``scipy.optimize.least_squares`` on *multi-step open-loop rollouts*, not
one-step errors: every window of ``window_s`` seconds (5 s) of a recorded log
(:mod:`flyby.training.record`) starts from the logged state and is flown by the
direct model on the logged commands alone; the residuals are the position,
velocity and yaw differences at every step of every window. Noise is off while
fitting (it is domain randomization, not part of the fit).

Hidden model states (the lagged thrust acceleration, the anti-windup integrator, the
yaw rate) cannot be read from a log. Each rollout therefore starts ``burn_in_s``
before its window with a *teacher-forced* burn-in: the model steps on the logged commands while its
position, velocity and yaw are reset to the logged values after every step, so
its hidden states settle as they would have in flight; from the window's first
row on it runs free. Before an episode's first row the vehicle hovered at rest
(see :func:`flyby.training.record.record_trajectories`), and the burn-in sees
exactly that. For the seed model, which has no hidden state, burn-in changes
nothing.

Procedure (:func:`fit_dynamics`): fit the seed model's one free parameter
(``velocity_damping``; the action scale is shared by every env and fixed),
then the extended model (every extension in :data:`EXTENSIONS`), and on
request (``ablation=True``, ``flyby tune --ablation``) an ablation that refits
with each extension left out, so the report shows what each one buys.
Residuals weigh 1 m of position like 1 m/s of velocity and 0.2 rad of yaw.
:func:`run_tuning` adds the held-out errors, the parameter table, the tuned
YAML and the plot.

Public API used by the phase-2 parity gate: :func:`open_loop_errors`,
:func:`simulate_direct`, :func:`fit_dynamics`, and from
:mod:`flyby.training.record` ``excitation_sequences``, ``record_trajectories``,
``load_log``, ``save_log``.
"""

from __future__ import annotations

import ast
import inspect
import logging
import math
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from flyby.config.dynamics import DirectDynamicsCfg
from flyby.dynamics.direct import DirectDynamics
from flyby.errors import DependencyNotInstalled, TuningDataError
from flyby.mdp.actions import ActionCfg
from flyby.training.record import (  # noqa: F401  (re-exported for the parity gate)
    TrajectoryLog,
    config_fingerprint,
    excitation_sequences,
    load_log,
    record_trajectories,
    save_log,
)
from flyby.utils.atomic import atomic_write_bytes, atomic_write_text

logger = logging.getLogger(__name__)

WINDOW_S = 5.0  # s, length of one open-loop rollout
STRIDE_S = 1.0  # s, spacing of window starts
BURN_IN_S = 3.0  # s, teacher-forced burn-in before each window (about the integrator's time constant)
MIN_TRAINING_S = 60.0  # s, least flight (in windows) the fit accepts
HORIZONS_S = (1.0, 5.0)  # s, open-loop horizons reported
# Residual weights: 1 m of position = 1 m/s of velocity = 0.2 rad of yaw.
POS_WEIGHT = 1.0  # 1/m
VEL_WEIGHT = 1.0  # s/m
YAW_WEIGHT = 5.0  # 1/rad

#: Extensions of the seed model, each a group of DirectDynamicsCfg fields fitted together.
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "vertical_response": ("vertical_velocity_damping",),
    "velocity_gains": ("velocity_gain", "vertical_velocity_gain"),
    "horizontal_speed_limit": ("max_horizontal_speed",),
    "vertical_limits": ("max_climb_rate", "max_descent_rate"),
    "acceleration_limit": ("max_horizontal_acceleration", "drag_coefficient"),
    "acceleration_lag": ("acceleration_damping",),
    "jerk_limit": ("max_horizontal_jerk",),
    "yaw_coupling": ("yaw_coupling_s",),
    "thrust_coupling": ("thrust_coupling", "max_downward_acceleration"),
    "yaw_response": ("yaw_rate_gain", "yaw_rate_damping"),
    "antiwindup": ("antiwindup_gain", "antiwindup_damping"),
}
SEED_FREE = ("velocity_damping",)
_NOISE = ("position_noise_std", "velocity_noise_std")


# ---------------------------------------------------------------------------- parameterisation


@dataclass(frozen=True)
class _Param:
    """How a config field is fitted: in natural units (seconds for retentions), with bounds."""

    name: str
    unit: str
    lo: float
    hi: float
    kind: str = "plain"  # "plain", "damping" (fitted as a time constant, s), "limit" (None = inactive)


_PARAMS = {
    p.name: p
    for p in (
        _Param("velocity_damping", "s", 0.05, 5.0, "damping"),
        _Param("vertical_velocity_damping", "s", 0.02, 5.0, "damping"),
        _Param("acceleration_damping", "s", 0.005, 1.0, "damping"),
        _Param("yaw_rate_damping", "s", 0.005, 1.0, "damping"),
        _Param("velocity_gain", "1", 0.3, 1.5),
        _Param("vertical_velocity_gain", "1", 0.3, 1.5),
        _Param("yaw_rate_gain", "1", 0.3, 1.5),
        _Param("max_horizontal_speed", "m/s", 0.5, 30.0, "limit"),
        _Param("max_climb_rate", "m/s", 0.2, 15.0, "limit"),
        _Param("max_descent_rate", "m/s", 0.2, 15.0, "limit"),
        _Param("max_horizontal_acceleration", "m/s^2", 0.5, 30.0, "limit"),
        _Param("drag_coefficient", "1/s", 0.0, 3.0),
        _Param("max_horizontal_jerk", "m/s^3", 1.0, 300.0, "limit"),
        _Param("yaw_coupling_s", "s", 0.0, 1.0),
        _Param("thrust_coupling", "1", 0.0, 2.0),
        _Param("antiwindup_gain", "1/s", 0.0, 5.0),
        _Param("antiwindup_damping", "s", 0.05, 20.0, "damping"),
        _Param("max_downward_acceleration", "m/s^2", 0.5, 40.0, "limit"),
    )
}
# Where a fit starts a parameter whose seed value switches it off (None or 0): inside the
# range the data reach, so it has a gradient; the physical guess where there is one.
_OFF_STARTS = {
    "max_horizontal_speed": lambda a: 0.85 * math.sqrt(2.0) * a.max_velocity,  # m/s (PX4 MPC_XY_VEL_MAX 12)
    "max_climb_rate": lambda a: 0.6 * a.max_vertical_velocity,  # m/s (PX4 MPC_Z_VEL_MAX_UP 3)
    "max_descent_rate": lambda a: 0.6 * a.max_vertical_velocity,  # m/s (PX4 MPC_Z_VEL_MAX_DN 1.5)
    "max_horizontal_acceleration": lambda a: 8.0,  # m/s^2 (g tan 45 deg = 9.8, less drag)
    "drag_coefficient": lambda a: 0.3,  # 1/s (Iris rotor drag 0.56 N/(m/s) / 1.5 kg = 0.37)
    "max_horizontal_jerk": lambda a: 40.0,  # m/s^3 (g x MC_PITCHRATE_MAX 220 deg/s = 38)
    "yaw_coupling_s": lambda a: 0.1,  # s (attitude time constant 1 / MC_PITCH_P 6.5 = 0.15)
    "antiwindup_damping": lambda a: 2.0,  # s, as a time constant (PX4 MPC_XY_VEL_P_ACC / I_ACC = 4.5)
    "antiwindup_gain": lambda a: 0.4,  # 1/s (PX4 MPC_XY_VEL_I_ACC 0.4 x arw_gain 2 / 1.8, on P-scaled error)
    "thrust_coupling": lambda a: 1.0,  # 1 (PX4 MPC_ACC_DECOUPLE: horizontal thrust x (1 + a_z / g))
    "max_downward_acceleration": lambda a: 8.0,  # m/s^2 (g (1 - MPC_THR_MIN / hover) = 8.1)
    "acceleration_damping": lambda a: 0.1,  # s, as a time constant
    "yaw_rate_damping": lambda a: 0.1,  # s, as a time constant
}


def time_constant_s(damping: float, reference_dt: float) -> float:
    """Time constant of a per-reference-step retention ``d``: ``-dt_ref / ln d`` (0 for d = 0)."""
    return 0.0 if damping <= 0.0 else -reference_dt / math.log(damping)


def damping_from_tau(tau_s: float, reference_dt: float) -> float:
    """Per-reference-step retention of a first-order response with time constant ``tau_s``."""
    return 0.0 if tau_s <= 0.0 else math.exp(-reference_dt / tau_s)


def _start_value(cfg: DirectDynamicsCfg, name: str, actions: ActionCfg) -> float:
    """The fit's starting point for ``name``, in fitted units (time constants for retentions)."""
    p = _PARAMS[name]
    value = getattr(cfg, name)
    if name == "vertical_velocity_damping" and value is None:
        value = cfg.velocity_damping
    if value is None or (value == 0.0 and name in _OFF_STARTS):
        start = _OFF_STARTS[name](actions)
    elif p.kind == "damping":
        start = time_constant_s(value, cfg.damping_reference_dt)
    else:
        start = value
    return float(np.clip(start, p.lo, p.hi))


def _apply(cfg: DirectDynamicsCfg, names: Sequence[str], x: np.ndarray) -> DirectDynamicsCfg:
    """``cfg`` with the fitted values ``x`` (fitted units) for fields ``names``."""
    ref = cfg.damping_reference_dt
    values: dict[str, Any] = {}
    for name, v in zip(names, x):
        values[name] = damping_from_tau(float(v), ref) if _PARAMS[name].kind == "damping" else float(v)
    return replace(cfg, **values)


def _noiseless(cfg: DirectDynamicsCfg) -> DirectDynamicsCfg:
    return replace(cfg, position_noise_std=0.0, velocity_noise_std=0.0)


# ---------------------------------------------------------------------------- windows and rollouts


def _steps(seconds: float, step_dt: float) -> int:
    return max(1, round(seconds / step_dt))


def window_starts(log: TrajectoryLog, window_s: float = WINDOW_S, stride_s: float = STRIDE_S) -> np.ndarray:
    """Rows where open-loop windows start: every ``stride_s`` inside each episode, whole windows only.

    A window from row ``s`` predicts rows ``s + 1 .. s + n`` (``n = window_s / step_dt``),
    all in the episode of ``s``.
    """
    if len(log) == 0:
        return np.zeros(0, dtype=np.intp)
    n = _steps(window_s, log.step_dt)
    stride = _steps(stride_s, log.step_dt)
    starts = [np.arange(a, b - n + 1, stride) for a, b in log.episode_bounds() if b - a >= n]
    return np.concatenate(starts).astype(np.intp) if starts else np.zeros(0, dtype=np.intp)


def usable_duration_s(log: TrajectoryLog, window_s: float = WINDOW_S) -> float:
    """Seconds of flight in episodes long enough to hold at least one window."""
    if len(log) == 0:
        return 0.0
    n = _steps(window_s, log.step_dt)
    rows = sum(b - a for a, b in log.episode_bounds() if b - a >= n)
    return rows * log.step_dt


@dataclass
class Rollout:
    """Direct-model predictions and logged truth for a batch of windows.

    Arrays are (W, n, ...) for W windows of n steps; step k is the state after
    command ``start + k`` (log row ``start + k + 1``).
    """

    starts: np.ndarray
    pos_w: np.ndarray
    lin_vel_w: np.ndarray
    yaw_rad: np.ndarray
    true_pos_w: np.ndarray
    true_lin_vel_w: np.ndarray
    true_yaw_rad: np.ndarray

    @property
    def pos_error_m(self) -> np.ndarray:
        """(W, n) position error norms, metres."""
        return np.linalg.norm(self.pos_w - self.true_pos_w, axis=-1)

    @property
    def yaw_error_rad(self) -> np.ndarray:
        """(W, n) wrapped yaw errors, radians."""
        return _wrap(self.yaw_rad - self.true_yaw_rad)


def rollout_windows(
    dyn_cfg: DirectDynamicsCfg,
    log: TrajectoryLog,
    starts: np.ndarray,
    n_steps: int,
    burn_in_s: float = BURN_IN_S,
) -> Rollout:
    """Fly the direct model (noise off) open-loop from the logged state at each of ``starts``.

    All windows run as one batch of ``len(starts)`` drones. Each window ``s``
    gets a teacher-forced burn-in over rows ``s - burn .. s - 1`` (see the
    module docstring); rows before its episode's first row are the hover at rest
    that preceded the episode. Then the model runs free on ``commands[s : s + n]``.

    Raises:
        TuningDataError: a window does not fit inside its episode.
    """
    starts = np.asarray(starts, dtype=np.intp)
    w = starts.size
    dt = log.step_dt
    ep_first = _episode_first_rows(log)[starts]
    ep_last = _episode_last_rows(log)[starts]
    if w and np.any(starts + n_steps > ep_last):
        bad = int(starts[np.argmax(starts + n_steps > ep_last)])
        last = int(ep_last[starts == bad][0])
        raise TuningDataError(
            f"window of {n_steps} steps from row {bad} leaves its episode (last row {last})"
        )
    dyn = DirectDynamics(_noiseless(dyn_cfg), max(w, 1), log.actions)
    dyn.reset(np.zeros((max(w, 1), 3)), np.zeros(max(w, 1)))
    if w == 0:
        empty3 = np.zeros((0, n_steps, 3))
        return Rollout(starts, empty3, empty3, np.zeros((0, n_steps)), empty3, empty3, np.zeros((0, n_steps)))
    burn = _steps(burn_in_s, dt) if burn_in_s > 0 else 0
    commands = log.commands.astype(np.float64)
    for j in range(-burn, 0):
        rows = starts + j
        before = rows < ep_first
        r = np.maximum(rows, ep_first)
        dyn.pos_w[:] = log.pos_w[r]
        dyn.lin_vel_w[:] = log.lin_vel_w[r]
        dyn.yaw_rad[:] = log.yaw_rad[r]
        cmd = commands[r]
        cmd[before] = 0.0
        dyn.step(cmd, dt)
    dyn.pos_w[:] = log.pos_w[starts]
    dyn.lin_vel_w[:] = log.lin_vel_w[starts]
    dyn.yaw_rad[:] = log.yaw_rad[starts]
    pos = np.empty((w, n_steps, 3))
    vel = np.empty((w, n_steps, 3))
    yaw = np.empty((w, n_steps))
    for k in range(n_steps):
        dyn.step(commands[starts + k], dt)
        pos[:, k] = dyn.pos_w
        vel[:, k] = dyn.lin_vel_w
        yaw[:, k] = dyn.yaw_rad
    rows = starts[:, None] + np.arange(1, n_steps + 1)[None, :]
    return Rollout(starts, pos, vel, yaw, log.pos_w[rows], log.lin_vel_w[rows], log.yaw_rad[rows])


def _episode_first_rows(log: TrajectoryLog) -> np.ndarray:
    first = np.zeros(len(log), dtype=np.intp)
    for a, b in log.episode_bounds():
        first[a : b + 1] = a
    return first


def _episode_last_rows(log: TrajectoryLog) -> np.ndarray:
    last = np.zeros(len(log), dtype=np.intp)
    for a, b in log.episode_bounds():
        last[a : b + 1] = b
    return last


def simulate_direct(
    dyn_cfg: DirectDynamicsCfg,
    log: TrajectoryLog,
    start_index: int,
    n_steps: int,
    burn_in_s: float = BURN_IN_S,
) -> tuple[np.ndarray, np.ndarray]:
    """Fly the direct model (noise off) from the logged state at row ``start_index`` on the logged commands.

    Args:
        dyn_cfg: the model (its noise is ignored).
        log: a recorded log (or a slice of one, see :meth:`TrajectoryLog`).
        start_index: first row; its state is the initial state and its command the first one flown.
        n_steps: steps to fly; rows ``start_index + 1 .. start_index + n_steps`` must be in the same episode.
        burn_in_s: teacher-forced burn-in before the start (module docstring).

    Returns:
        pos_w: (n_steps, 3) float64 predicted positions, metres ENU, aligned with log rows
            ``start_index + 1 ..``.
        yaw_rad: (n_steps,) float64 predicted yaw angles.

    Raises:
        TuningDataError: the rows leave the episode or the log.
    """
    if not 0 <= start_index < len(log) or n_steps < 1:
        raise TuningDataError(
            f"start_index {start_index} / n_steps {n_steps} outside the log of {len(log)} rows"
        )
    r = rollout_windows(dyn_cfg, log, np.array([start_index]), int(n_steps), burn_in_s)
    return r.pos_w[0], r.yaw_rad[0]


def open_loop_errors(
    dyn_cfg: DirectDynamicsCfg,
    log: TrajectoryLog,
    horizons_s: Sequence[float] = HORIZONS_S,
    window_s: float = WINDOW_S,
    stride_s: float = STRIDE_S,
    burn_in_s: float = BURN_IN_S,
) -> dict[float, np.ndarray]:
    """Open-loop position errors of the direct model on every window of ``log``.

    Args:
        dyn_cfg: the model (noise off while flying).
        log: a recorded log (not used for fitting, for a held-out figure).
        horizons_s: seconds after the window start at which errors are taken (each <= ``window_s``).
        window_s, stride_s: window length and spacing of window starts, seconds.
        burn_in_s: teacher-forced burn-in before each window.

    Returns:
        ``{horizon_s: (W,) float64 position error norms in metres}``, one per window.

    Raises:
        TuningDataError: the log holds no whole window (the message says how long an episode must be),
            or a horizon is longer than the window.
    """
    dt = log.step_dt if len(log) else float(log.meta.get("step_dt", 0.04))
    n = _steps(window_s, dt)
    bad = [h for h in horizons_s if not 0 < h <= window_s + 1e-9]
    if bad:
        raise TuningDataError(f"horizons {bad} s must be in (0, window_s = {window_s}] s")
    starts = window_starts(log, window_s, stride_s)
    if starts.size == 0:
        longest = max((b - a) * dt for a, b in log.episode_bounds()) if len(log) else 0.0
        raise TuningDataError(
            f"need at least one episode of {(n + 1) * dt:.2f} s for a {window_s:g} s window; "
            f"the longest episode holds {longest:.2f} s"
        )
    r = rollout_windows(dyn_cfg, log, starts, n, burn_in_s)
    err = r.pos_error_m
    return {float(h): err[:, _steps(h, dt) - 1].copy() for h in horizons_s}


# ---------------------------------------------------------------------------- checks


def check_log(log: TrajectoryLog, env_cfg, *, name: str = "log") -> None:
    """Refuse a log recorded under another config.

    Compares the log's ``step_dt``, action scale and config fingerprint
    (:func:`flyby.training.record.config_fingerprint`) with ``env_cfg`` (a
    :class:`~flyby.config.envs.PX4EnvCfg`; its ``actions`` are the action scale).

    Raises:
        TuningDataError: naming the differing value in the log and in the config.
    """
    meta = log.meta
    for key in ("step_dt", "action_scale", "fingerprint", "flight_stack"):
        if key not in meta:
            raise TuningDataError(f"{name}: metadata has no {key!r}; record it again with `flyby record`")
    fix = "record the log again with `flyby record` under the current config"
    if not math.isclose(float(meta["step_dt"]), float(env_cfg.step_dt), rel_tol=1e-9):
        raise TuningDataError(
            f"{name}: step_dt {meta['step_dt']} s in the log, {env_cfg.step_dt} s in the current config; {fix}"
        )
    for key, value in env_cfg.actions.as_dict().items():
        logged = meta["action_scale"].get(key)
        if logged is None or not math.isclose(float(logged), value, rel_tol=1e-9):
            raise TuningDataError(
                f"{name}: action scale {key} = {logged} in the log, {value} in the evaluation config "
                f"(px4_env.actions); the action scale is shared by every env and is not tuned; {fix}"
            )
    fingerprint = config_fingerprint(env_cfg)
    if meta["fingerprint"] != fingerprint:
        raise TuningDataError(
            f"{name}: config fingerprint {meta['fingerprint']} in the log, {fingerprint} for the current config "
            f"(physics_dt, decimation, multirotor, cascade or action scale differ); {fix}"
        )


def check_training_data(
    logs: Sequence[TrajectoryLog], window_s: float = WINDOW_S, names: Sequence[str] | None = None
) -> float:
    """Seconds of usable flight in ``logs``; refuse too little.

    Raises:
        TuningDataError: less than :data:`MIN_TRAINING_S` in whole windows (says how much is needed),
            or logs from different flight stacks or control rates.
    """
    names = list(names) if names is not None else [f"log {i}" for i in range(len(logs))]
    total = 0.0
    raw = 0.0
    for log in logs:
        if len(log):
            raw += log.duration_s
            total += usable_duration_s(log, window_s)
    if total < MIN_TRAINING_S:
        raise TuningDataError(
            f"need at least {MIN_TRAINING_S:g} s of flight in windows of {window_s:g} s; got {total:.1f} s "
            f"({raw:.1f} s logged in {len(logs)} log(s)); record more with `flyby record --duration 120`"
        )
    stacks = {n: log.meta.get("flight_stack") for n, log in zip(names, logs)}
    if len(set(stacks.values())) > 1:
        raise TuningDataError(
            f"logs come from different flight stacks: {stacks}; fit one flight stack at a time"
        )
    rates = {n: log.meta.get("step_dt") for n, log in zip(names, logs)}
    if len(set(rates.values())) > 1:
        raise TuningDataError(f"logs have different step_dt: {rates}")
    return total


# ---------------------------------------------------------------------------- fitting


@dataclass
class FitResult:
    """What :func:`fit_dynamics` found.

    Attributes:
        cfg: the tuned model (noise as in ``base_cfg``).
        seed_cfg: ``base_cfg`` itself (the untuned model).
        seed_fit_cfg: the seed model with only its free parameter fitted (stage 1).
        table_rows: ``(field, unit, before, after)`` for every fitted field; before = ``base_cfg``.
        residuals: per-stage training residual summaries (see :func:`residual_summary`).
        ablation: ``{extension: training summary}`` of refits with that extension left out.
        extensions: the extensions fitted.
        training_s: seconds of flight in training windows.
        n_windows: training windows.
        fit_s: wall time of the fits, seconds.
    """

    cfg: DirectDynamicsCfg
    seed_cfg: DirectDynamicsCfg
    seed_fit_cfg: DirectDynamicsCfg
    table_rows: list[tuple[str, str, Any, Any]]
    residuals: dict[str, dict[str, float]]
    ablation: dict[str, dict[str, float]] = field(default_factory=dict)
    extensions: tuple[str, ...] = ()
    actions: ActionCfg = field(default_factory=ActionCfg)  # the logs' action scale (the gains' readable form)
    training_s: float = 0.0
    n_windows: int = 0
    fit_s: float = 0.0


def residual_summary(
    dyn_cfg: DirectDynamicsCfg,
    logs: Sequence[TrajectoryLog],
    window_s: float = WINDOW_S,
    stride_s: float = STRIDE_S,
    burn_in_s: float = BURN_IN_S,
) -> dict[str, float]:
    """Training residuals of ``dyn_cfg``: mean errors at 1 s and at the window end, and where they come from.

    Keys: ``pos_1s_m``, ``pos_end_m`` (mean position error norms), ``x_end_m``, ``y_end_m``,
    ``z_end_m`` (mean absolute per axis), ``z_bias_end_m`` (mean signed z error),
    ``vel_rms_mps`` (over every step), ``yaw_end_rad`` (mean absolute), ``cost``.
    """
    parts = []
    for log in logs:
        starts = window_starts(log, window_s, stride_s)
        if starts.size:
            parts.append(rollout_windows(dyn_cfg, log, starts, _steps(window_s, log.step_dt), burn_in_s))
    dt = logs[0].step_dt
    i1 = min(_steps(1.0, dt), parts[0].pos_w.shape[1]) - 1
    d = np.concatenate([r.pos_w - r.true_pos_w for r in parts])
    dv = np.concatenate([r.lin_vel_w - r.true_lin_vel_w for r in parts])
    dy = np.concatenate([r.yaw_error_rad for r in parts])
    norm = np.linalg.norm(d, axis=-1)
    return {
        "pos_1s_m": float(norm[:, i1].mean()),
        "pos_end_m": float(norm[:, -1].mean()),
        "x_end_m": float(np.abs(d[:, -1, 0]).mean()),
        "y_end_m": float(np.abs(d[:, -1, 1]).mean()),
        "z_end_m": float(np.abs(d[:, -1, 2]).mean()),
        "z_bias_end_m": float(d[:, -1, 2].mean()),
        "vel_rms_mps": float(np.sqrt((dv**2).sum(-1).mean())),
        "yaw_end_rad": float(np.abs(dy[:, -1]).mean()),
        "cost": float(
            0.5 * ((POS_WEIGHT * d) ** 2).sum()
            + 0.5 * ((VEL_WEIGHT * dv) ** 2).sum()
            + 0.5 * ((YAW_WEIGHT * dy) ** 2).sum()
        ),
    }


def _least_squares():
    try:
        from scipy.optimize import least_squares
    except ImportError as exc:  # pragma: no cover - scipy is in the train extra
        raise DependencyNotInstalled("scipy", "train") from exc
    return least_squares


def _fit(
    base: DirectDynamicsCfg,
    names: Sequence[str],
    batches: list[tuple[TrajectoryLog, np.ndarray]],
    n_steps: int,
    burn_in_s: float,
    max_nfev: int | None = None,
) -> DirectDynamicsCfg:
    """Least-squares fit of fields ``names`` of ``base`` on windows ``batches``."""
    if not names:
        return base
    least_squares = _least_squares()
    actions = batches[0][0].actions  # one scale for every log (fit_dynamics checks it)
    x0 = np.array([_start_value(base, n, actions) for n in names])
    lo = np.array([_PARAMS[n].lo for n in names])
    hi = np.array([_PARAMS[n].hi for n in names])

    def residuals(x: np.ndarray) -> np.ndarray:
        cfg = _apply(base, names, x)
        out = []
        for log, starts in batches:
            r = rollout_windows(cfg, log, starts, n_steps, burn_in_s)
            out.append((POS_WEIGHT * (r.pos_w - r.true_pos_w)).ravel())
            out.append((VEL_WEIGHT * (r.lin_vel_w - r.true_lin_vel_w)).ravel())
            out.append((YAW_WEIGHT * r.yaw_error_rad).ravel())
        return np.concatenate(out)

    sol = least_squares(residuals, x0, bounds=(lo, hi), x_scale="jac", max_nfev=max_nfev)
    return _drop_inactive_limits(_apply(base, names, sol.x), batches, actions)


def _drop_inactive_limits(
    cfg: DirectDynamicsCfg, batches: list[tuple[TrajectoryLog, np.ndarray]], actions: ActionCfg
) -> DirectDynamicsCfg:
    """Set limits no command in the data reaches to None (they change nothing there)."""
    cmd = np.concatenate([log.commands for log, _ in batches]).astype(np.float64)
    k_z = cfg.vertical_velocity_gain * actions.max_vertical_velocity
    reach = {
        "max_horizontal_speed": float(np.hypot(cmd[:, 0], cmd[:, 1]).max() * actions.max_velocity),
        "max_climb_rate": float(max(cmd[:, 2].max(), 0.0) * k_z),
        "max_descent_rate": float(max(-cmd[:, 2].min(), 0.0) * k_z),
    }
    drop = {k: None for k, v in reach.items() if getattr(cfg, k) is not None and getattr(cfg, k) >= v}
    return replace(cfg, **drop) if drop else cfg


def fit_dynamics(
    logs: Sequence[TrajectoryLog],
    base_cfg: DirectDynamicsCfg | None = None,
    *,
    extensions: Sequence[str] | None = None,
    ablation: bool = False,
    window_s: float = WINDOW_S,
    stride_s: float = STRIDE_S,
    burn_in_s: float = BURN_IN_S,
    env_cfg=None,
    names: Sequence[str] | None = None,
    max_nfev: int | None = None,
) -> FitResult:
    """Fit the direct model to recorded full-fidelity logs.

    Args:
        logs: training logs (:class:`~flyby.training.record.TrajectoryLog`).
        base_cfg: the untuned model (default: the seed plan's ``DirectDynamicsCfg()``); the fit
            starts from it and keeps its action scale and noise.
        extensions: names from :data:`EXTENSIONS` to fit on top of the seed model's free
            parameter (default: all of them).
        ablation: also refit with each extension left out (slower; for the report).
        window_s, stride_s, burn_in_s: rollout windows (module docstring).
        env_cfg: when given (a ``PX4EnvCfg``), every log is checked against it (:func:`check_log`).
        names: log names for messages.
        max_nfev: bound on model evaluations per least-squares fit (None: scipy's default).

    Returns:
        A :class:`FitResult`.

    Raises:
        TuningDataError: too little data (the message says how much is needed), or a log
            recorded under a different config, action scale or flight stack.
        ValueError: an unknown extension name.
    """
    t0 = time.perf_counter()
    base = base_cfg if base_cfg is not None else DirectDynamicsCfg()
    names = list(names) if names is not None else [f"log {i}" for i in range(len(logs))]
    extensions = tuple(EXTENSIONS) if extensions is None else tuple(extensions)
    unknown = [e for e in extensions if e not in EXTENSIONS]
    if unknown:
        raise ValueError(f"unknown extensions {unknown}; known: {list(EXTENSIONS)}")
    for log, name in zip(logs, names):
        if env_cfg is not None:
            check_log(log, env_cfg, name=name)
        else:
            _check_scale(log, logs[0].actions, name)
    training_s = check_training_data(logs, window_s, names)
    batches = [(log, window_starts(log, window_s, stride_s)) for log in logs]
    batches = [(log, s) for log, s in batches if s.size]
    n_steps = _steps(window_s, logs[0].step_dt)

    def fit(exts: Sequence[str]) -> DirectDynamicsCfg:
        free = list(SEED_FREE) + [f for e in exts for f in EXTENSIONS[e]]
        return _fit(base, free, batches, n_steps, burn_in_s, max_nfev)

    def summary(cfg: DirectDynamicsCfg) -> dict[str, float]:
        return residual_summary(cfg, [log for log, _ in batches], window_s, stride_s, burn_in_s)

    seed_fit = fit(())
    tuned = fit(extensions)
    residuals = {"seed": summary(base), "seed_fitted": summary(seed_fit), "tuned": summary(tuned)}
    ablations = {}
    if ablation:
        for ext in extensions:
            ablations[ext] = summary(fit([e for e in extensions if e != ext]))
    free = list(SEED_FREE) + [f for e in extensions for f in EXTENSIONS[e]]
    units = {n: "1" if _PARAMS[n].kind == "damping" else _PARAMS[n].unit for n in free}  # of the config field
    rows = [(n, units[n], getattr(base, n), getattr(tuned, n)) for n in free]
    return FitResult(
        cfg=tuned,
        seed_cfg=base,
        seed_fit_cfg=seed_fit,
        table_rows=rows,
        residuals=residuals,
        ablation=ablations,
        extensions=extensions,
        training_s=training_s,
        n_windows=int(sum(s.size for _, s in batches)),
        fit_s=time.perf_counter() - t0,
        actions=logs[0].actions,
    )


def _check_scale(log: TrajectoryLog, actions: ActionCfg, name: str) -> None:
    """Refuse a log flown with another action scale than the first log's (one fit, one scale)."""
    for key, value in actions.as_dict().items():
        logged = log.actions.as_dict()[key]
        if not math.isclose(logged, value, rel_tol=1e-9):
            raise TuningDataError(
                f"{name}: action scale {key} = {logged} in this log, {value} in the first log; "
                "fit logs flown with one action scale (the env config's actions)"
            )


# ---------------------------------------------------------------------------- reporting


def error_stats(errors: dict[float, np.ndarray]) -> dict[float, tuple[float, float]]:
    """``{horizon: (mean, p95)}`` of :func:`open_loop_errors` output, metres."""
    return {h: (float(e.mean()), float(np.percentile(e, 95))) for h, e in errors.items()}


def _fmt(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _derived(name: str, value: Any, cfg: DirectDynamicsCfg, actions: ActionCfg | None = None) -> str:
    """A readable form of a value: time constants for retentions."""
    if value is None:
        return ""
    if name.endswith("damping") and name != "damping_reference_dt":
        return f"tau {time_constant_s(value, cfg.damping_reference_dt):.3f} s"
    act = actions if actions is not None else ActionCfg()
    if name == "velocity_gain":
        return f"max {value * act.max_velocity:.2f} m/s per axis"
    if name == "vertical_velocity_gain":
        return f"max {value * act.max_vertical_velocity:.2f} m/s"
    if name == "yaw_rate_gain":
        return f"max {value * act.max_yaw_rate:.1f} deg/s"
    return ""


def format_table(result: FitResult) -> str:
    """The before/after parameter table, plain text."""
    lines = [f"{'parameter':<28} {'unit':<6} {'seed (before)':>14} {'tuned (after)':>14}   tuned, readable"]
    for name, unit, before, after in result.table_rows:
        lines.append(
            f"{name:<28} {unit:<6} {_fmt(before):>14} {_fmt(after):>14}   {_derived(name, after, result.cfg, result.actions)}"
        )
    return "\n".join(lines)


def format_errors(
    seed: dict[float, tuple[float, float]], tuned: dict[float, tuple[float, float]], n: int
) -> str:
    """Held-out open-loop position errors, untuned vs tuned."""
    lines = [f"held-out open-loop position error over {n} windows (mean / p95, metres):"]
    lines.append(f"  {'horizon':>8} {'untuned (seed)':>18} {'tuned':>16} {'ratio of means':>16}")
    for h in seed:
        (sm, sp), (tm, tp) = seed[h], tuned[h]
        lines.append(
            f"  {h:>7g}s {sm:>8.3f} / {sp:<7.3f} {tm:>7.3f} / {tp:<7.3f} {sm / max(tm, 1e-12):>12.2f}x"
        )
    return "\n".join(lines)


def _field_comments() -> dict[str, str]:
    """The one-line comment of every DirectDynamicsCfg field, read from its source."""
    source = inspect.getsource(DirectDynamicsCfg)
    comments: dict[str, str] = {}
    tree = ast.parse(source)
    lines = source.splitlines()
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            line = lines[node.lineno - 1]
            above = lines[node.lineno - 2].strip() if node.lineno >= 2 else ""
            if "#" in line:
                comments[node.target.id] = line.split("#", 1)[1].strip()
            elif above.startswith("#"):  # a long comment sits on the line above its field
                comments[node.target.id] = above[1:].strip()
    return comments


def dynamics_yaml(
    cfg: DirectDynamicsCfg, header: Sequence[str] = (), actions: ActionCfg | None = None
) -> str:
    """``dynamics_config.yaml`` text for ``cfg``: every field with its unit comment.

    Fitted retentions also carry their time constant; ``header`` lines are written as comments first.
    """
    comments = _field_comments()
    out = [f"# {h}" if h else "#" for h in header]
    entries = []
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        text = "null" if value is None else (f"{value:.6g}" if isinstance(value, float) else str(value))
        if isinstance(value, float) and "." not in text and "e" not in text:
            text += ".0"
        comment = comments.get(f.name, "")
        extra = _derived(f.name, value, cfg, actions)
        if extra:
            comment = f"{comment} [{extra}]"
        entries.append((f"{f.name}: {text}", comment))
    width = max(len(e) for e, _ in entries) + 2
    out += [f"{e:<{width}}# {c}" if c else e for e, c in entries]
    return "\n".join(out) + "\n"


def plot_matched(
    path: str | Path,
    log: TrajectoryLog,
    seed_cfg: DirectDynamicsCfg,
    tuned_cfg: DirectDynamicsCfg,
    seed_errors: dict[float, np.ndarray] | None = None,
    tuned_errors: dict[float, np.ndarray] | None = None,
    window_s: float = WINDOW_S,
    stride_s: float = STRIDE_S,
    burn_in_s: float = BURN_IN_S,
) -> Path:
    """PNG of matched trajectories on a held-out window: full fidelity vs tuned vs untuned.

    Panels: x, y, z and yaw against time, the top-down path, and the mean position
    error against the horizon over every held-out window. The window shown is the
    one whose tuned 5 s error is the median (a typical window, not the best).

    Raises:
        DependencyNotInstalled: matplotlib is missing (``pip install "flyby[train]"``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib is in the train extra
        raise DependencyNotInstalled("matplotlib", "train") from exc
    dt = log.step_dt
    n = _steps(window_s, dt)
    starts = window_starts(log, window_s, stride_s)
    rs = rollout_windows(seed_cfg, log, starts, n, burn_in_s)
    rt = rollout_windows(tuned_cfg, log, starts, n, burn_in_s)
    final = rt.pos_error_m[:, -1]
    w = int(np.argsort(final)[len(final) // 2])
    s = int(starts[w])
    t = log.time_s[s] + dt * np.arange(0, n + 1)
    truth_p = log.pos_w[s : s + n + 1]
    truth_y = np.unwrap(log.yaw_rad[s : s + n + 1])

    def with_start(p, y):
        return np.vstack([log.pos_w[s], p]), np.unwrap(np.concatenate([[log.yaw_rad[s]], y]))

    seed_p, seed_y = with_start(rs.pos_w[w], rs.yaw_rad[w])
    tuned_p, tuned_y = with_start(rt.pos_w[w], rt.yaw_rad[w])
    stack = log.meta.get("flight_stack_label", log.meta.get("flight_stack", "full fidelity"))
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    styles = (
        ("full fidelity", "k", "-"),
        ("tuned direct", "tab:blue", "-"),
        ("untuned (seed) direct", "tab:red", "--"),
    )
    series = ((truth_p, truth_y), (tuned_p, tuned_y), (seed_p, seed_y))
    panels = (("x", 0, "m"), ("y", 1, "m"), ("z", 2, "m"), ("yaw", 3, "rad"))
    for ax, (label, idx, unit) in zip(axes.flat[:4], panels):
        for (name, color, ls), (p, y) in zip(styles, series):
            ax.plot(t, y if idx == 3 else p[:, idx], color=color, ls=ls, label=name)
        ax.set_xlabel("time in the held-out log (s)")
        ax.set_ylabel(f"{label} ({unit})")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    ax = axes[1, 1]
    for (name, color, ls), (p, _) in zip(styles, series):
        ax.plot(p[:, 0], p[:, 1], color=color, ls=ls, label=name)
    ax.plot(*log.pos_w[s, :2], "ko")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x east (m)")
    ax.set_ylabel("y north (m)")
    ax.set_title("top-down path (dot: window start)")
    ax.grid(alpha=0.3)
    ax = axes[1, 2]
    horizon = dt * np.arange(1, n + 1)
    for name, r, color, ls in (("tuned", rt, "tab:blue", "-"), ("untuned (seed)", rs, "tab:red", "--")):
        e = r.pos_error_m
        ax.plot(horizon, e.mean(axis=0), color=color, ls=ls, label=f"{name}: mean")
        ax.plot(horizon, np.percentile(e, 95, axis=0), color=color, ls=":", label=f"{name}: p95")
    ax.set_xlabel("open-loop horizon (s)")
    ax.set_ylabel("position error (m)")
    ax.set_title(f"held-out error over {len(starts)} windows")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.suptitle(
        f"direct model vs {stack}: held-out window at {log.time_s[s]:.1f} s "
        f"(median tuned error: {final[w]:.2f} m at {window_s:g} s; untuned {rs.pos_error_m[w, -1]:.2f} m)"
    )
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())  # a failed write never leaves a truncated plot


def run_tuning(
    log_paths: Sequence[str | Path],
    held_out: str | Path,
    out: str | Path = "output/tuned/dynamics_config.yaml",
    plot: str | Path | None = "output/tuned/tuning.png",
    dynamics_path: str | Path = "dynamics_config.yaml",
    ablation: bool = False,
    echo=print,
) -> FitResult:
    """``flyby tune``: fit, report, write the tuned YAML and the plot.

    The current config is the packaged ``evaluation_config.yaml`` with the
    dynamics file ``dynamics_path``: logs must match its fingerprint, control
    rate and action scale. The untuned model is the seed plan's
    ``DirectDynamicsCfg()``; the written YAML keeps the action scale and the
    noise of ``dynamics_path``.

    Raises:
        TuningDataError: unusable logs (see :func:`fit_dynamics`, :func:`open_loop_errors`).
    """
    from flyby.config.evaluation import load_evaluation_cfg

    env_cfg = load_evaluation_cfg(dynamics_path=dynamics_path).px4_env
    current = env_cfg.dynamics
    logs = [load_log(p) for p in log_paths]
    held = load_log(held_out)
    names = [str(p) for p in log_paths]
    check_log(held, env_cfg, name=str(held_out))
    if held.meta.get("flight_stack") != logs[0].meta.get("flight_stack"):
        raise TuningDataError(
            f"{held_out}: flight stack {held.meta.get('flight_stack')!r}, the training logs "
            f"{logs[0].meta.get('flight_stack')!r}; hold out a log of the same flight stack"
        )
    seed = replace(DirectDynamicsCfg(), **{k: getattr(current, k) for k in _NOISE})
    echo(f"flight stack : {logs[0].meta.get('flight_stack_label', logs[0].meta.get('flight_stack'))}")
    result = fit_dynamics(logs, seed, ablation=ablation, env_cfg=env_cfg, names=names)
    echo(
        f"training     : {result.training_s:.1f} s of flight, {result.n_windows} windows of {WINDOW_S:g} s "
        f"(stride {STRIDE_S:g} s, burn-in {BURN_IN_S:g} s); fits took {result.fit_s:.1f} s"
    )
    seed_err = open_loop_errors(seed, held)
    tuned_err = open_loop_errors(result.cfg, held)
    fitted_seed_err = open_loop_errors(result.seed_fit_cfg, held)
    echo("")
    echo(format_table(result))
    echo("")
    n = len(next(iter(seed_err.values())))
    echo(format_errors(error_stats(seed_err), error_stats(tuned_err), n))
    fs = error_stats(fitted_seed_err)
    fitted_seed = ", ".join(f"{h:g}s {m:.3f} / {p:.3f}" for h, (m, p) in fs.items())
    echo(f"  seed model with velocity_damping fitted only: {fitted_seed}")
    echo("")
    echo(format_residuals(result))
    tuned = replace(result.cfg, **{k: getattr(current, k) for k in _NOISE})
    header = [
        "Direct dynamics (flyby.config.dynamics.DirectDynamicsCfg).",
        f"Tuned by `flyby tune` on {result.training_s:.0f} s of {logs[0].meta.get('flight_stack', '?')} flight "
        f"(config fingerprint {logs[0].meta.get('fingerprint')}).",
        "The action scale is not here: it is the env configs' `actions:` (flyby.mdp.actions.ActionCfg).",
        "Noise std values: domain randomization, kept as they were (not fitted).",
        "Held-out open-loop position error, mean m: "
        + ", ".join(
            f"{h:g} s {error_stats(seed_err)[h][0]:.2f} untuned -> {error_stats(tuned_err)[h][0]:.2f} tuned"
            for h in seed_err
        ),
    ]
    # never a truncated dynamics file
    out = atomic_write_text(out, dynamics_yaml(tuned, header, env_cfg.actions))
    echo(f"\nwrote {out}")
    if plot:
        echo(f"wrote {plot_matched(plot, held, seed, result.cfg, seed_err, tuned_err)}")
    return result


def format_residuals(result: FitResult) -> str:
    """Training residuals per stage and the ablation (what each extension buys)."""
    keys = (
        "pos_1s_m",
        "pos_end_m",
        "x_end_m",
        "y_end_m",
        "z_end_m",
        "z_bias_end_m",
        "vel_rms_mps",
        "yaw_end_rad",
    )
    head = f"  {'model':<34}" + "".join(f"{k:>13}" for k in keys)
    lines = ["training residuals (mean over windows; *_end at the window end):", head]
    labels = {
        "seed": "untuned (seed)",
        "seed_fitted": "seed, velocity_damping fitted",
        "tuned": "tuned (all extensions)",
    }
    for k, v in result.residuals.items():
        lines.append(f"  {labels.get(k, k):<34}" + "".join(f"{v[m]:>13.3f}" for m in keys))
    for ext, v in result.ablation.items():
        lines.append(f"  {'tuned without ' + ext:<34}" + "".join(f"{v[m]:>13.3f}" for m in keys))
    return "\n".join(lines)


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


__all__ = [
    "EXTENSIONS",
    "TrajectoryLog",
    "excitation_sequences",
    "load_log",
    "record_trajectories",
    "save_log",
    "FitResult",
    "Rollout",
    "check_log",
    "check_training_data",
    "dynamics_yaml",
    "fit_dynamics",
    "open_loop_errors",
    "plot_matched",
    "rollout_windows",
    "run_tuning",
    "simulate_direct",
    "window_starts",
]
