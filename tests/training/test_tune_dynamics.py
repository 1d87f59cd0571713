"""Trajectory recording and dynamics tuning (flyby.training.record, flyby.training.tune_*)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from flyby.cli import main
from flyby.config import load_yaml
from flyby.config.dynamics import DirectDynamicsCfg
from flyby.config.evaluation import load_evaluation_cfg
from flyby.dynamics.direct import DirectDynamics
from flyby.errors import TuningDataError
from flyby.training.record import (
    EXCITATION_KINDS,
    TrajectoryLog,
    config_fingerprint,
    excitation_sequences,
    load_log,
    record_trajectories,
    save_log,
)
from flyby.training.tune_fit import check_log, fit_dynamics
from flyby.training.tune_report import dynamics_yaml, plot_matched
from flyby.training.tune_rollout import open_loop_errors, simulate_direct

STEP_DT = 0.04  # s, the full-fidelity env's control period
# A known model with every extension away from its seed default.
TRUE = DirectDynamicsCfg(
    velocity_damping=0.92,
    vertical_velocity_damping=0.75,
    velocity_gain=0.9,
    vertical_velocity_gain=1.05,
    max_climb_rate=3.0,
    max_descent_rate=1.5,
    acceleration_damping=0.6,
    yaw_rate_gain=0.95,
    yaw_rate_damping=0.65,
    max_horizontal_speed=11.0,
    max_horizontal_acceleration=7.0,
    drag_coefficient=0.35,
    max_horizontal_jerk=30.0,
    yaw_coupling_s=0.12,
    position_noise_std=0.0,
    velocity_noise_std=0.0,
)


@pytest.fixture(scope="module")
def env_cfg():
    return load_evaluation_cfg().px4_env


def synthetic_log(
    cfg: DirectDynamicsCfg, seconds: float, seed: int, env_cfg=None, episodes: int = 1
) -> TrajectoryLog:
    """A log flown by the direct model itself (noise off), with the current config's metadata."""
    commands = excitation_sequences("all", seconds, STEP_DT, seed)
    dyn = DirectDynamics(replace(cfg, position_noise_std=0.0, velocity_noise_std=0.0), 1)
    rows = {k: [] for k in ("time_s", "commands", "pos_w", "lin_vel_w", "yaw_rad", "episode")}
    for ep, part in enumerate(np.array_split(np.arange(len(commands)), episodes)):
        dyn.reset(np.array([[0.0, 0.0, 70.0]]), np.array([0.3 * ep]))
        for k in part:
            for key, value in (
                ("time_s", k * STEP_DT),
                ("commands", commands[k]),
                ("pos_w", dyn.pos_w[0].copy()),
                ("lin_vel_w", dyn.lin_vel_w[0].copy()),
                ("yaw_rad", float(dyn.yaw_rad[0])),
                ("episode", ep),
            ):
                rows[key].append(value)
            dyn.step(commands[k][None], STEP_DT)
    meta = {
        "step_dt": STEP_DT,
        "flight_stack": "direct (synthetic)",
        "action_scale": {"max_velocity": 10.0, "max_vertical_velocity": 5.0, "max_yaw_rate": 90.0},
        "fingerprint": config_fingerprint(env_cfg) if env_cfg is not None else "synthetic",
    }
    return TrajectoryLog(**{k: np.asarray(v) for k, v in rows.items()}, meta=meta)


@pytest.fixture(scope="module")
def train_log(env_cfg):
    return synthetic_log(TRUE, 70.0, seed=0, env_cfg=env_cfg, episodes=2)


# ---------------------------------------------------------------- excitation


@pytest.mark.parametrize("kind", [*EXCITATION_KINDS, "all"])
def test_excitation_sequences_cover_the_box_and_are_seeded(kind):
    a = excitation_sequences(kind, 60.0, STEP_DT, seed=3)
    assert a.shape == (1500, 4) and a.dtype == np.float32
    assert np.isfinite(a).all() and np.abs(a).max() <= 1.0
    np.testing.assert_array_equal(a, excitation_sequences(kind, 60.0, STEP_DT, seed=3))
    assert not np.array_equal(a, excitation_sequences(kind, 60.0, STEP_DT, seed=4))
    if kind in ("all", "steps", "ou"):
        assert np.abs(a).max() == 1.0  # the corners of the box are commanded
    assert (np.abs(a).max(axis=0) > 0.3).all()  # every channel is excited


