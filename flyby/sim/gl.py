"""OpenGL platform selection for MuJoCo offscreen rendering.

MuJoCo's Python package and PyOpenGL read ``MUJOCO_GL`` and
``PYOPENGL_PLATFORM`` once, when they are first imported. :func:`ensure_gl_platform`
must therefore run before the first ``import mujoco`` of the process; the MuJoCo
backend module calls it at its top. This module never imports mujoco itself.

Selection:

1. ``MUJOCO_GL`` already set (by the user or a parent process): respected as is.
2. Otherwise probe EGL in a short subprocess (create an offscreen context and
   render one frame); on success set ``MUJOCO_GL=egl`` and ``PYOPENGL_PLATFORM=egl``.
3. Otherwise probe OSMesa the same way and set ``osmesa``.
4. Otherwise raise :class:`~flyby.errors.BackendUnavailable` with both errors and
   the Debian packages that provide each platform.

The result is cached for the process, and because it is written to
``os.environ``, child processes (pytest-xdist workers, subprocess envs) inherit
it and skip the probe.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

from flyby.errors import BackendUnavailable

log = logging.getLogger(__name__)

__all__ = ["PLATFORM_PACKAGES", "ensure_gl_platform", "probe_platform"]

# Debian packages that provide each headless platform (Mesa software rendering
# works with either; an NVIDIA driver provides its own libEGL).
PLATFORM_PACKAGES = {
    "egl": "libegl1 libegl-mesa0 libgl1-mesa-dri",
    "osmesa": "libosmesa6",
}

# Seconds a probe subprocess may take (importing mujoco + one 16x16 frame is ~1 s).
_PROBE_TIMEOUT_S = 60.0

_PROBE_SRC = r"""
import json, mujoco
m = mujoco.MjModel.from_xml_string(
    '<mujoco><worldbody><light pos="0 0 3"/><geom type="box" size=".2 .2 .2" rgba="1 0 0 1"/>'
    '<camera name="c" pos="0 0 2"/></worldbody></mujoco>')
d = mujoco.MjData(m)
mujoco.mj_forward(m, d)
r = mujoco.Renderer(m, 16, 16)
r.update_scene(d, camera="c")
img = r.render()
renderer = "unknown"
try:
    from OpenGL import GL  # the renderer's context is still current
    renderer = GL.glGetString(GL.GL_RENDERER).decode()
except Exception:
    pass
r.close()
assert img.shape == (16, 16, 3) and img[8, 8, 0] > 0, "rendered frame is empty"
print(json.dumps({"renderer": renderer}))
"""

_selected: str | None = None


def probe_platform(platform: str, timeout_s: float = _PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """Try MuJoCo offscreen rendering with ``MUJOCO_GL=platform`` in a subprocess.

    Args:
        platform: ``"egl"`` or ``"osmesa"``.
        timeout_s: seconds before the probe counts as failed.

    Returns:
        (ok, detail): ``detail`` is the GL renderer string on success, else the
        last lines of the probe's error output.
    """
    env = dict(os.environ, MUJOCO_GL=platform, PYOPENGL_PLATFORM=platform)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE_SRC],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return False, f"probe timed out after {timeout_s:.0f} s"
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return False, (lines[-1].strip()[:400] if lines else f"exit status {proc.returncode}")
    try:
        return True, json.loads(proc.stdout.strip().splitlines()[-1])["renderer"]
    except (IndexError, ValueError, KeyError):
        return True, "unknown"


def ensure_gl_platform() -> str:
    """Choose the MuJoCo GL platform for this process (see the module docstring).

    Returns:
        The platform name in ``MUJOCO_GL`` (``"egl"``, ``"osmesa"``, or whatever
        the user set).

    Raises:
        BackendUnavailable: neither EGL nor OSMesa can render; the message lists
            both errors and the Debian packages to install.
    """
    global _selected
    if _selected is not None:
        return _selected
    preset = os.environ.get("MUJOCO_GL", "").strip().lower()
    if preset:
        if preset in ("egl", "osmesa"):
            os.environ.setdefault("PYOPENGL_PLATFORM", preset)
        _selected = preset
        return _selected
    if "mujoco" in sys.modules:
        log.warning(
            "mujoco was imported before flyby chose a GL platform; flyby will create "
            "its own EGL/OSMesa context, but set MUJOCO_GL=egl before importing mujoco "
            "to make mujoco.Renderer use the same platform"
        )
    errors = {}
    for platform in ("egl", "osmesa"):
        ok, detail = probe_platform(platform)
        if ok:
            os.environ["MUJOCO_GL"] = platform
            os.environ["PYOPENGL_PLATFORM"] = platform
            log.info("MuJoCo GL platform: %s (%s)", platform, detail)
            _selected = platform
            return _selected
        errors[platform] = detail
    raise BackendUnavailable(
        "MuJoCo offscreen rendering works with neither EGL nor OSMesa.\n"
        f"  EGL error: {errors['egl']}\n"
        f"  OSMesa error: {errors['osmesa']}\n"
        f"Fix: apt-get install -y {PLATFORM_PACKAGES['egl']} (EGL) or "
        f"apt-get install -y {PLATFORM_PACKAGES['osmesa']} (OSMesa), "
        "or set MUJOCO_GL to a platform that works on this machine."
    )
