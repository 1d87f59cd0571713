"""flyby.pipeline.run: stages, manifest, skipping, resume, refusals and exit codes (tiny budgets, cascade)."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("stable_baselines3")

from flyby.cli import main
from flyby.pipeline.run import (
    EXIT_BAD_INPUT,
    EXIT_CONFIG_CHANGED,
    EXIT_INTERRUPTED,
    STAGES,
    ConfigChanged,
    PipelineCfg,
    main_pipeline,
    probe_mp4,
    run_pipeline,
)

REPO = Path(__file__).resolve().parents[2]
TINY_TRAINING = """\
training:
  total_steps: 512
  num_drones: 4
  batch_size: 64
  eval_freq_steps: 1000000
  checkpoint_freq_steps: 128
  ppo:
    n_steps: 32
    n_epochs: 1
    net_arch: [32, 32]
"""


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory) -> PipelineCfg:
    path = tmp_path_factory.mktemp("cfg") / "tiny_training.yaml"
    path.write_text(TINY_TRAINING)
    return PipelineCfg(
        name="tiny",
        training_config=str(path),
        eval_episodes=2,
        episode_length_s=2.0,
        flight_stack="cascade",
        px4_instances=1,
    )


@pytest.fixture(scope="module")
def done_run(tiny_cfg, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    result = run_pipeline(tiny_cfg, output_dir=out, progress=False)
    return out, result


def test_a_run_makes_every_artefact_and_records_every_stage(done_run):
    out, result = done_run
    run = out / "runs" / "tiny"
    assert result.run_dir == run
    for rel in (
        "manifest.json",
        "training/model.zip",
        "training/vecnormalize.pkl",
        "training/progress.csv",
        "evaluation/metrics.json",
        "evaluation/tracks.json",
        "video/validation.mp4",
        "export/policy.onnx",
        "export/policy_contract.json",
    ):
        assert (run / rel).is_file(), rel
    assert probe_mp4(run / "video" / "validation.mp4") > 0
    assert result.report_path == out / "reports" / "tiny_report.html" and result.report_path.is_file()
    m = json.loads((run / "manifest.json").read_text())
    assert m["schema"] == "flyby.run/1" and m["name"] == "tiny" and len(m["config_hash"]) == 16
    assert m["flight_stack"] == "cascade" and m["backend"] == "mujoco"
    assert (
        set(m["versions"]) >= {"python", "torch", "stable_baselines3", "mujoco"}
        and m["machine"]["cores"] >= 1
    )
    assert "commit" in m["git"]
    for s in STAGES:
        assert m["stages"][s]["status"] == "done" and m["stages"][s]["wall_s"] >= 0, s
    assert m["stages"]["train"]["env_steps"] == 512 and 0 < m["stages"]["train"]["learner_share"] < 1
    assert m["stages"]["export"]["max_abs_diff"] <= 1e-5
    assert m["config"]["multi_drone_env"]["episode_length_s"] == 2.0  # training and evaluation alike
    assert result.metrics["episode_length_s"] == 2.0 and result.metrics["seeds"] == [1000, 1001]


def test_a_rerun_skips_every_valid_stage(done_run, tiny_cfg, capsys):
    out, first = done_run
    model = out / "runs" / "tiny" / "training" / "model.zip"
    before = model.stat().st_mtime_ns
    again = run_pipeline(tiny_cfg, output_dir=out, progress=False)
    text = capsys.readouterr().out
    for k, s in enumerate(STAGES[:-1], start=1):
        assert f"[{k}/5] {s}: valid artefact found, skipped" in text
    assert model.stat().st_mtime_ns == before
    assert again.manifest["stages"]["report"]["status"] == "done"  # the report is always rewritten


def test_a_changed_config_is_refused_and_fresh_moves_the_old_run_aside(done_run, tiny_cfg, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(done_run[0], out)
    changed = replace(tiny_cfg, eval_episodes=3)
    with pytest.raises(ConfigChanged, match="made with another config"):
        run_pipeline(changed, output_dir=out, progress=False)
    assert main_pipeline(changed, output_dir=out) == EXIT_CONFIG_CHANGED
    assert "--fresh" in capsys.readouterr().err
    assert (out / "runs" / "tiny" / "training" / "model.zip").is_file()  # nothing was touched
    result = run_pipeline(changed, output_dir=out, fresh=True, progress=False)
    kept = [p for p in (out / "runs").iterdir() if p.name.startswith("tiny.previous-")]
    assert len(kept) == 1 and (kept[0] / "training" / "model.zip").is_file()
    assert result.metrics["seeds"] == [1000, 1001, 1002]


def test_an_interrupted_run_resumes_training_from_its_checkpoint(tiny_cfg, tmp_path, monkeypatch):
    from flyby.envs.multi_drone_env import MultiDroneISREnv

    calls = {"n": 0}
    real_step = MultiDroneISREnv.step

    def step(self, actions):
        calls["n"] += 1
        if calls["n"] == 100:  # in the 4th 32-step rollout
            raise KeyboardInterrupt
        return real_step(self, actions)

    monkeypatch.setattr(MultiDroneISREnv, "step", step)
    assert main_pipeline(tiny_cfg, output_dir=tmp_path) == EXIT_INTERRUPTED
    manifest = json.loads((tmp_path / "runs" / "tiny" / "manifest.json").read_text())
    assert manifest["stages"]["train"]["status"] == "interrupted"
    assert manifest["stages"]["evaluate"]["status"] == "pending"
    monkeypatch.setattr(MultiDroneISREnv, "step", real_step)
    result = run_pipeline(tiny_cfg, output_dir=tmp_path, progress=False)
    train = result.manifest["stages"]["train"]
    assert train["status"] == "done" and train["resumed_from"] == 384 and train["env_steps"] == 512


def test_bad_input_exits_2_before_any_work(tiny_cfg, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main_pipeline(tiny_cfg, output_dir=blocker) == EXIT_BAD_INPUT
    assert "not writable" in capsys.readouterr().err
    assert main(["pipeline", "../escape"]) == EXIT_BAD_INPUT
    assert "name: '../escape' must be letters" in capsys.readouterr().err
    assert main(["pipeline", "x", "--eval-episodes", "1", "--output-dir", str(tmp_path)]) == EXIT_BAD_INPUT
    assert "eval_episodes: 1 must be >= 2" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  algorithm: DQN\n")
    assert (
        main(["pipeline", "x", "--training-config", str(bad), "--output-dir", str(tmp_path)])
        == EXIT_BAD_INPUT
    )
    assert "training.algorithm: 'DQN' is not one of" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "x").exists()


def test_a_corrupt_model_is_a_clear_error_and_earlier_artefacts_stay(done_run, tiny_cfg, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(done_run[0], out)
    run = out / "runs" / "tiny"
    (run / "training" / "model.zip").write_bytes(b"PK\x03\x04 truncated")
    (run / "evaluation" / "metrics.json").unlink()  # the evaluation stage must load the model again
    assert main_pipeline(tiny_cfg, output_dir=out) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "model.zip" in err and "Traceback" not in err
    manifest = json.loads((run / "manifest.json").read_text())
    assert (
        manifest["stages"]["evaluate"]["status"] == "failed"
        and "ModelLoadError" in manifest["stages"]["evaluate"]["error"]
    )
    assert (run / "video" / "validation.mp4").is_file() and (run / "export" / "policy.onnx").is_file()


def test_the_seed_script_passes_its_positionals_and_refuses_bad_ones():
    script = REPO / "scripts" / "run_full_pipeline.sh"
    shown = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and "NAME [TRAINING_STEPS] [EVAL_EPISODES]" in shown.stdout
    bad = subprocess.run([str(script), "x", "many"], capture_output=True, text=True)
    assert bad.returncode == 2 and "TRAINING_STEPS must be a positive integer, got 'many'" in bad.stderr
    none = subprocess.run([str(script)], capture_output=True, text=True)
    assert none.returncode == 2
    # The positionals become flyby pipeline options (a bad name shows the call went through).
    through = subprocess.run(
        [str(script), "../x", "1000", "4"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "FLYBY": str(REPO / ".venv" / "bin" / "flyby")},
    )
    assert through.returncode == 2 and "name: '../x'" in through.stderr


def test_an_export_that_does_not_match_its_contract_is_redone(done_run, tiny_cfg, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(done_run[0], out)
    onnx = out / "runs" / "tiny" / "export" / "policy.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\0")  # no longer the graph the contract's sha256 names
    result = run_pipeline(tiny_cfg, output_dir=out, progress=False)
    assert result.manifest["stages"]["export"]["status"] == "done"
    assert result.manifest["stages"]["train"]["status"] == "done"  # kept from the first run, skipped now
    from flyby.pipeline.run import _valid_export

    assert _valid_export(onnx.parent)
