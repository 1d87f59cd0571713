"""flyby.training.trainer: PPO/SAC from the training config, normaliser, logs, checkpoints and resume."""

from __future__ import annotations

import csv
import json
import pickle
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("stable_baselines3")

from flyby.config.training import (
    Algorithm,
    TrainerCfg,
    load_training_cfg,
)
from flyby.errors import ConfigError, OutputError, TrainingError
from flyby.mdp.observations import ObsLayout
from flyby.mdp.rewards import REWARD_TERMS
from flyby.training.trainer import PROGRESS_COLUMNS, train

OBS_DIM = ObsLayout(top_k=5).dim


@pytest.fixture(scope="module")
def env_cfg():
    return load_training_cfg().multi_drone_env


def tiny(total_steps: int = 1024, **kw) -> TrainerCfg:
    """4 drones, 64-step rollouts: a few seconds of training."""
    base = load_training_cfg().training
    return replace(
        base,
        total_steps=total_steps,
        num_drones=4,
        batch_size=64,
        ppo=replace(base.ppo, n_steps=64),
        eval_freq_steps=512,
        eval_episodes=2,
        checkpoint_freq_steps=256,
        **kw,
    )


def test_packaged_config_names_the_seed_keys():
    cfg = load_training_cfg().training
    assert cfg.algorithm is Algorithm.PPO
    assert cfg.total_steps > 0 and cfg.batch_size > 0 and 0 < cfg.learning_rate < 1


def test_bad_training_section_lists_every_problem(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text("training:\n  algorithm: DQN\n  total_steps: 0\n  batch_size: 100000\n")
    with pytest.raises(ConfigError) as err:
        load_training_cfg(bad)
    text = str(err.value)
    assert "training.algorithm: 'DQN' is not one of 'PPO', 'SAC'" in text
    assert "training.total_steps: 0 is out of range" in text


def test_batch_larger_than_a_rollout_is_refused():
    with pytest.raises(ConfigError, match="larger than one PPO rollout"):
        train(replace(tiny(), batch_size=4096), "/nonexistent-never-created")


def test_ppo_run_writes_model_normaliser_logs_and_checkpoints(tmp_path, env_cfg):
    run = train(tiny(), tmp_path / "run", env_cfg=env_cfg, progress=False)
    out = tmp_path / "run"
    assert run.env_steps == 1024 and run.stopped_by == "total_steps"
    for name in (
        "model.zip",
        "vecnormalize.pkl",
        "model.json",
        "progress.csv",
        "eval.csv",
        "train_config.json",
    ):
        assert (out / name).is_file(), name
    assert list((out / "tb").glob("events.out.tfevents.*")), "no TensorBoard events"
    summary = json.loads((out / "model.json").read_text())
    assert summary["algorithm"] == "PPO" and summary["observation_space"]["shape"] == [OBS_DIM]
    assert summary["normalize"]["obs"] is True
    scale = {"max_velocity": 10.0, "max_vertical_velocity": 5.0, "max_yaw_rate": 90.0}
    assert summary["action_scale"] == scale
    assert 0 < summary["learner_share"] < 1 and summary["env_s"] > 0
    rows = list(csv.DictReader((out / "progress.csv").open()))
    assert tuple(rows[0]) == PROGRESS_COLUMNS
    assert [int(r["env_steps"]) for r in rows] == list(range(256, 1025, 256))
    # The normaliser saw the training observations: non-trivial statistics of the right shape.
    vecnorm = pickle.loads((out / "vecnormalize.pkl").read_bytes())
    assert vecnorm.obs_rms.mean.shape == (OBS_DIM,) and vecnorm.obs_rms.count > 1000
    assert len(list((out / "checkpoints").glob("ckpt_*.json"))) == 2  # keep_checkpoints


def test_per_term_rewards_are_logged(tmp_path, env_cfg):
    # 0.5 s episodes so episodes end within the run and their per-term sums reach the CSV.
    short = replace(env_cfg, episode_length_s=0.5)
    train(tiny(total_steps=512), tmp_path, env_cfg=short, progress=False)
    rows = list(csv.DictReader((tmp_path / "progress.csv").open()))
    last = rows[-1]
    assert last["ep_rew_mean"] != "" and float(last["ep_len_mean"]) <= 20
    for k in REWARD_TERMS:
        assert last[f"Episode_Reward/{k}"] != "" and last[f"Episode_Return/{k}"] != "", k
        # IsaacLab's Episode_Reward is the episode sum (Episode_Return) per second of episode_length_s.
        assert float(last[f"Episode_Reward/{k}"]) == pytest.approx(float(last[f"Episode_Return/{k}"]) / 0.5)
    assert float(last["Episode_Return/energy"]) < 0.0


def test_resume_continues_from_the_newest_checkpoint(tmp_path, env_cfg):
    first = train(tiny(total_steps=512), tmp_path, env_cfg=env_cfg, progress=False)
    assert first.env_steps == 512
    with pytest.raises(TrainingError, match="already exists"):
        train(tiny(total_steps=1024), tmp_path, env_cfg=env_cfg, progress=False)
    again = train(tiny(total_steps=1024), tmp_path, env_cfg=env_cfg, resume=True, progress=False)
    assert again.resumed_from == 512 and again.env_steps == 1024
    rows = list(csv.DictReader((tmp_path / "progress.csv").open()))
    assert [int(r["env_steps"]) for r in rows] == [256, 512, 768, 1024]
    done = train(tiny(total_steps=1024), tmp_path, env_cfg=env_cfg, resume=True, progress=False)
    assert done.stopped_by == "already_done" and done.env_steps == 1024


def test_interrupt_saves_a_checkpoint_that_resume_uses(tmp_path, env_cfg, monkeypatch):
    from flyby.envs.multi_drone_env import MultiDroneISREnv

    calls = {"n": 0}
    real_step = MultiDroneISREnv.step

    def step(self, actions):
        calls["n"] += 1
        if calls["n"] == 300:  # inside the 5th rollout (64 steps each)
            raise KeyboardInterrupt
        return real_step(self, actions)

    monkeypatch.setattr(MultiDroneISREnv, "step", step)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(total_steps=2048), tmp_path, env_cfg=env_cfg, progress=False)
    assert not (tmp_path / "model.zip").exists()
    metas = sorted((tmp_path / "checkpoints").glob("ckpt_*.json"))
    steps = json.loads(metas[-1].read_text())["env_steps"]
    assert steps >= 1024  # the rollouts done before the interrupt are kept
    monkeypatch.setattr(MultiDroneISREnv, "step", real_step)
    run = train(tiny(total_steps=2048), tmp_path, env_cfg=env_cfg, resume=True, progress=False)
    assert run.resumed_from == steps and run.env_steps == 2048


