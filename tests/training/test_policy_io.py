"""Loading trained policy bundles: round trips with the normaliser, and every bad file refused clearly."""

from __future__ import annotations

import json
import pickle
import zipfile

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("stable_baselines3")

from stable_baselines3 import PPO, SAC
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from flyby.errors import FlybyError, ModelLoadError
from flyby.training.policy_io import LoadedPolicy, eval_spaces, load_policy

OBS_DIM = eval_spaces()[0].shape[0]  # PX4ISR-v0's observation size (64 with top_k=5)


class _SpacesEnv(gym.Env):
    """An env with PX4ISR-v0's spaces (or others), for building models without a simulator."""

    def __init__(self, obs_dim: int = OBS_DIM) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (obs_dim,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


def _vec_normalize(obs_dim: int = OBS_DIM) -> VecNormalize:
    venv = VecNormalize(DummyVecEnv([lambda: _SpacesEnv(obs_dim)]), norm_reward=False, clip_obs=5.0)
    # Statistics far from (0, 1) so that a forgotten normaliser changes the actions.
    venv.obs_rms.mean = np.linspace(-0.8, 0.8, obs_dim)
    venv.obs_rms.var = np.linspace(0.001, 0.05, obs_dim)
    return venv


def _save_bundle(folder, algorithm: str = "PPO", *, normalize: bool = True):
    folder.mkdir(parents=True, exist_ok=True)
    venv = _vec_normalize()
    kwargs = {"policy_kwargs": {"net_arch": [16]}, "device": "cpu", "seed": 0}
    if algorithm == "PPO":
        model = PPO("MlpPolicy", venv, n_steps=8, batch_size=8, **kwargs)
    else:
        model = SAC("MlpPolicy", venv, buffer_size=16, **kwargs)
    model.save(folder / "model.zip")
    if normalize:
        venv.save(folder / "vecnormalize.pkl")
    (folder / "model.json").write_text(
        json.dumps(
            {
                "algorithm": algorithm,
                "env_id": "flyby/MultiDroneISR-v0",
                "observation_space": {"shape": [OBS_DIM], "low": -1.0, "high": 1.0},
                "action_space": {"shape": [4], "low": -1.0, "high": 1.0},
                "normalize": {"obs": normalize, "clip_obs": 5.0, "epsilon": 1e-8},
                "env_steps": 0,
            }
        )
    )
    return model, venv


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    out = {}
    for algo in ("PPO", "SAC"):
        model, venv = _save_bundle(root / algo / "training", algo)
        out[algo] = (root / algo / "training" / "model.zip", model, venv)
    return out


def _obs(n: int = 6) -> np.ndarray:
    return np.random.default_rng(3).uniform(-1, 1, (n, OBS_DIM)).astype(np.float32)


@pytest.mark.parametrize("algorithm", ["PPO", "SAC"])
def test_round_trip_applies_the_normaliser(bundles, algorithm):
    path, model, venv = bundles[algorithm]
    policy = load_policy(path)
    assert policy.algorithm == algorithm and policy.normalized and policy.clip_obs == 5.0
    assert policy.info["algorithm"] == algorithm and algorithm in policy.label
    obs = _obs()
    expected, _ = model.predict(venv.normalize_obs(obs), deterministic=True)
    got, _ = policy.predict(obs)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(policy.normalize_obs(obs), venv.normalize_obs(obs))
    # Without the normaliser the actions differ: the check above can fail.
    raw, _ = model.predict(obs, deterministic=True)
    assert not np.array_equal(raw, expected)
    one = policy(obs[0])
    assert one.shape == (4,) and one.dtype == np.float32
    single, _ = model.predict(venv.normalize_obs(obs[0]), deterministic=True)  # batch of 1: same matmul
    np.testing.assert_array_equal(one, single)
    # Pickles (parallel evaluation workers) as bytes and acts the same after.
    copy = pickle.loads(pickle.dumps(policy))
    assert isinstance(copy, LoadedPolicy) and copy.label == policy.label
    np.testing.assert_array_equal(copy.predict(obs)[0], expected)


def test_older_zip_without_normaliser_or_json_still_loads(bundles, tmp_path):
    path, model, _ = bundles["PPO"]
    old = tmp_path / "direct.zip"
    old.write_bytes(path.read_bytes())
    policy = load_policy(old)
    assert (
        policy.obs_rms is None
        and policy.algorithm == "PPO"
        and policy.label == "direct"
        and policy.info == {}
    )
    obs = _obs()
    np.testing.assert_array_equal(policy.predict(obs)[0], model.predict(obs, deterministic=True)[0])
    with pytest.raises(ValueError, match=rf"shape \({OBS_DIM},\) or \(N, {OBS_DIM}\), got \(3,\)"):
        policy.normalize_obs(np.zeros(3))


def test_a_run_folder_finds_its_model(bundles):
    path, _, _ = bundles["SAC"]
    assert load_policy(path.parent.parent).path == path


def test_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match="no model at .*nothing.zip.*does not exist.*flyby train") as exc:
        load_policy(tmp_path / "nothing.zip")
    assert isinstance(exc.value, FlybyError) and exc.value.path == tmp_path / "nothing.zip"
    assert pickle.loads(pickle.dumps(exc.value)).path == exc.value.path


