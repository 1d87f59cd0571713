"""Phase 4 gate: one command from a fresh checkout to a trained, evaluated, filmed and reported policy.

The seed plan's Phase 4: "Full pipeline completes without manual intervention; final policy achieves
target reward in PX4 evaluation; validation video demonstrates ISR capabilities". The gate runs
:func:`flyby.pipeline.run.run_pipeline` end to end (``flyby pipeline phase4_<run>``):

1. train PPO on ``MultiDroneISR-v0`` (32 drones, direct dynamics, the packaged training config);
2. evaluate the trained policy and the shipped scripted baselines (zero, random, patrol) on the same
   fixed seeds in ``PX4ISR-v0`` flown by the gate's flight stack (``--flight-stack``; ``auto``: PX4
   SITL when found, else the built-in cascade);
3. record the validation video, 4. export ONNX, 5. write the HTML report,

then checks every artefact (the model loads with its normaliser, ``metrics.json`` matches its schema,
the ONNX graph reproduces the SB3 actions, the MP4 is H.264 and plays, the report exists) and judges
the policy against the baselines, not against itself:

- its return's 95 % interval lies above the zero and random baselines' intervals (no overlap);
- its mean return and its mean number of targets found are above the patrol baseline's means;
- no crash and no geofence exit in any evaluation episode.

The ``slow`` configuration (``-m slow``, the full training budget) also requires the return's interval
to lie above the patrol baseline's interval and the mean return to reach the target return written
in ``evaluation_config.yaml`` (``evaluation.target_return``; how it was chosen is written beside it).

The stage wall times, training throughput (env + learner) and the learner's share, the evaluation
table and the ONNX difference are printed and recorded as metrics; the validation video is embedded
in the gate report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gate_cfg import Phase4RunCfg

POLICY_KEYS = ("trained", "zero", "random", "patrol")


@pytest.mark.phase4
@pytest.mark.parametrize("run", ["quick", pytest.param("slow", marks=pytest.mark.slow)])
def test_phase4_pipeline(run, flight_stack, gate_cfg, video_recorder, stack_strings, output_dir):
    from flyby.config.evaluation import load_evaluation_cfg
    from flyby.pipeline.run import STAGES, PipelineCfg, probe_mp4, run_pipeline

    gate = gate_cfg.phase4
    run_cfg: Phase4RunCfg = getattr(gate, run)
    # The seed plan's name in output/videos/ (the slow run keeps its own).
    video_recorder.set_latest_name("pipeline_validation" if run == "quick" else f"pipeline_validation_{run}")
    cfg = PipelineCfg(
        name=f"phase4_{run}",
        total_steps=run_cfg.total_steps,
        budget_s=run_cfg.budget_s,
        eval_episodes=run_cfg.eval_episodes,
        first_eval_seed=gate.first_eval_seed,
        flight_stack=flight_stack,
        px4_instances=gate.px4_instances,
    )
    result = run_pipeline(cfg, output_dir=output_dir, fresh=True)  # a previous run of the gate is moved aside
    manifest, metrics = result.manifest, result.metrics
    stages = manifest["stages"]
    train = stages["train"]

    # Figures first (a failed verdict still leaves them in the output and the report).
    print(f"\nPhase 4 pipeline ({run}): {result.run_dir}")
    print("  stage wall times: " + ", ".join(f"{s} {stages[s].get('wall_s', 0):.1f} s" for s in STAGES))
    print(
        f"  training: {train['env_steps']:,} env steps, {train['steps_per_s']:,.0f} steps/s (env + learner), "
        f"learner share {100 * train['learner_share']:.0f} %"
    )
    print(
        f"  evaluation in PX4ISR-v0 ({metrics['flight_stack_label']}; "
        f"PX4 {metrics.get('px4_version') or '-'}), "
        f"{len(metrics['seeds'])} episodes of {metrics['episode_length_s']:g} s, seeds "
        f"{metrics['seeds'][0]}..{metrics['seeds'][-1]}:"
    )
    for key in POLICY_KEYS:
        p = metrics["policies"][key]
        print(
            f"    {key:<8} return {p['mean_return']:+8.2f} [{p['ci95'][0]:+.2f}, {p['ci95'][1]:+.2f}]  "
            f"targets "
            f"{p['targets_found']['mean']:5.1f}  coverage {100 * p['coverage']['mean']:4.1f} %  success "
            f"{100 * p['success_rate']:3.0f} %  crashes {p['crashes']}  geofence {p['geofence_exits']}"
        )
    onnx_diff = stages["export"].get("max_abs_diff")
    print(f"  ONNX max |action difference| {onnx_diff:.2e}; report {result.report_path}")
    for s in STAGES:
        video_recorder.record_metric(f"stage_{s}_s", stages[s].get("wall_s", 0.0))
    video_recorder.record_metric("train_env_steps", train["env_steps"])
    video_recorder.record_metric("train_steps_per_s", train["steps_per_s"])
    video_recorder.record_metric("learner_share", train["learner_share"])
    video_recorder.record_metric("flight_stack", metrics["flight_stack_label"])
    for key in POLICY_KEYS:
        p = metrics["policies"][key]
        video_recorder.record_metric(f"return_mean_{key}", p["mean_return"])
        video_recorder.record_metric(f"targets_found_{key}", p["targets_found"]["mean"])
    video_recorder.record_metric("onnx_max_abs_diff", onnx_diff)
    _embed_validation_video(
        video_recorder, result.run_dir / "video" / "validation.mp4", stack_strings, metrics, stages
    )

    # Every artefact is valid.
    assert all(stages[s]["status"] in ("done", "skipped") for s in STAGES), stages
    _check_artefacts(result.run_dir, metrics, gate.max_onnx_diff)
    assert probe_mp4(result.run_dir / "video" / "validation.mp4") > 0, (
        "the validation video is not a playable H.264 MP4"
    )
    assert result.report_path.is_file() and "validation.mp4" in result.report_path.read_text()
    assert metrics["flight_stack"] == flight_stack

    # Verdicts against the baselines, on the same seeds and flight stack.
    t, zero, rnd, patrol = (metrics["policies"][k] for k in POLICY_KEYS)
    for name, base in (("zero", zero), ("random", rnd)):
        assert t["ci95"][0] > base["ci95"][1], (
            f"trained return {t['mean_return']:+.2f} [{t['ci95'][0]:+.2f}, {t['ci95'][1]:+.2f}] does not "
            f"lie above the {name} baseline's [{base['ci95'][0]:+.2f}, {base['ci95'][1]:+.2f}]"
        )
    assert t["mean_return"] > patrol["mean_return"], (
        f"trained mean return {t['mean_return']:+.2f} is not above the patrol baseline's "
        f"{patrol['mean_return']:+.2f}"
    )
    assert t["targets_found"]["mean"] > patrol["targets_found"]["mean"], (
        f"trained policy finds {t['targets_found']['mean']:.1f} targets per episode, the patrol baseline "
        f"{patrol['targets_found']['mean']:.1f}: it has not learned ISR"
    )
    assert t["crashes"] == 0 and t["geofence_exits"] == 0, (
        f"trained policy crashed {t['crashes']} and left the geofence {t['geofence_exits']} times in "
        f"{len(metrics['seeds'])} episodes"
    )
    if run == "slow":
        target = load_evaluation_cfg().evaluation.target_return
        assert t["ci95"][0] > patrol["ci95"][1], (
            f"trained return interval [{t['ci95'][0]:+.2f}, {t['ci95'][1]:+.2f}] overlaps the patrol "
            f"baseline's [{patrol['ci95'][0]:+.2f}, {patrol['ci95'][1]:+.2f}]"
        )
        assert t["mean_return"] >= target, (
            f"trained mean return {t['mean_return']:+.2f} is below the target return {target:+.2f} "
            "(evaluation_config.yaml evaluation.target_return)"
        )


def _check_artefacts(run_dir: Path, metrics: dict, max_onnx_diff: float) -> None:
    """The model loads with its normaliser, metrics.json has its schema, ONNX reproduces SB3."""
    import numpy as np

    from flyby.training.export import check_onnx_policy
    from flyby.training.policy_io import load_policy

    policy = load_policy(run_dir / "training" / "model.zip")
    assert policy.obs_rms is not None, "the trained model loaded without its observation normaliser"
    obs = np.zeros(policy.model.observation_space.shape, dtype=np.float32)
    assert policy(obs).shape == (4,)
    assert metrics["schema"] == "flyby.evaluation/1"
    for key in POLICY_KEYS:
        p = metrics["policies"][key]
        n = len(metrics["seeds"])
        assert p["n"] == n and len(p["returns"]) == n and len(p["episodes"]) == n
        assert [e["seed"] for e in p["episodes"]] == metrics["seeds"]
        assert p["ci95"][0] <= p["mean_return"] <= p["ci95"][1]
        assert 0.0 <= p["success_rate"] <= 1.0
    tracks = json.loads((run_dir / "evaluation" / "tracks.json").read_text())
    assert {e["policy"] for e in tracks["episodes"]} >= set(POLICY_KEYS)
    diff = check_onnx_policy(
        run_dir / "export" / "policy.onnx",
        policy.model,
        policy.obs_rms,
        clip_obs=policy.clip_obs,
        epsilon=policy.epsilon,
    )
    assert diff <= max_onnx_diff, f"ONNX actions differ from SB3's by {diff:.2e} (> {max_onnx_diff:g})"


def _embed_validation_video(
    video_recorder, mp4: Path, stack_strings: dict, metrics: dict, stages: dict
) -> None:
    """The pipeline's validation video, frame by frame, into the gate's own video (report embedding)."""
    import av

    t, patrol = metrics["policies"]["trained"], metrics["policies"]["patrol"]
    video_recorder.set_header(backend=stack_strings["backend"], flight_stack=metrics["flight_stack_label"])
    footer = (
        f"trained {t['mean_return']:+.1f} [{t['ci95'][0]:+.1f}, {t['ci95'][1]:+.1f}], targets "
        f"{t['targets_found']['mean']:.1f} | patrol {patrol['mean_return']:+.1f}, targets "
        f"{patrol['targets_found']['mean']:.1f} ({len(metrics['seeds'])} seeds)"
    )
    # The FPS counter shows the training stage's throughput (env + learner), as the pipeline timed it; the
    # sidebar carries the gate's own figures beside the per-step ones drawn into the episode frames.
    train, video = stages["train"], stages["video"]
    if train.get("env_steps") and train.get("wall_s"):
        video_recorder.count_steps(int(train["env_steps"]), seconds=float(train["wall_s"]))
    figures = {
        "training steps/s": round(train["steps_per_s"]),
        "training env steps": train["env_steps"],
        "learner share": f"{100 * train['learner_share']:.0f} %",
        "episode return": round(video.get("return", float("nan")), 2),
        "episode targets": video.get("targets_found", "-"),
        "trained mean return": round(t["mean_return"], 2),
        "patrol mean return": round(patrol["mean_return"], 2),
    }
    if not mp4.is_file():
        return
    with av.open(str(mp4)) as container:
        for k, frame in enumerate(container.decode(video=0)):
            if k % 2:  # every other frame: the gate video stays small; the full one is in the run folder
                continue
            video_recorder.add_frame(
                frame.to_ndarray(format="rgb24"), footer=footer, metrics={"episode step": k + 1, **figures}
            )
