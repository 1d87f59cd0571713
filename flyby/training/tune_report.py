"""The ``flyby tune`` report: parameter and error tables, the tuned YAML text, the matched-trajectory plot.

- :func:`format_table`: every fitted field before (seed) and after (tuned), with a
  readable form (time constants for retentions, top speeds for gains);
- :func:`format_errors`: held-out open-loop position errors, untuned vs tuned;
- :func:`format_residuals`: training residuals per stage and the ablation;
- :func:`dynamics_yaml`: ``dynamics_config.yaml`` text, every field with its unit comment
  read from :class:`~flyby.config.dynamics.DirectDynamicsCfg`'s source;
- :func:`plot_matched`: a PNG of a typical held-out window, full fidelity vs tuned vs
  untuned, written atomically.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from flyby.config.dynamics import DirectDynamicsCfg
from flyby.errors import DependencyNotInstalled
from flyby.mdp.actions import ActionCfg
from flyby.training.record import TrajectoryLog
from flyby.training.tune_fit import FitResult, time_constant_s
from flyby.training.tune_rollout import (
    BURN_IN_S,
    STRIDE_S,
    WINDOW_S,
    rollout_windows,
    steps_in,
    window_starts,
)
from flyby.utils.atomic import atomic_write_bytes

__all__ = ["dynamics_yaml", "format_errors", "format_residuals", "format_table", "plot_matched"]


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
        readable = _derived(name, after, result.cfg, result.actions)
        lines.append(f"{name:<28} {unit:<6} {_fmt(before):>14} {_fmt(after):>14}   {readable}")
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
    n = steps_in(window_s, dt)
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
