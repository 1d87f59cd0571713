"""Learning curves of ``flyby train`` runs side by side: ``flyby compare RUN [RUN ...]``.

Reads each run folder that ``flyby train`` writes (``progress.csv``, ``eval.csv``,
``train_config.json`` and, once the run finished, ``model.json``) and draws one figure of four
panels, every run a colour:

- evaluation return over env steps (the in-training evaluation: ``eval_episodes`` deterministic
  episodes on the shared reward, a 95 % interval of the mean shaded), so two training set-ups
  compare at equal env steps;
- the same over wall-clock seconds, the figure a faster set-up is for;
- the training return over env steps (SB3's rolling ``ep_rew_mean``, with the training-only
  reward shaping);
- targets found per evaluation episode over env steps.

It also prints a table: drones, rollout length, epochs, network, end-to-end steps/s, learner
share and the last evaluation. Nothing is trained or changed.

    flyby compare output/models/PPO_seed0 output/models/fast --label packaged --label fast \\
        --out output/curves.png
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flyby.errors import FlybyError

__all__ = ["RunCurves", "add_compare_parser", "format_table", "learning_curves_png", "read_run"]

_Z95 = 1.959963984540054  # two-sided 95 % quantile of the standard normal


class CompareError(FlybyError, ValueError):
    """A run folder cannot be compared: the message names the folder or file and the fix."""


@dataclass(frozen=True, kw_only=True)
class RunCurves:
    """One training run's curves and figures, as read from its folder.

    Arrays are float64; ``eval_*`` have one entry per in-training evaluation (E), the others one
    per rollout logged (T). NaN marks an empty cell (no episode had ended yet).
    """

    label: str
    folder: Path
    env_steps: np.ndarray  # (T,) env steps at each rollout's end
    wall_s: np.ndarray  # (T,) s of training wall clock at each rollout's end
    train_return: np.ndarray  # (T,) SB3 ep_rew_mean (training reward, shaping included)
    eval_steps: np.ndarray  # (E,) env steps at each evaluation
    eval_wall_s: np.ndarray  # (E,) s of wall clock at each evaluation
    eval_return: np.ndarray  # (E,) mean return over the evaluation's episodes (shared reward)
    eval_ci95: np.ndarray  # (E,) half-width of the mean's 95 % normal interval
    eval_targets: np.ndarray  # (E,) targets found per evaluation episode
    settings: dict[str, Any]  # drones, n_steps, epochs, batch, net, threads (from train_config.json)
    steps_per_s: float  # end to end (NaN until the run finished: model.json)
    learner_share: float  # learner / (env + learner) (NaN until the run finished)


def _read_csv(path: Path, required: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Columns of a ``flyby train`` CSV as float64 (empty cells NaN); the required ones must exist."""
    if not path.is_file():
        raise CompareError(
            f"{path} does not exist: pass a folder `flyby train` wrote (with --out), "
            "or wait for its first rollout"
        )
    with path.open(newline="", encoding="utf-8") as f:
        rows = [row for row in csv.reader(f) if row]
    if not rows:
        raise CompareError(f"{path} is empty: the run has not logged a rollout yet")
    header, body = rows[0], rows[1:]
    missing = [c for c in required if c not in header]
    if missing:
        raise CompareError(f"{path} has no column {', '.join(missing)}: is it a `flyby train` log?")
    cols: dict[str, list[float]] = {name: [] for name in header}
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise CompareError(f"{path} line {line}: {len(row)} cells, the header has {len(header)}")
        for name, cell in zip(header, row, strict=True):
            try:
                cols[name].append(float(cell) if cell != "" else math.nan)
            except ValueError:
                raise CompareError(f"{path} line {line}, column {name}: {cell!r} is not a number") from None
    return {name: np.asarray(values, dtype=np.float64) for name, values in cols.items()}


