"""Isaac Sim 5.1 backend: flyby's USD stage in Isaac Sim, drones kinematic or rigid bodies, RTX cameras.

Runs where Isaac Sim 5.1 is importable: flyby's container (``podman/README.md``). It has not been
run on an RTX machine yet; every Isaac Sim call below was checked against the Isaac Sim sources at
tag ``v5.1.0`` (``isaac-sim/IsaacSim``, ``source/extensions/...``) and is listed here with them:

- ``isaacsim.SimulationApp(launch_config)`` (``isaacsim.simulation_app``): one per process, created
  by :func:`simulation_app` before any other ``isaacsim``/``omni``/Kit ``pxr`` import; headless,
  ``renderer`` ``RaytracedLighting`` (``FLYBY_ISAAC_RENDERER`` changes it), ``anti_aliasing`` 0
  (off; 3 would be DLSS), ``disable_viewport_updates`` on (it only acts headless).
- the scene is :func:`flyby.sim.usd_stage.build_usd_stage` (the same world MuJoCo draws), written
  to a temporary ``.usd`` and opened with ``isaacsim.core.utils.stage.open_stage``, waiting on
  ``is_stage_loading()``; then ``isaacsim.core.api.World(physics_dt, rendering_dt,
  stage_units_in_meters=1.0, physics_prim_path=...)`` and ``world.reset()``.
- targets and kinematic drones: ``isaacsim.core.prims.XFormPrim(paths)``,
  ``set_world_poses(positions (M, 3), orientations (M, 4) wxyz, indices)``.
- dynamic drones: ``isaacsim.core.prims.RigidPrim(paths)``; the body wrench goes in with
  ``apply_forces_and_torques_at_pos(forces, torques, positions=0, is_global=False)`` (body frame,
  at the body origin = centre of mass) before *every* physics step, as Isaac Lab's
  ``RigidObject.write_data_to_sim`` does; ``world.step(render=False)`` steps physics only.
  ``get_world_poses`` (wxyz), ``get_linear_velocities`` and ``get_angular_velocities`` are world
  frame; the angular velocity is turned into the body frame here, and the specific force is the
  finite difference of the world velocity over the last physics step, minus gravity, in the body
  frame (MuJoCo's backend reads ``qacc`` instead). Contact comes from the net contact force
  (``track_contact_forces=True``, ``get_net_contact_forces``).
- cameras: one Replicator render product per drone (``omni.replicator.core.create.render_product(
  camera_path, (W, H))``) with an ``rgb`` annotator on the CPU (``device="cpu"``, as Isaac Lab's
  recorders ask for it: RGBA uint8 numpy, H x W x 4), and one for the
  overview; ``rep.orchestrator.step(delta_time=0.0)`` renders them without advancing physics.
  Tiled cameras (``CameraView``) would render faster but support no 2-D box annotator; per-drone
  render products keep ``bounding_box_2d_tight`` available (:meth:`IsaacBackend.annotator_boxes`),
  the second ground truth the contract compares with the analytic one.

Frames and units: flyby's (world ENU, metres, wxyz body FLU -> world), the stage's units are
metres with Z up (:mod:`flyby.sim.usd_stage`).
"""

from __future__ import annotations

import atexit
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from flyby.config import check
from flyby.enums import BackendKind
from flyby.errors import BackendUnavailable, PhysicsUnstable
from flyby.geometry import STANDARD_GRAVITY, rotate_inverse, yaw_quat_wxyz
from flyby.perception.camera import CameraCfg
from flyby.sim.overview import overview_camera_for
from flyby.sim.poses import check_drone_ids, check_drone_poses, check_target_poses
from flyby.sim.tiling import tile_images
from flyby.world.world import ISRWorld

log = logging.getLogger(__name__)

__all__ = ["RENDERER_ENV", "IsaacBackend", "isaac_launch_config", "simulation_app"]

