"""Tile a batch of camera images into one grid image (for videos and reports)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["grid_shape", "tile_images"]


def grid_shape(n: int, cols: int | None = None) -> tuple[int, int]:
    """(rows, cols) of a grid holding ``n`` tiles; ``cols`` defaults to ``ceil(sqrt(n))``.

    Raises:
        ValueError: ``n < 1`` or ``cols < 1``.
    """
    if n < 1:
        raise ValueError(f"cannot tile {n} images; need at least 1")
    if cols is None:
        cols = math.ceil(math.sqrt(n))
    if cols < 1:
        raise ValueError(f"cols={cols} must be >= 1")
    cols = min(cols, n)
    return math.ceil(n / cols), cols


def tile_images(
    images: np.ndarray,
    cols: int | None = None,
    pad_px: int = 1,
    pad_value: int | tuple[int, int, int] = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Lay out images row-major in a grid with ``pad_px`` padding between tiles.

    Tile ``i`` sits at row ``i // cols``, column ``i % cols``. Padding goes only
    between tiles, not around the border; empty cells of the last row are
    filled with ``pad_value``.

    Args:
        images: (N, H, W, 3) uint8 (any dtype is kept).
        cols: tiles per row; default ``ceil(sqrt(N))`` (16 images -> 4 x 4).
        pad_px: pixels between neighbouring tiles, >= 0.
        pad_value: fill for padding and empty cells (scalar or RGB triple).

    Returns:
        grid: (rows * H + (rows - 1) * pad_px, cols * W + (cols - 1) * pad_px, 3), same dtype.
        offsets: (N, 2) int64, the (x, y) pixel of each tile's top-left corner in ``grid``.

    Raises:
        ValueError: ``images`` is not (N, H, W, C) with N >= 1, or ``pad_px < 0``.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C); got shape {images.shape}")
    if pad_px < 0:
        raise ValueError(f"pad_px={pad_px} must be >= 0")
    n, h, w, c = images.shape
    rows, cols = grid_shape(n, cols)
    grid = np.empty((rows * h + (rows - 1) * pad_px, cols * w + (cols - 1) * pad_px, c), dtype=images.dtype)
    grid[...] = np.asarray(pad_value, dtype=images.dtype)
    idx = np.arange(n)
    offsets = np.stack([(idx % cols) * (w + pad_px), (idx // cols) * (h + pad_px)], axis=1).astype(np.int64)
    for (x, y), img in zip(offsets, images, strict=True):
        grid[y : y + h, x : x + w] = img
    return grid, offsets
