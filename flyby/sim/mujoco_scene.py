"""The MuJoCo scene of an ISR world as MJCF text: ground, roads, buildings, targets, drones, lights.

:func:`build_mjcf` writes the scene; nothing here imports mujoco, so the text can be built
and inspected without a GL platform. :class:`~flyby.sim.mujoco_backend.MujocoBackend`
compiles it.

On a CPU rasteriser the cost scales with draw calls, not pixels, so static
geometry is merged: roads are one mesh, buildings one mesh per colour, and the
targets (one mocap body each) are drawn by one skin per colour whose box
vertices are bound rigidly to their target bodies. A drone camera viewport is
then about ten draw calls whatever the number of buildings and targets.

Scene groups (MuJoCo geom/skin groups):

- 0: ground, roads, buildings, targets (seen by every camera);
- 3: drone bodies (hidden from drone cameras, so a drone never sees its own
  rotors; also skipped by the overview, where they sit inside their markers);
- 4: one bright 2 m marker sphere per drone (overview camera only);
- 5: collision-only geoms of dynamic mode (drone and building boxes; never drawn).

Collision filter (dynamic mode): world geoms (ground plane, building boxes)
have ``contype=1 conaffinity=2``, drone collision boxes ``contype=2
conaffinity=1``; every other geom has both 0. So drones hit the world, the
world never tests against itself, and drones pass through each other.

Frames: world ENU, metres; drone quaternions wxyz rotate body FLU into world.
The drone camera is the MuJoCo ``<camera>`` mounted at ``camera.offset_b`` with
:func:`~flyby.perception.camera.mujoco_mount_quat`, so its pixels agree with
:class:`~flyby.perception.camera.PinholeIntrinsics` and
:func:`~flyby.perception.camera.camera_poses_w`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from flyby.dynamics.multirotor import MultirotorCfg
from flyby.enums import TargetClass
from flyby.geometry import STANDARD_GRAVITY, rotation_to_quat_wxyz, yaw_quat_wxyz
from flyby.perception.camera import CameraCfg, mujoco_camera_xmat, mujoco_mount_quat
from flyby.world.world import ISRWorld

if TYPE_CHECKING:
    from flyby.sim.mujoco_cameras import OverviewCamera

__all__ = [
    "DRONE_RGB",
    "GROUP_COLLISION",
    "GROUP_DRONE_BODY",
    "GROUP_DRONE_MARKER",
    "GROUP_WORLD",
    "build_mjcf",
    "target_rgba",
]

# Geom groups (see the module docstring).
GROUP_WORLD = 0
GROUP_DRONE_BODY = 3
GROUP_DRONE_MARKER = 4
GROUP_COLLISION = 5

# Collision filter bits (dynamic mode, see the module docstring).
_WORLD_COLLISION = 'contype="1" conaffinity="2"'
_DRONE_COLLISION = 'contype="2" conaffinity="1"'


# Muted building colours (RGB), picked per building with a seeded generator.
_BUILDING_RGB = np.array(
    [
        [0.62, 0.60, 0.56],
        [0.55, 0.53, 0.50],
        [0.70, 0.67, 0.61],
        [0.50, 0.54, 0.58],
        [0.60, 0.52, 0.46],
        [0.46, 0.47, 0.50],
        [0.66, 0.62, 0.54],
    ]
)
# Bright target colours: vehicles orange/red family, people yellow/magenta.
_VEHICLE_RGB = np.array([[1.0, 0.45, 0.05], [0.90, 0.10, 0.08], [1.0, 0.25, 0.0], [0.85, 0.05, 0.25]])
_PERSON_RGB = np.array([[1.0, 0.90, 0.05], [0.95, 0.10, 0.85]])
# Drone marker / top-plate colours (overview labels), cycled by drone index.
DRONE_RGB = np.array(
    [
        [0.0, 0.9, 1.0],
        [1.0, 0.2, 0.9],
        [0.3, 1.0, 0.2],
        [1.0, 1.0, 0.2],
        [0.4, 0.5, 1.0],
        [1.0, 0.6, 0.2],
        [0.9, 0.9, 0.95],
        [0.6, 0.2, 1.0],
    ]
)
_MARKER_RADIUS_M = 2.0  # m, overview-only marker sphere around each drone
_ROAD_TOP_M = 0.04  # m, road surface above the ground plane (avoids z-fighting in the overview)
_GROUND_MARGIN_M = 100.0  # m, ground plane extends this far past the area edge
_GROUND_CELL_M = 10.0  # m, checker cell size of the ground texture


def _fmt(values) -> str:
    return " ".join(f"{float(v):.6g}" for v in np.ravel(values))


def _ints(values) -> str:
    return " ".join(str(int(v)) for v in np.ravel(values))


def _rgba(rgb, alpha: float = 1.0) -> str:
    return _fmt([*rgb, alpha])


def _drone_xml(i: int, camera: CameraCfg, pos_w: np.ndarray, dynamic: MultirotorCfg | None = None) -> str:
    """One drone body: a mocap body (kinematic) or a free body with inertia and a collision box (dynamic)."""
    rgb = DRONE_RGB[i % len(DRONE_RGB)]
    arm = 0.16  # m, rotor centre distance along x and y from the body centre (0.5 m span)
    rotors = "\n".join(
        f'      <geom type="cylinder" size="0.09 0.006" pos="{sx * arm:g} {sy * arm:g} 0.03" '
        f'rgba="0.15 0.15 0.17 1" group="{GROUP_DRONE_BODY}"/>'
        for sx in (-1, 1)
        for sy in (-1, 1)
    )
    arms = "\n".join(
        f'      <geom type="box" size="{arm * 0.72:g} 0.012 0.01" pos="0 0 0.02" euler="0 0 {a:g}" '
        f'rgba="0.2 0.2 0.22 1" group="{GROUP_DRONE_BODY}"/>'
        for a in (math.pi / 4, -math.pi / 4)
    )
    if dynamic is None:
        head = f'    <body name="drone_{i}" mocap="true" pos="{_fmt(pos_w)}">'
        physics = ""
    else:
        # Free body: centre of mass at the body origin, principal axes = body FLU axes. The
        # wrench actuators act at site drone_{i}_com in the body frame (see build_mjcf).
        head = f'    <body name="drone_{i}" pos="{_fmt(pos_w)}">'
        physics = f"""
      <freejoint name="drone_{i}_joint"/>
      <inertial pos="0 0 0" mass="{dynamic.mass_kg:.10g}" diaginertia="{_fmt(dynamic.inertia_kgm2)}"/>
      <geom name="drone_{i}_collision" type="box" size="{_fmt(dynamic.collision_half_extent_m)}"
            {_DRONE_COLLISION} group="{GROUP_COLLISION}" rgba="0 0 0 0"/>
      <site name="drone_{i}_com" pos="0 0 0" group="{GROUP_COLLISION}"/>"""
    return f"""{head}{physics}
      <geom type="box" size="0.09 0.06 0.035" rgba="0.12 0.12 0.14 1" group="{GROUP_DRONE_BODY}"/>
      <geom type="box" size="0.07 0.045 0.006" pos="0 0 0.04" rgba="{_rgba(rgb)}" group="{GROUP_DRONE_BODY}"/>
{arms}
{rotors}
      <geom type="sphere" size="{_MARKER_RADIUS_M:g}" rgba="{_rgba(rgb)}" group="{GROUP_DRONE_MARKER}"/>
      <camera name="drone_cam_{i}" pos="{_fmt(camera.offset_b)}"
              quat="{_fmt(mujoco_mount_quat(camera.pitch_deg))}" fovy="{camera.fovy_deg:g}"/>
    </body>"""


def target_rgba(world: ISRWorld) -> np.ndarray:
    """(T, 4) float64 RGBA of each target's box as the MuJoCo scene draws it."""
    rgba = np.ones((world.num_targets, 4))
    for t, cls in enumerate(world.target_class):
        palette = _VEHICLE_RGB if cls == TargetClass.VEHICLE else _PERSON_RGB
        rgba[t, :3] = palette[t % len(palette)]
    return rgba


