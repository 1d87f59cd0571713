"""Phase 2 gate: a policy trained on the direct dynamics works in the full-fidelity env.

Two PPO runs, identical but for the env they train on:

- **direct-trained**: ``MultiDroneISR-v0`` (16 drones = 16 parallel envs on the direct dynamics,
  the packaged model tuned to PX4 SITL);
- **baseline**: ``PX4ISR-v0`` flown by the gate's flight stack (``--flight-stack``, ``auto``: PX4
  SITL when found, else the built-in cascade) -> rotors -> MuJoCo physics, render off. With PX4 it
  is the seed plan's "PX4-trained" baseline: ``full_num_envs_px4`` parallel PX4 instances, each in
  its own worker process (every episode restarts its PX4 and takes off: the lockstep and the resets
  are what make PX4 training slow); with the cascade, ``full_num_envs`` copies in ``DummyVecEnv``;

same PPO hyper-parameters (the packaged ``ppo_config.yaml``), same seed, same wall-clock budget,
same training episode length. Both are then scored in ``PX4ISR-v0`` with the same flight stack, on
the same fixed evaluation seeds (deterministic actions; with PX4, on ``full_num_envs_px4`` parallel
instances), beside two policies that learn nothing: uniform random actions and the zero action
(hover). Means with Student-t 95 % intervals are printed, recorded as metrics and written to
``output/metrics/phase2_transfer_<run>.json`` with every episode, both learning curves and the
flight stack.

Verdicts, in this order (evidence is recorded first, so a failure still leaves its video and
numbers):

1. cascade: the recorded (rendered) episode returns exactly what the same seed returned
   unrendered: rendering and the recording do not change what is evaluated. PX4 SITL is not
   bit-reproducible run to run (the Phase 1 gate shows it and checks rendering against the poses
   instead), so under PX4 the recorded episode is a fresh flight of the seed and its return is
   printed beside the evaluated one, not compared;
2. the transfer criterion, :func:`flyby.training.evaluate.transfer_criterion`::

       (direct - reference) >= 0.9 * (baseline - reference)

   with ``reference`` the better of the random and zero-action mean returns on the same seeds.
   Returns here can be negative (crash, geofence and jerk penalties), so "90 % of the baseline's
   return" is read as "90 % of the baseline's improvement over a policy that learned nothing",
   which means the same for any sign and any offset of the reward. The reference is the better of
   the two trivial policies, not random alone: random actions pay a large jerk penalty, and
   against random any policy that merely holds still would "improve" a lot;
3. the direct-trained policy learned something: the lower end of its 95 % interval is above the
   reference. Without it, criterion 2 would also pass for two policies that both learned nothing.

The video is one evaluation episode per policy, side by side (direct-trained left, baseline
right): each drone's camera at the ``evaluation`` preset, rendered every 4th control step, with
return and step count.

Configurations (``phase_config.yaml``, section ``phase2_transfer``): ``quick`` (CI: 60 s per
policy, 8 evaluation episodes of 20 s; about 3 minutes on 2 cores with the cascade, 5 with PX4)
and ``slow`` (``-m slow``: 600 s per policy, 20 episodes). The quick one keeps the equal wall-clock
budget, so under PX4 its baseline trains on the few thousand env steps that 60 s of PX4 lockstep
and restarts allow (the direct run makes hundreds of thousands): it shows what an hour-scale PX4
budget buys in a minute, and the slow one gives the PX4 baseline ten times more. Run the quick one
with ``-m "phase2 and not slow"``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from gate_cfg import TransferRunCfg
from gate_overlays import truth_boxes

from flyby.perception.gt import GroundTruthDetector
from flyby.training.evaluate import (
    RandomPolicy,
    ZeroPolicy,
    evaluate_policy_full_fidelity,
    make_eval_env,
    reference_return,
    run_episode,
    transfer_criterion,
    transfer_ratio,
)
from flyby.training.train import load_ppo_cfg, train_ppo
from pytest_video_plugin import Text, side_by_side

VIEW_SCALE = 2  # 320x240 camera frames drawn at 640x480 (display only)


@pytest.mark.phase2
@pytest.mark.parametrize("run", ["quick", pytest.param("slow", marks=pytest.mark.slow)])
def test_phase2_policy_transfer(run, flight_stack, gate_cfg, video_recorder, stack_strings, output_dir):
    gate = gate_cfg.phase2_transfer
    video_recorder.set_latest_name(f"policy_transfer_{run}")
    px4 = flight_stack == "px4"
    run_cfg: TransferRunCfg = getattr(gate, run)
    seeds = list(range(gate.first_eval_seed, gate.first_eval_seed + run_cfg.eval_episodes))
    ppo_cfg = load_ppo_cfg()
    models = output_dir / "models"

    # Training: same algorithm, hyper-parameters, seed, episode length and wall-clock budget.
    common = {
        "budget_s": run_cfg.budget_s,
        "seed": gate.seed,
        "ppo_kwargs": ppo_cfg,
        "episode_length_s": gate.episode_length_s,
    }
    direct_run = train_ppo(
        "direct", num_drones=gate.num_drones, save_path=models / f"phase2_transfer_{run}_direct.zip", **common
    )
    base_run = train_ppo(
        "full",
        num_envs_full=gate.full_num_envs_px4 if px4 else gate.full_num_envs,
        flight_stack=flight_stack,
        save_path=models / f"phase2_transfer_{run}_baseline.zip",
        **common,
    )

    # Evaluation in PX4ISR-v0 on the same seeds, with the same flight stack.
    ev = {
        "episode_length_s": gate.episode_length_s,
        "flight_stack": flight_stack,
        "px4_instances": gate.full_num_envs_px4 if px4 else 1,
    }
    direct = evaluate_policy_full_fidelity(direct_run.model, seeds, label="direct-trained", **ev)
    base = evaluate_policy_full_fidelity(base_run.model, seeds, label="baseline (full)", **ev)
    random = evaluate_policy_full_fidelity(RandomPolicy(), seeds, label="random", **ev)
    zero = evaluate_policy_full_fidelity(ZeroPolicy(), seeds, label="zero-action", **ev)
    reference = reference_return(random, zero)
    passed = transfer_criterion(direct.mean, base.mean, reference, gate.min_fraction)
    ratio = transfer_ratio(direct.mean, base.mean, reference)

    runs_line = (
        f"{run_cfg.budget_s:g} s per policy: direct {direct_run.env_steps:,} env steps "
        f"({direct_run.episodes} episodes), baseline {base_run.env_steps:,} env steps "
        f"({base_run.episodes} episodes)"
    )
    print(
        f"\nPhase 2 policy transfer ({run}): PPO {ppo_cfg.net_arch} n_steps {ppo_cfg.n_steps} "
        f"batch {ppo_cfg.batch_size} lr {ppo_cfg.learning_rate:g}, seed {gate.seed}; {runs_line}"
    )
    print(
        f"PX4ISR-v0 ({direct.flight_stack_label}), {len(seeds)} episodes of {gate.episode_length_s:g} s, "
        f"seeds {seeds[0]}..{seeds[-1]}:"
    )
    for r in (direct, base, random, zero):
        print("  " + r.describe())
    if np.isnan(ratio):  # the baseline did not improve on the reference: there is no gain to keep
        kept = (
            f"the baseline gained {base.mean - reference:+.2f} over it in {run_cfg.budget_s:g} s, so there "
            f"is no gain to keep; the direct-trained policy is {direct.mean - reference:+.2f} above it"
        )
    else:
        kept = f"direct keeps {100 * ratio:.0f} % of the baseline's gain over it"
    print(
        f"  reference (better of random and zero-action) {reference:+.2f}; {kept} "
        f"(criterion >= {100 * gate.min_fraction:.0f} %): {'PASS' if passed else 'FAIL'}"
    )

    for name, r in (("direct", direct), ("baseline", base), ("random", random), ("zero", zero)):
        video_recorder.record_metric(f"return_mean_{name}", r.mean)
        video_recorder.record_metric(f"return_ci95_lo_{name}", r.ci95[0])
        video_recorder.record_metric(f"return_ci95_hi_{name}", r.ci95[1])
    video_recorder.record_metric("return_reference", reference)
    video_recorder.record_metric("transfer_ratio", ratio)
    video_recorder.record_metric("env_steps_direct", direct_run.env_steps)
    video_recorder.record_metric("env_steps_baseline", base_run.env_steps)
    video_recorder.record_metric("budget_s", run_cfg.budget_s)
    video_recorder.record_metric("flight_stack", direct.flight_stack_label)
    metrics_dir = output_dir / "metrics"
    metrics_dir.mkdir(parents=True, exist_ok=True)
    (metrics_dir / f"phase2_transfer_{run}.json").write_text(
        json.dumps(
            {
                "run": run,
                "seeds": seeds,
                "episode_length_s": gate.episode_length_s,
                "flight_stack": flight_stack,
                "flight_stack_label": direct.flight_stack_label,
                "training": {"direct": direct_run.summary(), "baseline": base_run.summary()},
                "evaluation": {r.label: r.as_dict() for r in (direct, base, random, zero)},
                "reference": reference,
                "transfer_ratio": None if np.isnan(ratio) else ratio,
                "min_fraction": gate.min_fraction,
                "passed": passed,
            },
            indent=2,
        )
    )

    # The video: one evaluation episode per policy (the first seed), direct-trained left, baseline right.
    video_recorder.set_header(backend=stack_strings["backend"], config=runs_line)
    footer = (
        " | ".join(
            f"{r.label} {r.mean:+.1f} [{r.ci95[0]:+.1f}, {r.ci95[1]:+.1f}]" for r in (direct, base, random)
        )
        + f" (mean, 95% CI, {len(seeds)} seeds)"
    )
    env = make_eval_env(
        gate.episode_length_s,
        render_mode="rgb_array",
        render_interval=gate.video_render_interval,
        flight_stack=flight_stack,
    )
    try:
        video_recorder.set_header(flight_stack=env.flight_stack_label)
        truth = GroundTruthDetector.from_world(env.backend.camera, env.task.world)
        video_recorder.count_steps(0)  # the FPS counter: control steps of the recorded (rendered) episodes
        recorded = [
            _record_episode(env, model, seeds[0], truth, video_recorder.count_steps)
            for model in (direct_run.model, base_run.model)
        ]
    finally:
        env.close()
    _write_video(video_recorder, recorded, footer)

    # The criterion, (direct - reference) >= min_fraction * (baseline - reference), as a floor check: the
    # report's gate summary shows it with its figures (the assert below says the same in words).
    video_recorder.check_floor(
        f"direct gain over reference (>= {100 * gate.min_fraction:.0f} % of baseline's)",
        measured=direct.mean - reference,
        floor=gate.min_fraction * (base.mean - reference),
        unit="return",
    )

    # Verdicts.
    for label, (stats, _), result in zip(("direct-trained", "baseline"), recorded, (direct, base)):
        print(
            f"  recorded episode (seed {seeds[0]}, rendered) of the {label} policy: {stats.ret:+.2f}, "
            f"evaluated {result.returns[0]:+.2f}"
        )
        if px4:
            continue  # PX4 is not bit-reproducible: a fresh flight of the seed (see the docstring)
        assert stats.ret == pytest.approx(result.returns[0], abs=gate.return_tol), (
            f"{label}: the recorded episode (seed {seeds[0]}) returned {stats.ret:+.6f}, the evaluation "
            f"{result.returns[0]:+.6f}; rendering or recording changed the episode"
        )
    assert passed, (
        f"direct-trained policy keeps {100 * ratio:.0f} % of the baseline's gain over the reference "
        f"(needs >= {100 * gate.min_fraction:.0f} %): direct {direct.mean:+.2f}, baseline {base.mean:+.2f}, "
        f"reference {reference:+.2f} ({runs_line})"
    )
    assert direct.ci95[0] > reference, (
        f"the direct-trained policy did not learn in {run_cfg.budget_s:g} s: its return {direct.mean:+.2f} "
        f"(95% CI [{direct.ci95[0]:+.2f}, {direct.ci95[1]:+.2f}]) is not above the better trivial policy "
        f"({reference:+.2f}) ({runs_line})"
    )


def _record_episode(env, model, seed: int, truth, count_steps):
    """Run one rendered episode; return its stats and the rendered frames with their step, return, targets
    seen, sim time and ground-truth boxes (``truth``: a detector on the render camera)."""
    frames = []

    def on_step(step: int, ret: float, info: dict) -> None:
        count_steps(1)
        if info["rendered"]:
            frames.append(
                (
                    info["camera"].copy(),
                    step,
                    ret,
                    int(env.task.seen[0].sum()),
                    info["sim_time_s"],
                    truth_boxes(env.task, truth),
                )
            )

    stats = run_episode(env, model, seed, on_step=on_step)
    return stats, frames


def _write_video(video_recorder, recorded, footer: str) -> None:
    """Side by side, frame by frame; an episode that ended early holds its last frame, marked as ended."""
    (d_stats, d_frames), (b_stats, b_frames) = recorded
    labels = ("direct-trained (MultiDroneISR-v0)", "baseline (PX4ISR-v0)")
    for k in range(max(len(d_frames), len(b_frames))):
        views, texts, metrics, boxes = [], [], {}, []
        x0, sim_t = 0, 0.0
        for label, stats, frames in zip(labels, (d_stats, b_stats), (d_frames, b_frames)):
            image, step, ret, seen, t, truth = frames[min(k, len(frames) - 1)]
            boxes += [b.box(dx=x0, scale=VIEW_SCALE) for b in truth]
            state = f"step {step}  return {ret:+.2f}"
            if k >= len(frames):  # this episode is over: show how it ended
                step, ret = stats.steps, stats.ret
                how = "crash" if stats.crashed else "geofence" if stats.geofence else "time limit"
                state = f"ended at step {step} ({how})  return {ret:+.2f}"
            sim_t = max(sim_t, t)
            view = np.kron(image, np.ones((VIEW_SCALE, VIEW_SCALE, 1), dtype=np.uint8))
            views.append(view)
            texts.append(Text(label, x=x0 + 8, y=20, scale=0.6))
            texts.append(Text(state, x=x0 + 8, y=44, scale=0.6))
            short = label.split("-")[0].split(" ")[0]  # "direct", "baseline"
            metrics[f"{short} step"] = step
            metrics[f"{short} return"] = round(ret, 2)
            metrics[f"{short} seen"] = seen
            x0 += view.shape[1] + 6
        metrics["sim time s"] = round(sim_t, 2)
        video_recorder.add_frame(
            side_by_side(*views, pad=6), boxes=boxes, texts=texts, metrics=metrics, footer=footer
        )
