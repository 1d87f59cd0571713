"""Compiled (numba) coverage and observation encoding: the same results as the numpy reference.

The numpy functions of :mod:`flyby.mdp.coverage` and :mod:`flyby.mdp.observations` are the
reference; with ``$FLYBY_KERNEL=numba`` (the default, :mod:`flyby.kernels`) they validate nothing
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

from flyby.perception.gt_kernel import detect_camera, target_constants  # noqa: E402

__all__ = [
    "clip_actions_into",
    "coverage_patch_into",
    "coverage_patch_row",
    "dones_rewards_into",
    "encode_detections_into",
    "encode_detections_row",
    "footprints_into",
    "mark_covered_rows",
    "observe_drone",
    "observe_into",
    "observe_into_parallel",
    "patrol_into",
    "perceive_drone",
    "perceive_into",
    "perceive_into_parallel",
    "target_poses_into",
    "top_k_into",
    "top_k_row",
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
    for n in range(covered.shape[0]):
        coverage_patch_row(n, covered, gx, gy, cell_xy, block, out)


@_jit
def coverage_patch_row(n, covered, gx, gy, cell_xy, block, out):
    """Row ``n`` of :func:`coverage_patch_into`."""
    half = block // 2
    area = block * block
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
    score = np.empty(k)
    for i in range(visible.shape[0]):
        top_k_row(i, visible, boxes_px, new, k, idx, valid, score)


@_jit
def top_k_row(i, visible, boxes_px, new, k, idx, valid, score):
    """Row ``i`` of :func:`top_k_into`; ``score``: (k,) float64 scratch."""
    t = visible.shape[1]
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
    for i in range(idx.shape[0]):
        encode_detections_row(i, idx, valid, boxes_px, new, target_class, vehicle, person, image, out)


@_jit
def encode_detections_row(i, idx, valid, boxes_px, new, target_class, vehicle, person, image, out):
    """Row ``i`` of :func:`encode_detections_into`."""
    width = image[0]
    height = image[1]
    one = image[2]
    for q in range(idx.shape[1]):
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


@_jit
def observe_drone(
    i,
    visible, boxes_px, new, target_class, classes, image, pos, vel, yaw, actions, seen, counters, den,
    covered, cov_grid, gx, gy, block, heights, height_grid, clear_cell_m, scales, starts,
    idx, valid, det, cell_xy, cov, progress, obs,
    encode,
):  # fmt: skip
    """Drone ``i``'s part of :func:`observe_into` after the top-k; ``encode``: whether any drone
    kept a detection (the reference encodes all rows then, and none otherwise)."""
    t = visible.shape[1]
    for q in range(det.shape[1]):
        for f in range(det.shape[2]):
            det[i, q, f] = 0.0
    if t > 0 and encode:
        encode_detections_row(i, idx, valid, boxes_px, new, target_class, classes[0], classes[1], image, det)
    cell_xy[i, 0] = int(math.floor((pos[i, 0] + cov_grid[0]) / cov_grid[2]))
    cell_xy[i, 1] = int(math.floor((pos[i, 1] + cov_grid[1]) / cov_grid[2]))
    coverage_patch_row(i, covered, gx, gy, cell_xy, block, cov)
    px_max = heights.shape[0] - 1
    py_max = heights.shape[1] - 1
    counters[i, 1] = 0
    for j in range(t):
        if seen[i, j]:
            counters[i, 1] += 1
    row = obs[i]
    for a in range(3):
        row[starts[0] + a] = _clip1(pos[i, a] / scales[a])
        row[starts[1] + a] = _clip1(vel[i, a] / scales[3 + a])
        progress[i, a] = counters[i, a] / den[a]
        row[starts[5] + a] = _clip1(progress[i, a])
    row[starts[2]] = _clip1(math.cos(yaw[i]))
    row[starts[2] + 1] = _clip1(math.sin(yaw[i]))
    p = 0
    for dx in range(-1, 2):
        x = pos[i, 0] + dx * clear_cell_m
        hx = min(max(int(math.floor((x + height_grid[0]) / height_grid[2])) + 1, 0), px_max)
        for dy in range(-1, 2):
            y = pos[i, 1] + dy * clear_cell_m
            hy = min(max(int(math.floor((y + height_grid[1]) / height_grid[2])) + 1, 0), py_max)
            clearance = pos[i, 2] - np.float64(heights[hx, hy])
            row[starts[3] + p] = _clip1(clearance / scales[6])
            row[starts[7] + p] = _clip1(cov[i, p])
            p += 1
    c = starts[4]
    for q in range(det.shape[1]):
        for f in range(det.shape[2]):
            row[c] = _clip1(det[i, q, f])
            c += 1
    for a in range(4):
        row[starts[6] + a] = _clip1(actions[i, a])


@_jit
def observe_into(
    visible, boxes_px, new, target_class, classes, image, pos, vel, yaw, actions, seen, counters, den,
    covered, cov_grid, gx, gy, block, heights, height_grid, clear_cell_m, scales, starts,
    idx, valid, det, cell_xy, cov, progress, obs,
):  # fmt: skip
    """The built-in observation groups of ``ISRTask._get_observations`` in one call, into ``obs``.

    The reference's stages, the top-k of every drone first (:func:`top_k_row`, ``select_top_k``),
    then drone by drone (:func:`observe_drone`): :func:`encode_detections_row`, the progress
    counters, :func:`coverage_patch_row` at the drone's cell, the clearance patch (the height
    map read as ``ISRWorld.height_at`` reads it) and ``build_observation``'s scaling, float32
    cast and clip to [-1, 1]. User terms are written by the caller after this.

    Args:
        classes: (2,) int64 class ids of the vehicle and person slots.
        image: (3,) (width, height, 1) in the dtype the reference divides boxes in.
        counters: (N, 3) int64 cells covered, targets seen (written here), steps; den: (3,) int64.
        cov_grid: (3,) float64 coverage grid half x, half y (m) and cell side (m).
        heights: (gx_h + 2, gy_h + 2) float32 height map with a border of zero cells, metres.
        height_grid: (3,) float64 height map half x, half y (m) and cell side (m).
        scales: (7,) float64 position scale (3, m), velocity scale (3, m/s), max altitude (m).
        starts: (8,) int64 first column of pos, vel, yaw, clearance, detections, progress,
            last action and coverage in ``obs``.
        idx, valid, det, cell_xy, cov, progress: scratch outputs (N, k) intp, (N, k) bool,
            (N, k, 8) float64, (N, 2) intp, (N, 9) float64, (N, 3) float64.
        obs: (N, dim) float32 observation, the built-in columns written.
    """
    n = visible.shape[0]
    k = idx.shape[1]
    score = np.empty(k)
    for i in range(n):
        top_k_row(i, visible, boxes_px, new, k, idx, valid, score)
    encode = valid.any()
    for i in range(n):
        observe_drone(
            i,
            visible, boxes_px, new, target_class, classes, image, pos, vel, yaw, actions, seen, counters,
            den, covered, cov_grid, gx, gy, block, heights, height_grid, clear_cell_m, scales, starts,
            idx, valid, det, cell_xy, cov, progress, obs, encode,
        )  # fmt: skip


@numba.njit(cache=True, nogil=True, parallel=True)
def observe_into_parallel(
    visible, boxes_px, new, target_class, classes, image, pos, vel, yaw, actions, seen, counters, den,
    covered, cov_grid, gx, gy, block, heights, height_grid, clear_cell_m, scales, starts,
    idx, valid, det, cell_xy, cov, progress, obs,
):  # fmt: skip
    """:func:`observe_into` with the drones split over numba's threads (``prange``): the same
    results. A function of its own: numba's cache keys entries by function and signature, not
    by the ``parallel`` flag."""
    n = visible.shape[0]
    k = idx.shape[1]
    for i in numba.prange(n):
        score = np.empty(k)
        top_k_row(i, visible, boxes_px, new, k, idx, valid, score)
    encode = valid.any()
    for i in numba.prange(n):
        observe_drone(
            i,
            visible, boxes_px, new, target_class, classes, image, pos, vel, yaw, actions, seen, counters,
            den, covered, cov_grid, gx, gy, block, heights, height_grid, clear_cell_m, scales, starts,
            idx, valid, det, cell_xy, cov, progress, obs, encode,
        )  # fmt: skip


@_jit
def _clip1(x):
    """``x`` cast to float32, then clipped to [-1, 1] as ``np.maximum`` / ``np.minimum`` (NaN stays)."""
    v = np.float32(x)
    if v < -1.0:
        return np.float32(-1.0)
    if v > 1.0:
        return np.float32(1.0)
    return v


@_jit
def dones_rewards_into(
    pos, box_lo, box_hi, limits, airborne, episode_step, max_steps, newly_seen, new_cells, actions,
    prev_actions, terms, scales, dts, crashed, outside, time_out, term_sums, reward, terminated, truncated,
):  # fmt: skip
    """``ISRTask._get_dones`` and ``_get_rewards`` for the built-in terms, in one call.

    The reference's operations in its order: ``points_in_buildings`` (inside a grown box, edges
    included), ``crashed``, ``outside_geofence``, ``time_out``, then each active term's value
    times its weight times its step length (1 for event terms), added into the episode sums
    and summed from 0.0 in term order.

    Args:
        pos: (N, 3) float64 m, world ENU.
        box_lo, box_hi: (3, 1, B) float64 building corners grown by the drone radius, m.
        limits: (4,) float64 geofence half x, half y (m, less the margin), ceiling (m), min altitude (m).
        airborne: (N,) bool, updated here (at or above the min altitude once this episode).
        episode_step: (N,) int64; max_steps: the episode's step limit.
        newly_seen: (N, T) bool; new_cells: (N,) int64; actions, prev_actions: (N, 4) float64.
        terms: (A,) int64 index into ``rewards.REWARD_TERMS`` of each active term, in order.
        scales, dts: (A,) float64 weights and step lengths (s, or 1.0 for event terms).
        crashed, outside, time_out: (N,) bool outputs; term_sums: (A, N) float64 episode sums of
        the weighted values, added to; reward: (N,) float64 output.
        terminated, truncated: (N,) bool outputs, crashed or outside, and timed out but not terminated.
    """
    n = pos.shape[0]
    num_boxes = box_lo.shape[2]
    for i in range(n):
        x, y, z = pos[i, 0], pos[i, 1], pos[i, 2]
        inside = False
        for b in range(num_boxes):
            if (
                box_lo[0, 0, b] <= x <= box_hi[0, 0, b]
                and box_lo[1, 0, b] <= y <= box_hi[1, 0, b]
                and box_lo[2, 0, b] <= z <= box_hi[2, 0, b]
            ):
                inside = True
                break
        airborne[i] = airborne[i] or z >= limits[3]
        crashed[i] = (z < limits[3] and airborne[i]) or inside
        out = abs(x) > limits[0] or abs(y) > limits[1] or z > limits[2]
        outside[i] = out and not crashed[i]
        time_out[i] = episode_step[i] >= max_steps
        terminated[i] = crashed[i] or outside[i]
        truncated[i] = time_out[i] and not terminated[i]
        total = 0.0
        for a in range(terms.shape[0]):
            term = terms[a]
            if term == 0:  # new_targets
                v = 0.0
                for j in range(newly_seen.shape[1]):
                    if newly_seen[i, j]:
                        v += 1.0
            elif term == 1:  # coverage
                v = float(new_cells[i])
            elif term == 2:  # collision
                v = 1.0 if crashed[i] else 0.0
            elif term == 3:  # geofence
                v = 1.0 if outside[i] else 0.0
            elif term == 4:  # energy
                v = _dot4(actions[i, 0], actions[i, 1], actions[i, 2], actions[i, 3])
            else:  # jerk
                v = _dot4(
                    actions[i, 0] - prev_actions[i, 0],
                    actions[i, 1] - prev_actions[i, 1],
                    actions[i, 2] - prev_actions[i, 2],
                    actions[i, 3] - prev_actions[i, 3],
                )
            v = v * scales[a] * dts[a]
            term_sums[a, i] += v
            total += v
        reward[i] = total


@_jit
def _dot4(a, b, c, d):
    """a * a + b * b + c * c + d * d in numpy's einsum order for a row of 4 (pairs, then their sum)."""
    return (a * a + c * c) + (b * b + d * d)


