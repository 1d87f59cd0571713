"""Manager-style terms: a reward or termination term of your own is one function and one config line.

Each term is a pure batched function of the task, declared in ``rewards.terms`` /
``terminations.terms`` (Python or YAML ``"module:function"``), run beside flyby's built-in terms
and logged per term with IsaacLab's ``Episode_Reward/<k>`` meaning (episode sum / episode_length_s)
beside the raw ``Episode_Return/<k>``.
"""

from __future__ import annotations

import dataclasses
import textwrap

import numpy as np
import pytest

from flyby.config import cfg_hash, to_dict
from flyby.config.training import load_training_cfg
from flyby.envs.isr_task import ISRTask
from flyby.errors import ConfigError
from flyby.mdp import rewards as rew_mdp
from flyby.mdp.terms import DoneTerm, ObsTerm, RewTerm


def altitude(task, target_m: float = 30.0) -> np.ndarray:
    """(N,) float: minus the distance from a target altitude, metres (a user reward term)."""
    return -np.abs(task.pos_w[:, 2] - target_m)


def multi_cfg(**kw):
    return dataclasses.replace(load_training_cfg().multi_drone_env, **kw)


def run(task: ISRTask, steps: int, seed: int = 1, autoreset: bool = True):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        yield task.step(rng.uniform(-1, 1, (task.num_envs, 4)), autoreset=autoreset)


def started(cfg, n: int = 4) -> ISRTask:
    task = ISRTask(cfg, num_envs=n)
    task.seed(0)
    task.reset_all()
    return task


def test_a_reward_term_is_one_function_and_one_config_line():
    base_cfg = multi_cfg()
    cfg = multi_cfg()
    cfg.rewards.terms["altitude"] = RewTerm(func=altitude, weight=0.5)  # the one config line
    base, task = started(base_cfg), started(cfg)
    for res_base, res in zip(run(base, 15, autoreset=False), run(task, 15, autoreset=False), strict=True):
        # The user term is summed after the built-ins: exactly base reward + 0.5 * altitude.
        assert res.reward.tobytes() == (res_base.reward + 0.5 * altitude(task)).tobytes()
        assert res.obs.tobytes() == res_base.obs.tobytes()
    assert not np.array_equal(task.episode_sums["altitude"], 0.0)
    for k in rew_mdp.REWARD_TERMS:  # built-in sums untouched by the new term
        assert task.episode_sums[k].tobytes() == base.episode_sums[k].tobytes(), k


def test_episode_reward_is_the_episode_sum_per_second_and_episode_return_the_sum():
    cfg = multi_cfg(episode_length_s=1.0)
    cfg.rewards.terms["altitude"] = RewTerm(func=altitude, weight=0.5, params={"target_m": 25.0})
    task = started(cfg, n=3)
    mine = np.zeros(3)  # the altitude term's episode sums, accumulated here
    logs = 0
    for res in run(task, 45, autoreset=False):
        mine += 0.5 * altitude(task, target_m=25.0)
        ended = res.done_ids
        if not ended.size:
            continue
        logs += 1
        log = res.log
        assert log["Episode_Return/altitude"] == mine[ended].mean() < 0.0
        for k in cfg.rewards.terms:
            episode_sum = task.episode_sums[k][ended].mean()
            assert log[f"Episode_Return/{k}"] == episode_sum, k
            # IsaacLab's meaning: the mean episode sum per second of the episode time limit.
            assert log[f"Episode_Reward/{k}"] == episode_sum / cfg.episode_length_s, k
        task.reset_some(ended)
        mine[ended] = 0.0
    assert logs >= 2


