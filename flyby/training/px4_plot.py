"""Plot PX4's own view of a recorded flight beside flyby's ground truth.

One PNG per ``flyby record`` log flown with PX4 (``flyby px4-log LOG.npz --plot OUT.png``,
or ``flyby record --flight-stack px4 --plot OUT.png``), five panels over the log's time
axis (``time_s``: the excitation's time, so episodes sit where their commands are; thin
grey lines mark episode starts, each a fresh PX4):

1. estimator position error ``px4_est_pos_w - pos_w`` (east, north, up and its norm), m;
2-4. east, north and up velocity, m/s: PX4's setpoint (``trajectory_setpoint``, what
   flyby's offboard link asked for, as PX4 logged it), the position controller's
   setpoint after PX4's limits (``vehicle_local_position_setpoint``), EKF2's estimate and
   the ground truth;
5. PX4's four motor commands (``actuator_motors``) in [0, 1].

The estimate and truth come from the ``.npz`` (one sample per control step); setpoints
and motors are read from the run's ULogs at PX4's own logging rate and put on the log's
time axis per episode through ``px4_time_s`` (``t_log = time_s[first] + t_px4 - px4_time_s[first]``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from flyby.errors import DependencyNotInstalled, ULogError
from flyby.training.record import TrajectoryLog, px4_estimate_summary

AXES = ("east", "north", "up")


def find_ulog(path: str | Path, log_path: str | Path | None = None) -> Path:
    """A ULog named in a log's metadata: as written, else beside the ``.npz`` (logs moved together).

    Raises:
        ULogError: neither exists (the message names both places).
    """
    p = Path(path)
    if p.is_file():
        return p
    if log_path is not None:
        beside = Path(log_path).parent / p.name
        if beside.is_file():
            return beside
    where = f" nor beside {log_path}" if log_path is not None else ""
    raise ULogError(
        f"ULog {p} named in the log's metadata is not there{where}; keep the .ulg files with the .npz", path=p
    )


def plot_px4_log(log: TrajectoryLog, out: str | Path, *, log_path: str | Path | None = None) -> Path:
    """Write the estimator-error / velocity / motor plot of a PX4 log as a PNG, atomically.

    Args:
        log: a log with PX4's estimate (:func:`flyby.training.record.attach_px4_estimate`).
        out: PNG path (parent folders are created; written under a temporary name, then renamed).
        log_path: where ``log`` was loaded from, to find its ULogs if they moved with it.

    Returns:
        The PNG path.

    Raises:
        TuningDataError: the log has no PX4 estimate.
        ULogError: a ULog named in the log is missing or unreadable.
        DependencyNotInstalled: matplotlib is missing (``pip install "flyby[train]"``).
    """
    from flyby.px4.ulog import read_ulog

    summary = px4_estimate_summary(log)  # raises TuningDataError without an estimate
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib is in the train extra
        raise DependencyNotInstalled("matplotlib", "train") from exc

    runs = log.meta["px4"]["runs"]
    bounds = log.episode_bounds()
    sp_t, sp_v, lps_t, lps_v, mot_t, mot_u = [], [], [], [], [], []
    for (a, b), run in zip(bounds, runs):
        t0_px4, t1_px4, t0_log = log.px4_time_s[a], log.px4_time_s[b], log.time_s[a]
        for name in run.get("ulogs", []):
            flight = read_ulog(find_ulog(name, log_path))
            lps = flight.local_position_setpoint
            for series, (ts, values) in (
                ((sp_t, sp_v), flight.trajectory_setpoint[:2]),
                ((lps_t, lps_v), lps[:2] if lps is not None else (np.zeros(0), np.zeros((0, 3)))),
                ((mot_t, mot_u), flight.motors),
            ):
                ts = np.asarray(ts, dtype=np.float64)
                keep = (ts >= t0_px4) & (ts <= t1_px4)
                if keep.any():
                    # A NaN after each run breaks the line between episodes.
                    series[0].extend([t0_log + ts[keep] - t0_px4, [np.nan]])
                    series[1].extend([np.asarray(values)[keep], np.full((1, np.shape(values)[1]), np.nan)])

    def joined(parts: list, width: int) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros((0, width) if width else 0)

    sp_t, sp_v, lps_t, lps_v = joined(sp_t, 0), joined(sp_v, 3), joined(lps_t, 0), joined(lps_v, 3)
    mot_t, mot_u = joined(mot_t, 0), joined(mot_u, 4)
    t = _broken(log, log.time_s)
    err = _broken(log, log.px4_est_pos_w - log.pos_w)
    est_v = _broken(log, log.px4_est_vel_w)
    true_v = _broken(log, log.lin_vel_w)

    fig, axes = plt.subplots(5, 1, figsize=(14, 13), sharex=True, height_ratios=(1.2, 1, 1, 1, 1))
    legend = {"loc": "upper left", "bbox_to_anchor": (1.005, 1.0), "fontsize": 8, "borderaxespad": 0.0}
    ax = axes[0]
    for i, (name, colour) in enumerate(zip(AXES, ("tab:red", "tab:green", "tab:blue"))):
        ax.plot(t, err[:, i], color=colour, lw=0.9, label=f"{name}")
    ax.plot(t, np.linalg.norm(err, axis=1), color="k", lw=1.2, label="|error|")
    ax.axhline(0.0, color="0.6", lw=0.6)
    ax.set_ylabel("position error, m")
    ax.set_title(
        f"EKF2 estimate - ground truth: median {summary['pos_err_median_m']} m, "
        f"p95 {summary['pos_err_p95_m']} m; "
        f"velocity median {summary['vel_err_median_mps']} m/s, p95 {summary['vel_err_p95_mps']} m/s",
        fontsize=10,
    )
    ax.legend(**legend)
    for i, name in enumerate(AXES):
        ax = axes[1 + i]
        if len(sp_t):
            ax.step(
                sp_t,
                sp_v[:, i],
                where="post",
                color="tab:orange",
                lw=1.4,
                label="setpoint\n(trajectory_setpoint)",
            )
        if len(lps_t):
            ax.plot(
                lps_t,
                lps_v[:, i],
                color="tab:purple",
                lw=1.0,
                ls="--",
                label="after PX4's limits\n(vehicle_local_position_setpoint)",
            )
        ax.plot(t, true_v[:, i], color="0.55", lw=3.2, alpha=0.8, label="ground truth")
        ax.plot(t, est_v[:, i], color="tab:blue", lw=1.0, label="EKF2 estimate")
        ax.set_ylabel(f"v {name}, m/s")
        ax.legend(**legend)
    ax = axes[4]
    for m in range(mot_u.shape[1]):
        ax.plot(mot_t, mot_u[:, m], lw=0.9, label=f"motor {m + 1}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("motor command [0, 1]")
    ax.set_xlabel("log time, s (excitation time; each episode is a fresh PX4 run)")
    ax.legend(**legend)
    for a, _ in bounds[1:]:
        for ax in axes:
            ax.axvline(log.time_s[a], color="0.7", lw=0.8, zorder=0)
    for ax in axes:
        ax.grid(True, alpha=0.3)
    name = Path(log_path).name if log_path is not None else "log"
    fig.suptitle(
        f"PX4's view of {name}: {log.meta.get('flight_stack_label', log.meta.get('flight_stack', ''))}, "
        f"{len(bounds)} episode(s), {summary['rows']} rows",
        fontsize=11,
    )
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return out


def _broken(log: TrajectoryLog, values: np.ndarray) -> np.ndarray:
    """``values`` (T, ...) with a NaN row after each episode, so lines do not join across episodes."""
    v = np.asarray(values, dtype=np.float64)
    parts = []
    for a, b in log.episode_bounds():
        parts.extend([v[a : b + 1], np.full((1,) + v.shape[1:], np.nan)])
    return np.concatenate(parts) if parts else v
