from __future__ import annotations

import pytest

from flyby.config import from_dict, load_yaml, to_dict
from flyby.config.dynamics import DirectDynamicsCfg
from flyby.config.evaluation import load_evaluation_cfg
from flyby.config.training import TrainingCfg, load_training_cfg
from flyby.enums import ResolutionPreset
from flyby.errors import ConfigError


def test_packaged_configs_hold_the_seed_plan_values_and_the_tuned_model():
    cfg = load_training_cfg()
    dyn = cfg.direct_env.dynamics
    # The action scale and the noise are the seed plan's; the response is the phase-2 fit.
    for env_cfg in (cfg.direct_env, cfg.multi_drone_env, load_evaluation_cfg().px4_env):
        act = env_cfg.actions
        assert (act.max_velocity, act.max_vertical_velocity, act.max_yaw_rate) == (10.0, 5.0, 90.0)
    assert (dyn.position_noise_std, dyn.velocity_noise_std) == (0.02, 0.1)
    seed = DirectDynamicsCfg()
    assert seed.velocity_damping == 0.95 and 0.85 < dyn.velocity_damping < 0.95
    from flyby.training.tune_dynamics import EXTENSIONS

    untouched = [f for fields in EXTENSIONS.values() for f in fields if getattr(dyn, f) == getattr(seed, f)]
    assert untouched == [], f"extensions left at their seed values in dynamics_config.yaml: {untouched}"
    multi = cfg.multi_drone_env
    assert multi.num_drones == 16 and multi.render_interval == 4
    assert multi.camera.preset is ResolutionPreset.MULTI and (multi.camera.width, multi.camera.height) == (
        80,
        80,
    )
    assert cfg.direct_env.camera.preset is ResolutionPreset.TRAINING
    assert multi.dynamics == dyn


def test_every_bad_value_is_reported_at_once(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        """
multi_drone_env:
  render_interval: 0
  step_dt: -0.05
  num_dronez: 16
  camera: {fovy_deg: "wide", preset: huge}
direct_env:
  perception_interval: 1.5
"""
    )
    with pytest.raises(ConfigError) as info:
        load_training_cfg(bad)
    text = str(info.value)
    for path in (
        "multi_drone_env.render_interval: 0",
        "multi_drone_env.step_dt: -0.05",
        "multi_drone_env.num_dronez: unknown key",
        "multi_drone_env.camera.fovy_deg: expected a number",
        "multi_drone_env.camera.preset: 'huge' is not one of",
        "direct_env.perception_interval: expected an integer",
    ):
        assert path in text, f"{path!r} missing from:\n{text}"
    assert len(info.value.problems) == 6


def test_negative_rates_and_cross_field_checks(tmp_path):
    dyn = tmp_path / "dyn.yaml"
    dyn.write_text("damping_reference_dt: -0.05\nvelocity_damping: 1.0\nposition_noise_std: -1\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(DirectDynamicsCfg, dyn)
    assert {p.split(":")[0] for p in info.value.problems} == {
        "damping_reference_dt",
        "velocity_damping",
        "position_noise_std",
    }
    with pytest.raises(ConfigError, match="episode_length_s: 0.01 s is shorter than one step"):
        from_dict(TrainingCfg, {"direct_env": {"episode_length_s": 0.01}})
    with pytest.raises(ConfigError, match="far_m"):
        from_dict(TrainingCfg, {"direct_env": {"camera": {"near_m": 10.0, "far_m": 5.0}}})


def test_dynamics_belong_in_the_dynamics_file(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text("direct_env:\n  dynamics: {velocity_damping: 0.9}\n")
    with pytest.raises(ConfigError, match="set the dynamics in dynamics_config.yaml"):
        load_training_cfg(f)


def test_action_scale_moved_out_of_the_dynamics_file(tmp_path):
    """An old dynamics file with the action scale gets an error naming the new key, every one listed."""
    old = tmp_path / "old_dynamics.yaml"
    old.write_text(
        "max_velocity: 10.0\nmax_vertical_velocity: 5.0\nmax_yaw_rate: 90.0\nvelocity_damping: 0.9\n"
    )
    with pytest.raises(ConfigError) as info:
        load_training_cfg(dynamics_path=old)
    problems = info.value.problems
    assert [p.split(":")[0] for p in problems] == ["max_velocity", "max_vertical_velocity", "max_yaw_rate"]
    assert all("has moved" in p and "actions." in p and "ActionCfg" in p for p in problems)
    assert "actions.max_yaw_rate" in problems[2]
    # The new place takes it, bounds checked like every field.
    f = tmp_path / "t.yaml"
    f.write_text(
        "direct_env:\n  actions: {max_velocity: 12.0}\nmulti_drone_env:\n  actions: {max_yaw_rate: 0}\n"
    )
    with pytest.raises(ConfigError, match=r"multi_drone_env\.actions\.max_yaw_rate: 0.0 is out of range"):
        load_training_cfg(f)
    f.write_text("direct_env:\n  actions: {max_velocity: 12.0}\n")
    assert load_training_cfg(f).direct_env.actions.max_velocity == 12.0


def test_file_errors_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_training_cfg(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_training_cfg(broken)


def test_round_trip_through_plain_dict():
    cfg = load_training_cfg()
    again = from_dict(TrainingCfg, to_dict(cfg))
    assert again == cfg
