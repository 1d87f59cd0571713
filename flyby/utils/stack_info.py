"""What flyby runs on, in words: simulator backend, GPU, full-fidelity flight stack and kernel.

One source for ``flyby info``, the pytest-html report's Environment table (``tests/conftest.py``)
and anything else that must say what produced a figure. Nothing here starts a simulator or PX4:
the backend line comes from the backend choice and the installed versions, the flight-stack
line from looking for the PX4 binary.
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

__all__ = ["backend_summary", "flight_stack_summary", "stack_summary"]


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def backend_summary(backend: str | None = None) -> str:
    """``"MuJoCo 3.x (EGL offscreen)"`` or ``"Isaac Sim <version> ..."`` for the backend
    :func:`flyby.sim.base.select_backend_kind` picks for ``backend`` (None: automatic).

    Never raises for a backend that cannot run here: the line then says why (an unknown name
    still raises ``ConfigError``, as the choice itself does).
    """
    from flyby.enums import BackendKind
    from flyby.sim.base import select_backend_kind

    kind = select_backend_kind(backend)
    if kind is BackendKind.MUJOCO:
        from flyby.errors import BackendUnavailable

        try:
            from flyby.sim.gl import ensure_gl_platform

            platform = f"{ensure_gl_platform().upper()} offscreen"
        except BackendUnavailable as exc:
            platform = f"no GL platform: {exc}"
        return f"MuJoCo {_version('mujoco') or '(not installed)'} ({platform})"
    from flyby.sim.base import _BACKEND_MODULES, _module_exists
    from flyby.sim.isaac_backend import isaac_launch_config

    built = _module_exists(_BACKEND_MODULES[BackendKind.ISAAC][0])
    where = "" if built else "; the flyby Isaac Sim backend is not in this build"
    isaac = _version("isaacsim") or _isaac_version_file()
    if isaac is None and not _module_exists("isaacsim"):
        return f"Isaac Sim (not importable here: run inside the container, podman/README.md{where})"
    renderer = isaac_launch_config()["renderer"]
    return f"Isaac Sim {isaac or '(version unknown)'} ({renderer}, RTX{where})"


def _isaac_version_file() -> str | None:
    """The first line of Isaac Sim's ``VERSION`` file (``$ISAAC_PATH/VERSION``, else the container's
    ``/isaac-sim/VERSION``), e.g. ``5.1.0-rc.19``; None where there is none. It is the file
    ``isaacsim.core.version.get_version`` reads, without starting Isaac Sim."""
    for root in (os.environ.get("ISAAC_PATH"), "/isaac-sim"):
        if root:
            path = Path(root) / "VERSION"
            if path.is_file():
                line = path.read_text(errors="replace").strip().splitlines()
                return line[0].strip() if line else None
    return None


def flight_stack_summary(flight_stack: str = "auto") -> str:
    """The flight stack ``PX4ISR-v0`` flies with ``flight_stack`` (``auto``, ``px4`` or ``cascade``):
    the PX4 binary it found (and from where), or the built-in cascade and why.

    Never raises for a missing PX4: the line says it is missing and how to set ``PX4_DIR``.
    """
    from flyby.enums import FlightStack
    from flyby.envs.px4_env import FLIGHT_STACK_LABELS
    from flyby.errors import PX4Unavailable
    from flyby.px4.launcher import find_px4

    requested = FlightStack(flight_stack)
    if requested is FlightStack.CASCADE:
        return f"{FLIGHT_STACK_LABELS[FlightStack.CASCADE]} (--flight-stack cascade)"
    try:
        binary, _ = find_px4(None)
    except PX4Unavailable as exc:
        if requested is FlightStack.PX4:
            return f"PX4 SITL requested but not found: {exc}"
        return f"{FLIGHT_STACK_LABELS[FlightStack.CASCADE]} (PX4 SITL not found)"
    source = "PX4_DIR" if os.environ.get("PX4_DIR") else "PATH"
    return f"{FLIGHT_STACK_LABELS[FlightStack.PX4]}, {binary} (found through {source})"


def stack_summary(backend: str | None = None, flight_stack: str = "auto") -> dict[str, str]:
    """Ordered ``{name: line}``: simulator backend, GPU, the full-fidelity env's flight stack, the
    training envs' motion model and the hot-path kernel (``FLYBY_KERNEL``)."""
    from flyby.kernels import kernel_backend
    from flyby.utils.gpu import gpu_summary

    return {
        "Simulator backend": backend_summary(backend),
        "GPU": gpu_summary(),
        "Flight stack (PX4ISR-v0)": flight_stack_summary(flight_stack),
        "Motion (DirectISR-v0, MultiDroneISR-v0)": "direct dynamics, no PX4 in the loop",
        "Kernel (FLYBY_KERNEL)": kernel_backend().value,
    }
