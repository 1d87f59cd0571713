"""PPO under a wall-clock budget, full-fidelity evaluation, the CI and transfer criterion, and their CLI."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

pytest.importorskip("stable_baselines3", reason='needs the train extra: pip install "flyby[train]"')

from flyby.cli import main
from flyby.errors import ConfigError
from flyby.mdp.observations import ObsLayout
from flyby.training.evaluate import (
    RandomPolicy,
    ZeroPolicy,
    evaluate_policy_full_fidelity,
    mean_ci95,
    parse_seeds,
    transfer_criterion,
    transfer_ratio,
)
from flyby.training.train import (
    PPOCfg,
    load_ppo_cfg,
    make_budget_callback,
    make_train_env,
    train_ppo,
)

# A small, fast PPO: rollouts of 32 steps x 4 drones.
TINY = {"n_steps": 32, "batch_size": 64, "n_epochs": 1, "net_arch": [16]}
EPISODE_S = 1.0  # s, 25 control steps in PX4ISR-v0


@pytest.fixture(scope="module")
def tiny_direct():
    return train_ppo(
        "direct", budget_s=3.0, seed=0, ppo_kwargs=TINY, num_drones=4, episode_length_s=2.0, progress=False
    )


# ------------------------------------------------------------------------------------------- training


def test_budget_callback_stops_within_budget_plus_one_rollout(tiny_direct):
    r = tiny_direct
    assert r.wall_s >= r.budget_s
    curve = r.learning_curve
    assert len(curve) >= 2, f"only {len(curve)} rollouts in {r.budget_s} s ({r.setup_s:.1f} s of setup)"
    # One rollout (collection + the gradient epochs after it) is the spacing of the learning curve.
    rollout_s = max(b.wall_s - a.wall_s for a, b in zip(curve, curve[1:]))
    assert r.wall_s <= r.budget_s + rollout_s + 0.25, (r.wall_s, rollout_s)
    # The partial rollout at the deadline is dropped: steps = full rollouts + at most one of collection.
    per_rollout = TINY["n_steps"] * 4
    assert curve[-1].env_steps <= r.env_steps <= curve[-1].env_steps + per_rollout
    assert r.episodes >= 4 and r.kind == "direct" and r.num_envs == 4
    assert all(p.env_steps == (i + 1) * per_rollout for i, p in enumerate(curve))


def test_spent_budget_stops_at_the_first_step():
    from stable_baselines3 import PPO

    venv = make_train_env("direct", seed=0, num_drones=2)
    try:
        model = PPO(
            "MlpPolicy", venv, device="cpu", seed=0, **PPOCfg(**{**TINY, "net_arch": (16,)}).sb3_kwargs()
        )
        callback = make_budget_callback(1.0, start_s=time.perf_counter() - 1.0, progress=False)
        model.learn(total_timesteps=10_000, callback=callback)
    finally:
        venv.close()
    assert callback.stopped_by_budget
    assert model.num_timesteps == 2  # one step of the two drones, then stop
    assert callback.learning_curve == []


def test_timestep_cap_and_saved_model_round_trip(tmp_path):
    from stable_baselines3 import PPO

    r = train_ppo(
        "direct",
        budget_s=60.0,
        seed=1,
        total_timesteps_cap=200,
        ppo_kwargs=TINY,
        num_drones=4,
        progress=False,
        save_path=tmp_path / "m",
    )
    assert r.env_steps == 256  # the cap rounds up to whole rollouts of 32 x 4
    assert r.wall_s < 60.0
    loaded = PPO.load(tmp_path / "m.zip", device="cpu")
    obs = np.zeros(r.model.observation_space.shape, dtype=np.float32)
    act = [m.predict(obs, deterministic=True)[0] for m in (loaded, r.model)]
    np.testing.assert_array_equal(*act)
    summary = json.loads((tmp_path / "m.json").read_text())
    assert summary["env_steps"] == 256 and summary["ppo"]["n_steps"] == 32 and summary["kind"] == "direct"


@pytest.mark.serial  # flies PX4 SITL when PX4_DIR is set (flight stack auto): runs alone
def test_full_kind_trains_on_px4_env():
    r = train_ppo(
        "full",
        budget_s=60.0,
        seed=0,
        total_timesteps_cap=64,
        ppo_kwargs=TINY,
        num_envs_full=2,
        episode_length_s=EPISODE_S,
        progress=False,
    )
    assert r.kind == "full" and r.num_envs == 2 and r.env_steps == 64
    assert r.episodes == 2  # 32 steps of each copy, one 25-step episode each


def test_ppo_config_loads_and_is_validated(tmp_path):
    cfg = load_ppo_cfg()
    assert cfg.n_steps >= 1 and cfg.net_arch and cfg.learning_rate > 0
    bad = tmp_path / "ppo.yaml"
    bad.write_text("ppo:\n  n_steps: 0\n  gamma: 1.5\n  warp: 3\n")
    with pytest.raises(ConfigError) as exc:
        load_ppo_cfg(bad)
    text = str(exc.value)
    assert "n_steps: 0" in text and "gamma: 1.5" in text and "warp: unknown key" in text
    with pytest.raises(ConfigError, match="learning_rate"):
        train_ppo("direct", budget_s=1.0, seed=0, ppo_kwargs={"learning_rate": -1.0})


@pytest.mark.parametrize("kind", ["bogus", "", "DIRECT"])
def test_unknown_env_kind(kind):
    with pytest.raises(ConfigError, match=r"kind: .* is not one of 'direct', 'full'"):
        train_ppo(kind, budget_s=1.0, seed=0)


@pytest.mark.parametrize("budget", [0, -1.0, math.nan, math.inf, "60", True])
def test_bad_budget(budget):
    with pytest.raises(ConfigError, match="budget_s: .* must be a finite number of seconds > 0"):
        train_ppo("direct", budget_s=budget, seed=0)


def test_env_cfg_of_the_wrong_kind():
    from flyby.config.evaluation import load_evaluation_cfg

    with pytest.raises(ConfigError, match="needs a MultiDroneEnvCfg, got PX4EnvCfg"):
        train_ppo("direct", budget_s=1.0, seed=0, env_cfg=load_evaluation_cfg().px4_env)


# ----------------------------------------------------------------------------------------- evaluation


def test_evaluation_is_per_seed_deterministic(tiny_direct):
    for policy in (tiny_direct.model, RandomPolicy(), ZeroPolicy()):
        a = evaluate_policy_full_fidelity(policy, [3, 5], episode_length_s=EPISODE_S)
        b = evaluate_policy_full_fidelity(policy, [5, 3], episode_length_s=EPISODE_S)
        np.testing.assert_array_equal(a.returns, b.returns[::-1])  # a seed's episode does not depend on order
        assert a.seeds == [3, 5] and a.returns.shape == (2,)
        if isinstance(policy, RandomPolicy):
            assert a.returns[0] != a.returns[1]  # different seeds are different episodes
        assert [e.steps for e in a.episodes] == [25, 25]
        assert a.mean == pytest.approx(a.returns.mean())
        assert a.ci95[0] <= a.mean <= a.ci95[1]
        assert a.targets_seen.shape == (2,) and np.all((a.coverage >= 0) & (a.coverage <= 1))


def test_evaluation_takes_any_callable():
    calls = []

    def policy(obs):
        calls.append(obs.shape)
        return [0.2, 0.0, 0.0, 0.0]

    r = evaluate_policy_full_fidelity(policy, [0], episode_length_s=EPISODE_S, label="east")
    assert len(calls) == 25 and calls[0] == (ObsLayout(5).dim,)
    assert r.label == "east" and math.isnan(r.ci95[0]) and "east" in r.describe()


def test_evaluation_bad_inputs():
    with pytest.raises(ConfigError, match="no seeds given"):
        evaluate_policy_full_fidelity(ZeroPolicy(), [])
    with pytest.raises(ConfigError, match="repeats a seed"):
        evaluate_policy_full_fidelity(ZeroPolicy(), [1, 1])
    with pytest.raises(ConfigError, match="non-negative integer"):
        evaluate_policy_full_fidelity(ZeroPolicy(), [-1])
    with pytest.raises(TypeError, match="callable obs -> action"):
        evaluate_policy_full_fidelity("policy.zip", [0])


# ------------------------------------------------------------------------------- statistics, criterion


def test_mean_ci95_is_student_t():
    mean, (lo, hi) = mean_ci95([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)  # t_{0.975, 4} * s / sqrt(n)
    assert mean == 3.0 and lo == pytest.approx(3.0 - half) and hi == pytest.approx(3.0 + half)
    assert mean_ci95([2.0, 2.0]) == (2.0, (2.0, 2.0))
    m, ci = mean_ci95([7.0])
    assert m == 7.0 and all(math.isnan(c) for c in ci)
    with pytest.raises(ValueError, match="at least one value"):
        mean_ci95([])
    with pytest.raises(ValueError, match="finite"):
        mean_ci95([1.0, math.nan])


@pytest.mark.parametrize(
    ("direct", "baseline", "reference", "ok"),
    [
        (9.0, 10.0, 0.0, True),  # 90 % of a positive return
        (8.9, 10.0, 0.0, False),
        (-11.0, -10.0, -20.0, True),  # negative returns: 9 of the baseline's 10 points over the reference
        (-11.5, -10.0, -20.0, False),
        (25.0, 20.0, 0.0, True),  # better than the baseline
        (-28.0, -30.0, -20.0, True),  # baseline below the reference: direct may lose at most 90 % of its loss
        (-29.5, -30.0, -20.0, False),  # (stricter than direct >= baseline)
    ],
)
def test_transfer_criterion(direct, baseline, reference, ok):
    assert transfer_criterion(direct, baseline, reference) is ok
    # Adding a constant to every return changes nothing.
    assert transfer_criterion(direct + 100.0, baseline + 100.0, reference + 100.0) is ok


def test_transfer_ratio_and_bad_criterion_inputs():
    assert transfer_ratio(9.0, 10.0, 0.0) == pytest.approx(0.9)
    assert math.isnan(transfer_ratio(5.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="finite"):
        transfer_criterion(math.nan, 1.0, 0.0)
    with pytest.raises(ValueError, match="fraction"):
        transfer_criterion(1.0, 1.0, 0.0, fraction=1.5)


def test_parse_seeds():
    assert parse_seeds("0..9") == list(range(10))
    assert parse_seeds("0..2, 7,9") == [0, 1, 2, 7, 9]
    for text, message in (
        ("", "no seeds"),
        ("3..1", "runs backwards"),
        ("a", "not a seed"),
        ("1,1", "repeats"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_seeds(text)


# ------------------------------------------------------------------------------------------------ CLI


@pytest.mark.parametrize(
    ("command", "needles"),
    [
        ("train", ("--env {direct,full}", "--budget-s", "--seed", "--out")),
        (
            "evaluate",
            (
                "model",
                "--seeds",
                "--episode-length-s",
                "--no-references",
                "--flight-stack",
                "--px4-instances",
            ),
        ),
    ],
)
def test_cli_help(command, needles, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for needle in needles:
        assert needle in text, needle


def test_cli_bad_inputs(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--env", "bogus"])
    assert exc.value.code == 2 and "invalid choice: 'bogus'" in capsys.readouterr().err
    assert main(["train", "--env", "direct", "--budget-s", "0"]) == 2
    assert "budget_s: 0.0 is out of range (must be > 0.0)" in capsys.readouterr().err
    assert main(["train", "--env", "full", "--budget-s", "0"]) == 2
    assert "budget_s: 0.0 must be a finite number of seconds > 0" in capsys.readouterr().err
    assert main(["evaluate", "zero", "--seeds", ""]) == 2
    assert "no seeds given" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing.zip")]) == 2
    assert "no model at" in capsys.readouterr().err


def test_cli_train_then_evaluate(tmp_path, capsys):
    run = tmp_path / "direct"
    assert (
        main(
            [
                "train",
                "--budget-s",
                "30",
                "--num-envs",
                "8",
                "--out",
                str(run),
                "--episode-length-s",
                "2",
                "--total-steps",
                "2048",
            ]
        )
        == 0
    )
    out_text = capsys.readouterr().out
    assert "learner share" in out_text and "wrote" in out_text
    model = run / "model.zip"
    assert model.is_file() and (run / "vecnormalize.pkl").is_file()
    assert (
        main(["train", "--budget-s", "30", "--num-envs", "8", "--out", str(run), "--total-steps", "2048"])
        == 2
    )
    assert "already exists; it is kept" in capsys.readouterr().err
    out = tmp_path / "eval.json"
    assert (
        main(
            [
                "evaluate",
                str(model),
                "--seeds",
                "0..1",
                "--episode-length-s",
                "1",
                "--flight-stack",
                "cascade",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "95% CI" in text and "random" in text and "zero-action" in text and "reference" in text
    data = json.loads(out.read_text())
    assert data["seeds"] == [0, 1] and [r["label"] for r in data["results"]] == [
        "direct",
        "random",
        "zero-action",
    ]
    assert data["flight_stack"] == "cascade" and all(r["flight_stack"] == "cascade" for r in data["results"])
