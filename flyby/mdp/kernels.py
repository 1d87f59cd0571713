"""Compiled (numba) coverage and observation encoding: the same results as the numpy reference.

The numpy functions of :mod:`flyby.mdp.coverage` and :mod:`flyby.mdp.observations` are the
reference; with ``$FLYBY_KERNEL=numba`` (opt-in, :mod:`flyby.kernels`) they validate nothing
more and call these loops instead. Every result here is bit-identical to the reference: the
arithmetic is the same IEEE operations in the same order (no fast-math, so no fused
multiply-add), and counts and selections are exact (``tests/mdp/test_mdp_kernels.py``).

One drone at a time, in loops numba compiles to machine code: the reference's dozens of numpy
calls per step cost more in call overhead than in arithmetic at 1-64 drones.
"""

from __future__ import annotations

import math

import numpy as np

from flyby.kernels import configure_numba_cache

configure_numba_cache()

import numba  # noqa: E402  (the cache folder must be set first)

__all__ = [
    "coverage_patch_into",
    "encode_detections_into",
    "footprints_into",
    "mark_covered_rows",
    "top_k_into",
]

_jit = numba.njit(cache=True, nogil=True)


@_jit
def footprints_into(cam_pos, rot_wc, tan_half_fov, far_m, max_radius_m, clip_t, ground, radius_sq):
    """:func:`flyby.mdp.coverage.footprints` into ``ground`` (k, 2) and ``radius_sq`` (k,)."""
    for i in range(cam_pos.shape[0]):
        az = rot_wc[i, 2, 2]
        cz = cam_pos[i, 2]
        down = az < -1e-3
        t = -cz / (az if down else -1.0)
        ok = down and t <= far_m and cz > 0
        t_ok = t if ok else 0.0
        ground[i, 0] = cam_pos[i, 0] + t_ok * rot_wc[i, 0, 2]
        ground[i, 1] = cam_pos[i, 1] + t_ok * rot_wc[i, 1, 2]
        if clip_t:
            t = min(t, 1e6)
        radius = min(t * tan_half_fov if ok else -1.0, max_radius_m)
        radius_sq[i] = radius * radius


@_jit
def mark_covered_rows(covered, rows, ground, radius_sq, cell_m, half_x, half_y, gx, gy, r_cells, fresh):
    """:func:`flyby.mdp.coverage.mark_covered`: cells of footprint k marked in ``covered[rows[k]]``.

    ``fresh[k]`` gets the count of newly covered cells. A cell is in a footprint when its centre,
    ``(i + 0.5) * cell_m - half``, is within the radius (squared distances compared, as the
    reference); only the square of ``r_cells`` cells around the footprint's cell is visited.
    """
    for k in range(rows.shape[0]):
        row = rows[k]
        x = ground[k, 0]
        y = ground[k, 1]
        r2 = radius_sq[k]
        fresh[k] = 0
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        # The footprint's cell, clamped just outside the grid (no cell of a farther one is near).
        cx = int(min(max(math.floor((x + half_x) / cell_m), -r_cells - 1.0), gx + r_cells + 1.0))
        cy = int(min(max(math.floor((y + half_y) / cell_m), -r_cells - 1.0), gy + r_cells + 1.0))
        for ix in range(max(cx - r_cells, 0), min(cx + r_cells + 1, gx)):
            dx = (ix + 0.5) * cell_m - half_x - x
            dx2 = dx * dx
            for iy in range(max(cy - r_cells, 0), min(cy + r_cells + 1, gy)):
                dy = (iy + 0.5) * cell_m - half_y - y
                if dx2 + dy * dy <= r2:
                    c = ix * gy + iy
                    if not covered[row, c]:
                        covered[row, c] = True
                        fresh[k] += 1


