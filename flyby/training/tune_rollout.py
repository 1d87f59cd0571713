"""Open-loop rollouts of the direct model against a recorded log, and their error metrics.

A *window* is ``window_s`` seconds (5 s) of one episode of a recorded log
(:mod:`flyby.training.record`); windows start every ``stride_s`` (1 s). The
direct model (:mod:`flyby.dynamics.direct`, noise off: noise is domain
randomization, not part of the fit) starts from the logged state at a window's
first row and is flown on the logged commands alone; all windows run as one
batch (:func:`rollout_windows`).

Hidden model states (the lagged thrust acceleration, the anti-windup integrator, the
yaw rate) cannot be read from a log. Each rollout therefore starts ``burn_in_s``
before its window with a *teacher-forced* burn-in: the model steps on the logged commands while its
position, velocity and yaw are reset to the logged values after every step, so
its hidden states settle as they would have in flight; from the window's first
row on it runs free. Before an episode's first row the vehicle hovered at rest
(see :func:`flyby.training.record.record_trajectories`), and the burn-in sees
exactly that. For the seed model, which has no hidden state, burn-in changes
nothing.

Metrics: :func:`open_loop_errors` (held-out position errors at fixed horizons),
:func:`error_stats` (their mean and p95), :func:`residual_summary` (training
residuals per axis), and :func:`weighted_errors`, the residuals the fit
minimises: 1 m of position weighs like 1 m/s of velocity and 0.2 rad of yaw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from flyby.config.dynamics import DirectDynamicsCfg
from flyby.dynamics.direct import DirectDynamics
from flyby.errors import TuningDataError
from flyby.geometry import wrap_pi
from flyby.training.record import TrajectoryLog

__all__ = [
    "BURN_IN_S",
    "HORIZONS_S",
    "STRIDE_S",
    "WINDOW_S",
    "Rollout",
    "error_stats",
    "open_loop_errors",
    "residual_summary",
    "rollout_windows",
    "simulate_direct",
    "steps_in",
    "usable_duration_s",
    "weighted_errors",
    "window_starts",
]

WINDOW_S = 5.0  # s, length of one open-loop rollout
STRIDE_S = 1.0  # s, spacing of window starts
BURN_IN_S = 3.0  # s, teacher-forced burn-in before each window (about the integrator's time constant)
HORIZONS_S = (1.0, 5.0)  # s, open-loop horizons reported
# Residual weights: 1 m of position = 1 m/s of velocity = 0.2 rad of yaw.
POS_WEIGHT = 1.0  # 1/m
VEL_WEIGHT = 1.0  # s/m
YAW_WEIGHT = 5.0  # 1/rad


def _noiseless(cfg: DirectDynamicsCfg) -> DirectDynamicsCfg:
    return replace(cfg, position_noise_std=0.0, velocity_noise_std=0.0)


def steps_in(seconds: float, step_dt: float) -> int:
    """Control steps in ``seconds`` at ``step_dt``, rounded, at least 1."""
    return max(1, round(seconds / step_dt))


def window_starts(log: TrajectoryLog, window_s: float = WINDOW_S, stride_s: float = STRIDE_S) -> np.ndarray:
    """Rows where open-loop windows start: every ``stride_s`` inside each episode, whole windows only.

    A window from row ``s`` predicts rows ``s + 1 .. s + n`` (``n = window_s / step_dt``),
    all in the episode of ``s``.
    """
    if len(log) == 0:
        return np.zeros(0, dtype=np.intp)
    n = steps_in(window_s, log.step_dt)
    stride = steps_in(stride_s, log.step_dt)
    starts = [np.arange(a, b - n + 1, stride) for a, b in log.episode_bounds() if b - a >= n]
    return np.concatenate(starts).astype(np.intp) if starts else np.zeros(0, dtype=np.intp)


def usable_duration_s(log: TrajectoryLog, window_s: float = WINDOW_S) -> float:
    """Seconds of flight in episodes long enough to hold at least one window."""
    if len(log) == 0:
        return 0.0
    n = steps_in(window_s, log.step_dt)
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
        return wrap_pi(self.yaw_rad - self.true_yaw_rad)


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
    burn = steps_in(burn_in_s, dt) if burn_in_s > 0 else 0
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
    n = steps_in(window_s, dt)
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
    return {float(h): err[:, steps_in(h, dt) - 1].copy() for h in horizons_s}


def weighted_errors(r: Rollout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The residuals the fit minimises: a rollout's errors times POS_WEIGHT, VEL_WEIGHT, YAW_WEIGHT.

    Returns:
        (W, n, 3) float64 position errors x POS_WEIGHT, (W, n, 3) float64 velocity errors
        x VEL_WEIGHT, (W, n) float64 wrapped yaw errors x YAW_WEIGHT: all dimensionless.
    """
    return (
        POS_WEIGHT * (r.pos_w - r.true_pos_w),
        VEL_WEIGHT * (r.lin_vel_w - r.true_lin_vel_w),
        YAW_WEIGHT * r.yaw_error_rad,
    )


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
            parts.append(rollout_windows(dyn_cfg, log, starts, steps_in(window_s, log.step_dt), burn_in_s))
    dt = logs[0].step_dt
    i1 = min(steps_in(1.0, dt), parts[0].pos_w.shape[1]) - 1
    d = np.concatenate([r.pos_w - r.true_pos_w for r in parts])
    dv = np.concatenate([r.lin_vel_w - r.true_lin_vel_w for r in parts])
    dy = np.concatenate([r.yaw_error_rad for r in parts])
    norm = np.linalg.norm(d, axis=-1)
    weighted = [weighted_errors(r) for r in parts]
    return {
        "pos_1s_m": float(norm[:, i1].mean()),
        "pos_end_m": float(norm[:, -1].mean()),
        "x_end_m": float(np.abs(d[:, -1, 0]).mean()),
        "y_end_m": float(np.abs(d[:, -1, 1]).mean()),
        "z_end_m": float(np.abs(d[:, -1, 2]).mean()),
        "z_bias_end_m": float(d[:, -1, 2].mean()),
        "vel_rms_mps": float(np.sqrt((dv**2).sum(-1).mean())),
        "yaw_end_rad": float(np.abs(dy[:, -1]).mean()),
        "cost": float(sum(0.5 * (np.concatenate([w[i] for w in weighted]) ** 2).sum() for i in range(3))),
    }


def error_stats(errors: dict[float, np.ndarray]) -> dict[float, tuple[float, float]]:
    """``{horizon: (mean, p95)}`` of :func:`open_loop_errors` output, metres."""
    return {h: (float(e.mean()), float(np.percentile(e, 95))) for h, e in errors.items()}
