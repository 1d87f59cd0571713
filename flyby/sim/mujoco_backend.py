"""The embedded MuJoCo backend: the ISR world as an MJCF scene, rendered offscreen.

:class:`MujocoBackend` is the class callers construct (usually through
:func:`flyby.sim.base.make_backend`). It composes three parts, one module each:

- :mod:`flyby.sim.mujoco_scene`: the MJCF text (world geometry, drones, materials,
  lights), scene groups, collision filter and frames;
- :mod:`flyby.sim.mujoco_cameras`: drone cameras rendered in tiled batches, and
  the overview camera;
- :mod:`flyby.sim.mujoco_dynamics`: the drones' state in MjData, kinematic
  (mocap bodies whose poses the caller writes; the default) or dynamic
  (``dynamic=MultirotorCfg(...)``: free rigid bodies moved by a body wrench,
  colliding with the ground and buildings, stepped at ``physics_dt``, 250 Hz by
  default, without rendering).

Before a render the backend runs forward kinematics once (``mj_kinematics`` +
``mj_camlight``) if a pose changed or physics stepped. Frames: world ENU,
metres; drone quaternions wxyz rotate body FLU into world.

Importing this module selects the GL platform and imports mujoco
(:mod:`flyby.sim.mujoco_import`). ``mujoco``, ``build_mjcf``, ``OverviewCamera`` and
``PhysicsUnstable`` stay importable from here for the modules that import them from here.
"""

from __future__ import annotations

import logging

import numpy as np

from flyby.config import check
from flyby.dynamics.multirotor import DroneState, MultirotorCfg
from flyby.enums import BackendKind
from flyby.errors import PhysicsUnstable
from flyby.perception.camera import CameraCfg
from flyby.sim.mujoco_cameras import (
    MujocoRenderer,
    OverviewCamera,
    check_overview_size,
    overview_camera_for,
    viewport_grid,
)
from flyby.sim.mujoco_dynamics import (
    FreeBodyDrones,
    FreeBodyViews,
    MocapDrones,
    MocapTargets,
    check_drone_ids,
    check_drone_poses,
)
from flyby.sim.mujoco_import import GL_PLATFORM, mujoco
from flyby.sim.mujoco_scene import build_mjcf, target_rgba
from flyby.sim.tiling import tile_images
from flyby.world.world import ISRWorld

log = logging.getLogger(__name__)

__all__ = ["MujocoBackend", "OverviewCamera", "PhysicsUnstable", "build_mjcf", "mujoco"]


