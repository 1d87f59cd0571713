"""PX4ISR-v0 with flight_stack="px4", PX4 played by the MAVLink test double: env -> bridge -> double, in CI."""

from __future__ import annotations

import numpy as np
from mavlink_double import DoubleFactory

from flyby.envs.px4_env import PX4ISREnv
from flyby.training.evaluation_cfg import load_evaluation_cfg


def test_env_flies_through_the_lockstep_bridge():
    cfg = load_evaluation_cfg().px4_env  # default terminations: a ground start is no crash before take-off
    factory = DoubleFactory(arm_after_s=0.5)
    env = PX4ISREnv(cfg, flight_stack="px4",
                    px4_kwargs={"launcher_factory": factory, "ephemeral_ports": True, "startup_timeout_s": 30.0,
                                "ground_truth_rate_hz": 250.0})  # the double flies from HIL_STATE_QUATERNION
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
