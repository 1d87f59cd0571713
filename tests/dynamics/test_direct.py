from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from flyby.config.dynamics import DirectDynamicsCfg
from flyby.dynamics.direct import DirectDynamics
from flyby.errors import ConfigError, InvalidAction
from flyby.mdp.actions import ActionCfg, validate_actions

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
    # Clipping is validate_actions' job (the env calls it once per step); the model flies what it gets.
    a, b = make(1), make(1)
    a.step(validate_actions(np.array([[5.0, -3.0, 2.0, 9.0]]), 1), 0.05)
    b.step(np.array([[1.0, -1.0, 1.0, 1.0]]), 0.05)
    np.testing.assert_array_equal(a.pos_w, b.pos_w)


def test_action_scale_comes_from_the_action_cfg():
    fast = DirectDynamics(NOISELESS, 1, ActionCfg(max_velocity=20.0))
    slow = make(1)
    for _ in range(40):
        fast.step(np.array([[1.0, 0.0, 0.0, 0.0]]), 0.05)
        slow.step(np.array([[1.0, 0.0, 0.0, 0.0]]), 0.05)
    assert fast.lin_vel_w[0, 0] == pytest.approx(2.0 * slow.lin_vel_w[0, 0])


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((3, 3)), r"shape \(3, 4\).*got \(3, 3\)"),
        (np.zeros(4), r"got \(4,\)"),
        (np.array([[0, 0, np.nan, 0]] * 3), "NaN/inf at .*\\[0, 2\\]"),
        ("fast", "must be numeric"),
    ],
)
def test_bad_actions_raise_invalid_action(bad, match):
    with pytest.raises(InvalidAction, match=match):
        validate_actions(bad, 3)


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


# ---------------------------------------------------------------- phase-2 extensions

EXTENDED = replace(
    NOISELESS,
    vertical_velocity_damping=0.75,
    velocity_gain=0.9,
    vertical_velocity_gain=1.02,
    max_horizontal_speed=11.0,
    max_climb_rate=3.0,
    max_descent_rate=1.5,
    max_horizontal_acceleration=7.0,
    drag_coefficient=0.35,
    acceleration_damping=0.6,
    max_horizontal_jerk=30.0,
    yaw_coupling_s=0.12,
    yaw_rate_gain=0.95,
    yaw_rate_damping=0.6,
    max_downward_acceleration=8.0,
    thrust_coupling=1.0,
    antiwindup_gain=0.3,
    antiwindup_damping=0.9,
)


def _fly(cfg, actions, dt=0.04, n=1, seed=0):
    dyn = DirectDynamics(cfg, n)
    dyn.reset(np.zeros((n, 3)), np.zeros(n), seed=seed)
    out = []
    for a in actions:
        dyn.step(np.broadcast_to(a, (n, 4)), dt)
        out.append((dyn.pos_w.copy(), dyn.lin_vel_w.copy(), dyn.yaw_rad.copy()))
    return dyn, out


def test_extension_fields_at_their_defaults_reproduce_the_seed_model_bit_for_bit():
    rng = np.random.default_rng(3)
    actions = rng.uniform(-1.2, 1.2, (200, 4))
    explicit = DirectDynamicsCfg(
        vertical_velocity_damping=0.95,
        velocity_gain=1.0,
        vertical_velocity_gain=1.0,
        drag_coefficient=0.0,
        acceleration_damping=0.0,
        yaw_coupling_s=0.0,
        yaw_rate_gain=1.0,
        yaw_rate_damping=0.0,
    )
    for n in (1, 3):
        _, seed = _fly(DirectDynamicsCfg(), actions, n=n)
        _, same = _fly(explicit, actions, n=n)
        for a, b in zip(seed, same):
            for x, y in zip(a, b):
                np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
    "cfg",
    [
        NOISELESS,
        DirectDynamicsCfg(),
        EXTENDED,
        replace(EXTENDED, max_horizontal_jerk=None),
        replace(EXTENDED, acceleration_damping=0.0, max_horizontal_jerk=None, thrust_coupling=0.0),
        replace(EXTENDED, max_climb_rate=None, drag_coefficient=0.0, antiwindup_gain=0.0),
        replace(EXTENDED, position_noise_std=0.02, velocity_noise_std=0.1),
        replace(NOISELESS, velocity_gain=0.9, max_descent_rate=2.0, yaw_rate_damping=0.5),
    ],
)
@pytest.mark.parametrize("n", [1, 5])
def test_compiled_kernel_matches_the_numpy_reference_bit_for_bit(cfg, n, monkeypatch):
    """FLYBY_KERNEL=numba steps the model in flyby.dynamics.direct_kernel: the same numbers as the
    batched numpy reference, every state, with noise (same draws), partial resets and two step lengths."""
    runs = {}
    for kernel in ("numpy", "numba"):
        monkeypatch.setenv("FLYBY_KERNEL", kernel)
        dyn = DirectDynamics(cfg, n)
        dyn.reset(np.tile([[1.0, 2.0, 30.0]], (n, 1)), np.linspace(-3.1, 3.1, n), seed=5)
        rng = np.random.default_rng(1)
        states = []
        for step in range(300):
            if step == 150:
                dyn.reset(np.array([[0.0, 0.0, 5.0]]), np.array([np.pi - 1e-9]), np.array([n - 1]))
            a = validate_actions(rng.uniform(-1.2, 1.2, (n, 4)), n)  # as the env hands them over
            dyn.step(a, 0.05 if step % 7 == 0 else 0.04)
            states.append([getattr(dyn, k).copy() for k in _STATE])
        runs[kernel] = states
    for ref, fast in zip(runs["numpy"], runs["numba"]):
        for name, x, y in zip(_STATE, ref, fast):
            np.testing.assert_array_equal(y, x, err_msg=name)


