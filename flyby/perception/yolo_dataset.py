"""Export a YOLO-format detection dataset from the simulator: rendered frames + ground-truth boxes.

Frames are rendered by the MuJoCo backend with the evaluation env's render camera
(:func:`render_camera_cfg`: ``evaluation_config.yaml``'s ``px4_env.camera`` mount at the
``px4_env.render.preset`` resolution, 320 x 240 by default), and labelled by
:class:`~flyby.perception.gt.GroundTruthDetector` at the same camera poses: the boxes a
frame is labelled with are exactly the ground truth a YOLO box is matched against in the
env (``perception.mode: yolo``).

Splits are whole worlds, never frames of one world: ``train`` renders the worlds of
``train_seeds``, ``val`` (model selection while training) those of ``val_seeds``, ``test``
(the reported metrics) those of ``test_seeds``; the three sets must not overlap.

Camera poses (drawn from ``numpy.random.default_rng(seed + world seed)``): a share
``1 - background_fraction`` of the frames aims at a random target: the drone stands off
so that the line of sight to the target is ``depression_deg`` below the horizon and the
target lies within the central part of the horizontal field of view; the rest are placed
anywhere over the area with any heading (often background only, which is kept: a
detector must also learn to say nothing). Altitudes are the envs' spawn band
(``altitude_m``, :class:`~flyby.config.envs.SpawnCfg`) or, for a share
``low_fraction`` of the frames, the band below it (``low_altitude_m``). Every pose is
tilted by a random roll and pitch up to ``max_tilt_deg`` (a flying multirotor leans into
its acceleration), clears the building under it by ``building_clearance_m`` and stays
inside the area. Targets are placed at a random world time in ``world_time_s``
(moving vehicles drive).

Layout written (the standard ultralytics one)::

    <out>/data.yaml                 path (absolute), train/val/test, names {0: vehicle, 1: person}
    <out>/dataset.json              the config, seeds, camera and per-split counts
    <out>/images/<split>/<name>.png RGB frames (PNG)
    <out>/labels/<split>/<name>.txt one line per box: ``cls cx cy w h``, normalised to [0, 1]

A background frame has an empty label file. The whole folder is written into a hidden
temporary folder beside ``out`` and renamed onto ``out`` at the end, so a crash never
leaves half a dataset under the final name.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from flyby.config import cfg_field, check, to_dict
from flyby.errors import ConfigError, FlybyError
from flyby.geometry import quat_wxyz_to_rot
from flyby.perception.camera import CameraCfg, PinholeIntrinsics, camera_poses_w
from flyby.perception.gt import GroundTruthDetector
from flyby.perception.yolo import CLASS_NAMES

log = logging.getLogger(__name__)

__all__ = [
    "SPLITS",
    "YoloDataset",
    "YoloDatasetCfg",
    "export_dataset",
    "parse_seeds",
    "render_camera_cfg",
    "sample_camera_poses",
    "yolo_label_lines",
]

#: Dataset splits, in the order they are rendered.
SPLITS = ("train", "val", "test")


@dataclass(kw_only=True)
class YoloDatasetCfg:
    """What :func:`export_dataset` renders."""

    train_seeds: tuple[int, ...] = cfg_field((0, 1, 2, 3, 4, 5), ge=0)  # world seeds of the training split
    val_seeds: tuple[int, ...] = cfg_field((100, 101), ge=0)  # held-out world seeds for model selection
    test_seeds: tuple[int, ...] = cfg_field((200, 201), ge=0)  # held-out world seeds of the reported metrics
    train_frames_per_seed: int = cfg_field(100, ge=1)  # frames rendered per training world
    val_frames_per_seed: int = cfg_field(40, ge=1)  # frames rendered per validation world
    test_frames_per_seed: int = cfg_field(60, ge=1)  # frames rendered per test world
    background_fraction: float = cfg_field(0.2, ge=0.0, le=1.0)  # share of frames posed anywhere (not aimed)
    altitude_m: tuple[float, float] = cfg_field((20.0, 45.0), gt=0.0)  # m above ground, the envs' spawn band
    low_altitude_m: tuple[float, float] = cfg_field((6.0, 20.0), gt=0.0)  # m above ground, the band below it
    low_fraction: float = cfg_field(0.3, ge=0.0, le=1.0)  # share of frames flown in the low band
    depression_deg: tuple[float, float] = cfg_field(
        (20.0, 80.0), gt=0.0, lt=90.0
    )  # deg, aimed line of sight below the horizon
    max_tilt_deg: float = cfg_field(10.0, ge=0.0, le=45.0)  # deg, largest random body roll and pitch
    building_clearance_m: float = cfg_field(
        3.0, ge=0.0
    )  # m, camera at least this high over the building below
    world_time_s: tuple[float, float] = cfg_field(
        (0.0, 60.0), ge=0.0
    )  # s, world time range of the target poses
    min_label_px: float = cfg_field(
        3.0, ge=0.0
    )  # px, boxes whose smaller side is below this are not labelled
    batch: int = cfg_field(8, ge=1, le=64)  # camera drones rendered per pass
    seed: int = cfg_field(0, ge=0)  # pose-sampling seed (added to each world seed)

    def validate(self) -> list[str]:
        problems = []
        for name in ("altitude_m", "low_altitude_m", "depression_deg", "world_time_s"):
            lo, hi = getattr(self, name)
            if lo > hi:
                problems.append(f"{name}: min {lo} is greater than max {hi}")
        for name in ("train_seeds", "val_seeds", "test_seeds"):
            seeds = getattr(self, name)
            if not seeds:
                problems.append(f"{name}: give at least one world seed")
            elif len(set(seeds)) != len(seeds):
                problems.append(f"{name}: {list(seeds)} repeats a seed")
        splits = {"train": self.train_seeds, "val": self.val_seeds, "test": self.test_seeds}
        names = list(splits)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                shared = sorted(set(splits[a]) & set(splits[b]))
                if shared:
                    problems.append(
                        f"{b}_seeds: world seeds {shared} are also in {a}_seeds; held-out worlds must be "
                        f"kept apart"
                    )
        return problems

    def seeds(self, split: str) -> tuple[int, ...]:
        """The world seeds of ``split`` (one of :data:`SPLITS`)."""
        return {"train": self.train_seeds, "val": self.val_seeds, "test": self.test_seeds}[split]

    def frames_per_seed(self, split: str) -> int:
        """Frames rendered per world of ``split``."""
        return {
            "train": self.train_frames_per_seed,
            "val": self.val_frames_per_seed,
            "test": self.test_frames_per_seed,
        }[split]


class YoloDataset(NamedTuple):
    """An exported dataset.

    Attributes:
        root: the dataset folder (absolute).
        data_yaml: ``root / "data.yaml"``, what ultralytics trains from.
        counts: per split: ``{"images", "background", "boxes", "vehicle", "person"}``.
    """

    root: Path
    data_yaml: Path
    counts: dict[str, dict[str, int]]


def render_camera_cfg(evaluation_config: str | os.PathLike | None = None) -> CameraCfg:
    """The evaluation env's render camera: ``px4_env.camera`` at the ``px4_env.render.preset`` resolution.

    Args:
        evaluation_config: an evaluation YAML; None means the packaged ``evaluation_config.yaml``.

    Raises:
        ConfigError: the file is missing or invalid.
    """
    from flyby.config.evaluation import load_evaluation_cfg

    env_cfg = load_evaluation_cfg() if evaluation_config is None else load_evaluation_cfg(evaluation_config)
    px4 = env_cfg.px4_env
    return replace(px4.camera, preset=px4.render.preset)


def yolo_label_lines(boxes_px: np.ndarray, cls: np.ndarray, width: int, height: int) -> list[str]:
    """YOLO label lines ``"cls cx cy w h"`` (normalised to [0, 1], 6 decimals) for one image.

    Args:
        boxes_px: (M, 4) ``x1, y1, x2, y2`` pixels, inside ``[0, width] x [0, height]``.
        cls: (M,) int class ids.
        width, height: the image size, pixels.

    Raises:
        ValueError: shapes disagree, or a box is empty or outside the image.
    """
    b = np.asarray(boxes_px, dtype=np.float64).reshape(-1, 4)
    c = np.asarray(cls).reshape(-1)
    if c.shape[0] != b.shape[0]:
        raise ValueError(f"cls has {c.shape[0]} entries for {b.shape[0]} boxes")
    size = np.array([width, height, width, height], dtype=np.float64)
    if b.size and (
        (b[:, 2] <= b[:, 0]).any() or (b[:, 3] <= b[:, 1]).any() or (b < 0).any() or (b > size).any()
    ):
        raise ValueError(f"boxes must be non-empty and inside the {width}x{height} image, got {b.tolist()}")
    norm = b / size
    cx = (norm[:, 0] + norm[:, 2]) / 2
    cy = (norm[:, 1] + norm[:, 3]) / 2
    w = norm[:, 2] - norm[:, 0]
    h = norm[:, 3] - norm[:, 1]
    return [f"{int(k)} {x:.6f} {y:.6f} {ww:.6f} {hh:.6f}" for k, x, y, ww, hh in zip(c, cx, cy, w, h)]


def _quat_yaw_pitch_roll(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """(N, 4) wxyz quaternions of R_wb = Rz(yaw) Ry(pitch) Rx(roll) (body FLU to world ENU)."""
    cy, sy = np.cos(yaw / 2), np.sin(yaw / 2)
    cp, sp = np.cos(pitch / 2), np.sin(pitch / 2)
    cr, sr = np.cos(roll / 2), np.sin(roll / 2)
    return np.stack(
        [
            cy * cp * cr + sy * sp * sr,
            cy * cp * sr - sy * sp * cr,
            cy * sp * cr + sy * cp * sr,
            sy * cp * cr - cy * sp * sr,
        ],
        axis=1,
    )


def sample_camera_poses(
    rng: np.random.Generator,
    world,
    target_pos_w: np.ndarray,
    n: int,
    cfg: YoloDatasetCfg,
    camera: CameraCfg,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``n`` drone poses over ``world`` (see the module docstring for the rules).

    Args:
        rng: the generator drawn from.
        world: the :class:`~flyby.world.world.ISRWorld`.
        target_pos_w: (T, 3) target centres at the frame's world time, metres, world ENU.
        n: poses to draw.
        cfg: the dataset config.
        camera: the render camera (its horizontal field of view bounds the aim).

    Returns:
        pos_w: (n, 3) float64 body positions, metres, world ENU.
        quat_wxyz: (n, 4) float64 body FLU -> world rotations.
        aimed: (n,) bool, True where the pose aims at a target.
    """
    k = PinholeIntrinsics.from_cfg(camera)
    half_hfov = math.atan(k.cx / k.fx)
    half = world.half_extent
    num_t = target_pos_w.shape[0]
    pos = np.zeros((n, 3))
    yaw = np.zeros(n)
    aimed = np.zeros(n, dtype=bool)
    for i in range(n):
        aim = num_t > 0 and rng.random() >= cfg.background_fraction
        band = cfg.low_altitude_m if rng.random() < cfg.low_fraction else cfg.altitude_m
        for _ in range(200):
            alt = rng.uniform(*band)
            if aim:
                target = target_pos_w[rng.integers(num_t)]
                depression = math.radians(rng.uniform(*cfg.depression_deg))
                dist = max(alt - target[2], 1.0) / math.tan(depression)
                bearing = rng.uniform(-math.pi, math.pi)  # from the drone to the target
                xy = target[:2] - dist * np.array([math.cos(bearing), math.sin(bearing)])
                heading = bearing + rng.uniform(-0.8, 0.8) * half_hfov
            else:
                xy = rng.uniform(-half, half)
                heading = rng.uniform(-math.pi, math.pi)
            if (np.abs(xy) > half - 1.0).any():
                continue
            if alt < float(world.height_at(xy)) + cfg.building_clearance_m:
                continue
            pos[i] = (xy[0], xy[1], alt)
            yaw[i] = heading
            aimed[i] = aim
            break
        else:  # a crowded spot: fall back to the top of the spawn band over the area centre
            pos[i] = (0.0, 0.0, cfg.altitude_m[1])
            yaw[i] = rng.uniform(-math.pi, math.pi)
    tilt = math.radians(cfg.max_tilt_deg)
    quat = _quat_yaw_pitch_roll(yaw, rng.uniform(-tilt, tilt, n), rng.uniform(-tilt, tilt, n))
    # Keep the camera itself out of buildings (the mount sits 0.12 m ahead of the body).
    cam_pos, _ = camera_poses_w(pos, quat_wxyz_to_rot(quat), camera)
    inside = world.points_in_buildings(cam_pos, 0.5)
    pos[inside, 2] = np.maximum(
        pos[inside, 2], world.height_at(pos[inside, :2]) + cfg.building_clearance_m + 1.0
    )
    return pos, quat, aimed