def test_a_corrupt_newest_checkpoint_falls_back_to_an_older_one(tmp_path, env_cfg):
    train(tiny(total_steps=512), tmp_path, env_cfg=env_cfg, progress=False)
    (tmp_path / "model.zip").unlink()
    (tmp_path / "model.json").unlink()
    newest = sorted((tmp_path / "checkpoints").glob("ckpt_*.zip"))[-1]
    newest.write_bytes(b"not a zip")
    run = train(tiny(total_steps=768), tmp_path, env_cfg=env_cfg, resume=True, progress=False)
    assert run.resumed_from == 256 and run.env_steps == 768


def test_a_changed_config_is_refused_never_mixed(tmp_path, env_cfg):
    train(tiny(total_steps=256), tmp_path, env_cfg=env_cfg, progress=False)
    with pytest.raises(TrainingError, match=r"another config \(training.learning_rate: 0.0003 -> 0.001"):
        train(
            replace(tiny(total_steps=512), learning_rate=1e-3),
            tmp_path,
            env_cfg=env_cfg,
            resume=True,
            progress=False,
        )
    assert (tmp_path / "model.zip").is_file()  # the earlier model is intact


def test_unwritable_output_is_refused_before_training(tmp_path, env_cfg):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the run folder should go")
    with pytest.raises(OutputError, match="not writable"):
        train(tiny(), blocker / "run", env_cfg=env_cfg, progress=False)


def test_wall_clock_budget_stops_training(tmp_path, env_cfg):
    run = train(tiny(total_steps=10**7, budget_s=2.0), tmp_path, env_cfg=env_cfg, progress=False)
    assert run.stopped_by == "budget_s" and 0 < run.env_steps < 10**7
    assert run.wall_s < 30


def test_sac_trains_and_saves_with_its_normaliser(tmp_path, env_cfg):
    base = tiny(total_steps=256, algorithm=Algorithm.SAC)
    cfg = replace(
        base,
        sac=replace(base.sac, learning_starts=64, buffer_size=2048, net_arch=(32, 32)),
        eval_freq_steps=10**6,
    )
    run = train(cfg, tmp_path, env_cfg=env_cfg, progress=False)
    assert run.summary["algorithm"] == "SAC" and run.env_steps >= 256
    from stable_baselines3 import SAC

    model = SAC.load(tmp_path / "model.zip", device="cpu")
    action, _ = model.predict(np.zeros(OBS_DIM, dtype=np.float32), deterministic=True)
    assert action.shape == (4,) and np.all(np.abs(action) <= 1)


