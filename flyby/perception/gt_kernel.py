"""Compiled (numba) ground-truth detection: the same rules and stages as :mod:`flyby.perception.gt`.

:meth:`GroundTruthDetector.detect <flyby.perception.gt.GroundTruthDetector.detect>` calls
:func:`detect_into` when ``$FLYBY_KERNEL`` is ``numba`` (the default, :mod:`flyby.kernels`); the
numpy code in ``gt.py`` is the reference, and ``tests/perception/test_gt_kernel.py`` requires
equal flags and boxes and depths within float64 rounding on random scenes.

One pass per (camera, target) pair, cheapest test first, as the reference:

1. the centre's depth within ``[near, far]`` and the target's bounding sphere (plus
   ``_SPHERE_SLACK_M``) on the inner side of the four side planes of the frustum;
2. the 8 corners projected: none before the near plane, the clipped box of positive area
   (``in_frustum``) and with its smaller side ``>= min_box_px``;
3. the segment camera -> target centre against every building box whose horizontal footprint
   meets the segment's horizontal bounding box (slab test; touching counts as occluded).

Each target's bounding sphere and world corners are computed once per call
(:func:`target_constants`), not once per pair. Cameras are independent: :func:`detect_kernel`
loops over them on one thread, :func:`detect_kernel_parallel` splits them over numba's threads
(1,024 cameras x 40 targets on the 2-core machine: 2,127 us on one thread, 1,137 us on two).
The tasks take the parallel one from :func:`flyby.kernels.parallel_min_drones` drones on; the
serial one is safe to call from any Python thread (numba's workqueue pool is not). Arithmetic
is float64 as in the reference; only the summation order of the dot products differs (the
reference uses matrix products), so values agree to about 1e-12 relative.
"""

from __future__ import annotations

import numpy as np

from flyby.kernels import configure_numba_cache, parallel_min_drones

configure_numba_cache()

import numba  # noqa: E402  (the cache folder must be set first)

__all__ = ["detect_camera", "detect_into", "detect_kernel", "detect_kernel_parallel", "target_constants"]


@numba.njit(cache=True, nogil=True)
def target_constants(tpos, yaw, size, sphere_slack, radius, corners):
    """Per target, once per call: the bounding-sphere radius (plus ``sphere_slack``) into
    ``radius`` (T,) and the 8 box corners in the world into ``corners`` (T, 8, 3), metres.

    The reference's arithmetic (each value the same IEEE operations), hoisted out of the
    per-camera loop where it was computed once per (camera, target) pair.
    """
    for j in range(tpos.shape[0]):
        hx = 0.5 * size[j, 0]
        hy = 0.5 * size[j, 1]
        hz = 0.5 * size[j, 2]
        radius[j] = np.sqrt(hx * hx + hy * hy + hz * hz) + sphere_slack
        c = np.cos(yaw[j])
        s = np.sin(yaw[j])
        for corner in range(8):
            sx = 1.0 if corner & 4 else -1.0
            sy = 1.0 if corner & 2 else -1.0
            sz = 1.0 if corner & 1 else -1.0
            ox = c * (hx * sx) - s * (hy * sy)
            oy = s * (hx * sx) + c * (hy * sy)
            corners[j, corner, 0] = tpos[j, 0] + ox
            corners[j, corner, 1] = tpos[j, 1] + oy
            corners[j, corner, 2] = tpos[j, 2] + hz * sz


