"""Ground coverage: which cells of the area the drones' cameras have looked at this episode.

The area (``2 * half_extent`` metres, world ENU, centred on the origin) is cut into square cells
of ``coverage_cell_m``, ``(gx, gy)`` of them, flattened row-major over (x cell, y cell). Each
step a camera covers the cells whose centres lie in its *footprint*: the disc where its optical
axis meets the ground, of radius ``t * tan(fovy / 2)`` at distance ``t`` along the axis, capped at
``max_footprint_radius_m``. The coverage reward pays per newly covered cell
(:func:`flyby.mdp.rewards.coverage`); the observation's coverage patch reads the grid
(:func:`flyby.mdp.observations.coverage_patch`).

Pure batched functions: the grid's constants live in a :class:`CoverageGrid` built once
(:func:`make_grid`); the per-env covered flags are an (N, gx * gy) bool array the caller owns,
updated in place by :func:`mark_covered`. This numpy code is the reference; with
``$FLYBY_KERNEL=numba`` (the default, :mod:`flyby.kernels`) :func:`footprints` and
:func:`mark_covered` run the compiled loops of :mod:`flyby.mdp.kernels`, bit-identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from flyby.enums import KernelBackend
from flyby.kernels import kernel_backend


@dataclass(frozen=True, eq=False)
class CoverageGrid:
    """Constants of one coverage grid (read every step; build with :func:`make_grid`)."""

    cell_m: float  # m, side of a cell
    half_extent: np.ndarray  # (2,) float64 m, half the area size along x and y
    shape: tuple[int, int]  # (gx, gy) cells
    centre_x: np.ndarray  # (gx,) float64 m, x of the cell centres, (i + 0.5) * cell - half_x
    centre_y: np.ndarray  # (gy,) float64 m, y of the cell centres
    span: np.ndarray  # (1, S) intp, cell offsets of the square stencil around a footprint centre
    r_cells: int  # stencil half-width, cells: ceil(max_footprint_radius_m / cell_m) + 1
    whole_grid: bool  # small grid: test every cell, cheaper than the stencil's bookkeeping
    tan_half_fov: float  # tan(fovy / 2) of the camera
    far_m: float  # m, the camera's far plane: ground beyond it is not seen
    max_radius_m: float  # m, cap on the footprint radius
    clip_t: bool  # far_m > 1e6: distances along the axis are clipped to 1e6 m

    @property
    def num_cells(self) -> int:
        """gx * gy."""
        return self.shape[0] * self.shape[1]


def make_grid(
    half_extent: np.ndarray, cell_m: float, max_footprint_radius_m: float, fovy_deg: float, far_m: float
) -> CoverageGrid:
    """The coverage grid of an area.

    Args:
        half_extent: (2,) metres, half the area size along x and y.
        cell_m: side of a cell, metres (``RewardCfg.coverage_cell_m``).
        max_footprint_radius_m: cap on the footprint radius, metres (``RewardCfg``).
        fovy_deg: the camera's vertical field of view, degrees; far_m: its far plane, metres.
    """
    half = np.asarray(half_extent, dtype=np.float64)
    gx, gy = (int(g) for g in np.ceil(2 * half / cell_m).astype(np.intp))
    r_cells = math.ceil(max_footprint_radius_m / cell_m) + 1
    span = np.arange(-r_cells, r_cells + 1)[None, :]
    return CoverageGrid(
        cell_m=cell_m,
        half_extent=half,
        shape=(gx, gy),
        # Cell centres, metres, computed as the stencil computes them: (i + 0.5) * cell - half.
        centre_x=(np.arange(gx) + 0.5) * cell_m - half[0],
        centre_y=(np.arange(gy) + 0.5) * cell_m - half[1],
        span=span,
        r_cells=r_cells,
        # Small grids (the training area: 20 x 20 cells) test every cell of the grid, which takes
        # fewer numpy calls than the stencil's index bookkeeping; cells the stencil leaves out are
        # more than the largest footprint radius away, so both mark the same cells.
        whole_grid=gx * gy <= 4 * span.size**2,
        tan_half_fov=math.tan(math.radians(fovy_deg) / 2),
        far_m=far_m,
        max_radius_m=max_footprint_radius_m,
        # A footprint centre is at most far_m along the axis; min(t, 1e6) only bites beyond.
        clip_t=far_m > 1e6,
    )


def cell_index(grid: CoverageGrid, pos_xy: np.ndarray) -> np.ndarray:
    """(N, 2) intp (x, y) cell index of each (N, 2) world ENU position, metres (may lie outside)."""
    return np.floor((pos_xy + grid.half_extent) / grid.cell_m).astype(np.intp)


def footprints(grid: CoverageGrid, cam_pos: np.ndarray, rot_wc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ground footprint of each camera: centre (k, 2) metres, world ENU, and radius squared (k,), m^2.

    A camera that does not look down, is below ground or sees the ground beyond ``far_m`` has
    radius -1 at its own position (radius squared 1 m^2: it covers nothing).

    Args:
        cam_pos: (k, 3) camera positions, metres, world ENU.
        rot_wc: (k, 3, 3) camera-to-world rotations; column 2 is the optical axis.
    """
    far = grid.far_m
    max_radius = grid.max_radius_m
    if kernel_backend() is KernelBackend.NUMBA:
        from flyby.mdp.kernels import footprints_into

        k = cam_pos.shape[0]
        ground, radius_sq = np.empty((k, 2)), np.empty(k)
        footprints_into(cam_pos, rot_wc, grid.tan_half_fov, far, max_radius, grid.clip_t, ground, radius_sq)
        return ground, radius_sq
    if cam_pos.shape[0] == 1:
        # One camera (DirectISR-v0): the same operations on Python floats, several times
        # cheaper than numpy calls on 1-element arrays.
        ax, ay, az = rot_wc[0, :, 2].tolist()
        cx, cy, cz = cam_pos[0].tolist()
        down = az < -1e-3
        t = -cz / (az if down else -1.0)
        ok = down and t <= far and cz > 0
        t_ok = t if ok else 0.0
        if grid.clip_t:
            t = min(t, 1e6)
        radius = min(t * grid.tan_half_fov if ok else -1.0, max_radius)
        return np.array([[cx + t_ok * ax, cy + t_ok * ay]]), np.array([radius * radius])
    axis = rot_wc[:, :, 2]
    down = axis[:, 2] < -1e-3
    # Distance to the ground along the axis; only read where `down` (no division by ~0).
    t = -cam_pos[:, 2] / np.where(down, axis[:, 2], -1.0)
    ok = down & (t <= far) & (cam_pos[:, 2] > 0)
    ground = cam_pos[:, :2] + np.where(ok, t, 0.0)[:, None] * axis[:, :2]
    if grid.clip_t:
        t = np.minimum(t, 1e6)
    radius = np.minimum(np.where(ok, t * grid.tan_half_fov, -1.0), max_radius)
    return ground, radius * radius


