from __future__ import annotations

import math

import numpy as np
import pytest

from flyby.dynamics.direct import DirectDynamics
from flyby.dynamics.direct_cfg import DirectDynamicsCfg
from flyby.errors import ConfigError, InvalidAction

NOISELESS = DirectDynamicsCfg(position_noise_std=0.0, velocity_noise_std=0.0)


def make(n=3, cfg=NOISELESS):
    dyn = DirectDynamics(cfg, n)
    dyn.reset(np.zeros((n, 3)), np.zeros(n), seed=0)
    return dyn


def test_first_order_step_response_matches_the_closed_form():
    dyn = make(1)
    a = np.array([[1.0, -0.5, 0.2, 0.0]])
    target = np.array([10.0, -5.0, 1.0])
    for k in range(1, 41):
        dyn.step(a, 0.05)
        np.testing.assert_allclose(dyn.lin_vel_w[0], (1 - 0.95**k) * target, rtol=1e-12)
    # Position is the sum of the velocities times dt.
    expected = sum((1 - 0.95**k) for k in range(1, 41)) * 0.05 * target
    np.testing.assert_allclose(dyn.pos_w[0], expected, rtol=1e-12)


def test_response_does_not_depend_on_the_control_rate():
    coarse, fine = make(1), make(1)
    a = np.array([[0.3, 0.7, -0.4, 0.5]])
    for _ in range(20):
        coarse.step(a, 0.05)
        fine.step(a, 0.025)
        fine.step(a, 0.025)
    np.testing.assert_allclose(coarse.lin_vel_w, fine.lin_vel_w, rtol=1e-12)
    np.testing.assert_allclose(coarse.yaw_rad, fine.yaw_rad, rtol=1e-12)


def test_yaw_rate_scale_and_wrap():
    dyn = make(1)
    for _ in range(40):  # 2 s at 90 deg/s = 180 deg
        dyn.step(np.array([[0, 0, 0, 1.0]]), 0.05)
    assert math.isclose(abs(dyn.yaw_rad[0]), math.pi, abs_tol=1e-9)
    dyn.step(np.array([[0, 0, 0, 1.0]]), 0.05)
    assert -math.pi <= dyn.yaw_rad[0] < -math.pi + 0.1


def test_out_of_range_actions_are_clipped():
    a, b = make(1), make(1)
    a.step(np.array([[5.0, -3.0, 2.0, 9.0]]), 0.05)
    b.step(np.array([[1.0, -1.0, 1.0, 1.0]]), 0.05)
    np.testing.assert_array_equal(a.pos_w, b.pos_w)


@pytest.mark.parametrize(
    "bad, match",
    [(np.zeros((3, 3)), r"shape \(3, 4\).*got \(3, 3\)"), (np.zeros(4), r"got \(4,\)"),
     (np.array([[0, 0, np.nan, 0]] * 3), "NaN/inf at .*\\[0, 2\\]"), ("fast", "must be numeric")],
)
def test_bad_actions_raise_invalid_action(bad, match):
    with pytest.raises(InvalidAction, match=match):
        make(3).step(bad, 0.05)


def test_noise_is_seeded_and_batched():
    cfg = DirectDynamicsCfg()
    runs = []
    for _ in range(2):
        dyn = DirectDynamics(cfg, 4)
        dyn.reset(np.zeros((4, 3)), np.zeros(4), seed=123)
        for _ in range(50):
            dyn.step(np.zeros((4, 4)), 0.05)
        runs.append(dyn.pos_w.copy())
    np.testing.assert_array_equal(runs[0], runs[1])
    assert np.unique(runs[0][:, 0]).size == 4  # each drone draws its own noise
    # At rest, 50 steps of noise stay within a few sigma of a random walk.
    assert np.abs(runs[0]).max() < 5.0


def test_partial_reset_and_bad_construction():
    dyn = make(3)
    dyn.step(np.ones((3, 4)), 0.05)
    dyn.reset(np.array([[1.0, 2.0, 3.0]]), np.array([0.5]), np.array([1]))
    np.testing.assert_array_equal(dyn.pos_w[1], [1.0, 2.0, 3.0])
    assert (dyn.lin_vel_w[1] == 0).all() and (dyn.lin_vel_w[0] != 0).all()
    with pytest.raises(ValueError, match="num_drones must be >= 1"):
        DirectDynamics(NOISELESS, 0)
    with pytest.raises(ConfigError, match="velocity_damping"):
        DirectDynamics(DirectDynamicsCfg(velocity_damping=1.5), 1)
    with pytest.raises(ValueError, match="dt must be > 0"):
        make(1).step(np.zeros((1, 4)), 0.0)
