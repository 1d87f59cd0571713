"""The coverage patch of the shared observation (flyby.mdp.observations)."""

from __future__ import annotations

import numpy as np
import pytest


def _coverage_patch_oracle(covered, grid_shape, cell_xy, block):
    """Cell by cell: uncovered share of each 3x3 block, out-of-area cells counted as covered."""
    gx, gy = grid_shape
    grid = covered.reshape(-1, gx, gy)
    out = np.zeros((grid.shape[0], 9))
    for n, (cx, cy) in enumerate(cell_xy):
        for p, (dx, dy) in enumerate([(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)]):
            x0 = cx - block // 2 + dx * block
            y0 = cy - block // 2 + dy * block
            count = 0
            for i in range(x0, x0 + block):
                for j in range(y0, y0 + block):
                    if 0 <= i < gx and 0 <= j < gy and not grid[n, i, j]:
                        count += 1
            out[n, p] = count / block**2
    return out


@pytest.mark.parametrize("block", [1, 3, 4])
def test_coverage_patch_matches_a_cell_by_cell_count(block):
    from flyby.mdp.observations import coverage_patch

    rng = np.random.default_rng(block)
    gx, gy = 20, 17
    covered = rng.random((6, gx * gy)) < 0.4
    # Inside, on the border and outside the grid (a drone past the geofence).
    cell_xy = np.array([[0, 0], [10, 8], [19, 16], [-3, 5], [25, -9], [5, 16]])
    got = coverage_patch(covered, (gx, gy), cell_xy, block)
    want = _coverage_patch_oracle(
        covered, (gx, gy), np.clip(cell_xy, -block, np.array([gx, gy]) + block - 1), block
    )
    np.testing.assert_allclose(got, want)
    assert got.shape == (6, 9) and got.min() >= 0 and got.max() <= 1


def test_coverage_patch_in_the_env_observation_falls_as_the_drone_covers_ground():
    import gymnasium as gym

    import flyby  # noqa: F401
    from flyby.mdp.observations import ObsLayout

    env = gym.make("flyby/DirectISR-v0")
    obs, _ = env.reset(seed=3)
    layout = ObsLayout(5)
    first = obs[layout.coverage].copy()
    assert obs.shape == (layout.dim,) and layout.coverage.stop == layout.dim
    for _ in range(100):  # hover: the footprint under the drone gets covered, the centre block drops
        obs, *_ = env.step(np.zeros(4, dtype=np.float32))
    assert obs[layout.coverage][4] <= first[4]
    assert np.all((0 <= obs[layout.coverage]) & (obs[layout.coverage] <= 1))
    env.close()
