"""The one place flyby imports MuJoCo: choose the GL platform, import ``mujoco``, route its warnings.

MuJoCo and PyOpenGL read ``MUJOCO_GL`` / ``PYOPENGL_PLATFORM`` when first imported,
so :func:`~flyby.sim.gl.ensure_gl_platform` runs before the first ``import mujoco``
(nothing above it imports mujoco). MuJoCo's warnings then go to
``output/logs/mujoco.log`` (:mod:`flyby.sim.mujoco_log`), not ``MUJOCO_LOG.TXT``
in the working folder. Every flyby module that calls MuJoCo takes ``mujoco``
from here: ``from flyby.sim.mujoco_import import mujoco``.

Attributes:
    GL_PLATFORM: the platform in ``MUJOCO_GL`` (``"egl"``, ``"osmesa"``, or what the user set).
    mujoco: the imported ``mujoco`` module.

Raises (on import):
    BackendUnavailable: neither EGL nor OSMesa can render (from ``ensure_gl_platform``).
    DependencyNotInstalled: mujoco cannot be imported (a broken install: it is a core dependency).
"""

from __future__ import annotations

from flyby.errors import DependencyNotInstalled
from flyby.sim.gl import ensure_gl_platform
from flyby.sim.mujoco_log import route_mujoco_warnings

GL_PLATFORM = ensure_gl_platform()

try:
    import mujoco
except ImportError as err:  # mujoco is a core dependency; only a broken install lands here
    raise DependencyNotInstalled("mujoco", "all") from err

route_mujoco_warnings()  # MuJoCo's warnings to output/logs/mujoco.log, not MUJOCO_LOG.TXT in the CWD

__all__ = ["GL_PLATFORM", "mujoco"]
