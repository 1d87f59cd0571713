"""tile_images: grid layout, padding and offsets."""

from __future__ import annotations

import numpy as np
import pytest

from flyby.sim.tiling import grid_shape, tile_images


def _numbered(n: int, h: int = 3, w: int = 5) -> np.ndarray:
    """(n, h, w, 3) uint8 images, image i filled with i + 1."""
    return np.broadcast_to((np.arange(n, dtype=np.uint8) + 1)[:, None, None, None], (n, h, w, 3)).copy()


@pytest.mark.parametrize(
    ("n", "expected"), [(1, (1, 1)), (2, (1, 2)), (4, (2, 2)), (5, (2, 3)), (16, (4, 4)), (17, (4, 5))]
)
def test_grid_shape_default_is_ceil_sqrt(n, expected):
    assert grid_shape(n) == expected


def test_sixteen_tiles_make_a_padded_4x4_grid():
    imgs = _numbered(16)
    grid, offsets = tile_images(imgs, pad_px=1, pad_value=255)
    assert grid.shape == (4 * 3 + 3, 4 * 5 + 3, 3) and grid.dtype == np.uint8
    assert offsets.shape == (16, 2)
    for i, (x, y) in enumerate(offsets):
        assert (x, y) == ((i % 4) * 6, (i // 4) * 4)
        np.testing.assert_array_equal(grid[y : y + 3, x : x + 5], imgs[i])
    # Padding lines between tiles carry pad_value.
    assert (grid[3, :, :] == 255).all() and (grid[:, 5, :] == 255).all()


def test_partial_last_row_and_explicit_cols():
    imgs = _numbered(5)
    grid, offsets = tile_images(imgs, cols=2, pad_px=0, pad_value=(7, 8, 9))
    assert grid.shape == (3 * 3, 2 * 5, 3)
    np.testing.assert_array_equal(offsets, [[0, 0], [5, 0], [0, 3], [5, 3], [0, 6]])
    np.testing.assert_array_equal(grid[6:9, 5:10], np.broadcast_to([7, 8, 9], (3, 5, 3)))
    np.testing.assert_array_equal(grid[6:9, 0:5], imgs[4])


def test_bad_input_raises():
    with pytest.raises(ValueError, match="shape"):
        tile_images(np.zeros((3, 4, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="at least 1"):
        tile_images(np.zeros((0, 4, 4, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="pad_px"):
        tile_images(np.zeros((2, 4, 4, 3), dtype=np.uint8), pad_px=-1)