_FACE_SETS = {"all": range(6), "no_bottom": (0, 1, 2, 3, 5), "top": (5,)}


def _box_surface(
    lo: np.ndarray, hi: np.ndarray, faces: str = "all"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triangles of an axis-aligned box, 4 vertices per face so shading stays flat.

    Args:
        lo, hi: (3,) box corners, metres.
        faces: ``"all"``, ``"no_bottom"`` (buildings: the bottom is on the ground)
            or ``"top"`` (road surfaces).

    Returns:
        vertices (4F, 3) float64, normals (4F, 3) float64, triangles (2F, 3) int64
        wound counter-clockwise seen from outside.
    """
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    centre, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
    eye = np.eye(3)
    verts, normals, tris = [], [], []
    # Face index k: axis k // 2, sign - for even k, + for odd k (5 = +z top).
    for k in _FACE_SETS[faces]:
        a, sign = k // 2, (1.0 if k % 2 else -1.0)
        u, v = eye[(a + 1) % 3], eye[(a + 2) % 3]  # u x v = +e_a
        corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
        if sign < 0:
            corners = corners[::-1]
        base = len(verts)
        for cu, cv in corners:
            verts.append(
                centre + sign * half[a] * eye[a] + cu * half[(a + 1) % 3] * u + cv * half[(a + 2) % 3] * v
            )
            normals.append(sign * eye[a])
        tris += [[base, base + 1, base + 2], [base, base + 2, base + 3]]
    return np.array(verts), np.array(normals), np.array(tris, dtype=np.int64)


def _mesh_xml(name: str, surfaces: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> str:
    """One ``<mesh>`` asset from several :func:`_box_surface` results."""
    verts, normals, tris, base = [], [], [], 0
    for v, n, f in surfaces:
        verts.append(v)
        normals.append(n)
        tris.append(f + base)
        base += len(v)
    faces = _ints(np.concatenate(tris))
    return (
        f'    <mesh name="{name}" inertia="shell" vertex="{_fmt(np.concatenate(verts))}" '
        f'normal="{_fmt(np.concatenate(normals))}" face="{faces}"/>'
    )


def build_mjcf(
    world: ISRWorld,
    num_drones: int,
    camera: CameraCfg,
    overview: OverviewCamera,
    offscreen_size: tuple[int, int],
    drone_pos0_w: np.ndarray,
    antialias: bool = False,
    dynamic: MultirotorCfg | None = None,
    physics_dt: float = 0.004,
) -> str:
    """MJCF text of the scene (see the module docstring for groups and frames).

    Args:
        world: the ISR world.
        num_drones: N drones (mocap bodies ``drone_0`` ... with cameras ``drone_cam_0`` ...).
        camera: drone camera mount.
        overview: the fixed overview camera (camera ``overview``).
        offscreen_size: (width, height) of the offscreen framebuffer, pixels.
        drone_pos0_w: (N, 3) initial drone positions, metres, world ENU.
        antialias: 4x multisampling of the offscreen buffer (about 2x slower on llvmpipe).
        dynamic: None for the kinematic scene; else free-body drones with these mass and
            inertia, gravity, collision boxes for drones and buildings, and per drone six
            ``motor`` actuators (``drone_<i>_fx`` ... ``drone_<i>_tz``) applying a wrench
            in the body frame at the centre of mass.
        physics_dt: physics step, seconds (dynamic mode).
    """
    hx, hy = (float(v) for v in world.half_extent)
    diag = 2.0 * math.hypot(hx, hy)
    far_m = max(camera.far_m, 2.0 * (np.linalg.norm(overview.pos_w) + diag))
    extent = diag  # MuJoCo expresses znear/zfar as fractions of the model extent
    rng = np.random.Generator(np.random.PCG64(world.seed))

    # Static geometry is merged into one mesh per colour: rendering cost on a CPU
    # rasteriser scales with draw calls, not pixels (DESIGN.md).
    meshes, static_geoms = [], []
    road_tops = []
    for r, (axis, off) in enumerate(zip(world.road_axis, world.road_offset_m, strict=True)):
        half_w = 0.5 * world.road_width_m
        lo = [-hx, off - half_w] if axis == 0 else [off - half_w, -hy]
        hi = [hx, off + half_w] if axis == 0 else [off + half_w, hy]
        # Crossing roads would z-fight: every road gets its own height step of 2 mm.
        z = _ROAD_TOP_M + 0.002 * r
        road_tops.append(_box_surface(np.array([*lo, z - 0.01]), np.array([*hi, z]), faces="top"))
    if road_tops:
        meshes.append(_mesh_xml("roads", road_tops))
        static_geoms.append('    <geom name="roads" type="mesh" mesh="roads" material="road"/>')
    colour_idx = rng.integers(len(_BUILDING_RGB), size=world.num_buildings)
    for c, rgb in enumerate(_BUILDING_RGB):
        boxes = [
            _box_surface(world.building_min_w[b], world.building_max_w[b], faces="no_bottom")
            for b in np.flatnonzero(colour_idx == c)
        ]
        if boxes:
            meshes.append(_mesh_xml(f"buildings_{c}", boxes))
            static_geoms.append(
                f'    <geom name="buildings_{c}" type="mesh" mesh="buildings_{c}" rgba="{_rgba(rgb)}" '
                'material="building"/>'
            )

    # Targets: one mocap body each (no geom); their boxes are drawn by one skin per
    # colour, each box's vertices bound rigidly to its target body (one draw call per skin).
    pos0, yaw0 = world.target_poses(0.0)
    quat0 = yaw_quat_wxyz(yaw0)
    colours = target_rgba(world)
    targets = [
        f'    <body name="target_{t}" mocap="true" pos="{_fmt(pos0[t])}" quat="{_fmt(quat0[t])}"/>'
        for t in range(world.num_targets)
    ]
    skins = []
    uniq, inverse = (
        np.unique(colours, axis=0, return_inverse=True) if world.num_targets else (np.zeros((0, 4)), [])
    )
    for c, rgba in enumerate(uniq):
        members = np.flatnonzero(np.ravel(inverse) == c)
        verts, faces, bones = [], [], []
        for t in members:
            half = 0.5 * world.target_size_m[t]
            v, _, f = _box_surface(-half, half, faces="all")
            base = sum(len(x) for x in verts)
            ids = " ".join(str(base + k) for k in range(len(v)))
            bones.append(
                f'      <bone body="target_{t}" bindpos="0 0 0" bindquat="1 0 0 0" '
                f'vertid="{ids}" vertweight="{_fmt(np.ones(len(v)))}"/>'
            )
            verts.append(v)
            faces.append(f + base)
        skins.append(
            f'    <skin name="targets_{c}" rgba="{_rgba(rgba[:3])}" material="target" group="{GROUP_WORLD}" '
            f'vertex="{_fmt(np.concatenate(verts))}" face="{_ints(np.concatenate(faces))}">\n'
            + "\n".join(bones)
            + "\n    </skin>"
        )
    drones = [_drone_xml(i, camera, drone_pos0_w[i], dynamic) for i in range(num_drones)]
    if dynamic is None:
        option = '<option gravity="0 0 0"/>'
        ground_collision = ""
        actuators = ""
    else:
        option = f'<option timestep="{physics_dt:.10g}" gravity="0 0 {-STANDARD_GRAVITY:.10g}"/>'
        ground_collision = f" {_WORLD_COLLISION}"
        # One invisible box per building for contact (the merged visual meshes are not convex).
        for b in range(world.num_buildings):
            lo, hi = world.building_min_w[b], world.building_max_w[b]
            static_geoms.append(
                f'    <geom name="building_collision_{b}" type="box" pos="{_fmt(0.5 * (lo + hi))}" '
                f'size="{_fmt(0.5 * (hi - lo))}" {_WORLD_COLLISION} group="{GROUP_COLLISION}" '
                'rgba="0 0 0 0"/>'
            )
        axes = ("fx", "fy", "fz", "tx", "ty", "tz")
        motors = [
            f'    <motor name="drone_{i}_{a}" site="drone_{i}_com" gear="{_ints(np.eye(6)[k])}"/>'
            for i in range(num_drones)
            for k, a in enumerate(axes)
        ]
        actuators = "  <actuator>\n" + "\n".join(motors) + "\n  </actuator>\n"
    over_quat = rotation_to_quat_wxyz(mujoco_camera_xmat(overview.rot_wc[None])[0])
    over_fovy_deg = math.degrees(2 * math.atan(0.5 * overview.intrinsics.height / overview.intrinsics.fy))
    ground_half = (hx + _GROUND_MARGIN_M, hy + _GROUND_MARGIN_M)
    texrepeat = (2 * ground_half[0] / (2 * _GROUND_CELL_M), 2 * ground_half[1] / (2 * _GROUND_CELL_M))
    nl = "\n"
    return f"""<mujoco model="flyby_isr_seed{world.seed}">
  <compiler angle="radian"/>
  {option}
  <statistic center="0 0 0" extent="{extent:g}"/>
  <visual>
    <global offwidth="{offscreen_size[0]}" offheight="{offscreen_size[1]}" fovy="45"/>
    <quality shadowsize="2048" offsamples="{4 if antialias else 0}"/>
    <map znear="{camera.near_m / extent:.6g}" zfar="{far_m / extent:.6g}"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.35 0.35 0.35" specular="0 0 0"/>
  </visual>
  <default>
    <geom contype="0" conaffinity="0" group="{GROUP_WORLD}"/>
  </default>
  <asset>
    <texture name="sky" type="skybox" builtin="gradient" rgb1="0.55 0.7 0.9" rgb2="0.9 0.93 0.97"
             width="64" height="64"/>
    <texture name="ground" type="2d" builtin="checker" rgb1="0.40 0.48 0.34" rgb2="0.46 0.52 0.41"
             width="64" height="64"/>
    <material name="ground" texture="ground" texrepeat="{_fmt(texrepeat)}" specular="0" shininess="0"
              reflectance="0"/>
    <material name="road" rgba="0.22 0.22 0.24 1" specular="0" shininess="0"/>
    <material name="building" specular="0.05" shininess="0.1"/>
    <material name="target" specular="0.1" shininess="0.2"/>
{nl.join(meshes)}
  </asset>
  <worldbody>
    <light name="sun" directional="true" pos="0 0 200" dir="-0.35 -0.5 -1" diffuse="0.55 0.55 0.52"
           specular="0 0 0" castshadow="true"/>
    <geom name="ground" type="plane" size="{_fmt(ground_half)} 10" material="ground"{ground_collision}/>
{nl.join(static_geoms)}
    <camera name="overview" pos="{_fmt(overview.pos_w)}" quat="{_fmt(over_quat)}" fovy="{over_fovy_deg:.8g}"/>
{nl.join(targets)}
{nl.join(drones)}
  </worldbody>
{actuators}  <deformable>
{nl.join(skins)}
  </deformable>
</mujoco>
"""
