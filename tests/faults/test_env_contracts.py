"""Env contracts under bad input: reset order, start poses, reset options, non-real actions.

Every registered env (``DirectISR-v0``, ``MultiDroneISR-v0``, ``PX4ISR-v0`` on the built-in
cascade) must refuse, with an error that names the value and the fix:

- a ``step`` before the first ``reset`` or after ``close`` (``ResetNeeded``, also Gymnasium's);
- a start pose inside a building, below the ground, outside the geofence, of the wrong shape
  or not real/finite, all checked in one place (``flyby.envs.isr_task.check_start_poses``);
- an unknown ``reset`` option key (the multi-drone env used to ignore every option);
- complex, NaN or inf actions (complex ones used to lose their imaginary part silently).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from flyby.envs import isr_task
from flyby.envs.direct_env import DirectISREnv
from flyby.envs.multi_drone_env import MultiDroneISREnv
from flyby.errors import FlybyError, InvalidAction, ResetNeeded

N = 3  # drones of the multi-drone env in these tests
KINDS = ("direct", "multi", "px4")


@pytest.fixture(scope="module")
def px4_cfg():
    from flyby.config.evaluation import load_evaluation_cfg

    return load_evaluation_cfg().px4_env


def make(kind: str, px4_cfg=None):
    """A fresh env of ``kind``; ``n`` is its number of drones."""
    if kind == "direct":
        return DirectISREnv(), 1
    if kind == "multi":
        return MultiDroneISREnv(num_drones=N), N
    from flyby.envs.px4_env import PX4ISREnv

    return PX4ISREnv(px4_cfg, flight_stack="cascade"), 1


@pytest.fixture(scope="module", params=KINDS)
def env_n(request, px4_cfg):
    """One env per kind for the module (building PX4ISR-v0 takes a second); tests reset it first."""
    env, n = make(request.param, px4_cfg)
    yield env, n
    env.close()


@pytest.fixture(params=KINDS)
def fresh_env_n(request, px4_cfg):
    """A new env per test, for tests of reset order and close."""
    env, n = make(request.param, px4_cfg)
    yield env, n
    env.close()


def batch(a: np.ndarray, n: int) -> np.ndarray:
    """One drone's action (4,) as the env's action: (4,) for single-drone envs, (n, 4) otherwise."""
    return a if n == 1 else np.tile(a, (n, 1))


def poses(p, n: int):
    """One start position (3,) as the env's ``pos_w`` option."""
    return p if n == 1 else np.tile(p, (n, 1))


def clear_spot(world) -> np.ndarray:
    """An (x, y) at least 5 m from every building, well inside the area (a ground start there is valid)."""
    for x in np.linspace(-60, 60, 25):
        for y in np.linspace(-60, 60, 25):
            p = np.array([[x, y, 1.0]])
            if not world.points_in_buildings(p, 5.0)[0]:
                return p[0, :2]
    raise AssertionError("no clear spot in the world")


# ---------------------------------------------------------------- reset order


def test_reset_needed_is_flybys_and_gymnasiums():
    assert issubclass(ResetNeeded, FlybyError)
    assert issubclass(ResetNeeded, gym.error.ResetNeeded)


def test_step_before_reset_raises_reset_needed(fresh_env_n):
    env, n = fresh_env_n
    with pytest.raises(ResetNeeded, match=r"before its first reset\(\).*call reset\(\) first"):
        env.step(batch(np.zeros(4, np.float32), n))


def test_multi_drone_env_from_make_vec_refuses_a_step_before_reset():
    """gym.make puts an order-enforcing wrapper on single-drone envs; make_vec gives none."""
    venv = gym.make_vec("flyby/MultiDroneISR-v0", num_envs=2, vectorization_mode="vector_entry_point")
    with pytest.raises(gym.error.ResetNeeded):
        venv.step(np.zeros((2, 4), np.float32))
    venv.close()


def test_step_after_close_raises_reset_needed_and_reset_reopens(fresh_env_n):
    env, n = fresh_env_n
    env.reset(seed=0)
    env.step(batch(np.zeros(4, np.float32), n))
    env.close()
    with pytest.raises(ResetNeeded, match=r"after close\(\)"):
        env.step(batch(np.zeros(4, np.float32), n))
    obs, _ = env.reset(seed=0)
    out = env.step(batch(np.zeros(4, np.float32), n))
    assert np.isfinite(out[0]).all() and np.shape(out[0]) == np.shape(obs)


# ------------------------------------------------------------- start poses


