"""The shared observation encoding (direct, multi-drone and full-fidelity envs).

Observation (num_envs, OBS_DIM) float32, every entry clipped to [-1, 1]:

| slice              | size  | content                                            | normalised by            |
|--------------------|-------|----------------------------------------------------|--------------------------|
| layout.pos         | 3     | position, world ENU                                | half area size, max alt  |
| layout.vel         | 3     | linear velocity, world ENU                         | max (vertical) velocity  |
| layout.yaw         | 2     | cos(yaw), sin(yaw)                                 | -                        |
| layout.clearance   | 9     | altitude above the tallest building in a 3x3 patch | max altitude             |
|                    |       | of cells around the drone (row-major, x then y,    |                          |
|                    |       | spacing `clearance_cell_m`)                        |                          |
| layout.detections  | K * 8 | top-K ground-truth detections, each DET_FIELDS     | image size               |
|                    |       | (below)                                            |                          |
| layout.progress    | 3     | area covered fraction, targets seen fraction, time | -                        |
|                    |       | used fraction                                      |                          |
| layout.last_action | 4     | previous normalised action                         | -                        |
| layout.coverage    | 9     | share of the ground NOT yet covered this episode   | -                        |
|                    |       | in a 3x3 patch of blocks around the drone (row-    |                          |
|                    |       | major, x then y; a block is `coverage_block_cells` |                          |
|                    |       | coverage cells square; outside the area = 0)       |                          |

A term of your own (``observations.terms["name"] = ObsTerm(func=...)``, :mod:`flyby.mdp.terms`)
appends its (N, d) values after ``layout.coverage`` (``layout.term("name")``), clipped to [-1, 1]
like the rest; ``layout.dim`` grows by ``d``. The built-in groups above are always on, in this order
(``OBS_TERMS``), computed together by :func:`build_observation`.

Each detection slot holds ``[present, is_vehicle, is_person, is_new, cx, cy,
w, h]``: ``cx, cy`` in [-1, 1] from the image centre, ``w, h`` as fractions of
the image size, ``is_new`` when the drone has not seen that target this episode.
Slots are filled new-first, then by box area (largest first); empty slots are 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import numpy as np

from flyby.config import cfg_field
from flyby.enums import KernelBackend, TargetClass
from flyby.kernels import kernel_backend
from flyby.mdp.terms import ObsTerm, term_dict_problems

DET_FIELDS = 8
DET_PRESENT, DET_VEHICLE, DET_PERSON, DET_NEW, DET_CX, DET_CY, DET_W, DET_H = range(DET_FIELDS)

# The built-in observation groups, in the order of the vector (the names of ObsLayout's slices).
OBS_TERMS = ("pos", "vel", "yaw", "clearance", "detections", "progress", "last_action", "coverage")


def _default_terms() -> dict[str, ObsTerm]:
    return {k: ObsTerm() for k in OBS_TERMS}


@dataclass(kw_only=True)
class ObservationCfg:
    """Observation encoding.

    ``terms`` names the groups of the vector in order: the built-ins (``OBS_TERMS``, always on),
    then any term of your own (``ObsTerm(func=...)``), appended in the order given.
    """

    top_k: int = cfg_field(5, ge=1, le=64)  # detection slots in the observation
    clearance_cell_m: float = cfg_field(10.0, gt=0.0)  # m, spacing of the 3x3 clearance patch
    # coverage cells per side of a block of the coverage patch
    coverage_block_cells: int = cfg_field(4, ge=1, le=64)
    # name -> group of the observation vector, in order; the built-ins come first and are always on
    terms: dict[str, ObsTerm] = field(default_factory=_default_terms)

    def __post_init__(self) -> None:
        self.terms = {**_default_terms(), **self.terms}

    def validate(self) -> list[str]:
        def clash(name: str, term: ObsTerm) -> str | None:
            return None if term.func is None and not term.params else "always on, in its place"

        return term_dict_problems(self.terms, ObsTerm, OBS_TERMS, clash, what="observation group")


@dataclass(frozen=True)
class ObsLayout:
    """Named slices of the observation vector for a given ``top_k`` (computed once: read every step).

    ``extra`` lists the user's observation terms as (name, width) pairs, appended after
    ``coverage`` in that order (:meth:`term` gives their slices).
    """

    top_k: int
    extra: tuple[tuple[str, int], ...] = ()

    @cached_property
    def pos(self) -> slice:
        return slice(0, 3)

    @cached_property
    def vel(self) -> slice:
        return slice(3, 6)

    @cached_property
    def yaw(self) -> slice:
        return slice(6, 8)

    @cached_property
    def clearance(self) -> slice:
        return slice(8, 17)

    @cached_property
    def detections(self) -> slice:
        return slice(17, 17 + self.top_k * DET_FIELDS)

    @cached_property
    def progress(self) -> slice:
        end = self.detections.stop
        return slice(end, end + 3)

    @cached_property
    def last_action(self) -> slice:
        end = self.progress.stop
        return slice(end, end + 4)

    @cached_property
    def coverage(self) -> slice:
        end = self.last_action.stop
        return slice(end, end + 9)

    @cached_property
    def builtin_dim(self) -> int:
        """Size of the built-in groups (``OBS_TERMS``)."""
        return self.coverage.stop

    @cached_property
    def extra_slices(self) -> tuple[slice, ...]:
        """The slices of the ``extra`` terms, in order."""
        out, start = [], self.builtin_dim
        for _, width in self.extra:
            out.append(slice(start, start + width))
            start += width
        return tuple(out)

    @cached_property
    def dim(self) -> int:
        return self.extra_slices[-1].stop if self.extra else self.builtin_dim

    def term(self, name: str) -> slice:
        """The slice of observation group ``name`` (a built-in of ``OBS_TERMS`` or an ``extra`` term).

        Raises:
            KeyError: no such group (the message lists them).
        """
        if name in OBS_TERMS:
            return getattr(self, name)
        for (extra_name, _), sl in zip(self.extra, self.extra_slices):
            if extra_name == name:
                return sl
        known = ", ".join([*OBS_TERMS, *(k for k, _ in self.extra)])
        raise KeyError(f"no observation group {name!r} (groups: {known})")


# 3x3 patch offsets in units of clearance_cell_m, row-major over (dx, dy).
_PATCH = np.array([(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)], dtype=np.float64)


def coverage_patch(
    covered: np.ndarray,
    grid_shape: tuple[int, int],
    cell_xy: np.ndarray,
    block: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Share of the ground not yet covered in 3x3 blocks around each drone (where to fly next).

    A memoryless policy sees where it is but not where it has been; this patch is the part of
    the episode's coverage map that matters for the next seconds: for each of the 3x3 blocks of
    ``block x block`` coverage cells centred on the drone's block, the fraction of its cells not
    yet covered. Cells outside the area count as covered (nothing to gain there), so the patch
    also shows the geofence.

    Args:
        covered: (N, gx * gy) bool, row-major over (x cell, y cell), this episode's coverage.
        grid_shape: (gx, gy) cells.
        cell_xy: (N, 2) int, the drone's cell (x, y) index, may lie outside the grid.
        block: cells per block side (``ObservationCfg.coverage_block_cells``).
        out: optional (N, 9) float buffer.

    Returns:
        (N, 9) float64 in [0, 1], row-major over (dx, dy) in (-1, 0, 1) blocks, as the clearance patch.
    """
    n = covered.shape[0]
    gx, gy = grid_shape
    if kernel_backend() is KernelBackend.NUMBA:
        from flyby.mdp.kernels import coverage_patch_into

        out = np.empty((n, 9)) if out is None else out
        coverage_patch_into(covered, gx, gy, np.asarray(cell_xy, dtype=np.intp), int(block), out)
        return out
    # Integral image of the uncovered cells: S[i, j] = uncovered cells in [0, i) x [0, j). A block's
    # corner indices clipped to [0, g] give the count over its part inside the grid, so cells outside
    # count as covered without padding the grid.
    integral = np.zeros((n, gx + 1, gy + 1), dtype=np.int32)
    np.logical_not(covered.reshape(n, gx, gy), out=integral[:, 1:, 1:], casting="unsafe")
    np.cumsum(integral, axis=1, out=integral)
    np.cumsum(integral, axis=2, out=integral)
    # Block (dx, dy) spans cells [c - block // 2 + d * block, ... + block) along each axis, c the drone's
    # cell, itself clipped to one block outside the grid.
    grid = np.array([gx, gy])
    cxy = np.minimum(np.maximum(cell_xy, -block), grid + block - 1)
    lo = cxy[:, None, :] - block // 2 + _PATCH_INT[None] * block  # (N, 9, 2)
    hi = np.minimum(np.maximum(lo + block, 0), grid)
    lo = np.minimum(np.maximum(lo, 0), grid)
    flat = integral.reshape(n, -1)
    stride = gy + 1
    rows = _row_offsets(n, 1)
    total = (
        flat[rows, hi[..., 0] * stride + hi[..., 1]]
        - flat[rows, lo[..., 0] * stride + hi[..., 1]]
        - flat[rows, hi[..., 0] * stride + lo[..., 1]]
        + flat[rows, lo[..., 0] * stride + lo[..., 1]]
    )
    return np.divide(total, block * block, out=out)