@_jit
def perceive_drone(
    i,
    pos, yaw, offset_b, rot_bc, tpos, radius, corners, dirs_c, q_offset, q_radius, near, min_box, fxy,
    cxy, wh, tiny, bmin, bmax, boxes, visible, depth, in_frustum, occluded, seen, newly_seen,
    tan_half_fov, far_m, max_radius_m, clip_t, covered, rows, cell_m, half_x, half_y, gx, gy, r_cells,
    cam_pos, rot_wc, ground, radius_sq, fresh,
):  # fmt: skip
    """Drone ``i``'s part of :func:`perceive_into` (``radius``, ``corners``: the targets' constants
    from :func:`flyby.perception.gt_kernel.target_constants`)."""
    t = tpos.shape[0]
    for j in range(t):
        for a in range(4):
            boxes[i, j, a] = 0.0
        visible[i, j] = False
        depth[i, j] = np.inf
        in_frustum[i, j] = False
        occluded[i, j] = False
    c = math.cos(yaw[i])
    s = math.sin(yaw[i])
    r0 = (c, -s, 0.0)  # rows of R_wb, a rotation about world z
    r1 = (s, c, 0.0)
    r2 = (0.0, 0.0, 1.0)
    for a in range(3):
        r = r0 if a == 0 else (r1 if a == 1 else r2)
        cam_pos[i, a] = pos[i, a] + (r[0] * offset_b[0] + r[1] * offset_b[1] + r[2] * offset_b[2])
        for b in range(3):
            rot_wc[i, a, b] = r[0] * rot_bc[0, b] + r[1] * rot_bc[1, b] + r[2] * rot_bc[2, b]
    detect_camera(
        i, cam_pos, rot_wc, tpos, radius, corners, dirs_c, q_offset, q_radius, near, min_box, fxy, cxy,
        wh, tiny, bmin, bmax, boxes, visible, depth, in_frustum, occluded,
    )  # fmt: skip
    for j in range(t):
        newly_seen[i, j] = visible[i, j] and not seen[i, j]
        seen[i, j] = seen[i, j] or visible[i, j]
    one = slice(i, i + 1)
    footprints_into(
        cam_pos[one], rot_wc[one], tan_half_fov, far_m, max_radius_m, clip_t, ground[one], radius_sq[one]
    )
    mark_covered_rows(
        covered, rows[one], ground[one], radius_sq[one], cell_m, half_x, half_y, gx, gy, r_cells, fresh[one]
    )


