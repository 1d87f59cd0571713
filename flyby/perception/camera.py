"""Pinhole camera model and the frame conventions every flyby camera shares.

Frames: world ``w`` ENU and drone body ``b`` FLU, rotation matrices ``R_ab`` and wxyz
quaternions as stated in :mod:`flyby.geometry`; the camera adds:

- Camera optical frame ``c`` (OpenCV): x right, y down, z forward along the
  optical axis. Pixel ``(u, v)`` has ``u`` rightwards from the left image edge
  and ``v`` downwards from the top edge; ``u = fx * x_c / z_c + cx``.
- The camera is rigidly mounted on the body, pitched *down* by
  ``pitch_deg`` (0 = looking along body x, 90 = nadir).
- MuJoCo cameras look along their local -z with +y up; a MuJoCo camera with
  world rotation ``R_wc @ diag(1, -1, -1)`` sees exactly what this model
  projects (see :func:`mujoco_camera_xmat`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from flyby.config import cfg_field
from flyby.enums import ResolutionPreset
from flyby.geometry import rotation_to_quat_wxyz


@dataclass(kw_only=True)
class CameraCfg:
    """A drone-mounted pinhole camera."""

    preset: ResolutionPreset = (
        ResolutionPreset.TRAINING
    )  # resolution preset (training 128x128, evaluation 320x240, full 640x480, multi 80x80)
    fovy_deg: float = cfg_field(70.0, gt=1.0, lt=179.0)  # deg, vertical field of view (MuJoCo's fovy)
    pitch_deg: float = cfg_field(
        50.0, ge=0.0, le=90.0
    )  # deg, downward pitch of the optical axis below body x
    offset_b: tuple[float, float, float] = (0.12, 0.0, -0.06)  # m, camera position in the body frame (FLU)
    near_m: float = cfg_field(0.2, gt=0.0)  # m, nearest visible depth
    far_m: float = cfg_field(150.0, gt=0.0)  # m, farthest visible depth
    min_box_px: float = cfg_field(2.0, ge=0.0)  # px, smaller side of a box below this is not a detection

    def validate(self) -> list[str]:
        if self.far_m <= self.near_m:
            return [f"far_m: {self.far_m} must be greater than near_m ({self.near_m})"]
        return []

    @property
    def width(self) -> int:
        """Image width in pixels, from the preset."""
        return self.preset.size[0]

    @property
    def height(self) -> int:
        """Image height in pixels, from the preset."""
        return self.preset.size[1]


@dataclass(frozen=True)
class PinholeIntrinsics:
    """Pinhole intrinsics with square pixels and a centred principal point.

    ``fy = (height / 2) / tan(fovy / 2)`` (the MuJoCo camera model), ``fx = fy``,
    ``cx = width / 2``, ``cy = height / 2``; all in pixels.
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_fovy(cls, width: int, height: int, fovy_deg: float) -> PinholeIntrinsics:
        f = 0.5 * height / math.tan(math.radians(fovy_deg) / 2.0)
        return cls(width=width, height=height, fx=f, fy=f, cx=width / 2.0, cy=height / 2.0)

    @classmethod
    def from_cfg(cls, cfg: CameraCfg) -> PinholeIntrinsics:
        return cls.from_fovy(cfg.width, cfg.height, cfg.fovy_deg)


def camera_mount_rotation(pitch_deg: float) -> np.ndarray:
    """R_bc: (3, 3) float64, the camera optical frame in the body frame (FLU).

    Optical axis (camera z) = body x pitched down by ``pitch_deg``; camera x
    (image right) = body -y; camera y (image down) = z_c x x_c. The result is
    cached and read-only.
    """
    return _mount_rotation(float(pitch_deg))


@lru_cache(maxsize=32)
def _mount_rotation(pitch_deg: float) -> np.ndarray:
    p = math.radians(pitch_deg)
    z_c = np.array([math.cos(p), 0.0, -math.sin(p)])
    x_c = np.array([0.0, -1.0, 0.0])
    y_c = np.cross(z_c, x_c)
    rot = np.stack([x_c, y_c, z_c], axis=1)
    rot.flags.writeable = False
    return rot


def camera_poses_w(pos_w: np.ndarray, rot_wb: np.ndarray, cfg: CameraCfg) -> tuple[np.ndarray, np.ndarray]:
    """World pose of each drone's camera.

    Args:
        pos_w: (N, 3) drone positions, metres, world ENU.
        rot_wb: (N, 3, 3) body-to-world rotations (use :func:`flyby.geometry.yaw_rotation`
            for the level-flight direct model).
        cfg: the camera mount.

    Returns:
        cam_pos_w: (N, 3) float64, metres, world ENU.
        rot_wc: (N, 3, 3) float64, camera optical frame to world.
    """
    rot_bc = camera_mount_rotation(cfg.pitch_deg)
    cam_pos_w = pos_w + rot_wb @ np.asarray(cfg.offset_b, dtype=np.float64)
    rot_wc = np.matmul(rot_wb, rot_bc)
    return cam_pos_w, rot_wc


# MuJoCo camera frame = optical frame with y and z flipped.
_CV_TO_MJ = np.diag([1.0, -1.0, -1.0])


def mujoco_camera_xmat(rot_wc: np.ndarray) -> np.ndarray:
    """MuJoCo camera orientation (N, 3, 3) from optical-frame rotations ``rot_wc`` (N, 3, 3)."""
    return rot_wc @ _CV_TO_MJ


def mujoco_mount_quat(pitch_deg: float) -> np.ndarray:
    """wxyz quaternion of a MuJoCo ``<camera>`` inside the drone body, matching
    :func:`camera_mount_rotation`."""
    return rotation_to_quat_wxyz(camera_mount_rotation(pitch_deg) @ _CV_TO_MJ)
