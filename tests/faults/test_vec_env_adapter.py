"""The SB3 adapter's per-env calls honour ``indices`` as SB3's own ``DummyVecEnv`` does.

Each check runs the same call on a ``DummyVecEnv`` of N ``DirectISR-v0`` envs (SB3's reference
semantics: one env per index) and on ``SB3VecEnvAdapter(MultiDroneISREnv(N))`` (one shared env,
drone i = sub-env i), side by side. Before, ``env_method("reset", indices=[3])`` reset every
drone, out-of-range indices returned values, ``set_attr`` ignored ``indices`` and
``set_options`` was dropped.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from flyby.config.training import load_training_cfg
from flyby.envs.direct_env import DirectISREnv
from flyby.envs.multi_drone_env import MultiDroneISREnv
from flyby.envs.sb3_vec_env import SB3VecEnvAdapter
from flyby.errors import ResetNeeded

N = 4


@pytest.fixture(scope="module")
def pair():
    """(DummyVecEnv of N DirectISR-v0, the adapter over MultiDroneISR-v0 with N drones), both reset."""
    dummy = DummyVecEnv([DirectISREnv for _ in range(N)])
    adapter = SB3VecEnvAdapter(MultiDroneISREnv(num_drones=N))
    for venv in (dummy, adapter):
        venv.seed(0)
        venv.reset()
    yield dummy, adapter
    dummy.close()
    adapter.close()


def call(venv, fn):
    """(result, None) or (None, exception type) of ``fn(venv)``."""
    try:
        return fn(venv), None
    except Exception as exc:  # the type is what is compared
        return None, type(exc)


INDICES = [None, 2, [1, 3], (0,), range(2), [-1], [], [3, 3], np.array([0, 2]), [np.int64(1)]]


@pytest.mark.parametrize("indices", INDICES, ids=repr)
def test_get_attr_returns_one_value_per_index_like_dummy_vec_env(pair, indices):
    dummy, adapter = pair
    want = dummy.get_attr("render_mode", indices)
    got = adapter.get_attr("render_mode", indices)
    assert got == want
    assert len(adapter.get_attr("observation_space", indices)) == len(want)
    assert adapter.env_is_wrapped(object, indices) == [False] * len(want)


@pytest.mark.parametrize("indices", [[N], -N - 1, [0, 99], np.int64(1), 1.0, ["0"]], ids=repr)
def test_bad_indices_fail_like_dummy_vec_env_and_name_the_index(pair, indices):
    dummy, adapter = pair
    _, want = call(dummy, lambda v: v.get_attr("render_mode", indices))
    assert want in (IndexError, TypeError)
    for fn in (
        lambda v: v.get_attr("render_mode", indices),
        lambda v: v.set_attr("render_mode", None, indices),
        lambda v: v.env_method("reset", indices=indices),
        lambda v: v.env_is_wrapped(object, indices),
    ):
        _, got = call(adapter, fn)
        assert got is want
    with pytest.raises(want, match=r"get_attr\('render_mode'\): indices"):
        adapter.get_attr("render_mode", indices)


def test_missing_attribute_is_an_attribute_error_so_has_attr_works(pair):
    dummy, adapter = pair
    for venv in (dummy, adapter):
        with pytest.raises(AttributeError):
            venv.get_attr("no_such_attribute", [0])
        assert venv.has_attr("no_such_attribute") is False
        assert venv.has_attr("render_mode") is True


def test_env_method_reset_of_one_index_resets_only_that_drone(pair):
    dummy, adapter = pair
    for venv in (dummy, adapter):
        venv.step(np.full((N, 4), 0.3, np.float32))
    task = adapter.env.task
    before = task.pos_w.copy()
    steps = task.episode_step.copy()
    start = [12.0, -8.0, 33.0]
    want = dummy.env_method("reset", indices=[3], options={"pos_w": start, "yaw_rad": 0.25})
    got = adapter.env_method("reset", indices=[3], options={"pos_w": start, "yaw_rad": 0.25})
    assert len(got) == len(want) == 1
    (obs, info), (want_obs, want_info) = got[0], want[0]
    assert obs.shape == want_obs.shape and obs.dtype == want_obs.dtype
    assert isinstance(info, dict) and isinstance(want_info, dict)
    np.testing.assert_allclose(task.pos_w[3], start)
    np.testing.assert_allclose(dummy.envs[3].unwrapped.task.pos_w[0], start)
    np.testing.assert_array_equal(task.pos_w[:3], before[:3])  # the others fly on
    assert task.episode_step[:3].tolist() == steps[:3].tolist() and task.episode_step[3] == 0
    np.testing.assert_array_equal(obs, task._get_observations()[3])


def test_env_method_reset_of_every_index_is_a_full_reset(pair):
    dummy, adapter = pair
    adapter.step(np.zeros((N, 4), np.float32))
    got = adapter.env_method("reset", seed=5, indices=None)
    want = dummy.env_method("reset", seed=5, indices=None)
    assert len(got) == len(want) == N
    assert adapter.env.task.world_time_s == 0.0 and (adapter.env.task.episode_step == 0).all()


def test_env_method_reset_rejects_bad_start_poses(pair):
    _, adapter = pair
    with pytest.raises(ValueError, match="drone 1 start .* below the ground"):
        adapter.env_method("reset", indices=[1], options={"pos_w": [0.0, 0.0, -3.0]})


def test_set_attr_on_some_drones_is_refused_naming_method_and_indices(pair):
    dummy, adapter = pair
    dummy.set_attr("flyby_test_tag", 1, indices=[1])
    assert dummy.get_attr("flyby_test_tag", [1]) == [1]
    with pytest.raises(NotImplementedError, match=r"set_attr\('flyby_test_tag'\) with indices=\[1\]"):
        adapter.set_attr("flyby_test_tag", 1, indices=[1])
    assert not hasattr(adapter.env, "flyby_test_tag")
    adapter.set_attr("flyby_test_tag", 2)  # every drone: the shared attribute
    assert adapter.get_attr("flyby_test_tag", [0, 3]) == [2, 2]
    adapter.set_attr("flyby_test_tag", 3, indices=[3, 2, 1, 0])
    assert adapter.env.flyby_test_tag == 3
    adapter.set_attr("flyby_test_tag", 4, indices=[])  # no drone: nothing, as in DummyVecEnv
    assert adapter.env.flyby_test_tag == 3


def test_other_env_methods_on_some_drones_are_refused(pair):
    _, adapter = pair
    with pytest.raises(NotImplementedError, match=r"env_method\('render'\) with indices=\[0, 2\]"):
        adapter.env_method("render", indices=[0, 2])
    with pytest.warns(UserWarning, match="render_mode=None"):
        assert adapter.env_method("render") == [None] * N  # once on the shared env
    assert adapter.env_method("render", indices=[]) == []


def test_set_options_places_each_drone_at_the_next_reset(pair):
    dummy, adapter = pair
    starts = [[float(10 * i), -5.0, 30.0 + i] for i in range(N)]
    for venv in (dummy, adapter):
        venv.set_options([{"pos_w": p, "yaw_rad": 0.1 * i} for i, p in enumerate(starts)])
        venv.reset()
    np.testing.assert_allclose(adapter.env.task.pos_w, starts)
    np.testing.assert_allclose(adapter.env.task.yaw_rad, [0.1 * i for i in range(N)])
    np.testing.assert_allclose([e.unwrapped.task.pos_w[0] for e in dummy.envs], starts)
    adapter.reset()  # options are used once
    assert not np.allclose(adapter.env.task.pos_w, starts)
    adapter.set_options([{"pos_w": starts[0]}] + [{} for _ in range(N - 1)])
    with pytest.raises(ValueError, match=r"'pos_w' missing for drones \[1, 2, 3\]"):
        adapter.reset()
    adapter.set_options({"junk": 1})
    with pytest.raises(ValueError, match=r"unknown reset options \['junk'\]"):
        adapter.reset()
    adapter.set_options(None)
    adapter.reset()


def test_step_before_reset_raises_reset_needed():
    adapter = SB3VecEnvAdapter(MultiDroneISREnv(num_drones=2))
    with pytest.raises(ResetNeeded):
        adapter.step(np.zeros((2, 4), np.float32))
    with pytest.raises(ResetNeeded, match="reset every env first"):
        adapter.env_method("reset", indices=[0])


def test_sb3_evaluation_and_vec_normalize_use_the_adapter_as_before():
    """What SB3 itself calls (get_attr render_mode/metadata, env_is_wrapped(Monitor)) still works."""
    from stable_baselines3.common.evaluation import evaluate_policy

    cfg = dataclasses.replace(load_training_cfg().multi_drone_env, episode_length_s=0.25)
    venv = VecNormalize(SB3VecEnvAdapter(MultiDroneISREnv(num_drones=2, cfg=cfg)))

    class Hover:
        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            return np.zeros((len(obs), 4), np.float32), state

    with pytest.warns(UserWarning, match="Monitor"):
        rewards, lengths = evaluate_policy(Hover(), venv, n_eval_episodes=4, return_episode_rewards=True)
    assert len(rewards) == 4 and set(lengths) == {5}
    assert venv.get_attr("metadata", [0])[0]["autoreset_mode"] is not None
    venv.close()
