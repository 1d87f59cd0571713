"""The pipeline's validation video: one evaluation episode of a policy, drawn and encoded as H.264.

:func:`record_validation_video` flies one ``flyby/PX4ISR-v0`` episode (the flight stack of the
evaluation, render every control step at the ``evaluation`` preset, 320x240) and writes every
rendered frame, shown at 2x (640x480), with:

- a header: policy label, flight stack, simulator backend, seed, UTC time, perception mode (and
  ``"YOLO not available: <why>"`` when YOLO was asked for and could not run);
- a sidebar: sim time, return so far, targets found / total, coverage, step;
- boxes: the ground-truth boxes of every visible target at the render camera (dashed, per class
  colour; from :class:`flyby.perception.gt.GroundTruthDetector` built for the render camera, as
  the Phase 1 gate draws them) and, in ``yolo`` perception mode, YOLO's boxes (solid, with class
  and confidence), with a legend of the two styles;
- a top-down minimap inset (top-right): buildings, targets (found ones filled), the track so far
  and the drone.

Detection figures: in ``yolo`` mode the env matches YOLO's boxes to the ground truth on every
fresh perception step (``info["detection_counts"]``, IoU >= ``perception.match_iou``), summed here
into precision and recall (:class:`flyby.perception.matching.DetectionTally`). In
``ground_truth`` mode the detections are the ground truth, so precision and recall would be 1 by
construction; :attr:`VideoResult.detection` is then None with a note saying why.

The MP4 is H.264 yuv420p (PyAV's libx264 through :class:`videokit.encode.H264Writer`, the
encoder the pytest video plugin uses too) at the env's control rate (25 fps: real time). It is
written to a temporary file beside ``out_path`` and moved onto it (``os.replace``) only when the
episode and the encoder finished: an exception mid-episode closes the encoder, removes the
temporary file and leaves ``out_path`` as it was.

Example::

    from flyby.training.policy_io import load_policy
    from flyby.training.validation_video import record_validation_video

    video = record_validation_video(load_policy("output/runs/demo/training/model.zip"), 1000,
                                    "output/runs/demo/video/validation.mp4")
    print(video.frames, video.ret, video.targets_found, video.flight_stack_label)
"""

from __future__ import annotations

import datetime
import logging
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from flyby.errors import DependencyNotInstalled, FlybyError, OutputError
from flyby.perception.draw import CLASS_RGB, YOLO_RGB

__all__ = ["DISPLAY_SCALE", "VideoResult", "record_validation_video"]

logger = logging.getLogger(__name__)

DISPLAY_SCALE = 2  # rendered frames are shown at 2x (320x240 -> 640x480) so the overlay text stays legible
MINIMAP_PX = 150  # side of the minimap inset, pixels of the displayed frame


