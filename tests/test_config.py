from __future__ import annotations

import pytest

from flyby.config import from_dict, load_yaml, to_dict
from flyby.config.dynamics import DirectDynamicsCfg
from flyby.config.training import TrainingCfg, load_training_cfg
from flyby.enums import ResolutionPreset
from flyby.errors import ConfigError


def test_packaged_configs_hold_the_seed_plan_values_and_the_tuned_model():
    cfg = load_training_cfg()
    dyn = cfg.direct_env.dynamics
    # The action scale and the noise are the seed plan's; the response is the phase-2 fit.
    assert (dyn.max_velocity, dyn.max_vertical_velocity, dyn.max_yaw_rate) == (10.0, 5.0, 90.0)
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
    dyn.write_text("max_yaw_rate: -90\nvelocity_damping: 1.0\nposition_noise_std: -1\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(DirectDynamicsCfg, dyn)
    assert {p.split(":")[0] for p in info.value.problems} == {
        "max_yaw_rate",
        "velocity_damping",
        "position_noise_std",
    }
    with pytest.raises(ConfigError, match="episode_length_s: 0.01 s is shorter than one step"):
        from_dict(TrainingCfg, {"direct_env": {"episode_length_s": 0.01}})
    with pytest.raises(ConfigError, match="far_m"):
        from_dict(TrainingCfg, {"direct_env": {"camera": {"near_m": 10.0, "far_m": 5.0}}})


def test_dynamics_belong_in_the_dynamics_file(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text("direct_env:\n  dynamics: {max_velocity: 3.0}\n")
    with pytest.raises(ConfigError, match="set the dynamics in dynamics_config.yaml"):
        load_training_cfg(f)


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