def test_start_inside_a_building_names_the_building(env_n):
    env, n = env_n
    world = env.task.world
    lo, hi = world.building_min_w[0], world.building_max_w[0]
    centre = (lo + hi) / 2
    with pytest.raises(ValueError, match=r"inside building 0 \(x .*\.\..*, y .*, z .*m\)") as exc:
        env.reset(seed=0, options={"pos_w": poses(centre, n)})
    assert str(np.round(centre, 3).tolist()) in str(exc.value)
    assert "drone_radius_m" in str(exc.value)


@pytest.mark.parametrize(
    ("pos", "what"),
    [
        ([0.0, 0.0, -5.0], r"below the ground \(z < 0 m\)"),
        ([1e6, 0.0, 30.0], "outside the geofence"),
        ([0.0, -150.0, 30.0], "outside the geofence"),
        ([0.0, 0.0, 500.0], "outside the geofence"),
    ],
)
def test_start_below_ground_or_outside_the_geofence_names_value_and_region(env_n, pos, what):
    env, n = env_n
    half = env.task.world.half_extent
    top = env.cfg.terminations.max_altitude_m
    with pytest.raises(ValueError, match=what) as exc:
        env.reset(seed=0, options={"pos_w": poses(np.array(pos), n)})
    msg = str(exc.value)
    assert str(np.round(pos, 3).tolist()) in msg
    assert f"|x| <= {half[0]:g} m" in msg and f"|y| <= {half[1]:g} m" in msg and f"z <= {top:g} m" in msg


@pytest.mark.parametrize(
    "bad",
    [[1.0, 2.0], [[1.0, 2.0, 30.0, 4.0]], "north", [0.0, 1j, 30.0], [0.0, np.inf, 30.0], [[1.0, 2.0], [3.0]]],
    ids=["too-short", "too-long", "string", "complex", "inf", "ragged"],
)
def test_start_of_the_wrong_shape_or_type_is_a_clear_error(env_n, bad):
    env, n = env_n
    value = bad if n == 1 or isinstance(bad, str) else [bad] * n
    with pytest.raises(ValueError, match=r"reset option pos_w must be (real numbers|finite)"):
        env.reset(seed=0, options={"pos_w": value})


def test_yaw_of_the_wrong_shape_is_a_clear_error(env_n):
    env, n = env_n
    with pytest.raises(ValueError, match=r"reset option yaw_rad must be real numbers of shape"):
        env.reset(seed=0, options={"yaw_rad": np.zeros(n + 1)})


def test_a_rejected_start_changes_nothing(env_n):
    env, n = env_n
    env.reset(seed=0)
    env.step(batch(np.full(4, 0.3, np.float32), n))
    before = env.task.pos_w.copy(), env.task.world_time_s, env.task.episode_step.copy()
    with pytest.raises(ValueError):
        env.reset(seed=1, options={"pos_w": poses(np.array([0.0, 0.0, -1.0]), n)})
    np.testing.assert_array_equal(env.task.pos_w, before[0])
    assert env.task.world_time_s == before[1]
    np.testing.assert_array_equal(env.task.episode_step, before[2])
    env.step(batch(np.zeros(4, np.float32), n))  # still running: no ResetNeeded


def test_ground_start_on_a_clear_spot_is_allowed(env_n):
    env, n = env_n
    xy = clear_spot(env.task.world)
    env.reset(seed=0, options={"pos_w": poses(np.array([xy[0], xy[1], 0.12]), n)})
    assert env.task.pos_w[:, 2].min() >= 0.0


def test_every_env_checks_start_poses_in_one_place(monkeypatch, px4_cfg):
    calls = []
    real = isr_task.check_start_poses

    def spy(*args, **kwargs):
        calls.append(args[2])  # num_envs
        return real(*args, **kwargs)

    monkeypatch.setattr(isr_task, "check_start_poses", spy)
    for kind in KINDS:
        env, n = make(kind, px4_cfg)
        try:
            env.reset(seed=0, options={"pos_w": poses(np.array([0.0, 0.0, 40.0]), n)})
        finally:
            env.close()
    assert sorted(set(calls)) == [1, N]
    assert len(calls) >= 3


def test_many_bad_starts_are_reported_at_once():
    env = MultiDroneISREnv(num_drones=3)
    with pytest.raises(ValueError) as exc:
        env.reset(seed=0, options={"pos_w": [[0.0, 0.0, -1.0], [0.0, 0.0, 40.0], [500.0, 0.0, 40.0]]})
    msg = str(exc.value)
    assert "drone 0 start [0.0, 0.0, -1.0] m is below the ground" in msg
    assert "drone 2 start [500.0, 0.0, 40.0] m is outside the geofence" in msg
    assert "drone 1" not in msg


# ------------------------------------------------- multi-drone reset options