def mark_covered(
    grid: CoverageGrid,
    covered: np.ndarray,
    ids: np.ndarray | None,
    ground: np.ndarray,
    radius_sq: np.ndarray,
) -> np.ndarray:
    """Mark the cells in the footprints of envs ``ids`` (all when None) covered, in place.

    Args:
        covered: (N, gx * gy) bool, this episode's coverage; rows ``ids`` are updated.
        ids: (k,) env indices, or None for all N.
        ground, radius_sq: (k, 2) footprint centres, metres, and (k,) radii squared, m^2
            (:func:`footprints`).

    Returns:
        (k,) int64 counts of newly covered cells.
    """
    if kernel_backend() is KernelBackend.NUMBA:
        from flyby.mdp.kernels import mark_covered_rows

        rows = _all_rows(covered.shape[0]) if ids is None else np.asarray(ids, dtype=np.intp)
        fresh = np.empty(rows.shape[0], dtype=np.int64)
        gx, gy = grid.shape
        half_x, half_y = float(grid.half_extent[0]), float(grid.half_extent[1])
        mark_covered_rows(
            covered, rows, ground, radius_sq, grid.cell_m, half_x, half_y, gx, gy, grid.r_cells, fresh
        )
        return fresh
    if grid.whole_grid:
        return mark_whole_grid(grid, covered, ids, ground, radius_sq)
    return mark_stencil(grid, covered, ids, ground, radius_sq)


def mark_whole_grid(
    grid: CoverageGrid, covered: np.ndarray, ids: np.ndarray | None, ground: np.ndarray, radius_sq: np.ndarray
) -> np.ndarray:
    """:func:`mark_covered` on small grids: every cell centre of the grid against every footprint."""
    dx = grid.centre_x - ground[:, :1]
    dx *= dx
    dy = grid.centre_y - ground[:, 1:]
    dy *= dy
    inside = (dx[:, :, None] + dy[:, None, :] <= radius_sq[:, None, None]).reshape(ground.shape[0], -1)
    if ids is None:
        fresh = inside > covered  # inside and not covered before
        covered |= inside
    else:
        before = covered[ids]
        fresh = inside > before
        covered[ids] = before | inside
    return fresh.sum(axis=1)


def mark_stencil(
    grid: CoverageGrid, covered: np.ndarray, ids: np.ndarray | None, ground: np.ndarray, radius_sq: np.ndarray
) -> np.ndarray:
    """:func:`mark_covered` on any grid: the square stencil of cells around each footprint centre."""
    cell = grid.cell_m
    half = grid.half_extent
    # Separable square stencil of cells around each footprint centre: (k, S) along x and y.
    idx = np.floor((ground + half) / cell).astype(np.intp)
    ix = idx[:, :1] + grid.span
    iy = idx[:, 1:] + grid.span
    dx = (ix + 0.5) * cell - half[0] - ground[:, :1]
    dy = (iy + 0.5) * cell - half[1] - ground[:, 1:]
    gx, gy = grid.shape
    ok_x = (ix >= 0) & (ix < gx)
    ok_y = (iy >= 0) & (iy < gy)
    inside = (dx * dx)[:, :, None] + (dy * dy)[:, None, :] <= radius_sq[:, None, None]
    inside &= ok_x[:, :, None] & ok_y[:, None, :]
    # Out-of-grid cells are masked out of `inside`; clamp their indices only to keep them valid.
    flat = (
        np.minimum(np.maximum(ix, 0), gx - 1)[:, :, None] * gy
        + np.minimum(np.maximum(iy, 0), gy - 1)[:, None, :]
    )
    n = covered.shape[0]
    rows = np.arange(n) if ids is None else ids
    cells = covered.shape[1]
    hit = (flat + (rows * cells)[:, None, None])[inside]  # indices into covered.ravel()
    flat_covered = covered.reshape(-1)
    new = hit[~flat_covered[hit]]
    flat_covered[new] = True
    return np.bincount(new // cells, minlength=n)[rows]


@lru_cache(maxsize=8)
def _all_rows(n: int) -> np.ndarray:
    """(n,) intp 0..n-1, cached (read-only): the rows of a whole-batch update."""
    rows = np.arange(n, dtype=np.intp)
    rows.flags.writeable = False
    return rows