def test_excitation_rejects_bad_arguments():
    with pytest.raises(ValueError, match="one of"):
        excitation_sequences("sine", 10.0, STEP_DT, 0)
    with pytest.raises(ValueError, match="> 0"):
        excitation_sequences("all", 0.0, STEP_DT, 0)


# ---------------------------------------------------------------- logs


def test_save_load_round_trip(tmp_path, train_log):
    path = save_log(train_log, tmp_path / "sub" / "log.npz")
    back = load_log(path)
    for key in ("time_s", "commands", "pos_w", "lin_vel_w", "yaw_rad", "episode"):
        np.testing.assert_array_equal(getattr(back, key), getattr(train_log, key))
    assert back.meta == train_log.meta and back.episode_bounds() == train_log.episode_bounds()
    with pytest.raises(TuningDataError, match="does not exist.*flyby record"):
        load_log(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(TuningDataError, match="not a flyby trajectory log"):
        load_log(tmp_path / "other.npz")


def test_real_recording_with_the_cascade_env(env_cfg):
    from flyby.envs.px4_env import PX4ISREnv

    env = PX4ISREnv(env_cfg, flight_stack="cascade")
    try:
        commands = excitation_sequences("steps", 3.0, env.cfg.step_dt, seed=0)
        log = record_trajectories(env, commands, seed=0, settle_s=0.2)
    finally:
        env.close()
    assert len(log) == len(commands) == 75
    assert log.commands.shape == (75, 4) and log.pos_w.shape == (75, 3) and log.lin_vel_w.shape == (75, 3)
    assert log.yaw_rad.shape == (75,) and log.episode.tolist() == [0] * 75
    np.testing.assert_array_equal(log.commands, commands)
    np.testing.assert_allclose(log.time_s, np.arange(75) * 0.04)
    meta = log.meta
    assert meta["flight_stack"] == "cascade" and "cascade" in meta["flight_stack_label"]
    assert meta["step_dt"] == 0.04 and meta["physics_dt"] == 0.004 and meta["decimation"] == 10
    assert meta["action_scale"] == {"max_velocity": 10.0, "max_vertical_velocity": 5.0, "max_yaw_rate": 90.0}
    assert meta["fingerprint"] == config_fingerprint(env_cfg) and meta["episodes"] == 1
    # The drone starts high above the area centre and responds to the commands.
    assert np.abs(log.pos_w[0, :2]).max() < 0.5 and log.pos_w[0, 2] > 40.0
    assert np.linalg.norm(log.pos_w[-1] - log.pos_w[0]) > 1.0
    check_log(log, env_cfg)  # a fresh recording matches the current config


# ---------------------------------------------------------------- bad data


def test_empty_and_too_short_logs_say_how_much_is_needed(env_cfg, train_log):
    empty = TrajectoryLog(
        time_s=[],
        commands=np.zeros((0, 4)),
        pos_w=np.zeros((0, 3)),
        lin_vel_w=np.zeros((0, 3)),
        yaw_rad=[],
        episode=[],
        meta=dict(train_log.meta),
    )
    with pytest.raises(TuningDataError, match=r"need at least 60 s of flight in windows of 5 s; got 0\.0 s"):
        fit_dynamics([empty])
    short = synthetic_log(TRUE, 3.2, seed=1, env_cfg=env_cfg)
    with pytest.raises(TuningDataError, match=r"need at least 60 s.*got 0\.0 s \(3\.2 s logged"):
        fit_dynamics([short], env_cfg=env_cfg)
    with pytest.raises(TuningDataError, match=r"need at least one episode of 5\.04 s.*holds 3\.1[0-9] s"):
        open_loop_errors(DirectDynamicsCfg(), short)
    with pytest.raises(TuningDataError, match="horizons"):
        open_loop_errors(DirectDynamicsCfg(), train_log, horizons_s=(6.0,))


def test_logs_from_another_config_are_refused(env_cfg, train_log):
    check_log(train_log, env_cfg)
    cases = [
        (
            {"fingerprint": "0123456789abcdef"},
            r"fingerprint 0123456789abcdef in the log, [0-9a-f]{16} for the current",
        ),
        ({"step_dt": 0.05}, r"step_dt 0\.05 s in the log, 0\.04 s in the current config"),
        (
            {"action_scale": {"max_velocity": 8.0, "max_vertical_velocity": 5.0, "max_yaw_rate": 90.0}},
            r"max_velocity = 8\.0 in the log, 10\.0 in the evaluation config \(px4_env\.actions\)",
        ),
    ]
    for change, match in cases:
        other = replace(train_log, meta={**train_log.meta, **change})
        with pytest.raises(TuningDataError, match=match):
            check_log(other, env_cfg)
        with pytest.raises(TuningDataError, match=match):
            fit_dynamics([other], env_cfg=env_cfg)
    # The current config's fingerprint changes with anything that shapes the flight.
    assert config_fingerprint(replace(env_cfg, physics_dt=0.002, decimation=20)) != config_fingerprint(
        env_cfg
    )
    scaled = replace(env_cfg, actions=replace(env_cfg.actions, max_velocity=8.0))
    assert config_fingerprint(scaled) != config_fingerprint(env_cfg)
    tuned = replace(env_cfg, dynamics=replace(env_cfg.dynamics, velocity_damping=0.5))
    assert config_fingerprint(tuned) == config_fingerprint(env_cfg)  # tuning keeps logs valid


# ---------------------------------------------------------------- fitting


# The fields the recovery test fits (and starts from the seed values).
FITTED = (
    "velocity_damping",
    "vertical_velocity_damping",
    "velocity_gain",
    "vertical_velocity_gain",
    "max_climb_rate",
    "max_descent_rate",
    "acceleration_damping",
    "yaw_rate_gain",
    "yaw_rate_damping",
)


def test_fit_recovers_known_parameters_and_lowers_multi_step_error(env_cfg, train_log):
    # Fit the vertical and yaw extensions and the velocity lag from the seed model's values.
    exts = ("vertical_response", "velocity_gains", "vertical_limits", "acceleration_lag", "yaw_response")
    base = replace(
        TRUE,
        **{f: getattr(DirectDynamicsCfg(), f) for f in FITTED},
    )
    result = fit_dynamics([train_log], base, extensions=exts, stride_s=2.0, env_cfg=env_cfg)
    for name in FITTED:
        assert math.isclose(getattr(result.cfg, name), getattr(TRUE, name), rel_tol=0.02), name
    assert [row[0] for row in result.table_rows][0] == "velocity_damping"
    assert result.residuals["tuned"]["pos_end_m"] < 0.05 < result.residuals["seed"]["pos_end_m"]
    # Held out: a different command sequence.
    held = synthetic_log(TRUE, 30.0, seed=9, env_cfg=env_cfg)
    before = open_loop_errors(base, held)
    after = open_loop_errors(result.cfg, held)
    assert set(after) == {1.0, 5.0} and after[5.0].shape == before[5.0].shape == (25,)
    assert after[5.0].mean() < 0.05 * before[5.0].mean() and after[1.0].mean() < before[1.0].mean()


def test_fit_recovers_the_horizontal_limits_and_couplings(env_cfg, train_log):
    exts = ("horizontal_speed_limit", "acceleration_limit", "jerk_limit", "yaw_coupling")
    base = replace(
        TRUE,
        max_horizontal_speed=None,
        max_horizontal_acceleration=None,
        drag_coefficient=0.0,
        max_horizontal_jerk=None,
        yaw_coupling_s=0.0,
    )
    result = fit_dynamics([train_log], base, extensions=exts, stride_s=2.0)
    for name in (
        "velocity_damping",
        "max_horizontal_speed",
        "max_horizontal_acceleration",
        "drag_coefficient",
        "max_horizontal_jerk",
        "yaw_coupling_s",
    ):
        assert math.isclose(getattr(result.cfg, name), getattr(TRUE, name), rel_tol=0.05), name


def test_fit_recovers_the_thrust_coupling_descent_limit_and_antiwindup(env_cfg):
    true = replace(
        TRUE, thrust_coupling=0.6, max_downward_acceleration=6.0, antiwindup_gain=0.3, antiwindup_damping=0.97
    )
    log = synthetic_log(true, 70.0, seed=3, env_cfg=env_cfg, episodes=2)
    base = replace(
        true, thrust_coupling=0.0, max_downward_acceleration=None, antiwindup_gain=0.0, antiwindup_damping=0.0
    )
    result = fit_dynamics([log], base, extensions=("thrust_coupling", "antiwindup"), stride_s=2.0)
    for name in ("thrust_coupling", "max_downward_acceleration", "antiwindup_gain", "antiwindup_damping"):
        assert math.isclose(getattr(result.cfg, name), getattr(true, name), rel_tol=0.05), name
    assert result.residuals["tuned"]["pos_end_m"] < 0.1 * result.residuals["seed"]["pos_end_m"]


def test_simulate_direct_flies_the_logged_commands_from_the_logged_state(train_log):
    cfg = DirectDynamicsCfg()  # noise is switched off inside
    pos, yaw = simulate_direct(cfg, train_log, 100, 50)
    assert pos.shape == (50, 3) and yaw.shape == (50,)
    dyn = DirectDynamics(replace(cfg, position_noise_std=0.0, velocity_noise_std=0.0), 1)
    dyn.reset(train_log.pos_w[100:101], train_log.yaw_rad[100:101], lin_vel_w=train_log.lin_vel_w[100:101])
    for k in range(50):
        dyn.step(train_log.commands[100 + k][None].astype(np.float64), STEP_DT)
    np.testing.assert_allclose(pos[-1], dyn.pos_w[0], atol=1e-9)
    # The true model reproduces its own log: its hidden states are settled by the burn-in.
    pos, yaw = simulate_direct(TRUE, train_log, 300, 125)
    np.testing.assert_allclose(pos, train_log.pos_w[301:426], atol=0.05)
    np.testing.assert_allclose(yaw, train_log.yaw_rad[301:426], atol=0.01)
    with pytest.raises(TuningDataError, match="leaves its episode"):
        simulate_direct(cfg, train_log, len(train_log) // 2 - 10, 50)


def test_tuned_yaml_round_trips_with_comments(tmp_path):
    path = tmp_path / "dynamics_config.yaml"
    path.write_text(dynamics_yaml(TRUE, ["header line"]))
    text = path.read_text()
    assert text.startswith("# header line\n")
    assert "velocity_damping: 0.92" in text and "# 1, velocity retained per reference step [tau" in text
    assert "max_climb_rate: 3.0" in text and "MPC_Z_VEL_MAX_UP" in text
    assert load_yaml(DirectDynamicsCfg, path) == TRUE
    seed_text = dynamics_yaml(DirectDynamicsCfg())
    assert "vertical_velocity_damping: null" in seed_text
    assert load_yaml(DirectDynamicsCfg, _write(tmp_path / "seed.yaml", seed_text)) == DirectDynamicsCfg()


def _write(path, text):
    path.write_text(text)
    return path


def test_plot_of_matched_trajectories(tmp_path, env_cfg):
    held = synthetic_log(TRUE, 8.0, seed=5, env_cfg=env_cfg)
    out = plot_matched(tmp_path / "plots" / "tuning.png", held, DirectDynamicsCfg(), TRUE)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- CLI


@pytest.mark.parametrize("command", ["tune", "record"])
def test_cli_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "--held-out" in capsys.readouterr().out if command == "tune" else True


def test_cli_tune_refuses_a_short_log(tmp_path, capsys, env_cfg):
    short = save_log(synthetic_log(TRUE, 3.2, seed=1, env_cfg=env_cfg), tmp_path / "short.npz")
    held = save_log(synthetic_log(TRUE, 8.0, seed=2, env_cfg=env_cfg), tmp_path / "held.npz")
    code = main(
        ["tune", str(short), "--held-out", str(held), "--out", str(tmp_path / "t.yaml"), "--plot", ""]
    )
    assert code == 2
    assert "need at least 60 s of flight" in capsys.readouterr().err
    assert not (tmp_path / "t.yaml").exists()
    assert main(["record", "--duration", "0"]) == 2