def read_run(folder: str | Path, label: str | None = None) -> RunCurves:
    """Read the curves of one ``flyby train`` run folder (finished or still running).

    Args:
        folder: the run's ``--out`` folder.
        label: name in the legend and table; default: the folder's name.

    Raises:
        CompareError: not a folder, or ``progress.csv`` / ``train_config.json`` missing or not
            in their format (the message names the file).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CompareError(f"{folder} is not a folder: pass the --out folder of a `flyby train` run")
    progress = _read_csv(folder / "progress.csv", ("env_steps", "wall_s", "ep_rew_mean"))
    eval_path = folder / "eval.csv"
    columns = ("env_steps", "wall_s", "mean_return", "std_return", "targets_found_mean")
    evals = _read_csv(eval_path, columns) if eval_path.is_file() else {c: np.zeros(0) for c in columns}
    try:
        record = json.loads((folder / "train_config.json").read_text(encoding="utf-8"))
        trainer = record["trainer"]
        ppo = trainer.get("ppo", {})
        collect_threads = trainer.get("torch_threads", 1)
        update_threads = trainer.get("update_torch_threads") or collect_threads
        settings = {
            "algorithm": trainer["algorithm"],
            "drones": int(trainer["num_drones"]),
            "n_steps": ppo.get("n_steps"),
            "epochs": ppo.get("n_epochs"),
            "batch": trainer.get("batch_size"),
            "net": ppo.get("net_arch"),
            "threads": f"{collect_threads}/{update_threads}",  # torch threads: collection / update
            "eval_episodes": int(trainer.get("eval_episodes", 16)),
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CompareError(
            f"{folder / 'train_config.json'} is missing or not flyby train's ({exc}); "
            "pass a folder `flyby train` wrote"
        ) from None
    summary: dict[str, Any] = {}
    model_json = folder / "model.json"
    if model_json.is_file():
        try:
            summary = json.loads(model_json.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise CompareError(f"{model_json} is not JSON ({exc}): rerun `flyby train --resume`") from None
    episodes = max(settings["eval_episodes"], 1)
    return RunCurves(
        label=label or folder.name,
        folder=folder,
        env_steps=progress["env_steps"],
        wall_s=progress["wall_s"],
        train_return=progress["ep_rew_mean"],
        eval_steps=evals["env_steps"],
        eval_wall_s=evals["wall_s"],
        eval_return=evals["mean_return"],
        eval_ci95=_Z95 * evals["std_return"] / math.sqrt(episodes),
        eval_targets=evals["targets_found_mean"],
        settings=settings,
        steps_per_s=float(summary.get("steps_per_s") or math.nan),
        learner_share=float(summary.get("learner_share") or math.nan),
    )


def format_table(runs: list[RunCurves]) -> str:
    """One line per run: its settings, throughput and last evaluation."""
    head = (
        f"{'run':<16} {'drones':>6} {'n_steps':>7} {'epochs':>6} {'batch':>6} {'net':>10} {'threads':>7} "
        f"{'steps/s':>8} {'learner':>7} {'env steps':>10} {'eval return (95% CI)':>22} {'targets':>7}"
    )
    lines = [head]
    for r in runs:
        s = r.settings
        net = "x".join(str(w) for w in s["net"]) if s["net"] else "-"
        if r.eval_return.size:
            ret = f"{r.eval_return[-1]:+.1f} +- {r.eval_ci95[-1]:.1f}"
            targets = f"{r.eval_targets[-1]:.1f}"
            steps = f"{r.eval_steps[-1]:,.0f}"
        else:
            ret, targets, steps = (
                "no evaluation yet",
                "-",
                f"{r.env_steps[-1]:,.0f}" if r.env_steps.size else "0",
            )
        sps = f"{r.steps_per_s:,.0f}" if math.isfinite(r.steps_per_s) else "running"
        share = f"{100 * r.learner_share:.0f} %" if math.isfinite(r.learner_share) else "-"
        lines.append(
            f"{r.label[:16]:<16} {s['drones']:>6} {s['n_steps'] or '-':>7} {s['epochs'] or '-':>6} "
            f"{s['batch'] or '-':>6} {net:>10} {s['threads']:>7} {sps:>8} {share:>7} {steps:>10} {ret:>22} "
            f"{targets:>7}"
        )
    return "\n".join(lines)


def learning_curves_png(runs: list[RunCurves], *, title: str = "") -> bytes:
    """The four panels of the module docstring, one colour per run, as PNG bytes.

    Raises:
        DependencyNotInstalled: matplotlib is missing.
    """
    from flyby.pipeline import plots

    fig = plots._figure(13.0, 8.0)
    axes = fig.subplots(2, 2)
    panels = (
        (axes[0, 0], "evaluation return (95 % CI) vs env steps", "env steps"),
        (axes[0, 1], "evaluation return (95 % CI) vs wall clock", "wall-clock s"),
        (axes[1, 0], "training return (SB3 ep_rew_mean, shaped) vs env steps", "env steps"),
        (axes[1, 1], "targets found per evaluation episode vs env steps", "env steps"),
    )
    colours = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:gray")
    for i, r in enumerate(runs):
        c = colours[i % len(colours)]
        for ax, x in ((axes[0, 0], r.eval_steps), (axes[0, 1], r.eval_wall_s)):
            if r.eval_return.size:
                ax.plot(x, r.eval_return, "o-", color=c, lw=1.5, ms=3, label=r.label)
                ax.fill_between(
                    x, r.eval_return - r.eval_ci95, r.eval_return + r.eval_ci95, color=c, alpha=0.15
                )
        plots._finite_line(axes[1, 0], r.env_steps, r.train_return, color=c, lw=1.2, label=r.label)
        if r.eval_targets.size:
            axes[1, 1].plot(r.eval_steps, r.eval_targets, "o-", color=c, lw=1.5, ms=3, label=r.label)
    for ax, name, xlabel in panels:
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=8)
        else:
            plots._no_data(ax, "no values logged yet")
    if title:
        fig.suptitle(title, fontsize=11)
    return plots._png(fig)


def add_compare_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``flyby compare`` on the ``flyby`` command line."""
    p = sub.add_parser(
        "compare",
        help="learning curves of flyby train runs in one plot, with their steps/s and last evaluation",
        description=__doc__.split("\n\n")[0] + " Prints a table and writes one PNG of four panels.",
    )
    p.add_argument("runs", nargs="+", help="run folders written by flyby train (--out)")
    p.add_argument(
        "--label", action="append", default=None, help="legend name per run, in order (default: folder names)"
    )
    p.add_argument("--out", default="output/learning_curves.png", help="PNG to write (default: %(default)s)")
    p.add_argument("--title", default="", help="figure title")
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(args: argparse.Namespace) -> int:
    from flyby.utils.atomic import atomic_write_bytes

    labels = args.label or []
    if labels and len(labels) != len(args.runs):
        raise CompareError(
            f"{len(labels)} --label for {len(args.runs)} runs: give one --label per run, in order, or none"
        )
    runs = [read_run(folder, labels[i] if labels else None) for i, folder in enumerate(args.runs)]
    print(format_table(runs))
    out = Path(args.out)
    atomic_write_bytes(out, learning_curves_png(runs, title=args.title))
    print(f"wrote {out}")
    return 0