@numba.njit(cache=True, nogil=True)
def detect_camera(
    i, cam, rot, tpos, radius, corners, dirs_c, q_offset, q_radius, near, min_box, fxy, cxy, wh, tiny,
    bmin, bmax, boxes, visible, depth, in_frustum, occluded,
):  # fmt: skip
    """Fill row ``i`` of the (N, T) outputs: every target seen from camera ``i``."""
    t = tpos.shape[0]
    nb = bmin.shape[0]
    # Rows of M: world direction of each optical-frame unit vector, and its dot with the camera.
    dw = np.empty((9, 3))
    dc = np.empty(9)
    for k in range(9):
        for a in range(3):
            dw[k, a] = rot[i, a, 0] * dirs_c[0, k] + rot[i, a, 1] * dirs_c[1, k] + rot[i, a, 2] * dirs_c[2, k]
        dc[k] = dw[k, 0] * cam[i, 0] + dw[k, 1] * cam[i, 1] + dw[k, 2] * cam[i, 2]
    for j in range(t):
        # Stage 1: centre depth range and bounding sphere vs the side planes (NaN fails).
        inside = True
        for k in range(3, 9):
            q = dw[k, 0] * tpos[j, 0] + dw[k, 1] * tpos[j, 1] + dw[k, 2] * tpos[j, 2] - dc[k]
            q += q_radius[k] * radius[j] + q_offset[k]
            if not q >= 0.0:
                inside = False
                break
        if not inside:
            continue
        # Stage 2: the 8 corners in the camera frame, their clipped box.
        front = True
        u_min = np.inf
        v_min = np.inf
        u_max = -np.inf
        v_max = -np.inf
        for corner in range(8):
            px = corners[j, corner, 0]
            py = corners[j, corner, 1]
            pz = corners[j, corner, 2]
            x = dw[0, 0] * px + dw[0, 1] * py + dw[0, 2] * pz - dc[0]
            y = dw[1, 0] * px + dw[1, 1] * py + dw[1, 2] * pz - dc[1]
            z = dw[2, 0] * px + dw[2, 1] * py + dw[2, 2] * pz - dc[2]
            if z < near:
                front = False
                z = near
            u = x / z
            v = y / z
            u_min = min(u_min, u)
            u_max = max(u_max, u)
            v_min = min(v_min, v)
            v_max = max(v_max, v)
        x1 = min(max(u_min * fxy[0] + cxy[0], 0.0), wh[0])
        y1 = min(max(v_min * fxy[1] + cxy[1], 0.0), wh[1])
        x2 = min(max(u_max * fxy[0] + cxy[0], 0.0), wh[0])
        y2 = min(max(v_max * fxy[1] + cxy[1], 0.0), wh[1])
        side = min(x2 - x1, y2 - y1)
        framed = front and side > 0.0
        in_frustum[i, j] = framed
        big = (front if min_box > 0.0 else framed) and side >= min_box
        if not big:
            continue
        # Stage 3: occlusion of the line of sight by a building (slab test).
        blocked = False
        if nb > 0:
            ex = tpos[j, 0]
            ey = tpos[j, 1]
            ez = tpos[j, 2]
            lo_x = min(cam[i, 0], ex)
            hi_x = max(cam[i, 0], ex)
            lo_y = min(cam[i, 1], ey)
            hi_y = max(cam[i, 1], ey)
            inv_x = 1.0 / ((ex - cam[i, 0]) + tiny)
            inv_y = 1.0 / ((ey - cam[i, 1]) + tiny)
            inv_z = 1.0 / ((ez - cam[i, 2]) + tiny)
            for b in range(nb):
                if not (
                    lo_x <= bmax[b, 0] and hi_x >= bmin[b, 0] and lo_y <= bmax[b, 1] and hi_y >= bmin[b, 1]
                ):
                    continue
                a0 = (bmin[b, 0] - cam[i, 0]) * inv_x
                a1 = (bmax[b, 0] - cam[i, 0]) * inv_x
                b0 = (bmin[b, 1] - cam[i, 1]) * inv_y
                b1 = (bmax[b, 1] - cam[i, 1]) * inv_y
                c0 = (bmin[b, 2] - cam[i, 2]) * inv_z
                c1 = (bmax[b, 2] - cam[i, 2]) * inv_z
                s_near = max(max(min(a0, a1), min(b0, b1)), min(c0, c1))
                s_far = min(min(max(a0, a1), max(b0, b1)), max(c0, c1))
                if max(s_near, 0.0) <= min(s_far, 1.0):
                    blocked = True
                    break
        if blocked:
            occluded[i, j] = True
            continue
        visible[i, j] = True
        depth[i, j] = dw[2, 0] * tpos[j, 0] + dw[2, 1] * tpos[j, 1] + dw[2, 2] * tpos[j, 2] - dc[2]
        boxes[i, j, 0] = x1
        boxes[i, j, 1] = y1
        boxes[i, j, 2] = x2
        boxes[i, j, 3] = y2


