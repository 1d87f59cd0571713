"""The simulator backend protocol (kinematic rendering path) and backend selection.

A backend holds one ISR world with ``num_drones`` camera drones and renders it.
In the kinematic path nothing is simulated: callers write drone and target
poses, then ask for pixels. Poses are world ENU, metres; quaternions are wxyz
and rotate the drone body frame (FLU) into the world frame.

Backends are imported lazily by :func:`make_backend`, so ``import flyby`` never
imports mujoco or isaacsim.

A backend built in dynamic mode (MuJoCo: ``dynamic=MultirotorCfg()``) also
implements :class:`DynamicSimBackend`: drones are rigid bodies moved by a body
wrench and stepped by physics, and ``set_drone_poses`` is refused.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from flyby.enums import BackendKind
from flyby.errors import BackendUnavailable, ConfigError

if TYPE_CHECKING:
    from flyby.dynamics.multirotor import DroneState
    from flyby.perception.camera import CameraCfg
    from flyby.world.world import ISRWorld

log = logging.getLogger(__name__)

__all__ = [
    "BACKEND_ENV_VAR",
    "DynamicSimBackend",
    "SimBackend",
    "make_backend",
    "nvidia_gpu_visible",
    "select_backend_kind",
]

#: Environment variable that picks the backend when no explicit choice is given.
BACKEND_ENV_VAR = "FLYBY_BACKEND"

# Module implementing each backend (the Isaac one imports Isaac Sim only when a backend is built).
_BACKEND_MODULES = {
    BackendKind.MUJOCO: ("flyby.sim.mujoco_backend", "MujocoBackend"),
    BackendKind.ISAAC: ("flyby.sim.isaac_backend", "IsaacBackend"),
}


@runtime_checkable
class SimBackend(Protocol):
    """A simulator that renders the ISR world from drone cameras and an overview camera.

    Frames and units: positions are metres in world ENU; drone orientations
    are wxyz unit quaternions rotating body FLU into world ENU; target yaw is
    radians about world z, 0 = facing east (+x), counter-clockwise positive.
    Images are ``uint8`` RGB, rows top to bottom (row 0 is the top of the
    image), matching :class:`~flyby.perception.camera.PinholeIntrinsics`.
    """

    @property
    def kind(self) -> BackendKind:
        """Which backend this is."""
        ...

    @property
    def description(self) -> str:
        """One line for report headers, e.g. ``"mujoco 4.0.0, EGL, GL renderer llvmpipe (...)"``."""
        ...

    @property
    def num_drones(self) -> int:
        """Number of camera drones N in the scene."""
        ...

    @property
    def camera(self) -> CameraCfg:
        """The drone camera (mount, field of view, resolution preset) shared by all drones."""
        ...

    def set_drone_poses(
        self, pos_w: np.ndarray, quat_wxyz: np.ndarray, ids: np.ndarray | None = None
    ) -> None:
        """Place drones (kinematically).

        Args:
            pos_w: (n, 3) float, metres, world ENU, body origin.
            quat_wxyz: (n, 4) float, body FLU -> world rotation, wxyz (normalised here).
            ids: (n,) int drone indices in ``[0, N)``; None means all N drones in order.

        Raises:
            ValueError: wrong shapes, ids out of range, or non-finite values.
        """
        ...

    def set_target_poses(self, pos_w: np.ndarray, yaw_rad: np.ndarray) -> None:
        """Place all T targets of the world.

        Args:
            pos_w: (T, 3) float, metres, world ENU, box centres (as ``ISRWorld.target_poses``).
            yaw_rad: (T,) float, radians, heading about world z.

        Raises:
            ValueError: wrong shapes or non-finite values.
        """
        ...

    def render_cameras(self, ids: np.ndarray | None = None) -> np.ndarray:
        """Render drone cameras.

        Args:
            ids: (n,) int drone indices; None means all N drones. Output row i is ``ids[i]``.

        Returns:
            (n, H, W, 3) uint8 RGB at the camera preset resolution ``(camera.height, camera.width)``.
        """
        ...

    def render_overview(self) -> np.ndarray:
        """Render the fixed overview camera over the whole area.

        Returns:
            (H, W, 3) uint8 RGB at the backend's overview size (default 640x480).
        """
        ...

    def overview_project(self, points_w: np.ndarray) -> np.ndarray:
        """Project world points into the overview image.

        Args:
            points_w: (K, 3) float, metres, world ENU.

        Returns:
            (K, 2) float64 pixel coordinates (u right, v down); NaN for points behind the camera.
        """
        ...

    def close(self) -> None:
        """Release the renderer; safe to call more than once."""
        ...

    def __enter__(self) -> SimBackend: ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class DynamicSimBackend(SimBackend, Protocol):
    """A backend in dynamic mode: drones are free rigid bodies stepped by physics.

    Frames and units as :class:`SimBackend`; wrenches are body FLU at the centre
    of mass, newtons and newton metres. Rendering keeps working and draws the
    drones where the physics put them. ``isinstance`` only checks that the
    methods exist; the MuJoCo backend is in dynamic mode when its ``dynamic``
    attribute is not None.
    """

    @property
    def physics_dt(self) -> float:
        """Physics step, seconds (0.004 = 250 Hz by default)."""
        ...

    def reset_drone_states(
        self, pos_w: np.ndarray, quat_wxyz: np.ndarray, ids: np.ndarray | None = None
    ) -> None:
        """Place drones ``ids`` (None: all) at rest at (n, 3) pos_w, (n, 4) quat_wxyz; zero their wrench."""
        ...

    def apply_body_wrench(self, force_b: np.ndarray, torque_b: np.ndarray) -> None:
        """Set every drone's (N, 3) force and torque, body FLU, held until changed."""
        ...

    def step_physics(self, n: int = 1) -> None:
        """Advance the physics by ``n`` steps of ``physics_dt`` without rendering."""
        ...

    def drone_state(self) -> DroneState:
        """Rigid-body state after the last step (:class:`~flyby.dynamics.multirotor.DroneState`)."""
        ...