_STATE = ("pos_w", "lin_vel_w", "yaw_rad", "lin_acc_w", "vel_int_w", "yaw_rate")


def test_compiled_kernel_keeps_the_reference_checks(monkeypatch):
    """Bad input fails the same way on both paths (the env validates actions before either)."""
    for kernel in ("numpy", "numba"):
        monkeypatch.setenv("FLYBY_KERNEL", kernel)
        with pytest.raises(ValueError, match="dt must be > 0 seconds, got nan"):
            make(2).step(np.zeros((2, 4)), math.nan)
        with pytest.raises(ValueError, match="dt must be > 0 seconds, got -0.1"):
            make(2).step(np.zeros((2, 4)), -0.1)


def test_climb_and_descent_limits_and_vertical_time_constant():
    cfg = replace(NOISELESS, vertical_velocity_damping=0.75, max_climb_rate=3.0, max_descent_rate=1.5)
    _, up = _fly(cfg, [[0, 0, 1.0, 0]] * 100)
    _, down = _fly(cfg, [[0, 0, -1.0, 0]] * 100)
    assert math.isclose(up[-1][1][0, 2], 3.0, rel_tol=1e-6) and math.isclose(
        down[-1][1][0, 2], -1.5, rel_tol=1e-6
    )
    # After one time constant (tau = -0.05 / ln 0.75 = 0.174 s) the vertical response is at 1 - 1/e.
    _, small = _fly(cfg, [[0, 0, 0.2, 0]] * 100, dt=0.0174 / 10)
    assert math.isclose(small[-1][1][0, 2], (1 - math.exp(-1)) * 1.0, rel_tol=1e-3)