def test_a_yaml_reward_term_names_its_function_as_module_colon_function(tmp_path, monkeypatch):
    (tmp_path / "my_terms.py").write_text(
        "import numpy as np\n\n"
        "def altitude(task, target_m=30.0):\n"
        "    return -np.abs(task.pos_w[:, 2] - target_m)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "training.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            multi_drone_env:
              rewards:
                terms:
                  coverage: {weight: 0.2}
                  altitude: {func: "my_terms:altitude", weight: 0.5, params: {target_m: 25.0}}
            """
        )
    )
    cfg = load_training_cfg(path).multi_drone_env
    terms = cfg.rewards.terms
    # Built-ins keep their defaults unless named; a named built-in takes the new weight.
    assert list(terms) == [*rew_mdp.REWARD_TERMS, "altitude"]
    assert terms["coverage"].weight == 0.2 and terms["energy"].weight == -0.05
    assert terms["altitude"] == RewTerm(func="my_terms:altitude", weight=0.5, params={"target_m": 25.0})
    python_cfg = multi_cfg()
    python_cfg.rewards.terms["coverage"] = RewTerm(weight=0.2)
    python_cfg.rewards.terms["altitude"] = RewTerm(func=altitude, weight=0.5, params={"target_m": 25.0})
    yaml_task, py_task = started(cfg), started(python_cfg)
    for a, b in zip(run(yaml_task, 10, autoreset=False), run(py_task, 10, autoreset=False), strict=True):
        assert a.reward.tobytes() == b.reward.tobytes()
    # A config with a function in it still has a stable record and fingerprint.
    assert to_dict(python_cfg)["rewards"]["terms"]["altitude"]["func"] == f"{__name__}:altitude"
    assert cfg_hash(python_cfg) == cfg_hash(python_cfg)


@pytest.mark.parametrize(
    ("func", "message"),
    [
        ("no_such_module_xyz:altitude", "cannot import module 'no_such_module_xyz'"),
        ("numpy:no_such_function", "module 'numpy' has no attribute 'no_such_function'"),
        ("numpy:pi", "'numpy:pi' is a float, not a callable"),
        ("altitude", "'altitude' is neither a callable nor a 'module:function' string"),
        (3, "expected a 'module:function' string, got 3"),
    ],
)
def test_a_bad_function_string_is_a_config_error_naming_the_term(tmp_path, func, message):
    path = tmp_path / "training.yaml"
    value = f'"{func}"' if isinstance(func, str) else func
    path.write_text(
        f"multi_drone_env:\n  rewards:\n    terms:\n      altitude: {{func: {value}, weight: 0.5}}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_training_cfg(path)
    assert "multi_drone_env.rewards.terms.altitude.func: " in str(err.value)
    assert message in str(err.value)


def test_the_old_rewards_scales_key_names_the_new_one(tmp_path):
    path = tmp_path / "training.yaml"
    path.write_text("direct_env:\n  rewards:\n    scales: {new_targets: 1.0}\n")
    with pytest.raises(ConfigError) as err:
        load_training_cfg(path)
    assert (
        "direct_env.rewards.scales: this key has moved: set each term's weight as rewards.terms.<name>.weight"
        in (str(err.value))
    )


def test_term_misuse_is_refused_with_the_fix():
    cfg = multi_cfg()
    cfg.rewards.terms["altitude"] = RewTerm(weight=0.5)  # no func
    cfg.rewards.terms["energy"] = RewTerm(func=altitude, weight=1.0)  # a built-in's name
    cfg.rewards.terms["jerk"] = RewTerm(weight=float("nan"))
    with pytest.raises(ConfigError) as err:
        ISRTask(cfg, num_envs=2)
    text = str(err.value)
    assert "rewards.terms.altitude.func: a term of your own needs func" in text
    assert "rewards.terms.energy: 'energy' is a built-in term" in text
    assert "rewards.terms.jerk.weight: nan must be a finite number" in text
    cfg = multi_cfg()
    cfg.rewards.terms["flat"] = RewTerm(func=lambda task: np.zeros((task.num_envs, 1)), weight=1.0)
    task = started(cfg, n=2)
    with pytest.raises(ValueError, match=r"rewards.terms.flat.func returned shape \(2, 1\), expected \(2,\)"):
        task.step(np.zeros((2, 4)))


def test_a_zero_weight_turns_a_term_off_and_it_is_still_logged():
    cfg = multi_cfg(episode_length_s=0.5)
    cfg.rewards.terms["energy"] = RewTerm(weight=0.0)
    cfg.rewards.terms["altitude"] = RewTerm(func=altitude, weight=0.0)
    task = started(cfg, n=2)
    logs = [res.log for res in run(task, 12) if res.log]
    assert logs and all(log["Episode_Return/energy"] == 0.0 == log["Episode_Return/altitude"] for log in logs)


def after_three_steps(task) -> np.ndarray:
    """(N,) bool: the episode has run 3 steps (a user termination term)."""
    return task.episode_step >= 3


@pytest.mark.parametrize("time_out", [False, True])
def test_a_done_term_of_your_own_ends_episodes_and_is_logged(time_out):
    cfg = multi_cfg()
    cfg.terminations.terms["short"] = DoneTerm(func=after_three_steps, time_out=time_out)
    task = started(cfg, n=3)
    results = list(run(task, 3, autoreset=False))
    assert not any(r.done_ids.size for r in results[:2])
    last = results[-1]
    crashed = task._crashed | task._outside  # the built-ins still terminate first
    assert last.terminated.tolist() == (np.ones(3, bool) if not time_out else crashed).tolist()
    assert last.truncated.tolist() == (np.zeros(3, bool) if not time_out else ~crashed).tolist()
    assert last.log["Episode_Termination/short"] == 3 and last.log["Episode_Termination/time_out"] == 0


def test_done_term_misuse_is_refused():
    cfg = multi_cfg()
    cfg.terminations.terms["crash"] = DoneTerm(func=after_three_steps)
    cfg.terminations.terms["mine"] = DoneTerm()
    with pytest.raises(ConfigError) as err:
        ISRTask(cfg, num_envs=2)
    assert "terminations.terms.crash: 'crash' is a built-in term" in str(err.value)
    assert "terminations.terms.mine.func: a term of your own needs func" in str(err.value)
    cfg = multi_cfg()
    cfg.terminations.terms["float"] = DoneTerm(func=lambda task: task.pos_w[:, 2])
    task = started(cfg, n=2)
    with pytest.raises(
        ValueError, match="terminations.terms.float.func returned dtype float64, expected bool"
    ):
        task.step(np.zeros((2, 4)))


def test_a_yaml_done_term_names_its_function(tmp_path):
    path = tmp_path / "training.yaml"
    path.write_text(
        "multi_drone_env:\n  terminations:\n    min_altitude_m: 0.4\n    terms:\n"
        f"      short: {{func: '{__name__}:after_three_steps', time_out: true}}\n"
    )
    terms = load_training_cfg(path).multi_drone_env.terminations.terms
    assert list(terms) == ["crash", "geofence", "time_out", "short"]
    assert terms["short"] == DoneTerm(func=f"{__name__}:after_three_steps", time_out=True)
    task = started(load_training_cfg(path).multi_drone_env, n=2)
    assert [r.truncated.all() for r in run(task, 3, autoreset=False)] == [False, False, True]


def altitude_and_speed(task) -> np.ndarray:
    """(N, 2): altitude / 100 m and horizontal speed / 10 m/s (a user observation term)."""
    return np.column_stack([task.pos_w[:, 2] / 100.0, np.hypot(*task.dynamics.lin_vel_w[:, :2].T) / 10.0])


def test_an_observation_term_is_appended_and_grows_the_layout():
    from flyby.envs.multi_drone_env import MultiDroneISREnv

    base_cfg = multi_cfg()
    cfg = multi_cfg()
    cfg.observations.terms["alt_speed"] = ObsTerm(func=altitude_and_speed)  # the one config line
    base, task = started(base_cfg), started(cfg)
    builtin = base.obs_dim
    assert task.obs_dim == builtin + 2 and task.layout.term("alt_speed") == slice(builtin, builtin + 2)
    assert MultiDroneISREnv(cfg=cfg, num_drones=2).single_observation_space.shape == (builtin + 2,)
    for a, b in zip(run(base, 10), run(task, 10), strict=True):
        assert b.obs[:, :builtin].tobytes() == a.obs.tobytes()  # the built-in groups are untouched
        expected = np.clip(altitude_and_speed(task), -1.0, 1.0).astype(np.float32)
        assert b.obs[:, task.layout.term("alt_speed")].tobytes() == expected.tobytes()
    assert list(cfg.observations.terms)[-1] == "alt_speed" and list(cfg.observations.terms)[:2] == [
        "pos",
        "vel",
    ]
    with pytest.raises(KeyError, match="no observation group 'nope'"):
        task.layout.term("nope")


def test_evaluation_and_export_see_an_observation_term_of_your_own(tmp_path):
    """The spaces a policy is checked against and the exported contract include the user's term."""
    from flyby.config.evaluation import load_evaluation_cfg
    from flyby.envs.isr_task import observation_layout
    from flyby.training.export import _observation_contract
    from flyby.training.policy_io import eval_spaces

    cfg = load_evaluation_cfg().px4_env
    builtin = eval_spaces(cfg)[0].shape[0]
    assert observation_layout(cfg).dim == builtin  # no user term: the built-in layout, no task built
    cfg.observations.terms["alt_speed"] = ObsTerm(func=altitude_and_speed)
    width = altitude_and_speed(started(multi_cfg(), n=3)).shape[1]
    assert eval_spaces(cfg)[0].shape == (builtin + width,)
    contract = _observation_contract(cfg)
    assert contract["dim"] == builtin + width
    last = contract["slices"][-1]
    assert (last["name"], last["start"], last["stop"]) == ("alt_speed", builtin, builtin + width)


def test_observation_term_misuse_is_refused():
    cfg = multi_cfg()
    cfg.observations.terms["pos"] = ObsTerm(func=altitude_and_speed)
    with pytest.raises(ConfigError, match="observations.terms.pos: 'pos' is a built-in observation group"):
        ISRTask(cfg, num_envs=2)
    cfg = multi_cfg()
    cfg.observations.terms["flat"] = ObsTerm(func=lambda task: task.pos_w[:, 2])
    with pytest.raises(
        ValueError, match=r"observations.terms.flat.func returned shape \(2,\), expected \(2, d\)"
    ):
        ISRTask(cfg, num_envs=2)
