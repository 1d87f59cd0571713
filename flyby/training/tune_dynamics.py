"""Dynamics tuning: fit the direct model to full-fidelity trajectories (``flyby tune``).

:func:`run_tuning` is what ``flyby tune`` runs: load the training logs and a
held-out log, check them against the current config, fit, print the report,
write the tuned ``dynamics_config.yaml`` and the plot. The parts live in their
own modules:

- :mod:`flyby.training.tune_rollout`: open-loop rollouts of the direct model on
  a log's commands (5 s windows with a teacher-forced burn-in for the hidden
  states) and the error metrics;
- :mod:`flyby.training.tune_fit`: the ``scipy.optimize.least_squares`` fit, the
  parameter sets (seed, :data:`EXTENSIONS`), bounds and the data checks;
- :mod:`flyby.training.tune_report`: the printed tables, the tuned YAML text and
  the matched-trajectory plot;
- :mod:`flyby.training.record`: recording the logs.

Public API used by the phase-2 parity gate and the tests, importable from here:
``open_loop_errors`` and ``simulate_direct`` (:mod:`~flyby.training.tune_rollout`),
``fit_dynamics`` (:mod:`~flyby.training.tune_fit`), and from
:mod:`flyby.training.record` ``excitation_sequences``, ``record_trajectories``,
``load_log``, ``save_log``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from flyby.config.dynamics import DirectDynamicsCfg
from flyby.errors import TuningDataError
from flyby.training.record import (
    TrajectoryLog,
    excitation_sequences,
    load_log,
    record_trajectories,
    save_log,
)
from flyby.training.tune_fit import EXTENSIONS, FitResult, check_log, check_training_data, fit_dynamics
from flyby.training.tune_report import (
    dynamics_yaml,
    format_errors,
    format_residuals,
    format_table,
    plot_matched,
)
from flyby.training.tune_rollout import (
    BURN_IN_S,
    STRIDE_S,
    WINDOW_S,
    Rollout,
    error_stats,
    open_loop_errors,
    rollout_windows,
    simulate_direct,
    window_starts,
)
from flyby.utils.atomic import atomic_write_text

# The module's public names before the split into tune_rollout / tune_fit / tune_report, still
# importable from here (the CLI, the parity gate and tests import them from this module).
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

_NOISE = ("position_noise_std", "velocity_noise_std")


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
        f"Tuned by `flyby tune` on {result.training_s:.0f} s of "
        f"{logs[0].meta.get('flight_stack', '?')} flight "
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