RENDERER_ENV = "FLYBY_ISAAC_RENDERER"  # Isaac Sim renderer: RaytracedLighting (default) or PathTracing
_CONTAINER_HINT = "run inside flyby's container: podman/README.md (podman/run.sh)"
_APP: Any = None  # the process's one SimulationApp


def isaac_launch_config(width: int = 640, height: int = 480, *, headless: bool = True) -> dict[str, Any]:
    """The ``SimulationApp`` launch config flyby uses (keys of Isaac Sim 5.1's ``DEFAULT_LAUNCHER_CONFIG``).

    Args:
        width, height: the app's render resolution, pixels (render products set their own).
        headless: no window (the container has no display).

    Returns:
        ``{"headless", "hide_ui", "renderer", "anti_aliasing", "width", "height",
        "disable_viewport_updates", "sync_loads"}``; ``renderer`` from ``$FLYBY_ISAAC_RENDERER``
        (default ``RaytracedLighting``).
    """
    return {
        "headless": bool(headless),
        "hide_ui": True,
        "renderer": os.environ.get(RENDERER_ENV, "").strip() or "RaytracedLighting",
        "anti_aliasing": 0,  # /rtx/post/aa/op: 0 off (1 TAA, 2 FXAA, 3 DLSS, 4 RTXAA)
        "width": int(width),
        "height": int(height),
        "disable_viewport_updates": True,  # headless only: no viewport redraws between renders
        "sync_loads": True,
    }


def simulation_app(config: dict[str, Any] | None = None):
    """The process's one ``isaacsim.SimulationApp``, started on the first call (closed at exit).

    Must run before any other Isaac Sim, Omniverse or Kit ``pxr`` import; the backend calls it
    first thing.

    Raises:
        BackendUnavailable: Isaac Sim is not importable here (the message names the container).
    """
    global _APP
    if _APP is None:
        try:
            from isaacsim import SimulationApp
        except ImportError as exc:
            raise BackendUnavailable(
                f"Isaac Sim not importable ({exc}); {_CONTAINER_HINT}. Here, FLYBY_BACKEND=mujoco "
                "(or backend='mujoco') uses the embedded MuJoCo backend."
            ) from None
        _APP = SimulationApp(config or isaac_launch_config())
        atexit.register(_close_app)
    return _APP


def _close_app() -> None:
    global _APP
    if _APP is not None:
        app, _APP = _APP, None
        app.close()


def _isaac_version() -> str:
    """``"5.1.0"`` from ``isaacsim.core.version.get_version()`` (``$ISAAC_PATH/VERSION``), or ``"?"``."""
    try:
        from isaacsim.core.version import get_version

        parts = get_version()
        return ".".join(parts[2:5]) if len(parts) >= 5 and all(parts[2:5]) else (parts[0] or "?")
    except (ImportError, OSError, TypeError, ValueError):  # the version is for the report header only
        return "?"