@_jit
def perceive_into(
    pos, yaw, offset_b, rot_bc, tpos, tyaw, tsize, dirs_c, q_offset, q_radius, near, min_box, fxy, cxy,
    wh, sphere_slack, tiny, bmin, bmax, boxes, visible, depth, in_frustum, occluded, seen, newly_seen,
    tan_half_fov, far_m, max_radius_m, clip_t, covered, rows, cell_m, half_x, half_y, gx, gy, r_cells,
    cam_pos, rot_wc, ground, radius_sq, fresh,
):  # fmt: skip
    """A perception step of ``ISRTask._update_perception`` for level-flying drones, in one call.

    The reference's stages, drone by drone (:func:`perceive_drone`; drones are independent, so
    the order across them changes nothing): camera pose (``camera_poses_w`` with the yaw-only
    rotation of :func:`flyby.geometry.yaw_rotation`), ground-truth detection
    (:func:`flyby.perception.gt_kernel.detect_camera`), seen and newly seen targets, camera
    footprint (:func:`footprints_into`) and coverage (:func:`mark_covered_rows`).

    Args:
        pos: (N, 3) float64 m, world ENU; yaw: (N,) float64 rad.
        offset_b: (3,) float64 camera position in the body frame (FLU), m; rot_bc: (3, 3) float64
            camera optical frame to body.
        tpos, tyaw, tsize: the targets, (T, 3) m, (T,) rad, (T, 3) m.
        dirs_c ... bmax: the detector's constants (``GroundTruthDetector.kernel_consts``).
        boxes ... occluded: the (N, T) detection outputs, cleared here first (depth at +inf), so
            the same buffers serve every step.
        seen, newly_seen: (N, T) bool, updated.
        tan_half_fov ... r_cells: the coverage grid's constants (:class:`~flyby.mdp.coverage.CoverageGrid`).
        covered: (N, gx * gy) bool, updated; rows: (N,) intp, 0..N-1.
        cam_pos, rot_wc, ground, radius_sq: (N, 3), (N, 3, 3), (N, 2), (N,) float64 scratch.
        fresh: (N,) int64, newly covered cells.
    """
    n = pos.shape[0]
    radius = np.empty(tpos.shape[0])
    corners = np.empty((tpos.shape[0], 8, 3))
    target_constants(tpos, tyaw, tsize, sphere_slack, radius, corners)
    for i in range(n):
        perceive_drone(
            i,
            pos, yaw, offset_b, rot_bc, tpos, radius, corners, dirs_c, q_offset, q_radius, near, min_box,
            fxy, cxy, wh, tiny, bmin, bmax, boxes, visible, depth, in_frustum, occluded, seen, newly_seen,
            tan_half_fov, far_m, max_radius_m, clip_t, covered, rows, cell_m, half_x, half_y, gx, gy,
            r_cells, cam_pos, rot_wc, ground, radius_sq, fresh,
        )  # fmt: skip