_PATCH_INT = _PATCH.astype(np.intp)


def clearance_patch(pos_w: np.ndarray, height_at, cell_m: float) -> np.ndarray:
    """Altitude above the tallest building at 9 points around each drone.

    Args:
        pos_w: (N, 3) metres, world ENU.
        height_at: callable mapping (..., 2) xy to (...,) building heights (``ISRWorld.height_at``).
        cell_m: spacing of the patch, metres.

    Returns:
        (N, 9) float64 metres (negative = a building taller than the drone is there).
    """
    xy = pos_w[:, None, :2] + _patch_offsets(cell_m)
    return pos_w[:, 2:3] - height_at(xy)


@lru_cache(maxsize=8)
def _patch_offsets(cell_m: float) -> np.ndarray:
    """(1, 9, 2) patch offsets in metres, ``_PATCH * cell_m`` (cached, read-only)."""
    offsets = _PATCH[None] * cell_m
    offsets.flags.writeable = False
    return offsets


def select_top_k(
    visible: np.ndarray, boxes_px: np.ndarray, new: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pick up to ``k`` detections per drone: new targets first, then largest boxes.

    Args:
        visible: (N, T) bool.
        boxes_px: (N, T, 4) x1, y1, x2, y2 pixels.
        new: (N, T) bool, visible and not seen before this episode.

    Returns:
        idx: (N, k) int target indices (arbitrary where not valid), best first. Equal scores come
            in ``np.argpartition``'s order here and by target index in the numba kernel (the one
            place the two paths may differ; the Phase 4 gate's policy was trained on this order).
        valid: (N, k) bool.
    """
    n, t = visible.shape
    if t == 0 or not visible.any():  # nothing in view (the common case): no ranking needed
        return np.zeros((n, k), dtype=np.intp), np.zeros((n, k), dtype=bool)
    if kernel_backend() is KernelBackend.NUMBA:
        from flyby.mdp.kernels import top_k_into

        idx_k, valid_k = np.empty((n, k), dtype=np.intp), np.empty((n, k), dtype=bool)
        top_k_into(visible, boxes_px, new, k, idx_k, valid_k)
        return idx_k, valid_k
    area = (boxes_px[..., 2] - boxes_px[..., 0]) * (boxes_px[..., 3] - boxes_px[..., 1])
    neg_score = -np.where(visible, area + new * 1e7, -1.0)  # ascending order = best first
    kk = min(k, t)
    if kk < t:
        part = np.argpartition(neg_score, kk - 1, axis=1)[:, :kk]
    else:
        part = np.broadcast_to(np.arange(t), (n, t))
    rows = _row_offsets(n, 1)
    part_neg = neg_score[rows, part]
    order = np.argsort(part_neg, axis=1, kind="stable")
    idx_k = part[rows, order]
    valid_k = part_neg[rows, order] <= 0  # score >= 0
    if kk < k:
        pad = k - kk
        idx_k = np.concatenate([idx_k, np.zeros((n, pad), dtype=idx_k.dtype)], axis=1)
        valid_k = np.concatenate([valid_k, np.zeros((n, pad), dtype=bool)], axis=1)
    return idx_k, valid_k


# Class ids of the DET_VEHICLE and DET_PERSON columns (plain ints: comparing with IntEnum members is slower).
_SLOT_CLASSES = np.array([int(TargetClass.VEHICLE), int(TargetClass.PERSON)])


@lru_cache(maxsize=32)
def _row_offsets(n: int, stride: int) -> np.ndarray:
    """(n, 1) intp row offsets ``i * stride``, cached (read-only): the same few shapes every step."""
    rows = (np.arange(n) * stride)[:, None]
    rows.flags.writeable = False
    return rows


@lru_cache(maxsize=32)
def _image_size(dtype: np.dtype, width: int, height: int) -> np.ndarray:
    """(2,) [width, height] in the dtype of ``dtype`` boxes divided by these Python numbers (cached)."""
    size = np.array([width, height], dtype=np.result_type(dtype, width, height))
    size.flags.writeable = False
    return size


@lru_cache(maxsize=32)
def image_divisors(dtype: np.dtype, width: int, height: int) -> np.ndarray:
    """(3,) [width, height, 1] in the dtype :func:`_image_size` gives (the compiled path's divisors)."""
    size = _image_size(dtype, width, height)
    out = np.array([size[0], size[1], 1], dtype=size.dtype)
    out.flags.writeable = False
    return out


def encode_detections(
    idx: np.ndarray,
    valid: np.ndarray,
    boxes_px: np.ndarray,
    new: np.ndarray,
    target_class: np.ndarray,
    width: int,
    height: int,
) -> np.ndarray:
    """Encode selected detections as (N, k * DET_FIELDS) float64 (see module docstring)."""
    n, k = idx.shape
    out = np.zeros((n, k, DET_FIELDS))
    if boxes_px.shape[1] == 0 or not valid.any():
        return out.reshape(n, k * DET_FIELDS)
    if kernel_backend() is KernelBackend.NUMBA:
        from flyby.mdp.kernels import encode_detections_into

        image = image_divisors(boxes_px.dtype, width, height)
        vehicle, person = (int(c) for c in _SLOT_CLASSES)
        encode_detections_into(idx, valid, boxes_px, new, target_class, vehicle, person, image, out)
        return out.reshape(n, k * DET_FIELDS)
    t = boxes_px.shape[1]
    flat = idx + _row_offsets(n, t)  # (N, k) indices into the flattened (N, T)
    b = boxes_px.reshape(n * t, 4).take(flat, axis=0)  # (N, k, 4)
    lo, hi = b[..., :2], b[..., 2:]  # (x1, y1), (x2, y2)
    image = _image_size(b.dtype, width, height)
    out[..., DET_PRESENT] = 1.0
    out[..., DET_VEHICLE : DET_PERSON + 1] = target_class.take(idx)[..., None] == _SLOT_CLASSES
    out[..., DET_NEW] = new.take(flat)
    centre = (lo + hi) / image
    centre -= 1.0
    out[..., DET_CX : DET_CY + 1] = centre
    out[..., DET_W : DET_H + 1] = (hi - lo) / image
    out *= valid[..., None]
    return out.reshape(n, k * DET_FIELDS)


def build_observation(
    layout: ObsLayout,
    *,
    pos_w: np.ndarray,
    lin_vel_w: np.ndarray,
    yaw_rad: np.ndarray,
    clearance_m: np.ndarray,
    detections: np.ndarray,
    progress: np.ndarray,
    last_action: np.ndarray,
    pos_scale: np.ndarray,
    vel_scale: np.ndarray,
    max_altitude_m: float,
    coverage: np.ndarray,
    extra: Sequence[np.ndarray] = (),
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Assemble the (N, layout.dim) float32 observation, clipped to [-1, 1].

    Args:
        extra: (N, d_i) values of the user's terms, in the order of ``layout.extra``.
        pos_scale: (3,) metres dividing the position (half area x, y; max altitude).
        vel_scale: (3,) m/s dividing the velocity.
        progress: (N, 3) fractions in [0, 1].
        coverage: (N, 9) uncovered fractions in [0, 1] (:func:`coverage_patch`).
        out: optional preallocated (N, dim) float32 buffer.
    """
    n = pos_w.shape[0]
    obs = np.empty((n, layout.dim), dtype=np.float32) if out is None else out
    obs[:, layout.pos] = pos_w / pos_scale
    obs[:, layout.vel] = lin_vel_w / vel_scale
    obs[:, layout.yaw.start] = np.cos(yaw_rad)
    obs[:, layout.yaw.start + 1] = np.sin(yaw_rad)
    obs[:, layout.clearance] = clearance_m / max_altitude_m
    obs[:, layout.detections] = detections
    obs[:, layout.progress] = progress
    obs[:, layout.last_action] = last_action
    obs[:, layout.coverage] = coverage
    for sl, values in zip(layout.extra_slices, extra, strict=True):
        obs[:, sl] = values
    np.maximum(obs, -1.0, out=obs)
    np.minimum(obs, 1.0, out=obs)
    return obs
