"""The fixed overview camera over the whole ISR area: intrinsics, pose and projection.

GL-free (no simulator import), so every backend places the same overview camera:
:mod:`flyby.sim.mujoco_cameras` draws it with MuJoCo, the USD stage (:mod:`flyby.sim.usd_stage`)
writes it for Isaac Sim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flyby.geometry import yaw_rotation
from flyby.perception.camera import PinholeIntrinsics, camera_mount_rotation
from flyby.world.world import ISRWorld

__all__ = ["OverviewCamera", "overview_camera_for"]


@dataclass(frozen=True)
class OverviewCamera:
    """The fixed overview camera: pinhole intrinsics and pose.

    Attributes:
        intrinsics: pixel intrinsics of the overview image.
        pos_w: (3,) float64 camera centre, metres, world ENU.
        rot_wc: (3, 3) float64 optical frame (x right, y down, z forward) to world.
    """

    intrinsics: PinholeIntrinsics
    pos_w: np.ndarray
    rot_wc: np.ndarray

    def project(self, points_w: np.ndarray) -> np.ndarray:
        """(K, 3) world points -> (K, 2) float64 pixels (u, v); NaN where behind the camera.

        Raises:
            ValueError: ``points_w`` is not (K, 3).
        """
        pts = np.asarray(points_w, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise ValueError(f"points_w must be (K, 3); got {pts.shape}")
        p_c = (pts - self.pos_w) @ self.rot_wc
        k = self.intrinsics
        z = p_c[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = np.stack([k.fx * p_c[:, 0] / z + k.cx, k.fy * p_c[:, 1] / z + k.cy], axis=1)
        uv[z <= 1e-9] = np.nan
        return uv


def overview_camera_for(
    world: ISRWorld, width: int, height: int, pitch_deg: float = 60.0, fovy_deg: float = 45.0
) -> OverviewCamera:
    """Place a camera south of the area, looking north, pitched down ``pitch_deg``.

    The area centre is on the optical axis (so it lands on the image centre);
    the distance is the smallest that keeps every area corner, at ground level
    and at the tallest building's height, inside the image with a 3 % margin.
    """
    intr = PinholeIntrinsics.from_fovy(width, height, fovy_deg)
    rot_wc = yaw_rotation(np.array([math.pi / 2]))[0] @ camera_mount_rotation(pitch_deg)
    axis_w = rot_wc[:, 2]
    hx, hy = world.half_extent
    top = float(world.building_max_w[:, 2].max()) if world.num_buildings else 0.0
    corners = np.array([[sx * hx, sy * hy, z] for sx in (-1, 1) for sy in (-1, 1) for z in (0.0, top)])
    margin = 0.03

    def fits(dist: float) -> bool:
        cam = OverviewCamera(intr, -dist * axis_w, rot_wc)
        uv = cam.project(corners)
        if not np.isfinite(uv).all():
            return False
        lo = np.array([margin * width, margin * height])
        hi = np.array([(1 - margin) * width, (1 - margin) * height])
        return bool(((uv >= lo) & (uv <= hi)).all())

    lo, hi = 1.0, 1.0
    while not fits(hi):
        hi *= 2.0
        if hi > 1e6:
            raise ValueError(f"cannot fit a {world.size_m} m area into the overview camera")
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return OverviewCamera(intr, -hi * axis_w, rot_wc)