def export_dataset(
    out: str | os.PathLike,
    cfg: YoloDatasetCfg | None = None,
    camera: CameraCfg | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> YoloDataset:
    """Render and label a YOLO dataset (layout in the module docstring).

    Args:
        out: the dataset folder to create.
        cfg: what to render (default :class:`YoloDatasetCfg`).
        camera: the camera; default :func:`render_camera_cfg` (the evaluation env's render camera).
        overwrite: replace an existing ``out``; without it an existing ``out`` is an error.
        progress: show a tqdm progress bar over the frames.

    Returns:
        The :class:`YoloDataset` written.

    Raises:
        ConfigError: ``cfg`` or ``camera`` is invalid (overlapping split seeds included).
        FlybyError: ``out`` exists and ``overwrite`` is False, or ``out`` is a file.
        BackendUnavailable: MuJoCo cannot render here.
    """
    import cv2

    from flyby.sim.base import make_backend
    from flyby.world.world import generate_world

    cfg = check(cfg or YoloDatasetCfg())
    camera = check(camera or render_camera_cfg())
    out = Path(out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise FlybyError(f"dataset folder {out} is a file; give a folder path")
    if out.exists() and not overwrite:
        raise FlybyError(
            f"dataset folder {out} already exists; pass overwrite=True (CLI: --overwrite) or another --out"
        )
    from flyby.config.evaluation import load_evaluation_cfg

    world_cfg = load_evaluation_cfg().px4_env.world
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    counts: dict[str, dict[str, int]] = {}
    total = sum(len(cfg.seeds(s)) * cfg.frames_per_seed(s) for s in SPLITS)
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="yolo dataset", unit="frame", disable=not progress)
        with bar:
            for split in SPLITS:
                img_dir = tmp / "images" / split
                lbl_dir = tmp / "labels" / split
                img_dir.mkdir(parents=True)
                lbl_dir.mkdir(parents=True)
                c = counts[split] = {
                    "images": 0,
                    "background": 0,
                    "boxes": 0,
                    **{v: 0 for v in CLASS_NAMES.values()},
                }
                for wseed in cfg.seeds(split):
                    world = generate_world(world_cfg, int(wseed))
                    detector = GroundTruthDetector.from_world(camera, world)
                    rng = np.random.default_rng(cfg.seed + int(wseed))
                    frames = cfg.frames_per_seed(split)
                    with make_backend("mujoco", world, cfg.batch, camera) as backend:
                        for start in range(0, frames, cfg.batch):
                            nb = min(cfg.batch, frames - start)
                            t_s = rng.uniform(*cfg.world_time_s)
                            tpos, tyaw = world.target_poses(t_s)
                            pos, quat, _ = sample_camera_poses(rng, world, tpos, cfg.batch, cfg, camera)
                            backend.set_target_poses(tpos, tyaw)
                            backend.set_drone_poses(pos, quat)
                            images = backend.render_cameras()
                            cam_pos, rot_wc = camera_poses_w(pos, quat_wxyz_to_rot(quat), camera)
                            det = detector.detect(cam_pos, rot_wc, tpos, tyaw, world.target_size_m)
                            for j in range(nb):
                                keep = det.visible[j] & (
                                    np.minimum(
                                        det.boxes_px[j, :, 2] - det.boxes_px[j, :, 0],
                                        det.boxes_px[j, :, 3] - det.boxes_px[j, :, 1],
                                    )
                                    >= cfg.min_label_px
                                )
                                cls = world.target_class[keep].astype(np.int64)
                                lines = yolo_label_lines(
                                    det.boxes_px[j][keep], cls, camera.width, camera.height
                                )
                                name = f"w{int(wseed):04d}_{start + j:05d}"
                                if not cv2.imwrite(str(img_dir / f"{name}.png"), images[j][..., ::-1]):
                                    raise FlybyError(f"cannot write {img_dir / name}.png (disk full?)")
                                (lbl_dir / f"{name}.txt").write_text("".join(f"{ln}\n" for ln in lines))
                                c["images"] += 1
                                c["boxes"] += len(lines)
                                c["background"] += not lines
                                for k in cls:
                                    c[CLASS_NAMES[int(k)]] += 1
                            bar.update(nb)
        data_yaml = {
            "path": str(out),
            "train": "images/train",
            "val": "images/val",
            "test": "images/test",
            "names": dict(CLASS_NAMES),
        }
        import yaml

        (tmp / "data.yaml").write_text(
            "# YOLO dataset rendered by flyby (flyby yolo-dataset); see dataset.json\n"
            + yaml.safe_dump(data_yaml, sort_keys=False)
        )
        manifest = {
            "schema": "flyby.yolo_dataset/1",
            "config": to_dict(cfg),
            "camera": {**to_dict(camera), "width": camera.width, "height": camera.height},
            "world": to_dict(world_cfg),
            "counts": counts,
        }
        (tmp / "dataset.json").write_text(json.dumps(manifest, indent=2) + "\n")
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("YOLO dataset %s: %s", out, counts)
    return YoloDataset(out, out / "data.yaml", counts)


def _replace_dir(src: Path, dst: Path) -> None:
    """Move folder ``src`` onto ``dst`` (same filesystem); an existing ``dst`` is removed after the swap."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def parse_seeds(text: str, name: str = "seeds") -> tuple[int, ...]:
    """World seeds from ``"0..5"`` (inclusive), ``"100,101"`` or a mix (``"0..2,7"``).

    Raises:
        ConfigError: naming ``name``, the text and the accepted forms.
    """
    seeds: list[int] = []
    try:
        for part in (p.strip() for p in str(text).split(",")):
            if ".." in part:
                lo, hi = (int(v) for v in part.split(".."))
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise ConfigError(
            [f"{name}: {text!r} is not a seed list; write e.g. '0..5' (inclusive), '100,101' or '0..2,7'"]
        ) from None
    if not seeds or min(seeds) < 0:
        raise ConfigError([f"{name}: {text!r} must name at least one seed, all >= 0"])
    return tuple(seeds)
