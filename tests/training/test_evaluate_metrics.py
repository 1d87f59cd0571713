"""evaluate_policy: metrics.json (schema flyby.evaluation/1) and tracks.json on a short cascade evaluation,
the scripted baselines on the same seeds, the success definition, and bad input."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest

pytest.importorskip("stable_baselines3")

from flyby.cli import main
from flyby.config.evaluation import load_evaluation_cfg
from flyby.errors import ConfigError, ModelLoadError
from flyby.policies import PatrolPolicy
from flyby.training.evaluate import (
    METRICS_SCHEMA,
    evaluate_policy,
    make_baseline,
    px4_version,
    resolve_eval_seeds,
)

SEEDS = [1000, 1001]
EPISODE_S = 2.0

# The documented schema (docs/evaluation_metrics.md): key -> type; dicts are nested schemas.
NUM = (int, float)
CI = (list, type(None))
EPISODE = {
    "seed": int,
    "return": NUM,
    "steps": int,
    "targets_found": int,
    "coverage": NUM,
    "crashed": bool,
    "geofence": bool,
    "success": bool,
}
POLICY = {
    "label": str,
    "n": int,
    "mean_return": NUM,
    "std_return": NUM,
    "ci95": CI,
    "success_rate": NUM,
    "targets_found": {"mean": NUM, "ci95": CI, "per_episode": list},
    "coverage": {"mean": NUM, "per_episode": list},
    "crashes": int,
    "geofence_exits": int,
    "episode_lengths": list,
    "returns": list,
    "episodes": list,
}
TOP = {
    "schema": str,
    "env_id": str,
    "flight_stack": str,
    "flight_stack_label": str,
    "px4_version": (str, type(None)),
    "perception_mode": str,
    "seeds": list,
    "episode_length_s": NUM,
    "success_definition": str,
    "policies": dict,
    "detection": (dict, type(None)),
}


def _check(obj: dict, schema: dict, where: str) -> None:
    missing = set(schema) - set(obj)
    assert not missing, f"{where}: missing {missing}"
    for key, tp in schema.items():
        if isinstance(tp, dict):
            _check(obj[key], tp, f"{where}.{key}")
        else:
            assert isinstance(obj[key], tp), f"{where}.{key}: {obj[key]!r} is not {tp}"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A small untrained PPO with VecNormalize statistics, saved as a pipeline run's training/ folder."""
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from flyby.training.policy_io import eval_spaces

    obs_space, act_space = eval_spaces()

    class SpacesEnv(gym.Env):
        observation_space, action_space = obs_space, act_space

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return obs_space.sample(), {}

        def step(self, action):
            return obs_space.sample(), 0.0, False, False, {}

    folder = tmp_path_factory.mktemp("runs") / "run" / "training"
    folder.mkdir(parents=True)
    venv = VecNormalize(DummyVecEnv([SpacesEnv]), norm_reward=False)
    PPO(
        "MlpPolicy", venv, n_steps=8, batch_size=8, device="cpu", seed=0, policy_kwargs={"net_arch": [16]}
    ).save(folder / "model.zip")
    venv.save(folder / "vecnormalize.pkl")
    (folder / "model.json").write_text(json.dumps({"algorithm": "PPO", "normalize": {"obs": True}}))
    return folder / "model.zip"


