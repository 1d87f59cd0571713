"""Ground-truth (analytic) target detection: pinhole projection plus an occlusion test.

This is the hot path of the fast training envs: every control step (or every
``perception_interval`` steps) each drone's camera "detects" the ISR targets it
can see, without rendering a pixel. Frames and the pinhole model are those of
:mod:`flyby.perception.camera`: world ENU, camera optical frame OpenCV
(x right, y down, z forward), ``u = fx * x_c / z_c + cx``.

A target is a box: centre ``target_pos_w``, heading ``target_yaw_rad`` about
world z, size (length along the heading, width, height). Target ``t`` is
**visible** from camera ``n`` iff all of

1. *in the frustum*: the depth of its centre (camera z) is within
   ``[near_m, far_m]``; none of its 8 corners lies in front of the camera by
   less than ``near_m`` (a box that crosses the near plane cannot be projected
   as a box, so it is treated as not visible — at ``near_m = 0.2`` m this only
   happens when the camera is inside or touching the target); and the
   axis-aligned bounding box of the 8 projected corners overlaps the image
   ``[0, W] x [0, H]`` with a positive area;
2. *big enough*: that box, clipped to the image, has its smaller side
   ``>= min_box_px``;
3. *unoccluded*: the segment from the camera centre to the target centre
   crosses no building box (slab test; a segment that starts inside a building
   counts as occluded, one that only grazes a face or an edge counts as
   occluded too).

Cost, cheapest first (DESIGN.md, "Ground-truth perception cost"): one small
matrix product gives, for every (camera, target) pair, the centre's depth and
the signed distances of the target's bounding sphere to the near, far and four
side planes of the view frustum; only the pairs that pass (typically a few per
camera) have their 8 projected corners reduced to a box, and only those whose
box passes the size test go on to the occlusion test, where buildings whose
horizontal footprint misses the segment's horizontal bounding box are culled
before the exact slab test. Pure numpy, float64 throughout; outputs float32.

This numpy code is the reference. With ``$FLYBY_KERNEL=numba`` (the default, :mod:`flyby.kernels`)
:meth:`GroundTruthDetector.detect` validates its input here and then runs the compiled kernel of
:mod:`flyby.perception.gt_kernel`: the same rules and stages, tested equal to this code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from flyby.config import check
from flyby.enums import KernelBackend
from flyby.kernels import kernel_backend
from flyby.perception.camera import CameraCfg, PinholeIntrinsics

if TYPE_CHECKING:
    from flyby.world import ISRWorld

__all__ = ["Detections", "GroundTruthDetector"]

# Corner signs of a box, (3, 8): column j is (+-1, +-1, +-1) for corner j.
_CORNER_SIGNS = np.array(
    [[sx, sy, sz] for sx in (-1.0, 1.0) for sy in (-1.0, 1.0) for sz in (-1.0, 1.0)]
).T.copy()

# Rows of the per-pair quantity matrix Q (see GroundTruthDetector._candidates):
# camera x, y, z of the target centre, then six frustum-plane distances that
# are >= 0 inside (near, far, left, right, top, bottom).
_Q_Z = 2
_Q_PLANES = slice(3, 9)
_NUM_Q = 9

# Slack on the bounding-sphere radius, metres: the sphere test only culls, so it
# must never reject a box whose corner lies exactly on a frustum plane.
_SPHERE_SLACK_M = 1e-6

# Added to segment directions in the slab test so that a zero component gives
# a huge finite inverse (never 0 * inf = nan); below any metre-scale value.
_TINY = 1e-300


class Detections(NamedTuple):
    """Ground-truth detections of T targets by N cameras.

    Attributes:
        boxes_px: (N, T, 4) float32, ``x1, y1, x2, y2`` in pixels, the
            axis-aligned box of the target's projected corners clipped to the
            image ``[0, W] x [0, H]``; zeros where not ``visible``.
        visible: (N, T) bool, in the frustum, big enough and unoccluded.
        depth_m: (N, T) float32, metres, depth of the target centre along the
            optical axis (camera z); ``+inf`` where not ``visible``.
        in_frustum: (N, T) bool, rule 1 only (centre depth in range, no corner
            before the near plane, box overlaps the image); for debugging and
            video overlays.
        occluded: (N, T) bool, in the frustum and big enough, but a building
            blocks the line of sight. False wherever the occlusion test was
            not run (``in_frustum`` false or box too small).
    """

    boxes_px: np.ndarray
    visible: np.ndarray
    depth_m: np.ndarray
    in_frustum: np.ndarray
    occluded: np.ndarray


class GroundTruthDetector:
    """Batched analytic detector: which targets each drone camera sees, and where.

    One instance per camera model and static scene (the buildings); targets
    move and are passed to every :meth:`detect` call. The camera config and
    the buildings are read once, here. Scratch buffers are allocated on the
    first call for a given (N, T) and reused (the four most recent shapes are
    kept, so alternating between all drones and a reset subset is cheap);
    derived target data (bounding spheres, world corner offsets) are cached
    and recomputed only when the contents of ``target_size_m`` or
    ``target_yaw_rad`` change. The arrays a call returns are fresh and belong
    to the caller (safe to keep between perception updates). Not thread-safe
    (shared scratch buffers).

    Example::

        detector = GroundTruthDetector.from_world(camera_cfg, world)
        cam_pos_w, rot_wc = camera_poses_w(pos_w, yaw_rotation(yaw_rad), camera_cfg)
        target_pos_w, target_yaw_rad = world.target_poses(t_s)
        det = detector.detect(cam_pos_w, rot_wc, target_pos_w, target_yaw_rad, world.target_size_m)
        det.boxes_px[det.visible]  # (num_detections, 4)

    Cost: ``benchmarks/bench_perception.py``. The matrix products are small;
    run with ``OPENBLAS_NUM_THREADS=1`` where other processes share the cores
    (OpenBLAS threads then slow large N down several-fold).

    Args:
        camera: the camera model (resolution, field of view, near/far planes,
            ``min_box_px``); the mount pose is not used here, the caller gives
            camera poses (see :func:`~flyby.perception.camera.camera_poses_w`).
        building_min_w: (B, 3) building box minimum corners, metres, world ENU.
        building_max_w: (B, 3) building box maximum corners, metres, world ENU.
            B may be 0.

    Raises:
        ConfigError: ``camera`` has out-of-range values.
        ValueError: the building arrays have the wrong shape, differ in B,
            are not finite, or a minimum corner exceeds its maximum.
    """

    def __init__(self, camera: CameraCfg, building_min_w: np.ndarray, building_max_w: np.ndarray) -> None:
        self.camera = check(camera)
        self.intrinsics = PinholeIntrinsics.from_cfg(camera)
        bmin = _as_f64(building_min_w, "building_min_w", (None, 3), _B3)
        bmax = _as_f64(building_max_w, "building_max_w", (bmin.shape[0], 3), _B3)
        if not (np.isfinite(bmin).all() and np.isfinite(bmax).all()):
            raise ValueError(
                "building_min_w / building_max_w: contain NaN or inf; give finite box corners in metres"
            )
        bad = np.flatnonzero((bmin > bmax).any(axis=1))
        if bad.size:
            raise ValueError(
                f"building_min_w: building {int(bad[0])} has min {bmin[bad[0]].tolist()} greater than "
                f"max {bmax[bad[0]].tolist()} on some axis ({bad.size} such buildings); swap them"
            )
        self.building_min_w = bmin
        self.building_max_w = bmax
        # Occlusion-test layouts: (2, 3, B) min and max faces; (2, 1, B) x/y only.
        self._bounds = np.stack([bmin.T, bmax.T])
        self._bmin_xy = self._bounds[0, :2, None, :]
        self._bmax_xy = self._bounds[1, :2, None, :]

        k = self.intrinsics
        self._near = float(camera.near_m)
        self._min_box = float(camera.min_box_px)
        # Per-row pixel scale, offset and upper clip of a box (x1, y1, x2, y2), (4, 1).
        self._f4 = np.array([[k.fx], [k.fy], [k.fx], [k.fy]])
        self._c4 = np.array([[k.cx], [k.cy], [k.cx], [k.cy]])
        self._wh4 = np.array([[k.width], [k.height], [k.width], [k.height]], dtype=np.float64)

        # Columns: unit vectors in the optical frame whose dot product with the
        # centre's camera coordinates gives Q's rows; planes point inwards.
        def unit(v: list[float]) -> np.ndarray:
            a = np.asarray(v, dtype=np.float64)
            return a / np.linalg.norm(a)

        tan_l, tan_r = k.cx / k.fx, (k.width - k.cx) / k.fx
        tan_t, tan_b = k.cy / k.fy, (k.height - k.cy) / k.fy
        self._dirs_c = np.stack(
            [
                [1.0, 0.0, 0.0],  # x_c
                [0.0, 1.0, 0.0],  # y_c
                [0.0, 0.0, 1.0],  # z_c (depth)
                [0.0, 0.0, 1.0],  # near: z - near
                [0.0, 0.0, -1.0],  # far: far - z
                unit([1.0, 0.0, tan_l]),  # left edge u = 0
                unit([-1.0, 0.0, tan_r]),  # right edge u = W
                unit([0.0, 1.0, tan_t]),  # top edge v = 0
                unit([0.0, -1.0, tan_b]),  # bottom edge v = H
            ],
            axis=1,
        )  # (3, 9)
        self._q_offset = np.array([0.0, 0.0, 0.0, -self._near, float(camera.far_m), 0.0, 0.0, 0.0, 0.0])
        # Coefficient of the bounding-sphere radius: side planes keep a sphere
        # that pokes into the frustum; near/far test the centre only.
        self._q_radius = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])

        # Corner coordinates for every (camera, target) pair are computed in one
        # product while they fit in this many float64 values (16 MiB); beyond,
        # only the candidates' corners are (slower per value, bounded memory).
        self.dense_corner_limit = 2**21
        self._scratch: dict[tuple[int, int], _Scratch] = {}
        # The same constants for the compiled path (flyby.perception.gt_kernel.detect_into).
        self.kernel_consts = (
            np.ascontiguousarray(self._dirs_c),
            self._q_offset,
            self._q_radius,
            self._near,
            self._min_box,
            np.array([k.fx, k.fy], dtype=np.float64),
            np.array([k.cx, k.cy], dtype=np.float64),
            np.array([k.width, k.height], dtype=np.float64),
            _SPHERE_SLACK_M,
            _TINY,
            np.ascontiguousarray(bmin),
            np.ascontiguousarray(bmax),
        )

    @classmethod
    def from_world(cls, camera: CameraCfg, world: ISRWorld) -> GroundTruthDetector:
        """A detector for the buildings of ``world``."""
        return cls(camera, world.building_min_w, world.building_max_w)

    @property
    def num_buildings(self) -> int:
        """B, the number of building boxes."""
        return int(self.building_min_w.shape[0])

    # ------------------------------------------------------------------ caches

    def _prepare(self, n: int, t: int, size: np.ndarray, yaw: np.ndarray) -> _Scratch:
        """Scratch for (N, T), reused across calls; refresh its target caches whose inputs changed.

        A few shapes are kept (an env alternates between all its drones and
        the subset it resets), the least recently used is dropped beyond that.
        """
        sc = self._scratch.pop((n, t), None)
        if sc is None:
            sc = _Scratch(n, t, self._q_radius, self._q_offset)
            if len(self._scratch) >= _MAX_SHAPES:
                del self._scratch[next(iter(self._scratch))]
        self._scratch[(n, t)] = sc  # most recently used last
        # Cache keys compare raw bytes: cheaper than an elementwise test.
        size_key = size.tobytes()
        if size_key != sc.size_key:
            sc.size_key = size_key
            sc.yaw_key = None
            half = 0.5 * size
            sc.points[4] = np.sqrt((half * half).sum(axis=1)) + _SPHERE_SLACK_M
            # Half extents times corner signs, (T, 8): local x (along the heading), y, z.
            sc.hx = half[:, 0:1] * _CORNER_SIGNS[0]
            sc.hy = half[:, 1:2] * _CORNER_SIGNS[1]
            sc.corner_off_w[2] = half[:, 2:3] * _CORNER_SIGNS[2]
        yaw_key = yaw.tobytes()
        if yaw_key != sc.yaw_key:
            sc.yaw_key = yaw_key
            c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
            sc.corner_off_w[0] = c * sc.hx - s * sc.hy
            sc.corner_off_w[1] = s * sc.hx + c * sc.hy
        return sc

    # ------------------------------------------------------------------ detect

    def detect(
        self,
        cam_pos_w: np.ndarray,
        rot_wc: np.ndarray,
        target_pos_w: np.ndarray,
        target_yaw_rad: np.ndarray,
        target_size_m: np.ndarray,
    ) -> Detections:
        """Detect T targets from N cameras.

        Args:
            cam_pos_w: (N, 3) camera centres, metres, world ENU.
            rot_wc: (N, 3, 3) camera optical frame (OpenCV: x right, y down,
                z forward) to world rotations, as returned by
                :func:`~flyby.perception.camera.camera_poses_w`.
            target_pos_w: (T, 3) target box centres, metres, world ENU.
            target_yaw_rad: (T,) target headings, radians about world z
                (0 = length along east, counter-clockwise positive).
            target_size_m: (T, 3) box (length along the heading, width,
                height), metres.

        Any real dtype is accepted (computed in float64). A camera or target
        with NaN coordinates is not visible.

        Returns:
            :class:`Detections` with leading shape (N, T); see the module
            docstring for the visibility rules.

        Raises:
            ValueError: an argument has the wrong shape; the message names it,
                the shape received and the shape expected.
        """
        cam = _as_f64(cam_pos_w, "cam_pos_w", (None, 3), _N3)
        n = cam.shape[0]
        rot = _as_f64(rot_wc, "rot_wc", (n, 3, 3), _N33)
        tpos = _as_f64(target_pos_w, "target_pos_w", (None, 3), _T3)
        t = tpos.shape[0]
        yaw = _as_f64(target_yaw_rad, "target_yaw_rad", (t,), _T)
        size = _as_f64(target_size_m, "target_size_m", (t, 3), _T3)

        nt = n * t
        boxes = np.zeros((nt, 4), dtype=np.float32)
        depth = np.empty(nt, dtype=np.float32)
        depth.fill(np.inf)
        flags = np.zeros((3, nt), dtype=bool)
        visible, in_frustum, occluded = flags[0], flags[1], flags[2]
        out = Detections(
            boxes.reshape(n, t, 4),
            visible.reshape(n, t),
            depth.reshape(n, t),
            in_frustum.reshape(n, t),
            occluded.reshape(n, t),
        )
        if nt == 0:
            return out
        if kernel_backend() is KernelBackend.NUMBA:
            from flyby.perception.gt_kernel import detect_into

            detect_into(cam, rot, tpos, yaw, size, self.kernel_consts, out)
            return out
        sc = self._prepare(n, t, size, yaw)

        # Stage 1: centre depth + bounding sphere vs the frustum, every pair.
        idx = self._candidates(sc, cam, rot, tpos)
        if idx.size == 0:
            return out

        # Stage 2: project the candidates' 8 corners; box, near-plane and size tests.
        corners = self._candidate_corners(sc, idx)  # (3, 8, K) camera x, y, z
        z = corners[2]
        front = np.minimum.reduce(z, axis=0) >= self._near
        np.maximum(z, self._near, out=z)  # rows with a corner before the near plane are dropped below
        uv = corners[:2]
        np.divide(uv, z, out=uv)
        ext = np.empty((4, idx.size))  # x1, y1, x2, y2 in pixels
        np.minimum.reduce(uv, axis=1, out=ext[:2])
        np.maximum.reduce(uv, axis=1, out=ext[2:])
        ext *= self._f4
        ext += self._c4
        np.maximum(ext, 0.0, out=ext)  # clip to the image
        np.minimum(ext, self._wh4, out=ext)
        side = np.minimum.reduce(ext[2:] - ext[:2], axis=0)
        framed = front & (side > 0.0)
        in_frustum[idx] = framed  # all False before: same as setting the framed ones
        # With min_box_px > 0 the size test implies side > 0: one test less.
        big = (front if self._min_box > 0.0 else framed) & (side >= self._min_box)
        sized = big.nonzero()[0]
        if sized.size == 0:
            return out

        # Stage 3: occlusion slab test of the sized candidates vs every building.
        # (ndarray methods, not np.take & co.: they skip a Python wrapper on this hot path.)
        hit = idx.take(sized)
        if self.num_buildings:
            ni, ti = np.divmod(hit, t)
            blocked = self._occluded(cam.T.take(ni, axis=1), tpos.T.take(ti, axis=1))
            occluded[hit] = blocked  # all False before
            clear = ~blocked
            sized = sized[clear]
            hit = hit[clear]
        visible[hit] = True
        depth[hit] = sc.q.take(hit + _Q_Z * nt)
        boxes[hit] = ext[:, sized].T
        return out

    def _candidates(self, sc: _Scratch, cam: np.ndarray, rot: np.ndarray, tpos: np.ndarray) -> np.ndarray:
        """Flat (n * T + t) indices of the pairs whose centre depth is in range and sphere meets the frustum.

        Computes Q[k, n, t] = dir_k . (R_wc^T (p_t - c_n)) + offset_k + coef_k * r_t
        for all pairs as one (9N, 6) @ (6, T) product, and fills the corner
        points [x, y, z, -1, 0, 1] for :meth:`_candidate_corners`.
        """
        n = cam.shape[0]
        m = sc.m
        # World direction of each row, R_wc @ dir_c: (N, 3, 9) -> M[k, n, 0:3].
        dirs_w = (rot.reshape(n * 3, 3) @ self._dirs_c).reshape(n, 3, _NUM_Q)
        m[:, :, :3] = dirs_w.transpose(2, 0, 1)
        np.matmul(cam[:, None, :], dirs_w, out=m[:, :, 3].T[:, None, :])
        sc.points[:3] = tpos.T
        np.matmul(m.reshape(_NUM_Q * n, 6), sc.points, out=sc.q)
        q = sc.q.reshape(_NUM_Q, -1)
        np.minimum.reduce(q[_Q_PLANES], axis=0, out=sc.plane_min)
        np.greater_equal(sc.plane_min, 0.0, out=sc.mask)
        idx = sc.mask.nonzero()[0]
        if idx.size:
            np.add(tpos.T[:, :, None], sc.corner_off_w, out=sc.corners[:3])
        return idx

    def _candidate_corners(self, sc: _Scratch, idx: np.ndarray) -> np.ndarray:
        """(3, 8, K) camera x, y, z of the 8 corners of each candidate pair ``idx`` (K,).

        Small problems: one (3N, 6) @ (6, 8T) product for every pair, then a
        gather (fewest numpy calls). Past ``dense_corner_limit`` values, only
        the candidates, as K small products (bounded memory).
        """
        n, t = sc.shape
        m3 = sc.m[:3]  # rows camera x, y, z of every camera
        if 24 * n * t <= self.dense_corner_limit:
            if sc.corners_c is None:
                sc.corners_c = np.empty((3 * n, t * 8))
                # Flat index of (k, n, t, j) in corners_c is k*N*T*8 + (n*T + t)*8 + j.
                sc.gather_base = np.arange(3)[:, None, None] * (n * t * 8) + np.arange(8)[None, :, None]
            np.matmul(m3.reshape(3 * n, 6), sc.corners.reshape(6, -1), out=sc.corners_c)
            return sc.corners_c.take(sc.gather_base + 8 * idx)
        ni, ti = np.divmod(idx, t)
        rows = m3.take(ni, axis=1).transpose(1, 0, 2)  # (K, 3, 6)
        points = sc.corners.take(ti, axis=1).transpose(1, 0, 2)  # (K, 6, 8)
        return np.matmul(rows, points).transpose(1, 2, 0).copy()

    def _occluded(self, origin_w: np.ndarray, end_w: np.ndarray) -> np.ndarray:
        """(K,) bool: the segment origin_w[:, k] -> end_w[:, k] meets a building box.

        ``origin_w``, ``end_w``: (3, K) segment ends, metres, world ENU. Pairs
        whose horizontal bounding boxes do not overlap are culled first; the
        rest get the slab test: the segment parameter range [0, 1] is
        intersected with each axis's [enter, exit] parameters, and a non-empty
        intersection is a hit (touching counts).
        """
        k = origin_w.shape[1]
        lo = np.minimum(origin_w[:2], end_w[:2])[:, :, None]  # (2, K, 1)
        hi = np.maximum(origin_w[:2], end_w[:2])[:, :, None]
        near = lo <= self._bmax_xy  # (2, K, B)
        near &= hi >= self._bmin_xy
        # Flat nonzero + divmod: several times cheaper than a 2-D nonzero at a few thousand pairs.
        seg, bld = np.divmod((near[0] & near[1]).ravel().nonzero()[0], near.shape[2])
        blocked = np.zeros(k, dtype=bool)
        if seg.size == 0:
            return blocked
        inv = end_w - origin_w
        inv += _TINY
        np.reciprocal(inv, out=inv)
        s = self._bounds.take(bld, axis=2)  # (2, 3, P): min and max faces
        s -= origin_w.take(seg, axis=1)
        s *= inv.take(seg, axis=1)
        s_near = np.maximum.reduce(np.minimum(s[0], s[1]), axis=0)
        s_far = np.minimum.reduce(np.maximum(s[0], s[1]), axis=0)
        np.maximum(s_near, 0.0, out=s_near)
        np.minimum(s_far, 1.0, out=s_far)
        blocked[seg[s_near <= s_far]] = True
        return blocked


# Scratch shapes kept per detector (least recently used dropped beyond).
_MAX_SHAPES = 4


class _Scratch:
    """Buffers and per-target caches of :class:`GroundTruthDetector` for one (N, T)."""

    def __init__(self, n: int, t: int, q_radius: np.ndarray, q_offset: np.ndarray) -> None:
        self.shape = (n, t)
        # Q = M @ P: M (9, N, 6) per-camera rows [dir_w (3), dir_w . cam_pos_w,
        # radius coefficient, offset]; P (6, T) target columns [x, y, z, -1, r, 1].
        self.m = np.empty((_NUM_Q, n, 6))
        self.m[:, :, 4] = q_radius[:, None]
        self.m[:, :, 5] = q_offset[:, None]
        self.points = np.empty((6, t))
        self.points[3] = -1.0
        self.points[5] = 1.0
        self.q = np.empty((_NUM_Q * n, t))
        self.plane_min = np.empty(n * t)
        self.mask = np.empty(n * t, dtype=bool)
        # Corner points [x, y, z, -1, 0, 1] per (target, corner), for rows x, y, z of M.
        self.corners = np.empty((6, t, 8))
        self.corners[3] = -1.0
        self.corners[4] = 0.0
        self.corners[5] = 1.0
        self.corner_off_w = np.empty((3, t, 8))  # world corner offsets from the centre
        self.hx = self.hy = np.empty((t, 8))  # half length / width times corner signs
        self.size_key: bytes | None = None
        self.yaw_key: bytes | None = None
        # Dense corner coordinates (3N, 8T) and their gather index, on first use.
        self.corners_c: np.ndarray | None = None
        self.gather_base: np.ndarray | None = None


# Dimension labels for shape errors, and which argument sets each size.
_N3 = ("N", "3")
_N33 = ("N", "3", "3")
_T3 = ("T", "3")
_T = ("T",)
_B3 = ("B", "3")
_SIZE_SOURCE = {"N": "cam_pos_w", "T": "target_pos_w", "B": "building_min_w"}


def _as_f64(a: np.ndarray, name: str, shape: tuple[int | None, ...], dims: tuple[str, ...]) -> np.ndarray:
    """``a`` as a float64 array of ``shape`` (None: any length).

    Raises:
        ValueError: naming ``name``, the shape received and the one expected.
    """
    arr = a if type(a) is np.ndarray and a.dtype == np.float64 else np.asarray(a, dtype=np.float64)
    got = arr.shape
    if len(got) != len(shape) or got[1:] != shape[1:] or (shape[0] is not None and got[0] != shape[0]):
        sized = [(d, s) for d, s in zip(dims, shape) if s is not None and not d.isdigit()]
        expected = ", ".join(f"{d}={s}" if (d, s) in sized else d for d, s in zip(dims, shape))
        if len(dims) == 1:
            expected += ","
        note = f" ({', '.join(f'{d} from {_SIZE_SOURCE[d]}' for d, _ in sized)})" if sized else ""
        raise ValueError(f"{name}: expected shape ({expected}){note}, got {got}")
    return arr