@numba.njit(cache=True, nogil=True, parallel=True)
def perceive_into_parallel(
    pos, yaw, offset_b, rot_bc, tpos, tyaw, tsize, dirs_c, q_offset, q_radius, near, min_box, fxy, cxy,
    wh, sphere_slack, tiny, bmin, bmax, boxes, visible, depth, in_frustum, occluded, seen, newly_seen,
    tan_half_fov, far_m, max_radius_m, clip_t, covered, rows, cell_m, half_x, half_y, gx, gy, r_cells,
    cam_pos, rot_wc, ground, radius_sq, fresh,
):  # fmt: skip
    """:func:`perceive_into` with the drones split over numba's threads (``prange``): the same
    results (drones are independent). A function of its own: numba's cache keys entries by function
    and signature, not by the ``parallel`` flag."""
    n = pos.shape[0]
    radius = np.empty(tpos.shape[0])
    corners = np.empty((tpos.shape[0], 8, 3))
    target_constants(tpos, tyaw, tsize, sphere_slack, radius, corners)
    for i in numba.prange(n):
        perceive_drone(
            i,
            pos, yaw, offset_b, rot_bc, tpos, radius, corners, dirs_c, q_offset, q_radius, near, min_box,
            fxy, cxy, wh, tiny, bmin, bmax, boxes, visible, depth, in_frustum, occluded, seen, newly_seen,
            tan_half_fov, far_m, max_radius_m, clip_t, covered, rows, cell_m, half_x, half_y, gx, gy,
            r_cells, cam_pos, rot_wc, ground, radius_sq, fresh,
        )  # fmt: skip


