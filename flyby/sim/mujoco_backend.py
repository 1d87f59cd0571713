"""The embedded MuJoCo backend: the ISR world as an MJCF scene, rendered offscreen.

Two modes:

- Kinematic (default): drones and targets are mocap bodies whose poses the
  caller writes; nothing is stepped and nothing collides.
- Dynamic (``dynamic=MultirotorCfg(...)``): each drone is a free rigid body with
  the airframe's mass and inertia, an invisible collision box, and a body-frame
  wrench input; gravity is on, and the ground and every building (one invisible
  collision box each, the merged visual meshes are not used for contact)
  collide with the drones. :meth:`MujocoBackend.step_physics` advances the
  physics at ``physics_dt`` (250 Hz by default) without rendering. Drones do
  not collide with each other.

Before a render the backend runs forward kinematics once (``mj_kinematics`` +
``mj_camlight``) if a pose changed or physics stepped.

Rendering uses one GL context (EGL, else OSMesa; see :mod:`flyby.sim.gl`) and
one offscreen framebuffer. All drone cameras of a batch are drawn as
viewports of that framebuffer (``mjv_updateScene`` + ``mjr_render`` per
viewport) and read back with a single ``mjr_readPixels``, which on Mesa
llvmpipe is about 1.5x faster than one ``mujoco.Renderer`` per camera
(DESIGN.md, "Facts we measured").

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

import logging
import math
import weakref
from dataclasses import dataclass

import numpy as np

from flyby.config import check
from flyby.dynamics.multirotor import STANDARD_GRAVITY, DroneState, MultirotorCfg, rotate_inverse
from flyby.enums import BackendKind, TargetClass
from flyby.errors import BackendUnavailable, DependencyNotInstalled, PhysicsUnstable
from flyby.perception.camera import (
    CameraCfg,
    PinholeIntrinsics,
    camera_mount_rotation,
    mujoco_camera_xmat,
    mujoco_mount_quat,
    rotation_to_quat_wxyz,
    yaw_quat_wxyz,
    yaw_rotation,
)
from flyby.sim.gl import ensure_gl_platform
from flyby.sim.tiling import grid_shape, tile_images
from flyby.world.world import ISRWorld

# MuJoCo and PyOpenGL read MUJOCO_GL / PYOPENGL_PLATFORM when first imported, so the
# platform is chosen before the first `import mujoco` (nothing above imports it).
_GL_PLATFORM = ensure_gl_platform()

try:
    import mujoco  # noqa: E402
except ImportError as err:  # mujoco is a core dependency; only a broken install lands here
    raise DependencyNotInstalled("mujoco", "all") from err

from flyby.sim.mujoco_log import route_mujoco_warnings

route_mujoco_warnings()  # MuJoCo's warnings to output/logs/mujoco.log, not MUJOCO_LOG.TXT in the CWD

log = logging.getLogger(__name__)

__all__ = ["MujocoBackend", "OverviewCamera", "PhysicsUnstable", "build_mjcf"]

# Geom groups (see the module docstring).
GROUP_WORLD = 0
GROUP_DRONE_BODY = 3
GROUP_DRONE_MARKER = 4
GROUP_COLLISION = 5

# Collision filter bits (dynamic mode, see the module docstring).
_WORLD_COLLISION = 'contype="1" conaffinity="2"'
_DRONE_COLLISION = 'contype="2" conaffinity="1"'

# Largest offscreen framebuffer side we ask for, pixels (llvmpipe allows 16384;
# a larger batch of cameras is rendered in several passes).
_MAX_BUFFER_PX = 4096

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


@dataclass(frozen=True)
class OverviewCamera:
    """The fixed overview camera: pinhole intrinsics and pose.

    Attributes:
        intrinsics: pixel intrinsics of the overview image.
        pos_w: (3,) float64 camera centre, metres, world ENU.
        rot_wc: (3, 3) float64 optical frame (x right, y down, z forward) to world.
    """

    intrinsics: PinholeIntrinsics
    pos_w: np.ndarray
    rot_wc: np.ndarray

    def project(self, points_w: np.ndarray) -> np.ndarray:
        """(K, 3) world points -> (K, 2) float64 pixels (u, v); NaN where behind the camera."""
        p_c = (np.asarray(points_w, dtype=np.float64) - self.pos_w) @ self.rot_wc
        k = self.intrinsics
        z = p_c[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = np.stack([k.fx * p_c[:, 0] / z + k.cx, k.fy * p_c[:, 1] / z + k.cy], axis=1)
        uv[z <= 1e-9] = np.nan
        return uv


def overview_camera_for(
    world: ISRWorld, width: int, height: int, pitch_deg: float = 60.0, fovy_deg: float = 45.0
) -> OverviewCamera:
    """Place a camera south of the area, looking north, pitched down ``pitch_deg``.

    The area centre is on the optical axis (so it lands on the image centre);
    the distance is the smallest that keeps every area corner, at ground level
    and at the tallest building's height, inside the image with a 3 % margin.
    """
    intr = PinholeIntrinsics.from_fovy(width, height, fovy_deg)
    rot_wc = yaw_rotation(np.array([math.pi / 2]))[0] @ camera_mount_rotation(pitch_deg)
    axis_w = rot_wc[:, 2]
    hx, hy = world.half_extent
    top = float(world.building_max_w[:, 2].max()) if world.num_buildings else 0.0
    corners = np.array([[sx * hx, sy * hy, z] for sx in (-1, 1) for sy in (-1, 1) for z in (0.0, top)])
    margin = 0.03

    def fits(dist: float) -> bool:
        cam = OverviewCamera(intr, -dist * axis_w, rot_wc)
        uv = cam.project(corners)
        if not np.isfinite(uv).all():
            return False
        lo = np.array([margin * width, margin * height])
        hi = np.array([(1 - margin) * width, (1 - margin) * height])
        return bool(((uv >= lo) & (uv <= hi)).all())

    lo, hi = 1.0, 1.0
    while not fits(hi):
        hi *= 2.0
        if hi > 1e6:
            raise ValueError(f"cannot fit a {world.size_m} m area into the overview camera")
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return OverviewCamera(intr, -hi * axis_w, rot_wc)


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


def _gl_context_class():
    """The GLContext class for the selected platform (imported directly, so it works
    even when mujoco was imported before :func:`ensure_gl_platform` ran)."""
    if _GL_PLATFORM == "egl":
        from mujoco.egl import GLContext
    elif _GL_PLATFORM == "osmesa":
        from mujoco.osmesa import GLContext
    else:
        GLContext = getattr(mujoco, "GLContext", None)
        if GLContext is None:
            raise BackendUnavailable(
                f"mujoco has no OpenGL context for MUJOCO_GL={_GL_PLATFORM!r}; unset it or set egl"
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
        ow, oh = (int(v) for v in overview_size)
        if ow < 1 or oh < 1 or ow > _MAX_BUFFER_PX or oh > _MAX_BUFFER_PX:
            raise ValueError(f"overview_size={overview_size} must be within 1..{_MAX_BUFFER_PX} px per side")
        self._world = world
        self._num_drones = int(num_drones)
        self._camera = camera
        self._shadows = bool(shadows)
        self._overview = overview_camera_for(world, ow, oh, pitch_deg=overview_pitch_deg)
        self._resources: _GLResources | None = None

        # Viewport grid: as many camera tiles per pass as fit in the framebuffer.
        w, h = camera.width, camera.height
        if w > _MAX_BUFFER_PX or h > _MAX_BUFFER_PX:
            raise ValueError(f"camera {w}x{h} px exceeds the {_MAX_BUFFER_PX} px offscreen framebuffer limit")
        rows, cols = grid_shape(self._num_drones)
        cols = min(cols, _MAX_BUFFER_PX // w)
        rows = min(math.ceil(self._num_drones / cols), _MAX_BUFFER_PX // h)
        self._grid = (rows, cols)
        buf_w, buf_h = max(cols * w, ow), max(rows * h, oh)

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

        self._drone_body = np.array([body(f"drone_{i}") for i in range(self._num_drones)], dtype=np.intp)
        self._drone_mocap = self.model.body_mocapid[self._drone_body].astype(np.intp)
        if dynamic is not None:
            self._init_dynamic()
        self._target_mocap = np.array(
            [self.model.body_mocapid[body(f"target_{t}")] for t in range(world.num_targets)], dtype=np.intp
        )

        def cam_id(name: str) -> int:
            return mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, name)

        self._drone_cams = []
        for i in range(self._num_drones):
            cam = mujoco.MjvCamera()
            cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
            cam.fixedcamid = cam_id(f"drone_cam_{i}")
            self._drone_cams.append(cam)
        self._overview_cam = mujoco.MjvCamera()
        self._overview_cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._overview_cam.fixedcamid = cam_id("overview")
        self._dirty = True

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

        gl_cls = _gl_context_class()
        gl_context = None
        try:
            gl_context = gl_cls(buf_w, buf_h)
            gl_context.make_current()
            mjr_context = mujoco.MjrContext(self.model, mujoco.mjtFontScale.mjFONTSCALE_50.value)
        except Exception as err:
            if gl_context is not None:
                gl_context.free()
            raise BackendUnavailable(
                f"cannot create a MuJoCo OpenGL context with MUJOCO_GL={_GL_PLATFORM!r}: {err}. "
                "Unset MUJOCO_GL to let flyby probe EGL and OSMesa, or install "
                "libegl1 libegl-mesa0 libgl1-mesa-dri (EGL) / libosmesa6 (OSMesa)."
            ) from err
        self._resources = _GLResources(gl_context, mjr_context)
        self._finalizer = weakref.finalize(self, self._resources.free)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN.value, mjr_context)
        if (mjr_context.offWidth, mjr_context.offHeight) != (buf_w, buf_h):
            self.close()
            raise BackendUnavailable(
                f"offscreen framebuffer is {mjr_context.offWidth}x{mjr_context.offHeight}, "
                f"expected {buf_w}x{buf_h}"
            )
        self._gl_string = _gl_renderer_string()

        self._scene = mujoco.MjvScene(self.model, maxgeom=self.model.ngeom + 64)
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = self._shadows
        self._scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = True
        self._pixels = np.empty(rows * h * cols * w * 3, dtype=np.uint8)  # flat: passes use a prefix
        self._overview_pixels = np.empty((oh, ow, 3), dtype=np.uint8)
        log.info("MuJoCo backend: %s", self.description)

    # ------------------------------------------------------------------ properties

    @property
    def description(self) -> str:
        """``"mujoco <version>, <GL platform>, <GL renderer / vendor>"``."""
        return f"mujoco {mujoco.__version__}, {_GL_PLATFORM.upper()} ({self._gl_string})"

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
        return self._resources is None

    # ------------------------------------------------------------------ poses

    def _check_ids(self, ids: np.ndarray | None) -> np.ndarray:
        if ids is None:
            return np.arange(self._num_drones)
        ids = np.asarray(ids)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"ids must be a 1-D integer array; got shape {ids.shape}, dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= self._num_drones):
            raise ValueError(f"ids must lie in [0, {self._num_drones}); got min {ids.min()}, max {ids.max()}")
        return ids

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
        ids, pos, quat = self._check_poses(pos_w, quat_wxyz, ids)
        self.data.mocap_pos[self._drone_mocap[ids]] = pos
        self.data.mocap_quat[self._drone_mocap[ids]] = quat
        self._dirty = True

    def _check_poses(
        self, pos_w: np.ndarray, quat_wxyz: np.ndarray, ids: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validated (ids, pos (k, 3), unit quat (k, 4)) for ``set_drone_poses``/``reset_drone_states``.

        Raises:
            ValueError: wrong shapes, ids out of range, non-finite values or a zero quaternion.
        """
        ids = self._check_ids(ids)
        pos = np.asarray(pos_w, dtype=np.float64)
        quat = np.asarray(quat_wxyz, dtype=np.float64)
        if pos.shape != (ids.size, 3) or quat.shape != (ids.size, 4):
            raise ValueError(
                f"expected pos_w ({ids.size}, 3) and quat_wxyz ({ids.size}, 4); "
                f"got {pos.shape} and {quat.shape}"
            )
        norm = np.linalg.norm(quat, axis=1, keepdims=True)
        if not (np.isfinite(pos).all() and np.isfinite(quat).all() and (norm > 1e-9).all()):
            raise ValueError("drone poses must be finite and quaternions non-zero")
        return ids, pos, quat / norm

    def set_target_poses(self, pos_w: np.ndarray, yaw_rad: np.ndarray) -> None:
        """Place all T targets. See :meth:`flyby.sim.base.SimBackend.set_target_poses`.

        Args:
            pos_w: (T, 3) float, metres, world ENU, box centres.
            yaw_rad: (T,) float, radians about world z.

        Raises:
            ValueError: wrong shapes or non-finite values.
        """
        t = self._world.num_targets
        pos = np.asarray(pos_w, dtype=np.float64)
        yaw = np.asarray(yaw_rad, dtype=np.float64)
        if pos.shape != (t, 3) or yaw.shape != (t,):
            raise ValueError(f"expected pos_w ({t}, 3) and yaw_rad ({t},); got {pos.shape} and {yaw.shape}")
        if not (np.isfinite(pos).all() and np.isfinite(yaw).all()):
            raise ValueError("target poses must be finite")
        if t:
            self.data.mocap_pos[self._target_mocap] = pos
            self.data.mocap_quat[self._target_mocap] = yaw_quat_wxyz(yaw)
        self._dirty = True

    def drone_poses(self) -> tuple[np.ndarray, np.ndarray]:
        """Current drone poses: (N, 3) float64 pos_w (metres, ENU) and (N, 4) float64 quat_wxyz."""
        if self._dynamic is not None:
            return self._qpos[:, :3].copy(), self._qpos[:, 3:].copy()
        return self.data.mocap_pos[self._drone_mocap].copy(), self.data.mocap_quat[self._drone_mocap].copy()

    # ------------------------------------------------------------------ dynamic mode

    def _init_dynamic(self) -> None:
        """Index views into MjData for the free-body drones (called once from __init__)."""
        n = self._num_drones
        m = self.model
        # Drones are the only jointed bodies, one free joint each, in drone order: qpos is
        # (N, 7) [pos_w, quat_wxyz] and qvel (N, 6) [lin_vel_w, ang_vel_b] without gathers.
        assert m.njnt == n and m.nq == 7 * n and m.nv == 6 * n and m.nu == 6 * n, (
            "unexpected dynamic model layout"
        )
        assert (m.jnt_bodyid == self._drone_body).all() and (m.jnt_qposadr == 7 * np.arange(n)).all()
        self._qpos = self.data.qpos.reshape(n, 7)
        self._qvel = self.data.qvel.reshape(n, 6)
        self._qacc = self.data.qacc.reshape(n, 6)
        self._ctrl = self.data.ctrl.reshape(n, 6)  # [force_b, torque_b] per drone (site actuators)
        geom_drone = np.full(m.ngeom, -1, dtype=np.intp)
        for i in range(n):
            geom_drone[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, f"drone_{i}_collision")] = i
        self._geom_drone = geom_drone
        self._contact = np.zeros(n, dtype=bool)
        self._gravity_w = np.array([0.0, 0.0, -STANDARD_GRAVITY])
        # MuJoCo resets the whole state on these warnings; step_physics turns them into errors.
        warn = mujoco.mjtWarning
        self._blow_up_warnings = [
            self.data.warning[w] for w in (warn.mjWARN_BADQPOS, warn.mjWARN_BADQVEL, warn.mjWARN_BADQACC)
        ]
        self._blow_ups_seen = [w.number for w in self._blow_up_warnings]
        mujoco.mj_forward(m, self.data)
        self._update_contact(reset=True)

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

    def _update_contact(self, reset: bool = False) -> None:
        """OR the drones touching the world in the current contact list into the contact flags."""
        if reset:
            self._contact[:] = False
        ncon = self.data.ncon
        if ncon:
            drones = self._geom_drone[self.data.contact.geom[:ncon].ravel()]
            self._contact[drones[drones >= 0]] = True

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
        ids, pos, quat = self._check_poses(pos_w, quat_wxyz, ids)
        self._qpos[ids, :3] = pos
        self._qpos[ids, 3:] = quat
        self._qvel[ids] = 0.0
        self._ctrl[ids] = 0.0
        self.data.qacc_warmstart.reshape(self._num_drones, 6)[ids] = 0.0
        mujoco.mj_forward(self.model, self.data)
        self._update_contact(reset=True)
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
        n = self._num_drones
        force_b = np.asarray(force_b, dtype=np.float64)
        torque_b = np.asarray(torque_b, dtype=np.float64)
        if force_b.shape != (n, 3) or torque_b.shape != (n, 3):
            raise ValueError(
                f"expected force_b ({n}, 3) and torque_b ({n}, 3); got {force_b.shape} and {torque_b.shape}"
            )
        ctrl = self._ctrl
        ctrl[:, :3] = force_b
        ctrl[:, 3:] = torque_b
        if not np.abs(ctrl).max() < mujoco.mjMAXVAL:  # also catches NaN
            ctrl[:] = 0.0
            raise ValueError(
                f"the body wrench must be finite and below {mujoco.mjMAXVAL:g} (MuJoCo's limit); "
                "the wrench was cleared to zero"
            )

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
        model, data = self.model, self.data
        self._contact[:] = False
        for _ in range(n):
            mujoco.mj_step(model, data)
            if data.ncon:
                self._update_contact()
        self._dirty = True
        blow_ups = [w.number for w in self._blow_up_warnings]
        if blow_ups != self._blow_ups_seen:
            changed = next(k for k, (a, b) in enumerate(zip(blow_ups, self._blow_ups_seen)) if a != b)
            self._blow_ups_seen = blow_ups
            dof = self._blow_up_warnings[changed].lastinfo
            raise PhysicsUnstable(
                f"MuJoCo found NaN or huge positions, velocities or accelerations (> {mujoco.mjMAXVAL:g}) "
                f"at degree of freedom {dof} (drone {dof // 6}) and reset the whole simulation to its "
                f"initial state (sim time now {data.time:.3f} s). Check the body wrench (within the "
                "airframe's thrust) and place the drones again with reset_drone_states."
            )

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
        qpos, qvel = self._qpos, self._qvel
        quat = qpos[:, 3:].copy()
        return DroneState(
            pos_w=qpos[:, :3].copy(),
            quat_wxyz=quat,
            lin_vel_w=qvel[:, :3].copy(),
            ang_vel_b=qvel[:, 3:].copy(),
            specific_force_b=rotate_inverse(quat, self._qacc[:, :3] - self._gravity_w),
            contact=self._contact.copy(),
        )

    # ------------------------------------------------------------------ rendering

    def _prepare(self):
        if self._resources is None:
            raise RuntimeError("MujocoBackend is closed; make a new backend to render")
        if self._dirty:
            mujoco.mj_kinematics(self.model, self.data)
            mujoco.mj_camlight(self.model, self.data)
            self._dirty = False
        self._resources.gl_context.make_current()
        return self._resources.mjr_context

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
        ids = self._check_ids(ids)
        w, h = self._camera.width, self._camera.height
        out = np.empty((ids.size, h, w, 3), dtype=np.uint8)
        if ids.size == 0:
            return out
        con = self._prepare()
        rows, cols = self._grid
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
                    self.model, self.data, self._opt_drone, None, self._drone_cams[i],
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
        con = self._prepare()
        oh, ow = self._overview_pixels.shape[:2]
        rect = mujoco.MjrRect(0, 0, ow, oh)
        mujoco.mjv_updateScene(
            self.model, self.data, self._opt_overview, None, self._overview_cam,
            mujoco.mjtCatBit.mjCAT_ALL.value, self._scene,
        )  # fmt: skip
        mujoco.mjr_render(rect, self._scene, con)
        mujoco.mjr_readPixels(self._overview_pixels, None, rect, con)
        return self._overview_pixels[::-1].copy()

    def overview_project(self, points_w: np.ndarray) -> np.ndarray:
        """Project world points into the overview image.

        Args:
            points_w: (K, 3) float, metres, world ENU.

        Returns:
            (K, 2) float64 pixel coordinates (u right, v down); NaN behind the camera.
        """
        pts = np.asarray(points_w, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise ValueError(f"points_w must be (K, 3); got {pts.shape}")
        return self._overview.project(pts)

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Free the GL and MuJoCo render contexts; later calls do nothing."""
        if self._resources is not None:
            self._finalizer.detach()
            resources, self._resources = self._resources, None
            resources.free()

    def __enter__(self) -> MujocoBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        mode = "kinematic" if self._dynamic is None else f"dynamic, physics_dt={self._physics_dt:g}"
        preset = self._camera.preset.value
        return f"MujocoBackend(num_drones={self._num_drones}, preset={preset}, {mode}, {state})"