@dataclass
class VideoResult:
    """What :func:`record_validation_video` wrote.

    Attributes:
        path: the MP4 (H.264 yuv420p).
        frames: frames written (one per control step).
        fps: frames per second of the video (the env's control rate).
        size: (width, height) of the video, pixels.
        seed: the episode's reset seed.
        label: the policy's name in the header.
        ret: the episode's return.
        steps: control steps of the episode.
        targets_found: distinct targets seen in the episode; num_targets: targets in the world.
        coverage: covered fraction of the area, [0, 1].
        crashed, geofence: how the episode ended (both False: the time limit).
        flight_stack, flight_stack_label: what flew (``"px4"`` / ``"cascade"``, and in words).
        backend: the simulator backend's description.
        perception_mode: ``"yolo"`` when YOLO's detections ran, else ``"ground_truth"``.
        detection: ``{"mode", "precision", "recall", "tp", "fp", "fn", "frames", "iou_threshold"}``
            in yolo mode, else None.
        detection_note: why ``detection`` is None (ground-truth mode, or YOLO not available).
    """

    path: Path
    frames: int
    fps: float
    size: tuple[int, int]
    seed: int
    label: str
    ret: float
    steps: int
    targets_found: int
    num_targets: int
    coverage: float
    crashed: bool
    geofence: bool
    flight_stack: str
    flight_stack_label: str
    backend: str
    perception_mode: str
    detection: dict[str, Any] | None
    detection_note: str | None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values (``path`` as a string)."""
        out = dict(self.__dict__)
        out["path"] = str(self.path)
        out["size"] = list(self.size)
        return out


def record_validation_video(
    policy,
    seed: int,
    out_path: str | os.PathLike,
    *,
    flight_stack: str = "auto",
    env_cfg=None,
    perception_mode: str | None = None,
    progress: bool = True,
    label: str | None = None,
    episode_length_s: float | None = None,
) -> VideoResult:
    """Fly one episode of ``policy`` in ``PX4ISR-v0`` and write it as an annotated H.264 MP4.

    Args:
        policy: SB3 model, :class:`~flyby.training.policy_io.LoadedPolicy` or callable
            ``obs -> action``; ``reset(seed)`` is called first when it has one.
        seed: the episode's reset seed (the evaluation's first seed in the pipeline).
        out_path: the MP4 to write (its folder is created).
        flight_stack: ``"auto"`` (PX4 SITL when found, else the cascade), ``"px4"``, ``"cascade"``.
        env_cfg: ``PX4EnvCfg`` (default: ``px4_env`` of ``evaluation_config.yaml``); rendering is
            turned on for every control step.
        perception_mode: ``"ground_truth"`` or ``"yolo"`` (None: the config's
            ``perception.mode``). When YOLO cannot run (no ultralytics, no weights, an env
            without the yolo mode) the episode is flown in ground-truth mode and the header says
            ``"YOLO not available: <why>"``; the detection figures are then None.
        progress: tqdm bar over the episode's steps.
        label: the policy's name in the header (default: its ``label`` or class name).
        episode_length_s: s, overrides the config's episode length.

    Returns:
        :class:`VideoResult`.

    Raises:
        ValueError: an unknown perception mode.
        PX4Unavailable: ``"px4"`` and PX4 is not found.
        OutputError: the output folder cannot be written.
        DependencyNotInstalled: PyAV / OpenCV missing (the ``video`` extra).
        VideoEncodeError: the encoder failed (names the file). In every failure ``out_path`` is left
            as it was and no temporary file remains.
    """
    from flyby.training.evaluate import eval_env_cfg
    from videokit.encode import H264Writer, require_encoder
    from videokit.overlay import Box, PanelLayout, compose_panels

    try:
        require_encoder()  # PyAV and OpenCV are imported on first use: fail here, before the episode
    except ImportError as exc:
        raise DependencyNotInstalled("the video encoder (PyAV, OpenCV)", "video") from exc
    cfg = eval_env_cfg(episode_length_s, env_cfg)
    cfg = replace(cfg, render_interval=1)
    mode, yolo_note = _perception(cfg, perception_mode)
    out_path = Path(out_path)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create the folder of {out_path}: {exc.strerror or exc}; choose a writable folder"
        ) from exc
    name = label or getattr(policy, "label", None) or type(policy).__name__
    env, mode, yolo_note = _make_env(cfg, flight_stack, mode, yolo_note)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp.mp4", dir=out_path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    writer = H264Writer(tmp, fps=float(env.metadata["render_fps"]))
    bar = None
    try:
        from flyby.perception.gt import GroundTruthDetector
        from flyby.training.evaluate import run_episode

        task = env.unwrapped.task
        world = task.world
        draw_detector = GroundTruthDetector.from_world(env.backend.camera, world)
        minimap = _Minimap(world, MINIMAP_PX)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        backend = env.backend.description
        perception = "perception: YOLO" if mode == "yolo" else "perception: ground truth"
        header = [
            f"{name}  |  seed {int(seed)}  |  {env.flight_stack_label}",
            f"{yolo_note or perception}  |  {stamp}  |  {backend}",
        ]
        tally = _tally(cfg) if mode == "yolo" else None
        layout = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=int(cfg.max_episode_length),
                desc=f"validation video seed {seed}",
                unit="step",
                mininterval=1.0,
            )

        def on_step(step: int, ret: float, info: dict) -> None:
            nonlocal layout
            frame = info.get("camera")
            if frame is None:  # render_interval is 1: every step renders
                return
            boxes = _gt_boxes(task, draw_detector, Box)
            if mode == "yolo":
                boxes += _yolo_boxes(info, Box)
                if tally is not None and info.get("perception_fresh") and "detection_counts" in info:
                    c = info["detection_counts"]
                    tally.add_counts(int(c["tp"]), int(c["fp"]), int(c["fn"]))
            big = _upscale(frame)
            minimap.draw(big, task)
            if layout is None:
                layout = PanelLayout.for_frame(big.shape[0], big.shape[1], header_lines=2, footer_lines=1)
            found = int(task.seen[0].sum())
            metrics = {
                "sim t": f"{info.get('sim_time_s', step * cfg.step_dt):.2f} s",
                "return": f"{ret:+.2f}",
                "targets": f"{found} / {world.num_targets}",
                "coverage": f"{100 * float(task.covered[0].mean()):.1f} %",
                "step": f"{step} / {cfg.max_episode_length}",
            }
            footer = [
                "boxes: dashed = ground truth at the render camera"
                + ("; solid = YOLO" if mode == "yolo" else "")
                + "; minimap: track, targets (filled = found)"
            ]
            writer.write(
                compose_panels(big, layout, header=header, footer=footer, metrics=metrics, boxes=boxes)
            )
            if bar is not None:
                bar.update(1)

        stats = run_episode(env, policy, int(seed), on_step=on_step)
        writer.close()
        if writer.frames_written == 0:
            raise FlybyError(f"validation video {out_path}: the episode rendered no frame; check render_mode")
        os.replace(tmp, out_path)
    except BaseException:
        try:
            writer.close()
        except Exception:  # already reporting the original error
            logger.debug("closing the encoder of %s after an error failed too", tmp, exc_info=True)
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if bar is not None:
            bar.close()
        stack, stack_label = env.flight_stack.value, env.flight_stack_label
        env.close()
    detection = None
    note = yolo_note
    if tally is not None:
        detection = {"mode": "yolo", **tally.as_dict()}
    elif mode == "ground_truth" and note is None:
        note = (
            "ground_truth perception: detections are the analytic ground truth (precision = recall = 1 by "
            "construction), not reported"
        )
    result = VideoResult(
        path=out_path,
        frames=writer.frames_written,
        fps=writer.fps,
        size=tuple(writer.size or (0, 0)),
        seed=int(seed),
        label=name,
        ret=float(stats.ret),
        steps=int(stats.steps),
        targets_found=int(stats.targets_seen),
        num_targets=int(world.num_targets),
        coverage=float(stats.coverage),
        crashed=bool(stats.crashed),
        geofence=bool(stats.geofence),
        flight_stack=stack,
        flight_stack_label=stack_label,
        backend=backend,
        perception_mode=mode,
        detection=detection,
        detection_note=note,
    )
    logger.info(
        "wrote %s: %d frames, return %+.2f, %d/%d targets, %s",
        out_path,
        result.frames,
        result.ret,
        result.targets_found,
        result.num_targets,
        stack_label,
    )
    return result


def _perception(cfg, requested: str | None) -> tuple[str, str | None]:
    """The perception mode asked for (``"ground_truth"`` / ``"yolo"``) and, if YOLO cannot be asked
    for, why (the mode is then ``"ground_truth"``; otherwise the reason is ``None``).
    """
    current = getattr(getattr(cfg, "perception", None), "mode", "ground_truth")
    mode = (
        str(getattr(current, "value", current))
        if requested is None
        else str(getattr(requested, "value", requested))
    )
    if mode not in ("ground_truth", "yolo"):
        raise ValueError(f"perception_mode must be 'ground_truth' or 'yolo', got {requested!r}")
    if mode == "yolo" and not hasattr(cfg, "perception"):
        return "ground_truth", "YOLO not available: this PX4ISR-v0 has no perception.mode setting"
    return mode, None


def _make_env(cfg, flight_stack: str, mode: str, note: str | None):
    """``PX4ISR-v0`` with rendering on; a YOLO env that cannot be built falls back to ground truth."""
    from flyby.envs.px4_env import PX4ISREnv

    if hasattr(cfg, "perception"):
        from flyby.enums import PerceptionMode

        cfg = replace(cfg, perception=replace(cfg.perception, mode=PerceptionMode(mode)))
    if mode == "yolo":
        try:
            return PX4ISREnv(cfg, flight_stack=flight_stack, render_mode="rgb_array"), "yolo", None
        except (ImportError, FlybyError, OSError, RuntimeError) as exc:
            from flyby.errors import PX4Unavailable

            if isinstance(exc, PX4Unavailable):
                raise
            note = f"YOLO not available: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            logger.warning("validation video: %s; flying with ground-truth perception", note)
            from flyby.enums import PerceptionMode

            cfg = replace(cfg, perception=replace(cfg.perception, mode=PerceptionMode.GROUND_TRUTH))
            mode = "ground_truth"
    return PX4ISREnv(cfg, flight_stack=flight_stack, render_mode="rgb_array"), mode, note


def _tally(cfg):
    from flyby.perception.matching import DetectionTally

    return DetectionTally(iou_threshold=float(getattr(cfg.perception, "match_iou", 0.5)))


def _upscale(frame: np.ndarray) -> np.ndarray:
    import cv2

    h, w = frame.shape[:2]
    return cv2.resize(frame, (w * DISPLAY_SCALE, h * DISPLAY_SCALE), interpolation=cv2.INTER_LINEAR)


def _gt_boxes(task, detector, box_cls) -> list:
    """Dashed boxes of every target visible at the render camera now, in displayed-frame pixels."""
    cam_pos, rot_wc = task.camera_poses()
    world = task.world
    det = detector.detect(cam_pos, rot_wc, task.target_pos_w, task.target_yaw_rad, world.target_size_m)
    out = []
    for t in np.flatnonzero(det.visible[0]):
        cls = int(world.target_class[t])
        x1, y1, x2, y2 = (float(v) * DISPLAY_SCALE for v in det.boxes_px[0, t])
        out.append(
            box_cls(
                x1,
                y1,
                x2,
                y2,
                label="vehicle" if cls == 0 else "person",
                color=CLASS_RGB.get(cls, (0, 255, 0)),
                style="dashed",
            )
        )
    return out


def _yolo_boxes(info: dict, box_cls) -> list:
    """Solid boxes of YOLO's detections in ``info["yolo_boxes"]`` (render pixels), displayed-frame pixels."""
    yolo = info.get("yolo_boxes")
    if yolo is None:
        return []
    try:
        from flyby.perception.yolo import CLASS_NAMES
    except ImportError:  # pragma: no cover - yolo mode imported it already
        CLASS_NAMES = {}
    out = []
    for (x1, y1, x2, y2), c, p in zip(
        np.asarray(yolo.boxes_px, dtype=float).reshape(-1, 4), yolo.cls, yolo.conf
    ):
        c = int(c)
        out.append(
            box_cls(
                x1 * DISPLAY_SCALE,
                y1 * DISPLAY_SCALE,
                x2 * DISPLAY_SCALE,
                y2 * DISPLAY_SCALE,
                label=str(CLASS_NAMES.get(c, c)),
                color=YOLO_RGB.get(c, (255, 255, 255)),
                confidence=float(np.clip(p, 0.0, 1.0)),
                style="solid",
            )
        )
    return out


