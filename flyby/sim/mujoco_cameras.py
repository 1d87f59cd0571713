"""Offscreen rendering of the MuJoCo scene: drone cameras in tiled batches, and the overview camera.

Rendering uses one GL context (EGL, else OSMesa; see :mod:`flyby.sim.gl`) and
one offscreen framebuffer. All drone cameras of a batch are drawn as
viewports of that framebuffer (``mjv_updateScene`` + ``mjr_render`` per
viewport) and read back with a single ``mjr_readPixels``, which on Mesa
llvmpipe is about 1.5x faster than one ``mujoco.Renderer`` per camera
(DESIGN.md, "Facts we measured"). A batch larger than the framebuffer
(:data:`_MAX_BUFFER_PX` per side) is drawn in several passes.

The overview camera (:class:`OverviewCamera`) is fixed south of the area,
looking north and down, placed by :func:`overview_camera_for` so the whole area
fits; it sees the drones' marker spheres (scene group 4, see
:mod:`flyby.sim.mujoco_scene`), which drone cameras do not.

:class:`MujocoRenderer` owns the GL and MuJoCo render contexts; the caller
(:class:`~flyby.sim.mujoco_backend.MujocoBackend`) runs forward kinematics
before asking it for pixels.
"""

from __future__ import annotations

import logging
import math
import weakref

import numpy as np

from flyby.errors import BackendUnavailable
from flyby.perception.camera import CameraCfg
from flyby.sim.mujoco_import import GL_PLATFORM, mujoco
from flyby.sim.mujoco_scene import GROUP_DRONE_MARKER, GROUP_WORLD
from flyby.sim.overview import OverviewCamera, overview_camera_for
from flyby.sim.tiling import grid_shape

log = logging.getLogger(__name__)

__all__ = ["MujocoRenderer", "OverviewCamera", "check_overview_size", "overview_camera_for", "viewport_grid"]

# Largest offscreen framebuffer side we ask for, pixels (llvmpipe allows 16384;
# a larger batch of cameras is rendered in several passes).
_MAX_BUFFER_PX = 4096


def check_overview_size(overview_size: tuple[int, int]) -> tuple[int, int]:
    """``(width, height)`` of the overview image as ints, pixels.

    Raises:
        ValueError: a side below 1 or above :data:`_MAX_BUFFER_PX`.
    """
    ow, oh = (int(v) for v in overview_size)
    if ow < 1 or oh < 1 or ow > _MAX_BUFFER_PX or oh > _MAX_BUFFER_PX:
        raise ValueError(f"overview_size={overview_size} must be within 1..{_MAX_BUFFER_PX} px per side")
    return ow, oh