def test_gains_and_horizontal_speed_limit_set_the_cruise_speed():
    cfg = replace(NOISELESS, velocity_gain=0.9, max_horizontal_speed=11.0)
    _, axis = _fly(cfg, [[1.0, 0, 0, 0]] * 400)
    _, diag = _fly(cfg, [[1.0, 1.0, 0, 0]] * 400)
    np.testing.assert_allclose(axis[-1][1][0], [9.0, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(diag[-1][1][0, :2], [0.9 * 11.0 / math.sqrt(2)] * 2, rtol=1e-6)


def test_thrust_acceleration_limit_with_drag_and_jerk_limit():
    cfg = replace(
        NOISELESS,
        max_horizontal_acceleration=7.0,
        drag_coefficient=0.35,
        max_horizontal_jerk=30.0,
        acceleration_damping=0.6,
    )
    dt = 0.04
    dyn = DirectDynamics(cfg, 1)
    dyn.reset(np.zeros((1, 3)), np.zeros(1))
    thrust, vel = [], []
    for a in [[1.0, 0, 0, 0]] * 100 + [[-1.0, 0, 0, 0]] * 100:
        dyn.step(np.array([a]), dt)
        thrust.append(dyn.lin_acc_w[0, 0])
        vel.append(dyn.lin_vel_w[0, 0])
    thrust, vel = np.array(thrust), np.array(vel)
    assert np.abs(thrust).max() <= 7.0 + 1e-9  # the tilt limit caps the thrust acceleration
    assert np.abs(np.diff(thrust)).max() <= 30.0 * dt + 1e-9  # tilt-rate (jerk) limit
    assert vel[99] > 9.5  # thrust 7 m/s^2 > drag 0.35 * 10 m/s: the target speed is reached
    braking = -np.diff(vel[99:]).min() / dt
    assert braking > 7.0  # drag adds to braking from speed
    with pytest.raises(ConfigError, match="drag_coefficient.*max_horizontal_acceleration"):
        DirectDynamics(replace(NOISELESS, drag_coefficient=0.3), 1)


def test_downward_acceleration_limit_and_thrust_coupling():
    cfg = replace(NOISELESS, vertical_velocity_damping=0.5, max_downward_acceleration=4.0)
    dt = 0.04
    _, down = _fly(cfg, [[0, 0, -1.0, 0]] * 60, dt=dt)
    _, up = _fly(cfg, [[0, 0, 1.0, 0]] * 2, dt=dt)
    vz = np.array([s[1][0, 2] for s in down])
    assert math.isclose(vz[0], -4.0 * dt, rel_tol=1e-9)  # the first step is limited (thrust floor)
    assert np.diff(np.concatenate([[0.0], vz])).min() >= -4.0 * dt - 1e-12 and vz[-1] < -4.99
    assert up[0][1][0, 2] > 4.0 * dt  # climbing is not limited
    # Braking from cruise while the vertical loop cuts thrust brakes less: the delivered horizontal
    # acceleration is (1 + a_z / g) times the one asked for.
    base = replace(
        NOISELESS,
        vertical_velocity_damping=0.5,
        max_horizontal_acceleration=8.0,
        max_downward_acceleration=7.0,
    )
    coupled = replace(base, thrust_coupling=1.0)
    cruise = [[1.0, 0, 0, 0]] * 100
    dyn_b, level = _fly(coupled, cruise + [[-1.0, 0, 0, 0]])
    dyn_c, sink = _fly(coupled, cruise + [[-1.0, 0, -1.0, 0]])
    _, blind = _fly(base, cruise + [[-1.0, 0, -1.0, 0]])
    brake = {
        name: (run[-2][1][0, 0] - run[-1][1][0, 0]) / 0.04
        for name, run in (("level", level), ("sink", sink), ("blind", blind))
    }
    a_z = (sink[-1][1][0, 2] - sink[-2][1][0, 2]) / 0.04
    assert math.isclose(a_z, -7.0, rel_tol=1e-9)
    assert math.isclose(brake["level"], brake["blind"], rel_tol=1e-9)  # no vertical acceleration, no change
    assert math.isclose(brake["sink"], brake["level"] * (1 - 7.0 / 9.80665), rel_tol=1e-9)
    # The scale never turns negative (thrust cannot pull down).
    _, fall = _fly(replace(coupled, thrust_coupling=2.0), cruise + [[-1.0, 0, -1.0, 0]])
    assert fall[-1][1][0, 0] == pytest.approx(fall[-2][1][0, 0])


def test_first_order_yaw_rate_with_gain_and_yaw_coupling():
    cfg = replace(NOISELESS, yaw_rate_gain=0.95, yaw_rate_damping=0.6)
    dyn, _ = _fly(cfg, [[0, 0, 0, 0.5]] * 100)
    assert math.isclose(dyn.yaw_rate[0], 0.95 * 0.5 * math.radians(90), rel_tol=1e-9)
    dyn, _ = _fly(cfg, [[0, 0, 0, 0.5]])
    assert math.isclose(
        dyn.yaw_rate[0], 0.4 * 0.95 * 0.5 * math.radians(90) * (1 - 0.6 ** (0.04 / 0.05)) / 0.4, rel_tol=1e-9
    )
    # Yawing left (counter-clockwise) turns a forward acceleration to the left (+y).
    coupled = replace(cfg, yaw_coupling_s=0.12, yaw_rate_damping=0.0)
    _, left = _fly(coupled, [[1.0, 0, 0, 1.0]] * 10)
    _, right = _fly(coupled, [[1.0, 0, 0, -1.0]] * 10)
    assert left[-1][1][0, 1] > 0.1 and math.isclose(left[-1][1][0, 1], -right[-1][1][0, 1], rel_tol=1e-9)


def test_extended_response_depends_on_the_control_rate_about_as_little_as_the_seed_model():
    # Both update explicitly once per step. What matters is 20 Hz (the training envs) against 25 Hz
    # (full fidelity, where the model is fitted): the same 4 s of commands must give nearly the same flight.
    first, second = [1.0, -0.6, 0.8, 0.7], [-1.0, 0.3, -0.5, -0.2]
    gaps = {}
    for name, cfg in (("seed", NOISELESS), ("extended", EXTENDED)):
        _, at_20hz = _fly(cfg, [first] * 40 + [second] * 40, dt=0.05)
        _, at_25hz = _fly(cfg, [first] * 50 + [second] * 50, dt=0.04)
        gaps[name] = np.linalg.norm(at_20hz[-1][0] - at_25hz[-1][0])
        np.testing.assert_allclose(at_20hz[-1][2], at_25hz[-1][2], atol=0.01)  # rad
    # metres after 4 s (20-30 m flown)
    assert gaps["extended"] < 2.5 * gaps["seed"] and gaps["extended"] < 0.15


def test_reset_zeroes_the_hidden_states_of_the_reset_drones_only():
    dyn = DirectDynamics(EXTENDED, 3)
    dyn.reset(np.zeros((3, 3)), np.zeros(3), seed=0)
    for _ in range(10):
        dyn.step(np.ones((3, 4)), 0.04)
    dyn.reset(np.array([[1.0, 2.0, 3.0]]), np.array([0.5]), np.array([1]))
    assert (dyn.lin_acc_w[1] == 0).all() and dyn.yaw_rate[1] == 0 and (dyn.lin_vel_w[1] == 0).all()
    assert (dyn.lin_acc_w[0, :2] != 0).all() and dyn.yaw_rate[0] != 0
