"""A synthetic but schema-valid pipeline run folder, for the report tests.

``write_fake_run(output_dir)`` writes ``output_dir/runs/<name>/`` with every artefact the report
reads (a tiny ``progress.csv``, ``model.json``, ``metrics.json`` with four policies and a detection
block, ``tracks.json``, a 1.6 s H.264 MP4 from the video plugin's encoder, and the manifest); flags
leave out the optional ones. Figures are made up but consistent (CI around the mean, counts that
add up), so a test can check what the report shows against what was written.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

VIDEO_FRAMES, VIDEO_FPS = 24, 15.0  # 1.6 s
T_975_DF9 = 2.2621571627409915  # Student-t 0.975 quantile, 9 degrees of freedom (10 episodes)
SEEDS = list(range(10))
REWARD_TERMS = ("new_targets", "coverage", "collision", "geofence", "energy", "jerk")
POLICIES = {  # key: (label, mean return, targets found per episode)
    "trained": ("PPO (direct-trained)", 42.0, 7.0),
    "zero": ("zero-action", -3.0, 0.5),
    "random": ("random", -20.0, 1.2),
    "patrol": ("lawnmower patrol", 18.0, 4.0),
}


def _policy_block(key: str, label: str, mean_return: float, targets: float, rng: np.random.Generator) -> dict:
    returns = (mean_return + rng.normal(0.0, 4.0, len(SEEDS))).round(3)
    found = np.clip(np.round(targets + rng.normal(0.0, 1.0, len(SEEDS))), 0, None).astype(int)
    coverage = np.clip(0.3 + 0.05 * rng.normal(size=len(SEEDS)), 0.0, 1.0).round(4)
    crashed = [key == "random" and i < 3 for i in range(len(SEEDS))]
    geofence = [key == "random" and i == 3 for i in range(len(SEEDS))]
    success = [bool(f >= 5) for f in found]

    def ci(x: np.ndarray) -> list[float]:
        half = T_975_DF9 * float(np.std(x, ddof=1)) / math.sqrt(len(x))
        return [float(x.mean()) - half, float(x.mean()) + half]

    return {
        "label": label,
        "n": len(SEEDS),
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std(ddof=1)),
        "ci95": ci(returns),
        "success_rate": float(np.mean(success)),
        "targets_found": {
            "mean": float(found.mean()),
            "ci95": ci(found.astype(float)),
            "per_episode": found.tolist(),
        },
        "coverage": {"mean": float(coverage.mean()), "per_episode": coverage.tolist()},
        "crashes": int(sum(crashed)),
        "geofence_exits": int(sum(geofence)),
        "episode_lengths": [300] * len(SEEDS),
        "returns": returns.tolist(),
        "episodes": [
            {
                "seed": s,
                "return": float(r),
                "steps": 300,
                "targets_found": int(f),
                "coverage": float(c),
                "crashed": cr,
                "geofence": g,
                "success": su,
            }
            for s, r, f, c, cr, g, su in zip(
                SEEDS, returns, found, coverage, crashed, geofence, success, strict=True
            )
        ],
    }


def fake_metrics(*, detection: bool = True, policies: tuple[str, ...] = tuple(POLICIES)) -> dict[str, Any]:
    """A ``flyby.evaluation/1`` document with ``policies`` (trained first) and, optionally, detection
    figures."""
    rng = np.random.default_rng(0)
    return {
        "schema": "flyby.evaluation/1",
        "env_id": "flyby/PX4ISR-v0",
        "flight_stack": "cascade",
        "flight_stack_label": "built-in cascade (no PX4)",
        "px4_version": None,
        "perception_mode": "ground_truth",
        "seeds": SEEDS,
        "episode_length_s": 30.0,
        "success_definition": "at least 5 targets found, no crash, no geofence exit",
        "policies": {k: _policy_block(k, *POLICIES[k], rng) for k in policies},
        "detection": {
            "mode": "ground_truth",
            "precision": 0.9375,
            "recall": 0.8824,
            "tp": 30,
            "fp": 2,
            "fn": 4,
            "frames": 120,
            "iou_threshold": 0.5,
        }
        if detection
        else None,
    }


def fake_tracks() -> dict[str, Any]:
    """A 100 m x 80 m map, three buildings, four targets and one episode per policy."""
    t = np.linspace(0.0, 1.0, 40)
    episodes = []
    for i, key in enumerate(POLICIES):
        xy = np.stack([-40 + 80 * t, -30 + 15 * i + 8 * np.sin(6 * t + i)], axis=1).round(2)
        episodes.append(
            {"policy": key, "seed": 0, "xy": xy.tolist(), "found": [[10.0, -20.0]] if i != 1 else []}
        )
    return {
        "half_extent_m": [50.0, 40.0],
        "buildings": [[-20.0, -10.0, -10.0, 5.0], [5.0, 10.0, 20.0, 18.0], [25.0, -35.0, 35.0, -25.0]],
        "targets": [
            {"xy": [10.0, -20.0], "cls": "vehicle"},
            {"xy": [-30.0, 20.0], "cls": "person"},
            {"xy": [40.0, 30.0], "cls": "vehicle"},
            {"xy": [0.0, 0.0], "cls": "person"},
        ],
        "episodes": episodes,
    }


def fake_manifest(name: str) -> dict[str, Any]:
    stage = {
        "status": "done",
        "wall_s": 12.5,
        "started_utc": "2025-01-01T10:00:00Z",
        "finished_utc": "2025-01-01T10:00:12Z",
    }
    return {
        "schema": "flyby.run/1",
        "name": name,
        "created_utc": "2025-01-01T10:00:00Z",
        "config": {
            "name": name,
            "train": {"budget_s": 60, "algorithm": "PPO"},
            "evaluate": {"seeds": "0..9"},
        },
        "config_hash": "0123abcd",
        "git": {"commit": "deadbeef" * 5, "dirty": False},
        "versions": {
            "python": "3.11.9",
            "flyby": "0.1.0",
            "numpy": "2.1.0",
            "torch": "2.14.1",
            "stable_baselines3": "2.9.0",
            "mujoco": "3.3.0",
            "ultralytics": None,
        },
        "backend": "mujoco",
        "flight_stack": "cascade",
        "flight_stack_label": "built-in cascade (no PX4)",
        "px4_version": None,
        "machine": {"cpu": "Test CPU", "cores": 2, "memory_gb": 7.7, "gpu": "no GPU"},
        "stages": {
            "train": dict(stage, wall_s=61.2),
            "evaluate": dict(stage),
            "video": dict(stage, wall_s=4.0),
            "export": {"status": "skipped", "reason": "export disabled in the config"},
            "report": {"status": "pending"},
        },
    }


def write_progress_csv(path: Path, rows: int) -> None:
    """``rows`` log points; the first row has empty episode cells (no episode finished yet)."""
    header = [
        "env_steps",
        "wall_s",
        "fps",
        "ep_rew_mean",
        "ep_len_mean",
        "targets_found_mean",
        *(f"Episode_Reward/{t}" for t in REWARD_TERMS),  # IsaacLab's: episode sum / 60 s
        *(f"Episode_Return/{t}" for t in REWARD_TERMS),  # the episode sum
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i in range(rows):
            steps = 2048 * 16 * (i + 1)
            episode = ["", "", ""] if i == 0 else [f"{-10 + 5 * i:.3f}", f"{200 + 10 * i}", f"{0.5 * i:.2f}"]
            returns = [(k - 2) * 0.3 * i for k in range(len(REWARD_TERMS))]
            terms = (
                [""] * (2 * len(REWARD_TERMS))
                if i == 0
                else [f"{r / 60.0:.6f}" for r in returns] + [f"{r:.4f}" for r in returns]
            )
            writer.writerow(
                [steps, f"{1.5 * (i + 1):.2f}", f"{steps / (1.5 * (i + 1)):.1f}", *episode, *terms]
            )


def write_fake_video(path: Path, frames: int = VIDEO_FRAMES, fps: float = VIDEO_FPS) -> None:
    """A ``frames / fps`` s H.264 MP4 of a square moving over a gradient (the video plugin's encoder)."""
    from videokit.encode import H264Writer

    path.parent.mkdir(parents=True, exist_ok=True)
    with H264Writer(path, fps=fps) as writer:
        for i in range(frames):
            frame = np.zeros((120, 160, 3), np.uint8)
            frame[:, :, 2] = np.linspace(40, 160, 160, dtype=np.uint8)[None, :]
            x = 5 + 5 * i
            frame[40:70, x : x + 30] = (240, 200, 40)
            writer.write(frame)


def write_fake_run(
    output_dir: Path,
    name: str = "fake",
    *,
    csv_rows: int = 8,
    video: bool = True,
    detection: bool = True,
    metrics: bool = True,
    tracks: bool = True,
) -> Path:
    """Write ``output_dir/runs/<name>/`` and return it.

    Args:
        output_dir: the run's ``output/`` folder (the report goes to ``output_dir/reports/``).
        csv_rows: log points in ``training/progress.csv`` (0: header only).
        video, detection, metrics, tracks: include that artefact (``detection=False`` writes
            ``"detection": null``).
    """
    run_dir = Path(output_dir) / "runs" / name
    (run_dir / "training").mkdir(parents=True, exist_ok=True)
    (run_dir / "evaluation").mkdir(parents=True, exist_ok=True)
    (run_dir / "manifest.json").write_text(json.dumps(fake_manifest(name), indent=2))
    write_progress_csv(run_dir / "training" / "progress.csv", csv_rows)
    (run_dir / "training" / "model.json").write_text(
        json.dumps(
            {
                "algorithm": "PPO",
                "env_id": "flyby/MultiDroneISR-v0",
                "observation_space": {"shape": [64], "low": -1.0, "high": 1.0},
                "action_space": {"shape": [4], "low": -1.0, "high": 1.0},
                "normalize": {"obs": True, "clip_obs": 10.0, "epsilon": 1e-8},
                "env_steps": 2048 * 16 * max(csv_rows, 1),
            }
        )
    )
    if metrics:
        (run_dir / "evaluation" / "metrics.json").write_text(
            json.dumps(fake_metrics(detection=detection), indent=1)
        )
    if tracks:
        (run_dir / "evaluation" / "tracks.json").write_text(json.dumps(fake_tracks()))
    if video:
        write_fake_video(run_dir / "video" / "validation.mp4")
    return run_dir
