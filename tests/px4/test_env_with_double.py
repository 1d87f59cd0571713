"""PX4ISR-v0 with flight_stack="px4", PX4 played by the MAVLink test double: env -> bridge -> double, in
CI."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from mavlink_double import DoubleFactory

from flyby.config.evaluation import load_evaluation_cfg
from flyby.envs.px4_env import PX4ISREnv
from flyby.errors import PX4Unavailable


def test_env_flies_through_the_lockstep_bridge():
    cfg = load_evaluation_cfg().px4_env  # default terminations: a ground start is no crash before take-off
    env, factory = _double_env(cfg)  # the double flies from HIL_STATE_QUATERNION
    try:
        assert "PX4" in env.flight_stack_label
        env.reset(seed=0, options={"pos_w": [0.0, 0.0, 0.12], "yaw_rad": 0.0})
        climb = np.array([0.0, 0.0, 0.4, 0.0], np.float32)  # 2 m/s up
        for _ in range(int(3.0 / cfg.step_dt)):
            _, _, terminated, _, info = env.step(climb)
            assert not terminated
        assert info["flight_stack"] == "px4"
        assert env.task.pos_w[0, 2] > 2.0, f"altitude {env.task.pos_w[0, 2]:.2f} m after 3 s of climb"
        assert factory.violations() == []
    finally:
        env.close()


def _double_env(cfg):
    factory = DoubleFactory(arm_after_s=0.5)
    env = PX4ISREnv(
        cfg,
        flight_stack="px4",
        px4_kwargs={
            "launcher_factory": factory,
            "ephemeral_ports": True,
            "startup_timeout_s": 30.0,
            "ground_truth_rate_hz": 250.0,
        },
    )
    return env, factory


def test_altitude_start_takes_off_outside_the_episode():
    env, factory = _double_env(load_evaluation_cfg().px4_env)
    try:
        start = np.array([10.0, -5.0, 6.0])
        _, info = env.reset(seed=0, options={"pos_w": start, "yaw_rad": 0.2})
        task = env.task
        assert info["takeoff_s"] > 1.0  # it climbed from the ground below the start
        assert np.linalg.norm(task.pos_w[0] - start) < env.cfg.px4.takeoff.position_tolerance_m
        assert task.episode_step[0] == 0 and task.world_time_s == 0.0
        assert all(float(v[0]) == 0.0 for v in task.episode_sums.values())
        _, _, terminated, _, _ = env.step(np.zeros(4, np.float32))
        assert not terminated and factory.violations() == []
    finally:
        env.close()


def test_takeoff_that_cannot_reach_the_start_names_where_it_is():
    base = load_evaluation_cfg().px4_env
    cfg = replace(base, px4=replace(base.px4, takeoff=replace(base.px4.takeoff, timeout_s=0.5)))
    env, _ = _double_env(cfg)
    try:
        with pytest.raises(
            PX4Unavailable,
            match=r"take-off of drone 0 did not reach its start \[0.0, 0.0, 30.0\] m "
            r"within 0.5 s of sim time: it is at",
        ):
            env.reset(seed=0, options={"pos_w": [0.0, 0.0, 30.0], "yaw_rad": 0.0})
    finally:
        env.close()