def viewport_grid(num_drones: int, camera: CameraCfg) -> tuple[int, int]:
    """(rows, cols) of camera viewports drawn per pass: as many tiles as fit in the framebuffer.

    Raises:
        ValueError: the camera image is larger than :data:`_MAX_BUFFER_PX` on a side.
    """
    w, h = camera.width, camera.height
    if w > _MAX_BUFFER_PX or h > _MAX_BUFFER_PX:
        raise ValueError(f"camera {w}x{h} px exceeds the {_MAX_BUFFER_PX} px offscreen framebuffer limit")
    rows, cols = grid_shape(num_drones)
    cols = min(cols, _MAX_BUFFER_PX // w)
    rows = min(math.ceil(num_drones / cols), _MAX_BUFFER_PX // h)
    return rows, cols


def _gl_context_class():
    """The GLContext class for the selected platform (imported directly, so it works
    even when mujoco was imported before :func:`ensure_gl_platform` ran)."""
    if GL_PLATFORM == "egl":
        from mujoco.egl import GLContext
    elif GL_PLATFORM == "osmesa":
        from mujoco.osmesa import GLContext
    else:
        GLContext = getattr(mujoco, "GLContext", None)
        if GLContext is None:
            raise BackendUnavailable(
                f"mujoco has no OpenGL context for MUJOCO_GL={GL_PLATFORM!r}; unset it or set egl"
            )
    return GLContext


def _gl_renderer_string() -> str:
    try:
        from OpenGL import GL

        vendor = GL.glGetString(GL.GL_VENDOR)
        renderer = GL.glGetString(GL.GL_RENDERER)
        return f"{renderer.decode()} / {vendor.decode()}"
    except Exception as err:  # PyOpenGL missing or no GL entry points: describe without it
        log.debug("cannot read the GL renderer string: %s", err)
        return "renderer unknown"


class _GLResources:
    """GL context + MuJoCo render context, freed once (by close() or at exit)."""

    def __init__(self, gl_context, mjr_context) -> None:
        self.gl_context = gl_context
        self.mjr_context = mjr_context

    def free(self) -> None:
        if self.mjr_context is not None:
            try:
                self.gl_context.make_current()
                self.mjr_context.free()
            finally:
                self.mjr_context = None
        if self.gl_context is not None:
            gl, self.gl_context = self.gl_context, None
            gl.free()


class MujocoRenderer:
    """The GL context, MuJoCo render context and cameras that draw one compiled scene offscreen.

    Args:
        model: the compiled scene (:func:`~flyby.sim.mujoco_scene.build_mjcf`) with cameras
            ``drone_cam_0`` ... ``drone_cam_<N-1>`` and ``overview``; its offscreen
            framebuffer must be ``framebuffer_size``.
        num_drones: N drone cameras.
        camera: drone camera resolution (all drones share it).
        grid: (rows, cols) viewports per pass, from :func:`viewport_grid`.
        overview_size: (width, height) of the overview image, pixels.
        framebuffer_size: (width, height) of the offscreen framebuffer, pixels.
        shadows: draw the sun's shadows (the shadow map is redrawn for every viewport).

    Raises:
        BackendUnavailable: no OpenGL context can be created, or the framebuffer MuJoCo
            made is not ``framebuffer_size``.

    Used from one thread at a time: each render call makes the GL context current.
    """

    def __init__(
        self,
        model,
        num_drones: int,
        camera: CameraCfg,
        grid: tuple[int, int],
        overview_size: tuple[int, int],
        framebuffer_size: tuple[int, int],
        shadows: bool,
    ) -> None:
        self.model = model
        self.grid = grid
        self._camera = camera
        self._resources: _GLResources | None = None

        def cam_id(name: str) -> int:
            return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, name)

        self._drone_cams = []
        for i in range(num_drones):
            cam = mujoco.MjvCamera()
            cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
            cam.fixedcamid = cam_id(f"drone_cam_{i}")
            self._drone_cams.append(cam)
        self._overview_cam = mujoco.MjvCamera()
        self._overview_cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._overview_cam.fixedcamid = cam_id("overview")

        # Drone cameras see the world only; the overview also sees the drone markers. The
        # drone bodies (group 3) sit inside their 2 m markers, so the overview skips them
        # too (they are there for close-up cameras).
        self._opt_drone = mujoco.MjvOption()
        self._opt_drone.geomgroup[:] = 0
        self._opt_drone.geomgroup[GROUP_WORLD] = 1
        self._opt_overview = mujoco.MjvOption()
        self._opt_overview.geomgroup[:] = 0
        for g in (GROUP_WORLD, GROUP_DRONE_MARKER):
            self._opt_overview.geomgroup[g] = 1

        buf_w, buf_h = framebuffer_size
        gl_cls = _gl_context_class()
        gl_context = None
        try:
            gl_context = gl_cls(buf_w, buf_h)
            gl_context.make_current()
            mjr_context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_50.value)
        except Exception as err:
            if gl_context is not None:
                gl_context.free()
            raise BackendUnavailable(
                f"cannot create a MuJoCo OpenGL context with MUJOCO_GL={GL_PLATFORM!r}: {err}. "
                "Unset MUJOCO_GL to let flyby probe EGL and OSMesa, or install "
                "libegl1 libegl-mesa0 libgl1-mesa-dri (EGL) / libosmesa6 (OSMesa)."
            ) from err
        self._resources = _GLResources(gl_context, mjr_context)
        self._finalizer = weakref.finalize(self, self._resources.free)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN.value, mjr_context)
        if (mjr_context.offWidth, mjr_context.offHeight) != (buf_w, buf_h):
            self.free()
            raise BackendUnavailable(
                f"offscreen framebuffer is {mjr_context.offWidth}x{mjr_context.offHeight}, "
                f"expected {buf_w}x{buf_h}"
            )
        self.gl_string = _gl_renderer_string()  # "<GL renderer> / <vendor>", for report headers

        self._scene = mujoco.MjvScene(model, maxgeom=model.ngeom + 64)
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = bool(shadows)
        self._scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = True
        rows, cols = grid
        w, h = camera.width, camera.height
        self._pixels = np.empty(rows * h * cols * w * 3, dtype=np.uint8)  # flat: passes use a prefix
        ow, oh = overview_size
        self._overview_pixels = np.empty((oh, ow, 3), dtype=np.uint8)

    @property
    def closed(self) -> bool:
        """True once :meth:`free` ran; rendering then raises RuntimeError."""
        return self._resources is None

    def _context(self):
        """Make the GL context current; the MuJoCo render context.

        Raises:
            RuntimeError: the contexts were freed.
        """
        if self._resources is None:
            raise RuntimeError("MujocoBackend is closed; make a new backend to render")
        self._resources.gl_context.make_current()
        return self._resources.mjr_context

    def render_cameras(self, data, ids: np.ndarray) -> np.ndarray:
        """Render drone cameras, all as viewports of the offscreen framebuffer.

        Args:
            data: the scene's MjData, forward kinematics and ``mj_camlight`` already run.
            ids: (n,) int drone indices, validated by the caller. Output row i is drone ``ids[i]``.

        Returns:
            (n, H, W, 3) uint8 RGB, rows top to bottom, ``(H, W) = (camera.height, camera.width)``.

        Raises:
            RuntimeError: the contexts were freed and ``ids`` is not empty.
        """
        w, h = self._camera.width, self._camera.height
        out = np.empty((ids.size, h, w, 3), dtype=np.uint8)
        if ids.size == 0:
            return out
        con = self._context()
        rows, cols = self.grid
        per_pass = rows * cols
        for start in range(0, ids.size, per_pass):
            batch = ids[start : start + per_pass]
            n_rows = math.ceil(batch.size / cols)
            n_cols = min(cols, batch.size)
            for k, i in enumerate(batch):
                r, c = divmod(k, cols)
                # MjrRect origin is bottom-left: tile row r (from the top) sits at bottom (n_rows-1-r)*h.
                rect = mujoco.MjrRect(c * w, (n_rows - 1 - r) * h, w, h)
                mujoco.mjv_updateScene(
                    self.model, data, self._opt_drone, None, self._drone_cams[i],
                    mujoco.mjtCatBit.mjCAT_ALL.value, self._scene,
                )  # fmt: skip
                mujoco.mjr_render(rect, self._scene, con)
            region = self._pixels[: n_rows * h * n_cols * w * 3].reshape(n_rows * h, n_cols * w, 3)
            mujoco.mjr_readPixels(region, None, mujoco.MjrRect(0, 0, n_cols * w, n_rows * h), con)
            # readPixels rows run bottom-up: flip, then cut the grid into tiles.
            img = region[::-1]
            full = batch.size // n_cols * n_cols
            if full:
                tiles = img[: (full // n_cols) * h].reshape(full // n_cols, h, n_cols, w, 3).swapaxes(1, 2)
                out[start : start + full] = tiles.reshape(full, h, w, 3)
            for k in range(full, batch.size):  # the partial last row
                r, c = divmod(k, n_cols)
                out[start + k] = img[r * h : (r + 1) * h, c * w : (c + 1) * w]
        return out

    def render_overview(self, data) -> np.ndarray:
        """Render the overview camera (drones shown with their marker spheres).

        Args:
            data: the scene's MjData, forward kinematics and ``mj_camlight`` already run.

        Returns:
            (H, W, 3) uint8 RGB at ``overview_size``, rows top to bottom.

        Raises:
            RuntimeError: the contexts were freed.
        """
        con = self._context()
        oh, ow = self._overview_pixels.shape[:2]
        rect = mujoco.MjrRect(0, 0, ow, oh)
        mujoco.mjv_updateScene(
            self.model, data, self._opt_overview, None, self._overview_cam,
            mujoco.mjtCatBit.mjCAT_ALL.value, self._scene,
        )  # fmt: skip
        mujoco.mjr_render(rect, self._scene, con)
        mujoco.mjr_readPixels(self._overview_pixels, None, rect, con)
        return self._overview_pixels[::-1].copy()

    def free(self) -> None:
        """Free the GL and MuJoCo render contexts; later calls do nothing."""
        if self._resources is not None:
            self._finalizer.detach()
            resources, self._resources = self._resources, None
            resources.free()