@pytest.fixture(scope="module")
def evaluated(bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluation")
    metrics = evaluate_policy(
        bundle, seeds=SEEDS, flight_stack="cascade", episode_length_s=EPISODE_S, out_dir=out, progress=False
    )
    return metrics, out


def test_metrics_follow_the_schema_for_every_policy_on_the_same_seeds(evaluated):
    metrics, out = evaluated
    _check(metrics, TOP, "metrics")
    assert metrics["schema"] == METRICS_SCHEMA and metrics["env_id"] == "flyby/PX4ISR-v0"
    assert metrics["flight_stack"] == "cascade" and "no PX4" in metrics["flight_stack_label"]
    assert metrics["px4_version"] is None  # never claims PX4 when the cascade flew
    assert metrics["seeds"] == SEEDS and metrics["episode_length_s"] == EPISODE_S
    assert list(metrics["policies"]) == ["trained", "zero", "random", "patrol"]  # trained first
    steps = round(EPISODE_S / 0.04)
    for key, p in metrics["policies"].items():
        _check(p, POLICY, key)
        assert p["n"] == len(SEEDS) and [e["seed"] for e in p["episodes"]] == SEEDS, key
        for e in p["episodes"]:
            _check(e, EPISODE, f"{key}.episodes")
        assert p["returns"] == [e["return"] for e in p["episodes"]]
        assert p["episode_lengths"] == [e["steps"] for e in p["episodes"]]
        assert p["targets_found"]["per_episode"] == [e["targets_found"] for e in p["episodes"]]
        assert p["coverage"]["per_episode"] == [e["coverage"] for e in p["episodes"]]
        assert p["crashes"] == sum(e["crashed"] for e in p["episodes"])
        assert math.isclose(p["mean_return"], float(np.mean(p["returns"])))
        assert math.isclose(p["std_return"], float(np.std(p["returns"], ddof=1)))
        lo, hi = p["ci95"]
        assert lo <= p["mean_return"] <= hi and lo < hi
        tlo, thi = p["targets_found"]["ci95"]
        assert tlo <= p["targets_found"]["mean"] <= thi
        # Nothing crashes in 2 s except possibly random; every other episode runs to the time limit.
        assert all(e["steps"] == steps for e in p["episodes"] if not (e["crashed"] or e["geofence"]))
    assert (
        metrics["policies"]["patrol"]["label"] == "patrol"
        and metrics["policies"]["trained"]["label"] == "run"
    )
    # The written file is the returned dict, as strict JSON.
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert not list(out.glob(".*.tmp"))


def test_success_is_the_documented_definition(evaluated):
    metrics, _ = evaluated
    bar = load_evaluation_cfg().evaluation.success_min_targets
    assert (
        metrics["success_min_targets"] == bar
        and f"at least {bar} distinct targets" in metrics["success_definition"]
    )
    assert "no crash and no geofence exit" in metrics["success_definition"]
    for p in metrics["policies"].values():
        for e in p["episodes"]:
            assert e["success"] == (not e["crashed"] and not e["geofence"] and e["targets_found"] >= bar)
        assert p["success_rate"] == np.mean([e["success"] for e in p["episodes"]])
    # No ground-truth "detection figures": they would be 1 by construction.
    assert metrics["detection"] is None and "ground_truth" in metrics["detection_note"]


def test_tracks_json(evaluated):
    metrics, out = evaluated
    tracks = json.loads((out / "tracks.json").read_text())
    hx, hy = tracks["half_extent_m"]
    assert hx > 0 and hy > 0 and len(tracks["buildings"]) > 0 and len(tracks["targets"]) > 0
    assert all(len(b) == 4 and b[0] < b[2] and b[1] < b[3] for b in tracks["buildings"])
    assert {t["cls"] for t in tracks["targets"]} <= {"vehicle", "person"}
    eps = tracks["episodes"]
    assert [(e["policy"], e["seed"]) for e in eps] == [(k, s) for k in metrics["policies"] for s in SEEDS]
    for e in eps:
        p = metrics["policies"][e["policy"]]
        ep = p["episodes"][SEEDS.index(e["seed"])]
        # reset + every 0.5 s (12 steps of 0.04 s) + the last step
        assert len(e["xy"]) == 1 + ep["steps"] // 12 + (ep["steps"] % 12 != 0)
        assert all(abs(x) <= hx + 5 and abs(y) <= hy + 5 for x, y in e["xy"])
        assert len(e["found"]) == ep["targets_found"]
    moved = [e for e in eps if e["policy"] == "patrol"]
    assert all(np.hypot(*np.subtract(e["xy"][-1], e["xy"][0])) > 1.0 for e in moved)  # the patrol flies
    still = [e for e in eps if e["policy"] == "zero"]
    assert all(np.hypot(*np.subtract(e["xy"][-1], e["xy"][0])) < 1.0 for e in still)  # zero hovers


def test_bad_input_is_refused_before_flying(bundle, tmp_path):
    with pytest.raises(ModelLoadError, match="no model at"):
        evaluate_policy(tmp_path / "missing.zip", num_episodes=1, progress=False)
    with pytest.raises(ConfigError, match="num_episodes: 0 must be an integer >= 1"):
        evaluate_policy(bundle, num_episodes=0, progress=False)
    with pytest.raises(ConfigError, match="'bogus' is not a baseline"):
        evaluate_policy(bundle, seeds=[1], baselines=("bogus",), flight_stack="cascade", progress=False)
    with pytest.raises(ConfigError, match="repeats a seed"):
        evaluate_policy(bundle, seeds=[1, 1], flight_stack="cascade", progress=False)
    with pytest.raises(ValueError, match="flight_stack must be one of"):
        evaluate_policy(bundle, seeds=[1], flight_stack="gazebo", progress=False)


def test_evaluation_seeds_come_from_the_config():
    seeds = load_evaluation_cfg().evaluation.seeds
    assert min(seeds) >= 1000  # apart from the training seeds (0, 1, ...)
    assert resolve_eval_seeds(3) == list(seeds[:3])
    assert resolve_eval_seeds(None) == list(seeds)
    longer = resolve_eval_seeds(len(seeds) + 2)
    assert longer[: len(seeds)] == list(seeds) and longer[-2:] == [max(seeds) + 1, max(seeds) + 2]
    assert resolve_eval_seeds(5, seeds=[7, 3]) == [7, 3]


def test_patrol_policy_repeats_per_seed_and_pickles():
    obs = np.zeros(64, dtype=np.float32)
    p = PatrolPolicy(dt=0.04)
    p.reset(1000)
    a = [p(obs) for _ in range(5)]
    copy = pickle.loads(pickle.dumps(p))
    p.reset(1000)
    assert np.array_equal(a, [p(obs) for _ in range(5)])
    p.reset(1001)
    assert not np.array_equal(a[0], p(obs))
    assert copy(obs).shape == (4,) and copy(obs).dtype == np.float32 and p.label == "patrol"
    assert np.all(np.abs(a) <= 1.0)
    with pytest.raises(ValueError, match=r"obs must be 1-D \(obs_dim,\), got shape \(2, 64\)"):
        p(np.zeros((2, 64)))
    with pytest.raises(ValueError, match="dt must be the env's step_dt"):
        PatrolPolicy(dt=0.0)
    assert make_baseline("patrol", 0.02).dt == 0.02 and make_baseline("zero").label == "zero-action"


def test_px4_version_reads_the_binary_tag(tmp_path, monkeypatch):
    binary = tmp_path / "build" / "px4_sitl_default" / "bin" / "px4"
    binary.parent.mkdir(parents=True)
    binary.write_bytes(
        b"\x7fELF\x00"
        + b'_test_tag_to_version_number("v1.2.3", 0x010203FF)\x00v1.2.3\x00'
        + b"localhost\x00v1.16.2\x00main\x00Linux\x00"
    )
    binary.chmod(0o755)
    monkeypatch.setenv("PX4_DIR", str(tmp_path))
    assert px4_version() == "v1.16.2"
    monkeypatch.setenv("PX4_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert px4_version() is None


def test_cli_evaluate_writes_metrics_and_refuses_bad_models(bundle, tmp_path, capsys):
    out = tmp_path / "evaluation"
    assert (
        main(
            [
                "evaluate",
                str(bundle),
                "--seeds",
                "1000",
                "--episode-length-s",
                "1",
                "--flight-stack",
                "cascade",
                "--baselines",
                "zero",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert (
        "trained (run)" in text and "zero (zero-action)" in text and "flight stack: built-in cascade" in text
    )
    data = json.loads((out / "metrics.json").read_text())
    assert list(data["policies"]) == ["trained", "zero"] and (out / "tracks.json").is_file()
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"\x00" * 100)
    assert main(["evaluate", str(junk)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flyby evaluate: model ") and "is not a zip file" in err and "Traceback" not in err
    assert main(["evaluate", str(tmp_path / "none.zip")]) == 2
    assert "no model at" in capsys.readouterr().err


@pytest.mark.slow
def test_parallel_evaluation_equals_serial(bundle):
    """Worker processes (one pool for every policy) return the serial figures, tracks included."""
    kw = {
        "seeds": SEEDS,
        "flight_stack": "cascade",
        "episode_length_s": 1.0,
        "baselines": ("patrol",),
        "progress": False,
    }
    from flyby.training.evaluate import run_evaluation
    from flyby.training.policy_io import load_policy

    policy = load_policy(bundle)
    serial = run_evaluation(policy, **kw)
    parallel = run_evaluation(policy, px4_instances=2, **kw)
    assert parallel.metrics["parallel_envs"] == 2 and serial.metrics["parallel_envs"] == 1
    for key in ("trained", "patrol"):
        assert parallel.metrics["policies"][key]["episodes"] == serial.metrics["policies"][key]["episodes"]
    assert parallel.tracks == serial.tracks


@pytest.mark.px4
def test_px4_evaluation_says_px4_and_its_version(px4_binary, bundle, tmp_path):
    metrics = evaluate_policy(
        bundle,
        seeds=[1000],
        flight_stack="px4",
        episode_length_s=1.0,
        baselines=("zero",),
        out_dir=tmp_path,
        progress=False,
    )
    assert metrics["flight_stack"] == "px4" and metrics["flight_stack_label"].startswith("PX4 SITL")
    assert metrics["px4_version"] is not None and metrics["px4_version"].startswith("v")
    assert metrics["px4_instances"] == [0] and list(metrics["policies"]) == ["trained", "zero"]
    assert all(p["episode_lengths"] == [25] for p in metrics["policies"].values())