def test_multi_drone_reset_places_each_drone():
    env = MultiDroneISREnv(num_drones=N)
    pos = np.array([[10.0, -20.0, 30.0], [0.0, 0.0, 40.0], [-30.0, 25.0, 50.0]])
    yaw = np.array([0.5, -1.0, 2.0])
    env.reset(seed=0, options={"pos_w": pos, "yaw_rad": yaw})
    np.testing.assert_allclose(env.task.pos_w, pos)
    np.testing.assert_allclose(env.task.yaw_rad, yaw)
    env.reset(seed=0, options={"yaw_rad": yaw})  # pos_w alone or yaw_rad alone: the other is random
    np.testing.assert_allclose(env.task.yaw_rad, yaw)


def test_multi_drone_reset_rejects_unknown_keys_naming_them_and_the_known_ones():
    env = MultiDroneISREnv(num_drones=N)
    with pytest.raises(ValueError, match=r"unknown reset options \['altitude', 'junk'\]") as exc:
        env.reset(options={"junk": 1, "altitude": 3, "pos_w": np.zeros((N, 3))})
    assert f"'pos_w' ({N}, 3) m world ENU" in str(exc.value)
    assert f"'yaw_rad' ({N},) rad" in str(exc.value)
    assert "'reset_mask'" in str(exc.value)
    with pytest.raises(TypeError, match="must be a dict"):
        env.reset(options=[("pos_w", [0, 0, 40])])


def test_multi_drone_reset_needs_one_row_per_drone():
    env = MultiDroneISREnv(num_drones=N)
    with pytest.raises(
        ValueError, match=rf"shape \({N}, 3\) \(metres, world ENU\), got dtype float64, shape \(3,\)"
    ):
        env.reset(options={"pos_w": [0.0, 0.0, 40.0]})
    with pytest.raises(ValueError, match=rf"shape \({N}, 3\)"):
        env.reset(options={"pos_w": np.zeros((N + 1, 3)) + 40})


def test_multi_drone_partial_reset_with_reset_mask():
    env = MultiDroneISREnv(num_drones=N)
    mask = np.array([False, True, False])
    with pytest.raises(ResetNeeded, match="reset every env first"):
        env.reset(options={"reset_mask": mask})
    env.reset(seed=0)
    for _ in range(3):
        env.step(np.full((N, 4), 0.2, np.float32))
    pos, t = env.task.pos_w.copy(), env.task.world_time_s
    target = np.array([[0.0, 0.0, 0.0], [12.0, -8.0, 33.0], [0.0, 0.0, -50.0]])  # rows 0, 2 are not read
    obs, _ = env.reset(options={"reset_mask": mask, "pos_w": target})
    np.testing.assert_allclose(env.task.pos_w[1], target[1])
    np.testing.assert_array_equal(env.task.pos_w[[0, 2]], pos[[0, 2]])
    assert env.task.world_time_s == t  # the shared clock runs on
    assert env.task.episode_step.tolist() == [3, 0, 3]
    assert obs.shape == (N, env.task.obs_dim)
    with pytest.raises(ValueError, match="drone 1 start .* below the ground"):
        env.reset(options={"reset_mask": mask, "pos_w": -target})
    with pytest.raises(TypeError, match="numpy bool array"):
        env.reset(options={"reset_mask": [False, True, False]})
    with pytest.raises(ValueError, match="at least one True"):
        env.reset(options={"reset_mask": np.zeros(N, dtype=bool)})


# ------------------------------------------------------------------ actions


@pytest.mark.parametrize(
    ("value", "what"),
    [
        (0.5 + 0.5j, "must be real numbers, got dtype complex128 with imaginary parts"),
        (0.5 + 0j, "complex"),
        (np.nan, "NaN/inf"),
        (np.inf, "NaN/inf"),
        (-np.inf, "NaN/inf"),
    ],
    ids=["complex", "complex-real-valued", "nan", "inf", "-inf"],
)
def test_complex_nan_and_inf_actions_are_rejected(env_n, value, what):
    env, n = env_n
    env.reset(seed=0)
    a = np.zeros(4, dtype=np.asarray(value).dtype)
    a[1] = value
    with pytest.raises(InvalidAction, match=what):
        env.step(batch(a, n))
    env.step(batch(np.zeros(4, np.float32), n))  # a refused action leaves the env running


def test_complex_python_list_action_is_rejected():
    env = MultiDroneISREnv(num_drones=2)
    env.reset(seed=0)
    with pytest.raises(InvalidAction, match=r"imaginary parts at \(env, channel\) \[\[1, 3\]\]"):
        env.step([[0.0, 0.0, 0.0, 0.0], [0.1, 0.2, 0.3, 0.4 + 1e-9j]])
