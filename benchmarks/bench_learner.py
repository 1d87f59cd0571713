"""Where PPO's learner time goes: env collection against SB3's update, per sample, and inside the update.

Builds the training run of ``flyby train`` (the packaged ``training_config.yaml``: MultiDroneISR-v0,
its drone count, PPO's n_steps, batch size and epochs, VecNormalize, torch threads), then:

1. times ``--rollouts`` rollouts of ``model.learn`` split into collection (env + policy
   inference, between SB3's rollout callbacks) and update (the rest), as ``flyby train`` does;
2. times one update (``model.train()`` on the same rollout buffer) for each learner variant
   (minibatch size, epochs, torch threads): microseconds per sample and per minibatch;
3. profiles one update of the packaged configuration and groups its time into forward
   (``evaluate_actions``), backward, optimiser step, gradient clipping, minibatch sampling and
   the rest (SB3's Python around them).

    python benchmarks/bench_learner.py                 # about 2 minutes on 2 cores
    python benchmarks/bench_learner.py --rollouts 5 --variants 256x5,1024x5,2048x5,256x2

Prints figures only; changes nothing (the packaged PPO settings are what Phase 4 is validated on).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from dataclasses import replace

import torch
from stable_baselines3.common.callbacks import BaseCallback

from flyby.config import check
from flyby.config.training import load_training_cfg
from flyby.training.trainer import _algo_class, make_vec_env, training_env_cfg

GROUPS = {  # (file name part, function) in cProfile -> the group its cumulative time counts in
    ("policies", "evaluate_actions"): "forward (policy + value)",
    ("_tensor", "backward"): "backward",
    ("optimizer", "wrapper"): "optimiser step (Adam)",
    ("clip_grad", "clip_grad_norm_"): "gradient clipping",
    ("buffers", "get"): "minibatch sampling (rollout buffer)",
}


class _Split(BaseCallback):
    """Collection time between SB3's rollout start and end callbacks; the rest is the update."""

    def __init__(self) -> None:
        super().__init__()
        self.collect_s = 0.0
        self._t0 = 0.0

    def _on_rollout_start(self) -> None:
        self._t0 = time.perf_counter()

    def _on_rollout_end(self) -> None:
        self.collect_s += time.perf_counter() - self._t0

    def _on_step(self) -> bool:
        return True


def build(batch_size: int, n_epochs: int, threads: int, num_drones: int | None, n_steps: int | None):
    train_cfg = load_training_cfg()
    cfg = train_cfg.training
    if num_drones or n_steps:
        ppo = replace(cfg.ppo, n_steps=n_steps or cfg.ppo.n_steps)
        cfg = check(replace(cfg, num_drones=num_drones or cfg.num_drones, ppo=ppo))
    env_cfg = training_env_cfg(train_cfg)
    torch.set_num_threads(threads)
    vecnorm = make_vec_env(cfg, env_cfg, seed=cfg.seed)
    kwargs = cfg.sb3_kwargs()
    kwargs.update(batch_size=batch_size, n_epochs=n_epochs)
    model = _algo_class(cfg.algorithm)("MlpPolicy", vecnorm, seed=cfg.seed, device="cpu", verbose=0, **kwargs)
    return model, vecnorm, cfg


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rollouts", type=int, default=3, help="rollouts timed end to end (default 3)")
    parser.add_argument(
        "--variants",
        default="256x5,1024x5,2048x5,256x2",
        help="learner variants BATCHxEPOCHS to time one update of (default 256x5,1024x5,2048x5,256x2)",
    )
    parser.add_argument("--threads", default="1,2", help="torch threads to time the packaged update with")
    parser.add_argument(
        "--num-drones", type=int, default=None, help="drones (parallel envs); default: packaged"
    )
    parser.add_argument("--n-steps", type=int, default=None, help="PPO n_steps per drone; default: packaged")
    args = parser.parse_args()
    packaged = load_training_cfg().training
    model, vecnorm, cfg = build(
        packaged.batch_size, packaged.ppo.n_epochs, packaged.torch_threads, args.num_drones, args.n_steps
    )
    per_rollout = model.n_steps * model.n_envs
    split = _Split()
    model.learn(total_timesteps=per_rollout, callback=split)  # warm-up: JIT caches, first rollout
    split.collect_s, t0 = 0.0, time.perf_counter()
    model.learn(total_timesteps=args.rollouts * per_rollout, callback=split, reset_num_timesteps=False)
    wall = time.perf_counter() - t0
    samples = args.rollouts * per_rollout
    update_s = wall - split.collect_s
    print(
        f"PPO on MultiDroneISR-v0, {model.n_envs} drones, n_steps {model.n_steps} ({per_rollout} samples per "
        f"rollout), batch {cfg.batch_size}, {cfg.ppo.n_epochs} epochs, torch threads {cfg.torch_threads}:\n"
        f"  end to end {samples / wall:,.0f} samples/s; collection "
        f"{split.collect_s / samples * 1e6:.1f} us/sample, update {update_s / samples * 1e6:.1f} us/sample; "
        f"learner share {update_s / wall:.0%}"
    )

    print("\none update on the same rollout buffer, per learner variant:")
    for text in args.variants.split(","):
        batch, epochs = (int(x) for x in text.split("x"))
        model.batch_size, model.n_epochs = batch, epochs
        model.train()  # warm-up
        t0 = time.perf_counter()
        model.train()
        dt = time.perf_counter() - t0
        minibatches = epochs * -(-per_rollout // batch)
        print(
            f"  batch {batch:>5}, {epochs} epochs: {dt * 1e3:7.1f} ms = "
            f"{dt / per_rollout * 1e6:5.1f} us/sample "
            f"({minibatches} minibatches, {dt / minibatches * 1e3:.2f} ms each); update alone caps training "
            f"at {per_rollout / dt:,.0f} samples/s"
        )
    model.batch_size, model.n_epochs = cfg.batch_size, cfg.ppo.n_epochs
    for threads in (int(x) for x in args.threads.split(",")):
        torch.set_num_threads(threads)
        model.train()
        t0 = time.perf_counter()
        model.train()
        print(f"  packaged update with {threads} torch thread(s): {(time.perf_counter() - t0) * 1e3:.1f} ms")
    torch.set_num_threads(cfg.torch_threads)

    prof = cProfile.Profile()
    prof.enable()
    model.train()
    prof.disable()
    stats = pstats.Stats(prof).stats
    total = sum(v[2] for v in stats.values())  # tottime over every function: the update's wall time
    print(f"\ninside one packaged update ({total * 1e3:.0f} ms under the profiler):")
    accounted = 0.0
    for (part, name), group in GROUPS.items():
        cum = max((v[3] for (file, _, fn), v in stats.items() if fn == name and part in file), default=0.0)
        accounted += cum
        print(f"  {group:<40} {cum * 1e3:7.1f} ms  {cum / total:5.0%}")
    rest = total - accounted
    print(f"  {'the rest (SB3 Python, logging, tensors)':<40} {rest * 1e3:7.1f} ms  {rest / total:5.0%}")
    vecnorm.close()


if __name__ == "__main__":
    main()