class IsaacBackend:
    """:class:`~flyby.sim.base.SimBackend` (and, with ``dynamic``, ``DynamicSimBackend``) on Isaac Sim 5.1.

    Args:
        world: the ISR world.
        num_drones: N >= 1.
        camera: the drone camera (preset resolution, mount, field of view).
        overview_size: (width, height) of the overview image, pixels.
        shadows, antialias: accepted for the MuJoCo backend's signature; RTX lights and shadows
            come from the stage's lights, anti-aliasing stays off (``anti_aliasing`` 0).
        overview_pitch_deg: the overview camera's pitch below the horizon.
        dynamic: None for kinematic drones; a :class:`~flyby.dynamics.multirotor.MultirotorCfg`
            for rigid-body drones driven by :meth:`apply_body_wrench` and :meth:`step_physics`.
        physics_dt: physics step, seconds (0.004 = 250 Hz, PX4 SITL's lockstep rate).

    Raises:
        BackendUnavailable: Isaac Sim is not importable (outside the container).
        ValueError: ``num_drones`` < 1 or ``physics_dt`` outside (0, 0.02].
    """

    def __init__(
        self,
        world: ISRWorld,
        num_drones: int,
        camera: CameraCfg,
        overview_size: tuple[int, int] = (640, 480),
        shadows: bool = False,
        antialias: bool = False,
        overview_pitch_deg: float = 60.0,
        dynamic=None,
        physics_dt: float = 0.004,
    ) -> None:
        if int(num_drones) < 1:
            raise ValueError(f"num_drones={num_drones} must be >= 1")
        if not 0.0 < physics_dt <= 0.02:
            raise ValueError(f"physics_dt={physics_dt} s must be in (0, 0.02]; use 0.004 for 250 Hz")
        ow, oh = (int(v) for v in overview_size)
        if ow < 1 or oh < 1:
            raise ValueError(f"overview_size={overview_size} must be positive (width, height) pixels")
        if dynamic is not None:
            check(dynamic)
        self._world_model, self._camera, self._dynamic = world, camera, dynamic
        self._n, self._physics_dt = int(num_drones), float(physics_dt)
        self._overview = overview_camera_for(world, ow, oh, pitch_deg=overview_pitch_deg)
        self._closed = False
        app = self._app = simulation_app(isaac_launch_config(ow, oh))  # before any Kit import

        from flyby.sim.usd_stage import build_usd_stage, drone_path, save_usd_stage, target_path

        x0 = (np.arange(self._n) - 0.5 * (self._n - 1)) * 5.0
        start = np.stack([x0, np.zeros(self._n), np.full(self._n, 30.0)], axis=1)
        stage = build_usd_stage(
            world, self._n, camera, drone_pos_w=start, dynamic=dynamic, overview=self._overview
        )
        self._tmp = tempfile.TemporaryDirectory(prefix="flyby_isaac_")
        usd_path = save_usd_stage(stage, Path(self._tmp.name) / "isr_world.usd")

        from isaacsim.core.api import World
        from isaacsim.core.prims import RigidPrim, XFormPrim
        from isaacsim.core.utils.stage import is_stage_loading, open_stage

        if not open_stage(str(usd_path)):
            raise BackendUnavailable(f"Isaac Sim could not open the stage {usd_path}")
        while is_stage_loading():
            app.update()
        World.clear_instance()  # a World of an earlier backend in this process is stale now
        self._sim = World(
            physics_dt=self._physics_dt,
            rendering_dt=self._physics_dt,
            stage_units_in_meters=1.0,
            physics_prim_path="/World/PhysicsScene",
            backend="numpy",
        )
        self._targets = XFormPrim([target_path(t) for t in range(world.num_targets)], name="flyby_targets")
        drones = [drone_path(i) for i in range(self._n)]
        if dynamic is None:
            self._drones = XFormPrim(drones, name="flyby_drones")
            self._bodies = None
        else:
            self._drones = None
            self._bodies = RigidPrim(drones, name="flyby_drones", track_contact_forces=True)
            self._sim.scene.add(self._bodies)
        self._sim.reset()
        self._wrench_f = np.zeros((self._n, 3))
        self._wrench_t = np.zeros((self._n, 3))
        self._zero_pos = np.zeros((self._n, 3))
        self._contact = np.zeros(self._n, dtype=bool)
        self._vel_prev = np.zeros((self._n, 3))
        self._acc_w = np.zeros((self._n, 3))
        self._make_cameras(drones, (camera.width, camera.height), (ow, oh))
        log.info("Isaac Sim backend: %s", self.description)

    def _make_cameras(self, drones: list[str], size: tuple[int, int], overview_size: tuple[int, int]) -> None:
        import carb
        import omni.replicator.core as rep

        from flyby.sim.usd_stage import OVERVIEW_PATH

        # Render only when asked (rep.orchestrator.step), not on every physics step of a playing timeline.
        carb.settings.get_settings().set("/omni/replicator/captureOnPlay", False)
        self._rep = rep
        self._products, self._rgb = [], []
        for path in [f"{d}/camera" for d in drones]:
            product = rep.create.render_product(path, size)
            annotator = rep.AnnotatorRegistry.get_annotator("rgb", device="cpu")
            annotator.attach([product])
            self._products.append(product)
            self._rgb.append(annotator)
        self._overview_product = rep.create.render_product(OVERVIEW_PATH, overview_size)
        self._overview_rgb = rep.AnnotatorRegistry.get_annotator("rgb", device="cpu")
        self._overview_rgb.attach([self._overview_product])
        self._boxes: dict[int, Any] = {}  # drone -> bounding_box_2d_tight annotator, made on first use

    # ------------------------------------------------------------------ properties

    @property
    def kind(self) -> BackendKind:
        return BackendKind.ISAAC

    @property
    def description(self) -> str:
        """``"Isaac Sim 5.1.0, RaytracedLighting (RTX), anti-aliasing off"``."""
        renderer = isaac_launch_config()["renderer"]
        return f"Isaac Sim {_isaac_version()}, {renderer} (RTX), anti-aliasing off"

    @property
    def num_drones(self) -> int:
        return self._n

    @property
    def camera(self) -> CameraCfg:
        return self._camera

    @property
    def world(self) -> ISRWorld:
        return self._world_model

    @property
    def overview_camera(self):
        """The fixed :class:`~flyby.sim.overview.OverviewCamera`."""
        return self._overview

    @property
    def dynamic(self):
        """The airframe in dynamic mode, None in kinematic mode."""
        return self._dynamic

    @property
    def physics_dt(self) -> float:
        return self._physics_dt

    @property
    def sim_time_s(self) -> float:
        """Physics time since the last reset, seconds."""
        return float(self._sim.current_time)

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ poses

    def set_drone_poses(
        self, pos_w: np.ndarray, quat_wxyz: np.ndarray, ids: np.ndarray | None = None
    ) -> None:
        """Place drones kinematically (see :class:`~flyby.sim.base.SimBackend`).

        Raises:
            ValueError: wrong shapes, ids out of range, non-finite values.
            RuntimeError: dynamic mode (place rigid bodies with :meth:`reset_drone_states`).
        """
        if self._dynamic is not None:
            raise RuntimeError("set_drone_poses is kinematic; in dynamic mode use reset_drone_states")
        ids, pos, quat = check_drone_poses(pos_w, quat_wxyz, ids, self._n)
        self._drones.set_world_poses(positions=pos, orientations=quat, indices=ids)

    def set_target_poses(self, pos_w: np.ndarray, yaw_rad: np.ndarray) -> None:
        """Place all T targets: (T, 3) m ENU box centres, (T,) rad yaw."""
        pos, yaw = check_target_poses(pos_w, yaw_rad, self._world_model.num_targets)
        if len(pos):
            self._targets.set_world_poses(positions=pos, orientations=yaw_quat_wxyz(yaw))

    # ------------------------------------------------------------------ dynamic mode

    def _require_dynamic(self, what: str) -> None:
        if self._dynamic is None:
            raise RuntimeError(f"{what} needs dynamic mode: IsaacBackend(..., dynamic=MultirotorCfg())")

    def reset_drone_states(
        self, pos_w: np.ndarray, quat_wxyz: np.ndarray, ids: np.ndarray | None = None
    ) -> None:
        """Place drones ``ids`` (None: all) at rest, zero their wrench and contact flags."""
        self._require_dynamic("reset_drone_states")
        ids, pos, quat = check_drone_poses(pos_w, quat_wxyz, ids, self._n)
        self._bodies.set_world_poses(positions=pos, orientations=quat, indices=ids)
        self._bodies.set_velocities(np.zeros((ids.size, 6)), indices=ids)
        self._wrench_f[ids] = 0.0
        self._wrench_t[ids] = 0.0
        self._contact[ids] = False
        self._vel_prev[ids] = 0.0
        self._acc_w[ids] = 0.0

    def apply_body_wrench(self, force_b: np.ndarray, torque_b: np.ndarray) -> None:
        """Hold this wrench on every drone, body FLU at the centre of mass, until changed.

        Raises:
            ValueError: wrong shapes or non-finite values (the held wrench is cleared to zero).
        """
        self._require_dynamic("apply_body_wrench")
        f = np.asarray(force_b, dtype=np.float64)
        t = np.asarray(torque_b, dtype=np.float64)
        n = self._n
        if f.shape != (n, 3) or t.shape != (n, 3):
            raise ValueError(f"expected force_b ({n}, 3) and torque_b ({n}, 3); got {f.shape} and {t.shape}")
        if not (np.isfinite(f).all() and np.isfinite(t).all()):
            self._wrench_f[:] = 0.0
            self._wrench_t[:] = 0.0
            raise ValueError("the body wrench must be finite; the wrench was cleared to zero")
        self._wrench_f[:] = f
        self._wrench_t[:] = t

    def step_physics(self, n: int = 1) -> None:
        """Advance ``n`` physics steps of ``physics_dt`` without rendering; the wrench is applied
        before each. Contact flags cover all ``n`` steps.

        Raises:
            ValueError: ``n`` < 1.
            RuntimeError: kinematic mode.
            PhysicsUnstable: a drone's pose or velocity became non-finite.
        """
        self._require_dynamic("step_physics")
        if n < 1:
            raise ValueError(f"n must be >= 1 physics steps, got {n}")
        bodies = self._bodies
        self._contact[:] = False
        for _ in range(n):
            bodies.apply_forces_and_torques_at_pos(
                forces=self._wrench_f, torques=self._wrench_t, positions=self._zero_pos, is_global=False
            )
            self._sim.step(render=False)
            vel = np.asarray(bodies.get_linear_velocities(), dtype=np.float64)
            if not np.isfinite(vel).all():
                raise PhysicsUnstable(
                    "Isaac Sim's physics produced non-finite drone velocities; check the body wrench "
                    "(within the airframe's thrust) and place the drones again with reset_drone_states"
                )
            # _vel_prev is the last step's velocity (0 after a reset: the drones start at rest).
            self._acc_w = (vel - self._vel_prev) / self._physics_dt
            self._vel_prev = vel
            forces = np.asarray(bodies.get_net_contact_forces(), dtype=np.float64).reshape(self._n, 3)
            self._contact |= np.linalg.norm(forces, axis=1) > 0.0

    def drone_state(self):
        """The drones' rigid-body state after the last physics step (dynamic mode).

        Returns:
            A :class:`~flyby.dynamics.multirotor.DroneState` of (N, ...) float64 arrays (copies):
            positions and wxyz quaternions from ``get_world_poses``, world linear velocity, body
            angular velocity (the world one rotated into the body), specific force (finite
            difference of the world velocity over the last step, minus gravity, in the body frame)
            and contact flags.
        """
        from flyby.dynamics.multirotor import DroneState

        self._require_dynamic("drone_state")
        pos, quat = (np.asarray(a, dtype=np.float64) for a in self._bodies.get_world_poses())
        quat = quat / np.linalg.norm(quat, axis=1, keepdims=True)  # float32 from PhysX: renormalise
        lin = np.asarray(self._bodies.get_linear_velocities(), dtype=np.float64)
        ang_w = np.asarray(self._bodies.get_angular_velocities(), dtype=np.float64)
        gravity_w = np.array([0.0, 0.0, -STANDARD_GRAVITY])
        return DroneState(
            pos_w=pos.copy(),
            quat_wxyz=quat,
            lin_vel_w=lin.copy(),
            ang_vel_b=rotate_inverse(quat, ang_w),
            specific_force_b=rotate_inverse(quat, self._acc_w - gravity_w),
            contact=self._contact.copy(),
        )

    # ------------------------------------------------------------------ rendering

    def _render(self) -> None:
        """Render every render product once, physics time unchanged."""
        if self._closed:
            raise RuntimeError("the Isaac Sim backend is closed")
        self._rep.orchestrator.step(rt_subframes=1, delta_time=0.0, pause_timeline=False)

    def render_cameras(self, ids: np.ndarray | None = None) -> np.ndarray:
        """Render drone cameras: (n, H, W, 3) uint8 RGB, row i = drone ``ids[i]`` (None: all)."""
        ids = check_drone_ids(ids, self._n)
        self._render()
        h, w = self._camera.height, self._camera.width
        out = np.empty((ids.size, h, w, 3), dtype=np.uint8)
        for row, i in enumerate(ids):
            out[row] = _rgb(self._rgb[i].get_data(), h, w)
        return out

    def render_grid(self, ids: np.ndarray | None = None, **tile_kwargs) -> tuple[np.ndarray, np.ndarray]:
        """Drone cameras tiled into one image: ``tile_images(render_cameras(ids), **tile_kwargs)``."""
        return tile_images(self.render_cameras(ids), **tile_kwargs)

    def render_overview(self) -> np.ndarray:
        """The fixed overview camera: (H, W, 3) uint8 RGB at ``overview_size``."""
        self._render()
        k = self._overview.intrinsics
        return _rgb(self._overview_rgb.get_data(), k.height, k.width)

    def overview_project(self, points_w: np.ndarray) -> np.ndarray:
        """(K, 3) world points -> (K, 2) float64 overview pixels; NaN behind the camera."""
        return self._overview.project(points_w)

    def annotator_boxes(self, drone: int) -> dict[str, np.ndarray]:
        """Replicator's ``bounding_box_2d_tight`` for drone ``drone``'s camera: a second ground truth.

        Returns:
            ``{"boxes": (k, 4) float64 x1, y1, x2, y2 px, "labels": (k,) str class labels,
            "occlusion": (k,) float64 occluded fraction}``, one row per labelled prim in view.
        """
        (drone,) = check_drone_ids(np.array([drone]), self._n)
        if drone not in self._boxes:
            annotator = self._rep.AnnotatorRegistry.get_annotator(
                "bounding_box_2d_tight", init_params={"semanticTypes": ["class"]}
            )
            annotator.attach([self._products[drone]])
            self._boxes[drone] = annotator
            self._render()  # the first frame of a new annotator
        self._render()
        raw = self._boxes[drone].get_data()
        data, id_to_labels = raw["data"], raw["info"]["idToLabels"]
        boxes = np.stack([data["x_min"], data["y_min"], data["x_max"] + 1, data["y_max"] + 1], axis=1)
        labels = np.array([id_to_labels[str(int(s))]["class"] for s in data["semanticId"]], dtype=object)
        return {
            "boxes": boxes.astype(np.float64).reshape(-1, 4),
            "labels": labels,
            "occlusion": np.asarray(data["occlusionRatio"], dtype=np.float64),
        }

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Release the render products and the World (the SimulationApp lives on for the process)."""
        if self._closed:
            return
        self._closed = True
        for annotator in (*self._rgb, self._overview_rgb, *self._boxes.values()):
            annotator.detach()
        for product in (*self._products, self._overview_product):
            product.destroy()
        self._sim.stop()
        self._sim.clear_instance()
        self._tmp.cleanup()

    def __enter__(self) -> IsaacBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "kinematic" if self._dynamic is None else f"dynamic, physics_dt={self._physics_dt:g}"
        return f"IsaacBackend({self._n} drones, {self._camera.width}x{self._camera.height}, {mode})"


def _rgb(data, height: int, width: int) -> np.ndarray:
    """An ``rgb`` annotator's RGBA (H, W, 4) uint8 frame as (H, W, 3) uint8 RGB.

    Raises:
        RuntimeError: the frame is not (height, width, 4) (an empty frame before the first render).
    """
    frame = np.asarray(data)
    if frame.shape != (height, width, 4):
        raise RuntimeError(
            f"Isaac Sim's rgb annotator returned shape {frame.shape}, expected ({height}, {width}, 4); "
            "an empty frame means nothing was rendered yet"
        )
    return np.ascontiguousarray(frame[..., :3], dtype=np.uint8)
