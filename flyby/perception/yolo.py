"""Learned detection: an offline-safe ultralytics import and :class:`YoloDetector`.

ultralytics reaches for the network in a few places unless told not to: at its first
import it resolves two DNS names to decide whether it is "online" (``YOLO_OFFLINE``
skips that, and it is read once, at that first import), it downloads ``Arial.ttf`` /
``Arial.Unicode.ttf`` into its config folder the first time it checks a dataset or
draws a label, it pip-installs missing requirements (``YOLO_AUTOINSTALL``), it posts
usage events when its ``sync`` setting is on and it is online, and it downloads hub
weights for names such as ``yolo11n.pt``. :func:`import_ultralytics` closes every one
of those doors before the first import:

- ``YOLO_OFFLINE=1`` and ``YOLO_AUTOINSTALL=false``;
- ``YOLO_CONFIG_DIR`` set to a writable flyby-owned folder (:func:`yolo_config_dir`)
  unless the caller already set one, holding ``Ultralytics/Arial.ttf`` and
  ``Ultralytics/Arial.Unicode.ttf``, copied at run time from matplotlib's bundled
  DejaVuSans (no font file ships with flyby);
- the settings ``sync`` (usage events) and every experiment-tracker integration off.

flyby never names hub weights: models are built from a YAML (``yolo11n.yaml``) or loaded
from a local file (the shipped :data:`DEFAULT_WEIGHTS`).

Images are ``uint8`` RGB everywhere in flyby; ultralytics reads numpy arrays as BGR
(OpenCV's order), so :class:`YoloDetector` flips the channels before predicting.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import numpy as np

from flyby.config import cfg_field
from flyby.enums import PerceptionMode, TargetClass
from flyby.errors import DependencyNotInstalled, FlybyError
from flyby.utils.cache import writable_cache_dir

log = logging.getLogger(__name__)

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_WEIGHTS",
    "PerceptionCfg",
    "REPRODUCE_COMMAND",
    "WEIGHTS_DIR",
    "WeightsError",
    "YoloBoxes",
    "YoloDetector",
    "import_ultralytics",
    "load_yolo",
    "yolo_config_dir",
]

#: Folder of the weights shipped with the package (and their card, ``README.md``).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: The shipped detector: yolo11n trained from its YAML on flyby's own renders at imgsz 320.
DEFAULT_WEIGHTS = WEIGHTS_DIR / "isr_yolo11n_320.pt"
#: Class id -> name, the ids of :class:`~flyby.enums.TargetClass` (YOLO label files use them).
CLASS_NAMES: dict[int, str] = {int(c): c.name.lower() for c in TargetClass}
#: The commands that rebuild :data:`DEFAULT_WEIGHTS` from scratch (named in weight errors).
REPRODUCE_COMMAND = (
    "flyby yolo-dataset --out output/yolo/dataset && "
    "flyby yolo-train --data output/yolo/dataset/data.yaml --out flyby/perception/weights/isr_yolo11n_320.pt"
)

# Environment variable naming the folder flyby gives ultralytics as YOLO_CONFIG_DIR
# (default: see yolo_config_dir).
CONFIG_DIR_ENV_VAR = "FLYBY_YOLO_CONFIG_DIR"
_FONTS = ("Arial.ttf", "Arial.Unicode.ttf")
# ultralytics settings turned off: usage events and every experiment tracker it would
# otherwise hook into a training run when the tracker's package is importable.
_SETTINGS_OFF = (
    "sync", "hub", "tensorboard", "wandb", "mlflow", "clearml", "comet", "dvc", "neptune", "raytune",
)  # fmt: skip

_import_lock = threading.Lock()


@dataclass(kw_only=True)
class PerceptionCfg:
    """Where the full-fidelity env's detections come from, and the learned detector's settings.

    ``mode: ground_truth`` keeps the analytic detector (the yolo fields are then unused);
    ``mode: yolo`` renders the camera at the render preset on every perception step and
    runs :class:`YoloDetector` on it (see :mod:`flyby.perception.yolo_env`).
    """

    mode: PerceptionMode = (
        PerceptionMode.GROUND_TRUTH
    )  # ground_truth (analytic) or yolo (learned, on rendered frames)
    weights: str = ""  # YOLO .pt file; empty: the shipped flyby/perception/weights/isr_yolo11n_320.pt
    conf: float = cfg_field(0.25, ge=0.0, le=1.0)  # least confidence of a YOLO box
    iou: float = cfg_field(0.7, ge=0.0, le=1.0)  # IoU threshold of YOLO's non-maximum suppression
    imgsz: int = cfg_field(320, ge=32)  # px, YOLO inference size (the shipped weights: 320)
    match_iou: float = cfg_field(
        0.5, gt=0.0, le=1.0
    )  # least IoU with a target's ground-truth box to count as it
    device: str = "cpu"  # torch device of YOLO inference

    def validate(self) -> list[str]:
        if self.imgsz % 32:
            return [f"imgsz: {self.imgsz} must be a multiple of 32 (YOLO's largest stride); try 320"]
        return []


class WeightsError(FlybyError, FileNotFoundError):
    """Detector weights are missing or cannot be loaded.

    The message names the path and the command that reproduces the shipped weights.

    Attributes:
        path: the weights file.
    """

    def __init__(self, message: str, path: object = None) -> None:
        self.path = path
        super().__init__(message)

    def __reduce__(self):  # picklable across processes with its attributes
        return type(self), (str(self), self.path)


def yolo_config_dir() -> Path:
    """The folder flyby gives ultralytics as ``YOLO_CONFIG_DIR`` (created, writable).

    Order: ``$FLYBY_YOLO_CONFIG_DIR``; ``<checkout>/.cache/ultralytics`` when flyby runs
    from a source checkout (a ``pyproject.toml`` beside the package; ``.cache/`` is
    git-ignored); ``$XDG_CACHE_HOME/flyby/ultralytics`` (``~/.cache/...``); and, when none
    of those is writable, a folder under the system temp dir.
    """
    return writable_cache_dir("ultralytics", CONFIG_DIR_ENV_VAR)


def _install_fonts(user_dir: Path) -> None:
    """Put ``Arial.ttf`` and ``Arial.Unicode.ttf`` into ultralytics' user folder, if absent.

    Copies matplotlib's bundled DejaVuSans.ttf (atomically: temp file, then ``os.replace``)
    so ultralytics' ``check_font`` finds a file and never downloads one.
    """
    missing = [name for name in _FONTS if not (user_dir / name).is_file()]
    if not missing:
        return
    try:
        import matplotlib
    except ImportError as err:  # ultralytics itself requires matplotlib
        raise DependencyNotInstalled("matplotlib", "yolo") from err
    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    if not source.is_file():
        raise FlybyError(
            f"matplotlib's bundled font {source} is missing; reinstall matplotlib "
            f"(ultralytics would otherwise download Arial.ttf into {user_dir})"
        )
    user_dir.mkdir(parents=True, exist_ok=True)
    for name in missing:
        fd, tmp = tempfile.mkstemp(dir=user_dir, prefix=f".{name}.", suffix=".tmp")
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, user_dir / name)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _offline_environment() -> Path:
    """Set the variables ultralytics reads at import; install the fonts. Returns its user folder."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    if not os.environ.get("YOLO_CONFIG_DIR", "").strip():
        os.environ["YOLO_CONFIG_DIR"] = str(yolo_config_dir())
    user_dir = Path(os.environ["YOLO_CONFIG_DIR"]).expanduser() / "Ultralytics"
    _install_fonts(user_dir)
    return user_dir


