"""The ISR task's fast paths give exactly (bit for bit) what their general paths give.

The step's hot path has special cases for speed: the whole-grid coverage test on
small grids (the stencil on any grid), the one-camera footprint on Python floats,
running progress counters instead of sums over the grids, and the reward terms
scaled and summed as one array. Each is checked here against its general form.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from flyby.config.training import load_training_cfg
from flyby.envs.isr_task import ISRTask
from flyby.geometry import yaw_rotation
from flyby.mdp import coverage as cov_mdp
from flyby.mdp import rewards as rew_mdp
from flyby.perception.camera import camera_poses_w


def make_task(n: int = 6, **kw) -> ISRTask:
    cfg = dataclasses.replace(load_training_cfg().multi_drone_env, **kw)
    task = ISRTask(cfg, num_envs=n)
    task.seed(0)
    task.reset_all()
    return task


def random_cameras(task: ISRTask, rng: np.random.Generator, n: int, general: bool):
    """Camera poses over and beyond the area: some below ground, some looking up, some far up."""
    half = task.world.half_extent
    pos = np.c_[rng.uniform(-1.3 * half, 1.3 * half, (n, 2)), rng.uniform(-5.0, 200.0, n)]
    pos[: n // 4, 2] = rng.choice([0.0, 1e-3, 150.0], n // 4)
    if general:
        rot_wb = np.linalg.qr(rng.standard_normal((n, 3, 3)))[0]
    else:
        rot_wb = yaw_rotation(rng.uniform(-4, 4, n))
    return camera_poses_w(pos, rot_wb, task.cfg.camera)


@pytest.mark.parametrize("general", [False, True])
def test_one_camera_footprint_equals_the_batched_one(general):
    task = make_task()
    rng = np.random.default_rng(1)
    cam_pos, rot_wc = random_cameras(task, rng, 200, general)
    ground, radius_sq = cov_mdp.footprints(task.coverage_grid, cam_pos, rot_wc)
    assert (radius_sq == 1.0).any() and (radius_sq < 1.0).any() and (radius_sq > 1.0).any()  # every case runs
    for i in range(cam_pos.shape[0]):
        g1, r1 = cov_mdp.footprints(task.coverage_grid, cam_pos[i : i + 1], rot_wc[i : i + 1])
        assert g1.tobytes() == ground[i : i + 1].tobytes() and r1.tobytes() == radius_sq[i : i + 1].tobytes()


@pytest.mark.parametrize(
    "rewards",
    [
        {},  # training: 20 x 20 cells of 10 m, footprints up to 40 m
        {"coverage_cell_m": 3.0, "max_footprint_radius_m": 25.0},
        {"coverage_cell_m": 50.0, "max_footprint_radius_m": 120.0},
    ],
)
def test_whole_grid_coverage_equals_the_stencil(rewards):
    cfg = load_training_cfg().multi_drone_env
    task = make_task(8, rewards=dataclasses.replace(cfg.rewards, **rewards))
    rng = np.random.default_rng(2)
    for step in range(30):
        cam_pos, rot_wc = random_cameras(task, rng, 8, general=step % 2 == 1)
        ids = None if step % 3 else np.array([1, 4, 6])
        if ids is not None:
            cam_pos, rot_wc = cam_pos[ids], rot_wc[ids]
        ground, radius_sq = cov_mdp.footprints(task.coverage_grid, cam_pos, rot_wc)
        covered = task.covered.copy()
        new_grid = cov_mdp.mark_whole_grid(task.coverage_grid, task.covered, ids, ground, radius_sq)
        by_grid = task.covered.copy()
        task.covered[:] = covered
        new_stencil = cov_mdp.mark_stencil(task.coverage_grid, task.covered, ids, ground, radius_sq)
        np.testing.assert_array_equal(new_grid, new_stencil)
        np.testing.assert_array_equal(by_grid, task.covered)
    assert task.covered.any()


def test_progress_counters_match_the_grids_through_resets():
    task = make_task(5, episode_length_s=2.0)
    rng = np.random.default_rng(3)
    for _ in range(120):
        res = task.step(rng.uniform(-1, 1, (5, 4)))
        progress = res.obs[:, task.layout.progress]
        np.testing.assert_array_equal(task._num_covered, task.covered.sum(axis=1))
        expected = np.column_stack(
            [
                task.covered.sum(axis=1) / task.covered.shape[1],
                task.seen.sum(axis=1) / task.seen.shape[1],
                task.episode_step / task.max_episode_length,
            ]
        ).astype(np.float32)
        assert progress.tobytes() == expected.tobytes()
    assert task.covered.any() and task.seen.any()


def test_rewards_equal_the_term_by_term_sum():
    cfg = load_training_cfg().multi_drone_env
    weights = {
        "new_targets": 2.0,
        "coverage": 0.0,
        "collision": -3.0,
        "geofence": 0.0,
        "energy": -0.3,
        "jerk": -0.7,
    }
    terms = {k: dataclasses.replace(t, weight=weights[k]) for k, t in cfg.rewards.terms.items()}
    task = make_task(4, step_dt=0.04, rewards=dataclasses.replace(cfg.rewards, terms=terms))
    rng = np.random.default_rng(4)
    sums = {k: np.zeros(4) for k in rew_mdp.REWARD_TERMS}
    for _ in range(50):
        task.prev_actions, task.actions = task.actions, rng.uniform(-1, 1, (4, 4))
        task.newly_seen[:] = rng.random(task.newly_seen.shape) < 0.05
        task.new_cells[:] = rng.integers(0, 5, 4)
        task._crashed = rng.random(4) < 0.3
        task._outside = rng.random(4) < 0.3
        terms = {
            "new_targets": rew_mdp.new_targets(task.newly_seen),
            "coverage": rew_mdp.coverage(task.new_cells),
            "collision": rew_mdp.collision(task._crashed),
            "geofence": rew_mdp.geofence(task._outside),
            "energy": rew_mdp.energy(task.actions),
            "jerk": rew_mdp.jerk(task.actions, task.prev_actions),
        }
        expected = np.zeros(4)
        for k, term in terms.items():
            scale = task.scales[k]
            if scale:
                value = scale * term * (task.step_dt if k in rew_mdp.RATE_TERMS else 1.0)
                expected += value
                sums[k] += value
        assert task._get_rewards().tobytes() == expected.tobytes()
    for k in rew_mdp.REWARD_TERMS:
        assert task.episode_sums[k].tobytes() == sums[k].tobytes(), k
    assert not task.episode_sums["coverage"].any()  # zero scale: never added