@_jit
def patrol_into(vel, yaw_rate, noise_v, noise_y, pos, consts, actions):
    """:class:`flyby.policies.SmoothPatrolPolicy`'s arithmetic after its two noise draws, into ``actions``.

    The policy's numpy operations in its order and dtypes (numpy 2 casts a Python float to the
    array's float32 where the reference mixes them), so the actions are bit-identical
    (``tests/test_policies.py``).

    Args:
        vel: (N, 2) float64 OU horizontal command, updated; yaw_rate: (N,) float64, updated.
        noise_v, noise_y: (N, 2) and (N,) float64 standard normal draws.
        pos: (N, 3) float32 normalised positions from the observation.
        consts: (7,) float64 theta, sigma * sqrt(dt), 0.6 * sqrt(dt), dt, speed, edge fraction,
            altitude fraction.
        actions: (N, 4) float32 output in [-1, 1].
    """
    theta, sig_v, sig_y, dt, speed, edge, alt = (
        consts[0], consts[1], consts[2], consts[3], consts[4], consts[5], consts[6]
    )  # fmt: skip
    alt32 = np.float32(alt)
    speed32 = np.float32(speed)
    for i in range(vel.shape[0]):
        for a in range(2):
            v = vel[i, a]
            vel[i, a] = v + ((-theta * v) * dt + sig_v * noise_v[i, a])
        norm = math.sqrt(vel[i, 0] * vel[i, 0] + vel[i, 1] * vel[i, 1])
        gain = min(max(speed / max(norm, 1e-6), 0.5), 1.5)
        for a in range(2):
            vel[i, a] *= gain
            p = pos[i, a]
            if abs(p) > edge:
                sign = np.float32(1.0) if p > 0 else (np.float32(-1.0) if p < 0 else np.float32(0.0))
                vel[i, a] = np.float64(-sign * speed32)
            actions[i, a] = _clip1(vel[i, a])
        y = yaw_rate[i]
        yaw_rate[i] = y + ((-theta * y) * dt + sig_y * noise_y[i])
        actions[i, 2] = _clip1(np.float32(4.0) * (alt32 - pos[i, 2]))
        actions[i, 3] = _clip1(0.5 * math.tanh(2.0 * yaw_rate[i]))


