"""Rotor-level Iris model: constants, motor lag, thrust at hover, wrench signs and drag."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flyby.config import check
from flyby.dynamics.multirotor import MultirotorCfg, RotorModel
from flyby.errors import ConfigError
from flyby.geometry import STANDARD_GRAVITY

FRONT_RIGHT, BACK_LEFT, FRONT_LEFT, BACK_RIGHT = range(4)  # PX4 motor order


def test_iris_constants_and_hover_point():
    cfg = check(MultirotorCfg())
    assert cfg.mass_kg == 1.5 and cfg.k_f == 5.84e-6 and cfg.k_m == 0.06
    # PX4 quad-x order: 1 front-right CCW, 2 back-left CCW, 3 front-left CW, 4 back-right CW.
    pos = np.asarray(cfg.rotor_pos_b)
    assert (pos[[FRONT_RIGHT, FRONT_LEFT], 0] > 0).all() and (pos[[BACK_LEFT, BACK_RIGHT], 0] < 0).all()
    assert (pos[[BACK_LEFT, FRONT_LEFT], 1] > 0).all() and (pos[[FRONT_RIGHT, BACK_RIGHT], 1] < 0).all()
    assert cfg.rotor_dir == (1, 1, -1, -1)
    # Hover: 4 k_f w^2 = m g at w = 793.5 rad/s, i.e. u = 0.694 with w = 1000 u + 100.
    assert cfg.hover_omega == pytest.approx(math.sqrt(1.5 * STANDARD_GRAVITY / (4 * 5.84e-6)))
    assert cfg.hover_u == pytest.approx((cfg.hover_omega - 100.0) / 1000.0)
    assert cfg.max_total_thrust_n == pytest.approx(4 * 5.84e-6 * 1100.0**2)


def test_thrust_at_hover_balances_weight_without_torque():
    cfg = MultirotorCfg()
    rotors = RotorModel(cfg, 2)
    omega = np.full((2, 4), cfg.hover_omega)
    force, torque = rotors.wrench_b(omega)
    np.testing.assert_allclose(force, [[0, 0, cfg.mass_kg * STANDARD_GRAVITY]] * 2, rtol=1e-12)
    np.testing.assert_allclose(torque, 0.0, atol=1e-12)


def test_motor_first_order_lag_up_and_down():
    cfg = MultirotorCfg()
    rotors = RotorModel(cfg, 1)
    u = np.full((1, 4), 0.7)
    target = 1000.0 * 0.7 + 100.0
    dt = 0.0005
    steps_tau = round(cfg.motor_tau_up_s / dt)
    for _ in range(steps_tau):
        omega = rotors.step(u, np.array([True]), dt)
    # Exact discretisation: after one time constant, 1 - 1/e of the step.
    np.testing.assert_allclose(omega, target * (1 - math.exp(-1)), rtol=1e-9)
    for _ in range(40 * steps_tau):
        omega = rotors.step(u, True, dt)
    np.testing.assert_allclose(omega, target, rtol=1e-9)
    # Spin-down to idle (u = 0, armed) follows the slower down time constant.
    for _ in range(round(cfg.motor_tau_down_s / dt)):
        omega = rotors.step(np.zeros((1, 4)), True, dt)
    np.testing.assert_allclose(omega, 100.0 + (target - 100.0) * math.exp(-1), rtol=1e-9)


def test_commands_are_clipped_and_disarmed_rotors_stop():
    cfg = MultirotorCfg()
    rotors = RotorModel(cfg, 2)
    rotors.reset(omega=500.0)
    for _ in range(2000):
        omega = rotors.step(
            np.array([[2.0, -1.0, 0.5, 1.0], [1.0, 1.0, 1.0, 1.0]]), np.array([True, False]), 0.004
        )
    np.testing.assert_allclose(omega[0], [1100.0, 100.0, 600.0, 1100.0], rtol=1e-9)
    np.testing.assert_allclose(omega[1], 0.0, atol=1e-9)
    rotors.reset(np.array([1]), omega=cfg.hover_omega)
    assert (rotors.omega[1] == cfg.hover_omega).all() and (rotors.omega[0] != cfg.hover_omega).any()
    with pytest.raises(ValueError, match="shape"):
        rotors.step(np.zeros((1, 4)), True, 0.004)
    with pytest.raises(ValueError, match="dt"):
        rotors.step(np.zeros((2, 4)), True, 0.0)
    with pytest.raises(ValueError, match="dt"):
        RotorModel(cfg, 1).step(np.zeros((1, 4)), True, -0.004)


def _torque_with_boost(index: int) -> np.ndarray:
    cfg = MultirotorCfg()
    omega = np.full((1, 4), cfg.hover_omega)
    omega[0, index] += 50.0
    return RotorModel(cfg, 1).wrench_b(omega)[1][0]


def test_front_left_rotor_rolls_right_pitches_up_and_yaws_ccw():
    # FLU: +x roll lifts the left side, -y pitch lifts the nose, +z yaw is counter-clockwise.
    # Front-left spins CW, so its reaction torque on the body is CCW (+z).
    roll, pitch, yaw = _torque_with_boost(FRONT_LEFT)
    assert roll > 0 and pitch < 0 and yaw > 0


@pytest.mark.parametrize(
    ("index", "signs"),
    [
        (FRONT_RIGHT, (-1, -1, -1)),  # lifts right side and nose; CCW rotor -> CW reaction
        (BACK_LEFT, (1, 1, -1)),  # lifts left side and tail; CCW rotor
        (BACK_RIGHT, (-1, 1, 1)),  # lifts right side and tail; CW rotor -> CCW reaction
    ],
)
def test_rotor_torque_signs(index, signs):
    assert tuple(np.sign(_torque_with_boost(index)).astype(int)) == signs


def test_yaw_reaction_is_moment_constant_times_thrust():
    cfg = MultirotorCfg()
    rotors = RotorModel(cfg, 1)
    omega = np.array([[800.0, 800.0, 0.0, 0.0]])  # only the two CCW rotors
    force, torque = rotors.wrench_b(omega)
    assert torque[0, 2] == pytest.approx(-cfg.k_m * force[0, 2])


def test_linear_drag_opposes_body_velocity():
    cfg = MultirotorCfg()
    rotors = RotorModel(cfg, 1)
    v_b = np.array([[2.0, -1.0, 0.5]])
    f_drag, _ = rotors.wrench_b(np.zeros((1, 4)), v_b)
    np.testing.assert_allclose(f_drag, -np.asarray(cfg.drag_coeff_b) * v_b)
    assert f_drag[0, 0] < 0 and f_drag[0, 1] > 0


def test_bad_airframe_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        check(MultirotorCfg(rotor_dir=(1, 1, 1, 2), mass_kg=10.0))
    msg = str(info.value)
    assert "rotor_dir" in msg and "k_f" in msg
    with pytest.raises(ValueError, match="num_drones"):
        RotorModel(MultirotorCfg(), 0)


def test_compiled_rotors_agree_with_the_reference():
    """flyby.dynamics.multirotor_kernel.rotors_into against RotorModel.step + wrench_b with the drag
    on rotate_inverse's body velocity: rotor speeds bit for bit, the wrench to rounding (1e-12)."""
    from flyby.dynamics.multirotor_kernel import rotors_into
    from flyby.geometry import rotate_inverse

    cfg = MultirotorCfg(drag_coeff_b=(0.56, 0.4, 0.1))  # a z drag too, so every term is compared
    rng = np.random.default_rng(3)
    n, dt = 6, 0.004
    reference, compiled = RotorModel(cfg, n), RotorModel(cfg, n)
    omega, params, torque_per_thrust = compiled.kernel_params(dt)
    assert omega is compiled.omega  # the model's own speeds, advanced in place
    ctrl = np.empty((n, 6))
    for step in range(300):
        u = rng.uniform(-0.3, 1.3, (n, 4))  # beyond [0, 1] too: clipped
        armed = rng.uniform(size=n) > 0.2 if step % 50 < 40 else np.zeros(n, bool)
        quat = rng.normal(size=(n, 4))
        quat /= np.linalg.norm(quat, axis=1, keepdims=True)
        qpos = np.concatenate([rng.normal(size=(n, 3)), quat], axis=1)
        qvel = rng.normal(0, 5, (n, 6))
        worst = rotors_into(u, armed, omega, params, torque_per_thrust, qpos, qvel, ctrl)
        force, torque = reference.wrench_b(reference.step(u, armed, dt), rotate_inverse(quat, qvel[:, :3]))
        assert compiled.omega.tobytes() == reference.omega.tobytes()
        np.testing.assert_allclose(ctrl, np.concatenate([force, torque], axis=1), rtol=1e-12, atol=1e-12)
        assert worst == np.abs(ctrl).max()
    qvel[0, 1] = np.nan  # a NaN velocity makes a NaN drag force: reported as inf, for the caller's check
    assert rotors_into(u, armed, omega, params, torque_per_thrust, qpos, qvel, ctrl) == math.inf
    with pytest.raises(ValueError, match="dt must be > 0 seconds, got 0.0"):
        compiled.kernel_params(0.0)