def _parse_kind(value: BackendKind | str, source: str | None) -> BackendKind:
    if isinstance(value, BackendKind):
        return value
    allowed = ", ".join(k.value for k in BackendKind)
    if isinstance(value, str):
        try:
            return BackendKind(value.strip().lower())
        except ValueError:
            pass
    raise ConfigError([f"backend: {value!r} is not a simulator backend; allowed: {allowed}"], source=source)


def nvidia_gpu_visible() -> bool:
    """True when NVML (nvidia-ml-py, imported lazily) reports at least one NVIDIA GPU.

    A missing ``pynvml`` module, a missing driver library or any NVML error all
    count as "no GPU".
    """
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return False
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return False
    try:
        return int(pynvml.nvmlDeviceGetCount()) > 0
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def select_backend_kind(explicit: BackendKind | str | None = None) -> BackendKind:
    """Choose the simulator backend.

    Precedence: ``explicit`` > env ``FLYBY_BACKEND`` > ``isaac`` when the
    ``isaacsim`` package, the flyby Isaac backend module and an NVIDIA GPU are
    all present > ``mujoco``.

    Args:
        explicit: a :class:`BackendKind` or its string value (case-insensitive), or None.

    Returns:
        The chosen kind. An explicit or env choice of ``isaac`` is returned as is;
        :func:`make_backend` then says whether it can run.

    Raises:
        ConfigError: (a ValueError) ``explicit`` or ``FLYBY_BACKEND`` is not a backend
            name; the message names the value and the allowed values.
    """
    if explicit is not None:
        return _parse_kind(explicit, source=None)
    env = os.environ.get(BACKEND_ENV_VAR, "").strip()
    if env:
        return _parse_kind(env, source=f"environment variable {BACKEND_ENV_VAR}")
    isaac_module = _BACKEND_MODULES[BackendKind.ISAAC][0]
    if _module_exists("isaacsim") and _module_exists(isaac_module) and nvidia_gpu_visible():
        return BackendKind.ISAAC
    return BackendKind.MUJOCO


def make_backend(
    kind: BackendKind | str | None,
    world: ISRWorld,
    num_drones: int,
    camera: CameraCfg,
    **kwargs: Any,
) -> SimBackend:
    """Build a backend for ``world`` with ``num_drones`` drones carrying ``camera``.

    Args:
        kind: backend kind, its string value, or None to use :func:`select_backend_kind`.
        world: the ISR world to build the scene from.
        num_drones: N >= 1.
        camera: drone camera mount and resolution preset.
        **kwargs: backend-specific options (MuJoCo: ``overview_size``, ``shadows``, and
            ``dynamic=MultirotorCfg()``, ``physics_dt`` for dynamic mode).

    Raises:
        ConfigError: ``kind`` is not a backend name.
        BackendUnavailable: the backend cannot run here (Isaac Sim outside its container: the
            message names podman/README.md).
    """
    resolved = select_backend_kind(kind)
    module_name, class_name = _BACKEND_MODULES[resolved]
    if resolved is BackendKind.ISAAC and not _module_exists(module_name):
        raise BackendUnavailable(
            "The Isaac Sim backend is not part of this build of flyby yet "
            f"(no module {module_name}). Isaac Sim 5.1 runs in flyby's container: build and run it "
            "as podman/README.md says (podman/run.sh). Here, use FLYBY_BACKEND=mujoco (or "
            "backend='mujoco') for the embedded MuJoCo backend."
        )
    module = importlib.import_module(module_name)
    backend_cls = getattr(module, class_name)
    log.info("making %s backend with %d drones", resolved.value, num_drones)
    return backend_cls(world, num_drones, camera, **kwargs)