def test_random_bytes_and_truncated_zips_are_clear_errors(bundles, tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(ModelLoadError, match=r"junk.zip' is not a zip file \(3000 bytes"):
        load_policy(junk)
    good = bundles["PPO"][0].read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(good[: len(good) // 2])  # the central directory is gone
    with pytest.raises(
        ModelLoadError, match=r"cut.zip' is a truncated or damaged zip .* it starts with member 'data'"
    ):
        load_policy(cut)
    flipped = bytearray(good)
    with zipfile.ZipFile(bundles["PPO"][0]) as archive:
        info = archive.getinfo("policy.pth")
    middle = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    flipped[middle] ^= 0xFF  # one byte of a member: the zip opens, the member's CRC fails
    bad = tmp_path / "flipped.zip"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(ModelLoadError, match="flipped.zip' is a damaged zip"):
        load_policy(bad)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("readme.txt", "not a model")
    with pytest.raises(ModelLoadError, match="is a zip but not a stable-baselines3 model"):
        load_policy(other)


def test_cartpole_model_names_both_spaces(tmp_path):
    model = PPO(
        "MlpPolicy", "CartPole-v1", n_steps=8, batch_size=8, device="cpu", policy_kwargs={"net_arch": [8]}
    )
    model.save(tmp_path / "cartpole.zip")
    with pytest.raises(ModelLoadError) as exc:
        load_policy(tmp_path / "cartpole.zip")
    text = str(exc.value)
    obs_space, act_space = eval_spaces()
    assert "trained on observation space Box(" in text and "(4,), float32) (an SB3 CartPole model?)" in text
    assert (
        f"flyby/PX4ISR-v0 has {obs_space!r}" in text
        and repr(obs_space) == f"Box(-1.0, 1.0, ({OBS_DIM},), float32)"
    )
    assert f"action space Discrete(2) but flyby/PX4ISR-v0 has {act_space!r}" in text


def test_spaces_can_be_given(bundles):
    path = bundles["PPO"][0]
    obs = gym.spaces.Box(-1.0, 1.0, (32,), dtype=np.float32)
    with pytest.raises(
        ModelLoadError,
        match=rf"Box\(-1.0, 1.0, \({OBS_DIM},\), float32\) but my-env has Box\(-1.0, 1.0, \(32,\)",
    ):
        load_policy(path, observation_space=obs, env_id="my-env")


def test_normaliser_missing_corrupt_or_of_another_shape_is_refused(bundles, tmp_path):
    src = bundles["PPO"][0].parent
    run = tmp_path / "training"
    run.mkdir()
    (run / "model.zip").write_bytes((src / "model.zip").read_bytes())
    (run / "model.json").write_text((src / "model.json").read_text())
    with pytest.raises(
        ModelLoadError, match=r"normalize.obs: true\) but the normaliser .*vecnormalize.pkl' is missing"
    ):
        load_policy(run / "model.zip")
    _vec_normalize(10).save(run / "vecnormalize.pkl")
    with pytest.raises(
        ModelLoadError,
        match=r"statistics of shape \(10,\) but the model's observation space is "
        rf"Box\(-1.0, 1.0, \({OBS_DIM},\), float32\)",
    ):
        load_policy(run / "model.zip")
    (run / "vecnormalize.pkl").write_bytes(b"\x80\x04garbage")
    with pytest.raises(ModelLoadError, match="vecnormalize.pkl' cannot be unpickled"):
        load_policy(run / "model.zip")
    (run / "vecnormalize.pkl").write_bytes(pickle.dumps({"mean": 0}))
    with pytest.raises(ModelLoadError, match="holds a dict, not SB3 VecNormalize statistics"):
        load_policy(run / "model.zip")


def test_bad_model_json(bundles, tmp_path):
    path = tmp_path / "model.zip"
    path.write_bytes(bundles["PPO"][0].read_bytes())
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="model.json' beside the model is not readable JSON"):
        load_policy(path)
    (tmp_path / "model.json").write_text(json.dumps({"algorithm": "A2C"}))
    with pytest.raises(ModelLoadError, match="says algorithm 'A2C'; flyby evaluates PPO and SAC models"):
        load_policy(path)


def test_a_model_trained_under_another_action_scale_is_refused(bundles, tmp_path):
    """model.json's action_scale must match the env's ActionCfg: the same outputs, other velocities."""
    from flyby.mdp.actions import ActionCfg

    path = tmp_path / "model.zip"
    path.write_bytes(bundles["PPO"][0].read_bytes())
    info = json.loads(bundles["PPO"][0].with_suffix(".json").read_text())
    (tmp_path / "vecnormalize.pkl").write_bytes(bundles["PPO"][0].with_name("vecnormalize.pkl").read_bytes())
    same = {"max_velocity": 10.0, "max_vertical_velocity": 5.0, "max_yaw_rate": 90.0}
    (tmp_path / "model.json").write_text(json.dumps({**info, "action_scale": same}))
    assert load_policy(path).label  # the packaged scale: loads
    (tmp_path / "model.json").write_text(json.dumps({**info, "action_scale": {**same, "max_velocity": 7.0}}))
    with pytest.raises(ModelLoadError, match=r"max_velocity 7\.0 when trained, 10\.0 in flyby/PX4ISR-v0"):
        load_policy(path)
    assert load_policy(path, actions=ActionCfg(max_velocity=7.0)).label  # the env it was trained for
    (tmp_path / "model.json").write_text(json.dumps({**info, "action_scale": [10.0]}))
    with pytest.raises(ModelLoadError, match="has action_scale \\[10.0\\]; expected a mapping"):
        load_policy(path)


def test_parallel_payload_carries_the_normaliser(bundles):
    from flyby.training.evaluate import load_policy_payload, policy_payload

    path, model, venv = bundles["PPO"]
    policy = load_policy(path)
    kind, data = policy_payload(policy)
    assert (
        kind == "loaded"
        and data[0] == path.read_bytes()
        and data[1] == (path.parent / "vecnormalize.pkl").read_bytes()
    )
    copy = load_policy_payload((kind, data))
    obs = _obs()
    assert isinstance(copy, LoadedPolicy) and copy.normalized and copy.label == policy.label
    np.testing.assert_array_equal(
        copy.predict(obs)[0], model.predict(venv.normalize_obs(obs), deterministic=True)[0]
    )
