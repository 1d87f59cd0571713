"""flyby/PX4ISR-v0 on the built-in cascade (PX4 itself is covered in tests/px4 and the px4 marker)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from flyby.config.evaluation import load_evaluation_cfg
from flyby.enums import FlightStack, ResolutionPreset
from flyby.envs.direct_env import DirectISREnv
from flyby.envs.px4_env import PX4ISREnv
from flyby.errors import ConfigError, PX4Unavailable


@pytest.fixture(scope="module")
def cfg():
    return load_evaluation_cfg().px4_env


def test_spaces_match_the_direct_env_so_policies_transfer(cfg):
    env = PX4ISREnv(cfg, flight_stack="cascade")
    direct = DirectISREnv()
    assert env.observation_space == direct.observation_space
    assert env.action_space == direct.action_space
    env.close()


def test_passes_gymnasium_check_env(cfg):
    from gymnasium.utils.env_checker import check_env

    env = PX4ISREnv(cfg, flight_stack="cascade")
    check_env(env, skip_render_check=True)
    env.close()


def test_velocity_command_moves_the_drone_through_the_flight_stack(cfg):
    env = PX4ISREnv(cfg, flight_stack="cascade")
    env.reset(seed=0, options={"pos_w": [0.0, 0.0, 40.0], "yaw_rad": 0.0})
    for _ in range(int(4.0 / cfg.step_dt)):  # 4 s at +0.5 -> 5 m/s east
        obs, reward, terminated, truncated, info = env.step(np.array([0.5, 0.0, 0.0, 0.0], np.float32))
    assert not terminated and info["flight_stack"] == "cascade"
    vel = env.task.dynamics.lin_vel_w[0]
    assert vel[0] == pytest.approx(5.0, abs=0.6) and abs(vel[1]) < 0.3 and abs(vel[2]) < 0.3
    assert env.task.pos_w[0, 2] == pytest.approx(40.0, abs=0.5)
    assert np.isfinite(obs).all() and env.observation_space.contains(obs)
    env.close()


def test_render_interval_and_presets(cfg):
    small = replace(cfg, render_interval=3, render=replace(cfg.render, preset=ResolutionPreset.TRAINING))
    env = PX4ISREnv(small, flight_stack="cascade", render_mode="rgb_array")
    _, info = env.reset(seed=0)
    assert info["rendered"] and info["camera"].shape == (128, 128, 3)
    flags = [env.step(np.zeros(4, np.float32))[4]["rendered"] for _ in range(9)]
    assert flags == [False, False, True] * 3
    env.close()
    full = replace(cfg, render=replace(cfg.render, preset=ResolutionPreset.FULL))
    env = PX4ISREnv(full, flight_stack="cascade", render_mode="rgb_array")
    _, info = env.reset(seed=0)
    assert info["camera"].shape == (480, 640, 3)
    env.close()


def test_auto_falls_back_to_the_cascade_and_px4_without_px4_is_a_clear_error(cfg, monkeypatch, tmp_path):
    monkeypatch.delenv("PX4_DIR", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no px4 binary anywhere
    env = PX4ISREnv(cfg, flight_stack="auto")
    assert env.flight_stack is FlightStack.CASCADE and "no PX4" in env.flight_stack_label
    env.close()
    with pytest.raises(PX4Unavailable, match="PX4_DIR"):
        PX4ISREnv(cfg, flight_stack="px4")


def test_bad_arguments(cfg):
    with pytest.raises(ValueError, match="flight_stack must be one of"):
        PX4ISREnv(cfg, flight_stack="betaflight")
    with pytest.raises(ValueError, match="'direct' is the training envs' model"):
        PX4ISREnv(cfg, flight_stack="direct")
    with pytest.raises(
        ConfigError, match=r"step_dt: 0.05 s must equal physics_dt \* decimation = 0.004 \* 10"
    ):
        PX4ISREnv(replace(cfg, step_dt=0.05), flight_stack="cascade")
    with pytest.raises(ConfigError, match="multi"):
        PX4ISREnv(
            replace(cfg, render=replace(cfg.render, preset=ResolutionPreset.MULTI)), flight_stack="cascade"
        )
