"""``perception.mode: yolo``: the ISR task with detections from YOLO on rendered frames.

:class:`YoloISRTask` is an :class:`~flyby.envs.isr_task.ISRTask` whose perception step
renders every drone camera at the render preset, runs :class:`~flyby.perception.yolo.YoloDetector`
on the frames and builds the task's detections from YOLO's boxes. Everything else
(motion, rewards, terminations, coverage, the observation layout) is the task's own.

On each perception step, for drone ``i``:

1. The render camera's ground truth (:class:`~flyby.perception.gt.GroundTruthDetector`
   at the render camera, same pose as the perception camera) gives the visible targets'
   boxes in render pixels.
2. YOLO's boxes are matched to them (:func:`~flyby.perception.matching.match_boxes`:
   same class, IoU >= ``perception.match_iou``, greedy by confidence). A matched box is
   a **true positive** for its target; the rest are **false positives**.
3. YOLO boxes are mapped from render pixels into the perception camera's pixels (both
   are pinhole cameras at the same pose and mount; only the resolution, hence the
   horizontal field of view, may differ: ``u_p = cx_p + (u_r - cx_r) fx_p / fx_r``),
   clipped to the perception image and kept when their smaller side is at least the
   perception camera's ``min_box_px`` (the ground-truth detector's size rule). A box
   outside the perception camera's field of view is dropped from the observation.
4. Target ``t`` is visible (and, the first time, *seen*: a found target, rewarded as
   ``new_targets``) when a kept true positive matched it; its observed box is YOLO's
   (mapped) box, not the ground truth. Kept false positives fill the observation's
   detection slots too (never marked new, class as YOLO says), ranked with the true
   positives by the task's rule (new first, then by area), but never count as found.

``task.detections.in_frustum`` / ``occluded`` carry the render camera's ground truth.
Between perception steps the last detections are reused, as in ground-truth mode.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from flyby.config.envs import ISREnvCfg
from flyby.envs.isr_task import ISRTask
from flyby.geometry import yaw_quat_wxyz
from flyby.mdp import observations as obs_mdp
from flyby.perception.camera import CameraCfg, PinholeIntrinsics, camera_poses_w
from flyby.perception.gt import Detections, GroundTruthDetector
from flyby.perception.matching import match_boxes
from flyby.perception.yolo import PerceptionCfg, YoloBoxes, YoloDetector

log = logging.getLogger(__name__)

__all__ = ["YoloISRTask", "render_to_perception_px"]


def render_to_perception_px(
    boxes_px: np.ndarray, render: PinholeIntrinsics, perception: PinholeIntrinsics, min_box_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """Map boxes from one pinhole camera's pixels into another's at the same pose.

    Args:
        boxes_px: (M, 4) ``x1, y1, x2, y2`` in the render camera's pixels.
        render: the render camera's intrinsics.
        perception: the perception camera's intrinsics.
        min_box_px: least smaller side of a kept box, perception pixels.

    Returns:
        boxes: (M, 4) float32 in perception pixels, clipped to its image.
        keep: (M,) bool, inside the perception image with a smaller side >= ``min_box_px``
            (and > 0).
    """
    b = np.asarray(boxes_px, dtype=np.float64).reshape(-1, 4)
    scale = np.array([perception.fx / render.fx, perception.fy / render.fy] * 2)
    c_r = np.array([render.cx, render.cy] * 2)
    c_p = np.array([perception.cx, perception.cy] * 2)
    mapped = (b - c_r) * scale + c_p
    size = np.array([perception.width, perception.height] * 2, dtype=np.float64)
    np.clip(mapped, 0.0, size, out=mapped)
    side = np.minimum(mapped[:, 2] - mapped[:, 0], mapped[:, 3] - mapped[:, 1])
    keep = (side > 0.0) & (side >= min_box_px)
    return mapped.astype(np.float32), keep


class YoloISRTask(ISRTask):
    """The ISR task with YOLO detections on rendered frames (module docstring).

    Args:
        cfg: task configuration (its ``camera`` is the perception camera).
        num_envs: drones N.
        world: the shared world.
        motion: the motion model; its backend must be ``backend`` when that backend is a
            physics backend (the drones are rendered where the physics put them).
        backend: the simulator backend the frames are rendered by; it holds the N drones.
        render_camera: the backend's camera (the perception camera's mount at the render
            preset); ground truth for matching is computed for it.
        perception: the YOLO settings (``weights``, ``conf``, ``iou``, ``imgsz``,
            ``match_iou``, ``device``).
        detector: a ready :class:`YoloDetector` (default: built from ``perception``).
        kinematic: the backend is kinematic (no physics): drone poses are copied into it
            before each render.

    Raises:
        WeightsError: the YOLO weights are missing or unloadable.
        DependencyNotInstalled: ultralytics is missing (``pip install "flyby[yolo]"``).
        ValueError: the backend's drone count differs from ``num_envs``.
    """

    def __init__(
        self,
        cfg: ISREnvCfg,
        num_envs: int,
        world=None,
        motion=None,
        *,
        backend,
        render_camera: CameraCfg,
        perception: PerceptionCfg,
        detector: YoloDetector | None = None,
        kinematic: bool = False,
    ) -> None:
        super().__init__(cfg, num_envs, world=world, motion=motion)
        if backend.num_drones != self.num_envs:
            raise ValueError(f"backend holds {backend.num_drones} drones, the task {self.num_envs}")
        self.backend = backend
        self.kinematic = bool(kinematic)
        self.perception = perception
        self.render_camera = render_camera
        self.render_detector = GroundTruthDetector.from_world(render_camera, self.world)
        self._k_render = PinholeIntrinsics.from_cfg(render_camera)
        self._k_percept = PinholeIntrinsics.from_cfg(cfg.camera)
        self.yolo = detector or YoloDetector(
            perception.weights or None, conf=perception.conf, iou=perception.iou,
            imgsz=perception.imgsz, device=perception.device,
        )  # fmt: skip
        n, k = self.num_envs, self.layout.top_k
        # False-positive slots per drone, perception pixels: boxes (N, K, 4), class, valid.
        self.fp_boxes = np.zeros((n, k, 4), dtype=np.float32)
        self.fp_cls = np.zeros((n, k), dtype=np.int64)
        self.fp_valid = np.zeros((n, k), dtype=bool)
        # Last perception step per drone, render pixels (what the video and detection P/R use).
        self.yolo_boxes: list[YoloBoxes] = [YoloBoxes.empty() for _ in range(n)]
        self.gt_boxes: list[np.ndarray] = [np.zeros((0, 4), np.float32) for _ in range(n)]
        self.gt_cls: list[np.ndarray] = [np.zeros(0, np.int64) for _ in range(n)]
        self.match_counts = np.zeros((n, 3), dtype=np.int64)  # tp, fp, fn of the last perception step
        self.frames: np.ndarray | None = None  # (N, H, W, 3) uint8 of the last perception step
        self.perception_step = np.full(n, -1, dtype=np.int64)  # global_step of each drone's last perception

    # ------------------------------------------------------------------ perception

    def _update_perception(self, ids: np.ndarray | None = None) -> None:
        if ids is None and self.global_step % self.cfg.perception_interval != 0:
            self.newly_seen[:] = False
            self.new_cells[:] = 0
            return  # reuse the last detections between perception steps
        rows = np.arange(self.num_envs) if ids is None else np.asarray(ids, dtype=np.intp)
        self.target_pos_w, self.target_yaw_rad = self.world.target_poses(self.world_time_s)
        dyn = self.dynamics
        cam_pos, rot_wc = camera_poses_w(dyn.pos_w[rows], dyn.rot_wb[rows], self.cfg.camera)
        r_pos, r_rot = camera_poses_w(dyn.pos_w[rows], dyn.rot_wb[rows], self.render_camera)
        if self.kinematic:
            self.backend.set_drone_poses(dyn.pos_w[rows], yaw_quat_wxyz(dyn.yaw_rad[rows]), rows)
        self.backend.set_target_poses(self.target_pos_w, self.target_yaw_rad)
        frames = self.backend.render_cameras(rows)
        gt = self.render_detector.detect(
            r_pos, r_rot, self.target_pos_w, self.target_yaw_rad, self.world.target_size_m
        )
        preds = self.yolo.detect(frames)
        if self.frames is None or self.frames.shape[1:] != frames.shape[1:]:
            self.frames = np.zeros((self.num_envs, *frames.shape[1:]), dtype=np.uint8)
        self.frames[rows] = frames

        kr, t_num = rows.size, self.world.num_targets
        boxes = np.zeros((kr, t_num, 4), dtype=np.float32)
        visible = np.zeros((kr, t_num), dtype=bool)
        depth = np.full((kr, t_num), np.inf, dtype=np.float32)
        top_k = self.layout.top_k
        for j, i in enumerate(rows):
            pred = preds[j]
            vis_t = np.flatnonzero(gt.visible[j])
            gt_b = gt.boxes_px[j, vis_t]
            gt_c = self.world.target_class[vis_t].astype(np.int64)
            match = match_boxes(pred.boxes_px, pred.cls, gt_b, gt_c, self.perception.match_iou, pred.conf)
            mapped, keep = render_to_perception_px(
                pred.boxes_px, self._k_render, self._k_percept, self.cfg.camera.min_box_px
            )
            matched = match.pred_to_gt >= 0
            tp = np.flatnonzero(matched & keep)
            t_ids = vis_t[match.pred_to_gt[tp]]
            visible[j, t_ids] = True
            boxes[j, t_ids] = mapped[tp]
            depth[j, t_ids] = gt.depth_m[j, t_ids]
            fp = np.flatnonzero(~matched & keep)[:top_k]  # YOLO's order: highest confidence first
            self.fp_valid[i] = False
            self.fp_valid[i, : fp.size] = True
            self.fp_boxes[i] = 0.0
            self.fp_boxes[i, : fp.size] = mapped[fp]
            self.fp_cls[i] = 0
            self.fp_cls[i, : fp.size] = pred.cls[fp]
            self.yolo_boxes[i] = pred
            self.gt_boxes[i] = gt_b.astype(np.float32)
            self.gt_cls[i] = gt_c
            self.match_counts[i] = (match.tp, match.fp, match.fn)
        self.perception_step[rows] = self.global_step
        det = Detections(boxes, visible, depth, gt.in_frustum.copy(), gt.occluded.copy())
        self._record_detections(None if ids is None else rows, det, cam_pos, rot_wc)

    def _get_observations(self) -> np.ndarray:
        obs = super()._get_observations()  # true positives, encoded by the task's own rule
        if not self.fp_valid.any():
            return obs
        cam = self.cfg.camera
        d = self.detections
        for i in np.flatnonzero(self.fp_valid.any(axis=1)):
            visible = np.concatenate([d.visible[i], self.fp_valid[i]])[None]
            boxes = np.concatenate([d.boxes_px[i], self.fp_boxes[i]])[None]
            new = np.concatenate([self.newly_seen[i], np.zeros(self.layout.top_k, dtype=bool)])[None]
            cls = np.concatenate([self.world.target_class.astype(np.int64), self.fp_cls[i]])
            idx, valid = obs_mdp.select_top_k(visible, boxes, new, self.layout.top_k)
            enc = obs_mdp.encode_detections(idx, valid, boxes, new, cls, cam.width, cam.height)
            obs[i, self.layout.detections] = np.clip(enc[0], -1.0, 1.0)
        return obs

    # ------------------------------------------------------------------ for the env

    def perception_info(self, i: int = 0) -> dict[str, Any]:
        """Drone ``i``'s last perception step, for an env's ``info``.

        Returns:
            ``yolo_boxes`` (:class:`YoloBoxes`, render pixels), ``gt_boxes`` (K, 4) float32
            render pixels, ``gt_cls`` (K,) int64, ``detection_counts`` ``{"tp", "fp", "fn"}``
            at ``match_iou`` (over the whole render frame), and ``perception_fresh``: True
            when that perception step is this step (False on reused steps, whose boxes must
            not be counted twice).
        """
        tp, fp, fn = (int(v) for v in self.match_counts[i])
        return {
            "yolo_boxes": self.yolo_boxes[i],
            "gt_boxes": self.gt_boxes[i],
            "gt_cls": self.gt_cls[i],
            "detection_counts": {"tp": tp, "fp": fp, "fn": fn},
            "perception_fresh": bool(self.perception_step[i] == self.global_step),
        }

    def fresh_frame(self, i: int = 0) -> np.ndarray | None:
        """A copy of drone ``i``'s frame (H, W, 3) uint8 if this step's perception rendered it, else None."""
        if self.frames is None or self.perception_step[i] != self.global_step:
            return None
        return self.frames[i].copy()  # the buffer is overwritten by the next perception step