class _Minimap:
    """A top-down inset: buildings (grey), targets (class colour; found ones filled), track and drone."""

    def __init__(self, world, size_px: int) -> None:
        import cv2

        self.world = world
        self.size = int(size_px)
        half = np.asarray(world.half_extent, dtype=float)
        self._scale = (self.size - 1) / (2 * half.max())
        base = np.full((self.size, self.size, 3), 30, dtype=np.uint8)
        for lo, hi in zip(world.building_min_w, world.building_max_w):
            (x1, y1), (x2, y2) = self._px(lo[:2]), self._px(hi[:2])
            cv2.rectangle(base, (x1, min(y1, y2)), (x2, max(y1, y2)), (120, 120, 120), -1)
        cv2.rectangle(base, (0, 0), (self.size - 1, self.size - 1), (200, 200, 200), 1)
        self._base = base
        self._track: list[tuple[int, int]] = []
        self._last_step = -1

    def _px(self, xy) -> tuple[int, int]:
        """World ENU xy (metres) -> inset pixel (x right = east, y down = south)."""
        c = (self.size - 1) / 2
        return round(float(c + xy[0] * self._scale)), round(float(c - xy[1] * self._scale))

    def draw(self, img: np.ndarray, task) -> None:
        """Draw the inset in place into the top-right corner of ``img`` (H, W, 3) uint8."""
        import cv2

        if task.episode_step[0] < self._last_step:  # a new episode
            self._track.clear()
        self._last_step = int(task.episode_step[0])
        inset = self._base.copy()
        pos = task.pos_w[0]
        self._track.append(self._px(pos[:2]))
        if len(self._track) > 1:
            cv2.polylines(
                inset, [np.array(self._track, dtype=np.int32)], False, (255, 255, 255), 1, cv2.LINE_AA
            )
        seen = task.seen[0]
        for t, p in enumerate(task.target_pos_w):
            colour = CLASS_RGB.get(int(self.world.target_class[t]), (0, 255, 0))
            cv2.circle(inset, self._px(p[:2]), 3 if seen[t] else 2, colour, -1 if seen[t] else 1)
        cv2.circle(inset, self._px(pos[:2]), 4, (255, 60, 60), -1)
        h, w = img.shape[:2]
        if self.size + 4 <= min(h, w):
            img[4 : 4 + self.size, w - 4 - self.size : w - 4] = inset
