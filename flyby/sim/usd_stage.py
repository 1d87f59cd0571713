"""The ISR world as a USD stage: ground, roads, buildings, labelled targets, drones and their cameras.

Built with Pixar's ``pxr`` bindings (PyPI ``usd-core``, no GPU, ``pip install flyby[usd]``), so the
stage can be written and checked on any machine (``flyby usd``). It is the scene the Isaac Sim
backend (:mod:`flyby.sim.isaac_backend`) opens, so that MuJoCo and Isaac Sim render one world by
construction. Nothing here imports Isaac Sim or Kit.

Conventions (written into the stage, checked by ``tests/sim/test_usd_stage.py``):

- units: metres (``metersPerUnit`` 1), kilograms (``kilogramsPerUnit`` 1), ``upAxis`` Z; the world
  frame is flyby's ENU.
- every movable prim (targets, drones) carries the xform ops ``translate``, ``orient`` (quatd,
  wxyz as flyby's) and, for boxes, ``scale``, in that order: what Isaac Sim's
  ``isaacsim.core.prims.XFormPrim`` writes with ``set_world_poses``.
- boxes are ``UsdGeom.Cube`` prims of ``size`` 1 scaled to their extent, so a prim's local bound
  is the box.
- semantic class labels use ``UsdSemantics.LabelsAPI`` with the ``class`` taxonomy (the attribute
  ``semantics:labels:class``), the schema Isaac Sim 5.x's replicator annotators read:
  ``vehicle`` / ``person`` for targets (:class:`flyby.enums.TargetClass`), ``building``,
  ``road``, ``ground``, ``drone``.
- cameras: one ``UsdGeom.Camera`` per drone at ``CameraCfg.offset_b`` in the body, oriented as
  :func:`flyby.perception.camera.camera_mount_rotation` times ``diag(1, -1, -1)`` (a USD camera
  looks along its -z with +y up; flyby's optical frame is OpenCV's, z forward, y down). Focal
  length and apertures follow from the pinhole intrinsics (:func:`usd_camera_params`), so a
  USD camera projects a world point to the pixel :class:`~flyby.perception.camera.PinholeIntrinsics`
  gives (tested within 0.5 px; measured 3e-6 px).
- dynamic drones (``dynamic=MultirotorCfg``): ``UsdPhysics.RigidBodyAPI`` and ``MassAPI`` with the
  airframe's mass and principal inertia on the drone prim, ``CollisionAPI`` on its body box;
  buildings and the ground carry ``CollisionAPI``; ``/World/PhysicsScene`` holds gravity
  (standard gravity, -z).
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np

from flyby.enums import TargetClass
from flyby.errors import BackendUnavailable
from flyby.geometry import STANDARD_GRAVITY, rotation_to_quat_wxyz, yaw_quat_wxyz
from flyby.perception.camera import CameraCfg, PinholeIntrinsics, camera_mount_rotation
from flyby.sim.mujoco_scene import DRONE_RGB, target_rgba

if TYPE_CHECKING:
    from flyby.dynamics.multirotor import MultirotorCfg
    from flyby.sim.overview import OverviewCamera
    from flyby.world.world import ISRWorld

__all__ = [
    "CLASS_TAXONOMY",
    "FOCAL_LENGTH",
    "OVERVIEW_PATH",
    "UsdCameraParams",
    "build_usd_stage",
    "class_label",
    "drone_path",
    "import_pxr",
    "lens_for",
    "save_usd_stage",
    "target_path",
    "usd_camera_params",
]

OVERVIEW_PATH = "/World/Overview"  # the fixed overview camera, when the stage has one
CLASS_TAXONOMY = "class"  # UsdSemantics.LabelsAPI instance: attribute semantics:labels:class
# Focal length of every drone camera, in USD's lens unit (a tenth of a scene unit); only the ratio to
# the apertures sets the projection. 24 is Omniverse Replicator's and Isaac Lab's default.
FOCAL_LENGTH = 24.0
_CV_TO_USD = np.diag([1.0, -1.0, -1.0])  # optical frame (x right, y down, z forward) -> USD camera
_GROUND_MARGIN_M = 100.0  # m, ground extends this far past the area edge (as the MuJoCo scene)
_GROUND_THICKNESS_M = 0.1  # m, ground slab below z = 0
_ROAD_THICKNESS_M = 0.04  # m, road slab on the ground (the MuJoCo scene's road top)
_BUILDING_RGB = (0.6, 0.58, 0.54)
_ROAD_RGB = (0.22, 0.22, 0.24)
_GROUND_RGB = (0.35, 0.42, 0.3)


def import_pxr():
    """The ``pxr`` modules flyby uses, as a namespace: ``Usd, UsdGeom, UsdLux, UsdPhysics,
    UsdSemantics, Gf, Sdf, Vt``.

    Raises:
        BackendUnavailable: ``usd-core`` is not installed (the message says how to install it).
    """
    try:
        from pxr import Gf, Sdf, Usd, UsdGeom, UsdLux, UsdPhysics, UsdSemantics, Vt
    except ImportError as exc:
        raise BackendUnavailable(
            f"the USD stage needs Pixar's pxr bindings ({exc}); install them with "
            "pip install 'flyby[usd]' (usd-core from PyPI); inside Isaac Sim they come with Kit"
        ) from None

    return SimpleNamespace(
        Usd=Usd, UsdGeom=UsdGeom, UsdLux=UsdLux, UsdPhysics=UsdPhysics, UsdSemantics=UsdSemantics,
        Gf=Gf, Sdf=Sdf, Vt=Vt,
    )  # fmt: skip


@dataclass(frozen=True)
class UsdCameraParams:
    """A ``UsdGeom.Camera``'s lens for a flyby camera.

    Attributes:
        focal_length: :data:`FOCAL_LENGTH`, in tenths of a scene unit.
        horizontal_aperture: ``width * focal_length / fx``, same unit.
        vertical_aperture: ``height * focal_length / fy``, same unit.
        clipping_range: (near_m, far_m), metres.
    """

    focal_length: float
    horizontal_aperture: float
    vertical_aperture: float
    clipping_range: tuple[float, float]


def usd_camera_params(camera: CameraCfg) -> UsdCameraParams:
    """The USD lens that projects as :class:`~flyby.perception.camera.PinholeIntrinsics` of ``camera``.

    A USD (and Isaac Sim) pinhole camera maps a point at ``(x, y, z)`` in the optical frame to
    ``u = (x / z) * focal_length / horizontal_aperture * width + width / 2``; with the apertures
    here that is ``fx * x / z + cx`` (the principal point is the image centre, no aperture offset).
    """
    return lens_for(PinholeIntrinsics.from_cfg(camera), camera.near_m, camera.far_m)


def lens_for(k: PinholeIntrinsics, near_m: float, far_m: float) -> UsdCameraParams:
    """The USD lens of pinhole intrinsics ``k`` (centred principal point), clipping at ``near_m``,
    ``far_m`` metres (see :func:`usd_camera_params`)."""
    return UsdCameraParams(
        focal_length=FOCAL_LENGTH,
        horizontal_aperture=k.width * FOCAL_LENGTH / k.fx,
        vertical_aperture=k.height * FOCAL_LENGTH / k.fy,
        clipping_range=(float(near_m), float(far_m)),
    )


def class_label(target_class: int) -> str:
    """The semantic class label of a :class:`~flyby.enums.TargetClass` value: ``vehicle`` or ``person``."""
    return TargetClass(int(target_class)).name.lower()


def target_path(t: int) -> str:
    """Prim path of target ``t``."""
    return f"/World/Targets/target_{t}"


def drone_path(i: int) -> str:
    """Prim path of drone ``i`` (its camera is ``<path>/camera``, its body box ``<path>/body``)."""
    return f"/World/Drones/drone_{i}"


def build_usd_stage(
    world: ISRWorld,
    num_drones: int,
    camera: CameraCfg,
    *,
    drone_pos_w: np.ndarray | None = None,
    drone_yaw_rad: np.ndarray | None = None,
    dynamic: MultirotorCfg | None = None,
    overview: OverviewCamera | None = None,
):
    """An in-memory USD stage of ``world`` with ``num_drones`` camera drones (see the module docstring).

    Args:
        world: the ISR world (buildings, roads, targets at time 0).
        num_drones: N >= 1.
        camera: the drone camera (intrinsics from its preset and ``fovy_deg``, mount, clipping).
        drone_pos_w: (N, 3) float metres, world ENU; default: a row 5 m apart at 30 m, as the
            MuJoCo scene.
        drone_yaw_rad: (N,) float radians; default 0.
        dynamic: None for kinematic drones; else rigid-body drones with this airframe's mass,
            inertia and collision box.
        overview: also write this fixed overview camera as ``/World/Overview``
            (:func:`flyby.sim.overview.overview_camera_for`), its lens from its intrinsics.

    Returns:
        A ``pxr.Usd.Stage`` (save it with :func:`save_usd_stage`).

    Raises:
        BackendUnavailable: ``usd-core`` is not installed.
        ValueError: ``num_drones`` < 1, or drone poses of the wrong shape or not finite.
    """
    pxr = import_pxr()
    Usd, UsdGeom, UsdPhysics, Gf = pxr.Usd, pxr.UsdGeom, pxr.UsdPhysics, pxr.Gf
    n = int(num_drones)
    if n < 1:
        raise ValueError(f"num_drones={num_drones} must be >= 1")
    if drone_pos_w is None:
        x0 = (np.arange(n) - 0.5 * (n - 1)) * 5.0
        drone_pos_w = np.stack([x0, np.zeros(n), np.full(n, 30.0)], axis=1)
    pos = np.asarray(drone_pos_w, dtype=np.float64)
    yaw = np.zeros(n) if drone_yaw_rad is None else np.asarray(drone_yaw_rad, dtype=np.float64)
    if pos.shape != (n, 3) or yaw.shape != (n,):
        raise ValueError(
            f"expected drone_pos_w ({n}, 3) and drone_yaw_rad ({n},) for num_drones={n}; "
            f"got {pos.shape} and {yaw.shape}"
        )
    if not (np.isfinite(pos).all() and np.isfinite(yaw).all()):
        raise ValueError("drone poses must be finite")

    stage = Usd.Stage.CreateInMemory()
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    UsdPhysics.SetStageKilogramsPerUnit(stage, 1.0)
    root = UsdGeom.Xform.Define(stage, "/World").GetPrim()
    stage.SetDefaultPrim(root)
    stage.GetRootLayer().customLayerData = {
        "flyby:world_seed": int(world.seed),
        "flyby:num_drones": n,
        "flyby:num_targets": int(world.num_targets),
        "flyby:frame": "ENU, metres, quaternions wxyz body FLU -> world",
    }

    hx, hy = (float(v) for v in world.half_extent)
    ground_size = [2 * (hx + _GROUND_MARGIN_M), 2 * (hy + _GROUND_MARGIN_M), _GROUND_THICKNESS_M]
    ground_centre = [0.0, 0.0, -0.5 * _GROUND_THICKNESS_M]  # top face at z = 0
    ground = _box(pxr, stage, "/World/Ground", ground_centre, ground_size, _GROUND_RGB, "ground")
    UsdPhysics.CollisionAPI.Apply(ground)

    UsdGeom.Scope.Define(stage, "/World/Roads")
    for r, (axis, offset) in enumerate(zip(world.road_axis, world.road_offset_m, strict=True)):
        along_x, width, top = axis == 0, world.road_width_m, _ROAD_THICKNESS_M
        length = 2 * (hx if along_x else hy)  # edge to edge of the area
        size = [length, width, top] if along_x else [width, length, top]
        centre = [0.0, float(offset), 0.5 * top] if along_x else [float(offset), 0.0, 0.5 * top]
        _box(pxr, stage, f"/World/Roads/road_{r}", centre, size, _ROAD_RGB, "road")

    UsdGeom.Scope.Define(stage, "/World/Buildings")
    for b in range(world.num_buildings):
        lo, hi = world.building_min_w[b], world.building_max_w[b]
        prim = _box(
            pxr, stage, f"/World/Buildings/building_{b}", 0.5 * (lo + hi), hi - lo, _BUILDING_RGB, "building"
        )
        UsdPhysics.CollisionAPI.Apply(prim)

    UsdGeom.Scope.Define(stage, "/World/Targets")
    colours = target_rgba(world)
    quats = yaw_quat_wxyz(np.asarray(world.target_yaw0_rad, dtype=np.float64))
    for t in range(world.num_targets):
        _box(
            pxr, stage, target_path(t), world.target_pos0_w[t], world.target_size_m[t], colours[t, :3],
            class_label(world.target_class[t]), quat_wxyz=quats[t],
        )  # fmt: skip

    UsdGeom.Scope.Define(stage, "/World/Drones")
    lens = usd_camera_params(camera)
    mount_rot = camera_mount_rotation(camera.pitch_deg)
    drone_quats = yaw_quat_wxyz(yaw)
    body_size = [0.18, 0.12, 0.07] if dynamic is None else [2.0 * h for h in dynamic.collision_half_extent_m]
    for i in range(n):
        xform = UsdGeom.Xform.Define(stage, drone_path(i))
        _pose_ops(pxr, xform, pos[i], drone_quats[i])
        body = _box(
            pxr,
            stage,
            f"{drone_path(i)}/body",
            [0.0, 0.0, 0.0],
            body_size,
            DRONE_RGB[i % len(DRONE_RGB)],
            "drone",
        )
        _camera(pxr, stage, f"{drone_path(i)}/camera", lens, camera.offset_b, mount_rot)
        if dynamic is not None:
            prim = xform.GetPrim()
            UsdPhysics.RigidBodyAPI.Apply(prim)
            mass = UsdPhysics.MassAPI.Apply(prim)
            mass.CreateMassAttr(float(dynamic.mass_kg))
            mass.CreateDiagonalInertiaAttr(Gf.Vec3f(*(float(v) for v in dynamic.inertia_kgm2)))
            mass.CreateCenterOfMassAttr(Gf.Vec3f(0.0, 0.0, 0.0))
            UsdPhysics.CollisionAPI.Apply(body)

    if overview is not None:
        k = overview.intrinsics
        far = 4.0 * float(np.linalg.norm(overview.pos_w)) + 2.0 * math.hypot(hx, hy)
        _camera(pxr, stage, OVERVIEW_PATH, lens_for(k, 0.5, far), overview.pos_w, overview.rot_wc)

    scene = UsdPhysics.Scene.Define(stage, "/World/PhysicsScene")
    scene.CreateGravityDirectionAttr(Gf.Vec3f(0.0, 0.0, -1.0))
    scene.CreateGravityMagnitudeAttr(STANDARD_GRAVITY)
    _lights(pxr, stage)
    return stage


def save_usd_stage(stage, path: str | os.PathLike) -> Path:
    """Write ``stage`` to ``path`` (``.usd``, ``.usda`` or ``.usdc``) atomically: a temporary file in
    the same folder, renamed over ``path`` once complete.

    Returns:
        The path written.

    Raises:
        ValueError: an extension USD cannot write.
        OSError: the folder cannot be written.
    """
    path = Path(path)
    if path.suffix not in (".usd", ".usda", ".usdc"):
        raise ValueError(f"USD file {str(path)!r} must end in .usd, .usda or .usdc")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        if not stage.GetRootLayer().Export(tmp):
            raise OSError(f"USD could not write {tmp}")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _camera(pxr, stage, path: str, lens: UsdCameraParams, pos, rot_optical) -> None:
    """A ``UsdGeom.Camera`` at ``pos`` (3,) m in its parent, optical frame ``rot_optical`` (3, 3)
    (OpenCV: x right, y down, z forward) in its parent's frame."""
    cam = pxr.UsdGeom.Camera.Define(stage, path)
    cam.CreateProjectionAttr(pxr.UsdGeom.Tokens.perspective)
    cam.CreateFocalLengthAttr(lens.focal_length)
    cam.CreateHorizontalApertureAttr(lens.horizontal_aperture)
    cam.CreateVerticalApertureAttr(lens.vertical_aperture)
    cam.CreateClippingRangeAttr(pxr.Gf.Vec2f(*lens.clipping_range))
    _pose_ops(pxr, cam, pos, rotation_to_quat_wxyz(np.asarray(rot_optical) @ _CV_TO_USD))


