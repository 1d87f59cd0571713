"""Flight scenarios against real PX4 SITL.

Marked ``px4``: skipped without PX4, failed under FLYBY_REQUIRE_PX4=1.

Runs when PX4 is found: ``PX4_DIR=/path/to/PX4-Autopilot`` (built with ``make px4_sitl_default``)
or ``px4`` on PATH; ``.ci/run`` unpacks the v1.16.2 build in ``../shared/px4/``. PX4's logs go
to ``output/logs/``. Each scenario asserts flight criteria PX4 can fail, and prints its figures
(``pytest tests/px4 -m px4 -s``):

- take-off and hover, 1 and 2 instances, on the bare lockstep rig (no env);
- the env's take-off phase: ``reset`` to an altitude start flies there and counts nothing;
- a ground start: armed on the ground, no crash, lifts off when the policy climbs;
- a velocity step response (10-90 % rise time, overshoot, steady-state error);
- yaw-rate tracking.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from px4_rig import RigidBodySim, make_sensors
from px4_scenarios import assert_took_off_and_hovered, takeoff_hover

pytestmark = pytest.mark.px4


@pytest.mark.parametrize("num_drones", [1, 2])
def test_takeoff_and_hover_on_real_px4(px4_binary, num_drones, capsys):
    from flyby.px4.flight_stack import PX4FlightStack

    sim = RigidBodySim(num_drones, pos_w=[[3.0 * k, 0.0, 0.0] for k in range(num_drones)])
    before = os.sched_getaffinity(0)
    with PX4FlightStack(num_drones, sensors=make_sensors(num_drones), startup_timeout_s=180.0) as stack:
        pinned = {inst.process.cpu for inst in stack._instances} - {None}
        if len(before) > len(pinned):  # PX4 on its own CPU(s), the lockstep loop on the others
            assert pinned and not (os.sched_getaffinity(0) & pinned)
        # PX4's take-off ramp (MPC_TKO_RAMP_T 3 s) must finish inside the climb: climb 5 s at 1 m/s.
        result = takeoff_hover(stack, sim, climb_s=5.0, hover_s=6.0)
        rtt_us = stack.round_trip_times_s() * 1e6
        with capsys.disabled():
            print(
                f"\nreal PX4 ({px4_binary}), {num_drones} drone(s): hover at "
                f"{result.hover_heights[-1].round(2)} m, "
                f"lockstep round trip mean {rtt_us.mean():.0f} us, p99 {np.percentile(rtt_us, 99):.0f} us, "
                f"logs {stack.log_paths}"
            )
        assert_took_off_and_hovered(result, min_alt_m=1.5, max_alt_m=4.0, band_m=0.3)
    assert os.sched_getaffinity(0) == before  # close() gives the thread its CPUs back


@pytest.fixture(scope="module")
def px4_env(px4_binary):
    from flyby.envs.px4_env import PX4ISREnv

    env = PX4ISREnv(flight_stack="px4")
    yield env
    env.close()


def test_takeoff_phase_reaches_the_start_and_is_not_part_of_the_episode(px4_env, capsys):
    env = px4_env
    start = np.array([0.0, 0.0, 20.0])
    _, info = env.reset(seed=0, options={"pos_w": start, "yaw_rad": 0.4})
    task = env.task
    tol = env.cfg.px4.takeoff.position_tolerance_m
    assert info["flight_stack"] == "px4"
    assert info["takeoff_s"] > 3.0, "an altitude start must climb from the ground under PX4"
    assert np.linalg.norm(task.pos_w[0] - start) < tol, task.pos_w
    assert abs(task.yaw_rad[0] - 0.4) < 0.05
    # The episode starts after the take-off: step 0, clock 0, nothing summed.
    assert task.episode_step[0] == 0 and task.world_time_s == 0.0
    assert all(float(v[0]) == 0.0 for v in task.episode_sums.values())
    _, reward, terminated, truncated, _ = env.step(np.zeros(4, dtype=np.float32))
    assert not terminated and not truncated and task.episode_step[0] == 1
    with capsys.disabled():
        print(
            f"\ntake-off phase to 20 m: {info['takeoff_s']:.1f} s of sim time, reached "
            f"{task.pos_w[0].round(2)} m"
        )


def test_ground_start_is_no_crash_and_lifts_off_on_a_climb(px4_env, capsys):
    env = px4_env
    env.reset(seed=0, options={"pos_w": [5.0, 5.0, 0.0], "yaw_rad": 0.0})
    task = env.task
    assert task.pos_w[0, 2] < 0.2 and env._controller.armed.all(), "a ground start begins armed on the ground"
    zero = np.zeros(4, dtype=np.float32)
    for _ in range(int(2.0 / env.cfg.step_dt)):  # 2 s on the ground with a zero setpoint
        _, _, terminated, _, _ = env.step(zero)
        assert not terminated, "a drone on the ground before take-off is not a crash"
    assert task.pos_w[0, 2] < 0.3, "a zero setpoint must keep PX4 on the ground"
    climb = np.array([0.0, 0.0, 0.4, 0.0], dtype=np.float32)  # 2 m/s up
    heights = []
    for _ in range(int(8.0 / env.cfg.step_dt)):
        _, _, terminated, _, _ = env.step(climb)
        heights.append(task.pos_w[0, 2])
        assert not terminated
    lift_off_s = np.argmax(np.array(heights) > env.cfg.terminations.min_altitude_m) * env.cfg.step_dt
    with capsys.disabled():
        print(
            f"\nground start: lift-off (past {env.cfg.terminations.min_altitude_m} m) {lift_off_s:.2f} s "
            f"after "
            f"the climb command, {heights[-1]:.1f} m after 8 s"
        )
    assert heights[-1] > 8.0, f"climbing at 2 m/s for 8 s reached only {heights[-1]:.2f} m"


def test_velocity_step_response(px4_env, capsys):
    env = px4_env
    env.reset(seed=0, options={"pos_w": [0.0, 0.0, 20.0], "yaw_rad": 0.0})
    dt = env.cfg.step_dt
    target = 5.0  # m/s east: action 0.5 of the 10 m/s scale
    action = np.array([target / env.cfg.actions.max_velocity, 0.0, 0.0, 0.0], dtype=np.float32)
    for _ in range(int(1.0 / dt)):
        env.step(np.zeros(4, dtype=np.float32))
    vel, alt = [], []
    for _ in range(int(8.0 / dt)):
        env.step(action)
        vel.append(env.task.dynamics.lin_vel_w[0].copy())
        alt.append(env.task.pos_w[0, 2])
    vel = np.array(vel)
    vx = vel[:, 0]
    rise_s = (np.argmax(vx >= 0.9 * target) - np.argmax(vx >= 0.1 * target)) * dt
    overshoot = max(0.0, (vx.max() - target) / target)
    steady = vx[-int(2.0 / dt) :].mean()
    with capsys.disabled():
        print(
            f"\nPX4 velocity step 0 -> {target} m/s: rise time (10-90 %) {rise_s:.2f} s, overshoot "
            f"{100 * overshoot:.1f} %, "
            f"steady state {steady:.2f} m/s, altitude {min(alt):.2f}..{max(alt):.2f} m, cross-track "
            f"{np.abs(vel[:, 1]).max():.2f} m/s"
        )
    assert 0.3 < rise_s < 2.5, f"rise time {rise_s:.2f} s (PX4 defaults: about 1.7 s)"
    assert overshoot < 0.15, f"overshoot {100 * overshoot:.1f} %"
    assert abs(steady - target) < 0.05 * target, f"steady-state {steady:.2f} m/s for {target} m/s"
    assert np.ptp(alt) < 1.0 and np.abs(vel[:, 1]).max() < 0.5


def test_yaw_rate_tracking(px4_env, capsys):
    env = px4_env
    env.reset(seed=0, options={"pos_w": [0.0, 0.0, 20.0], "yaw_rad": 0.0})
    dt = env.cfg.step_dt
    command = 0.5 * np.radians(env.cfg.actions.max_yaw_rate)  # rad/s
    yaw = []
    for _ in range(int(6.0 / dt)):
        env.step(np.array([0.0, 0.0, 0.0, 0.5], dtype=np.float32))
        yaw.append(env.task.yaw_rad[0])
    rate = np.diff(np.unwrap(yaw)) / dt
    settle_s = (np.argmax(rate >= 0.9 * command) + 1) * dt
    tracked = rate[-int(3.0 / dt) :]
    with capsys.disabled():
        print(
            f"\nPX4 yaw-rate {command:.3f} rad/s: 90 % after {settle_s:.2f} s, last 3 s {tracked.mean():.3f} "
            f"+- {tracked.std():.3f} rad/s"
        )
    assert settle_s < 1.0, f"yaw rate reached 90 % after {settle_s:.2f} s"
    assert abs(tracked.mean() - command) < 0.05 * command and tracked.std() < 0.05 * command
