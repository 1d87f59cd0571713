"""Enumerations for modes that would otherwise be loose strings."""

from __future__ import annotations

from enum import Enum


class BackendKind(str, Enum):
    """Simulator backend: ``mujoco`` (embedded default) or ``isaac`` (Isaac Sim 5.1)."""

    MUJOCO = "mujoco"
    ISAAC = "isaac"


class FlightStack(str, Enum):
    """What turns velocity commands into motion.

    ``DIRECT``: first-order direct dynamics, no flight controller (training envs).
    ``CASCADE``: the built-in cascaded controller on a rotor-level model.
    ``PX4``: PX4 SITL over MAVLink lockstep.
    """

    DIRECT = "direct"
    CASCADE = "cascade"
    PX4 = "px4"
    AUTO = "auto"


class ResolutionPreset(str, Enum):
    """Camera resolution presets, (width, height) in pixels, from the seed plan."""

    TRAINING = "training"  # 128 x 128
    EVALUATION = "evaluation"  # 320 x 240
    FULL = "full"  # 640 x 480
    MULTI = "multi"  # 80 x 80, one tile of the multi-drone grid

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return _PRESET_SIZES[self]


_PRESET_SIZES = {
    ResolutionPreset.TRAINING: (128, 128),
    ResolutionPreset.EVALUATION: (320, 240),
    ResolutionPreset.FULL: (640, 480),
    ResolutionPreset.MULTI: (80, 80),
}


class TargetClass(int, Enum):
    """ISR target classes; the integer is the class id used in observations."""

    VEHICLE = 0
    PERSON = 1


class PerceptionMode(str, Enum):
    """Where the full-fidelity env's detections come from.

    ``GROUND_TRUTH``: the analytic detector (projection + occlusion), no pixels.
    ``YOLO``: the learned detector on rendered frames; a YOLO box counts as a target
    only when it matches that target's ground-truth box (same class, IoU >= 0.5).
    """

    GROUND_TRUTH = "ground_truth"
    YOLO = "yolo"


class KernelBackend(str, Enum):
    """Implementation of the hot path (``$FLYBY_KERNEL``, :mod:`flyby.kernels`).

    ``NUMPY``: the readable reference (default). ``NUMBA``: compiled kernels, tested equal to it.
    """

    NUMBA = "numba"
    NUMPY = "numpy"
