"""The coverage grid as pure batched functions (flyby.mdp.coverage): footprints, marking, counting."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flyby.mdp import coverage as cov

DOWN = np.diag([1.0, -1.0, -1.0])  # camera-to-world rotation whose optical axis (column 2) points down


def grid(cell_m: float = 10.0, half: float = 50.0, max_radius_m: float = 40.0) -> cov.CoverageGrid:
    return cov.make_grid(np.array([half, half]), cell_m, max_radius_m, fovy_deg=90.0, far_m=150.0)


def test_grid_shape_cells_and_centres():
    g = grid()
    assert g.shape == (10, 10) and g.num_cells == 100 and g.whole_grid
    assert g.centre_x[0] == -45.0 and g.centre_y[-1] == 45.0
    np.testing.assert_array_equal(
        cov.cell_index(g, np.array([[-50.0, 49.9], [55.0, -0.1]])), [[0, 9], [10, 4]]
    )
    assert not cov.make_grid(np.array([500.0, 500.0]), 3.0, 25.0, 90.0, 150.0).whole_grid


def test_footprint_of_a_camera_looking_down_and_of_one_that_does_not():
    g = grid()
    cam_pos = np.array([[5.0, 5.0, 12.0], [0.0, 0.0, 100.0], [1.0, 2.0, 10.0]])
    rot = np.stack([DOWN, DOWN, np.eye(3)])  # the last looks up
    ground, radius_sq = cov.footprints(g, cam_pos, rot)
    np.testing.assert_allclose(ground, [[5.0, 5.0], [0.0, 0.0], [1.0, 2.0]])
    # radius = height * tan(fovy / 2) = height at 90 deg, capped at 40 m; -1 when not looking down.
    np.testing.assert_allclose(radius_sq, [144.0, 1600.0, 1.0])
    one_ground, one_radius_sq = cov.footprints(g, cam_pos[:1], rot[:1])  # the one-camera path
    assert one_ground.tobytes() == ground[:1].tobytes() and one_radius_sq.tobytes() == radius_sq[:1].tobytes()


@pytest.mark.parametrize("mark", [cov.mark_whole_grid, cov.mark_stencil, cov.mark_covered])
def test_marking_counts_each_cell_once_per_episode_and_only_in_the_given_rows(mark):
    g = grid()
    covered = np.zeros((3, g.num_cells), dtype=bool)
    ground = np.array([[5.0, 5.0], [-45.0, -45.0]])
    radius_sq = np.array([144.0, 1.0])  # 12 m and 1 m around cell centres
    new = mark(g, covered, np.array([0, 2]), ground, radius_sq)
    # Within 12 m of the cell centre (5, 5): that cell and its four neighbours (10 m), not the
    # diagonal ones (14.1 m); one cell for the second camera.
    expected = sum(1 for cx in g.centre_x for cy in g.centre_y if math.hypot(cx - 5.0, cy - 5.0) <= 12.0)
    assert new.tolist() == [expected, 1] and expected == 5
    assert covered.sum(axis=1).tolist() == [5, 0, 1]
    assert mark(g, covered, None, np.array([[5.0, 5.0]] * 3), np.full(3, 144.0)).tolist() == [0, 5, 5]