def _mesa_llvm_loaded() -> bool:
    """True when Mesa's LLVM (``libLLVM*.so``, loaded by MuJoCo's EGL/OSMesa software renderer) is mapped."""
    try:
        with open("/proc/self/maps") as fh:
            return any("libLLVM" in line for line in fh)
    except OSError:  # not Linux
        return False


def _keep_triton_out() -> None:
    """Stop torch from importing triton where that would crash the process.

    triton bundles its own LLVM; importing it after Mesa's llvmpipe has loaded the system
    LLVM (any MuJoCo render with EGL or OSMesa on a machine without an NVIDIA driver)
    is a segmentation fault. torch imports triton lazily, at the first predict. triton
    only serves GPU kernels (``torch.compile``), so it is kept out (``sys.modules["triton"]
    = None``: torch then sees no triton) when no CUDA device is present, or when Mesa's
    LLVM is already mapped. A triton already imported is left alone (importing it before
    the renderer is safe).
    """
    if "triton" in sys.modules:
        return
    try:
        import torch
    except ImportError:
        return  # ultralytics' own import reports it
    if torch.cuda.is_available() and not _mesa_llvm_loaded():
        return
    sys.modules["triton"] = None  # type: ignore[assignment]
    log.debug("triton kept out of this process (no CUDA device, or Mesa's LLVM loaded by MuJoCo rendering)")