@_jit
def target_poses_into(
    t_s, pos0, yaw0, mov, along, across, half, length, loop, u0, speed, going, back, pos, yaw
):
    """:meth:`flyby.world.world.ISRWorld.target_poses` at ``t_s`` seconds, into ``pos`` (T, 3), ``yaw`` (T,).

    The reference's arithmetic in its order (the same IEEE operations, so bit-identical): each
    moving target's place on its loop of length ``loop``, the triangle wave along its road, and
    the lane and heading of its direction of travel. ``pos0``, ``yaw0`` are the poses at time 0;
    ``mov`` ... ``back`` are the fields of :class:`flyby.world.world.TargetMotion`.
    """
    t = pos0.shape[0]
    for j in range(t):
        for a in range(3):
            pos[j, a] = pos0[j, a]
        yaw[j] = yaw0[j]
    for m in range(mov.shape[0]):
        u = np.mod(u0[m] + speed[m] * t_s, loop[m])
        if u < length[m]:
            along_m = u - half[m]
            lane, heading = going[0, m], going[1, m]
        else:
            along_m = (loop[m] - u) - half[m]
            lane, heading = back[0, m], back[1, m]
        pos[along[m] // 3, along[m] % 3] = along_m
        pos[across[m] // 3, across[m] % 3] = lane
        yaw[mov[m]] = heading


@_jit
def clip_actions_into(actions, out):
    """:func:`flyby.mdp.actions.validate_actions` for a float array of the right shape: ``actions``
    (N, 4) float32 or float64 as float64 clipped to [-1, 1] into ``out``; False (``out`` partly
    written) when a value is NaN or infinite, for the reference to raise its error."""
    for i in range(actions.shape[0]):
        for a in range(actions.shape[1]):
            x = np.float64(actions[i, a])
            if not math.isfinite(x):
                return False
            out[i, a] = min(max(x, -1.0), 1.0)
    return True
