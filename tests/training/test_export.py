"""Policy export: policy.onnx (normaliser folded in) under onnxruntime matches SB3; contract; bad input."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("stable_baselines3", reason='needs the train extra: pip install "flyby[train]"')
ort = pytest.importorskip("onnxruntime", reason="needs onnx and onnxruntime: pip install onnx onnxruntime")

import torch  # noqa: E402
from stable_baselines3 import PPO, SAC  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize  # noqa: E402

from flyby.config.envs import DirectEnvCfg  # noqa: E402
from flyby.config.evaluation import load_evaluation_cfg  # noqa: E402
from flyby.errors import DependencyNotInstalled, FlybyError, ModelLoadError  # noqa: E402
from flyby.mdp.actions import ACTION_DIM  # noqa: E402
from flyby.mdp.observations import ObsLayout  # noqa: E402
from flyby.training import export  # noqa: E402
from flyby.training.export import (  # noqa: E402
    CONTRACT_NAME,
    ONNX_NAME,
    ExportError,
    add_export_parser,
    check_onnx_policy,
    export_policy_onnx,
    observation_slices,
)

OBS_DIM = ObsLayout(top_k=load_evaluation_cfg().px4_env.observations.top_k).dim  # the flyby observation size


class FakeISREnv(gym.Env):
    """Random observations with the spaces of the flyby envs (no simulator: fast)."""

    def __init__(self, obs_dim: int = OBS_DIM, action_space: gym.Space | None = None) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (obs_dim,), np.float32)
        self.action_space = action_space or gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), float(self.np_random.normal()), False, False, {}


def _amplify(layer: torch.nn.Linear, gain: float) -> None:
    """Scale the action head so deterministic actions leave [-1, 1] (PPO: the clip) or saturate tanh (SAC)."""
    with torch.no_grad():
        layer.weight.mul_(gain)
        layer.bias.add_(0.3)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny nets: one torch thread is faster than several fighting over the CI machine's 2 cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ppo():
    model = PPO(
        "MlpPolicy",
        FakeISREnv(),
        n_steps=64,
        batch_size=64,
        n_epochs=1,
        seed=0,
        device="cpu",
        policy_kwargs={"net_arch": [32, 32]},
    )
    model.learn(128)
    _amplify(model.policy.action_net, 150.0)  # orthogonal init gain 0.01: actions ~1e-2 otherwise
    return model


@pytest.fixture(scope="module")
def sac():
    model = SAC(
        "MlpPolicy",
        FakeISREnv(),
        learning_starts=32,
        batch_size=32,
        buffer_size=1000,
        seed=0,
        device="cpu",
        policy_kwargs={"net_arch": [32, 32]},
    )
    model.learn(64)
    _amplify(model.policy.actor.mu, 30.0)
    return model


@pytest.fixture(scope="module")
def vec_norm():
    """A VecNormalize whose statistics were updated on data far from zero mean / unit variance."""
    vec = VecNormalize(DummyVecEnv([FakeISREnv]), norm_reward=False, clip_obs=5.0)
    rng = np.random.default_rng(3)
    scale = rng.uniform(0.01, 0.5, OBS_DIM)
    vec.obs_rms.update(rng.normal(rng.uniform(-0.5, 0.5, OBS_DIM), scale, (2000, OBS_DIM)))
    assert np.abs(vec.obs_rms.mean).max() > 0.2 and vec.obs_rms.var.min() < 1e-3
    return vec


def _raw_batch(n: int = 300) -> np.ndarray:
    rng = np.random.default_rng(11)
    obs = rng.uniform(-1.0, 1.0, (n, OBS_DIM)).astype(np.float32)
    obs[: n // 10] *= 4.0  # some outside the box (and beyond the normaliser's clip)
    return obs


def _onnx_actions(path, obs: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["action"], {"obs": obs})[0]


# ------------------------------------------------------------------------------- onnxruntime == SB3


@pytest.mark.parametrize("normalised", [False, True], ids=["raw", "vecnormalize"])
@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_onnxruntime_matches_sb3_deterministic_actions(request, algo, normalised, vec_norm, tmp_path):
    model = request.getfixturevalue(algo)
    kw = {}
    if normalised:
        kw = {"obs_rms": vec_norm.obs_rms, "clip_obs": vec_norm.clip_obs, "epsilon": vec_norm.epsilon}
    result = export_policy_onnx(model, tmp_path / "export", **kw)
    assert result.onnx_path == tmp_path / "export" / ONNX_NAME and result.onnx_path.is_file()
    assert result.contract_path == tmp_path / "export" / CONTRACT_NAME and result.contract_path.is_file()
    assert 0.0 <= result.max_abs_diff <= 1e-5
    # Independent of export's own check: SB3's VecNormalize and predict on the same raw observations.
    obs = _raw_batch()
    sb3_obs = vec_norm.normalize_obs(obs) if normalised else obs
    expected, _ = model.predict(sb3_obs, deterministic=True)
    got = _onnx_actions(result.onnx_path, obs)
    assert got.dtype == np.float32 and got.shape == (len(obs), ACTION_DIM)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert np.abs(got).max() <= 1.0
    # Actions near the bound (PPO: clipped to it; SAC: tanh saturating) and inside it were both compared.
    near_edge = np.abs(expected) > 0.99
    assert near_edge.any() and (~near_edge).any(), f"{algo}: the amplified head should reach the bound"
    if algo == "ppo":
        assert (np.abs(expected) == 1.0).any()  # the clip SB3's predict applies is in the graph
    assert _onnx_actions(result.onnx_path, obs[:1]).shape == (1, ACTION_DIM)  # dynamic batch
    if normalised:  # the normaliser is really inside: the raw-obs policy answers differently
        raw_policy, _ = model.predict(obs, deterministic=True)
        assert np.abs(got - raw_policy).max() > 1e-2
        assert check_onnx_policy(result.onnx_path, model, None) > 1e-2


def test_check_onnx_policy_reports_a_mismatch(ppo, sac, vec_norm, tmp_path):
    """The check can fail: the PPO graph scored against the SAC model, and a wrong normaliser."""
    path = export_policy_onnx(ppo, tmp_path, obs_rms=vec_norm.obs_rms, clip_obs=vec_norm.clip_obs).onnx_path
    assert check_onnx_policy(path, ppo, vec_norm.obs_rms, clip_obs=vec_norm.clip_obs, n=64, seed=1) <= 1e-5
    assert check_onnx_policy(path, sac, vec_norm.obs_rms, clip_obs=vec_norm.clip_obs) > 1e-2
    assert check_onnx_policy(path, ppo, vec_norm.obs_rms, clip_obs=1.0) > 1e-3  # clip_obs differs


@pytest.mark.parametrize("algo", ["PPO", "SAC"])
def test_gsde_policies_export_too(algo, tmp_path):
    """gSDE: the mode is the mean (PPO squashed: tanh, then unscale), as SB3's predict gives it."""
    kw = {"n_steps": 16, "batch_size": 16, "policy_kwargs": {"squash_output": True, "net_arch": [16]}}
    if algo == "SAC":
        kw = {"policy_kwargs": {"net_arch": [16]}}
    model = {"PPO": PPO, "SAC": SAC}[algo](
        "MlpPolicy", FakeISREnv(), use_sde=True, device="cpu", seed=1, **kw
    )
    assert model.policy.squash_output
    result = export_policy_onnx(model, tmp_path)
    obs = _raw_batch(64)
    np.testing.assert_allclose(
        _onnx_actions(result.onnx_path, obs), model.predict(obs, deterministic=True)[0], atol=1e-5
    )