class MujocoBackend:
    """MuJoCo scene of an ISR world with ``num_drones`` camera drones (offscreen rendering).

    Implements :class:`flyby.sim.base.SimBackend`. Kinematic by default; with
    ``dynamic`` the drones are rigid bodies driven by :meth:`apply_body_wrench`
    and :meth:`step_physics` (see the module docstring).

    Args:
        world: the ISR world (buildings, roads, targets at ``target_poses(0)``).
        num_drones: N >= 1 drones. They start in a row along x at 30 m altitude, yaw 0.
        camera: drone camera mount and resolution preset (all drones share it).
        overview_size: (width, height) of the overview image, pixels.
        shadows: draw the sun's shadows. Costly on a CPU renderer: the shadow map is
            redrawn for every viewport (16 x 80x80 cameras: about 9 ms -> 140 ms on llvmpipe).
        antialias: 4x multisample anti-aliasing (about 2x slower on a CPU renderer).
        overview_pitch_deg: downward pitch of the overview camera looking north, degrees.
        dynamic: airframe of the free-body drones (dynamic mode), or None for kinematic
            mocap drones.
        physics_dt: physics step of dynamic mode, seconds (0.004 = 250 Hz, the IMU rate
            PX4 expects).

    Raises:
        ValueError: ``num_drones < 1``, an overview or camera size over 4096 px, or
            ``physics_dt`` not in (0, 0.02].
        ConfigError: ``dynamic`` has invalid values.
        BackendUnavailable: no OpenGL context can be created.

    A backend is used from one thread at a time (it makes its GL context current
    on each render call).
    """

    kind = BackendKind.MUJOCO

    def __init__(
        self,
        world: ISRWorld,
        num_drones: int,
        camera: CameraCfg,
        overview_size: tuple[int, int] = (640, 480),
        shadows: bool = False,
        antialias: bool = False,
        overview_pitch_deg: float = 60.0,
        dynamic: MultirotorCfg | None = None,
        physics_dt: float = 0.004,
    ) -> None:
        if int(num_drones) < 1:
            raise ValueError(f"num_drones={num_drones} must be >= 1")
        if not 0.0 < physics_dt <= 0.02:
            raise ValueError(
                f"physics_dt={physics_dt} s must be in (0, 0.02] (MuJoCo's default contact "
                "time constant 0.02 s needs at least two steps per constant); use 0.004 for 250 Hz"
            )
        if dynamic is not None:
            check(dynamic)
        self._dynamic = dynamic
        self._physics_dt = float(physics_dt)
        ow, oh = check_overview_size(overview_size)
        self._world = world
        self._num_drones = int(num_drones)
        self._camera = camera
        self._overview = overview_camera_for(world, ow, oh, pitch_deg=overview_pitch_deg)

        # Viewport grid: as many camera tiles per pass as fit in the framebuffer.
        rows, cols = viewport_grid(self._num_drones, camera)
        buf_w, buf_h = max(cols * camera.width, ow), max(rows * camera.height, oh)

        x0 = (np.arange(self._num_drones) - 0.5 * (self._num_drones - 1)) * 5.0
        drone_pos0 = np.stack([x0, np.zeros_like(x0), np.full_like(x0, 30.0)], axis=1)
        self.mjcf = build_mjcf(
            world,
            self._num_drones,
            camera,
            self._overview,
            (buf_w, buf_h),
            drone_pos0,
            antialias=antialias,
            dynamic=dynamic,
            physics_dt=self._physics_dt,
        )
        self.model = mujoco.MjModel.from_xml_string(self.mjcf)
        self.data = mujoco.MjData(self.model)

        def body(name: str) -> int:
            return mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, name)

        drone_body = np.array([body(f"drone_{i}") for i in range(self._num_drones)], dtype=np.intp)
        # Kinematic: MocapDrones (set_drone_poses); dynamic: FreeBodyDrones (reset/wrench/step/state).
        self._drones = (MocapDrones if dynamic is None else FreeBodyDrones)(self.model, self.data, drone_body)
        self._targets = MocapTargets(self.model, self.data, world.num_targets)
        self._dirty = True
        self._renderer = MujocoRenderer(
            self.model, self._num_drones, camera, (rows, cols), (ow, oh), (buf_w, buf_h), bool(shadows)
        )
        log.info("MuJoCo backend: %s", self.description)

    # ------------------------------------------------------------------ properties

    @property
    def description(self) -> str:
        """``"mujoco <version>, <GL platform>, <GL renderer / vendor>"``."""
        return f"mujoco {mujoco.__version__}, {GL_PLATFORM.upper()} ({self._renderer.gl_string})"

    @property
    def num_drones(self) -> int:
        return self._num_drones

    @property
    def camera(self) -> CameraCfg:
        return self._camera

    @property
    def world(self) -> ISRWorld:
        return self._world

    @property
    def overview_camera(self) -> OverviewCamera:
        """Intrinsics and pose of the overview camera."""
        return self._overview

    @property
    def target_rgba(self) -> np.ndarray:
        """(T, 4) float64 RGBA of each target box."""
        return target_rgba(self._world)

    @property
    def closed(self) -> bool:
        return self._renderer.closed

    # ------------------------------------------------------------------ poses

    def set_drone_poses(
        self, pos_w: np.ndarray, quat_wxyz: np.ndarray, ids: np.ndarray | None = None
    ) -> None:
        """Place drones. See :meth:`flyby.sim.base.SimBackend.set_drone_poses`.

        Args:
            pos_w: (n, 3) float, metres, world ENU.
            quat_wxyz: (n, 4) float, body FLU -> world, wxyz; normalised here.
            ids: (n,) int in ``[0, N)``, or None for all N in order.

        Raises:
            ValueError: wrong shapes, ids out of range, non-finite values or a zero quaternion.
            RuntimeError: the backend is in dynamic mode (drones move by physics; use
                :meth:`reset_drone_states`).
        """
        if self._dynamic is not None:
            raise RuntimeError(
                "set_drone_poses is for kinematic drones; this backend is in dynamic mode, where "
                "drones move by physics: use reset_drone_states(pos_w, quat_wxyz, ids) to place them"
            )
        ids, pos, quat = check_drone_poses(pos_w, quat_wxyz, ids, self._num_drones)
        self._drones.set_poses(ids, pos, quat)
        self._dirty = True

    def set_target_poses(self, pos_w: np.ndarray, yaw_rad: np.ndarray) -> None:
        """Place all T targets. See :meth:`flyby.sim.base.SimBackend.set_target_poses`.

        Args:
            pos_w: (T, 3) float, metres, world ENU, box centres.
            yaw_rad: (T,) float, radians about world z.

        Raises:
            ValueError: wrong shapes or non-finite values.
        """
        self._targets.set_poses(pos_w, yaw_rad)
        self._dirty = True

    def drone_poses(self) -> tuple[np.ndarray, np.ndarray]:
        """Current drone poses: (N, 3) float64 pos_w (metres, ENU) and (N, 4) float64 quat_wxyz."""
        return self._drones.poses()

    # ------------------------------------------------------------------ dynamic mode

    @property
    def dynamic(self) -> MultirotorCfg | None:
        """The airframe of the free-body drones, or None in kinematic mode."""
        return self._dynamic

    @property
    def physics_dt(self) -> float:
        """Physics step, seconds (dynamic mode)."""
        return self._physics_dt

    @property
    def sim_time_s(self) -> float:
        """Simulated time, seconds, since the backend was built (advanced by :meth:`step_physics`)."""
        return float(self.data.time)

    def _require_dynamic(self, what: str) -> None:
        if self._dynamic is None:
            raise RuntimeError(
                f"{what} needs dynamic mode: build the backend with dynamic=MultirotorCfg() "
                "(from flyby.dynamics.multirotor)"
            )

    def reset_drone_states(
        self, pos_w: np.ndarray, quat_wxyz: np.ndarray, ids: np.ndarray | None = None
    ) -> None:
        """Place drones at rest (zero velocity) and clear their wrench (dynamic mode).

        Runs ``mj_forward`` so :meth:`drone_state` is valid at once (specific force,
        contact flags of the new poses).

        Args:
            pos_w: (n, 3) float, metres, world ENU, centre of mass.
            quat_wxyz: (n, 4) float, body FLU -> world, wxyz; normalised here.
            ids: (n,) int in ``[0, N)``, or None for all N in order.

        Raises:
            ValueError: wrong shapes, ids out of range, non-finite values or a zero quaternion.
            RuntimeError: kinematic mode.
        """
        self._require_dynamic("reset_drone_states")
        ids, pos, quat = check_drone_poses(pos_w, quat_wxyz, ids, self._num_drones)
        self._drones.reset(ids, pos, quat)
        self._dirty = True

    def apply_body_wrench(self, force_b: np.ndarray, torque_b: np.ndarray) -> None:
        """Set the wrench on every drone, held (in the body frame) until changed (dynamic mode).

        The wrench acts at the centre of mass through six MuJoCo ``motor``
        actuators on a body site, so it turns with the drone during the
        physics steps of :meth:`step_physics` (``xfrc_applied`` stays free for
        external disturbances).

        Args:
            force_b: (N, 3) float, newtons, body FLU (e.g. ``RotorModel.wrench_b``).
            torque_b: (N, 3) float, newton metres, body FLU.

        Raises:
            ValueError: wrong shapes, or values non-finite or beyond MuJoCo's 1e10.
            RuntimeError: kinematic mode.
        """
        self._require_dynamic("apply_body_wrench")
        self._drones.apply_body_wrench(force_b, torque_b)

    def free_body_views(self) -> FreeBodyViews:
        """Views into MjData of the drones' free joints and wrench inputs (dynamic mode).

        For compiled controllers that read the state and write the wrench in place, between
        :meth:`step_physics` calls, without the copies of :meth:`drone_state` and
        :meth:`apply_body_wrench` (:mod:`flyby.dynamics.flight_stack_motion`). The views stay
        valid until :meth:`close`.

        Returns:
            A :class:`~flyby.sim.mujoco_dynamics.FreeBodyViews`.

        Raises:
            RuntimeError: kinematic mode.
        """
        self._require_dynamic("free_body_views")
        return self._drones.views()

    def step_physics(self, n: int = 1) -> None:
        """Advance the physics by ``n`` steps of ``physics_dt`` (``mj_step``, no rendering).

        The contact flags of :meth:`drone_state` then say which drones touched the
        ground or a building during any of these ``n`` steps.

        Raises:
            ValueError: ``n`` < 1.
            RuntimeError: kinematic mode.
            PhysicsUnstable: MuJoCo met NaN or huge accelerations (e.g. from a wrench far
                beyond the airframe's, or an uncontrolled spin) and reset every body to
                its initial state; place the drones again with :meth:`reset_drone_states`.
        """
        self._require_dynamic("step_physics")
        if n < 1:
            raise ValueError(f"n must be >= 1 physics steps, got {n}")
        try:
            self._drones.step(n)
        finally:
            self._dirty = True

    def drone_state(self) -> DroneState:
        """The drones' rigid-body state after the last physics step (dynamic mode).

        ``specific_force_b`` is ``R_wb^T (a_w - g_w)`` with ``a_w`` the linear
        acceleration MuJoCo computed for the last step (``qacc``: thrust, drag,
        contacts and gravity), so it reads (0, 0, +9.81) at rest on level ground
        or in steady hover, and 0 in free fall. ``contact`` covers every step of
        the last :meth:`step_physics` call (or the pose set by
        :meth:`reset_drone_states`).

        Returns:
            A :class:`~flyby.dynamics.multirotor.DroneState` of (N, ...) float64 copies.

        Raises:
            RuntimeError: kinematic mode.
        """
        self._require_dynamic("drone_state")
        return self._drones.state()

    # ------------------------------------------------------------------ rendering

    def _forward(self) -> None:
        """Forward kinematics and camera/light poses, once after a pose changed or physics stepped."""
        if self._dirty:
            mujoco.mj_kinematics(self.model, self.data)
            mujoco.mj_camlight(self.model, self.data)
            self._dirty = False

    def render_cameras(self, ids: np.ndarray | None = None) -> np.ndarray:
        """Render drone cameras, all as viewports of one offscreen framebuffer.

        Args:
            ids: (n,) int drone indices, or None for all N. Output row i is drone ``ids[i]``.

        Returns:
            (n, H, W, 3) uint8 RGB, rows top to bottom, ``(H, W) = (camera.height, camera.width)``.

        Raises:
            ValueError: bad ``ids``.
            RuntimeError: the backend is closed.
        """
        ids = check_drone_ids(ids, self._num_drones)
        self._forward()
        return self._renderer.render_cameras(self.data, ids)

    def render_grid(self, ids: np.ndarray | None = None, **tile_kwargs) -> tuple[np.ndarray, np.ndarray]:
        """Drone cameras tiled into one image: ``tile_images(render_cameras(ids), **tile_kwargs)``.

        Returns:
            grid: (rows*H + pads, cols*W + pads, 3) uint8; offsets: (n, 2) int64 (x, y) per tile.
        """
        return tile_images(self.render_cameras(ids), **tile_kwargs)

    def render_overview(self) -> np.ndarray:
        """Render the fixed overview camera (drones shown with their marker spheres).

        Returns:
            (H, W, 3) uint8 RGB at ``overview_size``, rows top to bottom.

        Raises:
            RuntimeError: the backend is closed.
        """
        self._forward()
        return self._renderer.render_overview(self.data)

    def overview_project(self, points_w: np.ndarray) -> np.ndarray:
        """Project world points into the overview image.

        Args:
            points_w: (K, 3) float, metres, world ENU.

        Returns:
            (K, 2) float64 pixel coordinates (u right, v down); NaN behind the camera.
        """
        return self._overview.project(points_w)

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Free the GL and MuJoCo render contexts; later calls do nothing."""
        self._renderer.free()

    def __enter__(self) -> MujocoBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        mode = "kinematic" if self._dynamic is None else f"dynamic, physics_dt={self._physics_dt:g}"
        preset = self._camera.preset.value
        return f"MujocoBackend(num_drones={self._num_drones}, preset={preset}, {mode}, {state})"
