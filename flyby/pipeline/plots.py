"""Figures of the pipeline's HTML report, drawn with matplotlib's Agg canvas and returned as PNG bytes.

Every function builds its own :class:`matplotlib.figure.Figure` on a ``FigureCanvasAgg`` (no
``pyplot``, no global backend switch, nothing left open), so it is safe in library code, in
worker processes and in tests. Inputs are plain arrays and mappings, already checked by
:mod:`flyby.pipeline.report`; these functions only draw.

Example::

    png = training_curves_png(steps, {"mean return": ret, "mean episode length, steps": ep_len}, terms)
    Path("curves.png").write_bytes(png)
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from flyby.errors import DependencyNotInstalled

__all__ = [
    "POLICY_COLOURS",
    "TARGET_MARKERS",
    "evaluation_png",
    "policy_colour",
    "tracks_png",
    "training_curves_png",
]

#: One colour per evaluation policy, the same in every figure of a report.
POLICY_COLOURS: dict[str, str] = {
    "trained": "tab:blue",
    "patrol": "tab:green",
    "random": "tab:orange",
    "zero": "tab:purple",
}
_SPARE_COLOURS = ("tab:red", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")
#: Matplotlib marker of each target class in the top-down plot (unknown classes get "o").
TARGET_MARKERS: dict[str, str] = {"vehicle": "s", "person": "^"}
_DPI = 100


def policy_colour(key: str, keys: Sequence[str] = ()) -> str:
    """The colour of policy ``key``: fixed for the four known policies, else the next spare colour
    by ``key``'s position among the unknown ones in ``keys``."""
    if key in POLICY_COLOURS:
        return POLICY_COLOURS[key]
    unknown = [k for k in keys if k not in POLICY_COLOURS]
    index = unknown.index(key) if key in unknown else 0
    return _SPARE_COLOURS[index % len(_SPARE_COLOURS)]


def _figure(width_in: float, height_in: float, *, layout: str | None = "constrained") -> Any:
    """A new Agg-backed figure, ``width_in`` x ``height_in`` inches at 100 dpi (``layout=None``: the
    caller places the axes; constrained layout costs about 0.1 s per panel).

    Raises:
        DependencyNotInstalled: matplotlib is missing (``pip install "flyby[train]"``).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - matplotlib is in the train extra
        raise DependencyNotInstalled("matplotlib", "train") from exc
    fig = Figure(figsize=(width_in, height_in), dpi=_DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    """``fig`` rendered to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    return buf.getvalue()


def _finite_line(ax: Any, x: np.ndarray, y: np.ndarray, **kw: Any) -> bool:
    """Plot ``y`` over ``x`` where ``y`` is finite (empty cells are NaN); dots when only one point.

    Returns:
        False when no point is finite (nothing drawn), True otherwise.
    """
    keep = np.isfinite(y)
    if not keep.any():
        return False
    marker = "o" if keep.sum() < 3 else None
    ax.plot(x[keep], y[keep], marker=marker, **kw)
    return True


def _no_data(ax: Any, why: str) -> None:
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, color="0.4", fontsize=9)