def import_ultralytics() -> ModuleType:
    """Import ultralytics with every network access turned off (see the module docstring).

    Safe to call many times and from several threads; the environment is set before the
    first import only. When something imported ultralytics before flyby could set
    ``YOLO_OFFLINE`` (its DNS probe then already ran), a warning says so and its
    ``ONLINE`` flags are forced off from here on. On a machine without CUDA (or once
    MuJoCo's software renderer is loaded) triton is kept out of the process: importing it
    next to Mesa's LLVM crashes (see :func:`_keep_triton_out`).

    Returns:
        The ``ultralytics`` module.

    Raises:
        DependencyNotInstalled: ultralytics (or torch under it) is not installed; the
            message says ``pip install "flyby[yolo]"``.
    """
    with _import_lock:
        already = "ultralytics" in sys.modules
        user_dir = _offline_environment()
        _keep_triton_out()
        try:
            import ultralytics
            import ultralytics.utils as ul_utils
            import ultralytics.utils.checks as ul_checks
        except ImportError as err:
            raise DependencyNotInstalled("ultralytics", "yolo") from err
        if already and getattr(ul_utils, "ONLINE", False):
            log.warning(
                "ultralytics was imported before flyby could set YOLO_OFFLINE (it probed DNS then); "
                "its network use is switched off from now on"
            )
        for module_name in ("ultralytics.utils", "ultralytics.utils.checks", "ultralytics.utils.events"):
            module = sys.modules.get(module_name)
            if module is not None and getattr(module, "ONLINE", False):
                module.ONLINE = False
        ul_checks.AUTOINSTALL = False
        ul_utils.AUTOINSTALL = False
        settings = ul_utils.SETTINGS
        off = {k: False for k in _SETTINGS_OFF if k in settings and settings[k] is not False}
        if off:
            settings.update(off)  # writes <YOLO_CONFIG_DIR>/Ultralytics/settings.json
        if Path(ul_utils.USER_CONFIG_DIR).resolve() != user_dir.resolve():  # imported earlier elsewhere
            _install_fonts(Path(ul_utils.USER_CONFIG_DIR))
        return ultralytics