def _pose_ops(pxr, xformable, translate, quat_wxyz, scale=None) -> None:
    """Author the ``translate``, ``orient`` (quatd wxyz) [and ``scale``] ops, in that order."""
    Gf = pxr.Gf
    xformable.AddTranslateOp().Set(Gf.Vec3d(*(float(v) for v in translate)))
    w, x, y, z = (float(v) for v in quat_wxyz)
    xformable.AddOrientOp(pxr.UsdGeom.XformOp.PrecisionDouble).Set(Gf.Quatd(w, x, y, z))
    if scale is not None:
        xformable.AddScaleOp(pxr.UsdGeom.XformOp.PrecisionDouble).Set(Gf.Vec3d(*(float(v) for v in scale)))


def _box(pxr, stage, path: str, centre, size, rgb, label: str, quat_wxyz=(1.0, 0.0, 0.0, 0.0)):
    """A ``Cube`` of size 1 at ``centre`` (3,) m, scaled to ``size`` (3,) m, coloured and labelled."""
    cube = pxr.UsdGeom.Cube.Define(stage, path)
    cube.CreateSizeAttr(1.0)
    cube.CreateDisplayColorAttr(pxr.Vt.Vec3fArray([pxr.Gf.Vec3f(*(float(c) for c in rgb))]))
    _pose_ops(pxr, cube, centre, quat_wxyz, size)
    prim = cube.GetPrim()
    labels = pxr.UsdSemantics.LabelsAPI.Apply(prim, CLASS_TAXONOMY)
    labels.CreateLabelsAttr().Set([label])
    return prim


def _lights(pxr, stage) -> None:
    """A sun (distant light, 50 deg elevation) and a sky dome, as the MuJoCo scene lights the world."""
    UsdLux, Gf = pxr.UsdLux, pxr.Gf
    sun = UsdLux.DistantLight.Define(stage, "/World/Lights/sun")
    sun.CreateIntensityAttr(3000.0)
    sun.CreateAngleAttr(0.53)  # deg, the sun's apparent diameter
    # A distant light shines along its -z: tilt it 40 deg from the zenith, towards +x.
    pitch = math.radians(40.0)
    sun.AddOrientOp().Set(Gf.Quatf(math.cos(pitch / 2), 0.0, math.sin(pitch / 2), 0.0))
    sky = UsdLux.DomeLight.Define(stage, "/World/Lights/sky")
    sky.CreateIntensityAttr(800.0)