@_jit
def coverage_patch_into(covered, gx, gy, cell_xy, block, out):
    """:func:`flyby.mdp.observations.coverage_patch` into ``out`` (N, 9): uncovered share of 3x3 blocks."""
    half = block // 2
    area = block * block
    for n in range(covered.shape[0]):
        cx = min(max(cell_xy[n, 0], -block), gx + block - 1)
        cy = min(max(cell_xy[n, 1], -block), gy + block - 1)
        p = 0
        for bx in range(-1, 2):
            x_lo = cx - half + bx * block
            x_hi = min(max(x_lo + block, 0), gx)
            x_lo = min(max(x_lo, 0), gx)
            for by in range(-1, 2):
                y_lo = cy - half + by * block
                y_hi = min(max(y_lo + block, 0), gy)
                y_lo = min(max(y_lo, 0), gy)
                count = 0
                for ix in range(x_lo, x_hi):
                    base = ix * gy
                    for iy in range(y_lo, y_hi):
                        if not covered[n, base + iy]:
                            count += 1
                out[n, p] = count / area
                p += 1


@_jit
def top_k_into(visible, boxes_px, new, k, idx, valid):
    """:func:`flyby.mdp.observations.select_top_k`: up to ``k`` per drone, new first, then larger.

    The score of a visible target is its box area plus 1e7 when new; the best ``k`` are kept,
    equal scores by the lower target index (the numpy reference keeps argpartition's order there).
    """
    n, t = visible.shape
    score = np.empty(k)
    for i in range(n):
        m = 0  # entries kept so far, sorted best first
        for j in range(t):
            if not visible[i, j]:
                continue
            s = (boxes_px[i, j, 2] - boxes_px[i, j, 0]) * (boxes_px[i, j, 3] - boxes_px[i, j, 1])
            s = s + (1e7 if new[i, j] else 0.0)
            # Insertion: after every kept entry that scores at least as high (stable).
            pos = m
            while pos > 0 and score[pos - 1] < s:
                pos -= 1
            if pos >= k:
                continue
            last = min(m, k - 1)
            for q in range(last, pos, -1):
                score[q] = score[q - 1]
                idx[i, q] = idx[i, q - 1]
            score[pos] = s
            idx[i, pos] = j
            if m < k:
                m += 1
        for q in range(k):
            valid[i, q] = q < m
            if q >= m:
                idx[i, q] = 0


@_jit
def encode_detections_into(idx, valid, boxes_px, new, target_class, vehicle, person, image, out):
    """:func:`flyby.mdp.observations.encode_detections` into ``out`` (N, k, 8), zeroed by the caller.

    Per kept detection: present, is-vehicle, is-person, new, centre x and y in [-1, 1] of the
    image, width and height as fractions of it (the layout of ``observations.DET_FIELDS``).
    ``image`` is (width, height, 1) in the dtype the reference divides in (float32 for float32
    boxes), so each value is rounded as the reference rounds it.
    """
    width = image[0]
    height = image[1]
    one = image[2]
    n, k = idx.shape
    for i in range(n):
        for q in range(k):
            # Every slot is computed and then multiplied by 1 or 0, as the reference does (a slot
            # without a detection reads target 0 and becomes 0.0 or -0.0, bit for bit).
            m = 1.0 if valid[i, q] else 0.0
            j = idx[i, q]
            x1 = boxes_px[i, j, 0]
            y1 = boxes_px[i, j, 1]
            x2 = boxes_px[i, j, 2]
            y2 = boxes_px[i, j, 3]
            cls = target_class[j]
            out[i, q, 0] = 1.0 * m
            out[i, q, 1] = (1.0 if cls == vehicle else 0.0) * m
            out[i, q, 2] = (1.0 if cls == person else 0.0) * m
            out[i, q, 3] = (1.0 if new[i, j] else 0.0) * m
            out[i, q, 4] = np.float64((x1 + x2) / width - one) * m
            out[i, q, 5] = np.float64((y1 + y2) / height - one) * m
            out[i, q, 6] = np.float64((x2 - x1) / width) * m
            out[i, q, 7] = np.float64((y2 - y1) / height) * m
