"""Train flyby's detector from an ultralytics YAML on an exported dataset, and score it on held-out worlds.

:func:`train_yolo` builds the model from its architecture YAML (``yolo11n.yaml``: random
initial weights, nothing downloaded), trains it on a dataset written by
:func:`flyby.perception.yolo_dataset.export_dataset` (``val`` split for model selection),
copies the best checkpoint (optimizer stripped, fp16, as ultralytics saves it at the end)
to the requested path atomically, scores it with :func:`evaluate_yolo` on the ``test``
split (worlds never seen in training or selection) and writes a JSON card beside the
weights (``<weights>.json``): dataset seeds and counts, epochs, image size, metrics, CPU
inference time and the command that reproduces the file.

Every ultralytics call goes through :func:`flyby.perception.yolo.import_ultralytics`
(offline) with ``plots=False``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shlex
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flyby.config import cfg_field, check, to_dict
from flyby.errors import FlybyError
from flyby.perception.yolo import CLASS_NAMES, YoloDetector, import_ultralytics

log = logging.getLogger(__name__)

__all__ = [
    "YoloEvalResult",
    "YoloTrainCfg",
    "evaluate_yolo",
    "measure_cpu_ms",
    "reproduce_command",
    "train_yolo",
]


@dataclass(kw_only=True)
class YoloTrainCfg:
    """How :func:`train_yolo` trains (ultralytics argument names where they exist)."""

    model: str = "yolo11n.yaml"  # architecture YAML, built from scratch (a local .pt file fine-tunes instead)
    epochs: int = cfg_field(15, ge=1)  # passes over the training split
    imgsz: int = cfg_field(320, ge=32)  # px, training image size (multiple of 32)
    batch: int = cfg_field(16, ge=1)  # images per optimiser step
    workers: int = cfg_field(0, ge=0)  # data-loader worker processes (0: in the main process)
    close_mosaic: int = cfg_field(3, ge=0)  # last epochs trained without mosaic augmentation
    patience: int = cfg_field(100, ge=1)  # epochs without a better val fitness before stopping early
    seed: int = cfg_field(0, ge=0)  # torch / numpy / augmentation seed (deterministic on one machine)
    device: str = "cpu"  # torch device ("cpu", "0" for the first GPU)

    def validate(self) -> list[str]:
        problems = []
        if self.imgsz % 32:
            problems.append(f"imgsz: {self.imgsz} must be a multiple of 32 (YOLO's largest stride); try 320")
        if not self.model.endswith((".yaml", ".yml", ".pt")):
            problems.append(
                f"model: {self.model!r} must be an architecture .yaml (e.g. yolo11n.yaml) or a local .pt"
            )
        if self.model.endswith(".pt") and not Path(self.model).expanduser().is_file():
            problems.append(
                f"model: {self.model!r} is not a local file; flyby never downloads hub weights, "
                "train from a YAML (yolo11n.yaml) instead"
            )
        return problems


@dataclass
class YoloEvalResult:
    """Held-out scores of a detector.

    Attributes:
        map50: COCO-style mAP at IoU 0.5 over both classes.
        map50_95: mAP averaged over IoU 0.5:0.95.
        per_class_map50: class name -> mAP50.
        precision, recall: ultralytics' precision and recall at its best-F1 confidence.
        images: images scored; instances: ground-truth boxes in them.
        split: the dataset split scored (``"test"``: worlds held out of training and selection).
        seeds: the world seeds of that split.
        cpu_ms_per_frame: median CPU time of one :meth:`YoloDetector.detect` call on one frame
            at the evaluation preset (320 x 240), milliseconds (None when not measured).
        cpu_threads: torch threads during that measurement.
        timing_frame_size: ``"<W>x<H>"`` of the timed frames.
    """

    map50: float
    map50_95: float
    per_class_map50: dict[str, float]
    precision: float
    recall: float
    images: int
    instances: int
    split: str
    seeds: list[int]
    cpu_ms_per_frame: float | None = None
    cpu_threads: int | None = None
    timing_frame_size: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _dataset_manifest(data_yaml: Path) -> dict[str, Any]:
    path = data_yaml.parent / "dataset.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            log.warning("cannot read %s; the weights card will lack dataset details", path)
    return {}


def _check_data_yaml(data: str | os.PathLike, split: str | None = None) -> Path:
    """The dataset's ``data.yaml`` (a folder gives its ``data.yaml``); checked to exist with ``split``.

    Raises:
        FlybyError: missing file, or the split's image folder is missing or empty.
    """
    path = Path(data).expanduser().resolve()
    if path.is_dir():
        path = path / "data.yaml"
    if not path.is_file():
        raise FlybyError(
            f"dataset file {path} not found; export one first with: flyby yolo-dataset --out {path.parent}"
        )
    if split is not None:
        import yaml

        try:
            spec = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise FlybyError(f"{path} is not valid YAML: {err}; re-export the dataset") from err
        rel = spec.get(split) if isinstance(spec, dict) else None
        root = Path(spec.get("path", path.parent)) if isinstance(spec, dict) else path.parent
        images = (root / rel) if rel else None
        if images is None or not images.is_dir() or not any(images.iterdir()):
            raise FlybyError(
                f"{path}: split {split!r} has no images ({images}); re-export with flyby yolo-dataset"
            )
    return path


def measure_cpu_ms(detector: YoloDetector, frames: np.ndarray, warmup: int = 3, repeats: int = 1) -> float:
    """Median wall time of ``detector.detect`` on one frame at a time, milliseconds.

    Args:
        detector: the detector (its device decides where it runs).
        frames: (N, H, W, 3) uint8 RGB frames, each timed ``repeats`` times.
        warmup: untimed calls first (the first calls allocate).

    Raises:
        ValueError: no frames.
    """
    if len(frames) == 0:
        raise ValueError("measure_cpu_ms needs at least one frame")
    for i in range(warmup):
        detector.detect(frames[i % len(frames)][None])
    times = []
    for _ in range(repeats):
        for frame in frames:
            t0 = time.perf_counter()
            detector.detect(frame[None])
            times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def _split_frames(data_yaml: Path, split: str, limit: int) -> np.ndarray:
    """Up to ``limit`` RGB frames (N, H, W, 3) uint8 of a split, in file-name order."""
    import cv2
    import yaml

    spec = yaml.safe_load(data_yaml.read_text())
    folder = Path(spec.get("path", data_yaml.parent)) / spec[split]
    files = sorted(folder.glob("*.png"))[:limit]
    frames = [cv2.imread(str(f))[..., ::-1] for f in files]
    return np.stack(frames) if frames else np.zeros((0, 1, 1, 3), np.uint8)


def evaluate_yolo(
    weights: str | os.PathLike | None,
    data: str | os.PathLike,
    *,
    split: str = "test",
    imgsz: int = 320,
    batch: int = 16,
    device: str = "cpu",
    timing_frames: int = 30,
    run_dir: str | os.PathLike | None = None,
) -> YoloEvalResult:
    """Score weights on a dataset split (mAP50, mAP50-95) and time CPU inference per frame.

    Args:
        weights: ``.pt`` file; None means the shipped weights.
        data: the dataset's ``data.yaml`` (or its folder).
        split: ``"test"`` (held-out worlds; the figure to report), ``"val"`` or ``"train"``.
        imgsz: inference size, pixels.
        batch: validation batch size.
        device: torch device for the mAP pass; the timing always runs on ``"cpu"``.
        timing_frames: frames of the split timed one by one (0 skips timing).
        run_dir: where ultralytics may write its validation folder (default: a temp dir, removed).

    Raises:
        WeightsError: the weights are missing or unloadable.
        FlybyError: the dataset or split is missing.
    """
    detector = YoloDetector(weights, imgsz=imgsz, device="cpu")
    data_yaml = _check_data_yaml(data, split)
    own_tmp = run_dir is None
    project = Path(tempfile.mkdtemp(prefix="flyby-yolo-val-")) if own_tmp else Path(run_dir)
    try:
        metrics = detector.model.val(
            data=str(data_yaml), split=split, imgsz=imgsz, batch=batch, device=device,
            plots=False, save_json=False, project=str(project), name="val", exist_ok=True, verbose=False,
        )  # fmt: skip
    finally:
        if own_tmp:
            shutil.rmtree(project, ignore_errors=True)
    box = metrics.box
    names = metrics.names
    per_class = {names[int(c)]: float(box.ap50[i]) for i, c in enumerate(box.ap_class_index)}
    manifest = _dataset_manifest(data_yaml)
    seeds = list(manifest.get("config", {}).get(f"{split}_seeds", []))
    nt = getattr(metrics, "nt_per_class", None)
    result = YoloEvalResult(
        map50=float(box.map50),
        map50_95=float(box.map),
        per_class_map50=per_class,
        precision=float(box.mp),
        recall=float(box.mr),
        images=int(manifest.get("counts", {}).get(split, {}).get("images", 0)),
        instances=int(np.sum(nt)) if nt is not None else 0,
        split=split,
        seeds=seeds,
    )
    if timing_frames > 0:
        import torch

        frames = _split_frames(data_yaml, split, timing_frames)
        if len(frames):
            result.cpu_ms_per_frame = measure_cpu_ms(detector, frames)
            result.cpu_threads = int(torch.get_num_threads())
            result.timing_frame_size = f"{frames.shape[2]}x{frames.shape[1]}"
    return result


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies under it (shorter, portable commands)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def reproduce_command(data_yaml: Path, out: Path, cfg: YoloTrainCfg, dataset_args: str | None = None) -> str:
    """The shell commands that rebuild ``out``: the dataset export, then this training run."""
    defaults = YoloTrainCfg()
    train = ["flyby", "yolo-train", "--data", _shown(data_yaml), "--out", _shown(out)]
    for f in ("model", "epochs", "imgsz", "batch", "workers", "close_mosaic", "patience", "seed", "device"):
        value = getattr(cfg, f)
        if value != getattr(defaults, f):
            train += [f"--{f.replace('_', '-')}", str(value)]
    export = f"flyby yolo-dataset --out {shlex.quote(_shown(data_yaml.parent))}"
    if dataset_args:
        export += f" {dataset_args}"
    return f"{export} && {shlex.join(train)}"


def _dataset_cli_args(manifest: dict[str, Any]) -> str:
    """``flyby yolo-dataset`` options that reproduce a dataset's config (only non-defaults)."""
    from flyby.perception.yolo_dataset import YoloDatasetCfg

    cfg = manifest.get("config") or {}
    defaults = to_dict(YoloDatasetCfg())
    args = []
    for key in ("train_seeds", "val_seeds", "test_seeds"):
        if key in cfg and cfg[key] != defaults[key]:
            args += [f"--{key.replace('_', '-')}", ",".join(str(s) for s in cfg[key])]
    for key in ("train_frames_per_seed", "val_frames_per_seed", "test_frames_per_seed", "seed"):
        if key in cfg and cfg[key] != defaults[key]:
            args += [f"--{key.replace('_', '-')}", str(cfg[key])]
    return shlex.join(args)