# ------------------------------------------------------------------------------------------ contract


@pytest.fixture(scope="module")
def exported(ppo, vec_norm, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    result = export_policy_onnx(
        ppo, out, obs_rms=vec_norm.obs_rms, clip_obs=vec_norm.clip_obs, epsilon=vec_norm.epsilon
    )
    return result, json.loads(result.contract_path.read_text())


def test_contract_states_io_normaliser_rate_and_provenance(exported, vec_norm):
    result, c = exported
    assert c["schema"] == "flyby.policy_contract/1" and c["version"] == 1
    assert c["algorithm"] == "PPO" and c["deterministic"] is True
    assert c["inputs"] == [
        {
            "name": "obs",
            "dtype": "float32",
            "shape": ["batch", OBS_DIM],
            "description": c["inputs"][0]["description"],
        }
    ]
    assert c["outputs"][0]["name"] == "action" and c["outputs"][0]["shape"] == ["batch", ACTION_DIM]
    assert c["outputs"][0]["dtype"] == "float32"
    assert c["onnx"]["file"] == ONNX_NAME and c["onnx"]["opset"] == 17
    assert c["onnx"]["sha256"] == hashlib.sha256(result.onnx_path.read_bytes()).hexdigest()
    n = c["normalizer"]
    assert n["folded"] is True and n["clip_obs"] == vec_norm.clip_obs == 5.0
    assert n["epsilon"] == vec_norm.epsilon
    assert "mean" not in n and "var" not in n
    eval_cfg = load_evaluation_cfg().px4_env
    assert c["control"]["step_dt_s"] == eval_cfg.step_dt
    assert c["control"]["rate_hz"] == pytest.approx(1.0 / eval_cfg.step_dt) == pytest.approx(25.0)
    assert "PX4ISR-v0" in c["control"]["env"]
    assert c["check"]["max_abs_diff"] == result.max_abs_diff <= c["check"]["tolerance"] == 1e-5
    import stable_baselines3

    assert c["versions"]["torch"] == torch.__version__.split("+")[0]
    assert c["versions"]["stable_baselines3"] == stable_baselines3.__version__
    assert c["versions"]["onnxruntime"] == ort.__version__


def test_contract_observation_slices_follow_obs_layout(exported):
    _, c = exported
    o = c["observation"]
    layout = ObsLayout(top_k=load_evaluation_cfg().px4_env.observations.top_k)
    named = observation_slices(layout)
    assert [s["name"] for s in o["slices"]] == [name for name, _ in named]
    assert [(s["start"], s["stop"]) for s in o["slices"]] == [(sl.start, sl.stop) for _, sl in named]
    assert {name for name, _ in named} >= {
        "pos",
        "vel",
        "yaw",
        "clearance",
        "detections",
        "progress",
        "last_action",
    }
    assert o["dim"] == layout.dim == o["slices"][-1]["stop"] and o["slices"][0]["start"] == 0
    assert all(a["stop"] == b["start"] for a, b in zip(o["slices"], o["slices"][1:]))  # contiguous
    by_name = {s["name"]: s for s in o["slices"]}
    assert all(s["content"] and s["normalised_by"] for s in o["slices"])  # from the docstring table
    assert "world ENU" in by_name["pos"]["content"] and "clearance_cell_m" in by_name["clearance"]["content"]
    det = by_name["detections"]
    assert det["slots"] == layout.top_k and len(det["fields_per_slot"]) * det["slots"] == det["size"]
    assert det["fields_per_slot"][0] == "present"
    cfg = load_evaluation_cfg().px4_env
    half = [0.5 * s for s in cfg.world.size_m]
    assert by_name["pos"]["scale"] == [*half, cfg.terminations.max_altitude_m]
    assert by_name["pos"]["scale_unit"] == "m"
    d = cfg.actions
    assert by_name["vel"]["scale"] == [d.max_velocity, d.max_velocity, d.max_vertical_velocity]


def test_contract_action_channels_units_and_scale(exported):
    _, c = exported
    a = c["action"]
    d = load_evaluation_cfg().px4_env.actions
    assert a["names"] == ["vx", "vy", "vz", "yaw_rate"] and a["range"] == [-1.0, 1.0]
    assert [ch["unit"] for ch in a["channels"]] == ["m/s", "m/s", "m/s", "rad/s"]
    assert [ch["frame"] for ch in a["channels"]][:3] == ["world ENU"] * 3
    assert [ch["scale"] for ch in a["channels"]] == pytest.approx(
        [d.max_velocity, d.max_velocity, d.max_vertical_velocity, math.radians(d.max_yaw_rate)]
    )
    assert (d.max_velocity, d.max_vertical_velocity, d.max_yaw_rate) == (10.0, 5.0, 90.0)  # packaged scale
    assert a["scale_source"]["max_yaw_rate_deg_s"] == d.max_yaw_rate


def test_contract_follows_a_given_env_cfg(ppo, tmp_path):
    cfg = DirectEnvCfg(step_dt=0.05)
    cfg.actions.max_velocity = 7.0
    c = json.loads(export_policy_onnx(ppo, tmp_path, env_cfg=cfg).contract_path.read_text())
    assert c["control"]["rate_hz"] == pytest.approx(20.0) and "DirectEnvCfg" in c["control"]["env"]
    assert [ch["scale"] for ch in c["action"]["channels"]][:2] == [7.0, 7.0]
    assert c["normalizer"]["folded"] is False


def test_contract_scales_recover_the_env_state(tmp_path, ppo):
    """obs[slice] * scale from the contract gives back the DirectISR-v0 drone's position and velocity."""
    env = gym.make("flyby/DirectISR-v0")
    try:
        c = json.loads(export_policy_onnx(ppo, tmp_path, env_cfg=env.unwrapped.cfg).contract_path.read_text())
        by_name = {s["name"]: s for s in c["observation"]["slices"]}
        pos, vel = by_name["pos"], by_name["vel"]
        env.reset(seed=0, options={"pos_w": [30.0, -40.0, 50.0], "yaw_rad": 0.0})
        obs, *_ = env.step(np.array([0.5, -0.3, 0.2, 0.0], dtype=np.float32))
        task = env.unwrapped.task
        np.testing.assert_allclose(obs[pos["start"] : pos["stop"]] * pos["scale"], task.pos_w[0], atol=1e-4)
        np.testing.assert_allclose(
            obs[vel["start"] : vel["stop"]] * vel["scale"], task.dynamics.lin_vel_w[0], atol=1e-5
        )
        assert np.abs(task.dynamics.lin_vel_w[0]).max() > 0.05  # it moved: the velocity check means something
    finally:
        env.close()


# ------------------------------------------------------------------------------------------ bad input


def test_unwritable_out_dir_is_a_clear_error_and_writes_nothing(ppo, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(ExportError, match="cannot write to export folder .*not_a_folder.*writable"):
        export_policy_onnx(ppo, blocker / "export")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_folder"]


def test_failed_check_writes_nothing_and_keeps_old_files(ppo, tmp_path, monkeypatch):
    out = tmp_path / "export"
    out.mkdir()
    (out / ONNX_NAME).write_bytes(b"previous export")
    monkeypatch.setattr(export, "check_onnx_policy", lambda *a, **k: 3e-4)
    with pytest.raises(ExportError, match=r"differ from SB3's by up to 0.0003 .*nothing was written"):
        export_policy_onnx(ppo, out)
    assert [p.name for p in out.iterdir()] == [ONNX_NAME]
    assert (out / ONNX_NAME).read_bytes() == b"previous export"
    fresh = tmp_path / "fresh" / "export"
    with pytest.raises(ExportError):
        export_policy_onnx(ppo, fresh)
    assert not fresh.exists()  # the folder it created is gone again


def test_non_box_spaces_are_rejected():
    discrete = PPO(
        "MlpPolicy", FakeISREnv(action_space=gym.spaces.Discrete(4)), n_steps=16, batch_size=16, device="cpu"
    )
    with pytest.raises(ExportError, match="action space is Discrete.*flat Box spaces only"):
        export_policy_onnx(discrete, "unused")
    wide = PPO(
        "MlpPolicy",
        FakeISREnv(action_space=gym.spaces.Box(-2.0, 2.0, (4,), np.float32)),
        n_steps=16,
        batch_size=16,
        device="cpu",
    )
    with pytest.raises(ExportError, match=r"Box\(-1, 1, \(4,\)\)"):
        export_policy_onnx(wide, "unused")


def test_bad_model_normaliser_and_opset_are_clear_errors(ppo, vec_norm, tmp_path):
    with pytest.raises(ExportError, match="expected a stable-baselines3 PPO or SAC model.*got object"):
        export_policy_onnx(object(), tmp_path)
    small = PPO("MlpPolicy", FakeISREnv(obs_dim=10), n_steps=16, batch_size=16, device="cpu")
    with pytest.raises(ExportError, match=f"observes 10 values, the env config's layout has {OBS_DIM}"):
        export_policy_onnx(small, tmp_path)
    with pytest.raises(ExportError, match=r"pass vec_normalize.obs_rms, not the VecNormalize"):
        export_policy_onnx(ppo, tmp_path, obs_rms=vec_norm)
    small_rms = VecNormalize(DummyVecEnv([lambda: FakeISREnv(obs_dim=10)])).obs_rms
    with pytest.raises(ExportError, match=rf"obs_rms has mean \(10,\).*model observes \({OBS_DIM},\)"):
        export_policy_onnx(ppo, tmp_path, obs_rms=small_rms)
    with pytest.raises(ExportError, match="clip_obs must be a positive finite number, got -1"):
        export_policy_onnx(ppo, tmp_path, obs_rms=vec_norm.obs_rms, clip_obs=-1)
    for opset in (9, 99):
        with pytest.raises(ExportError, match=rf"opset must be an int in 13\.\.\d+ .*got {opset}"):
            export_policy_onnx(ppo, tmp_path, opset=opset)
    with pytest.raises(ExportError, match="no ONNX file at .*missing.onnx"):
        check_onnx_policy(tmp_path / "missing.onnx", ppo)
    assert list(tmp_path.iterdir()) == []
    assert issubclass(ExportError, FlybyError)


def test_missing_onnxruntime_names_the_dependency(ppo, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(DependencyNotInstalled, match="onnx and onnxruntime is not installed"):
        check_onnx_policy(tmp_path / "policy.onnx", ppo)
    with pytest.raises(DependencyNotInstalled):
        export_policy_onnx(ppo, tmp_path)


# ---------------------------------------------------------------------------------------------- CLI


def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="flyby")
    add_export_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_exports_a_run_with_its_vecnormalize(ppo, vec_norm, tmp_path, capsys):
    train = tmp_path / "run" / "training"
    train.mkdir(parents=True)
    ppo.save(train / "model.zip")
    vec_norm.save(str(train / "vecnormalize.pkl"))
    (train / "model.json").write_text(json.dumps({"algorithm": "PPO", "normalize": {"obs": True}}))
    assert _run_cli(["export", str(tmp_path / "run"), "--out", str(tmp_path / "export")]) == 0  # a run folder
    out = capsys.readouterr().out
    assert "normaliser folded in (clip_obs 5)" in out and "25 Hz" in out and "yaw_rate 1.571 rad/s" in out
    c = json.loads((tmp_path / "export" / CONTRACT_NAME).read_text())
    assert c["normalizer"]["folded"] is True and c["normalizer"]["clip_obs"] == 5.0
    obs = _raw_batch(50)
    np.testing.assert_allclose(
        _onnx_actions(tmp_path / "export" / ONNX_NAME, obs),
        ppo.predict(vec_norm.normalize_obs(obs), deterministic=True)[0],
        atol=1e-5,
    )
    # The statistics moved elsewhere: --vecnormalize names them; without it, the export refuses.
    moved = tmp_path / "stats.pkl"
    (train / "vecnormalize.pkl").rename(moved)
    with pytest.raises(ModelLoadError, match="normalize.obs: true.*vecnormalize.pkl.* is missing"):
        _run_cli(["export", str(train / "model.zip"), "--out", str(tmp_path / "export2")])
    assert not (tmp_path / "export2").exists()
    assert (
        _run_cli(
            [
                "export",
                str(train / "model.zip"),
                "--vecnormalize",
                str(moved),
                "--out",
                str(tmp_path / "export3"),
            ]
        )
        == 0
    )
    assert (tmp_path / "export3" / ONNX_NAME).read_bytes() == (tmp_path / "export" / ONNX_NAME).read_bytes()


def test_cli_bad_files_are_named(ppo, tmp_path):
    ppo.save(tmp_path / "model.zip")
    with pytest.raises(ModelLoadError, match="no model at .*none.zip"):
        _run_cli(["export", str(tmp_path / "none.zip"), "--out", str(tmp_path / "x")])
    with pytest.raises(ModelLoadError, match="no VecNormalize statistics at .*nope.pkl"):
        _run_cli(
            [
                "export",
                str(tmp_path / "model.zip"),
                "--vecnormalize",
                str(tmp_path / "nope.pkl"),
                "--out",
                str(tmp_path / "x"),
            ]
        )
    small = VecNormalize(DummyVecEnv([lambda: FakeISREnv(obs_dim=10)]))
    small.save(str(tmp_path / "small.pkl"))
    with pytest.raises(ModelLoadError, match=r"small\.pkl' has statistics of shape \(10,\)") as info:
        _run_cli(
            [
                "export",
                str(tmp_path / "model.zip"),
                "--vecnormalize",
                str(tmp_path / "small.pkl"),
                "--out",
                str(tmp_path / "x"),
            ]
        )
    assert "flyby_export_" not in str(info.value) and info.value.path == tmp_path / "small.pkl"
    assert not (tmp_path / "x").exists()
