"""The least-squares fit of the direct model: parameter sets, bounds, starting points, data checks.

The direct model (:mod:`flyby.dynamics.direct`) is fitted with
``scipy.optimize.least_squares`` on *multi-step open-loop rollouts*, not
one-step errors: the residuals are the weighted position, velocity and yaw
differences at every step of every window
(:func:`flyby.training.tune_rollout.weighted_errors`).

Procedure (:func:`fit_dynamics`): fit the seed model's one free parameter
(:data:`SEED_FREE`: ``velocity_damping``; the action scale is shared by every env and fixed),
then the extended model (every extension in :data:`EXTENSIONS`), and on
request (``ablation=True``, ``flyby tune --ablation``) an ablation that refits
with each extension left out, so the report shows what each one buys.

Each fitted field has bounds in natural units (``_PARAMS``): per-step retentions
("damping") are fitted as time constants in seconds (:func:`time_constant_s`,
:func:`damping_from_tau`); a limit the data never reach is set to None after the
fit. Logs are refused when recorded under another config (:func:`check_log`) or
when they hold less than :data:`MIN_TRAINING_S` of flight in whole windows
(:func:`check_training_data`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from flyby.config.dynamics import DirectDynamicsCfg
from flyby.errors import DependencyNotInstalled, TuningDataError
from flyby.mdp.actions import ActionCfg
from flyby.training.record import TrajectoryLog, config_fingerprint
from flyby.training.tune_rollout import (
    BURN_IN_S,
    STRIDE_S,
    WINDOW_S,
    residual_summary,
    rollout_windows,
    steps_in,
    usable_duration_s,
    weighted_errors,
    window_starts,
)

__all__ = [
    "EXTENSIONS",
    "MIN_TRAINING_S",
    "SEED_FREE",
    "FitResult",
    "check_log",
    "check_training_data",
    "damping_from_tau",
    "fit_dynamics",
    "time_constant_s",
]

MIN_TRAINING_S = 60.0  # s, least flight (in windows) the fit accepts
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
            f"{name}: step_dt {meta['step_dt']} s in the log, {env_cfg.step_dt} s in the current config; "
            f"{fix}"
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
            f"{name}: config fingerprint {meta['fingerprint']} in the log, "
            f"{fingerprint} for the current config "
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


@dataclass
class FitResult:
    """What :func:`fit_dynamics` found.

    Attributes:
        cfg: the tuned model (noise as in ``base_cfg``).
        seed_cfg: ``base_cfg`` itself (the untuned model).
        seed_fit_cfg: the seed model with only its free parameter fitted (stage 1).
        table_rows: ``(field, unit, before, after)`` for every fitted field; before = ``base_cfg``.
        residuals: per-stage training residual summaries
            (:func:`~flyby.training.tune_rollout.residual_summary`).
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
            out += [e.ravel() for e in weighted_errors(r)]
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
        window_s, stride_s, burn_in_s: rollout windows (:mod:`flyby.training.tune_rollout`).
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
    n_steps = steps_in(window_s, logs[0].step_dt)

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