def train_yolo(
    data: str | os.PathLike,
    out: str | os.PathLike,
    cfg: YoloTrainCfg | None = None,
    *,
    run_dir: str | os.PathLike = "output/yolo/runs",
    evaluate: bool = True,
    timing_frames: int = 30,
) -> dict[str, Any]:
    """Train a detector from its YAML on ``data``; write the weights to ``out`` and a card beside them.

    Args:
        data: the dataset's ``data.yaml`` (or its folder), from ``flyby yolo-dataset``.
        out: weights file to write (``.pt``); its card goes to ``out.with_suffix(".json")``.
        cfg: training settings (default :class:`YoloTrainCfg`).
        run_dir: ultralytics' run folder (checkpoints of every epoch, ``results.csv``).
        evaluate: score the weights on the dataset's ``test`` split (held-out worlds) and
            time CPU inference (:func:`evaluate_yolo`); the card carries the figures.
        timing_frames: frames timed for the CPU ms/frame figure.

    Returns:
        The card (also written as JSON): ``weights``, ``size_bytes``, ``dataset``,
        ``train``, ``metrics`` (None without ``evaluate``), ``wall_s``, ``versions``,
        ``reproduce``.

    Raises:
        ConfigError: ``cfg`` is invalid.
        FlybyError: the dataset is missing, ``out`` is not a ``.pt`` path, or training
            produced no checkpoint.
    """
    cfg = check(cfg or YoloTrainCfg())
    data_yaml = _check_data_yaml(data, "train")
    _check_data_yaml(data_yaml, "val")
    out = Path(out).expanduser()
    if out.suffix != ".pt":
        raise FlybyError(f"weights path {out} must end in .pt (e.g. output/yolo/isr_yolo11n_320.pt)")
    ul = import_ultralytics()
    import torch

    project = Path(run_dir).expanduser().resolve()
    project.mkdir(parents=True, exist_ok=True)
    name = f"{Path(cfg.model).stem}_{cfg.imgsz}"
    t0 = time.perf_counter()
    model = ul.YOLO(cfg.model, task="detect")
    model.train(
        data=str(data_yaml), epochs=cfg.epochs, imgsz=cfg.imgsz, batch=cfg.batch, workers=cfg.workers,
        close_mosaic=cfg.close_mosaic, patience=cfg.patience, seed=cfg.seed, deterministic=True,
        device=cfg.device, project=str(project), name=name, exist_ok=True, plots=False, amp=False,
        pretrained=False, verbose=True,
    )  # fmt: skip
    wall_s = time.perf_counter() - t0
    save_dir = Path(model.trainer.save_dir)
    best = save_dir / "weights" / "best.pt"
    if not best.is_file():
        best = save_dir / "weights" / "last.pt"
    if not best.is_file():
        raise FlybyError(f"training wrote no checkpoint under {save_dir / 'weights'}; see its log above")
    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_copy(best, out)
    metrics = None
    if evaluate:
        metrics = evaluate_yolo(
            out, data_yaml, split="test", imgsz=cfg.imgsz, timing_frames=timing_frames
        ).as_dict()
    manifest = _dataset_manifest(data_yaml)
    import ultralytics

    card = {
        "schema": "flyby.yolo_weights/1",
        "weights": out.name,
        "size_bytes": out.stat().st_size,
        "classes": {str(k): v for k, v in CLASS_NAMES.items()},
        "dataset": {
            "data_yaml": str(data_yaml),
            "config": manifest.get("config"),
            "camera": manifest.get("camera"),
            "counts": manifest.get("counts"),
        },
        "train": {
            **to_dict(cfg),
            "from_scratch": cfg.model.endswith((".yaml", ".yml")),
            "checkpoint": best.name,
        },
        "metrics": metrics,
        "wall_s": round(wall_s, 1),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "versions": {"ultralytics": ultralytics.__version__, "torch": torch.__version__},
        "reproduce": reproduce_command(data_yaml, out, cfg, _dataset_cli_args(manifest)),
    }
    _atomic_write_text(out.with_suffix(".json"), json.dumps(card, indent=2) + "\n")
    log.info("wrote %s (%d bytes) and its card %s", out, card["size_bytes"], out.with_suffix(".json"))
    return card


def _atomic_copy(src: Path, dst: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