def test_training_env_matches_the_evaluation_camera_rate_and_adds_the_margin():
    from flyby.config.evaluation import load_evaluation_cfg
    from flyby.training.trainer import training_env_cfg

    cfg = load_training_cfg()
    px4 = load_evaluation_cfg().px4_env
    env = training_env_cfg(cfg)
    assert env.camera == px4.camera and env.step_dt == px4.step_dt
    assert env.terminations.drone_radius_m == pytest.approx(
        cfg.multi_drone_env.terminations.drone_radius_m + cfg.training.collision_margin_m
    )
    plain = replace(
        cfg, training=replace(cfg.training, match_eval_env=False, collision_margin_m=0.0, reward_scales={})
    )
    assert training_env_cfg(plain) == cfg.multi_drone_env
    margin = replace(cfg, training=replace(cfg.training, collision_margin_m=2.0))
    assert training_env_cfg(margin).terminations.drone_radius_m == pytest.approx(
        cfg.multi_drone_env.terminations.drone_radius_m + 2.0
    )


def test_training_only_reward_scales_override_the_env_and_unknown_terms_are_refused(tmp_path):
    from flyby.training.trainer import training_env_cfg

    cfg = load_training_cfg()
    shaped = replace(cfg, training=replace(cfg.training, reward_scales={"new_targets": 5.0}))
    env = training_env_cfg(shaped)
    assert env.rewards.terms["new_targets"].weight == 5.0
    assert env.rewards.terms["coverage"] == cfg.multi_drone_env.rewards.terms["coverage"]
    assert cfg.multi_drone_env.rewards.terms["new_targets"].weight == 1.0  # the env's own is untouched
    unknown = replace(cfg, training=replace(cfg.training, reward_scales={"altitude": 1.0}))
    with pytest.raises(ConfigError, match="training.reward_scales.altitude: unknown reward term"):
        training_env_cfg(unknown)
    bad = tmp_path / "t.yaml"
    # The names are checked against the env's terms (a cross-section check: once the sections are valid).
    bad.write_text("training:\n  reward_scales: {targets: 2.0, coverage: 0.3}\n")
    with pytest.raises(ConfigError) as err:
        load_training_cfg(bad)
    assert "training.reward_scales.targets: unknown reward term (known: new_targets, coverage" in str(
        err.value
    )
    assert "coverage" not in str(err.value).split("known:")[0]
    bad.write_text(
        "multi_drone_env:\n  rewards:\n    terms:\n      altitude: {func: 'numpy:zeros_like', weight: 0.0}\n"
        "training:\n  reward_scales: {altitude: 2.0}\n"
    )
    assert load_training_cfg(bad).training.reward_scales == {"altitude": 2.0}  # a term of the user's own
    bad.write_text("training:\n  action_gain_range: [1.5, 0.5]\n")
    with pytest.raises(ConfigError, match="action_gain_range: low 1.5 is above high 0.5"):
        load_training_cfg(bad)


def test_action_gain_randomization_scales_horizontal_commands_per_episode(env_cfg):
    from flyby.training.trainer import make_vec_env

    cfg = replace(tiny(), action_gain_range=(0.5, 0.5))
    short = replace(env_cfg, episode_length_s=0.25)  # 5 steps
    venv = make_vec_env(cfg, short, seed=0)
    wrapper = venv.venv
    sent = []
    real = wrapper.venv.step_async
    wrapper.venv.step_async = lambda a: (sent.append(a.copy()), real(a))[1]
    venv.reset()
    venv.step(np.full((4, 4), 0.8, dtype=np.float32))
    # vz and yaw rate untouched
    assert np.allclose(sent[-1][:, :2], 0.4) and np.allclose(sent[-1][:, 2:], 0.8)
    evaluation = make_vec_env(cfg, short, seed=0, training=False)
    assert not hasattr(evaluation.venv, "gain")  # never at evaluation


def test_update_runs_on_update_torch_threads_and_collection_on_torch_threads(tmp_path, env_cfg, monkeypatch):
    """The learner's update gets its own torch thread count; collection (the policy's forward
    pass on each step's observations) and the caller after training keep theirs."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.policies import ActorCriticPolicy

    seen = {"update": set(), "collect": set()}
    train_update, forward = PPO.train, ActorCriticPolicy.forward

    def spy_train(self, *a, **k):
        seen["update"].add(torch.get_num_threads())
        return train_update(self, *a, **k)

    def spy_forward(self, *a, **k):
        seen["collect"].add(torch.get_num_threads())
        return forward(self, *a, **k)

    monkeypatch.setattr(PPO, "train", spy_train)
    monkeypatch.setattr(ActorCriticPolicy, "forward", spy_forward)
    torch.set_num_threads(3)
    try:
        run = train(
            replace(tiny(512), update_torch_threads=2), tmp_path / "run", env_cfg=env_cfg, progress=False
        )
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(1)
    assert run.env_steps == 512
    assert seen == {"update": {2}, "collect": {1}}


def test_update_torch_threads_below_one_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("training:\n  update_torch_threads: 0\n")
    with pytest.raises(ConfigError, match=r"training.update_torch_threads: 0 is out of range"):
        load_training_cfg(path)