class YoloBoxes(NamedTuple):
    """Detections of one image.

    Attributes:
        boxes_px: (M, 4) float32, ``x1, y1, x2, y2`` in pixels of the input image
            (u right, v down from the top-left corner).
        cls: (M,) int64 class ids (:class:`~flyby.enums.TargetClass`).
        conf: (M,) float32 confidences in [0, 1], highest first.
    """

    boxes_px: np.ndarray
    cls: np.ndarray
    conf: np.ndarray

    @classmethod
    def empty(cls) -> YoloBoxes:
        """No detections."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32))


def load_yolo(weights: str | os.PathLike | None = None):
    """An ultralytics ``YOLO`` model from a local weights file (never a hub download).

    Args:
        weights: a ``.pt`` file; None means the shipped :data:`DEFAULT_WEIGHTS`.

    Raises:
        WeightsError: the file is missing, or not an ultralytics detection checkpoint with
            flyby's classes; the message names the path and :data:`REPRODUCE_COMMAND`.
        DependencyNotInstalled: ultralytics is missing.
    """
    path = Path(DEFAULT_WEIGHTS if weights is None else weights).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"YOLO weights not found: {path}. Give an existing .pt file, or rebuild the shipped "
            f"weights with: {REPRODUCE_COMMAND}",
            path,
        )
    ul = import_ultralytics()
    try:
        model = ul.YOLO(str(path), task="detect")
        names = dict(model.names)
    except Exception as err:  # torch/pickle/ultralytics raise many kinds for a bad file
        reason = (str(err).strip().splitlines() or [""])[0].replace(
            "ERROR ❌️ ", ""
        )  # not ultralytics' download advice
        raise WeightsError(
            f"cannot load YOLO weights {path}: {type(err).__name__}: {reason} The file is not an "
            f"ultralytics detection checkpoint (or is corrupt); rebuild it with: {REPRODUCE_COMMAND}",
            path,
        ) from err
    if names != CLASS_NAMES:
        raise WeightsError(
            f"YOLO weights {path} detect classes {names}, flyby expects {CLASS_NAMES}; "
            f"train on a flyby dataset: {REPRODUCE_COMMAND}",
            path,
        )
    return model


class YoloDetector:
    """A trained ultralytics detector over batches of flyby camera images.

    Args:
        weights: ``.pt`` file; None means the shipped :data:`DEFAULT_WEIGHTS`.
        conf: minimum confidence of a returned box, in [0, 1].
        iou: IoU threshold of non-maximum suppression, in [0, 1].
        imgsz: inference size in pixels (longest side; the image is letterboxed to a
            multiple of 32). 320 is what the shipped weights were trained at.
        device: torch device string (``"cpu"``, ``"cuda:0"``).

    Raises:
        WeightsError: missing or unloadable weights (see :func:`load_yolo`).
        DependencyNotInstalled: ultralytics is missing (``pip install "flyby[yolo]"``).
        ValueError: ``conf`` or ``iou`` outside [0, 1], or ``imgsz`` below 32.

    Example::

        detector = YoloDetector()
        (boxes,) = detector.detect(frames[:1])   # frames: (N, 240, 320, 3) uint8 RGB
        boxes.boxes_px[boxes.cls == TargetClass.PERSON]
    """

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        conf: float = 0.25,
        iou: float = 0.7,
        imgsz: int = 320,
        device: str = "cpu",
    ) -> None:
        for name, value in (("conf", conf), ("iou", iou)):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name}={value} must be within [0, 1]")
        if int(imgsz) < 32:
            raise ValueError(f"imgsz={imgsz} must be >= 32 pixels (YOLO's largest stride)")
        self.weights = Path(DEFAULT_WEIGHTS if weights is None else weights)
        self.conf = float(conf)
        self.iou = float(iou)
        self.imgsz = int(imgsz)
        self.device = device
        self.model = load_yolo(self.weights)

    def detect(self, images: np.ndarray) -> list[YoloBoxes]:
        """Detect targets in a batch of images.

        Args:
            images: (N, H, W, 3) uint8 RGB (or one (H, W, 3) image, treated as N = 1).

        Returns:
            N :class:`YoloBoxes`, in the input images' pixels, highest confidence first.

        Raises:
            ValueError: ``images`` is not uint8 with a trailing RGB axis of 3.
        """
        arr = np.asarray(images)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise ValueError(
                f"images must be (N, H, W, 3) uint8 RGB, got shape {arr.shape} dtype {arr.dtype}; "
                "convert float images with (img * 255).astype(np.uint8)"
            )
        if arr.shape[0] == 0:
            return []
        bgr = [np.ascontiguousarray(im[..., ::-1]) for im in arr]  # ultralytics reads arrays as BGR
        results = self.model.predict(
            bgr, conf=self.conf, iou=self.iou, imgsz=self.imgsz, device=self.device, verbose=False
        )
        out = []
        for res in results:
            boxes = res.boxes
            if boxes is None or len(boxes) == 0:
                out.append(YoloBoxes.empty())
                continue
            conf = boxes.conf.cpu().numpy().astype(np.float32)
            order = np.argsort(-conf, kind="stable")
            out.append(
                YoloBoxes(
                    boxes.xyxy.cpu().numpy().astype(np.float32)[order],
                    boxes.cls.cpu().numpy().astype(np.int64)[order],
                    conf[order],
                )
            )
        return out