def training_curves_png(
    env_steps: np.ndarray,
    curves: Mapping[str, np.ndarray],
    reward_terms: Mapping[str, np.ndarray],
    *,
    title: str = "",
) -> bytes:
    """Training curves over env steps: one panel per entry of ``curves`` (return, episode length,
    ...), then one small panel per reward term, three to a row.

    Args:
        env_steps: (T,) env steps of each log point (x axis), in the order logged.
        curves: panel title -> (T,) float values; NaN where the log point had no value (empty CSV
            cell). A panel with no finite value says "no values logged yet".
        reward_terms: term name (``Episode_Return/<k>`` without the prefix) -> (T,) float, the
            term's mean episode sum; NaN where not logged.
        title: figure title.

    Returns:
        PNG bytes.

    Raises:
        ValueError: a series whose length differs from ``env_steps`` (names it and both lengths).
        DependencyNotInstalled: matplotlib is missing.
    """
    x = np.asarray(env_steps, dtype=np.float64)
    for name, values in (*curves.items(), *reward_terms.items()):
        if np.shape(values) != x.shape:
            raise ValueError(f"series {name!r} has shape {np.shape(values)}, env_steps has {x.shape}")
    ncols = 3
    top_rows = max(1, math.ceil(len(curves) / ncols))
    term_rows = math.ceil(len(reward_terms) / ncols)
    height_in = 3.0 * top_rows + 2.4 * term_rows + (0.4 if title else 0.0)
    fig = _figure(13.0, height_in, layout=None)  # fixed margins: ten panels would spend ~1 s in layout
    grid = fig.add_gridspec(
        top_rows + term_rows,
        ncols,
        height_ratios=[1.25] * top_rows + [1.0] * term_rows,
        left=0.06,
        right=0.99,
        bottom=0.5 / height_in,
        top=1.0 - (0.75 if title else 0.35) / height_in,
        hspace=0.6,
        wspace=0.22,
    )
    panels = [(name, values, "tab:blue") for name, values in curves.items()]
    panels += [(f"Episode_Return/{name}", values, "tab:red") for name, values in reward_terms.items()]
    for i, (name, values, colour) in enumerate(panels):
        row = i // ncols if i < len(curves) else top_rows + (i - len(curves)) // ncols
        col = i % ncols if i < len(curves) else (i - len(curves)) % ncols
        ax = fig.add_subplot(grid[row, col])
        if not _finite_line(ax, x, np.asarray(values, dtype=np.float64), color=colour, lw=1.4):
            _no_data(ax, "no values logged yet")
        if i >= len(curves):
            ax.axhline(0.0, color="0.6", lw=0.6)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("env steps", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
    if title:
        fig.suptitle(title, fontsize=11)
    return _png(fig)


def evaluation_png(
    keys: Sequence[str],
    labels: Sequence[str],
    mean_return: Sequence[float],
    return_ci95: Sequence[tuple[float, float]],
    targets_mean: Sequence[float],
    targets_ci95: Sequence[tuple[float, float]],
    *,
    title: str = "",
) -> bytes:
    """Mean return and mean targets found per policy, as bars with 95 % confidence-interval error bars.

    Args:
        keys: policy keys (``"trained"``, ``"patrol"``, ...), for the colours.
        labels: the policies' names under the bars.
        mean_return: mean episode return per policy.
        return_ci95: (lo, hi) per policy; NaN bounds (one episode) draw no error bar.
        targets_mean: mean targets found per episode, per policy.
        targets_ci95: (lo, hi) per policy; NaN bounds draw no error bar.
        title: figure title.

    Returns:
        PNG bytes.

    Raises:
        ValueError: the sequences differ in length (names the lengths).
        DependencyNotInstalled: matplotlib is missing.
    """
    lengths = {
        len(keys),
        len(labels),
        len(mean_return),
        len(return_ci95),
        len(targets_mean),
        len(targets_ci95),
    }
    if len(lengths) != 1:
        raise ValueError(f"evaluation_png: one entry per policy expected, got lengths {sorted(lengths)}")
    fig = _figure(11.0, 3.8 + (0.3 if title else 0.0))
    colours = [policy_colour(k, keys) for k in keys]
    pos = np.arange(len(keys))
    for col, (means, cis, ylabel) in enumerate(
        (
            (mean_return, return_ci95, "mean episode return"),
            (targets_mean, targets_ci95, "targets found per episode"),
        )
    ):
        ax = fig.add_subplot(1, 2, col + 1)
        m = np.asarray(means, dtype=np.float64)
        ci = np.asarray(cis, dtype=np.float64).reshape(-1, 2)
        err = np.vstack([m - ci[:, 0], ci[:, 1] - m])
        err = np.where(np.isfinite(err), np.maximum(err, 0.0), 0.0)
        ax.bar(pos, m, color=colours, alpha=0.75, width=0.6)
        ax.errorbar(pos, m, yerr=err, fmt="none", ecolor="k", capsize=6, lw=1.4)
        ax.axhline(0.0, color="0.5", lw=0.6)
        ax.set_xticks(pos, list(labels), fontsize=9)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.set_title(f"{ylabel} (bars: mean; error bars: 95 % CI)", fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=11)
    return _png(fig)


def tracks_png(
    half_extent_m: tuple[float, float],
    buildings: np.ndarray,
    targets_xy: np.ndarray,
    targets_cls: Sequence[str],
    episodes: Sequence[tuple[str, np.ndarray, np.ndarray]],
    *,
    policy_labels: Mapping[str, str] | None = None,
    title: str = "",
) -> bytes:
    """Top-down plot of evaluation tracks over the map, world ENU (x east, y north), metres.

    Buildings are grey rectangles, targets small dark markers by class (square: vehicle, triangle:
    person), each policy's tracks one colour (the start a dot, the end a cross) and the targets an
    episode found open rings in its policy's colour.

    Args:
        half_extent_m: (hx, hy), m: the map spans [-hx, hx] x [-hy, hy].
        buildings: (B, 4) float [xmin, ymin, xmax, ymax], m.
        targets_xy: (K, 2) float target positions, m.
        targets_cls: K class names (``"vehicle"``, ``"person"``; others draw as circles).
        episodes: (policy key, xy (T, 2) float m, found (F, 2) float m) per evaluation episode.
        policy_labels: policy key -> name in the legend (default: the key).
        title: figure title.

    Returns:
        PNG bytes.

    Raises:
        DependencyNotInstalled: matplotlib is missing.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    labels = dict(policy_labels or {})
    hx, hy = float(half_extent_m[0]), float(half_extent_m[1])
    map_width_in = 6.8  # the legend takes the rest of the figure's 10 in
    fig = _figure(10.0, max(3.5, min(14.0, map_width_in * hy / hx)) + 0.9)
    ax = fig.add_subplot(1, 1, 1)
    ax.add_patch(Rectangle((-hx, -hy), 2 * hx, 2 * hy, fill=False, ec="0.3", lw=1.0, ls="--"))
    for xmin, ymin, xmax, ymax in np.asarray(buildings, dtype=np.float64).reshape(-1, 4):
        ax.add_patch(Rectangle((xmin, ymin), xmax - xmin, ymax - ymin, fc="0.72", ec="0.45", lw=0.5))
    keys = list(dict.fromkeys(policy for policy, _, _ in episodes))
    for policy, xy, found in episodes:
        colour = policy_colour(policy, keys)
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        found = np.asarray(found, dtype=np.float64).reshape(-1, 2)
        if len(xy):
            ax.plot(xy[:, 0], xy[:, 1], color=colour, lw=1.1, alpha=0.75)
            ax.plot(*xy[0], "o", color=colour, ms=4)
            ax.plot(*xy[-1], "x", color=colour, ms=5)
        if len(found):
            ax.scatter(
                found[:, 0],
                found[:, 1],
                s=110,
                facecolors="none",
                edgecolors=colour,
                linewidths=1.6,
                zorder=4,
            )
    txy = np.asarray(targets_xy, dtype=np.float64).reshape(-1, 2)
    classes = list(dict.fromkeys(targets_cls))
    for cls in classes:
        sel = np.array([c == cls for c in targets_cls], dtype=bool)
        ax.scatter(txy[sel, 0], txy[sel, 1], marker=TARGET_MARKERS.get(cls, "o"), s=22, c="k", zorder=5)
    handles = [Line2D([], [], color=policy_colour(k, keys), lw=2, label=labels.get(k, k)) for k in keys]
    handles += [
        Line2D([], [], ls="none", marker=TARGET_MARKERS.get(c, "o"), color="k", label=f"target: {c}")
        for c in classes
    ]
    if keys:
        handles.append(
            Line2D(
                [],
                [],
                ls="none",
                marker="o",
                mfc="none",
                mec="0.2",
                ms=10,
                mew=1.6,
                label="target found (policy colour)",
            )
        )
    handles.append(Rectangle((0, 0), 1, 1, fc="0.72", ec="0.45", label="building"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0.0)
    margin = 0.03 * max(hx, hy)
    ax.set_xlim(-hx - margin, hx + margin)
    ax.set_ylim(-hy - margin, hy + margin)
    ax.set_aspect("equal")
    ax.set_xlabel("x east, m")
    ax.set_ylabel("y north, m")
    ax.grid(True, alpha=0.2)
    if title:
        ax.set_title(title, fontsize=10)
    return _png(fig)