@numba.njit(cache=True, nogil=True)
def detect_kernel(
    cam, rot, tpos, yaw, size, dirs_c, q_offset, q_radius, near, min_box, fxy, cxy, wh,
    sphere_slack, tiny, bmin, bmax, boxes, visible, depth, in_frustum, occluded,
):  # fmt: skip
    """Fill the (N, T) outputs, one camera after another; see :func:`detect_into` for the arguments."""
    radius = np.empty(tpos.shape[0])
    corners = np.empty((tpos.shape[0], 8, 3))
    target_constants(tpos, yaw, size, sphere_slack, radius, corners)
    for i in range(cam.shape[0]):
        detect_camera(
            i, cam, rot, tpos, radius, corners, dirs_c, q_offset, q_radius, near, min_box, fxy, cxy,
            wh, tiny, bmin, bmax, boxes, visible, depth, in_frustum, occluded,
        )  # fmt: skip


# A function of its own, not njit(parallel=True) of detect_kernel's: numba's cache tells entries
# apart by function and signature, not by flags, so the two would load each other's machine code.
@numba.njit(cache=True, nogil=True, parallel=True)
def detect_kernel_parallel(
    cam, rot, tpos, yaw, size, dirs_c, q_offset, q_radius, near, min_box, fxy, cxy, wh,
    sphere_slack, tiny, bmin, bmax, boxes, visible, depth, in_frustum, occluded,
):  # fmt: skip
    """:func:`detect_kernel` with the cameras split over numba's threads (``prange``): the same results."""
    radius = np.empty(tpos.shape[0])
    corners = np.empty((tpos.shape[0], 8, 3))
    target_constants(tpos, yaw, size, sphere_slack, radius, corners)
    for i in numba.prange(cam.shape[0]):
        detect_camera(
            i, cam, rot, tpos, radius, corners, dirs_c, q_offset, q_radius, near, min_box, fxy, cxy,
            wh, tiny, bmin, bmax, boxes, visible, depth, in_frustum, occluded,
        )  # fmt: skip


def detect_into(
    cam_pos_w: np.ndarray,
    rot_wc: np.ndarray,
    target_pos_w: np.ndarray,
    target_yaw_rad: np.ndarray,
    target_size_m: np.ndarray,
    consts: tuple,
    out: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """Detect T targets from N cameras into ``out`` (the compiled path of ``detect``).

    Args:
        cam_pos_w: (N, 3) float64 camera centres, metres, world ENU (validated by the caller).
        rot_wc: (N, 3, 3) float64 camera optical frame to world rotations.
        target_pos_w: (T, 3) float64 target centres, metres, world ENU.
        target_yaw_rad: (T,) float64 headings, radians about world z.
        target_size_m: (T, 3) float64 (length, width, height), metres.
        consts: the detector's camera and building constants, from
            ``GroundTruthDetector.kernel_consts`` (optical-frame row directions (3, 9), row
            offsets and sphere coefficients (9,), near plane (m), ``min_box_px``, (fx, fy),
            (cx, cy), (W, H), sphere slack (m), slab-test epsilon, building min and max corners
            (B, 3)).
        out: the (N, T) outputs as :class:`~flyby.perception.gt.Detections` orders them, zeroed
            (``depth_m`` at +inf): boxes (N, T, 4) float32, visible, depth (float32), in_frustum,
            occluded (bool).

    From :func:`flyby.kernels.parallel_min_drones` cameras on, the cameras are split over
    numba's threads (:func:`detect_kernel_parallel`, the same results).
    """
    kernel = detect_kernel_parallel if cam_pos_w.shape[0] >= parallel_min_drones() else detect_kernel
    kernel(cam_pos_w, rot_wc, target_pos_w, target_yaw_rad, target_size_m, *consts, *out)
